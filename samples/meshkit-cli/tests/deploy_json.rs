//! The AWS canary pipeline's `deploy.json`, run by the `meshkit` binary against the
//! moto emulator: a Linear rollout checked by the new node's 5xx count in CloudWatch.

mod common;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use aws_sdk_appmesh::types::{
    HttpRoute, HttpRouteAction, HttpRouteMatch, RouteSpec, VirtualNodeSpec, VirtualRouterSpec,
};
use common::text;
use meshkit_testing::cloudwatch::put_envoy_5xx;
use meshkit_testing::gopher::{self, target};

const NEW: &str = "payments-abc123";

fn meshkit(endpoint: &str, dir: &Path) -> std::process::Command {
    common::meshkit(Some(endpoint), dir)
}

fn deploy_json(dir: &Path) -> PathBuf {
    let path = dir.join("deploy.json");
    std::fs::write(
        &path,
        r#"{"PercentageStep": "50", "WaitTime": 0.3, "FailureThresholdValue": 1,
            "FailureThresholdTime": 600, "EnvironmentName": "prod", "Protocol": "http",
            "Port": 8080, "Namespace": "prod.local", "MicroserviceName": "payments",
            "Sha": "abc123"}"#,
    )
    .unwrap();
    path
}

fn route_spec(v1: i32, v2: i32) -> RouteSpec {
    RouteSpec::builder()
        .http_route(
            HttpRoute::builder()
                .r#match(HttpRouteMatch::builder().prefix("/").build())
                .action(
                    HttpRouteAction::builder()
                        .weighted_targets(target("payments-v1", v1))
                        .weighted_targets(target(NEW, v2))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .build()
}

/// Mesh `prod`, nodes `payments-v1` and `payments-abc123`, router `payments-vr`,
/// route `payments-route` all on v1.
async fn pipeline_mesh(client: &aws_sdk_appmesh::Client) {
    client.create_mesh().mesh_name("prod").send().await.unwrap();
    for node in ["payments-v1", NEW] {
        client
            .create_virtual_node()
            .mesh_name("prod")
            .virtual_node_name(node)
            .spec(VirtualNodeSpec::builder().build())
            .send()
            .await
            .unwrap();
    }
    client
        .create_virtual_router()
        .mesh_name("prod")
        .virtual_router_name("payments-vr")
        .spec(VirtualRouterSpec::builder().build())
        .send()
        .await
        .unwrap();
    client
        .create_route()
        .mesh_name("prod")
        .virtual_router_name("payments-vr")
        .route_name("payments-route")
        .spec(route_spec(100, 0))
        .send()
        .await
        .unwrap();
}

async fn put_5xx(client: &aws_sdk_cloudwatch::Client, value: f64) {
    // Stamped a little in the past, as reported metrics are: the emulator compares
    // whole-second query bounds with sub-second timestamps, so a datapoint from this
    // very second can fall after the check's end time.
    let at = SystemTime::now() - std::time::Duration::from_secs(2);
    // The pipeline's dimensions: the task family is the service, the node has the Sha.
    put_envoy_5xx(client, "prod", "payments", NEW, at, value).await;
}

#[test]
fn plan_maps_deploy_json_to_a_linear_rollout_with_the_5xx_check() {
    let dir = std::env::temp_dir().join(format!("meshkit-deploy-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = meshkit("http://127.0.0.1:9", &dir)
        .args(["plan", "--stable", "payments-v1"])
        .arg(deploy_json(&dir))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("on prod/payments-vr/payments-route: payments-v1 -> payments-abc123"),
        "{stdout}"
    );
    assert!(
        stdout.contains("payments-abc123=50 payments-v1=50"),
        "{stdout}"
    );
    assert!(
        stdout.contains("payments-abc123=100 payments-v1=0"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "CloudWatch ingress 5xx of payments-abc123 (task family payments, cluster prod) over 600s, at most 1"
        ),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_json_promotes_on_clean_metrics_and_rolls_back_on_5xx() {
    let moto = gopher::moto();
    let sdk = moto.sdk_config();
    let dir = std::env::temp_dir().join(format!("meshkit-deploy-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mesh = aws_sdk_appmesh::Client::new(&sdk);
    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    pipeline_mesh(&mesh).await;
    let file = deploy_json(&dir);

    // Data, and no 5xx: promoted (the stable node is read from the route).
    put_5xx(&cw, 0.0).await;
    let out = meshkit(moto.endpoint(), &dir)
        .arg("run")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Back to v1, then 3 errors (more than 1): rolled back to v1.
    mesh.update_route()
        .mesh_name("prod")
        .virtual_router_name("payments-vr")
        .route_name("payments-route")
        .spec(route_spec(100, 0))
        .send()
        .await
        .unwrap();
    put_5xx(&cw, 3.0).await;
    let out = meshkit(moto.endpoint(), &dir)
        .arg("run")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("envoy_http_downstream_rq_xx = 3"),
        "{stdout}"
    );
    let out = meshkit(moto.endpoint(), &dir)
        .args(["status", "--json"])
        .arg(&file)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["weights"], "payments-abc123=0 payments-v1=100");
}

/// The pipeline counted "no data" as healthy; meshkit does not unless asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_data_rolls_back_by_default_and_passes_with_the_pipelines_rule() {
    let moto = gopher::moto();
    let sdk = moto.sdk_config();
    let dir = std::env::temp_dir().join(format!("meshkit-deploy-nodata-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mesh = aws_sdk_appmesh::Client::new(&sdk);
    pipeline_mesh(&mesh).await;
    let file = deploy_json(&dir);

    // `plan` says which rule applies.
    for (flags, rule) in [
        (
            &["--inconclusive", "pass"][..],
            "inconclusive: count inconclusive as healthy (the canary pipeline's rule)",
        ),
        (
            &[][..],
            "inconclusive: roll back after 3 inconclusive in a row",
        ),
    ] {
        let plan = meshkit(moto.endpoint(), &dir)
            .arg("plan")
            .args(flags)
            .arg(&file)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&plan.stdout);
        assert!(stdout.contains(rule), "{flags:?}: {}", text(&plan));
    }

    // No datapoints at all: three inconclusive rounds, rolled back.
    let out = meshkit(moto.endpoint(), &dir)
        .arg("run")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("inconclusive too long"),
        "{}",
        text(&out)
    );
    // The same with the pipeline's rule: promoted.
    let out = meshkit(moto.endpoint(), &dir)
        .args(["run", "--inconclusive", "pass"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// `plan` on a deploy.json shows the id and tokens the run uses, and the calls it makes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_agrees_with_the_run_on_id_tokens_and_calls() {
    let moto = gopher::moto();
    let sdk = moto.sdk_config();
    let dir = std::env::temp_dir().join(format!("meshkit-deploy-calls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mesh = aws_sdk_appmesh::Client::new(&sdk);
    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    pipeline_mesh(&mesh).await;
    put_5xx(&cw, 0.0).await;
    let file = deploy_json(&dir);
    let plan = meshkit(moto.endpoint(), &dir)
        .args(["plan", "--json"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let calls = &plan["route_calls"];
    let n = |k: &str| calls[k].as_u64().unwrap_or_else(|| panic!("{k}: {calls}")) as usize;
    // plan ran with no stable node given: the run reads it from the route first.
    assert_eq!(n("before_first_write"), 7, "{calls}");

    moto.clear_requests();
    let out = meshkit(moto.endpoint(), &dir)
        .args(["run", "--json"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let count = |kind: &str| events.iter().filter(|e| e["event"] == kind).count();
    let (shifts, rounds) = (count("WeightsWritten"), count("Verdict"));
    assert_eq!(shifts, 2, "{events:?}");
    assert_eq!(
        events[0]["message"].as_str().unwrap().split(' ').nth(3),
        plan["id"].as_str()
    );

    let served = moto.requests();
    let appmesh: Vec<&String> = served
        .iter()
        .filter(|op| op.contains("Route") || op.contains("Mesh") || op.contains("Virtual"))
        .collect();
    assert_eq!(
        appmesh.len(),
        n("before_first_write")
            + shifts * n("per_shift")
            + rounds * n("per_check_round")
            + n("to_promote"),
        "{shifts} shifts, {rounds} rounds: {appmesh:?}"
    );
    // The check's own calls: one GetMetricData per round.
    assert_eq!(
        served.iter().filter(|op| *op == "GetMetricData").count(),
        rounds,
        "{served:?}"
    );
}
