//! What the service says about `AWS_XRAY_DAEMON_ADDRESS` at start, read from the real
//! binary's log: a host that does not resolve is reported as such, a malformed value
//! as malformed, and a good one not at all. The service starts either way.

mod common;

/// The service's log up to the moment it listens, for `value`.
fn log_at_start(value: &str) -> String {
    let (child, _) = common::spawn_service(
        "",
        &[("AWS_XRAY_DAEMON_ADDRESS", value), ("RUST_LOG", "warn")],
    );
    common::stop(child)
}

#[test]
fn the_daemon_address_is_judged_for_what_it_is() {
    let report = log_at_start("xray-daemon.invalid:2000");
    assert!(report.contains("could not be resolved"), "{report}");
    assert!(!report.contains("not host:port"), "{report}");

    for malformed in ["localhost", "localhost:port", "127.0.0.1:99999", ":2000"] {
        let report = log_at_start(malformed);
        assert!(report.contains("not host:port"), "{malformed}: {report}");
        assert!(!report.contains("could not be resolved"), "{report}");
    }

    let report = log_at_start("127.0.0.1:2000");
    assert!(!report.contains("AWS_XRAY_DAEMON_ADDRESS"), "{report}");
}
