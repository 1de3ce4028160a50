//! A harness for rollout-store tests, shared by the SQLite and DynamoDB suites:
//! "processes" (rollouts each with its own holder name) on one route, a clock the
//! test moves, a store wrapper that keeps a ledger of who holds each lease, and a
//! router probe that flags every write made by a process not holding the lease.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meshkit::async_trait;
use meshkit::store::{
    Clock, Entry, Gate, GateRequest, Holder, Lease, NewRollout, Progress, RecordUpdate,
    RolloutRecord, RolloutStore, StoreError, Summary,
};
use meshkit::strategy::Canary;
use meshkit::traffic::{Observed, RouteRef, TrafficError, TrafficRouter, Weights, WriteRequest};
use meshkit::{Outcome, Rollout, RolloutError};
use meshkit_testing::{InMemoryRouter, ScriptedHealthCheck};
use tokio::task::JoinHandle;

pub const ROUTE: &str = "checkout";
pub const TTL: Duration = Duration::from_secs(2);

/// A wall clock that only moves when the test says.
#[derive(Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new() -> Self {
        Self(Arc::new(AtomicI64::new(1_796_073_786_000)))
    }
    pub fn clock(&self) -> Clock {
        let ms = self.0.clone();
        Arc::new(move || UNIX_EPOCH + Duration::from_millis(ms.load(Ordering::SeqCst) as u64))
    }
    pub fn now(&self) -> SystemTime {
        (self.clock())()
    }
    /// Moves the clock on by `d`.
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
    }

    /// Moves past every lease taken before now.
    pub fn expire_leases(&self) {
        self.0
            .fetch_add(TTL.as_millis() as i64 + 1, Ordering::SeqCst);
    }
}

/// Who holds each route's lease, as the store's answers said.
#[derive(Default)]
pub struct Ledger {
    holder: Mutex<HashMap<String, Lease>>,
    pub violations: Mutex<Vec<String>>,
    /// Store calls by method.
    pub calls: Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

impl Ledger {
    fn count(&self, method: &'static str) {
        *self.calls.lock().unwrap().entry(method).or_insert(0) += 1;
    }
}

/// A store that keeps the [`Ledger`] from its answers.
#[derive(Debug, Clone)]
pub struct Tracking {
    pub inner: Arc<dyn RolloutStore>,
    pub ledger: Arc<Ledger>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ledger")
    }
}

#[async_trait]
impl RolloutStore for Tracking {
    async fn acquire(
        &self,
        route: &str,
        holder: &Holder,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        self.ledger.count("acquire");
        let l = self.inner.acquire(route, holder, ttl).await?;
        self.ledger
            .holder
            .lock()
            .unwrap()
            .insert(route.to_owned(), l.clone());
        Ok(l)
    }
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StoreError> {
        self.ledger.count("renew");
        let l = self.inner.renew(lease, ttl).await?;
        let mut h = self.ledger.holder.lock().unwrap();
        if h.get(&l.route).is_some_and(|c| c.token == l.token) {
            h.insert(l.route.clone(), l.clone());
        }
        Ok(l)
    }
    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        self.ledger.count("release");
        self.inner.release(lease).await
    }
    async fn lease(&self, route: &str) -> Result<Option<Lease>, StoreError> {
        self.ledger.count("lease");
        self.inner.lease(route).await
    }
    async fn open(&self, lease: &Lease, rollout: &NewRollout) -> Result<(), StoreError> {
        self.ledger.count("open");
        self.inner.open(lease, rollout).await
    }
    async fn record(
        &self,
        lease: &Lease,
        id: &str,
        update: &RecordUpdate,
    ) -> Result<(), StoreError> {
        self.ledger.count("record");
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
        self.ledger.count("fence");
        self.inner.fence(lease, id, pending, update, margin).await
    }
    async fn open_rollout(&self, route: &str) -> Result<Option<RolloutRecord>, StoreError> {
        self.ledger.count("open_rollout");
        self.inner.open_rollout(route).await
    }
    async fn get(&self, id: &str) -> Result<Option<RolloutRecord>, StoreError> {
        self.ledger.count("get");
        self.inner.get(id).await
    }
    async fn history(&self, route: Option<&str>, limit: usize) -> Result<Vec<Summary>, StoreError> {
        self.ledger.count("history");
        self.inner.history(route, limit).await
    }
    async fn request(&self, id: &str, gate: Gate, by: &str) -> Result<GateRequest, StoreError> {
        self.ledger.count("request");
        self.inner.request(id, gate, by).await
    }
    async fn gates(&self, id: &str) -> Result<Vec<GateRequest>, StoreError> {
        self.ledger.count("gates");
        self.inner.gates(id).await
    }
    async fn gate_applied(
        &self,
        lease: &Lease,
        id: &str,
        gate: &GateRequest,
        entry: &Entry,
    ) -> Result<(), StoreError> {
        self.ledger.count("gate_applied");
        self.inner.gate_applied(lease, id, gate, entry).await
    }
    async fn prune(&self, ended_before: SystemTime) -> Result<usize, StoreError> {
        self.ledger.count("prune");
        self.inner.prune(ended_before).await
    }
}

