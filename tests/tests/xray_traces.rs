//! Traces across services, checked as real X-Ray segment documents in a fake daemon.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use meshkit_testing::{FakeXrayDaemon, Segment};
use sample_support::xray::{Sampling, Tracing, TracingConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(10);

fn tracing_to(daemon: SocketAddr, service: &str, version: &str) -> Tracing {
    Tracing::new(TracingConfig {
        service: service.into(),
        version: version.into(),
        daemon,
        sampling: Sampling::Always,
        batch_delay: Duration::from_millis(20),
    })
    .unwrap()
}

async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

async fn start_distributor(daemon: SocketAddr, version: &str) -> SocketAddr {
    let (l, addr) = listener().await;
    let cfg = gopher_distributor::Config {
        version: version.into(),
        port: 0,
        host: "testpod".into(),
    };
    let app = gopher_distributor::App::new(cfg, tracing_to(daemon, "distributor", version));
    tokio::spawn(app.serve(l, std::future::pending()));
    addr
}

async fn start_requester(daemon: SocketAddr, distributor: SocketAddr) -> SocketAddr {
    let (l, addr) = listener().await;
    let cfg = gopher_requester::Config {
        port: 0,
        distributor: format!("http://{distributor}/").parse().unwrap(),
        timeout: Duration::from_secs(2),
    };
    tokio::spawn(
        gopher_requester::App::new(cfg, tracing_to(daemon, "requester", "1"))
            .serve(l, std::future::pending()),
    );
    addr
}

async fn get(addr: SocketAddr, path: &str, extra: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        head.to_owned(),
        body.to_owned(),
    )
}

/// Checks `caller` segment → its client subsegment → `callee` segment, one trace.
fn assert_linked(segs: &[Segment], caller: &str, callee: &str) -> (String, Segment) {
    let by_id: HashMap<&str, &Segment> = segs.iter().map(|s| (s.id.as_str(), s)).collect();
    let top = segs
        .iter()
        .find(|s| s.is_segment && s.name == caller)
        .unwrap_or_else(|| panic!("no {caller} segment in {segs:#?}"));
    let down = segs
        .iter()
        .find(|s| s.is_segment && s.name == callee)
        .unwrap_or_else(|| panic!("no {callee} segment in {segs:#?}"));
    assert_eq!(down.trace_id, top.trace_id, "one trace id");
    let client = by_id
        .get(down.parent_id.as_deref().unwrap_or_default())
        .unwrap_or_else(|| panic!("{callee}'s parent not received: {segs:#?}"));
    assert!(
        !client.is_segment,
        "{callee}'s parent is the caller's client subsegment"
    );
    assert_eq!(
        client.parent_id.as_deref(),
        Some(top.id.as_str()),
        "client subsegment hangs off the {caller} segment"
    );
    assert_eq!(client.raw["namespace"], "remote", "{:#?}", client.raw);
    (top.trace_id.clone(), top.clone())
}

fn has_pair(caller: &'static str, callee: &'static str) -> impl Fn(&[Segment]) -> bool {
    move |s: &[Segment]| {
        let ids: HashMap<&str, &Segment> = s.iter().map(|x| (x.id.as_str(), x)).collect();
        s.iter().any(|d| {
            d.is_segment
                && d.name == callee
                && d.parent_id.as_deref().is_some_and(|p| ids.contains_key(p))
        }) && s.iter().any(|t| t.is_segment && t.name == caller)
    }
}

#[tokio::test]
async fn requester_to_distributor_is_one_linked_trace() {
    let daemon = FakeXrayDaemon::start().await.unwrap();
    let dist = start_distributor(daemon.addr(), "2").await;
    let req = start_requester(daemon.addr(), dist).await;
    let (status, head, body) = get(req, "/", "").await;
    assert_eq!(status, 200, "{body}");
    let segs = daemon
        .wait_for(WAIT, has_pair("requester", "distributor"))
        .await
        .unwrap_or_else(|s| panic!("{s:#?}"));
    let (trace_id, _) = assert_linked(&segs, "requester", "distributor");
    // The v2 body carries the last 16 hex chars of the trace id.
    let hex: String = trace_id.replace('-', "")[1..].to_owned();
    assert_eq!(
        body,
        format!(
            "Request >> Gopher Version 2 from pod testpod ({})",
            &hex[hex.len() - 16..]
        )
    );
    assert!(
        head.contains(&format!("Root={trace_id}")),
        "response echoes the trace: {head}"
    );
    assert!(daemon.rejected().is_empty());
}

#[tokio::test]
async fn a_header_without_sampled_is_still_traced_and_continued() {
    let daemon = FakeXrayDaemon::start().await.unwrap();
    let dist = start_distributor(daemon.addr(), "1").await;
    let req = start_requester(daemon.addr(), dist).await;
    // X-Ray trace ids start with their epoch; the exporter drops implausibly old ones.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let root = format!("1-{now:08x}-abcdefabcdefabcdefabcdef");
    let header = format!("X-Amzn-Trace-Id: Root={root};Parent=53995c3f42cd8ad8\r\n");
    let (status, _, body) = get(req, "/", &header).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "Request >> Gopher Version 1 from pod testpod")
    );
    let segs = daemon
        .wait_for(WAIT, has_pair("requester", "distributor"))
        .await
        .unwrap_or_else(|s| panic!("{s:#?}"));
    let (trace_id, top) = assert_linked(&segs, "requester", "distributor");
    assert_eq!(trace_id, root);
    assert_eq!(top.parent_id.as_deref(), Some("53995c3f42cd8ad8"));
}

