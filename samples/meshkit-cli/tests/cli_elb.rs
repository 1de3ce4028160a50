//! The `meshkit` binary on an ALB and an NLB (the moto emulator), as a user would run
//! it: plan, run, status, promote, rollback, and what an invalid load balancer spec
//! says. Real time (the emulator is a real process).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::{meshkit, temp_dir, text};
use meshkit_testing::MotoServer;
use meshkit_testing::elb::{self, ElbTopology};
use meshkit_testing::gopher;

const EXAMPLE: &str = include_str!("../specs/gopher-alb.toml");
const APPMESH_EXAMPLE: &str = include_str!("../specs/gopher.toml");

fn spec_file(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

/// The spec for the emulator's ALB rule: versions by ARN (stable) and by name (new),
/// no settle delay (the emulator applies at once), short bakes, target health and
/// target 5xx checks.
fn alb_spec(topo: &ElbTopology, strategy: &str) -> String {
    format!(
        r#"
[route]
backend = "alb"
rule = "{rule}"
stable = "{v1}"
new = "web-v2"
settle_delay = "0s"

{strategy}

[[checks]]
kind = "target-health"
min_instances = 1

[[checks]]
kind = "target-5xx"
window = "5m"
max = 0

[policy]
check_interval = "50ms"
"#,
        rule = topo.rule.clone().unwrap(),
        v1 = topo.arn("web-v1"),
    )
}

const CANARY: &str = "[strategy]\nkind = \"canary\"\nsteps = [0.5, 10, 100]\nbake = \"200ms\"";

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

#[test]
fn the_example_plans_with_the_gopher_tables_unchanged() {
    let dir = temp_dir("alb-plan");
    let spec = spec_file(&dir, "gopher-alb.toml", EXAMPLE);
    let out = meshkit(Some("http://127.0.0.1:9"), &dir)
        .arg("plan")
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("DescribeRules, ModifyRule"), "{stdout}");
    assert!(
        stdout.contains("confirmed from CloudWatch request counts per target group"),
        "{stdout}"
    );
    // gopher.toml's strategy, checks and policy tables, verbatim, behind the ALB route.
    let tables = APPMESH_EXAMPLE.split_once("[strategy]").unwrap().1;
    let route = EXAMPLE.split_once("[strategy]").unwrap().0;
    let moved = spec_file(&dir, "moved.toml", &format!("{route}[strategy]{tables}"));
    let out = meshkit(Some("http://127.0.0.1:9"), &dir)
        .arg("plan")
        .arg(&moved)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn invalid_load_balancer_specs_name_the_field() {
    let dir = temp_dir("alb-invalid");
    let rule = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/web/1/2/3";
    let listener = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/1/2";
    let base = EXAMPLE.replace(
        "rule = \"arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/gopher/50dc6c495c0c9188/f2f7dc8efc522ab2/9683b2d02a6cabee\"",
        &format!("rule = \"{rule}\""),
    );
    let cases = [
        (
            "both.toml",
            base.replace(
                "backend = \"alb\"",
                &format!("backend = \"alb\"\nlistener = \"{listener}\""),
            ),
            "route.rule (line 7, column 1): give either listener or rule",
        ),
        (
            "kind.toml",
            base.replace(
                &format!("rule = \"{rule}\""),
                &format!("listener = \"{rule}\""),
            ),
            "is not a listener ARN",
        ),
        (
            "arn.toml",
            base.replace(&format!("rule = \"{rule}\""), "rule = \"web-rule\""),
            "route.rule (line 6, column 1): 'web-rule' is not a listener or listener-rule ARN",
        ),
        (
            "nlb-rule.toml",
            base.replace("backend = \"alb\"", "backend = \"nlb\""),
            "route.listener (line 4, column 1): missing: nlb needs it",
        ),
        (
            "nlb-5xx.toml",
            base.replace("backend = \"alb\"", "backend = \"nlb\"")
                .replace(
                    &format!("rule = \"{rule}\""),
                    &format!("listener = \"{}\"", listener.replace("/app/", "/net/")),
                )
                .replace("\nconfirm_traffic = true", ""),
            "checks[2].kind: target-5xx needs an alb or lattice route",
        ),
        (
            "tenth.toml",
            base.replace("[10, 25, 50, 100]", "[0.05, 25, 50, 100]"),
            "strategy.steps[0]",
        ),
        (
            "share.toml",
            base.replace(
                "min_instances = 2\n\n[[checks]]\nkind = \"target-5xx\"",
                "min_healthy = 90.0\n\n[[checks]]\nkind = \"target-5xx\"",
            ),
            "is not a share from 0 to 1",
        ),
        (
            "requests.toml",
            base.replace("confirm_traffic = true", "min_requests = 10"),
            "route.min_requests",
        ),
        (
            "delay.toml",
            base.replace(
                "confirm_traffic = true",
                "confirm_traffic = true\nsettle_delay = \"30s\"",
            ),
            "route.settle_delay",
        ),
        (
            "within.toml",
            base.replace("confirm_traffic = true", "confirm_within = \"2m\""),
            "route.confirm_within",
        ),
        (
            "nlb-arn.toml",
            base.replace("backend = \"alb\"", "backend = \"nlb\"")
                .replace(
                    &format!("rule = \"{rule}\""),
                    &format!("listener = \"{listener}\""),
                )
                .replace("\nconfirm_traffic = true", ""),
            "is an Application Load Balancer's (app/); use backend = \"alb\"",
        ),
        (
            "nlb-confirm.toml",
            base.replace("backend = \"alb\"", "backend = \"nlb\"")
                .replace(
                    &format!("rule = \"{rule}\""),
                    &format!("listener = \"{}\"", listener.replace("/app/", "/net/")),
                ),
            "route.confirm_traffic",
        ),
        // App Mesh holds whole percents: a half-percent step is refused before any call.
        (
            "appmesh.toml",
            APPMESH_EXAMPLE.replace("[10, 25, 50, 100]", "[0.5, 25, 50, 100]"),
            "strategy.steps (line",
        ),
    ];
    for (name, body, expected) in cases {
        let spec = spec_file(&dir, name, &body);
        let out = meshkit(Some("http://127.0.0.1:9"), &dir)
            .arg("plan")
            .arg(&spec)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{name}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_on_an_alb_rule_makes_the_calls_plan_says_then_status_promote_and_rollback() {
    let moto = gopher::moto();
    let topo = alb(&moto).await;
    let dir = temp_dir("alb-run");
    let spec = spec_file(&dir, "alb.toml", &alb_spec(&topo, CANARY));
    moto.clear_requests();
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
    assert_eq!(lines.last().unwrap()["outcome"], "promoted");
    let written: Vec<String> = lines
        .iter()
        .filter(|l| l["event"] == "WeightsWritten")
        .map(|l| l["message"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(written[0].ends_with("web-v1=99.5 web-v2=0.5"), "{lines:?}");

    // The route calls, as `plan` counts them: 6 before the first write (the preflight
    // and the start's read), then a read and a write per shift (a write's answer is its
    // read-back); the checks' own calls come between.
    let route_ops = [
        "DescribeRules",
        "ModifyRule",
        "DescribeTargetGroups",
        "DescribeTargetHealth",
    ];
    let requests: Vec<String> = moto
        .requests()
        .into_iter()
        .filter(|op| route_ops.contains(&op.as_str()))
        .collect();
    let plan = meshkit(Some("http://127.0.0.1:9"), &dir)
        .args(["plan", "--json"])
        .arg(&spec)
        .output()
        .unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let before = plan["route_calls"]["before_first_write"].as_u64().unwrap() as usize;
    assert_eq!(plan["route_calls"]["per_shift"], 2);
    assert_eq!(
        &requests[..before],
        [
            "DescribeRules",
            "DescribeTargetGroups",
            "DescribeTargetGroups",
            "DescribeTargetHealth",
            "DescribeTargetHealth",
            "DescribeRules"
        ],
        "{requests:?}"
    );
    for (i, _) in requests
        .iter()
        .enumerate()
        .filter(|(_, op)| *op == "ModifyRule")
    {
        assert_eq!(
            requests[i - 1],
            "DescribeRules",
            "a write without its read at {i}: {requests:?}"
        );
        assert_ne!(
            requests.get(i + 1).map(String::as_str),
            Some("ModifyRule"),
            "{requests:?}"
        );
    }
    let writes = requests.iter().filter(|op| *op == "ModifyRule").count();
    assert_eq!(writes, 3 + 1, "{requests:?}");
    assert_eq!(status(moto.endpoint(), &dir, &spec), "web-v2=100");

    let out = meshkit(Some(moto.endpoint()), &dir)
        .args(["rollback", "--json"])
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(status(moto.endpoint(), &dir, &spec), "web-v1=100 web-v2=0");
    let out = meshkit(Some(moto.endpoint()), &dir)
        .arg("promote")
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("written and read back"),
        "{}",
        text(&out)
    );
    assert_eq!(status(moto.endpoint(), &dir, &spec), "web-v1=0 web-v2=100");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_new_version_on_an_nlb_is_rolled_back_with_exit_3() {
    let moto = gopher::moto();
    let topo = elb::nlb(&moto.sdk_config(), &moto).await;
    // The new version runs one task; the check wants two healthy.
    let dir = temp_dir("nlb-run");
    let body = format!(
        r#"
[route]
backend = "nlb"
listener = "{listener}"
stable = "web-v1"
new = "web-v2"
settle_delay = "0s"

[strategy]
kind = "linear"
step = 50
wait = "200ms"

[[checks]]
kind = "target-health"
min_instances = 2

[policy]
check_interval = "50ms"
failure_threshold = 1
"#,
        listener = topo.listener
    );
    let spec = spec_file(&dir, "nlb.toml", &body);
    let out = meshkit(Some(moto.endpoint()), &dir)
        .args(["run", "--json"])
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("1 of 1 targets healthy in web-v2 (need 2"),
        "{stdout}"
    );
    // Rolled back before any traffic: web-v2 was never put on the listener.
    assert_eq!(status(moto.endpoint(), &dir, &spec), "web-v1=100");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_the_load_balancer_is_not_seen_applying_rolls_back_with_exit_3() {
    let moto = gopher::moto();
    let topo = alb(&moto).await;
    let dir = temp_dir("alb-unconfirmed");
    // The listener's default action forwards elsewhere, so the rule's target groups
    // take only the rule's traffic (their request counts are the rule's alone).
    let elbc = aws_sdk_elasticloadbalancingv2::Client::new(&moto.sdk_config());
    elbc.modify_listener()
        .listener_arn(&topo.listener)
        .default_actions(elb::forward(&[(topo.arn("web-spare"), 1)], None))
        .send()
        .await
        .unwrap();
    // Traffic is confirmed from RequestCount, and nobody sends any: each step waits
    // `confirm_within`, then rolls back.
    let body = alb_spec(&topo, CANARY).replace(
        "settle_delay = \"0s\"",
        "confirm_traffic = true\nmin_requests = 10\nconfirm_within = \"1s\"",
    );
    let spec = spec_file(&dir, "alb.toml", &body);
    let out = meshkit(Some(moto.endpoint()), &dir)
        .args(["run", "--json"])
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("not applied by the data plane: not yet known: 0 requests"),
        "{stdout}"
    );
    assert_eq!(status(moto.endpoint(), &dir, &spec), "web-v1=100 web-v2=0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_refuses_a_target_group_without_healthy_targets_unless_forced() {
    let moto = gopher::moto();
    let topo = alb(&moto).await;
    let dir = temp_dir("alb-force");
    let spec = spec_file(&dir, "alb.toml", &alb_spec(&topo, CANARY));
    let out = meshkit(Some(moto.endpoint()), &dir)
        .arg("promote")
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // v1's service was retired after the promotion: its target is gone.
    let elbc = aws_sdk_elasticloadbalancingv2::Client::new(&moto.sdk_config());
    elbc.deregister_targets()
        .target_group_arn(topo.arn("web-v1"))
        .targets(
            aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder()
                .id("10.0.1.10")
                .port(8080)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let out = meshkit(Some(moto.endpoint()), &dir)
        .arg("rollback")
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("target group web-v1 has no healthy target"),
        "{stderr}"
    );
    assert_eq!(status(moto.endpoint(), &dir, &spec), "web-v1=0 web-v2=100");
    let out = meshkit(Some(moto.endpoint()), &dir)
        .args(["rollback", "--force"])
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(status(moto.endpoint(), &dir, &spec), "web-v1=100 web-v2=0");
}
