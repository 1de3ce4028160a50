//! Starting the services, the mesh and the traffic; building the rollout.

use std::net::SocketAddr;
use std::time::Duration;

use bluegreen_service::{App, Config};
use meshkit::health::{HttpCheck, LatencyP99, SuccessRate, only_with_traffic};
use meshkit::rollout::InconclusivePolicy;
use meshkit::strategy::{BlueGreen, Canary, CanaryBlueGreen, Linear};
use meshkit::traffic::local::LocalMesh;
use meshkit::{ConfigError, Rollout};
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

/// Starts a bluegreen-service on 127.0.0.1 with a free port.
pub async fn start_service(name: &str, version: &str, fail_rate: f64) -> std::io::Result<Service> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let cfg = Config {
        name: name.into(),
        version: version.into(),
        fail_rate,
        ..Config::default()
    };
    let tracing = Tracing::from_env(name, version);
    let (tx, rx) = oneshot::channel();
    tokio::spawn(App::new(cfg, tracing).serve(listener, async {
        let _ = rx.await;
    }));
    Ok(Service {
        addr,
        stop: Some(tx),
    })
}

/// The rollout from blue to green with the demo's checks.
pub fn rollout(args: &Args, mesh: &LocalMesh, green: SocketAddr) -> Result<Rollout, ConfigError> {
    let bake = args.bake();
    let interval = args.check_interval();
    let window = (interval * 5).max(Duration::from_secs(2));
    let b = Rollout::builder()
        .router(mesh.router())
        .route(ROUTE)
        .from("blue")
        .to("green");
    let b = match args.strategy {
        StrategyKind::Canary => {
            let canary = Canary::steps(args.steps.clone()).bake(bake);
            b.strategy(match args.pre_check {
                Some(d) if !d.is_zero() => canary.pre_check(d),
                _ => canary,
            })
        }
        StrategyKind::Linear => b.strategy(Linear::new(25, bake)),
        StrategyKind::BlueGreen => b.strategy(BlueGreen::new().pre_check(bake).bake(bake)),
        StrategyKind::CanaryBlueGreen => b.strategy(
            CanaryBlueGreen::new([10, 50])
                .pre_check(bake)
                .step_bake(bake)
                .bake(bake),
        ),
    };
    // Green probed directly (works before it has any traffic), plus what its users see.
    let probe = HttpCheck::builder(format!("http://{green}/"))
        .name("probe green")
        .requests(10)
        .min_success_ratio(0.9)
        .timeout(Duration::from_millis(500))
        .build()?;
    let success = SuccessRate::new(mesh.metrics(ROUTE), 0.99)
        .window(window)
        .min_requests(3)
        .build()?;
    let latency = LatencyP99::new(mesh.metrics(ROUTE), Duration::from_millis(250))
        .window(window)
        .min_requests(3)
        .build()?;
    b.check(probe)
        .check(only_with_traffic(success))
        .check(only_with_traffic(latency))
        .check_interval(interval)
        .check_timeout(interval.min(Duration::from_secs(2)))
        .failure_threshold(1)
        .inconclusive(InconclusivePolicy::FailAfter(3))
        .deadline(Duration::from_secs(3600))
        .build()
}
