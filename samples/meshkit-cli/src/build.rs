//! From a parsed spec to meshkit values: strategy, checks, policy, route names.

use std::net::SocketAddr;
use std::time::Duration;

use meshkit::ConfigError;
use meshkit::RolloutBuilder;
use meshkit::health::{
    CloudMapHealth, CloudWatchMetric, HealthCheck, HttpCheck, LatencyP99, PrometheusQuery,
    SuccessRate, TargetGroupHealth, Verdict, from_fn, only_with_traffic,
};
use meshkit::rollout::InconclusivePolicy;
use meshkit::sdk::SdkConfig;
use meshkit::strategy::{BlueGreen, Canary, CanaryBlueGreen, Linear};
use meshkit::traffic::Percent;
use meshkit::traffic::appmesh::AppMeshRoute;
use meshkit::traffic::local::LocalMetrics;

use crate::spec::{Backend, CheckKind, Inconclusive, Spec, SpecError, StrategyKind};

/// The two versions and how the route is named.
pub fn versions(spec: &Spec) -> (&str, &str) {
    (&spec.route.stable, &spec.route.new)
}

/// The App Mesh route, for App Mesh specs.
pub fn appmesh_route(spec: &Spec) -> Option<AppMeshRoute> {
    let r = &spec.route;
    if r.backend != Backend::Appmesh {
        return None;
    }
    let route = AppMeshRoute::new(
        r.mesh.as_deref()?,
        r.router.as_deref()?,
        r.route.as_deref()?,
    );
    Some(match &r.mesh_owner {
        Some(o) => route.owner(o),
        None => route,
    })
}

/// The route's name for the rollout: `mesh/router/route[@owner]`, the listener or
/// rule ARN, or `local`.
pub fn route_name(spec: &Spec) -> String {
    let r = &spec.route;
    match r.backend {
        Backend::Alb | Backend::Nlb => r
            .rule
            .clone()
            .or_else(|| r.listener.clone())
            .unwrap_or_default(),
        Backend::Lattice => match (&r.rule, &r.listener) {
            (Some(rule), _) if rule.starts_with("arn:") => rule.clone(),
            (None, Some(listener)) if listener.starts_with("arn:") => listener.clone(),
            (rule, listener) => {
                let mut name = format!(
                    "{}/{}",
                    r.service.as_deref().unwrap_or_default(),
                    listener.as_deref().unwrap_or_default()
                );
                if let Some(rule) = rule {
                    name = format!("{name}/{rule}");
                }
                name
            }
        },
        Backend::Appmesh => appmesh_route(spec).map_or_else(String::new, |r| r.to_string()),
        Backend::Local => "local".to_string(),
        Backend::EcsNative => format!(
            "ecs:{}/{}",
            r.cluster.as_deref().unwrap_or_default(),
            r.service.as_deref().unwrap_or_default()
        ),
    }
}

/// The finest step the spec's backend holds: whole percents on App Mesh, 0.1%
/// elsewhere.
pub fn resolution(spec: &Spec) -> Percent {
    match spec.route.backend {
        Backend::Appmesh => Percent::ONE,
        Backend::Alb | Backend::Nlb | Backend::Lattice | Backend::Local | Backend::EcsNative => {
            Percent::TENTH
        }
    }
}

/// The route's key in the rollout store: its name, or for the local backend (whose
/// routes are all named `local`, one mesh per process) the gateway's address.
pub fn store_key(spec: &Spec) -> String {
    match (spec.route.backend, &spec.route.listen) {
        (Backend::Local, Some(listen)) => format!("local:{listen}"),
        _ => route_name(spec),
    }
}

/// The local backend's addresses: gateway, stable, new.
pub fn local_addrs(spec: &Spec) -> Result<Option<[SocketAddr; 3]>, SpecError> {
    let r = &spec.route;
    let (Backend::Local, Some(listen), Some(stable_addr), Some(new_addr)) =
        (r.backend, &r.listen, &r.stable_addr, &r.new_addr)
    else {
        return Ok(None);
    };
    let addr = |field: &str, v: &str| {
        v.parse::<SocketAddr>().map_err(|_| SpecError {
            field: Some(format!("route.{field}")),
            at: None,
            message: format!("{v:?} is not an address like 127.0.0.1:8080"),
        })
    };
    Ok(Some([
        addr("listen", listen)?,
        addr("stable_addr", stable_addr)?,
        addr("new_addr", new_addr)?,
    ]))
}

/// A stable rollout id: the spec's, or one derived from the route and versions, so a
/// rerun of the same spec resumes with the same write tokens.
pub fn rollout_id(spec: &Spec) -> String {
    if let Some(id) = &spec.policy.id {
        return id.clone();
    }
    let (stable, new) = versions(spec);
    let key = format!("{}|{stable}|{new}", route_name(spec));
    format!("mk{:016x}", fnv(&key))
}

