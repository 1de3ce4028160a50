//! The rollout spec (TOML or JSON), and where in the file a field is.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A rollout spec as written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The route and the two versions.
    pub route: RouteSpec,
    /// How to shift.
    pub strategy: StrategySpec,
    /// The health checks (all must pass).
    #[serde(default)]
    pub checks: Vec<CheckSpec>,
    /// Runner policy.
    #[serde(default)]
    pub policy: PolicySpec,
}

/// The backend a route lives on.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// An App Mesh route.
    Appmesh,
    /// An Application Load Balancer listener's default action or listener rule.
    Alb,
    /// A Network Load Balancer listener's default action.
    Nlb,
    /// A VPC Lattice service listener's default action or listener rule.
    Lattice,
    /// The local embedded mesh, started by `meshkit run` for the run.
    Local,
    /// An ECS native deployment (`LINEAR` or `CANARY`, Service Connect or any load
    /// balancer): ECS shifts the traffic, meshkit judges every step.
    #[serde(rename = "ecs-native")]
    EcsNative,
}

/// Which backend, which route, which versions. Fields are checked per backend by
/// [`Spec::check`] (a flat table keeps the parser's line and column on type errors).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// `appmesh`, `alb`, `nlb` or `local`.
    pub backend: Backend,
    /// The stable version (App Mesh: its virtual node).
    pub stable: String,
    /// The new version (App Mesh: its virtual node).
    pub new: String,
    /// App Mesh: the mesh.
    pub mesh: Option<String>,
    /// App Mesh: the account owning a shared mesh.
    pub mesh_owner: Option<String>,
    /// App Mesh: the virtual router.
    pub router: Option<String>,
    /// App Mesh: the route.
    pub route: Option<String>,
    /// Local: the gateway address, e.g. `127.0.0.1:9000`.
    pub listen: Option<String>,
    /// Local: the stable version's upstream address.
    pub stable_addr: Option<String>,
    /// Local: the new version's upstream address.
    pub new_addr: Option<String>,
    /// VPC Lattice: the service id (`svc-…`), with `listener` (and `rule`) as ids.
    /// ECS native: the ECS service.
    pub service: Option<String>,
    /// ECS native: the cluster.
    pub cluster: Option<String>,
    /// ECS native: the new task definition (`family:revision` or ARN).
    pub task_definition: Option<String>,
    /// ECS native: how long ECS waits at a pause for meshkit's answer before rolling
    /// back (whole minutes; default 30m).
    pub hook_timeout: Option<Dur>,
    /// ALB/NLB: the listener ARN (its default action is shifted); VPC Lattice: the
    /// listener id or ARN.
    pub listener: Option<String>,
    /// ALB: the listener-rule ARN (its forward action is shifted).
    pub rule: Option<String>,
    /// ALB/NLB: the wait after each write when traffic is not confirmed (default 60 s
    /// on an ALB, 600 s on an NLB).
    pub settle_delay: Option<Dur>,
    /// ALB/NLB: confirm each write from CloudWatch request (flow) counts per target group.
    pub confirm_traffic: Option<bool>,
    /// ALB with `confirm_traffic`: the fewest requests to judge a split (default 200).
    pub min_requests: Option<u64>,
    /// ALB with `confirm_traffic`: how long to wait for the counts to confirm a step
    /// before it fails (default 10 minutes).
    pub confirm_within: Option<Dur>,
}

/// The strategy kinds.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    /// Explicit steps (`steps`, `bake`, `pre_check`).
    Canary,
    /// `step` more every `wait`.
    Linear,
    /// One cutover (`pre_check`, `bake`).
    BlueGreen,
    /// Canary `steps` (`step_bake`), then the cutover (`pre_check`, `bake`).
    CanaryBlueGreen,
}

/// The strategy and its parameters.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StrategySpec {
    /// Which strategy.
    pub kind: StrategyKind,
    /// Percentages on the new version (canary, canary-blue-green).
    pub steps: Option<Vec<Step>>,
    /// Bake per step (canary) or after the cutover (blue-green kinds).
    pub bake: Option<Dur>,
    /// Check the new version with no traffic first.
    pub pre_check: Option<Dur>,
    /// Percent per step (linear).
    pub step: Option<Step>,
    /// Wait per step (linear).
    pub wait: Option<Dur>,
    /// Bake per canary step (canary-blue-green).
    pub step_bake: Option<Dur>,
}

