//! What a rollout does when its store fails: down at start, down or busy mid-rollout,
//! heartbeats failing past the lease, SQLite locked by another process, DynamoDB
//! throttling and conflicts (aws-smithy-mocks). Always: nothing written to the route
//! without a lease the store confirmed, and the error names the weights in force.

mod store_harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use aws_smithy_mocks::{RuleMode, mock, mock_client};
use aws_smithy_runtime_api::http::{Response, StatusCode};
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::RetryConfig;
use meshkit::async_trait;
use meshkit::store::{
    DynamoStore, Entry, Gate, GateRequest, Holder, Lease, NewRollout, Progress, RecordState,
    RecordUpdate, RolloutRecord, RolloutStore, SqliteStore, StoreError, Summary,
};
use meshkit::traffic::Weights;
use meshkit::{Rollout, RolloutError};
use meshkit_testing::ScriptedHealthCheck;
use store_harness::{ManualClock, ROUTE, World};

/// A store that can be taken down, or made busy for its next calls.
#[derive(Debug, Clone)]
struct Faulty {
    inner: Arc<dyn RolloutStore>,
    down: Arc<AtomicBool>,
    busy: Arc<AtomicU32>,
}

impl Faulty {
    fn fail(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "connection refused (injected)".into(),
            ));
        }
        if self
            .busy
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StoreError::Busy("throttled (injected)".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl RolloutStore for Faulty {
    async fn acquire(
        &self,
        route: &str,
        holder: &Holder,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        self.fail()?;
        self.inner.acquire(route, holder, ttl).await
    }
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StoreError> {
        self.fail()?;
        self.inner.renew(lease, ttl).await
    }
    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        self.fail()?;
        self.inner.release(lease).await
    }
    async fn lease(&self, route: &str) -> Result<Option<Lease>, StoreError> {
        self.fail()?;
        self.inner.lease(route).await
    }
    async fn open(&self, lease: &Lease, rollout: &NewRollout) -> Result<(), StoreError> {
        self.fail()?;
        self.inner.open(lease, rollout).await
    }
    async fn record(
        &self,
        lease: &Lease,
        id: &str,
        update: &RecordUpdate,
    ) -> Result<(), StoreError> {
        self.fail()?;
        self.inner.record(lease, id, update).await
    }
    async fn fence(
        &self,
        lease: &Lease,
        id: &str,
        pending: &Progress,
        update: &RecordUpdate,
        margin: Duration,
    ) -> Result<(), StoreError> {
        self.fail()?;
        self.inner.fence(lease, id, pending, update, margin).await
    }
    async fn open_rollout(&self, route: &str) -> Result<Option<RolloutRecord>, StoreError> {
        self.fail()?;
        self.inner.open_rollout(route).await
    }
    async fn get(&self, id: &str) -> Result<Option<RolloutRecord>, StoreError> {
        self.fail()?;
        self.inner.get(id).await
    }
    async fn history(&self, route: Option<&str>, limit: usize) -> Result<Vec<Summary>, StoreError> {
        self.fail()?;
        self.inner.history(route, limit).await
    }
    async fn request(&self, id: &str, gate: Gate, by: &str) -> Result<GateRequest, StoreError> {
        self.fail()?;
        self.inner.request(id, gate, by).await
    }
    async fn gates(&self, id: &str) -> Result<Vec<GateRequest>, StoreError> {
        self.fail()?;
        self.inner.gates(id).await
    }
    async fn gate_applied(
        &self,
        lease: &Lease,
        id: &str,
        gate: &GateRequest,
        entry: &Entry,
    ) -> Result<(), StoreError> {
        self.fail()?;
        self.inner.gate_applied(lease, id, gate, entry).await
    }
    async fn prune(&self, ended_before: SystemTime) -> Result<usize, StoreError> {
        self.fail()?;
        self.inner.prune(ended_before).await
    }
}