/// FNV-1a: stable across runs and builds (std's hasher is not).
pub fn fnv(key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Sets the strategy from the spec (already checked by [`Spec::check`]).
pub fn strategy(b: RolloutBuilder, spec: &Spec) -> Result<RolloutBuilder, SpecError> {
    let s = &spec.strategy;
    let steps: Vec<Percent> = s.steps.iter().flatten().map(|p| p.0).collect();
    let bake = s.bake.as_ref().map(|d| d.value);
    let pre_check = s.pre_check.as_ref().map(|d| d.value);
    Ok(match s.kind {
        StrategyKind::Canary => {
            let mut c = Canary::steps_exact(steps);
            if let Some(d) = bake {
                c = c.bake(d);
            }
            if let Some(d) = pre_check {
                c = c.pre_check(d);
            }
            b.strategy(c)
        }
        StrategyKind::Linear => {
            let wait = s.wait.as_ref().map(|d| d.value).unwrap_or_default();
            b.strategy(Linear::exact(s.step.map_or(Percent::ZERO, |p| p.0), wait))
        }
        StrategyKind::BlueGreen => {
            let mut g = BlueGreen::new();
            if let Some(d) = pre_check {
                g = g.pre_check(d);
            }
            if let Some(d) = bake {
                g = g.bake(d);
            }
            b.strategy(g)
        }
        StrategyKind::CanaryBlueGreen => {
            let mut g = CanaryBlueGreen::new_exact(steps);
            if let Some(d) = s.step_bake.as_ref().map(|d| d.value) {
                g = g.step_bake(d);
            }
            if let Some(d) = pre_check {
                g = g.pre_check(d);
            }
            if let Some(d) = bake {
                g = g.bake(d);
            }
            b.strategy(g)
        }
    })
}

/// The inconclusive policy of the spec: `fail` after `inconclusive_limit` (3) by
/// default.
pub fn inconclusive(spec: &Spec) -> InconclusivePolicy {
    let p = &spec.policy;
    match p.inconclusive.unwrap_or(Inconclusive::Fail) {
        Inconclusive::Fail => InconclusivePolicy::FailAfter(p.inconclusive_limit.unwrap_or(3)),
        Inconclusive::Wait => InconclusivePolicy::Wait,
        Inconclusive::Pass => InconclusivePolicy::Pass,
    }
}

/// Sets the policy from the spec. The command line resumes by default.
pub fn policy(mut b: RolloutBuilder, spec: &Spec) -> Result<RolloutBuilder, SpecError> {
    let p = &spec.policy;
    b = b
        .id(rollout_id(spec))
        .resume(p.resume.unwrap_or(true))
        .inconclusive(inconclusive(spec));
    if let Some(d) = &p.check_interval {
        b = b
            .check_interval(d.value)
            .check_timeout(d.value.min(Duration::from_secs(5)));
    }
    if let Some(d) = &p.check_timeout {
        b = b.check_timeout(d.value);
    }
    if let Some(n) = p.failure_threshold {
        b = b.failure_threshold(n);
    }
    if let Some(d) = &p.deadline {
        b = b.deadline(d.value);
    }
    if let Some(d) = &p.call_timeout {
        b = b.call_timeout(d.value);
    }
    if let Some(d) = &p.lease_ttl {
        b = b.lease_ttl(d.value);
    }
    Ok(b)
}

/// Target group ARNs by the names a spec uses (route versions and checks'
/// `target_group`), resolved at run time for the load balancer checks.
pub type Groups = std::collections::HashMap<String, String>;

/// The spec's checks. AWS checks need `sdk` (and the load balancer checks the
/// resolved target `groups`); without it (validation, `plan`) each stands in as a
/// check that is never run.
pub fn checks(
    spec: &Spec,
    sdk: Option<&SdkConfig>,
    metrics: Option<&LocalMetrics>,
    groups: &Groups,
) -> Result<Vec<Box<dyn HealthCheck>>, SpecError> {
    let mut out: Vec<Box<dyn HealthCheck>> = Vec::new();
    for (i, c) in spec.checks.iter().enumerate() {
        let field = format!("checks[{i}]");
        let cfg = |e: ConfigError| SpecError {
            field: Some(field.clone()),
            at: None,
            message: e.to_string(),
        };
        let url = c.url.clone().unwrap_or_default();
        match c.kind {
            CheckKind::Http => {
                let mut h = HttpCheck::builder(url);
                if let Some(n) = c.requests {
                    h = h.requests(n);
                }
                if let Some(r) = c.min_success {
                    h = h.min_success_ratio(r);
                }
                out.push(Box::new(h.build().map_err(cfg)?));
            }
            CheckKind::Cloudmap => {
                let service_id = c.service_id.clone().unwrap_or_default();
                let Some(sdk) = sdk else {
                    // Validation and `plan` make no AWS call: stand in for the check.
                    let name = format!("cloudmap {service_id}");
                    out.push(Box::new(from_fn(name, |_| async {
                        Verdict::inconclusive("not run: validation only")
                    })));
                    continue;
                };
                let client = meshkit::sdk::servicediscovery::Client::new(sdk);
                let mut h = CloudMapHealth::builder(client, service_id);
                for (k, v) in &c.attributes {
                    h = h.attribute(k, v);
                }
                if let Some(s) = c.min_healthy {
                    h = h.min_healthy_share(s);
                }
                if let Some(n) = c.min_instances {
                    h = h.min_instances(n);
                }
                out.push(Box::new(h.build().map_err(cfg)?));
            }
            CheckKind::Envoy5xx => {
                let new = &spec.route.new;
                let window = c.window.as_ref().map(|d| d.value).unwrap_or_default();
                let Some(sdk) = sdk else {
                    let name = format!("envoy 5xx of {new}");
                    out.push(Box::new(from_fn(name, |_| async {
                        Verdict::inconclusive("not run: validation only")
                    })));
                    continue;
                };
                let client = meshkit::sdk::cloudwatch::Client::new(sdk);
                let check = CloudWatchMetric::envoy_5xx(
                    client,
                    c.cluster.clone().unwrap_or_default(),
                    c.task_family.clone().unwrap_or_else(|| new.clone()),
                    c.virtual_node.clone().unwrap_or_else(|| new.clone()),
                )
                .window(window)
                .max(c.max.unwrap_or_default());
                out.push(Box::new(check.build().map_err(cfg)?));
            }
            CheckKind::SuccessRate | CheckKind::LatencyP99 => {
                let Some(metrics) = metrics else {
                    let name = format!("{:?} of the new version", c.kind);
                    out.push(Box::new(from_fn(name, |_| async {
                        Verdict::inconclusive("not run: validation only")
                    })));
                    continue;
                };
                let window = c
                    .window
                    .as_ref()
                    .map_or(Duration::from_secs(30), |d| d.value);
                let min_requests = c.min_requests.unwrap_or(10);
                // No traffic on the new version yet (a pre-check) is not a failure.
                if c.kind == CheckKind::SuccessRate {
                    let check = SuccessRate::new(metrics.clone(), c.min.unwrap_or(1.0))
                        .window(window)
                        .min_requests(min_requests)
                        .build()
                        .map_err(cfg)?;
                    out.push(Box::new(only_with_traffic(check)));
                } else {
                    let max = c.max_latency.as_ref().map(|d| d.value).unwrap_or_default();
                    let check = LatencyP99::new(metrics.clone(), max)
                        .window(window)
                        .min_requests(min_requests)
                        .build()
                        .map_err(cfg)?;
                    out.push(Box::new(only_with_traffic(check)));
                }
            }
            CheckKind::TargetHealth | CheckKind::Target5xx | CheckKind::TargetLatency => {
                let group = c
                    .target_group
                    .clone()
                    .unwrap_or_else(|| spec.route.new.clone());
                let Some(sdk) = sdk else {
                    let name = format!("{} of {group}", describe_kind(c.kind));
                    out.push(Box::new(from_fn(name, |_| async {
                        Verdict::inconclusive("not run: validation only")
                    })));
                    continue;
                };
                if spec.route.backend == Backend::Lattice {
                    out.push(lattice_check(c, sdk, groups, group).map_err(cfg)?);
                    continue;
                }
                if c.kind == CheckKind::TargetHealth {
                    let mut h =
                        TargetGroupHealth::builder(meshkit::sdk::elbv2::Client::new(sdk), group);
                    if let Some(share) = c.min_healthy {
                        h = h.min_healthy_percent(share * 100.0);
                    }
                    if let Some(n) = c.min_instances {
                        h = h.min_healthy(n);
                    }
                    out.push(Box::new(h.build().map_err(cfg)?));
                    continue;
                }
                let route =
                    meshkit::traffic::elb::ElbRoute::parse(&route_name(spec)).map_err(|e| {
                        SpecError {
                            field: Some("route".into()),
                            at: None,
                            message: e.to_string(),
                        }
                    })?;
                let arn = groups.get(&group).cloned().ok_or_else(|| SpecError {
                    field: Some(format!("{field}.target_group")),
                    at: None,
                    message: format!("target group {group} was not resolved"),
                })?;
                let client = meshkit::sdk::cloudwatch::Client::new(sdk);
                let lb = route.load_balancer_dimension().to_owned();
                let tg = meshkit::traffic::elb::target_group_dimension(&arn).to_owned();
                let window = c.window.as_ref().map(|d| d.value).unwrap_or_default();
                let check = if c.kind == CheckKind::Target5xx {
                    CloudWatchMetric::target_5xx(client, lb, tg).max(c.max.unwrap_or_default())
                } else {
                    let max = c.max_latency.as_ref().map(|d| d.value).unwrap_or_default();
                    CloudWatchMetric::target_response_time(client, lb, tg).max(max.as_secs_f64())
                };
                out.push(Box::new(
                    check
                        .window(window)
                        .name(format!("{} of {group}", describe_kind(c.kind)))
                        .build()
                        .map_err(cfg)?,
                ));
            }
            CheckKind::Prometheus => {
                let range = c.min.unwrap_or(f64::NEG_INFINITY)..=c.max.unwrap_or(f64::INFINITY);
                let query = c.query.clone().unwrap_or_default();
                let q = PrometheusQuery::builder(url, query).range(range);
                out.push(Box::new(q.build().map_err(cfg)?));
            }
        }
    }
    Ok(out)
}

/// A target check on VPC Lattice: `ListTargets` health, or the group's
/// `AWS/VpcLattice` 5xx count or p99 request time (milliseconds).
fn lattice_check(
    c: &crate::spec::CheckSpec,
    sdk: &SdkConfig,
    groups: &Groups,
    group: String,
) -> Result<Box<dyn HealthCheck>, ConfigError> {
    let client = meshkit::sdk::cloudwatch::Client::new(sdk);
    let window = c.window.as_ref().map(|d| d.value).unwrap_or_default();
    let id = groups.get(&group).cloned().unwrap_or_else(|| group.clone());
    Ok(match c.kind {
        CheckKind::TargetHealth => {
            let mut h = meshkit::health::LatticeTargetHealth::builder(
                meshkit::sdk::vpclattice::Client::new(sdk),
                group,
            );
            if let Some(share) = c.min_healthy {
                h = h.min_healthy_percent(share * 100.0);
            }
            if let Some(n) = c.min_instances {
                h = h.min_healthy(n);
            }
            Box::new(h.build()?)
        }
        CheckKind::Target5xx => Box::new(
            CloudWatchMetric::lattice_5xx(client, id)
                .max(c.max.unwrap_or_default())
                .window(window)
                .name(format!("target 5xx of {group}"))
                .build()?,
        ),
        _ => {
            let max = c.max_latency.as_ref().map(|d| d.value).unwrap_or_default();
            Box::new(
                CloudWatchMetric::lattice_request_time(client, id)
                    .max(max.as_secs_f64() * 1000.0)
                    .window(window)
                    .name(format!("target p99 request time of {group}"))
                    .build()?,
            )
        }
    })
}

/// A check kind in words.
pub fn describe_kind(kind: CheckKind) -> &'static str {
    match kind {
        CheckKind::TargetHealth => "target health",
        CheckKind::Target5xx => "target 5xx",
        CheckKind::TargetLatency => "target p99 response time",
        CheckKind::Http => "http probe",
        CheckKind::Cloudmap => "cloudmap health",
        CheckKind::Prometheus => "prometheus query",
        CheckKind::Envoy5xx => "envoy 5xx",
        CheckKind::SuccessRate => "success rate",
        CheckKind::LatencyP99 => "p99 latency",
    }
}

