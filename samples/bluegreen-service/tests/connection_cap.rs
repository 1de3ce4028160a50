//! The service under a low open-file limit (256, as in the reproduction),
//! spawned as a user runs it: 370 idle connections do not stop a normal request from
//! being answered promptly, and the log does not fill with failed accepts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn idle_connections_beyond_the_descriptor_limit_do_not_block_a_request() {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 256 && exec {}",
            env!("CARGO_BIN_EXE_bluegreen-service")
        ))
        .env("SERVICE_PORT", "0")
        .env("AWS_XRAY_DAEMON_ADDRESS", "127.0.0.1:2000")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));

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
    child.kill().unwrap();
    let _ = child.wait();
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();

    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}\n{log}");
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    let failed_accepts = log.matches("accept failed").count();
    assert!(
        failed_accepts <= 2,
        "{failed_accepts} accept failures logged:\n{log}"
    );
}