/// The check kinds.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CheckKind {
    /// Probe `url`.
    Http,
    /// Cloud Map instance health of `service_id`.
    Cloudmap,
    /// A PromQL `query` against `url`, in `min`..=`max`.
    Prometheus,
    /// The AWS canary pipeline's check: the new node's ingress 5xx count in CloudWatch
    /// over `window`, at most `max` (`cluster`, `task_family`, `virtual_node`).
    #[serde(rename = "envoy-5xx")]
    Envoy5xx,
    /// Local backend: the new version's success rate through the mesh, at least `min`
    /// (0-1) over `window`, with `min_requests`.
    SuccessRate,
    /// Local backend: the new version's p99 latency through the mesh, at most
    /// `max_latency` over `window`, with `min_requests`.
    LatencyP99,
    /// ALB/NLB: `DescribeTargetHealth` of the new version's target group.
    TargetHealth,
    /// ALB: the new version's target group's 5xx count (CloudWatch), at most `max`
    /// over `window`.
    #[serde(rename = "target-5xx")]
    Target5xx,
    /// ALB: the new version's target group's p99 response time (CloudWatch), at most
    /// `max_latency` in any minute of `window`.
    TargetLatency,
}

/// One health check.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// Which check.
    pub kind: CheckKind,
    /// http: the URL probed; prometheus: the server's base URL.
    pub url: Option<String>,
    /// http: probes per evaluation.
    pub requests: Option<u32>,
    /// http: the share of probes that must succeed.
    pub min_success: Option<f64>,
    /// cloudmap: the service id (`srv-…`).
    pub service_id: Option<String>,
    /// cloudmap: only instances with these attributes.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// cloudmap: the least healthy share (0-1).
    pub min_healthy: Option<f64>,
    /// cloudmap: the least number of healthy instances.
    pub min_instances: Option<usize>,
    /// prometheus: the query (`{candidate}` and `{stable}` are replaced).
    pub query: Option<String>,
    /// prometheus: the lowest healthy value.
    pub min: Option<f64>,
    /// prometheus, envoy-5xx: the highest healthy value.
    pub max: Option<f64>,
    /// envoy-5xx: the ECS cluster (`ClusterName` dimension).
    pub cluster: Option<String>,
    /// envoy-5xx: the task definition family (default: the new node's name).
    pub task_family: Option<String>,
    /// envoy-5xx: the virtual node (default: the new node).
    pub virtual_node: Option<String>,
    /// envoy-5xx: how far back to count; success-rate, latency-p99: the window.
    pub window: Option<Dur>,
    /// success-rate, latency-p99: fewer requests in the window is inconclusive.
    pub min_requests: Option<u64>,
    /// latency-p99, target-latency: the highest healthy p99, e.g. `250ms`.
    pub max_latency: Option<Dur>,
    /// target-health, target-5xx, target-latency: the target group (name or ARN);
    /// default the route's `new`.
    pub target_group: Option<String>,
}

impl CheckSpec {
    /// A check of `kind` with every field unset.
    pub fn empty(kind: CheckKind) -> Self {
        Self {
            kind,
            url: None,
            requests: None,
            min_success: None,
            service_id: None,
            attributes: BTreeMap::new(),
            min_healthy: None,
            min_instances: None,
            query: None,
            min: None,
            max: None,
            cluster: None,
            task_family: None,
            virtual_node: None,
            window: None,
            min_requests: None,
            max_latency: None,
            target_group: None,
        }
    }
}

impl Spec {
    /// The rollout store's lease must outlast a write: at least 1 s and twice the call
    /// timeout (default 30 s), checked here so `plan` refuses what `run` would.
    fn check_lease(&self) -> Result<(), SpecError> {
        let Some(ttl) = &self.policy.lease_ttl else {
            return Ok(());
        };
        let call = self
            .policy
            .call_timeout
            .as_ref()
            .map_or(Duration::from_secs(30), |d| d.value);
        if ttl.value < Duration::from_secs(1) || ttl.value < call * 2 {
            return Err(SpecError {
                field: Some("policy.lease_ttl".into()),
                at: None,
                message: format!(
                    "{} is too short: at least 1s and twice policy.call_timeout ({}; default 30s)",
                    ttl.text,
                    self.policy
                        .call_timeout
                        .as_ref()
                        .map_or("30s".to_owned(), |d| d.text.clone())
                ),
            });
        }
        Ok(())
    }