struct Setup {
    world: World,
    faulty: Faulty,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn setup(name: &str) -> Setup {
    let dir = std::env::temp_dir().join(format!(
        "meshkit-faults-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let clock = ManualClock::new();
    let sqlite = SqliteStore::open(dir.join("r.db"))
        .unwrap()
        .with_clock(clock.clock());
    let faulty = Faulty {
        inner: Arc::new(sqlite),
        down: Arc::new(AtomicBool::new(false)),
        busy: Arc::new(AtomicU32::new(0)),
    };
    let world = World::new(Arc::new(faulty.clone()), clock, Duration::from_secs(10));
    Setup {
        world,
        faulty,
        _dir: TempDir(dir),
    }
}

fn split(new: u8) -> Weights {
    Weights::split("v1", "v2", new).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_store_down_at_start_writes_nothing() {
    let s = setup("down-start");
    s.faulty.down.store(true, Ordering::SeqCst);
    let r = s
        .world
        .process("ci-1", ScriptedHealthCheck::healthy())
        .run()
        .await;
    match &r {
        Err(e @ RolloutError::Store(StoreError::Unavailable(_))) => assert!(e.nothing_written()),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.world.route.write_calls(), 0);
    assert_eq!(s.world.weights(), split(0));
}

#[tokio::test(start_paused = true)]
async fn a_busy_store_is_ridden_through() {
    let s = setup("busy");
    let run = s.world.spawn("ci-1", ScriptedHealthCheck::healthy());
    s.world.until_writes(1).await;
    // The next two store calls (the next fence or a record write) are throttled.
    s.faulty.busy.store(2, Ordering::SeqCst);
    let outcome = run.await.unwrap().unwrap();
    assert!(outcome.is_promoted());
    assert_eq!(
        s.faulty.busy.load(Ordering::SeqCst),
        0,
        "the throttling was met"
    );
    assert!(s.world.violations().is_empty());
}

/// The store goes down after the first step: the next write is not made (its fence
/// cannot be confirmed), the run stops naming the weights in force, and once the
/// store is back a new run resumes the rollout from its record.
#[tokio::test(start_paused = true)]
async fn a_store_down_mid_rollout_stops_writes_then_the_record_resumes() {
    let s = setup("down-mid");
    let run = s.world.spawn("ci-1", ScriptedHealthCheck::healthy());
    s.world.until_writes(1).await;
    s.world.quiet().await;
    s.faulty.down.store(true, Ordering::SeqCst);
    let writes = s.world.route.write_calls();
    let r = run.await.unwrap();
    match &r {
        Err(RolloutError::LeaseLost {
            in_force, detail, ..
        }) => {
            assert_eq!(*in_force, split(10));
            assert!(
                detail.contains("could not confirm the lease")
                    || detail.contains("renewals failed"),
                "{detail}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.world.route.write_calls(),
        writes,
        "nothing written without a confirmed lease"
    );
    assert_eq!(s.world.weights(), split(10));
    s.faulty.down.store(false, Ordering::SeqCst);
    s.world.clock.expire_leases();
    let outcome = s
        .world
        .process("ci-2", ScriptedHealthCheck::healthy())
        .run()
        .await
        .unwrap();
    assert!(outcome.is_promoted());
    let rec = &s.faulty.history(Some(ROUTE), 1).await.unwrap()[0];
    assert_eq!(rec.state, RecordState::Promoted);
    assert!(s.world.violations().is_empty());
}

/// Heartbeats failing while a step bakes (no write due): once the lease time has
/// passed without a renewal the run stops on its own, before any further write.
#[tokio::test(start_paused = true)]
async fn heartbeats_failing_past_the_lease_stop_the_run() {
    let s = setup("heartbeat");
    let mut w = s.world;
    w.ttl = Duration::from_secs(3);
    let run = tokio::spawn(
        Rollout::builder()
            .router(w.route.clone())
            .route(ROUTE)
            .from("v1")
            .to("v2")
            .strategy(meshkit::strategy::Canary::steps([10, 100]).bake(Duration::from_secs(600)))
            .check(ScriptedHealthCheck::healthy())
            .check_interval(Duration::from_secs(10))
            .call_timeout(Duration::from_secs(1))
            .store(Arc::new(s.faulty.clone()))
            .holder(Holder::named("ci-1"))
            .lease_ttl(Duration::from_secs(3))
            .store_clock(w.clock.clock())
            .build()
            .unwrap()
            .run(),
    );
    while w.route.write_calls() < 1 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s.faulty.down.store(true, Ordering::SeqCst);
    let started = tokio::time::Instant::now();
    let r = run.await.unwrap();
    match &r {
        Err(RolloutError::LeaseLost {
            in_force, detail, ..
        }) => {
            assert_eq!(*in_force, split(10));
            assert!(detail.contains("renewals failed"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    // Within the lease time and a retry, long before the 600 s bake ended.
    assert!(
        started.elapsed() <= Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(w.route.write_calls(), 1);
    w.ttl = store_harness::TTL;
}

/// Another process holds the SQLite file's write lock: the store says busy (after
/// its busy timeout), a run cannot start and writes nothing.
#[tokio::test]
async fn sqlite_locked_by_another_process_is_busy() {
    let dir = std::env::temp_dir().join(format!(
        "meshkit-locked-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let path = dir.join("r.db");
    let store = SqliteStore::open(&path)
        .unwrap()
        .with_busy_timeout(Duration::from_millis(100))
        .unwrap();
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let err = store
        .acquire(ROUTE, &Holder::named("ci-1"), Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Busy(_)) && err.is_retryable(),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("locked by another process"),
        "{err}"
    );
    other.execute_batch("COMMIT").unwrap();
    store
        .acquire(ROUTE, &Holder::named("ci-1"), Duration::from_secs(60))
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

/// DynamoDB throttling and transaction conflicts are `Busy` (retried); a failed
/// fence condition is a lost lease, named from the lease as it is.
#[tokio::test]
async fn dynamodb_throttling_and_conflicts() {
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::types::AttributeValue;
    let throttled = mock!(aws_sdk_dynamodb::Client::get_item).then_http_response(|| {
        Response::new(
            StatusCode::try_from(400).unwrap(),
            SdkBody::from(r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"injected"}"#),
        )
    });
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&throttled], |c| c
        .retry_config(RetryConfig::disabled()));
    let store = DynamoStore::new(client, "t");
    let err = store
        .acquire(ROUTE, &Holder::named("a"), Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Busy(_)), "{err:?}");

    // A fenced write refused by its condition: the lease is named as it now is.
    let lease = Lease {
        route: ROUTE.into(),
        holder: Holder::named("a"),
        token: 4,
        since: SystemTime::now(),
        expires: SystemTime::now() + Duration::from_secs(60),
        rollout: Some("mk1".into()),
    };
    let canceled = mock!(aws_sdk_dynamodb::Client::transact_write_items).then_http_response(|| {
        Response::new(
            StatusCode::try_from(400).unwrap(),
            SdkBody::from(r#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","message":"Transaction cancelled","CancellationReasons":[{"Code":"ConditionalCheckFailed","Message":"The conditional request failed"},{"Code":"None"}]}"#),
        )
    });
    let now_holder = mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| {
        GetItemOutput::builder()
            .item("pk", AttributeValue::S(format!("lease#{ROUTE}")))
            .item("sk", AttributeValue::S("lease".into()))
            .item("token", AttributeValue::N("5".into()))
            .item(
                "holder",
                AttributeValue::S(r#"{"name":"b","host":"host-b","user":"u","pid":7}"#.into()),
            )
            .item("since", AttributeValue::N("0".into()))
            .item("expires", AttributeValue::N("99999999999999".into()))
            .build()
    });
    let conflict = mock!(aws_sdk_dynamodb::Client::transact_write_items).then_http_response(|| {
        Response::new(
            StatusCode::try_from(400).unwrap(),
            SdkBody::from(r#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionConflictException","message":"conflict"}"#),
        )
    });
    let client = mock_client!(
        aws_sdk_dynamodb,
        RuleMode::Sequential,
        [&canceled, &now_holder, &conflict],
        |c| c.retry_config(RetryConfig::disabled())
    );
    let store = DynamoStore::new(client, "t");
    let update = RecordUpdate::default();
    let err = store
        .fence(
            &lease,
            "mk1",
            &Progress::default(),
            &update,
            Duration::from_secs(30),
        )
        .await
        .unwrap_err();
    match &err {
        StoreError::Lost { detail, .. } => assert!(
            detail.contains("taken over by b") && detail.contains("token 5, ours 4"),
            "{detail}"
        ),
        other => panic!("{other:?}"),
    }
    let err = store
        .fence(
            &lease,
            "mk1",
            &Progress::default(),
            &update,
            Duration::from_secs(30),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Busy(_)) && err.is_retryable(),
        "{err:?}"
    );
}
