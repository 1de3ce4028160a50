//! The local mesh's data plane and control plane, with real HTTP on loopback.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshkit::TrafficError;
use meshkit::health::MetricsSource;
use meshkit::traffic::local::LocalMesh;
use meshkit::traffic::{RouteRef, TrafficRouter, Weights, WriteRequest};
use tokio::net::TcpListener;

/// Serves `answer` over HTTP/1 on a loopback port, for the life of the test.
async fn serve_upstream<F, Fut>(answer: F) -> SocketAddr
where
    F: Fn(Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let r = answer(req);
                    async move { Ok::<_, Infallible>(r.await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

/// An upstream answering `<name> <path>` after `delay`, or 500 when `fail`.
async fn upstream(name: &'static str, delay: Duration, fail: bool) -> SocketAddr {
    serve_upstream(move |req| async move {
        tokio::time::sleep(delay).await;
        let mut r = Response::new(Full::new(Bytes::from(format!("{name} {}", req.uri()))));
        if fail {
            *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        }
        r
    })
    .await
}

type C = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

fn client() -> C {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn get(c: &C, url: &str) -> (u16, String) {
    let resp = c.get(url.parse().unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn split(green: u8) -> Weights {
    Weights::split("blue", "green", green).unwrap()
}

async fn write(mesh: &LocalMesh, route: &str, w: Weights) {
    let req = WriteRequest {
        weights: w,
        token: "t".into(),
    };
    mesh.router()
        .write(&RouteRef::new(route).unwrap(), &req)
        .await
        .unwrap();
}

#[tokio::test]
async fn routes_by_prefix_rewrites_it_and_splits_exactly() {
    let (blue, green) = (
        upstream("blue", Duration::ZERO, false).await,
        upstream("green", Duration::ZERO, false).await,
    );
    let mesh = LocalMesh::builder()
        .route("split", "/split", [("blue", blue), ("green", green)])
        .route("other", "/", [("blue", blue)])
        .start()
        .await
        .unwrap();
    let c = client();
    let base = format!("http://{}", mesh.gateway_addr());
    assert_eq!(
        get(&c, &format!("{base}/split/a/b?x=1")).await,
        (200, "blue /a/b?x=1".into())
    );
    assert_eq!(
        get(&c, &format!("{base}/splitter")).await,
        (200, "blue /splitter".into()),
        "longest matching prefix, whole segments"
    );
    write(&mesh, "split", split(30)).await;
    let mut green_hits = 0;
    for _ in 0..1000 {
        if get(&c, &format!("{base}/split"))
            .await
            .1
            .starts_with("green")
        {
            green_hits += 1;
        }
    }
    assert_eq!(
        green_hits, 300,
        "the schedule is exact over every 100 requests"
    );
    let totals = mesh.totals("split").unwrap();
    assert_eq!(totals[1].1.requests, 300);
    assert_eq!(totals[0].1.responses[1], 701);
}

/// An upstream that reports each request's arrival and answers only when released.
async fn gated(
    name: &'static str,
) -> (
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<()>,
    std::sync::Arc<tokio::sync::Notify>,
) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (arrived, rx) = tokio::sync::mpsc::unbounded_channel();
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let gate = release.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let (arrived, gate) = (arrived.clone(), gate.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |_req: Request<hyper::body::Incoming>| {
                    let (arrived, gate) = (arrived.clone(), gate.clone());
                    async move {
                        let released = gate.notified();
                        let _ = arrived.send(());
                        released.await;
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(name))))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, rx, release)
}

#[tokio::test]
async fn a_weight_change_applies_to_new_requests_and_keeps_in_flight_ones() {
    let (blue, mut arrived, release) = gated("blue").await;
    let green = upstream("green", Duration::ZERO, false).await;
    let mesh = LocalMesh::builder()
        .route("split", "/", [("blue", blue), ("green", green)])
        .start()
        .await
        .unwrap();
    let url = format!("http://{}/", mesh.gateway_addr());
    let (c, u) = (client(), url.clone());
    let in_flight = tokio::spawn(async move { get(&c, &u).await });
    arrived.recv().await.unwrap();
    // The request is now held inside blue: switch all traffic to green.
    write(&mesh, "split", split(100)).await;
    let c = client();
    for _ in 0..10 {
        assert!(get(&c, &url).await.1.starts_with("green"));
    }
    release.notify_waiters();
    assert_eq!(
        in_flight.await.unwrap(),
        (200, "blue".into()),
        "the in-flight request finished on blue"
    );
}

#[tokio::test]
async fn failures_are_counted_and_exposed() {
    let blue = upstream("blue", Duration::ZERO, true).await;
    let down = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let mesh = LocalMesh::builder()
        .route("split", "/", [("blue", blue), ("green", down)])
        .start()
        .await
        .unwrap();
    write(&mesh, "split", split(50)).await;
    let c = client();
    let url = format!("http://{}/", mesh.gateway_addr());
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(get(&c, &url).await.0);
    }
    statuses.sort();
    assert_eq!(statuses, [500, 500, 500, 500, 500, 502, 502, 502, 502, 502]);
    let w = mesh
        .metrics("split")
        .window("green", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!((w.requests, w.failures), (5, 5));
    let metrics = get(&c, &format!("http://{}/metrics", mesh.admin_addr()))
        .await
        .1;
    assert!(
        metrics.contains("meshkit_upstream_errors_total{route=\"split\",target=\"green\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("meshkit_responses_total{route=\"split\",target=\"blue\",class=\"5xx\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("meshkit_route_weight{route=\"split\",target=\"green\"} 50"),
        "{metrics}"
    );
    let routes: serde_json::Value = serde_json::from_str(
        &get(&c, &format!("http://{}/routes", mesh.admin_addr()))
            .await
            .1,
    )
    .unwrap();
    assert_eq!(routes[0]["weights"]["green"], 50);
    assert_eq!(routes[0]["revision"], 2);
}

#[tokio::test]
async fn the_router_refuses_unknown_routes_and_targets() {
    let blue = upstream("blue", Duration::ZERO, false).await;
    let mesh = LocalMesh::builder()
        .route("split", "/", [("blue", blue)])
        .start()
        .await
        .unwrap();
    let r = mesh.router();
    let err = r.read(&RouteRef::new("nope").unwrap()).await.unwrap_err();
    assert!(err.is_not_found());
    let req = WriteRequest {
        weights: Weights::new([("purple", 100)]).unwrap(),
        token: "t".into(),
    };
    assert!(matches!(
        r.write(&RouteRef::new("split").unwrap(), &req).await,
        Err(TrafficError::BadRequest { .. })
    ));
    assert_eq!(
        r.read(&RouteRef::new("split").unwrap())
            .await
            .unwrap()
            .weights,
        Weights::new([("blue", 100)]).unwrap()
    );
    assert!(LocalMesh::builder().start().await.is_err(), "no routes");
    assert!(
        LocalMesh::builder()
            .route("a", "nope", [("x", blue)])
            .start()
            .await
            .is_err(),
        "prefix without /"
    );
    assert!(
        LocalMesh::builder()
            .route("a", "/a", [("x", blue)])
            .route("a", "/b", [("x", blue)])
            .start()
            .await
            .is_err()
    );
}

/// An upstream that answers one request per connection, then closes it without
/// saying so (no `Connection: close`), like a server whose idle timeout fired.
/// Counts the connections it accepted.
async fn one_shot_upstream() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                // Dropping the socket closes it.
            });
        }
    });
    (addr, accepted)
}