    /// Checks that each table has the fields its kind needs and none it does not use.
    pub fn check(&self) -> Result<(), SpecError> {
        let r = &self.route;
        let all = [
            ("mesh", r.mesh.is_some()),
            ("mesh_owner", r.mesh_owner.is_some()),
            ("router", r.router.is_some()),
            ("route", r.route.is_some()),
            ("listen", r.listen.is_some()),
            ("stable_addr", r.stable_addr.is_some()),
            ("new_addr", r.new_addr.is_some()),
            ("service", r.service.is_some()),
            ("listener", r.listener.is_some()),
            ("rule", r.rule.is_some()),
            ("settle_delay", r.settle_delay.is_some()),
            ("confirm_traffic", r.confirm_traffic.is_some()),
            ("min_requests", r.min_requests.is_some()),
            ("confirm_within", r.confirm_within.is_some()),
            ("cluster", r.cluster.is_some()),
            ("task_definition", r.task_definition.is_some()),
            ("hook_timeout", r.hook_timeout.is_some()),
        ];
        let (need, allowed): (&[&str], &[&str]) = match r.backend {
            Backend::Appmesh => (
                &["mesh", "router", "route"],
                &["mesh", "mesh_owner", "router", "route"],
            ),
            Backend::Local => (
                &["listen", "stable_addr", "new_addr"],
                &["listen", "stable_addr", "new_addr"],
            ),
            Backend::Alb => (
                &[],
                &[
                    "listener",
                    "rule",
                    "settle_delay",
                    "confirm_traffic",
                    "min_requests",
                    "confirm_within",
                ],
            ),
            Backend::Nlb => (&["listener"], &["listener", "settle_delay"]),
            Backend::EcsNative => (
                &["cluster", "service", "task_definition"],
                &["cluster", "service", "task_definition", "hook_timeout"],
            ),
            Backend::Lattice => (
                &[],
                &[
                    "service",
                    "listener",
                    "rule",
                    "settle_delay",
                    "confirm_traffic",
                    "min_requests",
                    "confirm_within",
                ],
            ),
        };
        split_fields("route", &spelled(r.backend), &all, need, allowed)?;
        self.check_elb_route()?;
        self.check_lattice_route()?;
        let names = [
            ("stable", Some(&r.stable)),
            ("new", Some(&r.new)),
            ("mesh", r.mesh.as_ref()),
            ("mesh_owner", r.mesh_owner.as_ref()),
            ("router", r.router.as_ref()),
            ("route", r.route.as_ref()),
            ("listener", r.listener.as_ref()),
            ("rule", r.rule.as_ref()),
            ("cluster", r.cluster.as_ref()),
            ("service", r.service.as_ref()),
            ("task_definition", r.task_definition.as_ref()),
        ];
        if let Some((name, _)) = names
            .iter()
            .find(|(_, v)| v.is_some_and(|v| v.trim().is_empty()))
        {
            return Err(SpecError {
                field: Some(format!("route.{name}")),
                at: None,
                message: "must not be empty".into(),
            });
        }
        let s = &self.strategy;
        let all = [
            ("steps", s.steps.is_some()),
            ("bake", s.bake.is_some()),
            ("pre_check", s.pre_check.is_some()),
            ("step", s.step.is_some()),
            ("wait", s.wait.is_some()),
            ("step_bake", s.step_bake.is_some()),
        ];
        let native = r.backend == Backend::EcsNative;
        if native && !matches!(s.kind, StrategyKind::Canary | StrategyKind::Linear) {
            return Err(SpecError {
                field: Some("strategy.kind".into()),
                at: None,
                message: "the ecs-native backend runs ECS's strategies: linear or canary".into(),
            });
        }
        let (need, allowed): (&[&str], &[&str]) = match s.kind {
            // ECS's canary: one step then all (`steps = [10]` or `[10, 100]`), `bake`
            // after each; ECS's linear: `step` every `wait`, `bake` after the last.
            StrategyKind::Canary if native => (&["steps"], &["steps", "bake"]),
            StrategyKind::Linear if native => (&["step", "wait"], &["step", "wait", "bake"]),
            StrategyKind::Canary => (&["steps"], &["steps", "bake", "pre_check"]),
            StrategyKind::Linear => (&["step", "wait"], &["step", "wait"]),
            StrategyKind::BlueGreen => (&[], &["bake", "pre_check"]),
            StrategyKind::CanaryBlueGreen => {
                (&["steps"], &["steps", "step_bake", "pre_check", "bake"])
            }
        };
        split_fields("strategy", &spelled(s.kind), &all, need, allowed)?;
        self.check_lease()?;
        for (i, c) in self.checks.iter().enumerate() {
            let all = [
                ("url", c.url.is_some()),
                ("requests", c.requests.is_some()),
                ("min_success", c.min_success.is_some()),
                ("service_id", c.service_id.is_some()),
                ("attributes", !c.attributes.is_empty()),
                ("min_healthy", c.min_healthy.is_some()),
                ("min_instances", c.min_instances.is_some()),
                ("query", c.query.is_some()),
                ("min", c.min.is_some()),
                ("max", c.max.is_some()),
                ("cluster", c.cluster.is_some()),
                ("task_family", c.task_family.is_some()),
                ("virtual_node", c.virtual_node.is_some()),
                ("window", c.window.is_some()),
                ("min_requests", c.min_requests.is_some()),
                ("max_latency", c.max_latency.is_some()),
                ("target_group", c.target_group.is_some()),
            ];
            let (need, allowed): (&[&str], &[&str]) = match c.kind {
                CheckKind::Http => (&["url"], &["url", "requests", "min_success"]),
                CheckKind::Cloudmap => (
                    &["service_id"],
                    &["service_id", "attributes", "min_healthy", "min_instances"],
                ),
                CheckKind::Prometheus => (&["url", "query"], &["url", "query", "min", "max"]),
                CheckKind::Envoy5xx => (
                    &["cluster", "window", "max"],
                    &["cluster", "task_family", "virtual_node", "window", "max"],
                ),
                CheckKind::SuccessRate => (&["min"], &["min", "window", "min_requests"]),
                CheckKind::LatencyP99 => {
                    (&["max_latency"], &["max_latency", "window", "min_requests"])
                }
                CheckKind::TargetHealth => (&[], &["target_group", "min_healthy", "min_instances"]),
                CheckKind::Target5xx => (&["window"], &["target_group", "window", "max"]),
                CheckKind::TargetLatency => (
                    &["window", "max_latency"],
                    &["target_group", "window", "max_latency"],
                ),
            };
            split_fields(
                &format!("checks[{i}]"),
                &spelled(c.kind),
                &all,
                need,
                allowed,
            )?;
            let elb = matches!(self.route.backend, Backend::Alb | Backend::Nlb);
            let needs = match c.kind {
                CheckKind::TargetHealth if !elb && self.route.backend != Backend::Lattice => {
                    Some("an alb, nlb or lattice route")
                }
                CheckKind::Target5xx | CheckKind::TargetLatency
                    if !matches!(self.route.backend, Backend::Alb | Backend::Lattice) =>
                {
                    Some("an alb or lattice route (an NLB publishes no such metrics)")
                }
                _ => None,
            };
            if let Some(needs) = needs {
                return Err(SpecError {
                    field: Some(format!("checks[{i}].kind")),
                    at: None,
                    message: format!("{} needs {needs}", spelled(c.kind)),
                });
            }
            if c.kind == CheckKind::TargetHealth
                && let Some(share) = c.min_healthy.filter(|s| !(0.0..=1.0).contains(s))
            {
                return Err(SpecError {
                    field: Some(format!("checks[{i}].min_healthy")),
                    at: None,
                    message: format!("{share} is not a share from 0 to 1"),
                });
            }
            let metric = matches!(c.kind, CheckKind::SuccessRate | CheckKind::LatencyP99);
            if metric && self.route.backend != Backend::Local {
                return Err(SpecError {
                    field: Some(format!("checks[{i}].kind")),
                    at: None,
                    message: "success-rate and latency-p99 read the local mesh's metrics; \
                              on App Mesh use prometheus or envoy-5xx"
                        .into(),
                });
            }
        }
        Ok(())
    }
}

