//! The rollout store through the `meshkit` binary, as users run it from several
//! shells and CI runners: one run per route, `kill -9` of the holder and a takeover
//! from the record, gates from another shell, `history`, `show`, `status` naming the
//! holder; on SQLite and on DynamoDB (the moto emulator). Real processes, real time.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::{meshkit, temp_dir, text};
use meshkit_testing::MotoServer;
use meshkit_testing::elb::{self, ElbTopology};
use meshkit_testing::gopher;

async fn alb(moto: &MotoServer) -> ElbTopology {
    let sdk = moto.sdk_config();
    let topo = elb::alb(&sdk, moto).await;
    let cw = meshkit::sdk::cloudwatch::Client::new(&sdk);
    let at = SystemTime::now() - Duration::from_secs(20);
    elb::put_metric(
        &cw,
        "AWS/ApplicationELB",
        "HTTPCode_Target_5XX_Count",
        &topo.lb_dimension,
        topo.arn("web-v2"),
        at,
        0.0,
    )
    .await;
    topo
}

/// A canary on the emulator's ALB rule, `bake` per step, a 2 s lease.
fn spec(dir: &Path, topo: &ElbTopology, bake: &str) -> PathBuf {
    let body = format!(
        r#"
[route]
backend = "alb"
rule = "{rule}"
stable = "{v1}"
new = "web-v2"
settle_delay = "0s"

[strategy]
kind = "canary"
steps = [10, 50, 100]
bake = "{bake}"

[[checks]]
kind = "target-health"
min_instances = 1

[policy]
check_interval = "100ms"
call_timeout = "800ms"
lease_ttl = "2s"
"#,
        rule = topo.rule.clone().unwrap(),
        v1 = topo.arn("web-v1"),
    );
    let p = dir.join("alb.toml");
    std::fs::write(&p, body).unwrap();
    p
}

/// `meshkit run --json` in the background, and a channel of its stdout lines.
fn start(
    endpoint: &str,
    dir: &Path,
    spec: &Path,
    args: &[&str],
    host: &str,
) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = meshkit(Some(endpoint), dir)
        .env("HOSTNAME", host)
        .args(args)
        .args(["run", "--json"])
        .arg(spec)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

fn wait_for(rx: &std::sync::mpsc::Receiver<String>, what: &str) -> String {
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200))
            && l.contains(what)
        {
            return l;
        }
    }
    panic!("no line with {what} within 30 s");
}

fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Exactly one of two runs on a route runs; `kill -9` of it; a run from another
/// holder waits for the lease to expire, takes over from the record and promotes;
/// history shows one rollout with both attempts.
fn one_run_per_route_and_takeover(moto: &MotoServer, dir: &Path, store: &[&str], spec: &Path) {
    // The two holders as two machines: the host is part of who holds the lease.
    let (mut first, rx) = start(
        moto.endpoint(),
        dir,
        spec,
        &[store, &["--holder", "ci-1"]].concat(),
        "host-a",
    );
    wait_for(&rx, "WeightsWritten");
    let second = meshkit(Some(moto.endpoint()), dir)
        .args(store)
        .args(["--holder", "ci-2", "run"])
        .arg(spec)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(4), "{}", text(&second));
    let said = text(&second);
    assert!(
        said.contains("being rolled out by ci-1") && said.contains("since"),
        "{said}"
    );
    let status = meshkit(Some(moto.endpoint()), dir)
        .args(store)
        .args(["status", "--json"])
        .arg(spec)
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    let st: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(st["lease"]["holder"], "ci-1", "{st}");
    assert_eq!(st["lease"]["host"], "host-a", "{st}");
    assert_eq!(st["weights"], "web-v1=90 web-v2=10", "{st}");

    first.kill().unwrap(); // SIGKILL: no rollback, no release
    let _ = first.wait();
    let killed = Instant::now();
    let third = meshkit(Some(moto.endpoint()), dir)
        .env("HOSTNAME", "host-b")
        .args(store)
        .args(["--holder", "ci-2", "run", "--json", "--wait", "20s"])
        .arg(spec)
        .output()
        .unwrap();
    let took = killed.elapsed();
    assert_eq!(third.status.code(), Some(0), "{}", text(&third));
    let lines = json_lines(&third);
    assert_eq!(lines.last().unwrap()["outcome"], "promoted");
    let started = lines.iter().find(|l| l["event"] == "Started").unwrap();
    assert!(
        started["message"]
            .as_str()
            .unwrap()
            .contains("web-v1=90 web-v2=10 from stage 0"),
        "{started}"
    );
    // The takeover waited for the 2 s lease, no longer than it plus a few polls.
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(15),
        "{took:?}"
    );
    // The run's own clock starts once it holds the lease: the rest is the wait.
    let ran = lines.iter().rev().find_map(|l| l["t_ms"].as_u64()).unwrap();
    let resumed_after = (took.as_millis() as u64).saturating_sub(ran);
    assert!(
        (1500..10_000).contains(&resumed_after),
        "resumed {resumed_after} ms after the kill"
    );
    eprintln!(
        "takeover after kill -9 with a 2 s lease: resumed after {resumed_after} ms, promoted after {took:?}"
    );

    let history = meshkit(Some(moto.endpoint()), dir)
        .args(store)
        .args(["history", "--json"])
        .output()
        .unwrap();
    assert_eq!(history.status.code(), Some(0), "{}", text(&history));
    let rows = json_lines(&history);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["state"], "promoted");
    let id = rows[0]["id"].as_str().unwrap();
    let show = meshkit(Some(moto.endpoint()), dir)
        .args(store)
        .args(["show", "--json", id])
        .output()
        .unwrap();
    assert_eq!(show.status.code(), Some(0), "{}", text(&show));
    let rec: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(
        rec["attempts"],
        serde_json::json!(["ci-1", "ci-2"]),
        "{rec}"
    );
    let events = rec["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["by"] == "ci-1" && e["kind"] == "WeightsWritten"),
        "{rec}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["by"] == "ci-2" && e["kind"] == "Done"),
        "{rec}"
    );
    let table = meshkit(Some(moto.endpoint()), dir)
        .args(store)
        .arg("history")
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.starts_with("STARTED") && table.contains("promoted") && table.contains("ci-1"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_one_run_per_route_and_a_takeover_after_kill_9() {
    let moto = gopher::moto();
    let topo = alb(&moto).await;
    let dir = temp_dir("store-sqlite");
    let spec = spec(&dir, &topo, "3s");
    let store = format!("--store=sqlite:{}", dir.join("shared.db").display());
    tokio::task::block_in_place(|| one_run_per_route_and_takeover(&moto, &dir, &[&store], &spec));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_one_run_per_route_and_a_takeover_after_kill_9() {
    let moto = gopher::moto();
    let topo = alb(&moto).await;
    let dir = temp_dir("store-dynamodb");
    let spec = spec(&dir, &topo, "3s");
    let store = "--store=dynamodb:meshkit-rollouts";
    let made = meshkit(Some(moto.endpoint()), &dir)
        .args([store, "store", "create-table"])
        .output()
        .unwrap();
    assert_eq!(made.status.code(), Some(0), "{}", text(&made));
    tokio::task::block_in_place(|| one_run_per_route_and_takeover(&moto, &dir, &[store], &spec));
}

/// `pause` and `rollback` from another shell land through the store within a check
/// interval or two; the run ends rolled back (exit 3); the record has the gates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_from_another_shell_go_through_the_store() {
    let moto = gopher::moto();
    let topo = alb(&moto).await;
    let dir = temp_dir("store-gates");
    let spec = spec(&dir, &topo, "60s");
    tokio::task::block_in_place(|| {
        let (mut run, rx) = start(
            moto.endpoint(),
            &dir,
            &spec,
            &["--holder", "ci-1"],
            "host-a",
        );
        wait_for(&rx, "WeightsWritten");
        let asked = Instant::now();
        let pause = meshkit(Some(moto.endpoint()), &dir)
            .args(["--holder", "ops", "pause"])
            .arg(&spec)
            .output()
            .unwrap();
        assert_eq!(pause.status.code(), Some(0), "{}", text(&pause));
        assert!(
            String::from_utf8_lossy(&pause.stdout).contains("pause: applied by ci-1"),
            "{}",
            text(&pause)
        );
        wait_for(&rx, "\"Paused\"");
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "{:?}",
            asked.elapsed()
        );
        let rollback = meshkit(Some(moto.endpoint()), &dir)
            .args(["--holder", "ops", "rollback"])
            .arg(&spec)
            .output()
            .unwrap();
        assert_eq!(rollback.status.code(), Some(0), "{}", text(&rollback));
        assert_eq!(run.wait().unwrap().code(), Some(3));
        let after = meshkit(Some(moto.endpoint()), &dir)
            .args(["status", "--json"])
            .arg(&spec)
            .output()
            .unwrap();
        let st: serde_json::Value = serde_json::from_slice(&after.stdout).unwrap();
        assert_eq!(st["weights"], "web-v1=100 web-v2=0", "{st}");
        assert!(st["lease"].is_null(), "released: {st}");
        let history = json_lines(
            &meshkit(Some(moto.endpoint()), &dir)
                .args(["history", "--json"])
                .output()
                .unwrap(),
        );
        assert_eq!(history[0]["state"], "rolled_back");
        let show = meshkit(Some(moto.endpoint()), &dir)
            .args(["show"])
            .arg(history[0]["id"].as_str().unwrap())
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&show.stdout);
        assert!(
            shown.contains("pause requested by ops applied")
                && shown.contains("rollback requested by ops applied"),
            "{shown}"
        );
        // With nobody running, pause has nothing to act on.
        let idle = meshkit(Some(moto.endpoint()), &dir)
            .arg("pause")
            .arg(&spec)
            .output()
            .unwrap();
        assert_eq!(idle.status.code(), Some(2), "{}", text(&idle));
    });
}

