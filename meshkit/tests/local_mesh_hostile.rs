//! The local mesh against clients that misbehave, over raw sockets on loopback: a
//! client's broken or missing body is the client's failure, never the target's;
//! ambiguous requests are refused; forwarding headers are appended; at its connection
//! cap the gateway keeps answering.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use meshkit::traffic::Weights;
use meshkit::traffic::local::LocalMesh;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An upstream that reads the whole body, then answers 200 with the request's header
/// lines (`name: value`, sorted) and the body's length.
async fn echo_upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let mut lines: Vec<String> = req
                        .headers()
                        .iter()
                        .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("?")))
                        .collect();
                    lines.sort();
                    let body = match req.into_body().collect().await {
                        Ok(b) => format!("body {}", b.to_bytes().len()),
                        Err(e) => format!("body error {e}"),
                    };
                    lines.push(body);
                    let resp = Response::builder()
                        .header("proxy-connection", "keep-alive")
                        .body(Full::new(Bytes::from(lines.join("\n"))))
                        .unwrap();
                    Ok::<_, Infallible>(resp)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

async fn mesh(upstream: SocketAddr, timeout: Duration) -> LocalMesh {
    LocalMesh::builder()
        .route("split", "/", [("green", upstream)])
        .weights("split", Weights::new([("green", 100)]).unwrap())
        .upstream_timeout(timeout)
        .start()
        .await
        .unwrap()
}

