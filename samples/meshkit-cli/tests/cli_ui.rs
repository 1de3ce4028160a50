//! `meshkit ui` in a real browser: headless Chromium driven through WebDriver
//! (chromedriver, fantoccini) against a real `meshkit ui` over a real SQLite store,
//! while `meshkit run` rolls out on the local mesh.
//!
//! Needs Debian's `chromium` and `chromium-driver`, and axe-core for the
//! accessibility check: `scripts/test.sh` installs them.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{meshkit, temp_dir};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const TOKEN: &str = "test-token-0123456789abcdef";

fn chromedriver() -> PathBuf {
    let path = std::env::var_os("CHROMEDRIVER")
        .map_or_else(|| PathBuf::from("/usr/bin/chromedriver"), PathBuf::from);
    assert!(
        path.exists(),
        "{} is missing: install Debian's chromium and chromium-driver (scripts/test.sh does), or set CHROMEDRIVER",
        path.display()
    );
    path
}

fn axe_js() -> String {
    let path = std::env::var_os("MESHKIT_AXE_JS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/axe-core/axe.min.js"),
        PathBuf::from,
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "axe-core is missing at {} ({e}): scripts/test.sh downloads it, or set MESHKIT_AXE_JS",
            path.display()
        )
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the child when the test ends, however it ends.
struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// chromedriver in a process group of its own, killed with every browser it started
/// when the test ends, however it ends (a failed assertion leaves no Chromium behind).
struct Driver(Child);
impl Driver {
    fn start(path: &Path, port: u16) -> Self {
        use std::os::unix::process::CommandExt as _;
        Self(
            Command::new(path)
                .arg(format!("--port={port}"))
                .process_group(0)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
}
impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `meshkit ui` on a free port; its address, read from what it prints.
fn start_ui(dir: &Path) -> (Killed, String) {
    let mut child = meshkit(None, dir)
        .arg("ui")
        .env("MESHKIT_UI_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("meshkit: web view on ") {
                let _ = tx.send(url.to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("meshkit ui printed its address");
    (Killed(child), url)
}

async fn until<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn text(c: &Client, css: &str) -> String {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.unwrap()
}

async fn click_twice(c: &Client, css: &str) {
    // Promote and roll back ask for a second click to confirm.
    for _ in 0..2 {
        let button = c.find(Locator::Css(css)).await.unwrap();
        button.click().await.unwrap();
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The store's record of the route's rollout, through `meshkit show --json`.
fn record(dir: &Path, id: &str) -> Value {
    let o = meshkit(None, dir)
        .args(["--json", "show", id])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", common::text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_watched_and_rolled_back_in_headless_chromium() {
    let driver_path = chromedriver();
    let axe = axe_js();
    let dir = temp_dir("ui-browser");
    let _ = std::fs::remove_file(dir.join("rollouts.db"));
    let status = Arc::new(AtomicU16::new(200));
    let (blue, green) = (
        common::http_server(200),
        common::status_server(status.clone()),
    );
    let (spec, listen) = common::local_spec(
        &dir,
        blue,
        green,
        r#"{"kind": "linear", "step": 25, "wait": "5s"}"#,
        r#"{"check_interval": "500ms", "failure_threshold": 1000}"#,
    );
    let (_ui, url) = start_ui(&dir);
    let run = Killed(
        meshkit(None, &dir)
            .args(["run"])
            .arg(&spec)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let port = free_port();
    let _driver = Driver::start(&driver_path, port);
    let caps = json!({"goog:chromeOptions": {
        "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1100", "--force-device-scale-factor=1"],
    }});
    let caps: serde_json::Map<String, Value> = caps.as_object().unwrap().clone();
    let webdriver = format!("http://127.0.0.1:{port}");
    let c: Client = until(
        "chromedriver to start a session",
        Duration::from_secs(30),
        || {
            let caps = caps.clone();
            let webdriver = webdriver.clone();
            async move {
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps)
                    .connect(&webdriver)
                    .await
                    .ok()
            }
        },
    )
    .await;

    // The link with the token: the rollout appears in the list.
    c.goto(&format!("{url}#token={TOKEN}")).await.unwrap();
    let row_link = "#list tbody tr a";
    until(
        "the rollout in the list",
        Duration::from_secs(15),
        || async { c.find(Locator::Css(row_link)).await.ok() },
    )
    .await;
    assert_eq!(
        text(&c, "#list tbody tr a").await,
        format!("local:{listen}")
    );
    assert!(text(&c, "#access").await.contains("Actions enabled"));
    assert_eq!(
        js(&c, "return location.hash").await,
        json!(""),
        "the token is taken out of the address bar"
    );
    c.find(Locator::Css(row_link))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The chart and the split follow the steps.
    until(
        "the first step in the split",
        Duration::from_secs(15),
        || async { text(&c, "#split").await.contains("green 25%").then_some(()) },
    )
    .await;
    let id = js(&c, "return decodeURIComponent(location.hash.split('=')[1])").await;
    let id = id.as_str().unwrap().to_owned();
    let points_before = js(
        &c,
        "return Number(document.querySelector('#chart').dataset.written)",
    )
    .await;
    let seen_50 = until(
        "the second step in the split",
        Duration::from_secs(20),
        || async { text(&c, "#split").await.contains("green 50%").then(now_ms) },
    )
    .await;
    let points_after = js(
        &c,
        "return Number(document.querySelector('#chart').dataset.written)",
    )
    .await;
    assert!(
        points_after.as_u64() > points_before.as_u64(),
        "the chart gained a point: {points_before} -> {points_after}"
    );
    assert!(text(&c, "#split").await.contains("Data plane"));
    assert!(
        text(&c, "#holder").await.contains('@'),
        "the lease holder shows"
    );
    // From the write's record (its time in ms, from the API) to the page showing it.
    let ui_addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let (_, detail) = get(&ui_addr, &format!("/api/rollouts/{id}"));
    let detail: Value = serde_json::from_str(&detail).unwrap();
    let written_at = detail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["kind"] == "WeightsWritten" && e["message"].as_str().unwrap().contains("green=50")
        })
        .and_then(|e| e["at"].as_u64())
        .expect("the 50% write is recorded");
    let latency = seen_50.saturating_sub(written_at);
    eprintln!("the 50% write was in the page {latency} ms after it was recorded");
    assert!(
        latency < 1000,
        "an event reaches the page within a second: {latency} ms"
    );

    // The accessibility check (axe-core: WCAG 2 A and AA rules, labels and contrast).
    let violations = c
        .execute_async(
            &format!(
                "{axe}\nconst done = arguments[arguments.length - 1];\
                 axe.run(document, {{runOnly: ['wcag2a', 'wcag2aa']}})\
                 .then(r => done(r.violations.map(v => v.id + ': ' + v.help + ' ' + v.nodes.map(n => n.target).join(' '))))\
                 .catch(e => done(['axe failed: ' + e]));"
            ),
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(violations, json!([]), "accessibility violations");

    // The screenshot for the README, from this run.
    let png = c.screenshot().await.unwrap();
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-screenshot.png");
    std::fs::write(&shot, &png).unwrap();
    if std::env::var_os("MESHKIT_UPDATE_SCREENSHOT").is_some() {
        std::fs::write(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/ui.png"),
            &png,
        )
        .unwrap();
    }

    // A failing check's reason shows.
    status.store(500, Ordering::Relaxed);
    let verdict = until(
        "the failing check's reason",
        Duration::from_secs(10),
        || async {
            let v = text(&c, "#verdict").await;
            v.contains("unhealthy").then_some(v)
        },
    )
    .await;
    assert!(
        verdict.contains("500"),
        "the reason names what failed: {verdict}"
    );

    // Without the token, "roll back" is refused and changes nothing.
    js(&c, "sessionStorage.clear(); location.reload(); return null").await;
    until("the view-only page", Duration::from_secs(10), || async {
        text(&c, "#access")
            .await
            .contains("View only")
            .then_some(())
    })
    .await;
    until("the rollout view", Duration::from_secs(10), || async {
        text(&c, "#split").await.contains("green").then_some(())
    })
    .await;
    click_twice(&c, "button[data-gate=rollback]").await;
    let refused = until("the refusal", Duration::from_secs(10), || async {
        let s = text(&c, "#action-status").await;
        s.contains("Refused").then_some(s)
    })
    .await;
    assert!(refused.contains("401"), "{refused}");
    assert_eq!(text(&c, "#gates").await, "", "no gate was recorded");
    let rec = record(&dir, &id);
    assert_eq!(rec["state"], "running", "nothing changed: {rec}");

    // With the token it rolls back within one check interval, and the page shows it.
    c.goto(&format!("{url}#token={TOKEN}&rollout={id}"))
        .await
        .unwrap();
    until(
        "the rollout view with the token",
        Duration::from_secs(10),
        || async {
            let on = js(
                &c,
                "return !document.querySelector('button[data-gate=rollback]').disabled",
            )
            .await;
            (on == json!(true)).then_some(())
        },
    )
    .await;
    let asked = Instant::now();
    click_twice(&c, "button[data-gate=rollback]").await;
    let mut run = run;
    let code = until(
        "the run to roll back and exit",
        Duration::from_secs(15),
        || {
            let code = run.0.try_wait().unwrap().map(|s| s.code());
            async move { code }
        },
    )
    .await;
    assert_eq!(code, Some(3), "rolled back");
    eprintln!(
        "roll back applied and the run ended {:?} after the click (check interval 500 ms)",
        asked.elapsed()
    );
    until(
        "the page to show the rollback",
        Duration::from_secs(10),
        || async {
            text(&c, "#detail-state")
                .await
                .contains("rolled back")
                .then_some(())
        },
    )
    .await;
    let gates = text(&c, "#gates").await;
    assert!(
        gates.contains("rollback asked by web view") && gates.contains("applied"),
        "{gates}"
    );
    let rec = record(&dir, &id);
    assert_eq!(rec["state"], "rolled_back");
    // The holder applied the gate at its next check round.
    let (_, detail) = get(&ui_addr, &format!("/api/rollouts/{id}"));
    let gate = serde_json::from_str::<Value>(&detail).unwrap()["gates"][0].clone();
    let waited = gate["applied"].as_u64().unwrap() - gate["at"].as_u64().unwrap();
    eprintln!("the gate was applied {waited} ms after it was recorded (check interval 500 ms)");
    assert!(
        waited <= 1000,
        "applied at the next check round: {waited} ms"
    );
    c.close().await.unwrap();
}

/// `GET path` on `addr` (`host:port`), `Connection: close`; the status and the body.
fn get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    );
    let mut got = String::new();
    let _ = s.read_to_string(&mut got);
    let status = got.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = got
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn run_with_ui_serves_its_rollout_with_the_mesh_counters_then_stops() {
    let dir = temp_dir("ui-run");
    let _ = std::fs::remove_file(dir.join("rollouts.db"));
    let (blue, green) = (common::http_server(200), common::http_server(200));
    let (spec, listen) = common::local_spec(
        &dir,
        blue,
        green,
        r#"{"kind": "canary", "steps": [50, 100], "bake": "3s"}"#,
        r#"{"check_interval": "300ms"}"#,
    );
    let mut run = meshkit(None, &dir)
        .args(["--json", "run"])
        .arg(&spec)
        .arg("--ui")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(run.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let url = first["ui"]
        .as_str()
        .expect("the first line says where the view is");
    assert_eq!(
        first.as_object().unwrap().len(),
        1,
        "no token on stdout: {first}"
    );
    let link = BufReader::new(run.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.split_once("(it holds the token): ")
                .map(|(_, link)| link.to_owned())
        })
        .expect("the link on stderr");
    assert!(link.starts_with(&format!("{url}#token=")), "{link}");
    assert!(
        link.ends_with(&format!("&route=local%3A127.0.0.1%3A{}", listen.port())),
        "{link}"
    );
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            drop(line);
        }
    });
    // Traffic through the gateway, for the counters.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                get(&listen.to_string(), "/");
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let end = Instant::now() + Duration::from_secs(15);
    let served = loop {
        assert!(Instant::now() < end, "no served split in the view");
        let (_, list) = get(&addr, "/api/rollouts");
        let id = serde_json::from_str::<Value>(&list)
            .ok()
            .and_then(|v| v["rollouts"][0]["id"].as_str().map(str::to_owned));
        if let Some(id) = id {
            let (status, body) = get(&addr, &format!("/api/rollouts/{id}"));
            assert_eq!(status, 200, "{body}");
            // A plain GET reads the store only; the counters come with the stream.
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            use std::io::{Read, Write};
            write!(
                s,
                "GET /api/stream?rollout={id} HTTP/1.1\r\nhost: {addr}\r\n\r\n"
            )
            .unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = vec![0u8; 1 << 20];
            let mut got = String::new();
            let found = loop {
                let n = s.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break None;
                }
                got.push_str(&String::from_utf8_lossy(&buf[..n]));
                let hit = got
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .find_map(|d| {
                        let v: Value = serde_json::from_str(d).ok()?;
                        (v["served"]["requests"].as_u64()? > 0).then_some(v["served"].clone())
                    });
                if hit.is_some() {
                    break hit;
                }
            };
            if let Some(served) = found {
                break served;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let names: Vec<&str> = served["split"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_str().unwrap())
        .collect();
    assert_eq!(names, ["blue", "green"], "{served}");
    let status = run.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    assert_eq!(status.code(), Some(0), "promoted");
    assert_eq!(get(&addr, "/").0, 0, "the view stopped with the run");
}

#[test]
fn ui_refuses_a_bad_token_and_a_taken_address() {
    let dir = temp_dir("ui-refuse");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let cases: [(&[&str], Option<&str>, i32, &str); 3] = [
        (&["ui"], Some("short"), 2, "MESHKIT_UI_TOKEN"),
        (&["ui", "--poll", "20s"], None, 2, "poll interval"),
        (&["ui", "--listen", &taken], None, 4, "cannot listen on"),
    ];
    for (args, token, code, said) in cases {
        let mut c = meshkit(None, &dir);
        c.args(args);
        if let Some(t) = token {
            c.env("MESHKIT_UI_TOKEN", t);
        }
        let o = c.output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(code),
            "{args:?}: {}",
            common::text(&o)
        );
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(said),
            "{args:?}: {}",
            common::text(&o)
        );
    }
}