/// A trace id for now: the exporter drops implausibly old ones.
fn fresh_root() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    format!("1-{now:08x}-abcdefabcdefabcdefabcdef")
}

#[tokio::test]
async fn a_header_without_parent_continues_the_trace_with_a_new_segment() {
    // The form an ALB adds, and a sampling decision without a parent.
    for form in ["", ";Sampled=1"] {
        let daemon = FakeXrayDaemon::start().await.unwrap();
        let dist = start_distributor(daemon.addr(), "1").await;
        let req = start_requester(daemon.addr(), dist).await;
        let root = fresh_root();
        let header = format!("X-Amzn-Trace-Id: Root={root}{form}\r\n");
        let (status, head, body) = get(req, "/", &header).await;
        assert_eq!(status, 200, "{body}");
        let segs = daemon
            .wait_for(WAIT, has_pair("requester", "distributor"))
            .await
            .unwrap_or_else(|s| panic!("{s:#?}"));
        let (trace_id, top) = assert_linked(&segs, "requester", "distributor");
        assert_eq!(trace_id, root, "Root={root}{form} is continued");
        assert_eq!(
            top.parent_id, None,
            "a new segment with no parent: {top:#?}"
        );
        assert!(
            head.contains(&format!("Root={root};Parent={};Sampled=1", top.id)),
            "{head}"
        );
        assert!(daemon.rejected().is_empty());
    }
}

#[tokio::test]
async fn a_deferred_decision_is_made_by_the_receiver() {
    let daemon = FakeXrayDaemon::start().await.unwrap();
    let dist = start_distributor(daemon.addr(), "1").await;
    let req = start_requester(daemon.addr(), dist).await;
    let root = fresh_root();
    let header = format!("X-Amzn-Trace-Id: Root={root};Parent=53995c3f42cd8ad8;Sampled=?\r\n");
    let (status, head, body) = get(req, "/", &header).await;
    assert_eq!(status, 200, "{body}");
    // Sampling::Always decided to sample: segments are sent, and the decision is
    // reported back and passed on.
    let segs = daemon
        .wait_for(WAIT, has_pair("requester", "distributor"))
        .await
        .unwrap_or_else(|s| panic!("{s:#?}"));
    let (trace_id, top) = assert_linked(&segs, "requester", "distributor");
    assert_eq!(trace_id, root);
    assert_eq!(top.parent_id.as_deref(), Some("53995c3f42cd8ad8"));
    assert!(
        head.contains(&format!("Root={root};Parent={};Sampled=1", top.id)),
        "{head}"
    );
}

#[tokio::test]
async fn json_form_and_downstream_failure() {
    let daemon = FakeXrayDaemon::start().await.unwrap();
    let dist = start_distributor(daemon.addr(), "2").await;
    let req = start_requester(daemon.addr(), dist).await;
    let (status, _, body) = get(req, "/", "Accept: application/json\r\n").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["distributor"]["version"], "2");
    assert_eq!(v["distributor"]["host"], "testpod");
    assert!(
        v["distributor"]["trace_id"]
            .as_str()
            .unwrap()
            .starts_with("1-")
    );

    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let lonely = start_requester(daemon.addr(), closed).await;
    let (status, _, body) = get(lonely, "/", "").await;
    assert_eq!(status, 502);
    assert!(
        body.starts_with("Request >> distributor unavailable: cannot reach 127.0.0.1"),
        "{body}"
    );
}

#[tokio::test]
async fn bluegreen_downstream_is_one_linked_trace() {
    let daemon = FakeXrayDaemon::start().await.unwrap();
    let (gl, gaddr) = listener().await;
    let green = bluegreen_service::Config {
        name: "green".into(),
        version: "2".into(),
        ..Default::default()
    };
    tokio::spawn(
        bluegreen_service::App::new(green, tracing_to(daemon.addr(), "green", "2"))
            .serve(gl, std::future::pending()),
    );
    let target = gaddr.to_string();
    let (bl, baddr) = listener().await;
    let blue = bluegreen_service::Config {
        name: "blue".into(),
        version: "1".into(),
        downstream_allow: vec![target.clone()],
        ..Default::default()
    };
    tokio::spawn(
        bluegreen_service::App::new(blue, tracing_to(daemon.addr(), "blue", "1"))
            .serve(bl, std::future::pending()),
    );
    let (status, _, body) = get(baddr, &format!("/downstream/{target}"), "").await;
    assert_eq!(status, 200, "{body}");
    let segs = daemon
        .wait_for(WAIT, has_pair("blue", "green"))
        .await
        .unwrap_or_else(|s| panic!("{s:#?}"));
    let (_, top) = assert_linked(&segs, "blue", "green");
    // The version is an indexed annotation, with the key sanitised.
    assert_eq!(
        top.raw["annotations"]["meshkit_version"], "1",
        "{:#?}",
        top.raw
    );
}

#[tokio::test]
async fn no_daemon_listening_loses_spans_not_requests() {
    // A UDP port with nothing behind it.
    let nobody = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dist = start_distributor(nobody, "1").await;
    let req = start_requester(nobody, dist).await;
    for _ in 0..50 {
        assert_eq!(get(req, "/", "").await.0, 200);
    }
}
