//! The SQLite rollout store under the runner: leases, takeover from the record,
//! fencing, gates, seeded kill/takeover schedules (paused time, a test clock).

mod store_harness;

use std::sync::Arc;
use std::time::Duration;

use meshkit::store::SqliteStore;
use store_harness::{ManualClock, World, scenarios};

fn world(name: &str) -> (World, tempdir::Dir) {
    let dir = tempdir::Dir::new(name);
    let clock = ManualClock::new();
    let store = SqliteStore::open(dir.0.join("rollouts.db"))
        .unwrap()
        .with_clock(clock.clock());
    (
        World::new(Arc::new(store), clock, Duration::from_secs(10)),
        dir,
    )
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new(name: &str) -> Self {
            let p = std::env::temp_dir().join(format!(
                "meshkit-store-{name}-{}-{}",
                std::process::id(),
                fastrand::u64(..)
            ));
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn second_run_is_refused_at_once() {
    let (w, _d) = world("refused");
    scenarios::second_run_refused(&w).await;
}

#[tokio::test(start_paused = true)]
async fn kill_then_takeover_resumes_from_the_record() {
    let (w, _d) = world("takeover");
    scenarios::takeover_after_kill(&w).await;
}

#[tokio::test(start_paused = true)]
async fn a_lease_stolen_mid_bake_stops_the_holder_before_its_next_write() {
    let (w, _d) = world("stolen");
    scenarios::stolen_mid_bake(&w).await;
}

#[tokio::test(start_paused = true)]
async fn gates_from_another_process_land_within_a_check_interval() {
    let (w, _d) = world("gates");
    scenarios::gate_from_elsewhere(&w).await;
}

#[tokio::test(start_paused = true)]
async fn fifty_seeded_kill_and_takeover_schedules_end_safely() {
    let (mut kills, mut thefts) = (0, 0);
    for seed in 0..50 {
        let (w, _d) = world("seeded");
        let s = scenarios::seeded(&w, seed).await;
        kills += s.steps.iter().filter(|s| s.contains("killed")).count();
        thefts += s.steps.iter().filter(|s| s.contains("robbed")).count();
    }
    // The schedules really kill and rob holders, not only let them finish.
    assert!(
        kills >= 10 && thefts >= 10,
        "kills {kills}, thefts {thefts}"
    );
}

/// The store's cost: calls per rollout, per step and per heartbeat, counted on a
/// 3-step canary (4 writes with the retire) baking 60 s per step with 10 s checks and a
/// 60 s lease. Figures in benches/README.md.
#[tokio::test(start_paused = true)]
async fn store_calls_per_step_and_heartbeat() {
    let dir = tempdir::Dir::new("cost");
    let clock = ManualClock::new();
    let store = SqliteStore::open(dir.0.join("rollouts.db"))
        .unwrap()
        .with_clock(clock.clock());
    let mut w = World::new(Arc::new(store), clock, Duration::from_secs(10));
    w.ttl = Duration::from_secs(60);
    let outcome = w
        .spawn("ci-1", meshkit_testing::ScriptedHealthCheck::healthy())
        .await
        .unwrap()
        .unwrap();
    assert!(outcome.is_promoted());
    let calls = w.ledger.calls.lock().unwrap().clone();
    let get = |m: &str| calls.get(m).copied().unwrap_or(0);
    let writes = w.writes.load(std::sync::atomic::Ordering::SeqCst) as u64;
    assert_eq!(writes, 4);
    // One fence per route write, nothing else on the write path.
    assert_eq!(get("fence"), writes, "{calls:?}");
    assert_eq!(
        (get("acquire"), get("open"), get("release")),
        (1, 1, 1),
        "{calls:?}"
    );
    // Gates: one read per check round; heartbeats: one per 20 s (a third of 60 s).
    let elapsed = match outcome {
        meshkit::Outcome::Promoted { elapsed, .. } => elapsed.as_secs(),
        other => panic!("{other}"),
    };
    assert!(
        get("gates") <= elapsed / 10 + 2,
        "{calls:?} over {elapsed} s"
    );
    assert!(
        get("renew") <= elapsed / 20 + 1,
        "{calls:?} over {elapsed} s"
    );
    // Record writes: at most one per check round and step event burst.
    assert!(
        get("record") <= elapsed / 10 + 4 * 3,
        "{calls:?} over {elapsed} s"
    );
    eprintln!("store calls over a {elapsed} s, 4-write rollout: {calls:?}");
}

/// After a crash the route is put back on stable by hand (`meshkit rollback`): the
/// next run closes the old record as abandoned and starts afresh, instead of refusing
/// a route its record never wrote.
#[tokio::test(start_paused = true)]
async fn a_route_rolled_back_by_hand_after_a_crash_starts_afresh() {
    use meshkit::store::{RecordState, RolloutStore};
    let (w, _d) = world("by-hand");
    let first = w.spawn("ci-1", meshkit_testing::ScriptedHealthCheck::healthy());
    w.until_writes(1).await;
    w.quiet().await;
    first.abort();
    let _ = first.await;
    let old = w
        .store
        .open_rollout(store_harness::ROUTE)
        .await
        .unwrap()
        .unwrap();
    w.route.external_write(
        store_harness::ROUTE,
        meshkit::traffic::Weights::split("v1", "v2", 0).unwrap(),
    );
    w.clock.expire_leases();
    let outcome = w
        .process("ci-2", meshkit_testing::ScriptedHealthCheck::healthy())
        .run()
        .await
        .unwrap();
    assert!(outcome.is_promoted());
    let old = w.store.get(&old.rollout.id).await.unwrap().unwrap();
    assert_eq!(old.state, RecordState::Abandoned, "{:?}", old.detail);
    assert!(old.detail.unwrap().contains("found at v1=100 v2=0"));
    let history = w
        .store
        .history(Some(store_harness::ROUTE), 10)
        .await
        .unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].state, RecordState::Promoted);
}

