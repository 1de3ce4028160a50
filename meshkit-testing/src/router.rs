//! [`InMemoryRouter`]: an in-memory traffic router with fault injection.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use meshkit::TrafficError;
use meshkit::traffic::{
    Observed, Percent, RouteRef, TrafficRouter, Weights, WriteRequest, revision_digest,
};
use tokio::time::Instant;

/// Who made a change to a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangedBy {
    /// A write through [`TrafficRouter::write`], with its idempotency token.
    Router {
        /// The token of the write.
        token: String,
    },
    /// [`InMemoryRouter::external_write`] or a scheduled external write.
    External,
}

/// A fault or change scheduled with [`InMemoryRouter::after_writes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Like [`InMemoryRouter::fail_next_writes`].
    FailWrites(u32),
    /// Like [`InMemoryRouter::reject_next_writes`].
    RejectWrites(u32),
    /// Like [`InMemoryRouter::lose_next_responses`].
    LoseResponses(u32),
    /// Like [`InMemoryRouter::throttle_next_calls`].
    Throttle(u32),
    /// Like [`InMemoryRouter::fail_next_reads`].
    FailReads(u32),
    /// Another writer sets this route to these weights (visible at once).
    External(String, Weights),
    /// Another writer changes a setting of this route other than its weights (a load
    /// balancer rule's stickiness): the weights stay, the revision changes.
    ExternalSetting(String),
}

/// One applied change to a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The weights set.
    pub weights: Weights,
    /// Who set them.
    pub by: ChangedBy,
}

#[derive(Debug)]
struct Route {
    current: Observed,
    /// What reads show until `visible_from` (read lag).
    previous: Observed,
    visible_from: Instant,
    revision: u64,
    /// The route's other settings, as a number another writer may change.
    setting: u64,
    history: Vec<Change>,
}

impl Route {
    fn view(&self) -> Observed {
        if Instant::now() < self.visible_from {
            self.previous.clone()
        } else {
            self.current.clone()
        }
    }

    fn apply(&mut self, weights: Weights, by: ChangedBy, lag: Duration, versionless: bool) {
        self.previous = self.view();
        self.revision += 1;
        let weights = if versionless {
            as_load_balancer(&weights)
        } else {
            weights
        };
        self.current = Observed {
            revision: Some(self.revision_of(&weights, versionless)),
            weights: weights.clone(),
        };
        self.visible_from = Instant::now() + lag;
        self.history.push(Change { weights, by });
    }

    /// The revision of `weights` held here: a version number, or without versions a
    /// digest of the weights as held and the other settings.
    fn revision_of(&self, weights: &Weights, versionless: bool) -> String {
        if versionless {
            let held: Vec<String> = weights.iter().map(|(n, w)| format!("{n}={w}")).collect();
            revision_digest([held.join(","), format!("setting={}", self.setting)])
        } else {
            self.revision.to_string()
        }
    }
}

/// `weights` as a load balancer holds them: integers 0-999, as percentages when whole,
/// else in tenths, else in lowest terms.
fn as_load_balancer(weights: &Weights) -> Weights {
    let fits = |v: &Vec<(&str, u32)>| v.iter().all(|(_, w)| *w <= 999);
    let held = [
        weights.in_units(100),
        weights.in_units(1000),
        Some(weights.lowest_terms()),
    ]
    .into_iter()
    .flatten()
    .find(fits);
    held.and_then(|v| Weights::relative(v).ok())
        .unwrap_or_else(|| weights.clone())
}

#[derive(Debug, Default)]
struct State {
    routes: BTreeMap<String, Route>,
    fail_writes: u32,
    reject_writes: u32,
    lose_responses: u32,
    throttle: u32,
    fail_reads: u32,
    lag: Duration,
    report_applied: bool,
    versionless: bool,
    read_calls: u64,
    write_calls: u64,
    applied_writes: u64,
    scheduled: Vec<(u64, Fault)>,
}

