//! The commands.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use meshkit::health::HealthCheck;
use meshkit::rollout::Event;
use meshkit::sdk::SdkConfig;
use meshkit::strategy::Stage;
use meshkit::traffic::appmesh::AppMeshRouter;
use meshkit::traffic::local::LocalMesh;
use meshkit::traffic::{RouteRef, TrafficRouter, Weights, WriteRequest};
use meshkit::{Outcome, Rollout, RolloutBuilder};
use serde_json::json;

use crate::spec::{self, Backend, CheckKind, CheckSpec, Format, Spec, SpecError};
use crate::{Cli, Command};
use crate::{build, deploy};

const INVALID: u8 = 2;
const ROLLED_BACK: u8 = 3;
const FAILED: u8 = 4;
const INTERRUPTED: u8 = 130;

/// Runs the command; returns the exit code.
pub async fn run(cli: Cli) -> u8 {
    let (path, action) = match &cli.command {
        Command::Plan { spec } => (spec, "plan"),
        Command::Run { spec } => (spec, "run"),
        Command::Status { spec } => (spec, "status"),
        Command::Promote { spec } => (spec, "promote"),
        Command::Rollback { spec } => (spec, "rollback"),
    };
    let spec = match load(&cli, path, action).await {
        Ok(s) => s,
        Err(Loading::Invalid(e)) => {
            eprintln!("meshkit: invalid spec {path}: {e}");
            return INVALID;
        }
        Err(Loading::Failed(e)) => {
            eprintln!("meshkit: {e}");
            return FAILED;
        }
    };
    match action {
        "plan" => plan(&cli, &spec),
        "run" => run_spec(&cli, &spec).await,
        "status" => status(&cli, &spec).await,
        "promote" => set(&cli, &spec, 100).await,
        _ => set(&cli, &spec, 0).await,
    }
}

/// Why a spec could not be loaded.
enum Loading {
    /// The spec is wrong (exit 2).
    Invalid(SpecError),
    /// Reading the route to find the stable node failed (exit 4).
    Failed(String),
}

/// Reads, parses and validates a spec or a `deploy.json`.
async fn load(cli: &Cli, path: &str, action: &str) -> Result<Spec, Loading> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Loading::Invalid(SpecError {
            field: None,
            at: None,
            message: format!("cannot read it: {e}"),
        })
    })?;
    if !deploy::is_deploy_json(&text) {
        return load_spec(&text, Format::of(path)).map_err(Loading::Invalid);
    }
    let d: deploy::DeployJson = serde_json::from_str(&text).map_err(|e| {
        Loading::Invalid(SpecError {
            field: None,
            at: Some((e.line(), e.column())),
            message: e.to_string(),
        })
    })?;
    let service = cli.service.as_deref();
    let stable = match (&cli.stable, action) {
        (Some(s), _) => s.clone(),
        // `plan` makes no call, so it cannot read the route.
        (None, "plan") => "current-stable".to_string(),
        (None, _) => {
            let probe = deploy::to_spec(&d, service, "current-stable").map_err(Loading::Invalid)?;
            current_stable(cli, &probe).await.map_err(Loading::Failed)?
        }
    };
    let spec = deploy::to_spec(&d, service, &stable).map_err(Loading::Invalid)?;
    spec.check().map_err(Loading::Invalid)?;
    validate(&spec).map_err(Loading::Invalid)?;
    Ok(spec)
}

/// The node the route now sends the most traffic to, other than the new one.
async fn current_stable(cli: &Cli, spec: &Spec) -> Result<String, String> {
    let (router, rr) = appmesh(cli, spec)
        .await
        .map_err(|_| "not an App Mesh route".to_string())?;
    let now = router.read(&rr).await.map_err(|e| e.to_string())?;
    now.weights
        .iter()
        .filter(|(n, _)| *n != spec.route.new)
        .max_by_key(|(_, w)| *w)
        .map(|(n, _)| n.to_string())
        .ok_or_else(|| format!("{rr} has no target besides {}", spec.route.new))
}

/// Parses and validates a meshkit spec; errors name the field and where it is.
fn load_spec(text: &str, format: Format) -> Result<Spec, SpecError> {
    let spec = spec::parse(text, format)?;
    spec.check()
        .and_then(|()| validate(&spec).map(drop))
        .map_err(|mut e| {
            if e.at.is_none()
                && let Some(field) = &e.field
            {
                let key = field.split('[').next().unwrap_or(field);
                e.at = spec::locate(text, key, format);
            }
            e
        })?;
    Ok(spec)
}

