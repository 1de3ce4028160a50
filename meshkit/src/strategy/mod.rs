//! Strategies: pure state machines that decide what a rollout does next.
//!
//! A strategy describes its plan as a list of [`Stage`]s and answers
//! [`Strategy::decide`]: given where the rollout stands ([`Position`]) and what just
//! happened ([`Input`]), the next [`Decision`]. It does no I/O and is not async, so it
//! is tested with plain tables; the runner ([`crate::Rollout`]) does the acting.
//!
//! Four strategies come built in: [`Canary`], [`Linear`], [`BlueGreen`] and
//! [`CanaryBlueGreen`]. Implement [`Strategy`] for your own.

mod blue_green;
mod canary;
mod canary_blue_green;
mod linear;
mod reason;

use std::fmt;
use std::time::Duration;

pub use blue_green::BlueGreen;
pub use canary::Canary;
pub use canary_blue_green::CanaryBlueGreen;
pub use linear::Linear;
pub use reason::RollbackReason;

use crate::error::ConfigError;
use crate::traffic::{Percent, Weights};

/// One step of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Bring the new version up beside the stable one and wait until it is ready
    /// (through the rollout's [`crate::fleet::Fleet`]; a no-op without one).
    Provision,
    /// Run the checks against the new version without changing traffic, for `bake`.
    Check {
        /// How long to watch.
        bake: Duration,
    },
    /// Send `new_percent` of traffic to the new version, then watch the checks for `bake`.
    Shift {
        /// Share on the new version, 0.1% to 100% (`Percent::whole(10)?` for 10%).
        new_percent: Percent,
        /// How long to watch before the next stage.
        bake: Duration,
    },
    /// After promotion: take the stable version off the route (so the next rollout
    /// starts from a route with one target), then retire it through the rollout's
    /// fleet (a no-op without one).
    Retire,
}

impl Stage {
    /// The time this stage watches the checks.
    pub fn bake(&self) -> Duration {
        match self {
            Self::Check { bake } | Self::Shift { bake, .. } => *bake,
            Self::Provision | Self::Retire => Duration::ZERO,
        }
    }

    /// The new version's percentage for a [`Stage::Shift`], `None` for other stages.
    pub fn new_percent(&self) -> Option<Percent> {
        match self {
            Self::Shift { new_percent, .. } => Some(*new_percent),
            _ => None,
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Provision => f.write_str("provision new version"),
            Self::Check { bake } => write!(f, "check new version for {bake:?} (no traffic)"),
            Self::Shift { new_percent, bake } => {
                write!(f, "shift {new_percent} to new, bake {bake:?}")
            }
            Self::Retire => f.write_str("take stable version off the route, retire it"),
        }
    }
}

/// Where the rollout stands when a decision is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The stage that just ended, or `None` before the first.
    pub stage: Option<usize>,
}

/// What just happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The rollout is starting.
    Start,
    /// The current stage completed with the checks healthy.
    Passed,
    /// The current stage failed.
    Failed(RollbackReason),
    /// A person asked to promote now (manual gate).
    PromoteNow,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run stage `index` of the plan.
    Run {
        /// The stage's index in [`Strategy::stages`].
        index: usize,
        /// The stage.
        stage: Stage,
    },
    /// All stages passed: the new version is promoted.
    Promote,
    /// Put all traffic back on the stable version.
    RollBack(RollbackReason),
}

/// A rollout strategy. Implement [`Strategy::stages`] (and [`Strategy::name`]); the
/// provided [`Strategy::validate`] and [`Strategy::decide`] walk the plan and suit most
/// strategies.
pub trait Strategy: Send + Sync + fmt::Debug {
    /// The strategy's name, for events and errors.
    fn name(&self) -> &str;

    /// The plan: the stages in order.
    fn stages(&self) -> Vec<Stage>;

    /// Checks the plan: see [`validate_stages`].
    fn validate(&self) -> Result<(), ConfigError> {
        validate_stages(self.name(), &self.stages())
    }

    /// The next decision. The default walks [`Strategy::stages`] in order, rolls back on
    /// any failure, and on [`Input::PromoteNow`] jumps to the final 100% shift (whose
    /// bake still runs, with the stable version kept ready).
    fn decide(&self, at: Position, input: &Input) -> Decision {
        let stages = self.stages();
        let run = |index: usize| match stages.get(index) {
            Some(stage) => Decision::Run {
                index,
                stage: *stage,
            },
            None => Decision::Promote,
        };
        match input {
            Input::Start => run(0),
            Input::Passed => run(at.stage.map_or(0, |i| i + 1)),
            Input::Failed(reason) => Decision::RollBack(reason.clone()),
            Input::PromoteNow => {
                let cutover = stages
                    .iter()
                    .rposition(|s| s.new_percent() == Some(Percent::ALL));
                match (cutover, at.stage) {
                    (Some(c), Some(i)) if i >= c => run(i + 1),
                    (Some(c), _) => run(c),
                    (None, _) => Decision::Promote,
                }
            }
        }
    }