impl State {
    fn inject(&mut self, fault: Fault) {
        match fault {
            Fault::FailWrites(n) => self.fail_writes = n,
            Fault::RejectWrites(n) => self.reject_writes = n,
            Fault::LoseResponses(n) => self.lose_responses = n,
            Fault::Throttle(n) => self.throttle = n,
            Fault::FailReads(n) => self.fail_reads = n,
            Fault::External(name, weights) => {
                let versionless = self.versionless;
                if let Some(r) = self.routes.get_mut(&name) {
                    r.apply(weights, ChangedBy::External, Duration::ZERO, versionless);
                }
            }
            Fault::ExternalSetting(name) => {
                let versionless = self.versionless;
                if let Some(r) = self.routes.get_mut(&name) {
                    let weights = r.current.weights.clone();
                    r.setting += 1;
                    r.apply(weights, ChangedBy::External, Duration::ZERO, versionless);
                }
            }
        }
    }
}

/// An in-memory [`TrafficRouter`] with fault injection. Cheap to clone; clones share
/// state, so a test keeps one clone to inspect and inject faults while the rollout
/// owns another.
///
/// Faults are consumed in this order on each call: throttling (reads and writes),
/// failed reads, rejected writes (non-retryable, not applied), failed writes
/// (retryable, not applied), lost responses (applied, then a transport error).
#[derive(Debug, Clone, Default)]
pub struct InMemoryRouter {
    state: Arc<Mutex<State>>,
}

fn take(n: &mut u32) -> bool {
    if *n > 0 {
        *n -= 1;
        true
    } else {
        false
    }
}

impl InMemoryRouter {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty router that behaves like a load balancer: weights held as integers up
    /// to 999 (so it holds 0.1% steps, [`TrafficRouter::resolution`]), and no version:
    /// the revision is a digest of the weights as held and the route's other settings,
    /// which [`Fault::ExternalSetting`] changes.
    pub fn versionless() -> Self {
        let r = Self::default();
        r.lock().versionless = true;
        r
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere in a test must not hide this router's state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds (or replaces) a route with the given weights, revision 1.
    pub fn insert(&self, route: &str, weights: Weights) {
        let mut s = self.lock();
        let versionless = s.versionless;
        let weights = if versionless {
            as_load_balancer(&weights)
        } else {
            weights
        };
        let mut r = Route {
            current: Observed {
                weights: weights.clone(),
                revision: None,
            },
            previous: Observed {
                weights: weights.clone(),
                revision: None,
            },
            visible_from: Instant::now(),
            revision: 1,
            setting: 0,
            history: vec![],
        };
        let revision = Some(r.revision_of(&weights, versionless));
        r.current.revision = revision.clone();
        r.previous.revision = revision;
        s.routes.insert(route.to_owned(), r);
    }

    /// The weights really in force (ignoring read lag), or `None` for an unknown route.
    pub fn weights(&self, route: &str) -> Option<Weights> {
        self.lock()
            .routes
            .get(route)
            .map(|r| r.current.weights.clone())
    }

    /// Every change applied to the route, in order (writes and external changes).
    pub fn history(&self, route: &str) -> Vec<Change> {
        self.lock()
            .routes
            .get(route)
            .map(|r| r.history.clone())
            .unwrap_or_default()
    }

    /// The weights of every applied router write (not external changes), in order.
    pub fn writes(&self, route: &str) -> Vec<Weights> {
        self.history(route)
            .into_iter()
            .filter(|c| matches!(c.by, ChangedBy::Router { .. }))
            .map(|c| c.weights)
            .collect()
    }

    /// How many times `write` was called (including failed calls).
    pub fn write_calls(&self) -> u64 {
        self.lock().write_calls
    }

    /// How many times `read` was called (including failed calls).
    pub fn read_calls(&self) -> u64 {
        self.lock().read_calls
    }

    /// The next `n` writes fail with a retryable transport error and are not applied.
    pub fn fail_next_writes(&self, n: u32) {
        self.lock().fail_writes = n;
    }

    /// The next `n` writes are rejected as a bad request (not retryable, not applied).
    pub fn reject_next_writes(&self, n: u32) {
        self.lock().reject_writes = n;
    }

    /// The next `n` writes are applied, but the caller gets a transport error.
    pub fn lose_next_responses(&self, n: u32) {
        self.lock().lose_responses = n;
    }

    /// The next `n` calls (reads or writes) are throttled and do nothing.
    pub fn throttle_next_calls(&self, n: u32) {
        self.lock().throttle = n;
    }

    /// The next `n` reads fail with a retryable transport error.
    pub fn fail_next_reads(&self, n: u32) {
        self.lock().fail_reads = n;
    }

    /// Reads show a router write only `lag` after it was applied.
    pub fn set_read_lag(&self, lag: Duration) {
        self.lock().lag = lag;
    }

    /// Makes [`TrafficRouter::applied`] report the (lagged) weights, as a data plane would.
    pub fn report_applied(&self, on: bool) {
        self.lock().report_applied = on;
    }

    /// Another writer sets the route's weights now (visible at once).
    pub fn external_write(&self, route: &str, weights: Weights) {
        self.lock()
            .inject(Fault::External(route.to_owned(), weights));
    }

    /// Another writer changes a setting of the route other than its weights, now
    /// ([`Fault::ExternalSetting`]).
    pub fn external_setting(&self, route: &str) {
        self.lock().inject(Fault::ExternalSetting(route.to_owned()));
    }

    /// Another writer sets the route's weights right after the `n`th applied router
    /// write (counting from 1 over the router's life).
    pub fn external_write_after(&self, n: u64, route: &str, weights: Weights) {
        self.after_writes(n, Fault::External(route.to_owned(), weights));
    }

    /// Injects `fault` right after the `n`th applied router write (counting from 1 over
    /// the router's life), before that write's response is returned. Deterministic,
    /// unlike injecting from a test task while a rollout runs.
    pub fn after_writes(&self, n: u64, fault: Fault) {
        self.lock().scheduled.push((n, fault));
    }
}

#[async_trait]
impl TrafficRouter for InMemoryRouter {
    async fn read(&self, route: &RouteRef) -> Result<Observed, TrafficError> {
        let mut s = self.lock();
        s.read_calls += 1;
        if take(&mut s.throttle) {
            return Err(TrafficError::throttled("injected throttling"));
        }
        if take(&mut s.fail_reads) {
            return Err(TrafficError::transport("injected read failure"));
        }
        s.routes
            .get(route.as_str())
            .map(Route::view)
            .ok_or_else(|| TrafficError::not_found(route.as_str()))
    }