/// A kind as the spec spells it (`canary-blue-green`, `envoy-5xx`), from its serde
/// name.
impl Spec {
    /// ALB/NLB: exactly one of `listener` or `rule`, each an ARN of its kind.
    fn check_elb_route(&self) -> Result<(), SpecError> {
        use meshkit::traffic::elb::{ElbRoute, ElbRouteKind, LoadBalancerType};
        let r = &self.route;
        if !matches!(r.backend, Backend::Alb | Backend::Nlb) {
            return Ok(());
        }
        let bad = |field: &str, message: String| SpecError {
            field: Some(format!("route.{field}")),
            at: None,
            message,
        };
        let (field, arn, kind) = match (&r.listener, &r.rule) {
            (Some(_), Some(_)) => {
                return Err(bad("rule", "give either listener or rule, not both".into()));
            }
            (None, None) => {
                return Err(bad(
                    "listener",
                    "missing: alb needs a listener or a rule ARN".into(),
                ));
            }
            (Some(l), None) => ("listener", l, ElbRouteKind::Listener),
            (None, Some(x)) => ("rule", x, ElbRouteKind::Rule),
        };
        let parsed = ElbRoute::parse(arn).map_err(|e| match e {
            meshkit::TrafficError::BadRequest { message, .. } => bad(field, message),
            other => bad(field, other.to_string()),
        })?;
        if parsed.kind() != kind {
            return Err(bad(field, format!("{arn} is not a {field} ARN")));
        }
        let (wanted, other) = match r.backend {
            Backend::Nlb => (
                LoadBalancerType::Network,
                "an Application Load Balancer's (app/); use backend = \"alb\"",
            ),
            _ => (
                LoadBalancerType::Application,
                "a Network Load Balancer's (net/); use backend = \"nlb\"",
            ),
        };
        if parsed.load_balancer_type() != wanted {
            return Err(bad(field, format!("{arn} is {other}")));
        }
        let confirming = r.confirm_traffic == Some(true);
        for (name, set) in [
            ("min_requests", r.min_requests.is_some()),
            ("confirm_within", r.confirm_within.is_some()),
        ] {
            if set && !confirming {
                return Err(bad(name, "only used with confirm_traffic = true".into()));
            }
        }
        if confirming && r.settle_delay.is_some() {
            return Err(bad(
                "settle_delay",
                "not used with confirm_traffic = true: the request counts decide when a step is applied (confirm_within bounds the wait)".into(),
            ));
        }
        Ok(())
    }
}

