//! The `meshkit` binary run as a user would: spawned, against the moto emulator and
//! the local backend. Real time (the emulator is a real process).

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{meshkit, temp_dir, text};
use meshkit_testing::gopher::{self, MESH, ROUTE, ROUTER, V1, V2};
use meshkit_testing::{CallCounter, MotoServer};

fn spec_file(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

const GOPHER_SPEC: &str = r#"
[route]
backend = "appmesh"
mesh = "gophermesh"
router = "distributor-router"
route = "distributor-route"
stable = "distributorV1"
new = "distributorV2"

[strategy]
kind = "canary"
steps = [10, 50, 100]
bake = "200ms"

[[checks]]
kind = "cloudmap"
service_id = "SERVICE"
attributes = { version = "v2" }

[policy]
check_interval = "50ms"
"#;

#[test]
fn plan_prints_every_step_and_the_calls_without_making_any() {
    let dir = temp_dir("plan");
    let spec = spec_file(&dir, "gopher.toml", GOPHER_SPEC);
    // Nothing listens there: a call would fail the command.
    let out = meshkit(Some("http://127.0.0.1:9"), &dir)
        .arg("plan")
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for w in [
        "distributorV1=90 distributorV2=10",
        "distributorV1=0 distributorV2=100",
    ] {
        assert!(stdout.contains(w), "{stdout}");
    }
    assert!(stdout.contains("DescribeRoute, UpdateRoute"), "{stdout}");
    assert!(
        stdout.contains("ListInstances, GetInstancesHealthStatus"),
        "{stdout}"
    );
}

#[test]
fn an_invalid_spec_names_the_field_and_line_and_exits_2() {
    let dir = temp_dir("invalid");
    let cases = [
        ("steps.toml", GOPHER_SPEC.replace("[10, 50, 100]", "[50, 10, 100]"), "strategy.steps (line 12, column 1)"),
        ("type.toml", GOPHER_SPEC.replace("bake = \"200ms\"", "bake = 200"), "line 13, column 8"),
        ("missing.toml", GOPHER_SPEC.replace("router = \"distributor-router\"\n", ""), "route.router (line 2, column 1)"),
        ("unknown.json", r#"{"route": {"backend": "local", "stable": "a", "new": "b",
 "listen": "127.0.0.1:1", "stable_addr": "127.0.0.1:2", "new_addr": "127.0.0.1:3", "colour": "red"}}"#.to_string(), "line 2, column 91"),
        ("duration.toml", GOPHER_SPEC.replace("\"50ms\"", "\"soon\""), "policy.check_interval (line 21, column 18): \"soon\" is not a duration"),
        ("empty.toml", GOPHER_SPEC.replace("mesh = \"gophermesh\"", "mesh = \"\""), "route.mesh (line 4, column 1): must not be empty"),
        ("blank.toml", GOPHER_SPEC.replace("route = \"distributor-route\"", "route = \"  \""), "route.route (line 6, column 1): must not be empty"),
        ("no-stable.toml", GOPHER_SPEC.replace("stable = \"distributorV1\"\n", ""), "route.stable (line 2, column 1): missing"),
        ("no-kind.toml", GOPHER_SPEC.replace("kind = \"canary\"\n", ""), "strategy.kind (line 10, column 1): missing"),
        ("fraction.toml", GOPHER_SPEC.replace("[10, 50, 100]", "[10.55, 50, 100]"), "strategy.steps[0] (line 12"),
        ("finer.toml", GOPHER_SPEC.replace("[10, 50, 100]", "[10.5, 50, 100]"), "strategy.steps (line 12, column 1): step 10.5% is finer than the backend holds (steps of 1%)"),
    ];
    for (name, body, expected) in cases {
        let spec = spec_file(&dir, name, &body);
        let out = meshkit(Some("http://127.0.0.1:9"), &dir)
            .arg("run")
            .arg(&spec)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{name}: {stderr}");
    }
}

/// The gopher topology at V1 100 and its Cloud Map service; returns the spec path.
async fn gopher_setup(moto: &MotoServer, dir: &Path) -> PathBuf {
    let sdk = moto.sdk_config();
    let mesh = gopher::appmesh(&sdk, &CallCounter::new());
    gopher::build(&mesh, gopher::http_route(100, 0)).await;
    let service = gopher::cloud_map(&aws_sdk_servicediscovery::Client::new(&sdk)).await;
    spec_file(
        dir,
        "gopher.toml",
        &GOPHER_SPEC.replace("SERVICE", &service),
    )
}

