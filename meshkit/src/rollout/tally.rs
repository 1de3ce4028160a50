//! The runner's bookkeeping as plain values, tested with tables like the strategies:
//! the verdict tally (consecutive unhealthy and inconclusive verdicts and what they
//! mean under the policy), the bake clock (time baked, not counting pauses), and
//! whether a shift needs a check round first.

use std::time::Duration;

use tokio::time::Instant;

use super::RollbackReason;
use super::policy::{InconclusivePolicy, Policy};
use crate::health::Verdict;

/// What one verdict means for the stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Judgement {
    /// Keep baking. `passes`: this verdict lets the stage end once its bake time is
    /// over (healthy, or inconclusive under [`InconclusivePolicy::Pass`]).
    Continue { passes: bool },
    /// Roll back.
    RollBack(RollbackReason),
}

/// Consecutive verdict counts, and when the checks last said healthy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) failures: u32,
    pub(crate) inconclusive: u32,
    pub(crate) last_healthy: Option<Instant>,
}

impl Tally {
    /// Counts `verdict` (seen at `now`) and says what it means under `policy`.
    pub(crate) fn record(&mut self, verdict: &Verdict, policy: &Policy, now: Instant) -> Judgement {
        match verdict {
            Verdict::Healthy => {
                self.failures = 0;
                self.inconclusive = 0;
                self.last_healthy = Some(now);
            }
            Verdict::Unhealthy { .. } => {
                self.failures += 1;
                self.inconclusive = 0;
            }
            Verdict::Inconclusive { .. } => self.inconclusive += 1,
        }
        if self.failures >= policy.failure_threshold {
            return Judgement::RollBack(RollbackReason::Unhealthy(verdict.reason().to_owned()));
        }
        let inconclusive = matches!(verdict, Verdict::Inconclusive { .. });
        match policy.inconclusive {
            InconclusivePolicy::FailAfter(n) if self.inconclusive >= n => {
                Judgement::RollBack(RollbackReason::Inconclusive(verdict.reason().to_owned()))
            }
            InconclusivePolicy::Pass if inconclusive => Judgement::Continue { passes: true },
            _ => Judgement::Continue {
                passes: verdict.is_healthy(),
            },
        }
    }
}

/// Time baked in a stage, not counting paused time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BakeClock {
    bake: Duration,
    baked: Duration,
    mark: Instant,
}

impl BakeClock {
    /// A clock for a bake of `bake`, starting at `now`.
    pub(crate) fn start(bake: Duration, now: Instant) -> Self {
        Self {
            bake,
            baked: Duration::ZERO,
            mark: now,
        }
    }

    /// The rollout was paused at `now`: the time since the last mark counts.
    pub(crate) fn pause(&mut self, now: Instant) {
        self.baked += now.saturating_duration_since(self.mark);
    }

    /// The rollout was resumed at `now`: counting starts again from here.
    pub(crate) fn resume(&mut self, now: Instant) {
        self.mark = now;
    }

    /// A check round ended at `now`: counts the time since the last mark unless paused.
    pub(crate) fn tick(&mut self, now: Instant, paused: bool) {
        if !paused {
            self.baked += now.saturating_duration_since(self.mark);
            self.mark = now;
        }
    }

    /// The whole bake time has been counted.
    pub(crate) fn done(&self) -> bool {
        self.baked >= self.bake
    }

    /// How long until the next check round: the interval, or less when the bake ends
    /// sooner (never less while paused or once the bake is over).
    pub(crate) fn next_wait(&self, interval: Duration, paused: bool) -> Duration {
        let left = self.bake.saturating_sub(self.baked);
        if left.is_zero() || paused {
            interval
        } else {
            interval.min(left)
        }
    }
}