impl Spec {
    /// VPC Lattice: `service` + `listener` (+ `rule`) ids, or a listener or rule ARN.
    fn check_lattice_route(&self) -> Result<(), SpecError> {
        let r = &self.route;
        if r.backend != Backend::Lattice {
            return Ok(());
        }
        let bad = |field: &str, message: String| SpecError {
            field: Some(format!("route.{field}")),
            at: None,
            message,
        };
        if r.listener.is_none() && r.rule.is_none() {
            return Err(bad(
                "listener",
                "missing: lattice needs service and listener ids, or a listener or rule ARN".into(),
            ));
        }
        let is_arn = |v: &Option<String>| v.as_deref().is_some_and(|v| v.starts_with("arn:"));
        if is_arn(&r.rule) && r.listener.is_some() {
            return Err(bad(
                "listener",
                "not used with a rule ARN, which names the listener".into(),
            ));
        }
        if is_arn(&r.listener) && r.rule.is_some() {
            return Err(bad(
                "rule",
                "with a listener ARN, give the rule's ARN instead (in rule, without listener)"
                    .into(),
            ));
        }
        if r.rule.is_some() && !is_arn(&r.rule) && r.listener.is_none() {
            return Err(bad(
                "listener",
                "missing: a rule id needs the listener id".into(),
            ));
        }
        let arn = is_arn(&r.rule) || is_arn(&r.listener);
        if arn && r.service.is_some() {
            return Err(bad(
                "service",
                "not used with an ARN, which names the service".into(),
            ));
        }
        if !arn && r.service.is_none() {
            return Err(bad(
                "service",
                "missing: lattice ids need the service id (svc-…)".into(),
            ));
        }
        let name = crate::build::route_name(self);
        let field = if r.rule.is_some() { "rule" } else { "listener" };
        meshkit::traffic::lattice::LatticeRoute::parse(&name).map_err(|e| match e {
            meshkit::TrafficError::BadRequest { message, .. } => bad(field, message),
            other => bad(field, other.to_string()),
        })?;
        let confirming = r.confirm_traffic == Some(true);
        for (name, set) in [
            ("min_requests", r.min_requests.is_some()),
            ("confirm_within", r.confirm_within.is_some()),
        ] {
            if set && !confirming {
                return Err(bad(name, "only used with confirm_traffic = true".into()));
            }
        }
        if confirming && r.settle_delay.is_some() {
            return Err(bad(
                "settle_delay",
                "not used with confirm_traffic = true: the request counts decide when a step is applied (confirm_within bounds the wait)".into(),
            ));
        }
        Ok(())
    }
}

