//! The demo run as a user runs it (a spawned process), one scenario per test.

use std::process::Command;

use serde_json::Value;

/// Runs the demo with `--fast --json` and `args`; returns (exit code, summary).
fn demo(args: &[&str]) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_meshkit-demo"))
        .args(["--fast", "--json"])
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let summary: Value = serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "last line is not the JSON summary ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), summary)
}

fn split(summary: &Value, target: &str) -> f64 {
    summary["final_split"][target].as_f64().unwrap_or(-1.0)
}

fn assert_promoted(args: &[&str]) {
    let (code, s) = demo(args);
    assert_eq!((code, s["outcome"].as_str()), (0, Some("promoted")), "{s}");
    assert_eq!(
        split(&s, "green"),
        100.0,
        "all traffic on green at the end: {s}"
    );
    assert_eq!(s["failed"], 0, "{s}");
    assert!(s["requests"].as_u64().unwrap() > 100, "{s}");
    assert!(s["tally"].as_str().unwrap().contains("green:2="), "{s}");
}

fn assert_rolled_back(args: &[&str]) -> Value {
    let (code, s) = demo(args);
    assert_eq!(
        (code, s["outcome"].as_str()),
        (3, Some("rolled_back")),
        "{s}"
    );
    assert_eq!(split(&s, "blue"), 100.0, "all traffic back on blue: {s}");
    s
}

#[test]
fn healthy_canary_is_promoted() {
    assert_promoted(&[]);
}

#[test]
fn broken_canary_rolls_back_fast() {
    let s = assert_rolled_back(&["--broken", "--steps", "5,25,50,100"]);
    // Threshold 1: the rollback is written right after the first failed check.
    let ms = s["rollback_ms"].as_f64().expect("rollback time measured");
    assert!(
        ms <= 50.0,
        "{ms} ms from the first failed check to all traffic on blue"
    );
    assert!(
        s["detail"].as_str().unwrap().contains("stage 0"),
        "caught at the first step: {s}"
    );
}

#[test]
fn healthy_linear_is_promoted() {
    assert_promoted(&["--strategy", "linear", "--bake", "2s"]);
}

#[test]
fn healthy_blue_green_is_promoted() {
    assert_promoted(&["--strategy", "blue-green"]);
}

#[test]
fn broken_blue_green_rolls_back_before_any_user_traffic() {
    let s = assert_rolled_back(&["--strategy", "blue-green", "--broken"]);
    assert_eq!(s["failed"], 0, "green never got user traffic: {s}");
    assert!(!s["tally"].as_str().unwrap().contains("green"), "{s}");
}

#[test]
fn broken_canary_blue_green_rolls_back() {
    assert_rolled_back(&[
        "--strategy",
        "canary-blue-green",
        "--broken",
        "--fail-rate",
        "0.3",
    ]);
}

#[test]
fn bad_arguments_exit_2() {
    for args in [
        vec!["--strategy", "nope"],
        vec!["--fail-rate", "3"],
        vec!["--steps", "10,x"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_meshkit-demo"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}
