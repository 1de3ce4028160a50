//! Writing weights safely: compare with what was last written, write with retries,
//! read back until the write is visible, notice other writers.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, sleep};

use super::events::Event;
use super::policy::Policy;
use super::runner::Emitter;
use crate::error::TrafficError;
use crate::traffic::{Observed, RouteRef, TrafficRouter, Weights, WriteRequest};

/// How a write ended when it did not succeed.
#[derive(Debug)]
pub(crate) enum WriteFail {
    /// The route holds weights meshkit did not write.
    Concurrent { expected: Weights, found: Weights },
    /// Retries ran out; `in_force` is the last read (None if unreadable).
    Failed {
        error: TrafficError,
        in_force: Option<Weights>,
    },
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
    /// Weights of a write whose outcome is unknown (a lost response): seeing them on
    /// the route is not another writer.
    pending: Option<Weights>,
    rng: fastrand::Rng,
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
            pending: None,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    pub(crate) fn known(&self) -> &Weights {
        &self.known.weights
    }

    fn is_ours(&self, seen: &Observed) -> bool {
        let same_rev = match (&self.known.revision, &seen.revision) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        (seen.weights == self.known.weights && same_rev)
            || self.pending.as_ref() == Some(&seen.weights)
    }

    /// Reads the route, retrying retryable errors within the budget.
    pub(crate) async fn read(&mut self, budget: Budget) -> Result<Observed, TrafficError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.router.read(&self.route).await {
                Ok(o) => return Ok(o),
                Err(e) if e.is_retryable() && self.may_retry(attempt, budget) => {
                    tracing::debug!(route = %self.route, attempt, error = %e, "read failed, retrying");
                    sleep(self.policy.write_backoff.delay(attempt, &mut self.rng)).await;
                }
                Err(e) => return Err(e),
            }
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

    fn foreign(&self, seen: Observed) -> WriteFail {
        // While a write is in flight, what meshkit expects is that write.
        let expected = self
            .pending
            .clone()
            .unwrap_or_else(|| self.known.weights.clone());
        WriteFail::Concurrent {
            expected,
            found: seen.weights,
        }
    }

    fn adopt(&mut self, seen: Observed) {
        if self.pending.as_ref() == Some(&seen.weights) {
            self.pending = None;
        }
        self.known = seen;
    }

    /// Writes `target` and returns the route as read back. See the module docs.
    pub(crate) async fn apply(
        &mut self,
        target: &Weights,
        token: &str,
        budget: Budget,
        emit: &Emitter,
    ) -> Result<Observed, WriteFail> {
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
            if seen.weights == *target {
                self.adopt(seen.clone());
                self.pending = None;
                return Ok(seen);
            }
            if !self.is_ours(&seen) {
                return Err(self.foreign(seen));
            }
            // It may be an earlier write of ours whose outcome was unknown: from now on
            // that is the state meshkit expects.
            self.adopt(seen);
            if attempt > 0 && !self.may_retry(attempt, budget) {
                let error = last_error
                    .unwrap_or_else(|| TrafficError::transport("write attempts exhausted"));
                let in_force = self.final_read(target).await;
                return Err(WriteFail::Failed { error, in_force });
            }
            attempt += 1;
            self.pending = Some(target.clone());
            let result = self.router.write(&self.route, &request).await;
            match result {
                Ok(returned) => match self.settle(target, returned).await {
                    Settle::Done(seen) => return Ok(seen),
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
                    tracing::warn!(route = %self.route, attempt, error = %e, "write failed, retrying");
                    emit.send(Event::WriteRetry {
                        attempt,
                        error: e.to_string(),
                    });
                    sleep(self.policy.write_backoff.delay(attempt, &mut self.rng)).await;
                    last_error = Some(e);
                }
                Err(error) => {
                    let in_force = self.final_read(target).await;
                    return Err(WriteFail::Failed { error, in_force });
                }
            }
        }
    }

    /// After a successful write call: waits until reads show `target` (and the data
    /// plane applies it, where the backend can tell).
    async fn settle(&mut self, target: &Weights, returned: Option<Observed>) -> Settle {
        let until = Instant::now() + self.policy.settle_timeout;
        let mut pause = Duration::from_millis(50);
        let mut next = returned;
        loop {
            let seen = match next.take() {
                Some(seen) => seen,
                None => match self.router.read(&self.route).await {
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
            if seen.weights == *target && self.applied_matches(target).await {
                self.adopt(seen.clone());
                self.pending = None;
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

    async fn applied_matches(&self, target: &Weights) -> bool {
        match self.router.applied(&self.route).await {
            Ok(None) => true,
            Ok(Some(applied)) => applied == *target,
            Err(e) => {
                tracing::debug!(route = %self.route, error = %e, "data plane check failed");
                false
            }
        }
    }

    /// The data plane's split, for the verified event (None when not supported).
    pub(crate) async fn applied(&self) -> Option<Weights> {
        self.router.applied(&self.route).await.ok().flatten()
    }

    /// After a failure: the weights really in force. A write whose response was lost
    /// may still become visible, so reads continue until they show `target` or the
    /// settle timeout passes; the last read is the answer.
    async fn final_read(&mut self, target: &Weights) -> Option<Weights> {
        let until = Instant::now() + self.policy.settle_timeout;
        let mut last = None;
        loop {
            if let Ok(seen) = self.router.read(&self.route).await {
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