/// A plan step: a whole (`10`) or decimal (`0.5`, `"0.5%"`) percentage, in steps of 0.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step(pub meshkit::traffic::Percent);

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use meshkit::traffic::Percent;
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Step;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a percentage from 0.1 to 100 in steps of 0.1, such as 10 or 0.5")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Step, E> {
                let whole = u32::try_from(v).unwrap_or(u32::MAX);
                Percent::whole(whole).map(Step).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Step, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!(
                        "'{v}' is not a valid percentage: use 0 to 100 in steps of 0.1"
                    ))),
                }
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Step, E> {
                Percent::try_from(v).map(Step).map_err(E::custom)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Step, E> {
                v.parse().map(Step).map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

fn spelled<T: fmt::Debug>(kind: T) -> String {
    let debug = format!("{kind:?}");
    let mut out = String::new();
    let mut prev: Option<char> = None;
    for c in debug.chars() {
        let after_letter = prev.is_some_and(|p| p.is_ascii_alphabetic());
        let after_lower = prev.is_some_and(|p| p.is_ascii_lowercase());
        if (c.is_ascii_uppercase() && after_letter) || (c.is_ascii_digit() && after_lower) {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
        prev = Some(c);
    }
    out
}

fn fields(
    table: &str,
    kind: &str,
    need: &[(&str, bool)],
    unused: &[(&str, bool)],
) -> Result<(), SpecError> {
    if let Some((name, _)) = need.iter().find(|(_, set)| !set) {
        return Err(SpecError {
            field: Some(format!("{table}.{name}")),
            at: None,
            message: format!("missing: {kind} needs it"),
        });
    }
    if let Some((name, _)) = unused.iter().find(|(_, set)| *set) {
        return Err(SpecError {
            field: Some(format!("{table}.{name}")),
            at: None,
            message: format!("not used by {kind}"),
        });
    }
    Ok(())
}

fn split_fields(
    table: &str,
    kind: &str,
    all: &[(&str, bool)],
    need: &[&str],
    allowed: &[&str],
) -> Result<(), SpecError> {
    let kind = kind.to_string();
    let need: Vec<(&str, bool)> = all
        .iter()
        .filter(|(n, _)| need.contains(n))
        .copied()
        .collect();
    let unused: Vec<(&str, bool)> = all
        .iter()
        .filter(|(n, _)| !allowed.contains(n))
        .copied()
        .collect();
    fields(table, &kind, &need, &unused)
}

/// Runner policy; every field optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// The rollout id (tokens, resume). Default: derived from the route and versions.
    pub id: Option<String>,
    /// Check interval.
    pub check_interval: Option<Dur>,
    /// Check timeout.
    pub check_timeout: Option<Dur>,
    /// Consecutive failures that roll back.
    pub failure_threshold: Option<u32>,
    /// Overall deadline.
    pub deadline: Option<Dur>,
    /// Resume from the route's weights (default true for the command line).
    pub resume: Option<bool>,
    /// What inconclusive verdicts (no data, timeouts) mean: `fail` (the default: roll
    /// back after `inconclusive_limit` in a row), `wait` (keep checking until healthy;
    /// the deadline bounds it) or `pass` (count them as healthy: the AWS canary
    /// pipeline's rule).
    pub inconclusive: Option<Inconclusive>,
    /// With `inconclusive = "fail"`: how many in a row roll back. Default 3.
    pub inconclusive_limit: Option<u32>,
    /// How long one call to the route's backend may take. Default 30s.
    pub call_timeout: Option<Dur>,
    /// How long the route's lease in the rollout store lasts without renewal: a
    /// crashed run's route is taken over after at most this long. At least twice
    /// `call_timeout`. Default 60s.
    pub lease_ttl: Option<Dur>,
}

/// The spec's words for [`meshkit::rollout::InconclusivePolicy`].
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Inconclusive {
    /// Roll back after `inconclusive_limit` in a row (default 3).
    Fail,
    /// Keep checking until a healthy verdict; the deadline bounds the wait.
    Wait,
    /// Count as healthy (the AWS canary pipeline's rule: no data is healthy).
    Pass,
}

/// A duration as written in a spec (`250ms`, `10s`, `5m`, `4h`), parsed when the spec
/// is read, so a bad one is reported with its field and position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dur {
    /// The value.
    pub value: Duration,
    /// As written.
    pub text: String,
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Dur {
    /// Parses `250ms`, `10s`, `5m`, `4h`, or a string of digits alone as seconds
    /// (`"30"`); a TOML or JSON number is refused, as a unit is expected.
    pub fn parse(text: &str) -> Option<Self> {
        let v = text.trim();
        let split = v
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(v.len());
        let (num, unit) = v.split_at(split);
        let n: f64 = num.parse().ok()?;
        let secs = match unit {
            "ms" => n / 1000.0,
            "" | "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            _ => return None,
        };
        let value = Duration::try_from_secs_f64(secs).ok()?;
        Some(Self {
            value,
            text: v.to_string(),
        })
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"250ms\", \"10s\", \"5m\" or \"4h\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Dur, E> {
                Dur::parse(v).ok_or_else(|| {
                    E::custom(format!("{v:?} is not a duration (e.g. 250ms, 10s, 5m, 4h)"))
                })
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// Why a spec was refused: the field, and where it is when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The field path, e.g. `strategy.steps`, when known.
    pub field: Option<String>,
    /// 1-based line and column, when known.
    pub at: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.field, self.at) {
            (Some(field), Some((l, c))) => write!(f, "{field} (line {l}, column {c}): ")?,
            (Some(field), None) => write!(f, "{field}: ")?,
            (None, Some((l, c))) => write!(f, "line {l}, column {c}: ")?,
            (None, None) => {}
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for SpecError {}

/// The format of a spec file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// TOML.
    Toml,
    /// JSON.
    Json,
}

impl Format {
    /// JSON for `.json` files (any case), TOML otherwise.
    pub fn of(path: &str) -> Self {
        let is_json = std::path::Path::new(path)
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        if is_json { Self::Json } else { Self::Toml }
    }
}

/// The text without a leading byte-order mark (editors on Windows write one).
pub fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Parses a spec. Errors name the field (`strategy.bake`, `route.stable`) and where it
/// is. Never panics, whatever the input.
pub fn parse(text: &str, format: Format) -> Result<Spec, SpecError> {
    let text = strip_bom(text);
    match format {
        Format::Json => {
            let mut de = serde_json::Deserializer::from_str(text);
            let spec: Spec = serde_path_to_error::deserialize(&mut de).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                let message = inner.to_string();
                let suffix = format!(" at line {} column {}", inner.line(), inner.column());
                let message = message
                    .strip_suffix(&suffix)
                    .unwrap_or(&message)
                    .to_string();
                let at = (inner.line() > 0).then(|| (inner.line(), inner.column()));
                field_error(text, format, path, at, message)
            })?;
            de.end().map_err(|e| SpecError {
                field: None,
                at: Some((e.line(), e.column())),
                message: "trailing characters after the spec".into(),
            })?;
            Ok(spec)
        }
        Format::Toml => {
            let de = toml::Deserializer::parse(text).map_err(|e| SpecError {
                field: None,
                at: e.span().map(|s| line_col(text, s.start)),
                message: e.message().to_string(),
            })?;
            serde_path_to_error::deserialize(de).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                let at = inner.span().map(|s| line_col(text, s.start));
                field_error(text, format, path, at, inner.message().to_string())
            })
        }
    }
}

