//! Starting the services, the mesh and the traffic; building the rollout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bluegreen_service::{App, Config};
use meshkit::health::{HttpCheck, LatencyP99, SuccessRate, only_with_traffic};
use meshkit::rollout::InconclusivePolicy;
use meshkit::store::RolloutStore;
use meshkit::strategy::{BlueGreen, Canary, CanaryBlueGreen, Linear, Strategy};
use meshkit::traffic::local::LocalMesh;
use meshkit::{ConfigError, Rollout};
use sample_support::server;
use sample_support::xray::Tracing;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::args::{Args, StrategyKind};

/// The route the demo shifts.
pub const ROUTE: &str = "split";

/// A running sample service.
pub struct Service {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// The path each service answers health probes on. It is served by a separate handler
/// so that a broken version can keep a healthy health endpoint while its user
/// requests fail (a classic: the health endpoint only says the process is up).
pub const HEALTH_PATH: &str = "/healthz";

/// The demo's deadline for the whole rollout.
const DEADLINE: Duration = Duration::from_secs(3600);

/// Starts a bluegreen-service on 127.0.0.1 with a free port: `user_fail` of its user
/// requests and `health_fail` of its [`HEALTH_PATH`] requests answer 500.
pub async fn start_service(
    name: &str,
    version: &str,
    user_fail: f64,
    health_fail: f64,
) -> std::io::Result<Service> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let cfg = |fail_rate| Config {
        name: name.into(),
        version: version.into(),
        fail_rate,
        ..Config::default()
    };
    let tracing = Tracing::from_env(name, version);
    let users = App::new(cfg(user_fail), tracing.clone());
    let health = App::new(cfg(health_fail), tracing.clone());
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let stop = async {
            let _ = rx.await;
        };
        // Written inline so that the request type comes from `serve_traced`'s bound.
        let served = server::serve_traced(
            listener,
            move |req| {
                let app = if req.uri().path() == HEALTH_PATH {
                    health.clone()
                } else {
                    users.clone()
                };
                async move { app.handle(req).await }
            },
            stop,
            &tracing,
        );
        served.await
    });
    Ok(Service {
        addr,
        stop: Some(tx),
    })
}

/// The strategy the arguments ask for.
fn strategy(args: &Args) -> Box<dyn Strategy> {
    let bake = args.bake();
    match args.strategy {
        StrategyKind::Canary => {
            let canary = Canary::steps(args.steps.clone()).bake(bake);
            Box::new(match args.pre_check {
                Some(d) if !d.is_zero() => canary.pre_check(d),
                _ => canary,
            })
        }
        StrategyKind::Linear => Box::new(Linear::new(25, bake)),
        StrategyKind::BlueGreen => Box::new(BlueGreen::new().pre_check(bake).bake(bake)),
        StrategyKind::CanaryBlueGreen => Box::new(
            CanaryBlueGreen::new([10, 50])
                .pre_check(bake)
                .step_bake(bake)
                .bake(bake),
        ),
    }
}

/// Checks the plan the arguments make, before anything starts: an error here is a bad
/// argument (exit 2), named by its option.
pub fn validate_plan(args: &Args) -> Result<(), String> {
    let strategy = strategy(args);
    strategy.validate().map_err(|e| {
        let opt = if args.strategy == StrategyKind::Canary {
            "--steps"
        } else {
            "--strategy"
        };
        format!("{opt}: {e}")
    })?;
    let planned: Duration = strategy.stages().iter().map(|s| s.bake()).sum();
    if planned >= DEADLINE {
        return Err(format!(
            "--bake/--pre-check: the plan would bake for {planned:?}, the demo stops at {DEADLINE:?}"
        ));
    }
    Ok(())
}

/// The demo's checks and their thresholds, in one place: they build the checks and
/// describe them to the person watching.
#[derive(Debug, Clone)]
pub struct Checks {
    probe_url: String,
    probe_requests: u32,
    probe_min: f64,
    probe_timeout: Duration,
    success_min: f64,
    p99_max: Duration,
    window: Duration,
    min_requests: u64,
    pub interval: Duration,
    failure_threshold: u32,
    inconclusive_after: u32,
}

impl Checks {
    /// The checks for a green on `green`.
    pub fn new(args: &Args, green: SocketAddr) -> Self {
        let interval = args.check_interval();
        Self {
            probe_url: format!("http://{green}{HEALTH_PATH}"),
            probe_requests: 10,
            probe_min: 0.9,
            probe_timeout: Duration::from_millis(500),
            success_min: 0.99,
            p99_max: Duration::from_millis(250),
            window: (interval * 5).max(Duration::from_secs(2)),
            min_requests: 3,
            interval,
            failure_threshold: 1,
            inconclusive_after: 3,
        }
    }

    /// What the person watching is told at the start: the checks, their thresholds,
    /// and what rolls back.
    pub fn intro(&self) -> Vec<String> {
        let mut out = vec![format!(
            "checks on green, every {:?} and before each shift; all must pass:",
            self.interval
        )];
        out.extend(self.describe().into_iter().map(|c| format!("  {c}")));
        out.push(format!(
            "  (the last two count once green has traffic, over >= {} requests)",
            self.min_requests
        ));
        out.push(format!(
            "  rollback after {} unhealthy round(s) or {} inconclusive in a row",
            self.failure_threshold, self.inconclusive_after
        ));
        out
    }

    /// One line per check, with its threshold.
    pub fn describe(&self) -> Vec<String> {
        vec![
            format!(
                "probe green: GET {HEALTH_PATH}, {} tries, >= {:.0}% 2xx within {} ms",
                self.probe_requests,
                self.probe_min * 100.0,
                self.probe_timeout.as_millis()
            ),
            format!(
                "success rate: >= {:.0}% of green's user requests (mesh, last {:?})",
                self.success_min * 100.0,
                self.window
            ),
            format!(
                "p99 latency: <= {} ms on green's user requests (mesh, last {:?})",
                self.p99_max.as_millis(),
                self.window
            ),
        ]
    }
}

/// The rollout from blue to green with the demo's checks.
pub fn rollout(
    args: &Args,
    mesh: &LocalMesh,
    checks: &Checks,
    store: Option<Arc<dyn RolloutStore>>,
) -> Result<Rollout, ConfigError> {
    let b = Rollout::builder()
        .router(mesh.router())
        .route(ROUTE)
        .from("blue")
        .to("green")
        .strategy(strategy(args));
    // Green probed directly (works before it has any traffic), plus what its users see.
    let probe = HttpCheck::builder(checks.probe_url.clone())
        .name("probe green")
        .requests(checks.probe_requests)
        .min_success_ratio(checks.probe_min)
        .timeout(checks.probe_timeout)
        .build()?;
    let success = SuccessRate::new(mesh.metrics(ROUTE), checks.success_min)
        .window(checks.window)
        .min_requests(checks.min_requests)
        .build()?;
    let latency = LatencyP99::new(mesh.metrics(ROUTE), checks.p99_max)
        .window(checks.window)
        .min_requests(checks.min_requests)
        .build()?;
    let b = b
        .check(probe)
        .check(only_with_traffic(success))
        .check(only_with_traffic(latency))
        .check_interval(checks.interval)
        .check_timeout(checks.interval.min(Duration::from_secs(2)))
        .failure_threshold(checks.failure_threshold)
        .inconclusive(InconclusivePolicy::FailAfter(checks.inconclusive_after))
        .deadline(DEADLINE);
    match store {
        Some(store) => b.store(store).build(),
        None => b.build(),
    }
}