/// A mesh with one route, `/split`, sending everything to `addr`.
async fn one_target_mesh(addr: SocketAddr) -> LocalMesh {
    LocalMesh::builder()
        .route("split", "/split", [("blue", addr)])
        .weights("split", Weights::new([("blue", 100)]).unwrap())
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_upstream_connection_closed_while_idle_is_replaced() {
    let (addr, accepted) = one_shot_upstream().await;
    let mesh = one_target_mesh(addr).await;
    // One client, so its keep-alive connection to the gateway is reused.
    let c = client();
    let url = format!("http://{}/split", mesh.gateway_addr());
    for _ in 0..5 {
        assert_eq!(get(&c, &url).await, (200, "ok".to_string()));
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 5);
    assert_eq!(mesh.totals("split").unwrap()[0].1.upstream_errors, 0);
}

/// A client that opens a new connection for every request.
fn client_without_reuse() -> C {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http()
}

#[tokio::test]
async fn connections_spread_over_workers_keep_the_split_exact() {
    let blue = upstream("blue", Duration::ZERO, false).await;
    let green = upstream("green", Duration::ZERO, false).await;
    let mesh = LocalMesh::builder()
        .workers(3)
        .route("split", "/", [("blue", blue), ("green", green)])
        .weights("split", split(10))
        .start()
        .await
        .unwrap();
    let c = client_without_reuse();
    let url = format!("http://{}/", mesh.gateway_addr());
    let mut green_seen = 0;
    // Connections are dealt out in turn, so each of the 3 workers takes 100 requests
    // and walks its own schedule: exactly 10 green each.
    for _ in 0..300 {
        let (status, body) = get(&c, &url).await;
        assert_eq!(status, 200);
        green_seen += usize::from(body.starts_with("green"));
    }
    assert_eq!(green_seen, 30);
    let totals = mesh.totals("split").unwrap();
    let requests: Vec<u64> = totals.iter().map(|(_, t)| t.requests).collect();
    assert_eq!(requests, [270, 30], "the workers' statistics shards add up");
    mesh.shutdown().await;
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_on_a_worker_finish() {
    let (blue, mut arrived, release) = gated("blue").await;
    let mesh = LocalMesh::builder()
        .workers(2)
        .route("split", "/", [("blue", blue)])
        .start()
        .await
        .unwrap();
    let gateway = mesh.gateway_addr();
    let url = format!("http://{gateway}/");
    let in_flight = tokio::spawn(async move { get(&client(), &url).await });
    arrived.recv().await.unwrap();
    // The request is held inside blue while the mesh shuts down.
    let shutdown = tokio::spawn(mesh.shutdown());
    tokio::task::yield_now().await;
    assert!(!shutdown.is_finished(), "shutdown waits for the request");
    release.notify_waiters();
    assert_eq!(in_flight.await.unwrap(), (200, "blue".into()));
    shutdown.await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(gateway).await.is_err(),
        "the gateway no longer accepts"
    );
}

#[tokio::test]
async fn a_late_upstream_gets_a_504_and_the_connection_keeps_its_timer() {
    // Slow only for paths containing "slow".
    let addr = serve_upstream(|req| async move {
        if req.uri().path().contains("slow") {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        Response::new(Full::new(Bytes::from("blue")))
    })
    .await;
    let mesh = LocalMesh::builder()
        .workers(1)
        .upstream_timeout(Duration::from_millis(100))
        .route("split", "/", [("blue", addr)])
        .start()
        .await
        .unwrap();
    let gw = mesh.gateway_addr();
    // One client connection for all requests: the timer is reused, fired or not.
    let c = client();
    for path in ["slow", "fast", "slow", "fast", "fast"] {
        let (status, body) = get(&c, &format!("http://{gw}/{path}")).await;
        if path == "slow" {
            assert_eq!(status, 504, "{body}");
            assert!(body.contains("timed out"), "{body}");
        } else {
            assert_eq!((status, body.as_str()), (200, "blue"));
        }
    }
    let totals = mesh.totals("split").unwrap();
    assert_eq!(totals[0].1.requests, 5);
    assert_eq!(totals[0].1.upstream_errors, 2);
}

/// An upstream that answers with the names of the request headers it received, one per
/// line, sorted, and names a header of its own in `Connection`.
async fn header_echo_upstream() -> SocketAddr {
    serve_upstream(|req| async move {
        let mut names: Vec<&str> = req.headers().keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        Response::builder()
            .header("connection", "x-upstream-hop")
            .header("x-upstream-hop", "1")
            .header("x-upstream-kept", "1")
            .body(Full::new(Bytes::from(names.join("\n"))))
            .unwrap()
    })
    .await
}

#[tokio::test]
async fn headers_named_in_connection_are_not_forwarded() {
    let addr = header_echo_upstream().await;
    let mesh = one_target_mesh(addr).await;
    let req = Request::get(format!("http://{}/split", mesh.gateway_addr()))
        .header("connection", "X-Client-Hop, keep-alive")
        .header("x-client-hop", "secret")
        .header("x-client-kept", "1")
        .header("keep-alive", "timeout=5")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = client().request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-upstream-hop").is_none());
    assert_eq!(resp.headers()["x-upstream-kept"], "1");
    assert!(resp.headers().get("connection").is_none());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let names: Vec<&str> = std::str::from_utf8(&body).unwrap().lines().collect();
    // The mesh adds the client's address and the scheme, as a reverse proxy does.
    assert_eq!(
        names,
        [
            "host",
            "x-client-kept",
            "x-forwarded-for",
            "x-forwarded-proto"
        ]
    );
}