/// A parse error with its field path. A missing field names the field inside its
/// table and points at the table.
fn field_error(
    text: &str,
    format: Format,
    path: String,
    at: Option<(usize, usize)>,
    message: String,
) -> SpecError {
    let path = (path != "." && !path.is_empty()).then_some(path);
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or_default();
        let field = match &path {
            Some(p) => format!("{p}.{name}"),
            None => name.to_string(),
        };
        let table = path.as_deref().map(|p| p.split('[').next().unwrap_or(p));
        let at = table.and_then(|t| locate_table(text, t, format)).or(at);
        return SpecError {
            field: Some(field),
            at,
            message: "missing: this table needs it".into(),
        };
    }
    SpecError {
        field: path,
        at,
        message,
    }
}

/// 1-based line and column of byte offset `at`.
pub fn line_col(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Where the table `name` starts: `[name]` or `[[name]]` in TOML, `"name"` in JSON.
pub fn locate_table(text: &str, name: &str, format: Format) -> Option<(usize, usize)> {
    let at = match format {
        Format::Toml => toml_table(text, name)?,
        Format::Json => text.find(&format!("\"{name}\""))?,
    };
    Some(line_col(text, at))
}

/// The offset of the line that opens TOML table `name` (`[name]` or `[[name]]` at the
/// start of a line; a comment that mentions it is not it).
fn toml_table(text: &str, name: &str) -> Option<usize> {
    let (single, array) = (format!("[{name}]"), format!("[[{name}]]"));
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with(&single) || trimmed.starts_with(&array) {
            return Some(offset + line.len() - trimmed.len());
        }
        offset += line.len();
    }
    None
}

