//! Writing weights safely: compare with what was last written, write with retries,
//! read back until the write is visible, notice other writers.
//!
//! The rule: a state of the route that meshkit did not write is never adopted, whatever
//! its weights. A read is "ours" when it equals the route as meshkit last saw it
//! (weights and revision, see [`crate::traffic::Observed::revision`]), or when it shows
//! the weights of a write of meshkit's own whose outcome is not known yet (a lost
//! response). Anything else is another writer, and the write stops.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, sleep};

use super::events::{Emitter, Event};
use super::keeper::Keeper;
use super::policy::Policy;
use crate::traffic::{Convergence, TrafficError};
use crate::traffic::{Observed, RouteRef, TrafficRouter, Weights, WriteRequest};

/// How a write ended when it did not succeed.
#[derive(Debug)]
pub(crate) enum WriteFail {
    /// The route holds a state meshkit did not write.
    Concurrent { expected: Observed, found: Observed },
    /// Retries ran out; `in_force` is the last read (None if unreadable).
    Failed {
        error: TrafficError,
        in_force: Option<Weights>,
    },
    /// The rollout store did not confirm the lease before the write: nothing was
    /// written, and nothing more may be.
    LeaseLost(String),
}

/// What a successful [`Writer::apply`] found and did.
#[derive(Debug)]
pub(crate) struct Applied {
    /// The route as read back.
    pub(crate) seen: Observed,
    /// False when the target was already in force and nothing was written. When true,
    /// the caller waits for the data plane ([`Writer::converge`] or
    /// [`Writer::converged_once`]).
    pub(crate) wrote: bool,
}

/// Limits for one write: attempts and an instant after which no new attempt starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    pub(crate) max_attempts: Option<u32>,
    pub(crate) until: Instant,
}

enum Settle {
    Done(Observed),
    Foreign(Observed),
    NotVisible,
    ReadFailed(TrafficError),
}

pub(crate) struct Writer {
    router: Arc<dyn TrafficRouter>,
    route: RouteRef,
    policy: Policy,
    /// The route as meshkit last saw it after its own write (or at start).
    known: Observed,
    /// Weights of writes whose outcome is unknown (a lost response, a write not yet
    /// visible), oldest first: seeing one of them on the route is not another writer.
    /// A write that certainly failed (throttled, refused) is not kept.
    pending: Vec<Weights>,
    rng: fastrand::Rng,
    /// With a rollout store: the keeper that fences every write.
    fence: Option<Arc<Keeper>>,
}

impl Writer {
    /// `seed` drives the backoff jitter (the runner derives it from the rollout id, so
    /// a rollout's timing is reproducible).
    pub(crate) fn new(
        router: Arc<dyn TrafficRouter>,
        route: RouteRef,
        policy: Policy,
        known: Observed,
        seed: u64,
    ) -> Self {
        Self {
            router,
            route,
            policy,
            known,
            pending: Vec::new(),
            rng: fastrand::Rng::with_seed(seed),
            fence: None,
        }
    }

    /// Fences every later write through `keeper` (the rollout store's lease).
    pub(crate) fn fenced(&mut self, keeper: Arc<Keeper>) {
        self.fence = Some(keeper);
    }

    /// Takes `found`, the route as read at start, as the state meshkit expects.
    pub(crate) fn begin(&mut self, found: Observed) {
        self.known = found;
        self.pending.clear();
    }

    pub(crate) fn known(&self) -> &Weights {
        &self.known.weights
    }

    /// True when `seen` is the route as meshkit left it, or shows a write of its own
    /// whose outcome was unknown.
    fn is_ours(&self, seen: &Observed) -> bool {
        if self.pending.contains(&seen.weights) {
            return true;
        }
        let same_rev = match (&self.known.revision, &seen.revision) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        seen.weights == self.known.weights && same_rev
    }