fn status(endpoint: &str, dir: &Path, spec: &Path) -> String {
    let out = meshkit(Some(endpoint), dir)
        .args(["status", "--json"])
        .arg(spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["weights"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_promotes_then_status_and_rollback_work_against_the_emulator() {
    let moto = gopher::moto();
    let dir = temp_dir("run");
    let spec = gopher_setup(&moto, &dir).await;
    let out = meshkit(Some(moto.endpoint()), &dir)
        .args(["run", "--json"])
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().any(|l| l["event"] == "WeightsWritten"));
    assert_eq!(lines.last().unwrap()["outcome"], "promoted");
    // The stable node is taken off the route after promotion.
    assert!(lines.iter().any(|l| l["event"] == "TargetRemoved"));
    assert_eq!(status(moto.endpoint(), &dir, &spec), "distributorV2=100");

    let out = meshkit(Some(moto.endpoint()), &dir)
        .args(["rollback", "--json"])
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(said["written"], true, "{said}");
    // Again: the route is already there; nothing is written, and it says so.
    let out = meshkit(Some(moto.endpoint()), &dir)
        .arg("rollback")
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("already in force, nothing written"),
        "{}",
        text(&out)
    );
    assert_eq!(
        status(moto.endpoint(), &dir, &spec),
        "distributorV1=100 distributorV2=0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_route_stops_before_any_write_with_exit_4() {
    let moto = gopher::moto();
    let dir = temp_dir("missing");
    let spec = spec_file(
        &dir,
        "gopher.toml",
        &GOPHER_SPEC.replace("SERVICE", "srv-x"),
    );
    let out = meshkit(Some(moto.endpoint()), &dir)
        .arg("run")
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mesh 'gophermesh' not found"));
}

/// Waits for the first JSON line whose event is `event`, or the child's end.
fn wait_for_event(child: &mut Child, event: &str) -> bool {
    let Some(stdout) = child.stdout.take() else {
        return false;
    };
    let mut lines = BufReader::new(stdout).lines();
    let found = lines.any(|l| l.is_ok_and(|l| l.contains(&format!("\"event\":\"{event}\""))));
    // Keep draining so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    found
}

/// `meshkit run --json` on `spec` with each step baking `bake`, its stdout piped.
fn spawn_run(moto: &MotoServer, dir: &Path, spec: &Path, bake: &str) -> Child {
    let slow = std::fs::read_to_string(spec)
        .unwrap()
        .replace("\"200ms\"", &format!("\"{bake}\""));
    std::fs::write(spec, slow).unwrap();
    meshkit(Some(moto.endpoint()), dir)
        .args(["run", "--json"])
        .arg(spec)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_without_a_terminal_rolls_back_and_exits_130() {
    let moto = gopher::moto();
    let dir = temp_dir("sigint");
    let spec = gopher_setup(&moto, &dir).await;
    let mut child = spawn_run(&moto, &dir, &spec, "30s");
    assert!(wait_for_event(&mut child, "WeightsWritten"));
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(130));
    assert_eq!(
        status(moto.endpoint(), &dir, &spec),
        "distributorV1=100 distributorV2=0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_kills_at_random_points_all_resume_to_a_safe_end() {
    let moto = gopher::moto();
    let dir = temp_dir("kills");
    let spec = gopher_setup(&moto, &dir).await;
    // A killed run's lease expires after 1 s; the rerun waits for it.
    let body = std::fs::read_to_string(&spec).unwrap();
    let spec = spec_file(
        &dir,
        "gopher-short-lease.toml",
        &format!("{body}lease_ttl = \"1s\"\ncall_timeout = \"500ms\"\n"),
    );
    let mesh = gopher::appmesh(&moto.sdk_config(), &CallCounter::new());
    let mut rng = fastrand::Rng::with_seed(0x6d65_7368);
    let mut ends = Vec::new();
    for kill in 0..20 {
        // Back to the start: all on V1.
        mesh.update_route()
            .mesh_name(MESH)
            .virtual_router_name(ROUTER)
            .route_name(ROUTE)
            .spec(gopher::http_route(100, 0))
            .send()
            .await
            .unwrap();
        let mut child = meshkit(Some(moto.endpoint()), &dir)
            .arg("run")
            .arg(&spec)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let at = Duration::from_millis(rng.u64(50..1500));
        let started = Instant::now();
        while started.elapsed() < at && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // Run again with the same spec: once the killed run's lease expires it resumes
        // from the rollout's record.
        let out = meshkit(Some(moto.endpoint()), &dir)
            .args(["run", "--json", "--wait", "10s"])
            .arg(&spec)
            .output()
            .unwrap();
        let code = out.status.code();
        assert!(
            matches!(code, Some(0 | 3)),
            "kill {kill} at {at:?}: {}",
            text(&out)
        );
        let weights = status(moto.endpoint(), &dir, &spec);
        let expected = if code == Some(0) {
            "distributorV2=100"
        } else {
            "distributorV1=100 distributorV2=0"
        };
        assert_eq!(weights, expected, "kill {kill} at {at:?}");
        ends.push(code);
    }
    assert_eq!(ends.len(), 20);
    let _ = (V1, V2);
}

/// A free gateway address and two upstreams answering 200.
fn local_addrs() -> (SocketAddr, SocketAddr, SocketAddr) {
    let gateway = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = gateway.local_addr().unwrap();
    drop(gateway);
    (listen, common::http_server(200), common::http_server(200))
}

/// The `route` table of a local spec from blue to green.
fn local_route(listen: SocketAddr, blue: SocketAddr, green: SocketAddr) -> String {
    format!(
        r#"{{"backend": "local", "listen": "{listen}", "stable": "blue",
            "stable_addr": "{blue}", "new": "green", "new_addr": "{green}"}}"#
    )
}

#[test]
fn run_on_the_local_backend_promotes() {
    let dir = temp_dir("local");
    let (listen, blue, green) = local_addrs();
    let route = local_route(listen, blue, green);
    let spec = spec_file(
        &dir,
        "local.json",
        &format!(
            r#"{{"route": {route},
               "strategy": {{"kind": "linear", "step": 50, "wait": "1s"}},
               "checks": [{{"kind": "http", "url": "http://{green}/", "requests": 3}},
                          {{"kind": "success-rate", "min": 0.99, "window": "2s", "min_requests": 3}},
                          {{"kind": "latency-p99", "max_latency": "500ms", "window": "2s", "min_requests": 3}}],
               "policy": {{"check_interval": "250ms"}}}}"#
        ),
    );
    let plan = meshkit(None, &dir).arg("plan").arg(&spec).output().unwrap();
    let planned = String::from_utf8_lossy(&plan.stdout);
    assert!(
        planned.contains("success rate of the new version at least 0.99"),
        "{planned}"
    );
    assert!(
        planned.contains("p99 of the new version at most 500ms"),
        "{planned}"
    );
    // Users' traffic through the gateway while the rollout runs, for the metric checks.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let users = {
        let done = done.clone();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(mut s) = std::net::TcpStream::connect(listen) {
                    let _ = s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
                    let _ = s.read_to_end(&mut Vec::new());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let out = meshkit(None, &dir)
        .args(["run", "--json"])
        .arg(&spec)
        .output()
        .unwrap();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    users.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["weights"], "green=100");
    // A local route lives only inside `run`.
    let out = meshkit(None, &dir)
        .arg("status")
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_from_another_shell_is_a_manual_gate_for_a_running_rollout() {
    let moto = gopher::moto();
    let dir = temp_dir("gate");
    let spec = gopher_setup(&moto, &dir).await;
    let mut run = spawn_run(&moto, &dir, &spec, "2s");
    let stdout = run.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    assert!(lines.any(|l| l.contains("\"event\":\"WeightsWritten\"")));
    let out = meshkit(Some(moto.endpoint()), &dir)
        .arg("promote")
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // A gate through the rollout store: the running process applies it at its next
    // check round (every 50 ms), not when the bake ends, and promotes.
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("promote: applied by"),
        "{}",
        text(&out)
    );
    let last = lines.last().unwrap_or_default();
    assert_eq!(run.wait().unwrap().code(), Some(0), "{last}");
    assert!(
        last.contains("\"outcome\":\"promoted\"") && last.contains("(manual)"),
        "{last}"
    );
    assert_eq!(status(moto.endpoint(), &dir, &spec), "distributorV2=100");
}

