//! The daemon side of tracing: where segments are sent, and how a bad daemon address
//! is reported.

use std::net::UdpSocket;
use std::process::Command;
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

/// Set in the child process that [`daemon_address_report`] starts.
const CHILD: &str = "SAMPLE_SUPPORT_DAEMON_CHILD";

/// What `Tracing::from_env` logs for `AWS_XRAY_DAEMON_ADDRESS=value`, from a child
/// process (this test binary, running only [`from_env_child`]) so that this process's
/// environment is left alone.
fn daemon_address_report(value: &str) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "from_env_child", "--ignored", "--nocapture"])
        .env(CHILD, "1")
        .env("AWS_XRAY_DAEMON_ADDRESS", value)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let ran = String::from_utf8_lossy(&out.stdout).contains("1 passed");
    assert!(out.status.success() && ran, "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
#[ignore = "run in a child process by an_unresolvable_daemon_host_is_reported_as_such"]
fn from_env_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    sample_support::init_logs();
    Tracing::from_env("svc", "1").shutdown();
}

#[test]
fn an_unresolvable_daemon_host_is_reported_as_such() {
    let report = daemon_address_report("xray-daemon.invalid:2000");
    assert!(
        report.contains("could not be resolved"),
        "unresolvable host: {report}"
    );
    assert!(!report.contains("not host:port"), "{report}");

    for malformed in ["localhost", "localhost:port", "127.0.0.1:99999", ":2000"] {
        let report = daemon_address_report(malformed);
        assert!(report.contains("not host:port"), "{malformed}: {report}");
        assert!(!report.contains("could not be resolved"), "{report}");
    }

    // A good address logs nothing.
    let report = daemon_address_report("127.0.0.1:2000");
    assert!(!report.contains("AWS_XRAY_DAEMON_ADDRESS"), "{report}");
}