    /// Reads the route, retrying retryable errors within the budget.
    pub(crate) async fn read(&mut self, budget: Budget) -> Result<Observed, TrafficError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.call_read().await {
                Ok(o) => return Ok(o),
                Err(e) if e.is_retryable() && self.may_retry(attempt, budget) => {
                    tracing::debug!(route = %self.route, attempt, error = %e, "read failed, retrying");
                    let jitter = self.rng.f64();
                    sleep(self.policy.write_backoff.delay(attempt, jitter)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One read, bounded by the policy's call timeout (a timeout is a transport error).
    async fn call_read(&self) -> Result<Observed, TrafficError> {
        let limit = self.policy.call_timeout;
        match tokio::time::timeout(limit, self.router.read(&self.route)).await {
            Ok(r) => r,
            Err(_) => Err(TrafficError::transport(format!(
                "the read got no answer within {limit:?}"
            ))),
        }
    }

    fn may_retry(&self, attempt: u32, budget: Budget) -> bool {
        budget.max_attempts.is_none_or(|m| attempt < m) && Instant::now() < budget.until
    }

    /// Reads and checks that nobody else changed the route since meshkit's last write.
    pub(crate) async fn confirm(&mut self, budget: Budget) -> Result<Observed, WriteFail> {
        match self.read(budget).await {
            Ok(seen) if self.is_ours(&seen) => {
                self.adopt(seen.clone());
                Ok(seen)
            }
            Ok(seen) => Err(self.foreign(seen)),
            Err(error) => Err(WriteFail::Failed {
                error,
                in_force: None,
            }),
        }
    }

    /// One read between writes (while a stage bakes): `Err` only when another writer
    /// changed the route. A failed read is logged and left for the next write's read.
    /// The read is bounded by `limit` (the check timeout), so a hung backend cannot
    /// hold up an abort or the deadline.
    pub(crate) async fn watch(&mut self, limit: Duration) -> Result<(), WriteFail> {
        match tokio::time::timeout(limit, self.router.read(&self.route)).await {
            Ok(Ok(seen)) if self.is_ours(&seen) => {
                self.adopt(seen);
                Ok(())
            }
            Ok(Ok(seen)) => Err(self.foreign(seen)),
            Ok(Err(e)) => {
                tracing::debug!(route = %self.route, error = %e, "route check while baking failed");
                Ok(())
            }
            Err(_) => {
                tracing::debug!(route = %self.route, "route check while baking timed out");
                Ok(())
            }
        }
    }

    fn foreign(&self, seen: Observed) -> WriteFail {
        // While a write is in flight, what meshkit expects is that write.
        let expected = match self.pending.last() {
            Some(weights) => Observed {
                weights: weights.clone(),
                revision: None,
            },
            None => self.known.clone(),
        };
        WriteFail::Concurrent {
            expected,
            found: seen,
        }
    }

    /// Takes `seen` (a state of ours) as the route: writes pending up to the one it
    /// shows are settled; later ones may still land. A read without a revision keeps
    /// the last known one, so one such read does not weaken the comparison for good.
    fn adopt(&mut self, mut seen: Observed) {
        if let Some(i) = self.pending.iter().rposition(|w| *w == seen.weights) {
            self.pending.drain(..=i);
        }
        if seen.revision.is_none() && seen.weights == self.known.weights {
            seen.revision = self.known.revision.take();
        }
        self.known = seen;
    }

    /// Remembers `target` as a write whose outcome is not known yet.
    fn expect_write(&mut self, target: &Weights) {
        self.pending.push(target.clone());
        if self.pending.len() > 8 {
            self.pending.remove(0);
        }
    }

    /// The write of `target` just made certainly did not apply: forget it.
    fn write_failed(&mut self, target: &Weights) {
        if let Some(i) = self.pending.iter().rposition(|w| w == target) {
            self.pending.remove(i);
        }
    }

    /// Writes `target` and returns the route as read back. See the module docs.
    pub(crate) async fn apply(
        &mut self,
        target: &Weights,
        token: &str,
        budget: Budget,
        emit: &Emitter,
    ) -> Result<Applied, WriteFail> {
        let request = WriteRequest {
            weights: target.clone(),
            token: token.to_owned(),
        };
        let mut attempt = 0u32;
        let mut last_error: Option<TrafficError> = None;
        loop {
            let seen = match self.read(budget).await {
                Ok(seen) => seen,
                Err(error) => {
                    return Err(WriteFail::Failed {
                        error,
                        in_force: None,
                    });
                }
            };
            // Checked before anything else: another writer may have set exactly the
            // weights meshkit is about to write, and that is still not meshkit's state.
            if !self.is_ours(&seen) {
                return Err(self.foreign(seen));
            }
            // A write of ours whose outcome was unknown, if the weights match it.
            let was_pending = self.pending.contains(&seen.weights);
            self.adopt(seen.clone());
            if seen.weights == *target {
                return Ok(Applied {
                    seen,
                    wrote: attempt > 0 || was_pending,
                });
            }
            if attempt > 0 && !self.may_retry(attempt, budget) {
                let error = last_error
                    .unwrap_or_else(|| TrafficError::transport("write attempts exhausted"));
                let in_force = self.final_read(target).await;
                return Err(WriteFail::Failed { error, in_force });
            }
            attempt += 1;
            if let Some(keeper) = &self.fence
                && let Err(why) = Box::pin(keeper.fence(target)).await
            {
                return Err(WriteFail::LeaseLost(why));
            }
            self.expect_write(target);
            let limit = self.policy.call_timeout;
            let result = match tokio::time::timeout(limit, self.router.write(&self.route, &request))
                .await
            {
                Ok(r) => r,
                Err(_) => Err(TrafficError::transport(format!(
                    "the write got no answer within {limit:?}; it may or may not have been applied"
                ))),
            };
            match result {
                Ok(returned) => match self.settle(target, returned).await {
                    Settle::Done(seen) => return Ok(Applied { seen, wrote: true }),
                    Settle::Foreign(seen) => return Err(self.foreign(seen)),
                    Settle::NotVisible => {
                        let e = TrafficError::transport(format!(
                            "write not visible on the route after {:?}",
                            self.policy.settle_timeout
                        ));
                        emit.send(Event::WriteRetry {
                            attempt,
                            error: e.to_string(),
                        });
                        last_error = Some(e);
                    }
                    Settle::ReadFailed(e) => last_error = Some(e),
                },
                Err(e) if e.is_retryable() => {
                    // Throttled or refused for a conflict: not applied. Only a transport
                    // failure leaves the outcome unknown.
                    if !matches!(e, TrafficError::Transport { .. }) {
                        self.write_failed(target);
                    }
                    tracing::warn!(route = %self.route, attempt, error = %e, "write failed, retrying");
                    emit.send(Event::WriteRetry {
                        attempt,
                        error: e.to_string(),
                    });
                    let jitter = self.rng.f64();
                    sleep(self.policy.write_backoff.delay(attempt, jitter)).await;
                    last_error = Some(e);
                }
                Err(error) => {
                    self.write_failed(target);
                    let in_force = self.final_read(target).await;
                    return Err(WriteFail::Failed { error, in_force });
                }
            }
        }
    }

    /// After a successful write call: waits until reads show `target`.
    async fn settle(&mut self, target: &Weights, returned: Option<Observed>) -> Settle {
        let until = Instant::now() + self.policy.settle_timeout;
        let mut pause = Duration::from_millis(50);
        let mut next = returned;
        loop {
            let seen = match next.take() {
                Some(seen) => seen,
                None => match self.call_read().await {
                    Ok(seen) => seen,
                    Err(e) if e.is_retryable() => {
                        if Instant::now() >= until {
                            return Settle::ReadFailed(e);
                        }
                        sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(1));
                        continue;
                    }
                    Err(e) => return Settle::ReadFailed(e),
                },
            };
            if seen.weights == *target {
                self.adopt(seen.clone());
                return Settle::Done(seen);
            }
            if seen.weights != *target && !self.is_ours(&seen) {
                return Settle::Foreign(seen);
            }
            if Instant::now() >= until {
                return Settle::NotVisible;
            }
            sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// How long to wait for the data plane after a write: the router's settle time
    /// plus the settle timeout; and the longest pause between two questions.
    pub(crate) fn converge_limits(&self) -> (Duration, Duration) {
        let settle_time = self.router.settle_time();
        let max_pause = (settle_time / 20).clamp(Duration::from_secs(1), Duration::from_secs(15));
        (settle_time + self.policy.settle_timeout, max_pause)
    }

    /// Asks the data plane once whether it applies `target`; a failed question is
    /// "not yet", with the error as the detail.
    pub(crate) async fn converged_once(&self, target: &Weights) -> Convergence {
        match self.call_converged(target).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(route = %self.route, error = %e, "data plane check failed");
                Convergence::NotYet {
                    detail: format!("the data plane check failed: {e}"),
                }
            }
        }
    }

    /// Asks the data plane whether it applies `target` until the answer is settled
    /// or [`Writer::converge_limits`] has passed; returns the last answer. The write is
    /// visible and ours by then, so nothing is rewritten: a data plane that lags is
    /// waited for, not written to again. For writes after which nothing is checked
    /// (a rollback, a one-off change); a rollout step waits inside its bake instead,
    /// with the checks running.
    pub(crate) async fn converge(&self, target: &Weights) -> Convergence {
        self.converge_by(target, None).await
    }

    /// [`Writer::converge`], giving up at `cap` when it comes sooner.
    pub(crate) async fn converge_by(&self, target: &Weights, cap: Option<Instant>) -> Convergence {
        let (limit, max_pause) = self.converge_limits();
        let until = cap.map_or(Instant::now() + limit, |c| c.min(Instant::now() + limit));
        let mut pause = Duration::from_millis(50);
        loop {
            let answer = self.converged_once(target).await;
            if answer.settled() || Instant::now() >= until {
                return answer;
            }
            sleep(pause).await;
            pause = (pause * 2).min(max_pause);
        }
    }

    /// [`TrafficRouter::converged`], bounded by the call timeout.
    async fn call_converged(&self, target: &Weights) -> Result<Convergence, TrafficError> {
        let limit = self.policy.call_timeout;
        match tokio::time::timeout(limit, self.router.converged(&self.route, target)).await {
            Ok(r) => r,
            Err(_) => Err(TrafficError::transport(format!(
                "the data plane gave no answer within {limit:?}"
            ))),
        }
    }

    /// The data plane's split, for the verified event (None when not supported).
    pub(crate) async fn applied(&self) -> Option<Weights> {
        self.call_applied().await.ok().flatten()
    }

    /// [`TrafficRouter::applied`], bounded by the call timeout.
    async fn call_applied(&self) -> Result<Option<Weights>, TrafficError> {
        let limit = self.policy.call_timeout;
        match tokio::time::timeout(limit, self.router.applied(&self.route)).await {
            Ok(r) => r,
            Err(_) => Err(TrafficError::transport(format!(
                "the data plane gave no answer within {limit:?}"
            ))),
        }
    }

    /// After a failure: the weights really in force. A write whose response was lost
    /// may still become visible, so reads continue until they show `target` or the
    /// settle timeout passes; the last read is the answer.
    async fn final_read(&mut self, target: &Weights) -> Option<Weights> {
        let until = Instant::now() + self.policy.settle_timeout;
        let mut last = None;
        loop {
            if let Ok(seen) = self.call_read().await {
                let done = seen.weights == *target;
                last = Some(seen.weights);
                if done {
                    return last;
                }
            }
            if Instant::now() >= until {
                return last;
            }
            sleep(Duration::from_millis(250)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use tokio::sync::broadcast;

    use super::*;

    /// What the route does with the next write.
    #[derive(Clone)]
    enum Next {
        /// Applies it and answers.
        Apply,
        /// Applies it, but the answer is lost.
        Lose,
        /// Refuses it (throttled); meanwhile another writer sets this state.
        Throttle(Option<Observed>),
    }

    /// A route whose state the test sets; counts applied writes.
    struct Route {
        now: Mutex<Observed>,
        writes: Mutex<u32>,
        script: Mutex<Vec<Next>>,
    }

    #[async_trait]
    impl TrafficRouter for Route {
        async fn read(&self, _: &RouteRef) -> Result<Observed, TrafficError> {
            Ok(self.now.lock().unwrap().clone())
        }
        async fn write(
            &self,
            _: &RouteRef,
            request: &WriteRequest,
        ) -> Result<Option<Observed>, TrafficError> {
            let next = {
                let mut script = self.script.lock().unwrap();
                if script.is_empty() {
                    Next::Apply
                } else {
                    script.remove(0)
                }
            };
            let mut now = self.now.lock().unwrap();
            if let Next::Throttle(theirs) = next {
                if let Some(theirs) = theirs {
                    *now = theirs;
                }
                return Err(TrafficError::throttled("slow down"));
            }
            *self.writes.lock().unwrap() += 1;
            now.weights = request.weights.clone();
            now.revision = Some("ours".into());
            match next {
                Next::Lose => Err(TrafficError::transport("answer lost")),
                _ => Ok(Some(now.clone())),
            }
        }
    }

    fn obs(new: u8, rev: Option<&str>) -> Observed {
        Observed {
            weights: Weights::split("a", "b", new).unwrap(),
            revision: rev.map(str::to_owned),
        }
    }

    async fn apply(
        known: Observed,
        on_route: Observed,
        target: u8,
        script: Vec<Next>,
    ) -> (Result<Applied, WriteFail>, u32) {
        let route = Arc::new(Route {
            now: Mutex::new(on_route),
            writes: Mutex::new(0),
            script: Mutex::new(script),
        });
        let mut w = Writer::new(
            route.clone(),
            RouteRef::new("r").unwrap(),
            Policy::default(),
            known,
            1,
        );
        let (tx, _) = broadcast::channel(4);
        let emit = Emitter::new(Some(tx), Instant::now());
        let budget = Budget {
            max_attempts: Some(3),
            until: Instant::now() + Duration::from_secs(60),
        };
        let target = Weights::split("a", "b", target).unwrap();
        let out = w.apply(&target, "t", budget, &emit).await;
        let writes = *route.writes.lock().unwrap();
        (out, writes)
    }

    #[tokio::test(start_paused = true)]
    async fn a_state_meshkit_did_not_write_is_never_adopted() {
        // (known, on the route, target, what the route does) -> adopted and wrote?
        let theirs = || Next::Throttle(Some(obs(50, Some("theirs"))));
        #[rustfmt::skip]
        let table = [
            // Another writer set exactly the target: versioned and version-less routes.
            (obs(25, Some("3")), obs(50, Some("4")), 50, vec![], None),
            (obs(25, None), obs(50, None), 50, vec![], None),
            // Same weights, another revision: someone changed something else.
            (obs(25, Some("3")), obs(25, Some("4")), 50, vec![], None),
            // As meshkit left it: written.
            (obs(25, Some("3")), obs(25, Some("3")), 50, vec![], Some(true)),
            (obs(25, None), obs(25, None), 50, vec![], Some(true)),
            // The target already in force, as meshkit left it: nothing written.
            (obs(0, Some("3")), obs(0, Some("3")), 0, vec![], Some(false)),
            // meshkit's write landed but its answer was lost: recognised as its own.
            (obs(25, Some("3")), obs(25, Some("3")), 50, vec![Next::Lose], Some(true)),
            // A throttled write did not apply; another writer then set the target: theirs.
            (obs(25, Some("3")), obs(25, Some("3")), 50, vec![theirs()], None),
            // Throttled, nobody else wrote: retried and written.
            (obs(25, Some("3")), obs(25, Some("3")), 50, vec![Next::Throttle(None)], Some(true)),
        ];
        for (known, on_route, target, script, expected) in table {
            let case = format!(
                "{known:?} / {on_route:?} -> {target}, {} scripted",
                script.len()
            );
            let (out, writes) = apply(known, on_route, target, script).await;
            match (out, expected) {
                (Ok(a), Some(wrote)) => {
                    assert_eq!(a.wrote, wrote, "{case}");
                    assert_eq!(writes, u32::from(wrote), "{case}");
                }
                (Err(WriteFail::Concurrent { .. }), None) => assert_eq!(writes, 0, "{case}"),
                (other, _) => panic!("{case}: {other:?}"),
            }
        }
    }
}
