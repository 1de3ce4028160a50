//! The web view over the wire: a real `Dashboard` on loopback over a real SQLite
//! store, asked with raw HTTP requests as a browser, a script or an attacker would
//! send them. Each refusal is checked, and that it changed nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use meshkit::store::{
    DynamoStore, Entry, Holder, Lease, NewRollout, RecordState, RecordUpdate, RolloutStore,
    SqliteStore,
};
use meshkit::ui::{Dashboard, RunningDashboard, Token};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "ui-test-token-0123456789";
const ROUTE: &str =
    "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener-rule/app/web/50dc/f2f7/9683";
const ID: &str = "web-v1-to-v2";

struct Dir(std::path::PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn line(kind: &str, message: &str, weights: Option<&str>) -> Entry {
    Entry {
        at: SystemTime::now(),
        by: "ci-7".into(),
        kind: kind.into(),
        message: message.into(),
        weights: weights.map(Into::into),
    }
}

async fn record(store: &dyn RolloutStore, lease: &Lease, entries: Vec<Entry>) {
    let update = RecordUpdate {
        entries,
        ..RecordUpdate::default()
    };
    store.record(lease, ID, &update).await.unwrap();
}

/// A SQLite store holding one running rollout on an ALB rule, with a few lines.
async fn store(name: &str) -> (Arc<SqliteStore>, Lease, Dir) {
    let dir = std::env::temp_dir().join(format!("meshkit-ui-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Arc::new(SqliteStore::open(dir.join("rollouts.db")).unwrap());
    let lease = fill(store.as_ref()).await;
    (store, lease, Dir(dir))
}

/// Records one running rollout on an ALB rule, with a few lines; its lease.
async fn fill(store: &dyn RolloutStore) -> Lease {
    let holder = Holder::named("ci-7");
    let lease = store
        .acquire(ROUTE, &holder, Duration::from_secs(60))
        .await
        .unwrap();
    let rollout = NewRollout {
        id: ID.into(),
        route: ROUTE.into(),
        stable: "web-v1".into(),
        candidate: "web-v2".into(),
        strategy: "canary".into(),
        plan: vec![
            "shift 10% to new, bake 1m".into(),
            "shift 100% to new".into(),
        ],
        started_by: holder,
    };
    store.open(&lease, &rollout).await.unwrap();
    record(
        store,
        &lease,
        vec![
            line("Started", "started canary rollout", Some("web-v1:1")),
            line(
                "WeightsWritten",
                &format!("weights written and read back on {ROUTE}: web-v1=90 web-v2=10"),
                Some("web-v1:9,web-v2:1"),
            ),
            line(
                "WeightsVerified",
                "data plane applies web-v1=90 web-v2=10",
                Some("web-v1:9,web-v2:1"),
            ),
            line(
                "Verdict",
                "stage 0 check: unhealthy: 5xx rate 31% over 200 requests (failures 1, inconclusive 0)",
                None,
            ),
        ],
    )
    .await;
    lease
}

async fn view(store: Arc<dyn RolloutStore>, listen: &str) -> RunningDashboard {
    Dashboard::new(store)
        .listen(listen.parse().unwrap())
        .token(Token::new(TOKEN).unwrap())
        .start()
        .await
        .unwrap()
}

/// One request (`Connection: close`); the status, the head and the body.
async fn send(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&got).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head[9..12].parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn req(method: &str, path: &str, host: &str, headers: &[&str]) -> String {
    let mut r = format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("content-length: 0\r\n\r\n");
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_the_api_show_routes_but_no_account_or_region() {
    let (store, _lease, _dir) = store("api").await;
    let v = view(store, "127.0.0.1:0").await;
    let host = v.addr().to_string();
    let (status, head, body) = send(v.addr(), &req("GET", "/", &host, &[])).await;
    assert_eq!(status, 200);
    assert!(body.contains("<title>meshkit rollouts</title>"));
    for h in [
        "content-security-policy: default-src 'none'; script-src 'self'",
        "x-content-type-options: nosniff",
        "x-frame-options: deny",
        "cache-control: no-store",
        "referrer-policy: no-referrer",
    ] {
        assert!(head.contains(h), "{h} in\n{head}");
    }
    for asset in ["/app.js", "/app.css"] {
        let (status, _, body) = send(v.addr(), &req("GET", asset, &host, &[])).await;
        assert_eq!(status, 200, "{asset}");
        assert!(!body.contains("http://") && !body.contains("https://") || asset == "/app.js");
    }
    let (status, _, list) = send(v.addr(), &req("GET", "/api/rollouts", &host, &[])).await;
    assert_eq!(status, 200);
    let (status, _, detail) = send(
        v.addr(),
        &req("GET", &format!("/api/rollouts/{ID}"), &host, &[]),
    )
    .await;
    assert_eq!(status, 200);
    for body in [&list, &detail] {
        assert!(
            body.contains("listener-rule/app/web/50dc/f2f7/9683"),
            "{body}"
        );
        assert!(
            !body.contains("123456789012") && !body.contains("eu-west-1"),
            "{body}"
        );
    }
    let d: serde_json::Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(d["actionable"], true);
    assert_eq!(d["verdict"]["kind"], "unhealthy");
    assert!(
        d["verdict"]["message"]
            .as_str()
            .unwrap()
            .contains("5xx rate 31%")
    );
    assert_eq!(d["data_plane"]["kind"], "WeightsVerified");
    assert_eq!(
        d["progress"]["written"],
        serde_json::Value::Null,
        "no progress recorded"
    );
    let series = d["series"].as_array().unwrap();
    assert_eq!(series.len(), 3, "{series:?}");
    assert_eq!(series[1]["kind"], "written");
    assert_eq!(
        series[1]["split"],
        serde_json::json!([["web-v1", 90.0], ["web-v2", 10.0]])
    );
    assert_eq!(series[2]["kind"], "applied");
    assert_eq!(d["holder"]["name"], "ci-7");
    let (status, _, _) = send(v.addr(), &req("GET", "/api/rollouts/nope", &host, &[])).await;
    assert_eq!(status, 404);
    assert_eq!(
        send(v.addr(), &req("GET", "/api/nothing", &host, &[]))
            .await
            .0,
        404
    );
    for bad in [
        "/api/rollouts/%0a",
        "/api/rollouts/%ff",
        "/api/stream?rollout=%0d",
    ] {
        let (status, _, _) = send(v.addr(), &req("GET", bad, &host, &[])).await;
        assert_eq!(status, 400, "{bad}");
    }
    v.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_of_an_action_and_that_it_changes_nothing() {
    let (store, lease, _dir) = store("refusals").await;
    let v = view(store.clone(), "127.0.0.1:0").await;
    let host = v.addr().to_string();
    let path = format!("/api/rollouts/{ID}/rollback");
    let bearer = format!("authorization: Bearer {TOKEN}");
    let cookie = format!("cookie: token={TOKEN}; meshkit-token={TOKEN}");
    let basic = format!("authorization: Basic {TOKEN}");
    let bare = format!("authorization: {TOKEN}");
    let refusals: Vec<(&str, String, Vec<&str>, u16)> = vec![
        ("no token", path.clone(), vec![], 401),
        (
            "a wrong token",
            path.clone(),
            vec!["authorization: Bearer ui-test-token-0123456780"],
            401,
        ),
        ("the token without Bearer", path.clone(), vec![&bare], 401),
        ("the token as Basic", path.clone(), vec![&basic], 401),
        (
            "the token in the query",
            format!("{path}?token={TOKEN}"),
            vec![],
            401,
        ),
        ("the token in a cookie", path.clone(), vec![&cookie], 401),
        (
            "two Authorization headers",
            path.clone(),
            vec![&bearer, &bearer],
            401,
        ),
        (
            "another site's Origin",
            path.clone(),
            vec![&bearer, "origin: http://evil.example"],
            403,
        ),
        (
            "Sec-Fetch-Site cross-site",
            path.clone(),
            vec![&bearer, "sec-fetch-site: cross-site"],
            403,
        ),
        (
            "an unknown gate",
            format!("/api/rollouts/{ID}/explode"),
            vec![&bearer],
            404,
        ),
        (
            "an unknown rollout",
            "/api/rollouts/nope/rollback".into(),
            vec![&bearer],
            404,
        ),
    ];
    for (what, path, headers, want) in &refusals {
        let (status, head, body) = send(v.addr(), &req("POST", path, &host, headers)).await;
        assert_eq!(status, *want, "{what}: {body}");
        assert!(body.contains("\"error\""), "{what}: {body}");
        if *want == 401 {
            assert!(head.contains("www-authenticate: bearer"), "{what}");
        }
    }
    // A rebinding page: a Host that is not loopback is refused, reading or acting.
    for (method, path) in [("GET", "/api/rollouts"), ("POST", path.as_str())] {
        let (status, _, _) = send(v.addr(), &req(method, path, "evil.example", &[&bearer])).await;
        assert_eq!(status, 421, "{method} {path}");
    }
    // Another site's page cannot read either (it could hold every stream).
    for path in ["/api/rollouts", "/api/stream"] {
        let (status, _, _) = send(
            v.addr(),
            &req("GET", path, &host, &["sec-fetch-site: cross-site"]),
        )
        .await;
        assert_eq!(status, 403, "GET {path} from another site");
    }
    // A preflight gets no CORS grant.
    let (status, head, _) = send(
        v.addr(),
        &req(
            "OPTIONS",
            &path,
            &host,
            &[
                "origin: http://evil.example",
                "access-control-request-method: POST",
            ],
        ),
    )
    .await;
    assert_eq!(status, 403, "refused: another site");
    assert!(!head.contains("access-control-allow"), "{head}");
    assert!(
        store.gates(ID).await.unwrap().is_empty(),
        "no refusal recorded a gate"
    );

    // The token, from this site: recorded for the lease holder.
    let (status, _, body) = send(
        v.addr(),
        &req(
            "POST",
            &path,
            &host,
            &[
                &bearer,
                &format!("origin: http://{host}"),
                "sec-fetch-site: same-origin",
            ],
        ),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let gates = store.gates(ID).await.unwrap();
    assert_eq!(gates.len(), 1);
    assert_eq!(gates[0].gate, meshkit::store::Gate::Rollback);
    assert_eq!(gates[0].by, "web view (127.0.0.1)");

    // An ended rollout takes no gate.
    let end = RecordUpdate {
        end: Some((RecordState::RolledBack, "rolled back".into())),
        ..RecordUpdate::default()
    };
    store.record(&lease, ID, &end).await.unwrap();
    let (status, _, body) = send(v.addr(), &req("POST", &path, &host, &[&bearer])).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("not running"), "{body}");
    assert_eq!(store.gates(ID).await.unwrap().len(), 1);
    v.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_loopback_looking_needs_the_token_too() {
    let (store, _lease, _dir) = store("wide").await;
    let v = view(store, "0.0.0.0:0").await;
    let addr = SocketAddr::from(([127, 0, 0, 1], v.addr().port()));
    let host = "dash.internal:8080";
    let bearer = format!("authorization: Bearer {TOKEN}");
    // The page itself holds no data.
    assert_eq!(send(addr, &req("GET", "/", host, &[])).await.0, 200);
    for path in [
        "/api/rollouts",
        &format!("/api/rollouts/{ID}"),
        "/api/stream",
    ] {
        assert_eq!(
            send(addr, &req("GET", path, host, &[])).await.0,
            401,
            "{path}"
        );
    }
    assert_eq!(
        send(addr, &req("GET", "/api/rollouts", host, &[&bearer]))
            .await
            .0,
        200
    );
    assert!(v.url().starts_with("http://127.0.0.1:"), "{}", v.url());
    v.shutdown().await;
}

/// Reads server-sent events from `s` until one named `name` arrives.
async fn next_event(s: &mut TcpStream, buf: &mut String, name: &str) -> serde_json::Value {
    loop {
        while let Some(cut) = buf.find("\n\n") {
            let block: String = buf.drain(..cut + 2).collect();
            let event = block.lines().find_map(|l| l.strip_prefix("event: "));
            let data = block.lines().find_map(|l| l.strip_prefix("data: "));
            if let (Some(e), Some(d)) = (event, data)
                && e == name
            {
                return serde_json::from_str(d).unwrap();
            }
        }
        let mut chunk = [0u8; 65536];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("an event within 5 s")
            .unwrap();
        assert!(n > 0, "the stream ended");
        // Chunked transfer: the chunk-size lines are skipped by the event parser.
        buf.push_str(&String::from_utf8_lossy(&chunk[..n]).replace("\r\n", "\n"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_pushes_new_lines_within_a_second_and_only_those() {
    let (store, lease, _dir) = store("stream").await;
    let v = view(store.clone(), "127.0.0.1:0").await;
    let host = v.addr().to_string();
    let mut s = TcpStream::connect(v.addr()).await.unwrap();
    s.write_all(req("GET", &format!("/api/stream?rollout={ID}"), &host, &[]).as_bytes())
        .await
        .unwrap();
    let mut buf = String::new();
    let first = next_event(&mut s, &mut buf, "rollout").await;
    assert_eq!(first["entries_from"], 0);
    let seen = first["entries"].as_array().unwrap().len();
    assert_eq!(seen, 4, "the four lines recorded: {first}");
    let written = Instant::now();
    record(store.as_ref(), &lease, vec![line("Paused", "paused", None)]).await;
    let next = next_event(&mut s, &mut buf, "rollout").await;
    let took = written.elapsed();
    assert!(took < Duration::from_secs(1), "pushed after {took:?}");
    assert_eq!(next["entries_from"], seen);
    assert_eq!(next["entries"].as_array().unwrap().len(), 1, "{next}");
    assert_eq!(next["entries"][0]["message"], "paused");
    drop(s);
    // The streams are capped; the 65th is told to come back later.
    let mut open = Vec::new();
    for _ in 0..64 {
        let mut s = TcpStream::connect(v.addr()).await.unwrap();
        s.write_all(req("GET", "/api/stream", &host, &[]).as_bytes())
            .await
            .unwrap();
        let mut b = String::new();
        next_event(&mut s, &mut b, "list").await;
        open.push(s);
    }
    let (status, _, body) = send(v.addr(), &req("GET", "/api/stream", &host, &[])).await;
    assert_eq!(status, 503, "{body}");
    drop(open);
    v.shutdown().await;
}

/// The view answers the same over the DynamoDB store (on the moto emulator) as over
/// SQLite, timestamps aside, and a gate asked in it lands in the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_view_is_the_same_over_dynamodb() {
    let moto = meshkit_testing::MotoServer::start().unwrap();
    let client = meshkit::sdk::dynamodb::Client::new(&moto.sdk_config());
    DynamoStore::create_table(&client, "rollouts")
        .await
        .unwrap();
    let dynamo: Arc<dyn RolloutStore> = Arc::new(DynamoStore::new(client, "rollouts"));
    fill(dynamo.as_ref()).await;
    let (sqlite, _lease, _dir) = store("same").await;
    let mut answers = Vec::new();
    for s in [dynamo.clone(), sqlite as Arc<dyn RolloutStore>] {
        let v = view(s, "127.0.0.1:0").await;
        let host = v.addr().to_string();
        let (status, _, body) = send(
            v.addr(),
            &req("GET", &format!("/api/rollouts/{ID}"), &host, &[]),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        answers.push(without_times(serde_json::from_str(&body).unwrap()));
        v.shutdown().await;
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0]["series"].as_array().unwrap().len(), 3);
    let v = view(dynamo.clone(), "127.0.0.1:0").await;
    let host = v.addr().to_string();
    let bearer = format!("authorization: Bearer {TOKEN}");
    let (status, _, body) = send(
        v.addr(),
        &req(
            "POST",
            &format!("/api/rollouts/{ID}/pause"),
            &host,
            &[&bearer],
        ),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let gates = dynamo.gates(ID).await.unwrap();
    assert_eq!(gates.len(), 1);
    assert_eq!(gates[0].gate, meshkit::store::Gate::Pause);
    v.shutdown().await;
}

/// `v` with every time (`at`, `started`, `since`, `expires`, ...) taken out.
fn without_times(mut v: serde_json::Value) -> serde_json::Value {
    match &mut v {
        serde_json::Value::Object(map) => {
            for key in ["at", "started", "since", "expires", "ended", "applied"] {
                map.remove(key);
            }
            for value in map.values_mut() {
                *value = without_times(value.take());
            }
        }
        serde_json::Value::Array(items) => {
            for item in items.iter_mut() {
                *item = without_times(item.take());
            }
        }
        _ => {}
    }
    v
}
