//! The Prometheus query check against a real Prometheus server scraping the local
//! mesh's /metrics. Needs the `prometheus` binary (Debian package `prometheus`, which
//! ./scripts/test.sh installs); fails with a clear message without it.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use meshkit::health::{CheckContext, HealthCheck, PrometheusQuery, Verdict};
use meshkit::traffic::Weights;
use meshkit::traffic::local::LocalMesh;
use sample_support::xray::{Sampling, Tracing};
use tokio::net::TcpListener;

struct Prometheus {
    child: Child,
    url: String,
    _dir: TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start_prometheus(scrape: SocketAddr) -> Prometheus {
    let bin = std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".into());
    if Command::new(&bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        panic!(
            "the Prometheus server is missing: install the Debian package 'prometheus' (./scripts/test.sh does) or set PROMETHEUS_BIN"
        );
    }
    let dir = std::env::temp_dir().join(format!(
        "meshkit-prom-{}-{}",
        std::process::id(),
        scrape.port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: meshkit\n    static_configs:\n      - targets: ['{scrape}']\n"
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(&bin)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus starts");
    Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: TempDir(dir),
    }
}

async fn service(name: &str, fail_rate: f64) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    let cfg = bluegreen_service::Config {
        name: name.into(),
        version: "1".into(),
        fail_rate,
        ..Default::default()
    };
    let t = Tracing::local_only(name, "1", Sampling::Never);
    tokio::spawn(bluegreen_service::App::new(cfg, t).serve(l, std::future::pending()));
    a
}

fn ctx(candidate: &str, stable: &str) -> CheckContext {
    CheckContext {
        stage: 0,
        stable: stable.into(),
        candidate: candidate.into(),
        weights: Weights::split(stable, candidate, 50).unwrap(),
        stage_elapsed: Duration::from_secs(60),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_query_judges_the_local_mesh_metrics() {
    let (blue, green) = (service("blue", 0.0).await, service("green", 1.0).await);
    let mesh = LocalMesh::builder()
        .route("split", "/", [("blue", blue), ("green", green)])
        .weights("split", Weights::split("blue", "green", 50).unwrap())
        .start()
        .await
        .unwrap();
    let prom = start_prometheus(mesh.admin_addr());
    // Bounded traffic through the gateway while Prometheus scrapes.
    let gateway = mesh.gateway_addr();
    let traffic = tokio::spawn(bounded_load(gateway));
    let ratio = r#"sum(rate(meshkit_responses_total{target="{candidate}",class="5xx"}[30s])) / sum(rate(meshkit_requests_total{target="{candidate}"}[30s]))"#;
    let check = |query: &str| {
        PrometheusQuery::builder(prom.url.clone(), query)
            .range(0.0..=0.05)
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap()
    };
    // Poll (with a deadline) until Prometheus has scraped traffic for both targets.
    let ready = check(ratio);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let v = ready.check(&ctx("blue", "green")).await;
        if v.is_healthy() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "prometheus never had data: {v}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let green_verdict = check(ratio).check(&ctx("green", "blue")).await;
    assert!(
        matches!(&green_verdict, Verdict::Unhealthy { reason } if reason.contains("outside")),
        "{green_verdict}"
    );
    assert_eq!(
        check(ratio).check(&ctx("blue", "green")).await,
        Verdict::Healthy
    );
    let none = check(r#"sum(meshkit_requests_total{target="nobody"})"#)
        .check(&ctx("x", "y"))
        .await;
    assert!(
        matches!(&none, Verdict::Inconclusive { reason } if reason.contains("no data")),
        "{none}"
    );
    let broken = check("sum(rate(").check(&ctx("x", "y")).await;
    assert!(matches!(broken, Verdict::Inconclusive { .. }), "{broken}");
    traffic.abort();
    drop(prom);
}

/// A small bounded load: 20 requests/s for at most 90 s (the test aborts it sooner).
async fn bounded_load(gateway: SocketAddr) {
    let client = sample_support::client::new_client();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    for _ in 0..1800 {
        tick.tick().await;
        if let Ok(uri) = format!("http://{gateway}/").parse() {
            let _ = client.get(uri).await;
        }
    }
}
