//! Endpoint behaviour against the spec, on real sockets.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bluegreen_service::{App, Config};
use sample_support::xray::{Sampling, Tracing};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(cfg: Config) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    let tracing = Tracing::local_only(&cfg.name, &cfg.version, Sampling::Never);
    let task = tokio::spawn(App::new(cfg, tracing).serve(listener, async {
        let _ = rx.await;
    }));
    Running {
        addr,
        stop: Some(tx),
        task,
    }
}

fn named(name: &str, version: &str) -> Config {
    Config {
        name: name.into(),
        version: version.into(),
        ..Config::default()
    }
}

/// A raw HTTP/1.1 exchange; returns (status, headers, body).
async fn request(addr: SocketAddr, raw: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
    .await
}

#[tokio::test]
async fn root_and_catch_all_answer_ok_json_in_key_order() {
    let svc = start(named("blue", "1")).await;
    let want = r#"{"message":"ok","service":"blue","version":"1"}"#;
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/any/path?x=1"),
        ("POST", "/orders"),
        ("DELETE", "/"),
        ("PATCH", "/downstream/"),
    ] {
        let (status, head, body) =
            request(svc.addr, &format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")).await;
        assert_eq!((status, body.as_str()), (200, want), "{method} {path}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{head}"
        );
    }
}

#[tokio::test]
async fn env_defaults_and_empty_strings() {
    let svc = start(Config::default()).await;
    assert_eq!(
        get(svc.addr, "/").await.2,
        r#"{"message":"ok","service":"unknown","version":"unknown"}"#
    );
    let svc = start(named("", "")).await;
    assert_eq!(
        get(svc.addr, "/").await.2,
        r#"{"message":"ok","service":"","version":""}"#
    );
    let svc = start(named("quote\"d", "2.0")).await;
    assert_eq!(
        get(svc.addr, "/").await.2,
        r#"{"message":"ok","service":"quote\"d","version":"2.0"}"#
    );
}

#[tokio::test]
async fn downstream_fetches_allowed_services_and_wraps_the_json() {
    let green = start(named("green", "2")).await;
    let target = format!("127.0.0.1:{}", green.addr.port());
    let blue = start(Config {
        downstream_allow: vec![target.clone()],
        ..named("blue", "1")
    })
    .await;
    let want = r#"{"message":"fetched!","service":"blue","response":{"message":"ok","service":"green","version":"2"}}"#;
    let (status, _, body) = get(blue.addr, &format!("/downstream/{target}")).await;
    assert_eq!((status, body.as_str()), (200, want));
    // Prefix match: the segment after /downstream/ names the service.
    assert_eq!(
        get(blue.addr, &format!("/downstream/{target}/deeper/path"))
            .await
            .2,
        want
    );
}

#[tokio::test]
async fn downstream_refuses_anything_not_allowed() {
    let blue = start(Config {
        downstream_allow: vec!["green".into()],
        ..named("blue", "1")
    })
    .await;
    for target in [
        "169.254.169.254",
        "localhost:22",
        "green:8080",
        "evil.example",
    ] {
        let (status, _, body) = get(blue.addr, &format!("/downstream/{target}")).await;
        assert_eq!(status, 403, "{target}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["message"], "error");
        assert_eq!(v["service"], "blue");
        assert_eq!(v["error"]["code"], "DOWNSTREAM_NOT_ALLOWED");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("DOWNSTREAM_ALLOW")
        );
    }
}

#[tokio::test]
async fn downstream_timeout_answers_504() {
    // Accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = format!("127.0.0.1:{}", silent.local_addr().unwrap().port());
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let blue = start(Config {
        downstream_allow: vec![target.clone()],
        downstream_timeout: Duration::from_millis(200),
        ..named("blue", "1")
    })
    .await;
    let (status, _, body) = get(blue.addr, &format!("/downstream/{target}")).await;
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("DOWNSTREAM_TIMEOUT"), "{body}");
}

