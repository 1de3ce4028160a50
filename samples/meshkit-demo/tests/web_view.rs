//! `meshkit-demo --ui`: the link is printed, the view shows the demo's rollout with
//! the split the mesh served, and it goes away with the demo (store file included).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The events of `addr`'s stream (`path`) until one satisfies `want`, for at most
/// 20 s.
fn watch(addr: &str, path: &str, want: impl Fn(&Value) -> bool) -> Value {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nhost: {addr}\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    let mut got = String::new();
    let mut buf = vec![0u8; 1 << 20];
    while Instant::now() < end {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
        let hit = got
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .find(|v| want(v));
        if let Some(v) = hit {
            return v;
        }
    }
    panic!("no matching event within 20 s: {got}");
}

#[test]
fn the_demo_with_ui_shows_its_rollout_and_the_served_split() {
    let mut demo = Command::new(env!("CARGO_BIN_EXE_meshkit-demo"))
        .args(["--fast", "--json", "--ui"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = demo.id();
    let mut progress = BufReader::new(demo.stderr.take().unwrap());
    let mut line = String::new();
    let link = loop {
        line.clear();
        assert!(
            progress.read_line(&mut line).unwrap() > 0,
            "no link printed"
        );
        if let Some(link) = line.trim().strip_prefix("web view: ") {
            break link.to_owned();
        }
    };
    std::thread::spawn(move || std::io::copy(&mut progress, &mut std::io::sink()));
    assert!(
        link.contains("#token=") && link.ends_with("&route=split"),
        "{link}"
    );
    let addr = link
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let list = watch(&addr, "/api/stream", |v| {
        v["rollouts"].as_array().is_some_and(|r| !r.is_empty())
    });
    let id = list["rollouts"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(list["rollouts"][0]["route"], "split");
    let view = watch(&addr, &format!("/api/stream?rollout={id}"), |v| {
        v["served"]["requests"].as_u64().is_some_and(|n| n > 0)
            && v["series"].as_array().is_some_and(|s| s.len() >= 2)
    });
    let names: Vec<&str> = view["served"]["split"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_str().unwrap())
        .collect();
    assert_eq!(names, ["blue", "green"], "{view}");
    let mut out = String::new();
    demo.stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let status = demo.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{out}");
    let summary: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(summary["outcome"], "promoted", "{summary}");
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("meshkit-demo-{pid}-"))
        })
        .collect();
    assert!(left.is_empty(), "the demo's store is removed: {left:?}");
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "the view stopped"
    );
}