/// Everything the rollout builder checks, with no backend call.
fn validate(spec: &Spec) -> Result<Rollout, SpecError> {
    build::local_addrs(spec)?;
    let checks = build::checks(spec, None, None)?;
    let b = rollout_builder(spec, NullRouter, checks)?;
    b.build().map_err(build::config_error)
}

fn rollout_builder(
    spec: &Spec,
    router: impl TrafficRouter + 'static,
    checks: Vec<Box<dyn HealthCheck>>,
) -> Result<RolloutBuilder, SpecError> {
    let (stable, new) = build::versions(spec);
    let mut b = Rollout::builder()
        .router(router)
        .route(build::route_name(spec))
        .from(stable)
        .to(new);
    b = build::strategy(b, spec)?;
    b = build::policy(b, spec)?;
    for c in checks {
        b = b.check(c);
    }
    Ok(b)
}

fn plan(cli: &Cli, spec: &Spec) -> u8 {
    let rollout = match validate(spec) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("meshkit: invalid spec: {e}");
            return INVALID;
        }
    };
    let (stable, new) = build::versions(spec);
    let stages: Vec<serde_json::Value> = rollout
        .plan()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let weights = match s {
                Stage::Shift { new_percent, .. } => Weights::split(stable, new, *new_percent)
                    .map(|w| w.to_string())
                    .unwrap_or_default(),
                _ => String::new(),
            };
            json!({"index": i, "stage": s.to_string(), "weights": weights,
                   "bake_ms": s.bake().as_millis() as u64})
        })
        .collect();
    let checks: Vec<String> = spec.checks.iter().map(describe_check).collect();
    let calls = aws_calls(spec, &rollout);
    if cli.json {
        println!(
            "{}",
            json!({"id": rollout.id(), "route": build::route_name(spec), "from": stable,
                   "to": new, "stages": stages, "checks": checks, "aws_calls": calls})
        );
        return 0;
    }
    println!(
        "rollout {} on {}: {stable} -> {new}",
        rollout.id(),
        build::route_name(spec)
    );
    for s in &stages {
        println!(
            "  {:>2}  {}{}",
            s["index"],
            s["stage"].as_str().unwrap_or_default(),
            match s["weights"].as_str() {
                Some(w) if !w.is_empty() => format!("  ({w})"),
                _ => String::new(),
            }
        );
    }
    println!("checks: {}", checks.join("; "));
    println!("calls:");
    for c in calls {
        println!("  {c}");
    }
    0
}

fn describe_check(c: &CheckSpec) -> String {
    let or_blank = |v: &Option<String>| v.clone().unwrap_or_default();
    match c.kind {
        CheckKind::Http => format!("http probe {}", or_blank(&c.url)),
        CheckKind::Cloudmap => {
            format!("Cloud Map instance health of {}", or_blank(&c.service_id))
        }
        CheckKind::Prometheus => format!("prometheus {}", or_blank(&c.query)),
        CheckKind::SuccessRate => format!(
            "success rate of the new version at least {}",
            c.min.unwrap_or(1.0)
        ),
        CheckKind::LatencyP99 => format!(
            "p99 of the new version at most {}",
            or_blank(&c.max_latency)
        ),
        CheckKind::Envoy5xx => format!(
            "CloudWatch ingress 5xx of {} over {}, at most {}",
            c.virtual_node.clone().unwrap_or_default(),
            or_blank(&c.window),
            c.max.unwrap_or_default()
        ),
    }
}

fn aws_calls(spec: &Spec, rollout: &Rollout) -> Vec<String> {
    let mut calls = Vec::new();
    let shifts = rollout
        .plan()
        .iter()
        .filter(|s| matches!(s, Stage::Shift { .. }))
        .count();
    let (stable, new) = build::versions(spec);
    if spec.route.backend == Backend::Appmesh {
        calls.push(format!(
            "before any write: DescribeMesh, DescribeVirtualRouter, DescribeVirtualNode {stable}, DescribeVirtualNode {new}, DescribeRoute"
        ));
        calls.push(format!(
            "each of the {shifts} shifts: DescribeRoute, UpdateRoute (client token {}-<stage>); a rollback: DescribeRoute, UpdateRoute",
            rollout.id()
        ));
        calls.push("at the end: DescribeRoute (confirm)".into());
    } else {
        calls.push("none to AWS: the local mesh runs inside `meshkit run`".into());
    }
    if spec.checks.iter().any(|c| c.kind == CheckKind::Envoy5xx) {
        calls.push("each check evaluation: GetMetricData (per page)".into());
    }
    if spec.checks.iter().any(|c| c.kind == CheckKind::Cloudmap) {
        calls.push(
            "each check evaluation: ListInstances, GetInstancesHealthStatus (per Cloud Map check, per page)"
                .into(),
        );
    }
    calls
}

