//! The `meshkit` binary on VPC Lattice (the moto emulator with meshkit's extension for
//! the Lattice operations moto lacks): plan, run, status, rollback, promote, with the
//! example spec's tables. Real time.

mod common;

use std::path::{Path, PathBuf};

use common::{meshkit, temp_dir, text};
use meshkit_testing::gopher;
use meshkit_testing::lattice::{self, LatticeTopology};

const EXAMPLE: &str = include_str!("../specs/gopher-lattice.toml");

fn spec_file(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

/// The example's route on the emulator's rule, versions by name (stable) and id (new),
/// no settle delay, short bakes, Lattice target health only.
fn spec(topo: &LatticeTopology) -> String {
    format!(
        r#"
[route]
backend = "lattice"
service = "{service}"
listener = "{listener}"
rule = "{rule}"
stable = "web-v1"
new = "{v2}"
settle_delay = "0s"

[strategy]
kind = "canary"
steps = [0.5, 10, 100]
bake = "200ms"

[[checks]]
kind = "target-health"

[policy]
check_interval = "50ms"
"#,
        service = topo.service,
        listener = topo.listener,
        rule = topo.rule,
        v2 = topo.id("web-v2"),
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

#[test]
fn the_example_plans_without_a_call() {
    let dir = temp_dir("lattice-plan");
    let spec = spec_file(&dir, "gopher-lattice.toml", EXAMPLE);
    let out = meshkit(Some("http://127.0.0.1:9"), &dir)
        .arg("plan")
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("GetRule, UpdateRule"), "{stdout}");
    assert!(stdout.contains("90s settle delay"), "{stdout}");
    // Ids without the service, or an ARN with it, are refused with the field named.
    let no_service = EXAMPLE.replace("service = \"svc-0123456789abcdefg\"\n", "");
    let spec = spec_file(&dir, "no-service.toml", &no_service);
    let out = meshkit(Some("http://127.0.0.1:9"), &dir)
        .arg("plan")
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("route.service"),
        "{}",
        text(&out)
    );
    // A rule ARN names its listener: a listener beside it is refused, not ignored.
    let arn = "arn:aws:vpc-lattice:us-east-1:123456789012:service/svc-0123456789abcdefg/listener/listener-0123456789abcdefg/rule/rule-0123456789abcdefg";
    let both = EXAMPLE
        .replace("service = \"svc-0123456789abcdefg\"\n", "")
        .replace(
            "rule = \"rule-0123456789abcdefg\"",
            &format!("rule = \"{arn}\""),
        );
    let spec = spec_file(&dir, "both.toml", &both);
    let out = meshkit(Some("http://127.0.0.1:9"), &dir)
        .args(["plan", "--json"])
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("route.listener"),
        "{}",
        text(&out)
    );
    // With --json the refusal is also the last line on stdout.
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(
        (last["outcome"].as_str(), last["exit"].as_u64()),
        (Some("invalid"), Some(2))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_status_rollback_and_promote_on_a_lattice_rule() {
    let moto = gopher::moto();
    let sdk = moto.sdk_config();
    let topo = lattice::build(&sdk, &moto).await;
    let dir = temp_dir("lattice-run");
    let spec = spec_file(&dir, "lattice.toml", &spec(&topo));
    moto.clear_requests();
    let out = meshkit(Some(moto.endpoint()), &dir)
        .args(["run", "--json"])
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("web-v1=99.5 web-v2=0.5"), "{stdout}");
    assert_eq!(status(moto.endpoint(), &dir, &spec), "web-v2=100");
    // Before the first write: the six calls plan counts.
    let log = moto.requests();
    let first = log.iter().position(|op| op == "UpdateRule").unwrap();
    let route: Vec<&String> = log[..first]
        .iter()
        .filter(|op| {
            [
                "GetRule",
                "GetTargetGroup",
                "ListTargetGroups",
                "ListTargets",
            ]
            .contains(&op.as_str())
        })
        .collect();
    assert_eq!(
        route[..6],
        [
            "GetRule",
            "GetTargetGroup",
            "GetTargetGroup",
            "ListTargets",
            "ListTargets",
            "GetRule"
        ],
        "{log:?}"
    );

    let out = meshkit(Some(moto.endpoint()), &dir)
        .arg("rollback")
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
    assert_eq!(status(moto.endpoint(), &dir, &spec), "web-v1=0 web-v2=100");
}
