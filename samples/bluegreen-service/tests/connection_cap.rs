//! The service under a low open-file limit (256, as in the reproduction),
//! spawned as a user runs it: 370 idle connections do not stop a normal request from
//! being answered promptly, and the log does not fill with failed accepts.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn idle_connections_beyond_the_descriptor_limit_do_not_block_a_request() {
    let (child, port) = common::spawn_service(
        "ulimit -n 256 &&",
        &[("AWS_XRAY_DAEMON_ADDRESS", "127.0.0.1:2000")],
    );
    let idle: Vec<TcpStream> = (0..370)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let started = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let took = started.elapsed();
    drop(idle);
    let log = common::stop(child);

    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}\n{log}");
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    let failed_accepts = log.matches("accept failed").count();
    assert!(
        failed_accepts <= 2,
        "{failed_accepts} accept failures logged:\n{log}"
    );
}
