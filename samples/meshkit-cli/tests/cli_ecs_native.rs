//! The `meshkit` binary on the `ecs-native` backend, against the moto emulator with
//! meshkit's service-deployment extension (one ECS minute lasts one second): plan,
//! run promoted and rolled back, status, a rollback from another shell through the
//! store, and specs ECS cannot run refused before any call.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::{meshkit, temp_dir, text};
use meshkit_testing::MotoServer;

const EXAMPLE: &str = include_str!("../specs/ecs-native.toml");

async fn service(moto: &MotoServer) {
    let ecs = meshkit::sdk::ecs::Client::new(&moto.sdk_config());
    ecs.create_cluster()
        .cluster_name("shop")
        .send()
        .await
        .unwrap();
    for v in ["v1", "v2"] {
        ecs.register_task_definition()
            .family("web")
            .container_definitions(
                meshkit::sdk::ecs::types::ContainerDefinition::builder()
                    .name("web")
                    .image(format!("shop/web:{v}"))
                    .memory(256)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    ecs.create_service()
        .cluster("shop")
        .service_name("web")
        .task_definition("web:1")
        .desired_count(1)
        .send()
        .await
        .unwrap();
}

fn spec(dir: &Path, health: std::net::SocketAddr, wait: &str) -> PathBuf {
    let body = format!(
        r#"
[route]
backend = "ecs-native"
cluster = "shop"
service = "web"
task_definition = "web:2"
stable = "web:1"
new = "web:2"
hook_timeout = "1m"

[strategy]
kind = "linear"
step = 50
wait = "{wait}"

[[checks]]
kind = "http"
url = "http://{health}/"
requests = 2

[policy]
check_interval = "100ms"
call_timeout = "5s"
lease_ttl = "10s"
"#
    );
    let p = dir.join("native.toml");
    std::fs::write(&p, body).unwrap();
    p
}

/// `meshkit run --json` by `ci-1` in the background, returned once it has answered
/// its first pause.
fn judging(endpoint: &str, dir: &Path, spec: &Path) -> std::process::Child {
    let mut run = meshkit(Some(endpoint), dir)
        .args(["--holder", "ci-1", "run", "--json"])
        .arg(spec)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = run.stdout.take().unwrap();
    let mut reader = BufReader::new(stdout).lines().map_while(Result::ok);
    assert!(reader.any(|l| l.contains("HookAnswered")));
    run
}

fn lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn the_example_plans_and_specs_ecs_cannot_run_are_refused() {
    let dir = temp_dir("native-plan");
    let example = dir.join("ecs-native.toml");
    std::fs::write(&example, EXAMPLE).unwrap();
    let out = meshkit(Some("http://127.0.0.1:9"), &dir)
        .arg("plan")
        .arg(&example)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("pause 4: meshkit runs its checks; CONTINUE moves 100%"),
        "{said}"
    );
    assert!(said.contains("pause 5: after the last shift"), "{said}");
    // The example without its comments, to vary one field at a time.
    let base: String = EXAMPLE
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim_end())
        .collect::<Vec<_>>()
        .join("\n");
    let cases = [
        (
            "kind = \"linear\"\nstep = 25\nwait = \"5m\"\nbake = \"10m\"",
            "kind = \"blue-green\"",
            "strategy.kind",
        ),
        ("step = 25", "step = 2", "strategy.step (line"),
        ("wait = \"5m\"", "wait = \"90s\"", "strategy.wait (line"),
        (
            "task_definition = \"web:42\"\n",
            "",
            "route.task_definition",
        ),
    ];
    for (from, to, expected) in cases {
        let bad = dir.join("bad.toml");
        assert!(base.contains(from), "{from}");
        std::fs::write(&bad, base.replace(from, to)).unwrap();
        let out = meshkit(Some("http://127.0.0.1:9"), &dir)
            .arg("plan")
            .arg(&bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{to}: {}", text(&out));
        assert!(text(&out).contains(expected), "{to}: {}", text(&out));
    }
    let canary = base.replace(
        "kind = \"linear\"\nstep = 25\nwait = \"5m\"",
        "kind = \"canary\"\nsteps = [10, 50, 100]",
    );
    let bad = dir.join("canary.toml");
    std::fs::write(&bad, canary).unwrap();
    let out = meshkit(Some("http://127.0.0.1:9"), &dir)
        .arg("plan")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("one step, then all"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_promotes_a_healthy_revision_then_status_says_so() {
    let moto = MotoServer::start_with_env(&[("MESHKIT_ECS_MINUTE_SECONDS", "1")]).unwrap();
    service(&moto).await;
    let dir = temp_dir("native-run");
    let spec = spec(&dir, common::http_server(200), "1m");
    let out = meshkit(Some(moto.endpoint()), &dir)
        .args(["run", "--json"])
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let l = lines(&out);
    assert_eq!(l.last().unwrap()["outcome"], "promoted");
    assert_eq!(
        l.iter().filter(|e| e["event"] == "HookAnswered").count(),
        3,
        "{l:?}"
    );
    let status = meshkit(Some(moto.endpoint()), &dir)
        .args(["status", "--json"])
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    let st: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(st["status"], "SUCCESSFUL", "{st}");
    assert!(st["judge"].is_null(), "{st}");
    let history = meshkit(Some(moto.endpoint()), &dir)
        .args(["history", "--json"])
        .output()
        .unwrap();
    let rows = lines(&history);
    assert_eq!(rows[0]["state"], "promoted", "{rows:?}");
    assert_eq!(rows[0]["route"], "ecs:shop/web");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_revision_is_rolled_back_exit_3() {
    let moto = MotoServer::start_with_env(&[("MESHKIT_ECS_MINUTE_SECONDS", "1")]).unwrap();
    service(&moto).await;
    let dir = temp_dir("native-broken");
    let spec = spec(&dir, common::http_server(500), "1m");
    let out = meshkit(Some(moto.endpoint()), &dir)
        .args(["run", "--json"])
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let l = lines(&out);
    assert_eq!(l.last().unwrap()["outcome"], "rolled_back");
    assert!(
        l.iter()
            .any(|e| e["event"] == "HookAnswered"
                && e["message"].as_str().unwrap().contains("ROLLBACK")),
        "{l:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_from_another_shell_goes_through_the_judge() {
    let moto = MotoServer::start_with_env(&[("MESHKIT_ECS_MINUTE_SECONDS", "1")]).unwrap();
    service(&moto).await;
    let dir = temp_dir("native-gate");
    let spec = spec(&dir, common::http_server(200), "10m");
    tokio::task::block_in_place(|| {
        let mut run = judging(moto.endpoint(), &dir, &spec);
        let status = meshkit(Some(moto.endpoint()), &dir)
            .arg("status")
            .arg(&spec)
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&status.stdout).contains("judged by ci-1"),
            "{}",
            text(&status)
        );
        let rollback = meshkit(Some(moto.endpoint()), &dir)
            .args(["--holder", "ops", "rollback"])
            .arg(&spec)
            .output()
            .unwrap();
        assert_eq!(rollback.status.code(), Some(0), "{}", text(&rollback));
        assert!(
            String::from_utf8_lossy(&rollback.stdout).contains("rollback: applied by ci-1"),
            "{}",
            text(&rollback)
        );
        assert_eq!(run.wait().unwrap().code(), Some(3));
    });
    // With no judge running, promote has no one to go through: the spec is valid, the
    // state refuses (exit 4).
    let promote = meshkit(Some(moto.endpoint()), &dir)
        .arg("promote")
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(promote.status.code(), Some(4), "{}", text(&promote));
}

/// The judge is killed; `rollback` cannot wait for it and asks ECS directly; the next
/// run (once the dead judge's lease expires) reports that end and deploys nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_killed_judge_rollback_goes_to_ecs_and_the_next_run_reports_it() {
    let moto = MotoServer::start_with_env(&[("MESHKIT_ECS_MINUTE_SECONDS", "1")]).unwrap();
    service(&moto).await;
    let dir = temp_dir("native-killed");
    let spec = spec(&dir, common::http_server(200), "10m");
    tokio::task::block_in_place(|| {
        let mut run = judging(moto.endpoint(), &dir, &spec);
        run.kill().unwrap();
        let _ = run.wait();
        let rollback = meshkit(Some(moto.endpoint()), &dir)
            .args(["--holder", "ops", "rollback"])
            .arg(&spec)
            .output()
            .unwrap();
        assert_eq!(rollback.status.code(), Some(0), "{}", text(&rollback));
        assert!(
            text(&rollback).contains("asking ECS directly"),
            "{}",
            text(&rollback)
        );
        let again = meshkit(Some(moto.endpoint()), &dir)
            .args(["--holder", "ci-2", "run", "--json", "--wait", "30s"])
            .arg(&spec)
            .output()
            .unwrap();
        assert_eq!(again.status.code(), Some(3), "{}", text(&again));
        let l = lines(&again);
        assert!(
            !l.iter().any(|e| e["event"] == "DeploymentStarted"),
            "{l:?}"
        );
        assert!(l.iter().any(|e| e["event"] == "DeploymentFound"), "{l:?}");
    });
    let ecs = meshkit::sdk::ecs::Client::new(&moto.sdk_config());
    let listed = ecs
        .list_service_deployments()
        .cluster("shop")
        .service("web")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.service_deployments().len(), 1, "nothing redeployed");
}
