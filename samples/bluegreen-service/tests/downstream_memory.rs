//! `/downstream/` under 100 concurrent calls whose answers are 1 MiB of JSON each, on
//! the real binary: memory stays bounded (the issue measured 147 MB peak before), and
//! calls beyond `DOWNSTREAM_CONCURRENCY` get a clear 503 at once.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::Duration;

/// A downstream that answers every request with ~1 MiB of JSON, after 300 ms (so the
/// calls overlap).
fn big_downstream() -> std::net::SocketAddr {
    let body = {
        let item = r#"{"k":"0123456789abcdef0123456789abcdef0123456789abcdef"},"#;
        let n = (1024 * 1024 - 64) / item.len();
        let mut b = String::from("{\"items\":[");
        for _ in 0..n {
            b.push_str(item);
        }
        b.pop();
        b.push_str("]}");
        Arc::new(b)
    };
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let body = body.clone();
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                std::thread::sleep(Duration::from_millis(300));
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(body.as_bytes());
            });
        }
    });
    addr
}

fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn a_hundred_1mib_answers_at_once_stay_within_tens_of_mb() {
    let downstream = big_downstream();
    let allow = downstream.to_string();
    let (child, port) = common::spawn_service(
        "",
        &[
            ("DOWNSTREAM_ALLOW", allow.as_str()),
            ("AWS_XRAY_DAEMON_ADDRESS", "127.0.0.1:2000"),
            ("RUST_LOG", "warn"),
        ],
    );
    let before = peak_kib(child.id());

    let start = Arc::new(Barrier::new(100));
    let calls: Vec<_> = (0..100)
        .map(|_| {
            let start = start.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                start.wait();
                let req = format!(
                    "GET /downstream/{downstream} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                );
                s.write_all(req.as_bytes()).unwrap();
                let mut answer = Vec::new();
                let _ = s.read_to_end(&mut answer);
                let status = String::from_utf8_lossy(&answer[..answer.len().min(12)]).into_owned();
                let busy = answer.len() < 4096
                    && String::from_utf8_lossy(&answer).contains("DOWNSTREAM_BUSY");
                (status, answer.len(), busy)
            })
        })
        .collect();
    let answers: Vec<(String, usize, bool)> =
        calls.into_iter().map(|c| c.join().unwrap()).collect();
    let peak = peak_kib(child.id());
    common::stop(child);

    let ok = answers
        .iter()
        .filter(|(s, len, _)| s == "HTTP/1.1 200" && *len > 1024 * 1024)
        .count();
    let busy = answers
        .iter()
        .filter(|(s, _, busy)| s == "HTTP/1.1 503" && *busy)
        .count();
    eprintln!(
        "/downstream, 100 concurrent 1 MiB answers: {ok} fetched, {busy} busy; peak RSS {} KiB (at start {before} KiB)",
        peak
    );
    assert_eq!(ok + busy, 100, "{ok} fetched, {busy} busy");
    assert!(
        ok >= 16,
        "at least DOWNSTREAM_CONCURRENCY calls succeed: {ok}"
    );
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
}
