//! The daemon side of tracing: where segments are sent, and how a bad daemon address
//! is reported.

use std::net::UdpSocket;
use std::time::Duration;

use http::HeaderMap;
use sample_support::xray::{Sampling, Tracing, TracingConfig};

#[test]
fn an_ipv6_daemon_receives_segments() {
    let daemon = UdpSocket::bind("[::1]:0").expect("IPv6 loopback");
    daemon
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let tracing = Tracing::new(TracingConfig {
        service: "svc6".into(),
        version: "1".into(),
        daemon: daemon.local_addr().unwrap(),
        sampling: Sampling::Always,
        batch_delay: Duration::from_millis(20),
    })
    .expect("a client for an IPv6 daemon");
    let cx = tracing.server_span(&HeaderMap::new(), "GET", "/", "1");
    let trace_id = Tracing::xray_trace_id(&cx);
    Tracing::finish(&cx, 200);
    tracing.flush();

    let mut buf = vec![0u8; 65_536];
    let n = daemon
        .recv(&mut buf)
        .expect("a segment within the deadline");
    let text = std::str::from_utf8(&buf[..n]).unwrap();
    let (header, body) = text.split_once('\n').unwrap();
    assert_eq!(header, r#"{"format": "json", "version": 1}"#);
    let doc: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(doc["name"], "svc6", "{doc:#}");
    assert_eq!(doc["trace_id"], trace_id.as_str(), "{doc:#}");
    tracing.shutdown();
}