    async fn write(
        &self,
        route: &RouteRef,
        request: &WriteRequest,
    ) -> Result<Option<Observed>, TrafficError> {
        let mut s = self.lock();
        s.write_calls += 1;
        if take(&mut s.throttle) {
            return Err(TrafficError::throttled("injected throttling"));
        }
        if !s.routes.contains_key(route.as_str()) {
            return Err(TrafficError::not_found(route.as_str()));
        }
        if take(&mut s.reject_writes) {
            return Err(TrafficError::BadRequest {
                message: "injected rejection".into(),
                source: None,
            });
        }
        if take(&mut s.fail_writes) {
            return Err(TrafficError::transport("injected write failure"));
        }
        let (lag, versionless) = (s.lag, s.versionless);
        let by = ChangedBy::Router {
            token: request.token.clone(),
        };
        if let Some(r) = s.routes.get_mut(route.as_str()) {
            r.apply(request.weights.clone(), by, lag, versionless);
        }
        s.applied_writes += 1;
        let n = s.applied_writes;
        let due: Vec<Fault> = s
            .scheduled
            .iter()
            .filter(|(k, _)| *k == n)
            .map(|(_, f)| f.clone())
            .collect();
        s.scheduled.retain(|(k, _)| *k != n);
        for fault in due {
            s.inject(fault);
        }
        if take(&mut s.lose_responses) {
            return Err(TrafficError::transport(
                "injected lost response (write was applied)",
            ));
        }
        Ok(None)
    }

    async fn applied(&self, route: &RouteRef) -> Result<Option<Weights>, TrafficError> {
        let s = self.lock();
        if !s.report_applied {
            return Ok(None);
        }
        s.routes
            .get(route.as_str())
            .map(|r| Some(r.view().weights))
            .ok_or_else(|| TrafficError::not_found(route.as_str()))
    }

    fn resolution(&self) -> Percent {
        if self.lock().versionless {
            Percent::TENTH
        } else {
            Percent::ONE
        }
    }
}