/// [`config_error`] for `spec`: a linear plan's step is `strategy.step`.
pub fn config_error_in(spec: &Spec) -> impl Fn(ConfigError) -> SpecError + '_ {
    move |e| {
        let mut out = config_error(e);
        if spec.strategy.kind == StrategyKind::Linear
            && out.field.as_deref() == Some("strategy.steps")
        {
            out.field = Some("strategy.step".into());
        }
        out
    }
}

/// Maps a builder error to the spec field it comes from.
pub fn config_error(e: ConfigError) -> SpecError {
    let field = match &e {
        ConfigError::Strategy { field, .. } => Some(format!("strategy.{field}")),
        ConfigError::Policy {
            field: "inconclusive",
            ..
        } => Some("policy.inconclusive_limit".into()),
        ConfigError::Policy { field, .. } => Some(format!("policy.{field}")),
        ConfigError::DeadlineTooShort { .. } => Some("policy.deadline".into()),
        ConfigError::BadRolloutId(_) => Some("policy.id".into()),
        ConfigError::NoChecks => Some("checks".into()),
        ConfigError::FinerThanBackend { .. } => Some("strategy.steps".into()),
        ConfigError::SameVersions(_) | ConfigError::Weights(_) => Some("route.new".into()),
        _ => None,
    };
    SpecError {
        field,
        at: None,
        message: e.to_string(),
    }
}
