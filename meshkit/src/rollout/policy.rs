//! Policies: how often to check, when to give up, how to retry.

use std::time::Duration;

use crate::error::ConfigError;

/// What an inconclusive verdict (no data, timeout) means. It never counts as healthy
/// unless you choose [`InconclusivePolicy::Pass`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InconclusivePolicy {
    /// `n` inconclusive evaluations in a row roll the rollout back (the default, with
    /// `n` = 3).
    FailAfter(u32),
    /// Keep evaluating: the stage cannot pass until a healthy verdict, and the overall
    /// deadline bounds the wait (Argo Rollouts' "inconclusive pauses").
    Wait,
    /// Count an inconclusive verdict as healthy: the AWS canary pipeline's semantics,
    /// where "no data" passes. Opt in only where no data really means no errors (a
    /// service whose error metric is only written when an error happens); otherwise a
    /// new version that serves no traffic at all is promoted.
    Pass,
}

impl std::fmt::Display for InconclusivePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::FailAfter(n) => write!(f, "roll back after {n} inconclusive in a row"),
            Self::Wait => f.write_str("wait for a healthy verdict (deadline bounds it)"),
            Self::Pass => f.write_str("count inconclusive as healthy (the canary pipeline's rule)"),
        }
    }
}

impl Default for InconclusivePolicy {
    fn default() -> Self {
        Self::FailAfter(3)
    }
}

/// Retry with exponential backoff and full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay. Default: 200 ms.
    pub initial: Duration,
    /// The largest delay. Default: 5 s.
    pub max: Duration,
    /// Attempts per write before giving up (a rollback keeps trying until its deadline).
    /// Default: 6.
    pub max_attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(5),
            max_attempts: 6,
        }
    }
}

impl Backoff {
    /// The delay before attempt `attempt + 1` (attempt counts from 1): the exponential
    /// value, capped at [`max`](Self::max), scaled into [50%, 100%] by `jitter`, a
    /// random number in `0.0..=1.0` you supply (values outside are clamped).
    ///
    /// ```
    /// use std::time::Duration;
    /// use meshkit::rollout::Backoff;
    ///
    /// let b = Backoff::default();
    /// assert_eq!(b.delay(1, 1.0), Duration::from_millis(200));
    /// assert_eq!(b.delay(2, 0.0), Duration::from_millis(200));
    /// assert_eq!(b.delay(20, 1.0), Duration::from_secs(5));
    /// ```
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = self
            .initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.max);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            1.0
        };
        capped.mul_f64(0.5 + jitter * 0.5)
    }
}

/// All the runner's knobs. Set them through [`crate::RolloutBuilder`]; the defaults are
/// documented on each setter there.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub(crate) check_interval: Duration,
    pub(crate) check_timeout: Duration,
    pub(crate) failure_threshold: u32,
    pub(crate) inconclusive: InconclusivePolicy,
    pub(crate) write_backoff: Backoff,
    pub(crate) settle_timeout: Duration,
    pub(crate) deadline: Duration,
    pub(crate) rollback_deadline: Duration,
    pub(crate) ready_timeout: Duration,
    pub(crate) resume: bool,
    pub(crate) adopt: bool,
    pub(crate) call_timeout: Duration,
    pub(crate) rollback_window: Duration,
    pub(crate) check_before_shift: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            check_interval: Duration::from_secs(10),
            check_timeout: Duration::from_secs(5),
            failure_threshold: 1,
            inconclusive: InconclusivePolicy::default(),
            write_backoff: Backoff::default(),
            settle_timeout: Duration::from_secs(10),
            deadline: Duration::from_secs(4 * 3600),
            rollback_deadline: Duration::from_secs(300),
            ready_timeout: Duration::from_secs(600),
            resume: false,
            adopt: false,
            call_timeout: Duration::from_secs(30),
            rollback_window: Duration::ZERO,
            check_before_shift: true,
        }
    }
}

impl Policy {
    /// The longest the runner can take to notice a failure and start rolling back:
    /// check interval × failure threshold (plus one check timeout). The rollback write
    /// comes on top.
    pub fn detection_bound(&self) -> Duration {
        self.check_interval.saturating_mul(self.failure_threshold) + self.check_timeout
    }

    /// What inconclusive verdicts mean under this policy.
    pub fn inconclusive(&self) -> InconclusivePolicy {
        self.inconclusive
    }

    /// The interval between check rounds while a stage bakes.
    pub fn check_interval(&self) -> Duration {
        self.check_interval
    }

    /// Consecutive unhealthy verdicts that roll back.
    pub fn failure_threshold(&self) -> u32 {
        self.failure_threshold
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, problem: &str| {
            Err(ConfigError::Policy {
                field,
                problem: problem.to_owned(),
            })
        };
        if self.check_interval < Duration::from_millis(10) {
            return bad("check_interval", "must be at least 10 ms");
        }
        if self.check_timeout.is_zero() || self.check_timeout > self.check_interval {
            return bad(
                "check_timeout",
                "must be positive and at most the check interval",
            );
        }
        if self.failure_threshold == 0 {
            return bad("failure_threshold", "must be at least 1");
        }
        if self.inconclusive == InconclusivePolicy::FailAfter(0) {
            return bad("inconclusive", "FailAfter needs at least 1");
        }
        let b = &self.write_backoff;
        if b.max_attempts == 0 || b.initial.is_zero() || b.max < b.initial {
            return bad(
                "write_backoff",
                "needs max_attempts >= 1 and 0 < initial <= max",
            );
        }
        if self.settle_timeout.is_zero() {
            return bad("settle_timeout", "must be positive");
        }
        if self.rollback_deadline < Duration::from_secs(1) {
            return bad("rollback_deadline", "must be at least 1 s");
        }
        if self.ready_timeout.is_zero() {
            return bad("ready_timeout", "must be positive");
        }
        if self.call_timeout < Duration::from_millis(10) {
            return bad("call_timeout", "must be at least 10 ms");
        }
        // Longer than a year is a mistake, and would overflow the clock's arithmetic.
        let year = Duration::from_secs(366 * 24 * 3600);
        for (field, d) in [
            ("check_interval", self.check_interval),
            ("settle_timeout", self.settle_timeout),
            ("deadline", self.deadline),
            ("rollback_deadline", self.rollback_deadline),
            ("ready_timeout", self.ready_timeout),
            ("rollback_window", self.rollback_window),
            ("call_timeout", self.call_timeout),
            ("write_backoff", self.write_backoff.max),
        ] {
            if d > year {
                return bad(field, "must be at most a year");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let b = Backoff::default();
        for (attempt, jitter, expected) in [
            (1, 0.0, Duration::from_millis(100)),
            (1, 1.0, Duration::from_millis(200)),
            (2, 1.0, Duration::from_millis(400)),
            (10, 0.0, Duration::from_millis(2500)),
            (10, 1.0, Duration::from_secs(5)),
            (u32::MAX, 1.0, Duration::from_secs(5)),
            (1, -3.0, Duration::from_millis(100)),
            (1, 7.0, Duration::from_millis(200)),
            (1, f64::NAN, Duration::from_millis(200)),
        ] {
            assert_eq!(b.delay(attempt, jitter), expected, "{attempt} {jitter}");
        }
    }

    #[test]
    fn detection_bound() {
        let p = Policy {
            check_interval: Duration::from_secs(1),
            failure_threshold: 2,
            check_timeout: Duration::from_millis(500),
            ..Policy::default()
        };
        assert_eq!(p.detection_bound(), Duration::from_millis(2500));
    }
}
