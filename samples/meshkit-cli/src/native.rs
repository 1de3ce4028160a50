//! The `ecs-native` backend: ECS shifts the traffic (`LINEAR` or `CANARY`), meshkit
//! judges every step (see `meshkit::native`). `plan`, `run`, `status`, and without a
//! running judge `rollback` (a stop with rollback); gates while one runs.

use std::time::Duration;

use meshkit::native::{EcsNative, EcsNativeBuilder, NativeStrategy};
use serde_json::json;

use crate::load::Loaded;
use crate::spec::{Spec, SpecError, StrategyKind};
use crate::{Cli, aws_env, build, exit};

fn field(name: &str, message: impl Into<String>) -> SpecError {
    SpecError {
        field: Some(name.into()),
        at: None,
        message: message.into(),
    }
}

/// ECS's strategy from the spec: `linear` (`step` every `wait`) or `canary` (one
/// step, `steps = [P]` or `[P, 100]`, then all; `bake` after each).
pub(crate) fn strategy(spec: &Spec) -> Result<NativeStrategy, SpecError> {
    let s = &spec.strategy;
    match s.kind {
        StrategyKind::Linear => Ok(NativeStrategy::Linear {
            step_percent: s.step.as_ref().map_or(0.0, |p| p.0.as_f64()),
            step_bake: s.wait.as_ref().map_or(Duration::ZERO, |d| d.value),
        }),
        StrategyKind::Canary => {
            let steps: Vec<f64> = s
                .steps
                .as_deref()
                .unwrap_or_default()
                .iter()
                .map(|p| p.0.as_f64())
                .collect();
            let percent = match steps.as_slice() {
                [p] if *p < 100.0 => *p,
                [p, last] if *p < 100.0 && *last >= 100.0 => *p,
                _ => {
                    return Err(field(
                        "strategy.steps",
                        "ECS's canary takes one step, then all the traffic: steps = [P] or [P, 100]",
                    ));
                }
            };
            Ok(NativeStrategy::Canary {
                percent,
                bake: s.bake.as_ref().map_or(Duration::ZERO, |d| d.value),
            })
        }
        _ => Err(field(
            "strategy.kind",
            "the ecs-native backend runs ECS's strategies: linear or canary",
        )),
    }
}

