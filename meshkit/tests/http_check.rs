//! The HTTP probe check against real servers on loopback.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use meshkit::health::{CheckContext, HealthCheck, HttpCheck, Verdict};
use meshkit::traffic::Weights;
use tokio::net::TcpListener;

/// Serves on 127.0.0.1:0; the nth request (from 0) answers `status(n)`, after `delay`.
async fn serve(status: fn(u32) -> u16, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicU32::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let count = count.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req| {
                    let n = count.fetch_add(1, Ordering::SeqCst);
                    async move {
                        tokio::time::sleep(delay).await;
                        let mut resp = Response::new(Full::new(Bytes::from_static(b"ok")));
                        *resp.status_mut() = StatusCode::from_u16(status(n)).unwrap();
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn ctx() -> CheckContext {
    CheckContext {
        stage: 0,
        stable: "a".into(),
        candidate: "b".into(),
        weights: Weights::split("a", "b", 10).unwrap(),
        stage_elapsed: Duration::ZERO,
    }
}

#[tokio::test]
async fn healthy_when_enough_requests_succeed() {
    // Every 5th request fails: 4 of 5 succeed.
    let addr = serve(|n| if n % 5 == 4 { 503 } else { 200 }, Duration::ZERO).await;
    let url = format!("http://{addr}/health");
    let lenient = HttpCheck::builder(&url)
        .requests(5)
        .min_success_ratio(0.8)
        .build()
        .unwrap();
    assert_eq!(lenient.check(&ctx()).await, Verdict::Healthy);
    let strict = HttpCheck::builder(&url).requests(5).build().unwrap();
    match strict.check(&ctx()).await {
        Verdict::Unhealthy { reason } => assert!(
            reason.contains("4/5") && reason.contains("status 503"),
            "{reason}"
        ),
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn expected_status_range_is_honoured() {
    let addr = serve(|_| 404, Duration::ZERO).await;
    let url = format!("http://{addr}/");
    assert!(matches!(
        HttpCheck::builder(&url)
            .build()
            .unwrap()
            .check(&ctx())
            .await,
        Verdict::Unhealthy { .. }
    ));
    let check = HttpCheck::builder(&url)
        .expect_status(200..=404)
        .build()
        .unwrap();
    assert_eq!(check.check(&ctx()).await, Verdict::Healthy);
}

#[tokio::test]
async fn a_slow_server_fails_on_timeout() {
    let addr = serve(|_| 200, Duration::from_secs(30)).await;
    let check = HttpCheck::builder(format!("http://{addr}/"))
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    match check.check(&ctx()).await {
        Verdict::Unhealthy { reason } => assert!(reason.contains("timed out"), "{reason}"),
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn a_refused_connection_is_unhealthy() {
    // Bind then drop to get a port with nothing listening.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let check = HttpCheck::builder(format!("http://127.0.0.1:{port}/"))
        .build()
        .unwrap();
    assert!(matches!(
        check.check(&ctx()).await,
        Verdict::Unhealthy { .. }
    ));
}