    /// Where a resumed rollout carries on when the route is found split between the
    /// stable and new versions, `found` exactly as the backend holds it (`new` is the
    /// new version's target name).
    ///
    /// The default accepts only a split the plan itself produces: it returns the
    /// [`Stage::Shift`] whose share equals the new version's share exactly, to run
    /// again (its write finds the weights in force and writes nothing; its bake starts
    /// over). Any other split was not written by this plan and gives `None`: the runner
    /// refuses to start. With `adopt` (an explicit choice of the operator), any split
    /// is taken: the first shift at or above the new version's share (a rule at
    /// 999:1 resumes at the first step of 0.1% or more).
    fn resume(&self, found: &Weights, new: &str, adopt: bool) -> Option<Decision> {
        let stages = self.stages();
        let at = |index: usize| {
            stages.get(index).map(|stage| Decision::Run {
                index,
                stage: *stage,
            })
        };
        let exact = stages.iter().position(|s| {
            s.new_percent()
                .is_some_and(|p| found.compare(new, p) == std::cmp::Ordering::Equal)
        });
        match exact {
            Some(index) => at(index),
            None if adopt => stages
                .iter()
                .position(|s| {
                    s.new_percent()
                        .is_some_and(|p| found.compare(new, p) != std::cmp::Ordering::Greater)
                })
                .and_then(at),
            None => None,
        }
    }
}

/// `Strategy` for smart pointers to a strategy, as for `HealthCheck`.
macro_rules! forward_strategy {
    ($($ptr:ident)::+) => {
        impl<S: Strategy + ?Sized> Strategy for $($ptr)::+<S> {
            fn name(&self) -> &str {
                (**self).name()
            }
            fn stages(&self) -> Vec<Stage> {
                (**self).stages()
            }
            fn validate(&self) -> Result<(), ConfigError> {
                (**self).validate()
            }
            fn decide(&self, at: Position, input: &Input) -> Decision {
                (**self).decide(at, input)
            }
            fn resume(&self, found: &Weights, new: &str, adopt: bool) -> Option<Decision> {
                (**self).resume(found, new, adopt)
            }
        }
    };
}

forward_strategy!(Box);
forward_strategy!(std::sync::Arc);

/// The rules every plan must follow: at least one [`Stage::Shift`]; shift percentages
/// from 1 to 100 and strictly increasing; the last shift at 100; [`Stage::Provision`]
/// only before the first shift; [`Stage::Retire`] only after the last shift; at most
/// 1000 stages; no bake longer than a week.
pub fn validate_stages(strategy: &str, stages: &[Stage]) -> Result<(), ConfigError> {
    let err = |field: &'static str, problem: String| ConfigError::Strategy {
        strategy: strategy.to_owned(),
        field,
        problem,
    };
    if stages.len() > 1000 {
        return Err(err(
            "stages",
            format!("{} stages, at most 1000", stages.len()),
        ));
    }
    let shifts: Vec<(usize, Percent)> = stages
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            Stage::Shift { new_percent, .. } => Some((i, *new_percent)),
            _ => None,
        })
        .collect();
    let (Some(&(first, _)), Some(&(last, last_pct))) = (shifts.first(), shifts.last()) else {
        return Err(err("steps", "the plan has no traffic shift".into()));
    };
    if shifts.iter().any(|(_, p)| *p == Percent::ZERO) {
        return Err(err("steps", "step 0% is outside 0.1-100%".into()));
    }
    if let Some(w) = shifts.windows(2).find(|w| w[1].1 <= w[0].1) {
        return Err(err(
            "steps",
            format!("steps must increase, {} follows {}", w[1].1, w[0].1),
        ));
    }
    if last_pct != Percent::ALL {
        return Err(err(
            "steps",
            format!("the last step must be 100%, got {last_pct}"),
        ));
    }
    for (i, s) in stages.iter().enumerate() {
        check_bake(strategy, "bake", s.bake())?;
        if *s == Stage::Provision && i > first {
            return Err(err(
                "stages",
                "provision must come before the first shift".into(),
            ));
        }
        if *s == Stage::Retire && i < last {
            return Err(err(
                "stages",
                "retire must come after the last shift".into(),
            ));
        }
    }
    Ok(())
}

pub(crate) fn check_bake(
    strategy: &str,
    field: &'static str,
    d: Duration,
) -> Result<(), ConfigError> {
    if d > Duration::from_secs(7 * 24 * 3600) {
        return Err(ConfigError::Strategy {
            strategy: strategy.to_owned(),
            field,
            problem: format!("{d:?} is longer than a week"),
        });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod table {
    //! Helpers for strategy table tests.
    use super::*;

    /// Drives `s` with `inputs` and returns each decision.
    pub fn drive(s: &dyn Strategy, inputs: &[Input]) -> Vec<Decision> {
        let mut at = Position { stage: None };
        let mut out = Vec::new();
        for input in inputs {
            let d = s.decide(at, input);
            if let Decision::Run { index, .. } = d {
                at.stage = Some(index);
            }
            out.push(d);
        }
        out
    }

    /// The shift percentages a fully healthy run goes through.
    pub fn healthy_percents(s: &dyn Strategy) -> Vec<Percent> {
        let n = s.stages().len();
        let mut inputs = vec![Input::Start];
        inputs.extend(std::iter::repeat_n(Input::Passed, n));
        drive(s, &inputs)
            .into_iter()
            .filter_map(|d| match d {
                Decision::Run {
                    stage: Stage::Shift { new_percent, .. },
                    ..
                } => Some(new_percent),
                _ => None,
            })
            .collect()
    }
}