/// SIGTERM (CI timeouts, `timeout`, systemd, container runtimes) and SIGHUP (the
/// terminal went away) mid-bake: rolled back, 128 + the signal's number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sighup_mid_bake_roll_back_and_exit_143_and_129() {
    for (signal, code, said) in [
        ("-TERM", 143, "SIGTERM received, rolling back"),
        ("-HUP", 129, "SIGHUP received, rolling back"),
    ] {
        let moto = gopher::moto();
        let dir = temp_dir(&format!("signal{signal}"));
        let spec = gopher_setup(&moto, &dir).await;
        let mut child = spawn_run(&moto, &dir, &spec, "30s");
        let stderr = child.stderr.take();
        assert!(wait_for_event(&mut child, "WeightsWritten"));
        let sent = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let started = Instant::now();
        assert_eq!(child.wait().unwrap().code(), Some(code), "{signal}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{signal}: {:?}",
            started.elapsed()
        );
        assert_eq!(
            status(moto.endpoint(), &dir, &spec),
            "distributorV1=100 distributorV2=0",
            "{signal}"
        );
        let mut log = String::new();
        if let Some(mut e) = stderr {
            use std::io::Read;
            e.read_to_string(&mut log).unwrap();
        }
        assert!(log.contains(said), "{signal}: {log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_writer_setting_the_next_steps_weights_stops_the_run_and_is_left_alone() {
    let moto = gopher::moto();
    let dir = temp_dir("next-step");
    let spec = gopher_setup(&moto, &dir).await;
    let mut run = spawn_run(&moto, &dir, &spec, "3s");
    let stdout = run.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    assert!(lines.any(|l| l.contains("\"event\":\"WeightsWritten\"")));
    // During the 10% bake, someone else sets 50/50: exactly meshkit's next step.
    moto.clear_requests();
    let mesh = gopher::appmesh(&moto.sdk_config(), &CallCounter::new());
    mesh.update_route()
        .mesh_name(MESH)
        .virtual_router_name(ROUTER)
        .route_name(ROUTE)
        .spec(gopher::http_route(50, 50))
        .send()
        .await
        .unwrap();
    let last = lines.last().unwrap_or_default();
    assert_eq!(run.wait().unwrap().code(), Some(4), "{last}");
    assert!(last.contains("changed by another writer"), "{last}");
    assert_eq!(
        status(moto.endpoint(), &dir, &spec),
        "distributorV1=50 distributorV2=50"
    );
    // The other writer's UpdateRoute is the only one: meshkit wrote nothing more.
    let updates = moto
        .requests()
        .iter()
        .filter(|op| *op == "UpdateRoute")
        .count();
    assert_eq!(updates, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_to_v4_back_to_back_each_promote() {
    let moto = gopher::moto();
    let dir = temp_dir("back-to-back");
    let spec = gopher_setup(&moto, &dir).await;
    let sdk = moto.sdk_config();
    let router = meshkit::traffic::appmesh::AppMeshRouter::new(aws_sdk_appmesh::Client::new(&sdk));
    let route = meshkit::traffic::appmesh::AppMeshRoute::new(MESH, ROUTER, ROUTE);
    let dns = |v: &str| meshkit::traffic::appmesh::NodeDiscovery::dns(format!("{v}.gopher.local"));
    for v in ["distributorV3", "distributorV4"] {
        router
            .ensure_virtual_node(&route, V1, v, &dns(v))
            .await
            .unwrap();
    }
    let base = std::fs::read_to_string(&spec).unwrap();
    for (from, to) in [
        ("distributorV1", "distributorV2"),
        ("distributorV2", "distributorV3"),
        ("distributorV3", "distributorV4"),
    ] {
        let body = base
            .replace(
                "stable = \"distributorV1\"",
                &format!("stable = \"{from}\""),
            )
            .replace("new = \"distributorV2\"", &format!("new = \"{to}\""));
        let file = spec_file(&dir, &format!("{to}.toml"), &body);
        let out = meshkit(Some(moto.endpoint()), &dir)
            .arg("run")
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{from}->{to}: {}", text(&out));
        assert_eq!(status(moto.endpoint(), &dir, &file), format!("{to}=100"));
    }
}

#[test]
fn aws_settings_that_cannot_work_are_named_with_the_fix() {
    let dir = temp_dir("aws-settings");
    let spec = spec_file(
        &dir,
        "gopher.toml",
        &GOPHER_SPEC.replace("SERVICE", "srv-x"),
    );
    // (case, variables removed, endpoint, what stderr says)
    let cases: [(&str, &[&str], &str, &str); 4] = [
        (
            "no credentials",
            &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
            "http://127.0.0.1:9",
            "no AWS credentials",
        ),
        (
            "no region",
            &["AWS_REGION"],
            "http://127.0.0.1:9",
            "no AWS region: set AWS_REGION",
        ),
        (
            "bad endpoint",
            &[],
            "127.0.0.1:9",
            "must start with http:// or https://",
        ),
        (
            "neither",
            &["AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
            "http://127.0.0.1:9",
            "profile AWS_PROFILE names; no AWS credentials found",
        ),
    ];
    for (name, env, endpoint, expected) in cases {
        for command in ["run", "status", "rollback"] {
            let mut c = meshkit(Some(endpoint), &dir);
            for k in env {
                c.env_remove(k);
            }
            let out = c.arg(command).arg(&spec).output().unwrap();
            assert_eq!(
                out.status.code(),
                Some(2),
                "{name} {command}: {}",
                text(&out)
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains(expected), "{name} {command}: {stderr}");
            // One plain line, no SDK debug structures.
            assert!(stderr.len() < 400, "{name} {command}: {stderr}");
            assert!(
                !stderr.contains("DispatchFailure") && !stderr.contains("{"),
                "{stderr}"
            );
        }
    }
}

#[test]
fn json_with_a_bom_and_an_upper_case_extension_are_read_as_json() {
    let dir = temp_dir("bom");
    let body = r#"{"route": {"backend": "local", "stable": "a", "new": "b",
        "listen": "127.0.0.1:1", "stable_addr": "127.0.0.1:2", "new_addr": "127.0.0.1:3"},
        "strategy": {"kind": "canary", "steps": [10, 100]},
        "checks": [{"kind": "http", "url": "http://127.0.0.1:2/"}]}"#;
    for (name, text_) in [
        ("bom.json", format!("\u{feff}{body}")),
        ("UPPER.JSON", body.to_string()),
    ] {
        let file = spec_file(&dir, name, &text_);
        let out = meshkit(None, &dir).arg("plan").arg(&file).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out));
    }
}

