//! The demo run as a user runs it (a spawned process), one scenario per test.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Runs the demo with `--fast` and `args`; returns the raw output.
fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshkit-demo"))
        .arg("--fast")
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the demo runs")
}

/// Runs the demo with `--fast --json` and `args`; stdout must be exactly one JSON
/// document. Returns (exit code, summary, stderr).
fn demo_strict(args: &[&str]) -> (i32, Value, String) {
    let out = run(&[&["--json"], args].concat());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let summary: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("with --json, stdout must be only the JSON summary ({e}):\n{stdout}\n--- stderr:\n{stderr}")
    });
    assert_eq!(
        stdout.lines().count(),
        1,
        "the summary is one line:\n{stdout}"
    );
    (out.status.code().unwrap_or(-1), summary, stderr)
}

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
fn broken_probe_blue_green_rolls_back_before_any_user_traffic() {
    let s = assert_rolled_back(&["--strategy", "blue-green", "--broken-probe"]);
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
        vec!["--steps", "50,10"],
        vec!["--steps", "0,100"],
        vec!["--steps", "10,50"],
        vec!["--bake", "2000s"],
        vec!["--broken", "--broken-probe"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_meshkit-demo"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--"),
            "{args:?}: the error names the option"
        );
    }
}

/// Item 10: the default broken scenario is one a person watching sees. Green's health
/// endpoint stays healthy, so its probe passes and green takes real user traffic; its
/// user requests fail, the success-rate check catches it, the split swings back to blue,
/// and a line says why.
#[test]
fn broken_green_takes_real_traffic_then_swings_back() {
    let (code, s, progress) = demo_strict(&["--broken"]);
    assert_eq!(
        (code, s["outcome"].as_str()),
        (3, Some("rolled_back")),
        "{s}\n{progress}"
    );
    assert!(
        s["failed"].as_u64().unwrap() > 0,
        "user requests reached green and failed (blue never fails): {s}\n{progress}"
    );
    assert_eq!(split(&s, "blue"), 100.0, "all traffic back on blue: {s}");
    let why = s["why"].as_str().unwrap_or_default();
    assert!(
        why.contains("passed its probe") && why.contains("success rate"),
        "the summary says why: {s}"
    );
    // The live progress showed green's share before the swing back, and why.
    assert!(
        progress.contains("green=10") && progress.contains("blue=100 green=0"),
        "{progress}"
    );
    assert!(
        progress.lines().any(|l| l.contains("passed its probe")
            && l.contains("success rate")
            && l.contains("back to blue")),
        "a line says why the split swings back:\n{progress}"
    );
}

/// Item 10: the probe-catches-it case has its own flag and says what happened.
#[test]
fn broken_probe_is_caught_before_any_traffic_and_says_so() {
    let out = run(&["--broken-probe"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("green failed its probe; no traffic was shifted"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("weights now blue=90"),
        "nothing was shifted: {stdout}"
    );
    assert!(
        stdout.contains("requests: ") && stdout.contains(" 0 failed"),
        "{stdout}"
    );
}

/// Item 11: with --json, stdout is exactly the JSON summary (progress on stderr); the
/// checks and their thresholds are stated at the start; the healthy verdicts stay
/// visible in the summary.
#[test]
fn json_stdout_is_only_the_summary_and_checks_are_stated() {
    let (code, s, progress) = demo_strict(&["--steps", "50,100"]);
    assert_eq!((code, s["outcome"].as_str()), (0, Some("promoted")), "{s}");
    let first_event = progress
        .find("started canary rollout")
        .unwrap_or_else(|| panic!("progress on stderr:\n{progress}"));
    let intro = &progress[..first_event];
    for threshold in ["probe green", "90%", "success rate", "99%", "p99", "250 ms"] {
        assert!(
            intro.contains(threshold),
            "'{threshold}' stated before the rollout starts:\n{intro}"
        );
    }
    let checks = s["checks"].as_array().expect("checks in the summary");
    assert_eq!(checks.len(), 3, "{s}");
    let verdicts = s["verdicts"].as_array().expect("verdicts per stage");
    let healthy: u64 = verdicts
        .iter()
        .map(|v| v["healthy"].as_u64().unwrap())
        .sum();
    assert!(healthy >= 2, "healthy verdicts kept in the summary: {s}");
    assert!(
        progress.contains("healthy"),
        "the human summary counts healthy verdicts:\n{progress}"
    );
}

/// Item 9: in an 80-column terminal the live view stays in place: no stale status rows
/// are left behind (read back from the screen of a real pseudo-terminal via tmux).
/// Rows of the live view are the ones with ` | ` separators; no permanent line has one.
#[test]
fn live_view_fits_an_80_column_terminal() {
    let is_live = |row: &str| row.contains(" | ");
    let tmux = Tmux::start(&[env!("CARGO_BIN_EXE_meshkit-demo"), "--fast"]);
    // The live view is drawn while the rollout runs, in at most a few rows.
    let live = tmux.wait_for("the live view once green has traffic", |screen| {
        screen.lines().any(|r| is_live(r) && r.contains("green=10"))
    });
    let rows = live.lines().filter(|r| is_live(r)).count();
    assert!(rows <= 2, "{rows} live-view rows on screen:\n{live}");
    let done = tmux.wait_for("the demo to exit", |screen| screen.contains("[exit "));
    assert!(done.contains("[exit 0]"), "promoted:\n{done}");
    let stale = done.lines().filter(|r| is_live(r)).count();
    assert_eq!(
        stale, 0,
        "{stale} stale live-view rows left on an 80-column screen:\n{done}"
    );
    for expected in ["started canary rollout", "stage 3", "outcome: promoted"] {
        assert!(done.contains(expected), "'{expected}' on screen:\n{done}");
    }
}

/// A private tmux server with one 80x24 session running a command; killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(cmd: &[&str]) -> Self {
        let socket = format!("meshkit-demo-test-{}", std::process::id());
        let mut shell = String::new();
        for a in cmd {
            shell.push_str(&format!("'{a}' "));
        }
        // Keep the pane (and its screen) after the demo exits.
        shell.push_str("; echo \"[exit $?]\"; exec cat");
        let status = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                "80",
                "-y",
                "24",
            ])
            .arg(shell)
            .env_remove("COLUMNS")
            .env_remove("TMUX")
            .env_remove("RUST_LOG")
            .status()
            .unwrap_or_else(|e| {
                panic!(
                    "this test needs tmux to read back an 80-column terminal ({e}); \
                     install the Debian package 'tmux' (scripts/test.sh does)"
                )
            });
        assert!(status.success(), "tmux new-session failed");
        Self { socket }
    }

    /// The whole pane: history and the visible rows.
    fn capture(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-S", "-"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let screen = self.capture();
            if cond(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}
