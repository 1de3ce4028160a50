//! The reproduction: a client that sends a broken chunked body to the demo's
//! gateway many times a second, during a healthy run. Its failures are the client's:
//! they are answered 400, counted as client errors, and never fail green, so the run
//! still promotes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const BROKEN: &[u8] = b"POST /split HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n\r\n";

/// `http://host:port/...` → `host:port`.
fn authority(url: &str) -> String {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// One GET of the mesh's metrics; the value of `meshkit_client_errors_total`.
fn client_errors(metrics: &str) -> Option<u64> {
    let mut s = TcpStream::connect(metrics).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines()
        .find(|l| l.starts_with("meshkit_client_errors_total"))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

#[test]
fn a_hostile_client_cannot_roll_back_a_healthy_green() {
    let mut demo = Command::new(env!("CARGO_BIN_EXE_meshkit-demo"))
        .args(["--fast", "--json"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut progress = BufReader::new(demo.stderr.take().unwrap());
    let (mut gateway, mut metrics) = (None, None);
    let mut line = String::new();
    while gateway.is_none() || metrics.is_none() {
        line.clear();
        assert!(
            progress.read_line(&mut line).unwrap() > 0,
            "no addresses printed"
        );
        if let Some(url) = line.trim().strip_prefix("mesh gateway ") {
            gateway = Some(authority(url));
        }
        if let Some(url) = line.trim().strip_prefix("mesh metrics ") {
            metrics = Some(authority(url));
        }
    }
    let (gateway, metrics) = (gateway.unwrap(), metrics.unwrap());
    // Keep draining progress so the demo never blocks on a full pipe.
    std::thread::spawn(move || for _ in progress.lines() {});

    let done = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let last_count = Arc::new(AtomicU64::new(0));
    let hostile = {
        let (done, sent, refused, last_count) = (
            done.clone(),
            sent.clone(),
            refused.clone(),
            last_count.clone(),
        );
        std::thread::spawn(move || {
            // Ten a second (the reproduction sent one), bounded by the run.
            for _ in 0..600 {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(mut s) = TcpStream::connect(&gateway) {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    let _ = s.write_all(BROKEN);
                    let mut answer = String::new();
                    let _ = s.read_to_string(&mut answer);
                    sent.fetch_add(1, Ordering::SeqCst);
                    if answer.starts_with("HTTP/1.1 400") {
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                }
                if let Some(n) = client_errors(&metrics) {
                    last_count.store(n, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let mut stdout = String::new();
    demo.stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let code = demo.wait().unwrap().code();
    done.store(true, Ordering::SeqCst);
    hostile.join().unwrap();

    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let (sent, refused, counted) = (
        sent.load(Ordering::SeqCst),
        refused.load(Ordering::SeqCst),
        last_count.load(Ordering::SeqCst),
    );
    eprintln!(
        "hostile client: {sent} broken requests sent, {refused} answered 400, \
         mesh client_errors_total {counted}; outcome {}",
        summary["outcome"]
    );
    assert_eq!(code, Some(0), "{summary}");
    assert_eq!(summary["outcome"], "promoted", "{summary}");
    assert!(
        sent >= 20,
        "the hostile client ran during the rollout: {sent}"
    );
    assert_eq!(refused, sent, "every broken request is the client's 400");
    assert!(
        counted >= sent - 1,
        "counted as client errors: {counted} of {sent}"
    );
}
