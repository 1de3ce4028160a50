//! Spawning the service binary as a user runs it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Starts `bluegreen-service` on a free port with `env` (through `sh -c` with `prefix`
/// before the binary, e.g. `ulimit -n 256 &&`), and returns it with its port once it
/// listens. Its stderr is piped; its stdout is read up to the line with the port.
pub fn spawn_service(prefix: &str, env: &[(&str, &str)]) -> (Child, u16) {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{prefix} exec {}",
            env!("CARGO_BIN_EXE_bluegreen-service")
        ))
        .env("SERVICE_PORT", "0")
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    (child, port)
}

/// Stops the service and returns what it logged.
pub fn stop(mut child: Child) -> String {
    use std::io::Read;
    let _ = child.kill();
    let _ = child.wait();
    let mut log = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut log);
    }
    log
}
