//! [`SetWeights`]: one weight change with the runner's guarantees, for manual gates and
//! emergencies (`meshkit promote`, `meshkit rollback`).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::error::RolloutError;
use super::events::Emitter;
use super::policy::{Backoff, Policy};
use super::writer::{Budget, WriteFail, Writer};
use crate::error::ConfigError;
use crate::traffic::{
    Convergence, MAX_TOKEN_LEN, Observed, RouteRef, TrafficRouter, Weights, client_token,
    revision_digest,
};

fn valid_token(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= MAX_TOKEN_LEN
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Sets a route's weights once, the way a rollout step does: the write is retried with
/// backoff, read back until visible (and applied by the data plane where the backend can
/// tell), and refused when the route is not in the state expected.
///
/// With [`expect`](Self::expect), the route must still be exactly as the caller saw it
/// (weights and revision): a person who decided "roll back" on seeing 90/10 does not
/// overwrite a change someone made since. Without it, the route as first read is
/// expected, and a change between that read and the write still stops the write.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use meshkit::rollout::SetWeights;
/// use meshkit::traffic::{RouteRef, TrafficRouter, Weights};
/// use meshkit_testing::InMemoryRouter;
///
/// let router = InMemoryRouter::new();
/// router.insert("checkout", Weights::split("v1", "v2", 10)?);
/// let seen = router.read(&RouteRef::new("checkout")?).await?;
///
/// let report = SetWeights::new(router.clone(), RouteRef::new("checkout")?, Weights::split("v1", "v2", 0)?)
///     .expect(seen)
///     .apply()
///     .await?;
/// assert!(report.written);
/// assert_eq!(report.after.weights, Weights::split("v1", "v2", 0)?);
/// # Ok(()) }
/// ```
pub struct SetWeights {
    router: Arc<dyn TrafficRouter>,
    route: RouteRef,
    target: Weights,
    expect: Option<Observed>,
    token: Option<String>,
    policy: Policy,
    deadline: Duration,
}

impl std::fmt::Debug for SetWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetWeights")
            .field("route", &self.route)
            .field("target", &self.target)
            .field("expect", &self.expect)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// What [`SetWeights::apply`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetReport {
    /// The route as first read.
    pub before: Observed,
    /// The route as read back after the write (or as found, when nothing was written).
    pub after: Observed,
    /// False when the target was already in force and nothing was written.
    pub written: bool,
    /// What the data plane said after the write (waited for up to the router's settle
    /// time plus the settle timeout, within the deadline): `Unknown` when the backend
    /// cannot tell or nothing
    /// was written. Anything not [`Convergence::settled`] means the load balancer was
    /// not seen applying the change.
    pub data_plane: Convergence,
}

impl SetWeights {
    /// Sets `route` on `router` to `target`.
    pub fn new(router: impl TrafficRouter + 'static, route: RouteRef, target: Weights) -> Self {
        Self {
            router: Arc::new(router),
            route,
            target,
            expect: None,
            token: None,
            policy: Policy::default(),
            deadline: Duration::from_secs(120),
        }
    }

    /// The state the route must be in (as returned by a read): anything else is another
    /// writer's, and nothing is written.
    pub fn expect(mut self, observed: Observed) -> Self {
        self.expect = Some(observed);
        self
    }

    /// The idempotency token (at most 36 characters of `[A-Za-z0-9_-]`; see
    /// [`client_token`]). Default: one derived from the target and the time, unique per
    /// call.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Retry and backoff. Default: as a rollout's, 200 ms doubling to 5 s, 6 attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.policy.write_backoff = backoff;
        self
    }

    /// How long to wait for the write to become visible. Default: 10 s.
    pub fn settle_timeout(mut self, d: Duration) -> Self {
        self.policy.settle_timeout = d;
        self
    }

    /// No new attempt starts after this, and the data plane is not waited for past it.
    /// Default: 2 min; at most a day.
    pub fn deadline(mut self, d: Duration) -> Self {
        self.deadline = d;
        self
    }

    /// Reads, checks, writes, reads back. Errors: [`RolloutError::Start`] when the
    /// route cannot be read (nothing written), [`RolloutError::ConcurrentWriter`] when it
    /// is not as expected (nothing written), [`RolloutError::Unconfirmed`] when the write
    /// could not be confirmed (the error names the weights in force).
    pub async fn apply(self) -> Result<SetReport, RolloutError> {
        self.policy.validate()?;
        if self.deadline > Duration::from_secs(24 * 3600) {
            return Err(ConfigError::Policy {
                field: "deadline",
                problem: "must be at most a day".into(),
            }
            .into());
        }
        if let Some(t) = &self.token
            && !valid_token(t)
        {
            return Err(ConfigError::Policy {
                field: "token",
                problem: format!(
                    "{t:?}: use 1-{MAX_TOKEN_LEN} characters from [A-Za-z0-9_-] (see client_token)"
                ),
            }
            .into());
        }
        let route = self.route.to_string();
        let token = self.token.clone().unwrap_or_else(|| {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            client_token(
                "set",
                &revision_digest([self.target.to_string(), stamp.to_string()]),
            )
        });
        let budget = Budget {
            max_attempts: Some(self.policy.write_backoff.max_attempts),
            until: Instant::now() + self.deadline,
        };
        let placeholder = Observed {
            weights: self.target.clone(),
            revision: None,
        };
        let mut writer = Writer::new(
            self.router,
            self.route,
            self.policy,
            placeholder,
            fastrand::u64(..),
        );
        let before = writer
            .read(budget)
            .await
            .map_err(|source| RolloutError::Start {
                route: route.clone(),
                source,
            })?;
        writer.begin(self.expect.unwrap_or_else(|| before.clone()));
        let emit = Emitter::new(None, Instant::now());
        match writer.apply(&self.target, &token, budget, &emit).await {
            Ok(applied) => {
                // The data plane is asked until the router's settle time has passed,
                // but never past this change's deadline.
                let data_plane = if applied.wrote {
                    writer.converge_by(&self.target, Some(budget.until)).await
                } else {
                    Convergence::Unknown
                };
                Ok(SetReport {
                    before,
                    after: applied.seen,
                    written: applied.wrote,
                    data_plane,
                })
            }
            Err(WriteFail::Concurrent { expected, found }) => Err(RolloutError::ConcurrentWriter {
                route,
                expected: expected.weights,
                found: found.weights,
                expected_revision: expected.revision,
                found_revision: found.revision,
            }),
            // Nothing of this call's was confirmed: `last_written` is the state found.
            Err(WriteFail::Failed { error, in_force }) => Err(RolloutError::Unconfirmed {
                route,
                last_written: before.weights,
                in_force,
                source: error,
            }),
            // A one-off change is not fenced; kept for completeness.
            Err(WriteFail::LeaseLost(detail)) => Err(RolloutError::LeaseLost {
                route,
                detail,
                in_force: before.weights,
            }),
        }
    }
}
