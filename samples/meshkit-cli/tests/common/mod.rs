//! Running the `meshkit` binary as a user would, with AWS settings pointing nowhere
//! but the emulator.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// `meshkit` with test credentials, region `us-east-1`, no profile files, no instance
/// metadata, its own rollout store in `dir`, and `--endpoint-url` when given.
pub fn meshkit(endpoint: Option<&str>, dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_meshkit"));
    c.env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("no-credentials"))
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        // Each test's own rollout store, not the user's.
        .env(
            "MESHKIT_STORE",
            format!("sqlite:{}", dir.join("rollouts.db").display()),
        );
    if let Some(url) = endpoint {
        c.arg("--endpoint-url").arg(url);
    }
    c
}

/// Exit code, stdout and stderr, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A fresh directory for one test's files.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("meshkit-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A tiny HTTP server on a free loopback port answering every request with `status`
/// and `ok`, for specs' upstreams and HTTP checks.
pub fn http_server(status: u16) -> std::net::SocketAddr {
    status_server(std::sync::Arc::new(std::sync::atomic::AtomicU16::new(
        status,
    )))
}

/// [`http_server`] answering with whatever `status` holds at each request (a test
/// turns a check from healthy to failing by storing 500).
pub fn status_server(status: std::sync::Arc<std::sync::atomic::AtomicU16>) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in l.incoming().flatten() {
            let status = status.clone();
            std::thread::spawn(move || {
                let mut s = stream;
                let mut buf = [0u8; 4096];
                let mut got = Vec::new();
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                    while let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        got.drain(..end + 4);
                        let code = status.load(std::sync::atomic::Ordering::Relaxed);
                        let reply = format!("HTTP/1.1 {code} X\r\ncontent-length: 2\r\n\r\nok");
                        if s.write_all(reply.as_bytes()).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// A free loopback address for a local gateway.
pub fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Writes `dir/local.json`: a local-backend spec from blue to green on a free gateway
/// address, with an HTTP check of green's `/`, the `strategy` and `policy` given (JSON
/// objects); returns the spec's path and the gateway's address.
pub fn local_spec(
    dir: &Path,
    blue: std::net::SocketAddr,
    green: std::net::SocketAddr,
    strategy: &str,
    policy: &str,
) -> (std::path::PathBuf, std::net::SocketAddr) {
    let listen = free_addr();
    let spec = dir.join("local.json");
    std::fs::write(
        &spec,
        format!(
            r#"{{"route": {{"backend": "local", "listen": "{listen}", "stable": "blue",
                 "stable_addr": "{blue}", "new": "green", "new_addr": "{green}"}},
               "strategy": {strategy},
               "checks": [{{"kind": "http", "url": "http://{green}/", "requests": 1}}],
               "policy": {policy}}}"#
        ),
    )
    .unwrap();
    (spec, listen)
}
