//! `mesh-proxy` (the local mesh as a standalone proxy) ends as a server should:
//! SIGTERM, like SIGINT, lets the request in flight finish and exits 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An upstream that says when a request reached it, then answers `slow` 1 s later.
fn slow_upstream() -> (std::net::SocketAddr, std::sync::mpsc::Receiver<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (arrived, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let arrived = arrived.clone();
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = arrived.send(());
                // The upstream's own work: the request stays in flight meanwhile.
                std::thread::sleep(Duration::from_secs(1));
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nslow",
                );
            });
        }
    });
    (addr, rx)
}

#[test]
fn sigterm_drains_the_request_in_flight_and_exits_0() {
    let (upstream, arrived) = slow_upstream();
    let (port, admin) = (free_port(), free_port());
    let mut proxy = Command::new(env!("CARGO_BIN_EXE_mesh-proxy"))
        .args([
            port.to_string(),
            admin.to_string(),
            format!("slow={upstream}:100"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // It says where it listens once it does.
    let mut line = String::new();
    BufReader::new(proxy.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("mesh-proxy on"), "{line}");

    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    // Once the request is in flight (the upstream takes 1 s), terminate the proxy.
    arrived.recv_timeout(Duration::from_secs(10)).unwrap();
    let sent = Command::new("kill")
        .args(["-TERM", &proxy.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("slow"), "{answer}");
    assert_eq!(proxy.wait().unwrap().code(), Some(0));
}