/// Sends `raw` on a new connection and returns what comes back until the server closes
/// or `limit` passes.
async fn exchange(addr: SocketAddr, raw: &[u8], limit: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn status(response: &str) -> &str {
    response.split(' ').nth(1).unwrap_or("none")
}

#[tokio::test]
async fn a_clients_broken_body_is_a_4xx_and_never_the_targets_failure() {
    let mesh = mesh(echo_upstream().await, Duration::from_secs(2)).await;
    let gw = mesh.gateway_addr();
    // The reproduction: a chunked body with a chunk size that is not hex.
    for _ in 0..5 {
        let r = exchange(
            gw,
            b"POST /split HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(status(&r), "400", "{r}");
    }
    // An upload cut short: the client says 100 bytes, sends 10, and goes away.
    {
        let mut s = TcpStream::connect(gw).await.unwrap();
        s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
            .await
            .unwrap();
        s.shutdown().await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    }
    // A body that never arrives: the upstream timeout (2 s) passes, 408.
    let r = exchange(
        gw,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123",
        Duration::from_secs(6),
    )
    .await;
    assert_eq!(status(&r), "408", "{r}");
    // A healthy request still goes through.
    let r = exchange(
        gw,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status(&r), "200", "{r}");

    // Wait for the cut-short upload to be counted, with a deadline.
    let until = Instant::now() + Duration::from_secs(5);
    while mesh.client_errors("split") < Some(7) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(mesh.client_errors("split"), Some(7));
    let totals = mesh.totals("split").unwrap();
    let green = &totals[0].1;
    assert_eq!(green.upstream_errors, 0, "{green:?}");
    assert_eq!(green.responses[4], 0, "no 5xx against green: {green:?}");
    let metrics = mesh.prometheus_text();
    assert!(
        metrics.contains("meshkit_client_errors_total{route=\"split\"} 7"),
        "{metrics}"
    );
}

#[tokio::test]
async fn ambiguous_requests_are_refused_and_forwarding_headers_appended() {
    let mesh = mesh(echo_upstream().await, Duration::from_secs(2)).await;
    let gw = mesh.gateway_addr();
    let cases: [(&[u8], &str); 4] = [
        (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", "400"),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
            "400",
        ),
        (
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
            "405",
        ),
        // HTTP/1.0 needs no Host.
        (b"GET / HTTP/1.0\r\n\r\n", "200"),
    ];
    for (raw, expected) in cases {
        let r = exchange(gw, raw, Duration::from_secs(5)).await;
        assert_eq!(
            status(&r),
            expected,
            "{}: {r}",
            String::from_utf8_lossy(raw)
        );
    }
    let r = exchange(
        gw,
        b"GET / HTTP/1.1\r\nHost: x\r\nProxy-Connection: keep-alive\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status(&r), "200", "{r}");
    let (head, body) = r.split_once("\r\n\r\n").unwrap();
    assert!(
        !head.to_ascii_lowercase().contains("proxy-connection"),
        "stripped from the response: {head}"
    );
    assert!(
        !body.contains("proxy-connection"),
        "stripped from the request: {body}"
    );
    assert!(
        body.contains("x-forwarded-for: 203.0.113.7, 127.0.0.1"),
        "{body}"
    );
    assert!(body.contains("x-forwarded-proto: http\n"), "{body}");
}

#[tokio::test]
async fn at_the_connection_cap_idle_connections_make_room_and_requests_are_answered() {
    let upstream = echo_upstream().await;
    let mesh = LocalMesh::builder()
        .route("split", "/", [("green", upstream)])
        .weights("split", Weights::new([("green", 100)]).unwrap())
        .max_connections(8)
        .workers(1)
        .start()
        .await
        .unwrap();
    let gw = mesh.gateway_addr();
    // 40 idle connections, five times the cap: they say nothing.
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(TcpStream::connect(gw).await.unwrap());
    }
    let started = Instant::now();
    let r = exchange(
        gw,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status(&r), "200", "{r}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered after {:?}",
        started.elapsed()
    );
    drop(idle);
}

/// v1 → v2 → v3 back to back on the local mesh: each promotion takes the old version
/// off the route, and the next rollout starts from there.
#[tokio::test]
async fn back_to_back_rollouts_on_the_local_mesh() {
    use meshkit::Rollout;
    use meshkit::health::{Verdict, from_fn};
    use meshkit::strategy::Canary;
    let up = echo_upstream().await;
    let mesh = LocalMesh::builder()
        .route("split", "/", [("v1", up), ("v2", up), ("v3", up)])
        .start()
        .await
        .unwrap();
    for (from, to) in [("v1", "v2"), ("v2", "v3")] {
        let outcome = Rollout::builder()
            .router(mesh.router())
            .route("split")
            .from(from)
            .to(to)
            .strategy(Canary::steps([50, 100]).bake(Duration::from_millis(40)))
            .check(from_fn("ok", |_| async { Verdict::Healthy }))
            .check_interval(Duration::from_millis(20))
            .check_timeout(Duration::from_millis(20))
            .build()
            .unwrap()
            .run()
            .await
            .unwrap_or_else(|e| panic!("{from}->{to}: {e}"));
        assert!(outcome.is_promoted(), "{from}->{to}: {outcome}");
        // The old version is off the route; a version not yet rolled out stays at 0.
        let w = outcome.weights();
        assert!(
            w.is_all_on(to) && w.get(from).is_none(),
            "{from}->{to}: {w}"
        );
    }
    let r = exchange(
        mesh.gateway_addr(),
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status(&r), "200", "{r}");
    let routes = mesh.prometheus_text();
    assert!(
        routes.contains("meshkit_route_weight{route=\"split\",target=\"v3\"} 100"),
        "{routes}"
    );
    assert!(
        routes.contains("meshkit_route_weight{route=\"split\",target=\"v1\"} 0"),
        "{routes}"
    );
}

/// A target that stops reading a large upload is the target's failure (504, counted
/// against it), not the client's: the client sent everything it was asked for.
#[tokio::test]
async fn a_target_that_stops_reading_an_upload_is_the_targets_failure() {
    // Reads the request head, then neither reads the body nor answers.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stuck = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut head = [0u8; 1024];
                let _ = s.read(&mut head).await;
                std::future::pending::<()>().await;
            });
        }
    });
    let mesh = mesh(stuck, Duration::from_secs(1)).await;
    let gw = mesh.gateway_addr();
    let len = 64 * 1024 * 1024;
    let mut s = TcpStream::connect(gw).await.unwrap();
    let head = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    // The client keeps sending (it blocks once the buffers on the way are full).
    let upload = tokio::spawn(async move {
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..len / chunk.len() {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    // The answer's head, once it comes (the connection stays open meanwhile).
    let mut answer = Vec::new();
    let head = async {
        let mut buf = [0u8; 1024];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), head).await;
    upload.abort();
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status(&answer), "504", "{answer}");
    assert_eq!(mesh.client_errors("split"), Some(0));
    let green = &mesh.totals("split").unwrap()[0].1;
    assert_eq!(green.upstream_errors, 1, "{green:?}");
}