#[test]
fn history_show_and_store_flags_say_what_is_wrong() {
    let dir = temp_dir("store-flags");
    let empty = meshkit(None, &dir).arg("history").output().unwrap();
    assert_eq!(empty.status.code(), Some(0), "{}", text(&empty));
    assert!(String::from_utf8_lossy(&empty.stdout).contains("no rollouts recorded"));
    let unknown = meshkit(None, &dir)
        .args(["show", "mk-nope"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no rollout 'mk-nope'"));
    let bad = meshkit(None, &dir)
        .args(["--store", "redis:x", "history"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("sqlite:PATH or dynamodb:TABLE"));
    let no_table = meshkit(None, &dir)
        .args(["store", "create-table"])
        .output()
        .unwrap();
    assert_eq!(no_table.status.code(), Some(2), "{}", text(&no_table));
}

/// The local backend: a second run is refused naming the holder before it tries to
/// bind the gateway's port (which the first run has), and `status` names the holder.
#[test]
fn local_runs_are_refused_by_the_lease_before_binding() {
    let dir = temp_dir("store-local");
    let (blue, green) = (common::http_server(200), common::http_server(200));
    let (spec, listen) = common::local_spec(
        &dir,
        blue,
        green,
        r#"{"kind": "canary", "steps": [10, 100], "bake": "20s"}"#,
        r#"{"check_interval": "200ms"}"#,
    );
    let (mut first, rx) = start(
        "http://127.0.0.1:9",
        &dir,
        &spec,
        &["--holder", "ci-1"],
        "host-a",
    );
    wait_for(&rx, "WeightsWritten");
    let second = meshkit(None, &dir)
        .args(["--holder", "ci-2", "run"])
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(4), "{}", text(&second));
    let said = text(&second);
    assert!(
        said.contains(&format!("route local:{listen} is being rolled out by ci-1")),
        "{said}"
    );
    assert!(!said.contains("Address already in use"), "{said}");
    let status = meshkit(None, &dir)
        .arg("status")
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("lease held by ci-1"),
        "{}",
        text(&status)
    );
    let rollback = meshkit(None, &dir)
        .args(["--holder", "ops", "rollback"])
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(rollback.status.code(), Some(0), "{}", text(&rollback));
    assert_eq!(first.wait().unwrap().code(), Some(3));
}

/// What the outside-in trial found, refused as invalid input before anything runs.
#[test]
fn bad_holders_lease_settings_and_store_paths_are_refused() {
    let dir = temp_dir("store-refusals");
    let spec = dir.join("local.json");
    let body = |policy: &str| {
        format!(
            r#"{{"route": {{"backend": "local", "listen": "127.0.0.1:1", "stable": "blue",
                 "stable_addr": "127.0.0.1:2", "new": "green", "new_addr": "127.0.0.1:3"}},
               "strategy": {{"kind": "canary", "steps": [10, 100], "bake": "1s"}},
               "checks": [{{"kind": "http", "url": "http://127.0.0.1:3/"}}],
               "policy": {policy}}}"#
        )
    };
    std::fs::write(&spec, body(r#"{"lease_ttl": "1s", "call_timeout": "1s"}"#)).unwrap();
    for cmd in ["plan", "run"] {
        let out = meshkit(None, &dir).arg(cmd).arg(&spec).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd}: {}", text(&out));
        assert!(
            text(&out).contains("policy.lease_ttl"),
            "{cmd}: {}",
            text(&out)
        );
    }
    std::fs::write(&spec, body("{}")).unwrap();
    let newline = meshkit(None, &dir)
        .args(["--holder", "evil\nSTARTED promoted", "run"])
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(newline.status.code(), Some(2), "{}", text(&newline));
    assert!(text(&newline).contains("--holder must be 1-128 printable characters"));
    let missing = meshkit(None, &dir)
        .args(["--store", "sqlite:/nonexistent-meshkit/x.db", "history"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    assert!(
        !std::path::Path::new("/nonexistent-meshkit").exists(),
        "a given path's directory is not created"
    );
    let junk = dir.join("junk.db");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    let out = meshkit(None, &dir)
        .arg("--store")
        .arg(format!("sqlite:{}", junk.display()))
        .arg("run")
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("not a database"), "{}", text(&out));
}