async fn sdk(cli: &Cli) -> SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(url) = &cli.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}

fn needs_aws(spec: &Spec) -> bool {
    spec.route.backend == Backend::Appmesh
        || spec
            .checks
            .iter()
            .any(|c| matches!(c.kind, CheckKind::Cloudmap | CheckKind::Envoy5xx))
}

async fn run_spec(cli: &Cli, spec: &Spec) -> u8 {
    let sdk = if needs_aws(spec) {
        Some(sdk(cli).await)
    } else {
        None
    };
    let (stable, new) = build::versions(spec);
    let mut local_mesh = None;
    let router: Arc<dyn TrafficRouter> = match (spec.route.backend, &sdk) {
        (Backend::Appmesh, Some(sdk)) => {
            let router = AppMeshRouter::new(meshkit::sdk::appmesh::Client::new(sdk));
            let resume = spec.policy.resume.unwrap_or(true);
            let Some(route) = build::appmesh_route(spec) else {
                return INVALID;
            };
            if let Err(e) = router.preflight(&route, stable, new, resume).await {
                eprintln!("meshkit: cannot start: {e}");
                return FAILED;
            }
            Arc::new(router)
        }
        _ => {
            let Ok(Some([listen, stable_addr, new_addr])) = build::local_addrs(spec) else {
                return INVALID;
            };
            let started = LocalMesh::builder()
                .gateway(listen)
                .route("local", "/", [(stable, stable_addr), (new, new_addr)])
                .start()
                .await;
            match started {
                Ok(mesh) => {
                    let router = Arc::new(mesh.router());
                    eprintln!(
                        "meshkit: local mesh gateway on http://{}/",
                        mesh.gateway_addr()
                    );
                    local_mesh = Some(mesh);
                    router
                }
                Err(e) => {
                    eprintln!("meshkit: cannot start the local mesh: {e}");
                    return FAILED;
                }
            }
        }
    };
    let metrics = local_mesh.as_ref().map(|m: &LocalMesh| m.metrics("local"));
    let checks = match build::checks(spec, sdk.as_ref(), metrics.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("meshkit: invalid spec: {e}");
            return INVALID;
        }
    };
    let rollout = match rollout_builder(spec, router, checks)
        .and_then(|b| b.build().map_err(build::config_error))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("meshkit: invalid spec: {e}");
            return INVALID;
        }
    };
    let json = cli.json;
    let mut events = rollout.events();
    let printer = tokio::spawn(async move {
        while let Some((at, event)) = events.recv_timed().await {
            print_event(json, at, &event);
        }
    });
    let interrupted = Arc::new(AtomicBool::new(false));
    let handle = rollout.handle();
    let flag = interrupted.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        flag.store(true, Ordering::SeqCst);
        if std::io::stdin().is_terminal() && !ask_roll_back().await {
            eprintln!("meshkit: leaving the route as it is");
            std::process::exit(i32::from(INTERRUPTED));
        }
        eprintln!("meshkit: interrupted, rolling back");
        let _ = handle.abort();
    });
    let result = rollout.run().await;
    let _ = printer.await;
    // `meshkit promote` / `meshkit rollback` from another shell are manual gates: the
    // run sees another writer and stops without touching the route; say which gate.
    let manual = match &result {
        Err(meshkit::RolloutError::ConcurrentWriter { found, .. }) => {
            if found.is_all_on(new) {
                Some(("promoted by hand", 0))
            } else if found.is_all_on(stable) {
                Some(("rolled back by hand", ROLLED_BACK))
            } else {
                None
            }
        }
        _ => None,
    };
    let code = match (&result, manual) {
        (_, Some((_, code))) => code,
        (Ok(Outcome::Promoted { .. }), _) => 0,
        (Ok(Outcome::RolledBack { .. }), _) if interrupted.load(Ordering::SeqCst) => INTERRUPTED,
        (Ok(Outcome::RolledBack { .. }), _) => ROLLED_BACK,
        (Err(_), _) => FAILED,
    };
    if let (Some((what, _)), Err(e)) = (manual, &result) {
        if json {
            println!(
                "{}",
                json!({"outcome": what.replace(' ', "_"), "detail": e.to_string(), "exit": code})
            );
        } else {
            println!("{what}: {e}");
        }
        return code;
    }
    match &result {
        Ok(o) if json => println!(
            "{}",
            json!({"outcome": if o.is_promoted() {"promoted"} else {"rolled_back"},
                   "weights": o.weights().to_string(), "detail": o.to_string(), "exit": code})
        ),
        Ok(o) => println!("{o}"),
        Err(e) if json => println!(
            "{}",
            json!({"outcome": "error", "error": e.to_string(),
                   "in_force": e.in_force().map(ToString::to_string), "exit": code})
        ),
        Err(e) => println!("stopped: {e}"),
    }
    code
}