/// The same versions rolled out again under the same (derived) id get a record of
/// their own: history shows both rollouts.
#[tokio::test(start_paused = true)]
async fn a_rerun_of_the_same_versions_gets_its_own_record() {
    use meshkit::store::{RecordState, RolloutStore};
    let (w, _d) = world("rerun");
    let build = |check| {
        meshkit::Rollout::builder()
            .router(w.route.clone())
            .route(store_harness::ROUTE)
            .from("v1")
            .to("v2")
            .id("checkout-v1-v2")
            .strategy(meshkit::strategy::Canary::steps([10, 100]).bake(Duration::from_secs(60)))
            .check(check)
            .check_interval(Duration::from_secs(10))
            .store(Arc::new(w.store.clone()))
            .store_clock(w.clock.clock())
            .build()
            .unwrap()
    };
    let first = build(meshkit_testing::ScriptedHealthCheck::fail_after(1, "5xx"))
        .run()
        .await
        .unwrap();
    assert!(!first.is_promoted());
    let second = build(meshkit_testing::ScriptedHealthCheck::healthy())
        .run()
        .await
        .unwrap();
    assert!(second.is_promoted());
    let history = w
        .store
        .history(Some(store_harness::ROUTE), 10)
        .await
        .unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[1].id, "checkout-v1-v2");
    assert_eq!(history[1].state, RecordState::RolledBack);
    assert!(
        history[0].id.starts_with("checkout-v1-v2-") && history[0].id.len() <= 32,
        "{}",
        history[0].id
    );
    assert_eq!(history[0].state, RecordState::Promoted);
}

/// A run its caller drops (a cancelled task) leaves no heartbeat behind keeping the
/// route's lease alive: the keeper's task goes with it.
#[tokio::test(start_paused = true)]
async fn a_dropped_run_stops_its_heartbeat() {
    let (w, _d) = world("dropped");
    let run = w.spawn("ci-1", meshkit_testing::ScriptedHealthCheck::healthy());
    w.until_writes(1).await;
    tokio::time::sleep(store_harness::TTL).await;
    let renewals = || {
        w.ledger
            .calls
            .lock()
            .unwrap()
            .get("renew")
            .copied()
            .unwrap_or(0)
    };
    assert!(renewals() > 0, "it was renewing while it ran");
    run.abort();
    let _ = run.await;
    tokio::task::yield_now().await;
    let after = renewals();
    tokio::time::sleep(store_harness::TTL * 5).await;
    assert_eq!(renewals(), after, "no renewal after the run was dropped");
}

/// A file written before timeline lines kept their split opens as it is: its lines
/// read back without one, and new lines keep theirs.
#[tokio::test]
async fn a_file_from_before_the_split_column_is_migrated_in_place() {
    use meshkit::store::{Entry, Holder, NewRollout, RecordUpdate, RolloutStore};
    let d = tempdir::Dir::new("migrate");
    let path = d.0.join("rollouts.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE entries (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, rollout TEXT NOT NULL,
                at_ms INTEGER NOT NULL, by TEXT NOT NULL, kind TEXT NOT NULL,
                message TEXT NOT NULL);",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let holder = Holder::named("ci-1");
    let lease = store
        .acquire("web", &holder, Duration::from_secs(60))
        .await
        .unwrap();
    let rollout = NewRollout {
        id: "r1".into(),
        route: "web".into(),
        stable: "v1".into(),
        candidate: "v2".into(),
        strategy: "canary".into(),
        plan: vec!["shift 10% to new".into()],
        started_by: holder,
    };
    store.open(&lease, &rollout).await.unwrap();
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute(
            "INSERT INTO entries (rollout, at_ms, by, kind, message) \
             VALUES ('r1', 1, 'old', 'WeightsWritten', 'from before')",
            [],
        )
        .unwrap();
    }
    let new = Entry {
        at: std::time::SystemTime::now(),
        by: "ci-1".into(),
        kind: "WeightsWritten".into(),
        message: "weights written".into(),
        weights: Some("v1:9,v2:1".into()),
    };
    let update = RecordUpdate {
        entries: vec![new],
        ..RecordUpdate::default()
    };
    store.record(&lease, "r1", &update).await.unwrap();
    drop(store);
    // Opening again (the column is there now) changes nothing.
    let store = SqliteStore::open(&path).unwrap();
    let rec = store.get("r1").await.unwrap().unwrap();
    let got: Vec<_> = rec
        .entries
        .iter()
        .map(|e| (e.message.as_str(), e.weights.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            ("from before", None),
            ("weights written", Some("v1:9,v2:1"))
        ]
    );
}
