//! The traffic client against real blue/green services.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bluegreen_service::{App, Config};
use clap::Parser;
use sample_support::xray::{Sampling, Tracing};
use traffic_client::{Options, run};

async fn start(cfg: Config) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    let t = Tracing::local_only(&cfg.name, &cfg.version, Sampling::Never);
    tokio::spawn(App::new(cfg, t).serve(l, std::future::pending()));
    a
}

fn opts(args: &[&str]) -> Options {
    Options::parse_from(std::iter::once("traffic-client").chain(args.iter().copied()))
}

async fn run_capture(o: &Options) -> (traffic_client::Summary, Vec<String>) {
    let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
    let summary = run(o, buf.clone()).await.unwrap();
    let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
    (summary, text.lines().map(str::to_owned).collect())
}

#[tokio::test]
async fn lines_use_the_original_format_and_the_summary_counts() {
    let blue = start(Config {
        name: "blue".into(),
        version: "1".into(),
        ..Config::default()
    })
    .await;
    let (summary, lines) = run_capture(&opts(&[
        &blue.to_string(),
        "--rate",
        "500",
        "--requests",
        "20",
        "--concurrency",
        "1",
    ]))
    .await;
    assert_eq!(lines.len(), 20);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line, &format!("200 OK blue:1={}", i + 1));
    }
    assert_eq!((summary.requests, summary.ok, summary.errors), (20, 20, 0));
    assert_eq!(summary.split["blue:1"], 100.0);
}

#[tokio::test]
async fn errors_are_counted_not_fatal() {
    let broken = start(Config {
        name: "green".into(),
        version: "2".into(),
        fail_rate: 1.0,
        ..Config::default()
    })
    .await;
    let (summary, lines) = run_capture(&opts(&[
        &format!("http://{broken}/"),
        "--rate",
        "500",
        "--requests",
        "5",
        "--concurrency",
        "1",
    ]))
    .await;
    assert_eq!(lines.last().unwrap(), "500 Internal Server Error error=5");
    assert_eq!((summary.ok, summary.errors), (0, 5));

    let nothing = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (summary, lines) = run_capture(&opts(&[
        &nothing.to_string(),
        "--rate",
        "500",
        "--requests",
        "3",
        "--concurrency",
        "1",
    ]))
    .await;
    assert!(
        lines[0].starts_with("ERR ") && lines[0].ends_with(" error=1"),
        "{lines:?}"
    );
    assert_eq!(summary.errors, 3);
}

#[tokio::test]
async fn duration_bounds_the_run() {
    let blue = start(Config {
        name: "blue".into(),
        version: "1".into(),
        ..Config::default()
    })
    .await;
    let started = std::time::Instant::now();
    let (summary, _) = run_capture(&opts(&[
        &blue.to_string(),
        "--rate",
        "100",
        "--duration",
        "300ms",
        "--quiet",
    ]))
    .await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        summary.requests >= 10 && summary.requests <= 40,
        "{}",
        summary.requests
    );
}

#[test]
fn bad_options_are_refused() {
    assert!(opts(&["host", "--rate", "0"]).validate().is_err());
    assert!(opts(&["host", "--concurrency", "0"]).validate().is_err());
    assert!(opts(&["https://secure/"]).validate().is_err());
    assert!(Options::try_parse_from(["traffic-client"]).is_err());
    assert!(Options::try_parse_from(["traffic-client", "h", "--duration", "5 parsecs"]).is_err());
    assert_eq!(
        traffic_client::parse_duration("2m").unwrap(),
        Duration::from_secs(120)
    );
    assert_eq!(
        traffic_client::parse_duration("250ms").unwrap(),
        Duration::from_millis(250)
    );
}