async fn ask_roll_back() -> bool {
    eprint!("\nmeshkit: roll back now [R], or leave the route as it is [l]? ");
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await;
    !matches!(answer, Ok(Ok(l)) if l.trim().eq_ignore_ascii_case("l"))
}

fn print_event(json: bool, at: std::time::Duration, event: &Event) {
    if json {
        let debug = format!("{event:?}");
        let kind: String = debug
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        println!(
            "{}",
            json!({"t_ms": at.as_millis() as u64, "event": kind, "message": event.to_string()})
        );
    } else {
        println!("[{:>7.1}s] {event}", at.as_secs_f64());
    }
}

/// The App Mesh router and route of an App Mesh spec, or an error exit code.
async fn appmesh(cli: &Cli, spec: &Spec) -> Result<(AppMeshRouter, RouteRef), u8> {
    let Some(route) = build::appmesh_route(spec) else {
        eprintln!("meshkit: a local route exists only inside `meshkit run`");
        return Err(INVALID);
    };
    let Ok(rr) = route.route_ref() else {
        return Err(INVALID);
    };
    let sdk = sdk(cli).await;
    Ok((
        AppMeshRouter::new(meshkit::sdk::appmesh::Client::new(&sdk)),
        rr,
    ))
}

async fn status(cli: &Cli, spec: &Spec) -> u8 {
    let (router, rr) = match appmesh(cli, spec).await {
        Ok(x) => x,
        Err(code) => return code,
    };
    match router.read(&rr).await {
        Ok(now) => {
            if cli.json {
                println!(
                    "{}",
                    json!({"route": rr.as_str(), "weights": now.weights.to_string(),
                           "revision": now.revision})
                );
            } else {
                println!(
                    "{rr}: {} (version {})",
                    now.weights,
                    now.revision.as_deref().unwrap_or("?")
                );
            }
            0
        }
        Err(e) => {
            eprintln!("meshkit: {e}");
            FAILED
        }
    }
}

/// Writes `new_percent` on the new version (100: promote, 0: roll back), reads back.
async fn set(cli: &Cli, spec: &Spec, new_percent: u8) -> u8 {
    let (router, rr) = match appmesh(cli, spec).await {
        Ok(x) => x,
        Err(code) => return code,
    };
    let (stable, new) = build::versions(spec);
    let Ok(weights) = Weights::split(stable, new, new_percent) else {
        return INVALID;
    };
    let before = match router.read(&rr).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("meshkit: {e}");
            return FAILED;
        }
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let request = WriteRequest {
        weights: weights.clone(),
        token: format!("{}-manual-{new_percent}-{stamp}", build::rollout_id(spec)),
    };
    if let Err(e) = router.write(&rr, &request).await {
        eprintln!("meshkit: {e} (in force: {})", before.weights);
        return FAILED;
    }
    match router.read(&rr).await {
        Ok(after) if after.weights == weights => {
            if cli.json {
                println!(
                    "{}",
                    json!({"route": rr.as_str(), "before": before.weights.to_string(),
                           "weights": after.weights.to_string()})
                );
            } else {
                println!("{rr}: {} -> {}", before.weights, after.weights);
            }
            0
        }
        Ok(after) => {
            eprintln!("meshkit: wrote {weights} but read back {}", after.weights);
            FAILED
        }
        Err(e) => {
            eprintln!("meshkit: written, but reading back failed: {e}");
            FAILED
        }
    }
}

use null::NullRouter;

mod null {
    //! A router for validation only: every call fails, and none is made.
    use meshkit::TrafficError;
    use meshkit::traffic::{Observed, RouteRef, TrafficRouter, WriteRequest};

    /// Stands in for the real router while a spec is validated.
    pub struct NullRouter;

    #[async_trait::async_trait]
    impl TrafficRouter for NullRouter {
        async fn read(&self, _: &RouteRef) -> Result<Observed, TrafficError> {
            Err(TrafficError::Unsupported {
                message: "validation only".into(),
            })
        }
        async fn write(
            &self,
            _: &RouteRef,
            _: &WriteRequest,
        ) -> Result<Option<Observed>, TrafficError> {
            Err(TrafficError::Unsupported {
                message: "validation only".into(),
            })
        }
    }
}