#[tokio::test]
async fn non_json_downstream_is_an_error_json_not_a_crash() {
    let text = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = format!("127.0.0.1:{}", text.local_addr().unwrap().port());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = text.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
                )
                .await;
        }
    });
    let blue = start(Config {
        downstream_allow: vec![target.clone()],
        ..named("blue", "1")
    })
    .await;
    let (status, _, body) = get(blue.addr, &format!("/downstream/{target}")).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body.starts_with(
            r#"{"message":"error","service":"blue","error":{"code":"DOWNSTREAM_NOT_JSON""#
        ),
        "{body}"
    );
    // And the service is still up.
    assert_eq!(get(blue.addr, "/").await.0, 200);
}

#[tokio::test]
async fn unreachable_downstream_is_500_like_the_original() {
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = format!("127.0.0.1:{port}");
    let blue = start(Config {
        downstream_allow: vec![target.clone()],
        ..named("blue", "1")
    })
    .await;
    let (status, _, body) = get(blue.addr, &format!("/downstream/{target}")).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("DOWNSTREAM_UNREACHABLE"), "{body}");
}

#[tokio::test]
async fn fault_switches() {
    let broken = start(Config {
        fail_rate: 1.0,
        ..named("green", "2")
    })
    .await;
    let (status, _, body) = get(broken.addr, "/").await;
    assert_eq!(status, 500);
    assert!(
        body.starts_with(
            r#"{"message":"error","service":"green","error":{"code":"INJECTED_FAILURE""#
        ),
        "{body}"
    );

    let half = start(Config {
        fail_rate: 0.5,
        ..named("green", "2")
    })
    .await;
    let mut failed = 0;
    for _ in 0..400 {
        if get(half.addr, "/").await.0 == 500 {
            failed += 1;
        }
    }
    assert!(
        (120..=280).contains(&failed),
        "{failed} of 400 failed at FAIL_RATE=0.5"
    );

    let slow = start(Config {
        extra_latency: Duration::from_millis(150),
        ..named("green", "2")
    })
    .await;
    let t = Instant::now();
    assert_eq!(get(slow.addr, "/").await.0, 200);
    assert!(t.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn trace_header_is_continued_and_echoed() {
    let svc = start(named("blue", "1")).await;
    let root = "1-5759e988-bd862e3fe1be46a994272793";
    let (_, head, _) = request(
        svc.addr,
        &format!("GET / HTTP/1.1\r\nHost: x\r\nX-Amzn-Trace-Id: Root={root};Parent=53995c3f42cd8ad8;Sampled=1\r\nConnection: close\r\n\r\n"),
    )
    .await;
    let echoed = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("x-amzn-trace-id:"))
        .unwrap_or_default();
    assert!(echoed.contains(&format!("Root={root}")), "{head}");
    // Without an incoming header a new trace is started and echoed.
    let (_, head, _) = get(svc.addr, "/").await;
    assert!(
        head.to_ascii_lowercase()
            .contains("x-amzn-trace-id: root=1-"),
        "{head}"
    );
}

#[tokio::test]
async fn limits_and_garbage_do_not_hurt_the_service() {
    let svc = start(named("blue", "1")).await;
    let (status, _, _) = request(
        svc.addr,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 413);
    let (status, _, _) = request(svc.addr, "\x16\x03\x01garbage\r\n\r\n").await;
    assert_eq!(status, 400);
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    let (status, _, _) = request(svc.addr, &huge).await;
    assert!(status == 431 || status == 400 || status == 0, "{status}");
    assert_eq!(get(svc.addr, "/").await.0, 200);
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    // A downstream the test controls: when it accepts, the request is in the handler.
    let down = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = format!("127.0.0.1:{}", down.local_addr().unwrap().port());
    let mut svc = start(Config {
        downstream_allow: vec![target.clone()],
        ..named("blue", "1")
    })
    .await;
    let addr = svc.addr;
    let in_flight = tokio::spawn(async move { get(addr, &format!("/downstream/{target}")).await });
    let (mut conn, _) = down.accept().await.unwrap();
    svc.stop.take().unwrap().send(()).unwrap();
    // Answer only after shutdown has started.
    let mut buf = [0u8; 1024];
    let _ = conn.read(&mut buf).await.unwrap();
    let body = r#"{"late":true}"#;
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(resp.as_bytes()).await.unwrap();
    let (status, _, body) = in_flight.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""response":{"late":true}"#), "{body}");
    svc.task.await.unwrap().unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}