/// Where the field `path` (`section.key`) is written in `text`, found by looking for
/// the key after its section: `[section]` in TOML, `"section"` in JSON. A key that is
/// not written (a missing field) points at its section.
pub fn locate(text: &str, path: &str, format: Format) -> Option<(usize, usize)> {
    let (section, key) = path.split_once('.').unwrap_or(("", path));
    let start = match (section, format) {
        ("", _) => 0,
        (s, Format::Toml) => toml_table(text, s)?,
        (s, Format::Json) => text.find(&format!("\"{s}\""))?,
    };
    let needle = match format {
        Format::Toml => key.to_string(),
        Format::Json => format!("\"{key}\""),
    };
    let rest = text.get(start..)?;
    let mut offset = start;
    for line in rest.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let lead = line.len() - trimmed.len();
        let hit = match format {
            Format::Json => trimmed.find(&needle),
            Format::Toml => trimmed
                .strip_prefix(needle.as_str())
                .filter(|after| after.trim_start().starts_with('='))
                .map(|_| 0),
        };
        if let Some(i) = hit {
            return Some(line_col(text, offset + lead + i));
        }
        // The next TOML section ends this one.
        if format == Format::Toml && offset > start && trimmed.starts_with('[') {
            break;
        }
        offset += line.len();
    }
    (!section.is_empty()).then(|| line_col(text, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_spelled_as_in_a_spec() {
        assert_eq!(spelled(StrategyKind::CanaryBlueGreen), "canary-blue-green");
        assert_eq!(spelled(CheckKind::Envoy5xx), "envoy-5xx");
        assert_eq!(spelled(CheckKind::LatencyP99), "latency-p99");
        assert_eq!(spelled(Backend::Appmesh), "appmesh");
        assert_eq!(spelled(CheckKind::Target5xx), "target-5xx");
    }

    #[test]
    fn a_table_named_in_a_comment_is_not_the_table() {
        let text = "# only [route] changes\n[route]\nrule = \"x\"\n";
        assert_eq!(locate(text, "route.rule", Format::Toml), Some((3, 1)));
        assert_eq!(locate_table(text, "route", Format::Toml), Some((2, 1)));
    }
}