/// The judge for `spec`, checks and policy set, store not yet.
pub(crate) fn builder(
    spec: &Spec,
    client: meshkit::sdk::ecs::Client,
    checks: Vec<Box<dyn meshkit::health::HealthCheck>>,
) -> Result<EcsNativeBuilder, SpecError> {
    let r = &spec.route;
    let p = &spec.policy;
    let mut b = EcsNative::builder()
        .client(client)
        .cluster(r.cluster.clone().unwrap_or_default())
        .service(r.service.clone().unwrap_or_default())
        .task_definition(r.task_definition.clone().unwrap_or_default())
        .strategy(strategy(spec)?)
        .names(r.stable.clone(), r.new.clone())
        .inconclusive(build::inconclusive(spec));
    if spec.strategy.kind == StrategyKind::Linear
        && let Some(d) = &spec.strategy.bake
    {
        b = b.bake(d.value);
    }
    if spec.strategy.kind == StrategyKind::Canary
        && let Some(d) = &spec.strategy.bake
    {
        b = b.bake(d.value);
    }
    if let Some(d) = &r.hook_timeout {
        b = b.hook_timeout(d.value);
    }
    if let Some(d) = &p.check_interval {
        b = b.check_interval(d.value);
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
    for c in checks {
        b = b.check(c);
    }
    Ok(b)
}

/// A client that is never called, for validation and `plan`.
fn offline_client() -> meshkit::sdk::ecs::Client {
    let conf = meshkit::sdk::ecs::Config::builder()
        .behavior_version(meshkit::sdk::ecs::config::BehaviorVersion::latest())
        .region(meshkit::sdk::ecs::config::Region::new("us-east-1"))
        .build();
    meshkit::sdk::ecs::Client::from_conf(conf)
}

/// ECS's durations: whole minutes, up to 24 h.
fn whole_minutes(name: &str, d: Option<&crate::spec::Dur>) -> Result<(), SpecError> {
    let Some(d) = d else { return Ok(()) };
    let secs = d.value.as_secs();
    if d.value.subsec_nanos() != 0 || !secs.is_multiple_of(60) || secs > 24 * 3600 {
        return Err(field(
            name,
            format!("{} is not what ECS takes: whole minutes, up to 24h", d.text),
        ));
    }
    Ok(())
}

/// Everything the judge checks, with no call.
pub(crate) fn validate(spec: &Spec) -> Result<EcsNative, SpecError> {
    whole_minutes("strategy.wait", spec.strategy.wait.as_ref())?;
    whole_minutes("strategy.bake", spec.strategy.bake.as_ref())?;
    whole_minutes("route.hook_timeout", spec.route.hook_timeout.as_ref())?;
    let checks = build::checks(spec, None, None, &build::Groups::new())?;
    let b = builder(spec, offline_client(), checks)?;
    b.build().map_err(|e| {
        let f = match &e {
            meshkit::ConfigError::Strategy { .. } if spec.strategy.kind == StrategyKind::Linear => {
                "strategy.step".to_owned()
            }
            meshkit::ConfigError::Strategy { .. } => "strategy.steps".to_owned(),
            meshkit::ConfigError::Policy { field, .. } if *field == "hook_timeout" => {
                "route.hook_timeout".into()
            }
            meshkit::ConfigError::Policy { field, .. } if *field == "lease_ttl" => {
                "policy.lease_ttl".into()
            }
            _ => "strategy".into(),
        };
        let message = match &e {
            meshkit::ConfigError::Strategy { .. } => {
                "outside what ECS takes: a linear step of 3-100, a canary step of 0.1-100"
                    .to_owned()
            }
            other => other.to_string(),
        };
        field(&f, message)
    })
}

/// `meshkit plan` of an ecs-native spec.
pub(crate) fn plan(cli: &Cli, loaded: &Loaded) -> u8 {
    let spec = &loaded.spec;
    let strategy = match strategy(spec) {
        Ok(s) => s,
        Err(e) => {
            err!("meshkit: invalid spec: {e}");
            return exit::INVALID;
        }
    };
    let r = &spec.route;
    let steps = strategy.steps();
    let pauses = steps.len() + 1;
    let interval = spec
        .policy
        .check_interval
        .as_ref()
        .map_or("10s".to_owned(), |d| d.text.clone());
    if cli.json {
        out!(
            "{}",
            json!({"backend": "ecs-native", "cluster": r.cluster, "service": r.service,
                   "task_definition": r.task_definition, "steps": steps, "pauses": pauses,
                   "check_interval": interval,
                   "wait": spec.strategy.wait.as_ref().map(|d| d.text.clone()),
                   "bake": spec.strategy.bake.as_ref().map(|d| d.text.clone()),
                   "hook_timeout": r.hook_timeout.as_ref().map_or("30m".to_owned(), |d| d.text.clone()),
                   "checks": spec.checks.iter().map(|c| crate::plan::describe_check(c, &r.new, false)).collect::<Vec<_>>(),
                   "calls": {"to_start": 3, "per_poll": 1, "per_pause": 1, "to_roll_back": 1}})
        );
        return exit::OK;
    }
    out!(
        "ECS native deployment of {} on {}/{} ({} \u{2192} {})",
        r.task_definition.as_deref().unwrap_or_default(),
        r.cluster.as_deref().unwrap_or_default(),
        r.service.as_deref().unwrap_or_default(),
        r.stable,
        r.new
    );
    for (i, w) in steps.iter().enumerate() {
        out!(
            "  pause {}: meshkit runs its checks; CONTINUE moves {w}% to the new revision",
            i + 1
        );
    }
    out!(
        "  pause {pauses}: after the last shift, the checks once more before ECS's bake and clean-up"
    );
    out!(
        "  between pauses: checks every {interval}; a failure stops the deployment with a rollback"
    );
    out!(
        "  a pause not answered within the hook timeout ({}) rolls back",
        r.hook_timeout
            .as_ref()
            .map_or("30m".to_owned(), |d| d.text.clone())
    );
    let text = |d: Option<&crate::spec::Dur>, default: &str| {
        d.map_or_else(|| default.to_owned(), |d| d.text.clone())
    };
    match spec.strategy.kind {
        StrategyKind::Linear => out!(
            "  ECS bakes {} between steps and {} after the last (bake)",
            text(spec.strategy.wait.as_ref(), "0m"),
            text(spec.strategy.bake.as_ref(), "0m")
        ),
        _ => out!(
            "  ECS bakes {} after the canary and after the cutover (bake)",
            text(spec.strategy.bake.as_ref(), "0m")
        ),
    }
    out!("checks:");
    for c in &spec.checks {
        out!("  - {}", crate::plan::describe_check(c, &r.new, false));
    }
    out!(
        "calls: UpdateService, DescribeServices, ListServiceDeployments to start (or carry on); \
         one DescribeServiceDeployments per poll; one ContinueServiceDeployment per pause; \
         StopServiceDeployment to roll back between pauses"
    );
    exit::OK
}

/// `meshkit run` of an ecs-native spec.
pub(crate) async fn run(
    cli: &Cli,
    loaded: &Loaded,
    wait: Option<Duration>,
    ui: Option<std::net::SocketAddr>,
) -> u8 {
    let spec = &loaded.spec;
    let sdk = match aws_env::sdk(cli).await {
        Ok(sdk) => sdk,
        Err(e) => return crate::failed(cli, exit::INVALID, &e),
    };
    let holder = match crate::store::holder(cli) {
        Ok(h) => h,
        Err(e) => return crate::failed(cli, exit::INVALID, &e),
    };
    let store = match crate::store::open_coded(cli).await {
        Ok(s) => s,
        Err((code, e)) => return crate::failed(cli, code, &e),
    };
    let checks = match build::checks(spec, Some(&sdk), None, &build::Groups::new()) {
        Ok(c) => c,
        Err(e) => return crate::failed(cli, exit::INVALID, &format!("invalid spec: {e}")),
    };
    let key = build::store_key(spec);
    let view = match ui {
        Some(addr) => {
            match crate::ui::start(store.clone(), addr, None, meshkit::ui::DEFAULT_POLL).await {
                Ok(v) => {
                    crate::ui::announce(cli, &v, Some(&key));
                    Some(v)
                }
                Err((code, e)) => return crate::failed(cli, code, &format!("--ui: {e}")),
            }
        }
        None => None,
    };
    let client = meshkit::sdk::ecs::Client::new(&sdk);
    let judge = builder(spec, client, checks).and_then(|b| {
        let b = b.store(store).store_key(key.clone()).holder(holder);
        let b = match wait {
            Some(w) => b.wait_for_lease(w),
            None => b,
        };
        b.build().map_err(|e| field("route", e.to_string()))
    });
    let judge = match judge {
        Ok(j) => j,
        Err(e) => return crate::failed(cli, exit::INVALID, &format!("invalid spec: {e}")),
    };
    let events = judge.events();
    let handle = judge.handle();
    let (stable, new) = build::versions(spec);
    let code = crate::run::supervise(cli.json, judge.run(), handle, events, stable, new).await;
    crate::ui::finish(view).await;
    code
}

/// The service's newest deployment, described.
async fn newest(
    cli: &Cli,
    spec: &Spec,
) -> Result<Option<meshkit::sdk::ecs::types::ServiceDeployment>, (u8, String)> {
    let sdk = aws_env::sdk(cli).await.map_err(|e| (exit::INVALID, e))?;
    let ecs = meshkit::sdk::ecs::Client::new(&sdk);
    let r = &spec.route;
    let described = ecs
        .describe_services()
        .cluster(r.cluster.clone().unwrap_or_default())
        .services(r.service.clone().unwrap_or_default())
        .send()
        .await
        .map_err(|e| {
            (
                exit::FAILED,
                format!("DescribeServices: {}", e.into_service_error()),
            )
        })?;
    if let Some(f) = described.failures().first() {
        return Err((
            exit::FAILED,
            format!(
                "ECS does not know service {}/{}: {}",
                r.cluster.as_deref().unwrap_or_default(),
                r.service.as_deref().unwrap_or_default(),
                f.reason().unwrap_or("no reason given")
            ),
        ));
    }
    let listed = ecs
        .list_service_deployments()
        .cluster(r.cluster.clone().unwrap_or_default())
        .service(r.service.clone().unwrap_or_default())
        .send()
        .await
        .map_err(|e| {
            (
                exit::FAILED,
                format!("ListServiceDeployments: {}", e.into_service_error()),
            )
        })?;
    let Some(arn) = listed
        .service_deployments()
        .first()
        .and_then(|d| d.service_deployment_arn())
    else {
        return Ok(None);
    };
    let described = ecs
        .describe_service_deployments()
        .service_deployment_arns(arn)
        .send()
        .await
        .map_err(|e| {
            (
                exit::FAILED,
                format!("DescribeServiceDeployments: {}", e.into_service_error()),
            )
        })?;
    Ok(described.service_deployments().first().cloned())
}

/// `meshkit status` of an ecs-native spec: the newest deployment and the judge.
pub(crate) async fn status(cli: &Cli, loaded: &Loaded) -> u8 {
    let spec = &loaded.spec;
    let judge = crate::store::holder_of(cli, &build::store_key(spec)).await;
    let d = match newest(cli, spec).await {
        Ok(d) => d,
        Err((code, e)) => return crate::failed(cli, code, &e),
    };
    let (stable, new) = build::versions(spec);
    let Some(d) = d else {
        out!("no deployment recorded by ECS for this service");
        return exit::OK;
    };
    let weight = d
        .target_service_revision()
        .and_then(|r| r.requested_production_traffic_weight())
        .unwrap_or(0.0);
    let status = d.status().map(|s| s.as_str()).unwrap_or_default();
    let stage = d.lifecycle_stage().map(|s| s.as_str()).unwrap_or_default();
    let hook = d
        .lifecycle_hook_details()
        .last()
        .filter(|h| h.status().is_some_and(|s| s.as_str() == "AWAITING_ACTION"))
        .and_then(|h| h.hook_id());
    let holder = judge.ok().flatten();
    if cli.json {
        out!(
            "{}",
            json!({"deployment": d.service_deployment_arn(), "status": status, "stage": stage,
                   "weights": format!("{stable}={} {new}={weight}", 100.0 - weight),
                   "awaiting_hook": hook,
                   "judge": holder.as_ref().map(|l| l.holder.name.clone())})
        );
    } else {
        out!(
            "{}: {status} {stage}: {stable}={} {new}={weight}{}",
            d.service_deployment_arn().unwrap_or_default(),
            100.0 - weight,
            hook.map(|h| format!(" (paused at hook {h})"))
                .unwrap_or_default()
        );
        match holder {
            Some(l) => out!(
                "judged by {} since {} (its lease runs to {} unless renewed; a judge that \
                 died holds it until then)",
                l.holder,
                meshkit::store::utc(l.since),
                meshkit::store::utc(l.expires)
            ),
            None => out!("no meshkit judge is running for this service"),
        }
    }
    exit::OK
}

/// `promote` / `rollback` with no judge running.
pub(crate) async fn set_directly(cli: &Cli, loaded: &Loaded, promote: bool) -> u8 {
    if promote {
        return crate::failed(
            cli,
            exit::FAILED,
            "no meshkit judge is running for this service: `meshkit run SPEC` carries on with \
             the deployment in progress (and `promote` then goes through it)",
        );
    }
    let spec = &loaded.spec;
    let d = match newest(cli, spec).await {
        Ok(Some(d))
            if d.status()
                .is_some_and(|s| matches!(s.as_str(), "IN_PROGRESS" | "PENDING")) =>
        {
            d
        }
        Ok(_) => {
            return crate::failed(
                cli,
                exit::INVALID,
                "no deployment of this service is in progress",
            );
        }
        Err((code, e)) => return crate::failed(cli, code, &e),
    };
    let sdk = match aws_env::sdk(cli).await {
        Ok(s) => s,
        Err(e) => return crate::failed(cli, exit::INVALID, &e),
    };
    let ecs = meshkit::sdk::ecs::Client::new(&sdk);
    let arn = d.service_deployment_arn().unwrap_or_default().to_owned();
    match ecs
        .stop_service_deployment()
        .service_deployment_arn(&arn)
        .stop_type(meshkit::sdk::ecs::types::StopServiceDeploymentStopType::Rollback)
        .send()
        .await
    {
        Ok(_) => {
            out!("{arn}: rollback requested from ECS (StopServiceDeployment)");
            close_record(cli, spec, &arn).await;
            exit::OK
        }
        Err(e) => crate::failed(
            cli,
            exit::FAILED,
            &format!("StopServiceDeployment: {}", e.into_service_error()),
        ),
    }
}

/// After a rollback asked with no judge running: the service's open record is closed
/// as rolled back by hand, so a later run starts a new rollout instead of carrying on
/// with this one.
async fn close_record(cli: &Cli, spec: &Spec, arn: &str) {
    let Ok(store) = crate::store::open(cli).await else {
        return;
    };
    let Ok(holder) = crate::store::holder(cli) else {
        return;
    };
    let key = build::store_key(spec);
    let lease = match store.acquire(&key, &holder, Duration::from_secs(60)).await {
        Ok(l) => l,
        Err(e) => {
            err!("meshkit: the record was not updated: {e}");
            return;
        }
    };
    if let Ok(Some(rec)) = store.open_rollout(&key).await {
        let update = meshkit::store::RecordUpdate {
            end: Some((
                meshkit::store::RecordState::RolledBack,
                format!(
                    "rolled back by hand by {} (StopServiceDeployment of {arn})",
                    holder.name
                ),
            )),
            ..Default::default()
        };
        if let Err(e) = store.record(&lease, &rec.rollout.id, &update).await {
            err!("meshkit: the record was not updated: {e}");
        }
    }
    let _ = store.release(&lease).await;
}