/// The local mesh under a 256-descriptor limit, run as a user runs it: 370 idle
/// connections to its gateway do not stop a request from being answered promptly.
#[test]
fn the_local_gateway_keeps_answering_past_its_descriptor_limit() {
    let dir = temp_dir("fd-limit");
    let (listen, blue, green) = local_addrs();
    let route = local_route(listen, blue, green);
    let spec = spec_file(
        &dir,
        "local.json",
        &format!(
            r#"{{"route": {route},
               "strategy": {{"kind": "canary", "steps": [50, 100], "bake": "30s"}},
               "checks": [{{"kind": "http", "url": "http://{green}/"}}]}}"#
        ),
    );
    let mut run = Command::new("sh")
        .env(
            "MESHKIT_STORE",
            format!("sqlite:{}", dir.join("rollouts.db").display()),
        )
        .arg("-c")
        .arg(format!(
            "ulimit -n 256 && exec {} run {}",
            env!("CARGO_BIN_EXE_meshkit"),
            spec.display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(run.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("local mesh gateway on") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "no gateway");
    }
    use std::io::{Read, Write};
    let idle: Vec<std::net::TcpStream> = (0..370)
        .map(|_| std::net::TcpStream::connect(listen).unwrap())
        .collect();
    let started = Instant::now();
    let mut s = std::net::TcpStream::connect(listen).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let took = started.elapsed();
    drop(idle);
    let _ = run.kill();
    let _ = run.wait();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
}