/// Whether a shift on the new version must pass a round of checks first: it `raises`
/// the new version's share, the policy asks for it, and no healthy verdict younger
/// than one check interval covers it.
pub(crate) fn gate_needed(
    policy: &Policy,
    raises: bool,
    last_healthy: Option<Instant>,
    now: Instant,
) -> bool {
    let interval: Duration = policy.check_interval;
    policy.check_before_shift
        && raises
        && last_healthy.is_none_or(|t| now.saturating_duration_since(t) >= interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(threshold: u32, inconclusive: InconclusivePolicy) -> Policy {
        Policy {
            failure_threshold: threshold,
            inconclusive,
            ..Policy::default()
        }
    }

    const H: fn() -> Verdict = || Verdict::Healthy;
    fn u() -> Verdict {
        Verdict::unhealthy("5xx")
    }
    fn i() -> Verdict {
        Verdict::inconclusive("no data")
    }

    #[test]
    fn verdict_sequences_and_what_they_mean() {
        use InconclusivePolicy::{FailAfter, Pass, Wait};
        let roll_u = || Judgement::RollBack(RollbackReason::Unhealthy("5xx".into()));
        let roll_i = || Judgement::RollBack(RollbackReason::Inconclusive("no data".into()));
        let go = |passes| Judgement::Continue { passes };
        #[rustfmt::skip]
        let table: Vec<(u32, InconclusivePolicy, Vec<Verdict>, Judgement)> = vec![
            (1, FailAfter(3), vec![H()], go(true)),
            (1, FailAfter(3), vec![u()], roll_u()),
            (2, FailAfter(3), vec![u()], go(false)),
            (2, FailAfter(3), vec![u(), H(), u()], go(false)),
            (2, FailAfter(3), vec![u(), u()], roll_u()),
            // An inconclusive verdict between two unhealthy ones does not reset them.
            (2, FailAfter(3), vec![u(), i(), u()], roll_u()),
            (1, FailAfter(3), vec![i(), i()], go(false)),
            (1, FailAfter(3), vec![i(), i(), i()], roll_i()),
            (1, FailAfter(3), vec![i(), i(), H(), i(), i()], go(false)),
            (1, FailAfter(3), vec![i(), i(), u()], roll_u()),
            (1, Wait, vec![i(), i(), i(), i(), i()], go(false)),
            (1, Wait, vec![i(), H()], go(true)),
            (1, Pass, vec![i(), i(), i(), i(), i()], go(true)),
            (1, Pass, vec![i(), u()], roll_u()),
        ];
        for (threshold, inconclusive, verdicts, expected) in table {
            let p = policy(threshold, inconclusive);
            let mut tally = Tally::default();
            let now = Instant::now();
            let mut last = None;
            for v in &verdicts {
                last = Some(tally.record(v, &p, now));
            }
            assert_eq!(
                last,
                Some(expected),
                "{threshold} {inconclusive:?} {verdicts:?}"
            );
        }
    }

    #[test]
    fn only_a_healthy_verdict_is_remembered() {
        let p = Policy::default();
        let mut tally = Tally::default();
        let t0 = Instant::now();
        tally.record(&i(), &p, t0);
        assert_eq!(tally.last_healthy, None);
        tally.record(&H(), &p, t0);
        assert_eq!(tally.last_healthy, Some(t0));
        tally.record(&u(), &p, t0 + Duration::from_secs(1));
        assert_eq!(tally.last_healthy, Some(t0));
    }

    #[test]
    fn the_bake_clock_counts_only_unpaused_time() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let ten = s(10);
        // (event at second, paused after it, done?, next wait)
        enum Ev {
            Tick,
            Pause,
            Resume,
        }
        #[rustfmt::skip]
        let script = [
            (10, Ev::Tick, false, false, ten),
            (20, Ev::Tick, false, false, ten),
            (25, Ev::Pause, true, false, ten),
            (30, Ev::Tick, true, false, ten),
            (90, Ev::Tick, true, false, ten),
            (95, Ev::Resume, false, false, ten),
            (105, Ev::Tick, false, false, ten),
            (120, Ev::Tick, false, false, ten),
            (125, Ev::Tick, false, false, s(5)),
            (130, Ev::Tick, false, true, ten),
        ];
        let mut clock = BakeClock::start(s(60), t0);
        let mut paused = false;
        for (at, ev, after, done, wait) in script {
            let now = t0 + s(at);
            match ev {
                Ev::Tick => clock.tick(now, paused),
                Ev::Pause => clock.pause(now),
                Ev::Resume => clock.resume(now),
            }
            paused = after;
            assert_eq!(clock.done(), done, "at {at}");
            assert_eq!(clock.next_wait(ten, paused), wait, "at {at}");
        }
    }

    #[test]
    fn when_a_shift_needs_a_check_round_first() {
        let p = Policy::default(); // 10 s interval, check before shift on
        let off = Policy {
            check_before_shift: false,
            ..Policy::default()
        };
        let t0 = Instant::now();
        let s = Duration::from_secs;
        #[rustfmt::skip]
        let table = [
            (&p, 0, 10, None, t0, true),
            (&p, 10, 25, Some(t0), t0 + s(3), false),
            (&p, 10, 25, Some(t0), t0 + s(10), true),
            (&p, 25, 0, None, t0, false),
            (&p, 100, 100, None, t0, false),
            (&off, 0, 10, None, t0, false),
        ];
        for (policy, from, to, healthy, now, expected) in table {
            assert_eq!(
                gate_needed(policy, to > from, healthy, now),
                expected,
                "{from}->{to} {healthy:?}"
            );
        }
    }
}