/// A router for one process: every write is checked against the ledger at the
/// moment it starts (the process must hold the route's lease, unexpired by the
/// clock), then made on the shared in-memory route.
#[derive(Clone)]
pub struct Probe {
    pub inner: InMemoryRouter,
    pub name: String,
    pub ledger: Arc<Ledger>,
    pub clock: ManualClock,
    pub writing: Arc<AtomicUsize>,
    pub writes: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Probe({})", self.name)
    }
}

#[async_trait]
impl TrafficRouter for Probe {
    async fn read(&self, route: &RouteRef) -> Result<Observed, TrafficError> {
        self.inner.read(route).await
    }
    async fn write(
        &self,
        route: &RouteRef,
        request: &WriteRequest,
    ) -> Result<Option<Observed>, TrafficError> {
        let held = self
            .ledger
            .holder
            .lock()
            .unwrap()
            .get(route.as_str())
            .cloned();
        let ok = held
            .as_ref()
            .is_some_and(|l| l.holder.name == self.name && l.expires > self.clock.now());
        if !ok {
            self.ledger.violations.lock().unwrap().push(format!(
                "{} wrote {} while the lease was {:?}",
                self.name,
                request.weights,
                held.map(|l| (l.holder.name, l.token))
            ));
        }
        self.writing.fetch_add(1, Ordering::SeqCst);
        let r = self.inner.write(route, request).await;
        self.writing.fetch_sub(1, Ordering::SeqCst);
        self.writes.fetch_add(1, Ordering::SeqCst);
        r
    }
}

/// Everything the processes of one test share.
pub struct World {
    pub store: Tracking,
    pub ledger: Arc<Ledger>,
    pub clock: ManualClock,
    pub route: InMemoryRouter,
    pub writing: Arc<AtomicUsize>,
    pub writes: Arc<AtomicUsize>,
    pub interval: Duration,
    /// The processes' lease time (default [`TTL`]).
    pub ttl: Duration,
}

impl World {
    pub fn new(store: Arc<dyn RolloutStore>, clock: ManualClock, interval: Duration) -> Self {
        let ledger = Arc::new(Ledger::default());
        let route = InMemoryRouter::new();
        route.insert(ROUTE, Weights::split("v1", "v2", 0).unwrap());
        Self {
            store: Tracking {
                inner: store,
                ledger: ledger.clone(),
            },
            ledger,
            clock,
            route,
            writing: Arc::new(AtomicUsize::new(0)),
            writes: Arc::new(AtomicUsize::new(0)),
            interval,
            ttl: TTL,
        }
    }

    /// A process named `name` rolling v1 → v2 with `check`: canary 10/50/100, each
    /// step baking six check intervals.
    pub fn process(&self, name: &str, check: ScriptedHealthCheck) -> Rollout {
        let probe = Probe {
            inner: self.route.clone(),
            name: name.to_owned(),
            ledger: self.ledger.clone(),
            clock: self.clock.clone(),
            writing: self.writing.clone(),
            writes: self.writes.clone(),
        };
        Rollout::builder()
            .router(probe)
            .route(ROUTE)
            .from("v1")
            .to("v2")
            .strategy(Canary::steps([10, 50, 100]).bake(self.interval * 6))
            .check(check)
            .check_interval(self.interval)
            .check_timeout(self.interval)
            .call_timeout(Duration::from_millis(900))
            .settle_timeout(Duration::from_millis(900))
            .store(Arc::new(self.store.clone()))
            .holder(Holder::named(name))
            .lease_ttl(self.ttl)
            .store_clock(self.clock.clock())
            .build()
            .unwrap()
    }

    pub fn spawn(
        &self,
        name: &str,
        check: ScriptedHealthCheck,
    ) -> JoinHandle<Result<Outcome, RolloutError>> {
        let r = self.process(name, check);
        tokio::spawn(r.run())
    }

    pub fn weights(&self) -> Weights {
        self.route.weights(ROUTE).unwrap()
    }

    pub fn violations(&self) -> Vec<String> {
        self.ledger.violations.lock().unwrap().clone()
    }

    /// Waits until the processes have made `n` writes in all.
    pub async fn until_writes(&self, n: usize) {
        while self.writes.load(Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until no write is in flight (a write is never cut by the test's clock).
    pub async fn quiet(&self) {
        while self.writing.load(Ordering::SeqCst) > 0 {
            tokio::task::yield_now().await;
        }
    }
}

pub mod scenarios;
