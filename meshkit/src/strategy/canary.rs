//! Canary: explicit steps, or a step size up to a maximum, each baked.

use std::time::Duration;

use super::{Stage, Strategy, check_bake, validate_stages};
use crate::error::ConfigError;
use crate::traffic::Percent;

/// Shifts traffic to the new version in explicit steps (for example 5, 25, 50, 100),
/// watching the checks for `bake` at each, the last (100%) step included. Then
/// retires the stable version.
///
/// ```
/// use std::time::Duration;
/// use meshkit::strategy::{Canary, Strategy};
///
/// let canary = Canary::steps([5, 25, 50, 100]).bake(Duration::from_secs(120));
/// assert!(canary.validate().is_ok());
/// // Flagger-style: 10% more each step up to 50%, then promotion at 100%.
/// let stepped = Canary::step_max(10, 50);
/// assert_eq!(stepped.percents(), vec![10, 20, 30, 40, 50, 100]);
/// // A half-percent first step, for a backend that holds 0.1% steps (ALB, NLB, Lattice).
/// let fine = Canary::steps_exact(["0.5".parse()?, "5".parse()?, "100".parse()?]);
/// assert!(fine.validate().is_ok());
/// # Ok::<(), meshkit::WeightsError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canary {
    /// Tenths of a percent (out-of-range values are kept for `validate` to report).
    steps: Vec<u32>,
    bake: Duration,
    pre_check: Option<Duration>,
}

/// The default bake time per step: 60 s.
pub const DEFAULT_BAKE: Duration = Duration::from_secs(60);

impl Canary {
    /// Explicit percentages on the new version. They must rise strictly, lie in 1-100,
    /// and end at 100 (checked by [`Strategy::validate`]).
    pub fn steps(steps: impl IntoIterator<Item = u32>) -> Self {
        Self {
            steps: tenths_of(steps),
            bake: DEFAULT_BAKE,
            pre_check: None,
        }
    }

    /// Explicit steps in 0.1% units (`0.5%`, `5%`, `100%`); the same rules as
    /// [`Canary::steps`]. The route's backend must hold the finest step
    /// ([`crate::traffic::TrafficRouter::resolution`]), or the rollout is refused
    /// before anything is written.
    pub fn steps_exact(steps: impl IntoIterator<Item = Percent>) -> Self {
        Self {
            steps: steps.into_iter().map(|p| u32::from(p.tenths())).collect(),
            bake: DEFAULT_BAKE,
            pre_check: None,
        }
    }

    /// `step`, `2*step`, ... up to `max` (inclusive), then 100. A `step` of 0 or a `max`
    /// outside 1-100 gives a plan that fails validation.
    pub fn step_max(step: u32, max: u32) -> Self {
        let mut steps = Vec::new();
        if step == 0 || max == 0 || max > 100 {
            steps.push(step.min(max));
        } else {
            let mut w = step;
            while w <= max && w < 100 {
                steps.push(w);
                w += step;
            }
            steps.push(100);
        }
        Self {
            steps: tenths_of(steps),
            bake: DEFAULT_BAKE,
            pre_check: None,
        }
    }

    /// The time to watch each step. Default: 60 s.
    pub fn bake(mut self, bake: Duration) -> Self {
        self.bake = bake;
        self
    }

    /// Before the first step, run the checks for `d` with no user traffic on the new
    /// version (CodeDeploy's "before allow traffic"). Checks that probe the new version
    /// directly (an HTTP probe, Cloud Map health) can fail it there, so a broken
    /// version is rolled back before any user request reaches it; metric checks wrapped
    /// in [`crate::health::only_with_traffic`] pass while it has no traffic. Without it
    /// the runner still checks once before the first step
    /// ([`crate::RolloutBuilder::check_before_shift`]); this watches for longer, which
    /// catches a version that fails only some of the time. Default: none.
    pub fn pre_check(mut self, d: Duration) -> Self {
        self.pre_check = Some(d);
        self
    }

    /// The step percentages (those in range; [`Strategy::validate`] reports others).
    pub fn percents(&self) -> Vec<Percent> {
        self.steps
            .iter()
            .filter_map(|t| Percent::from_tenths(*t).ok())
            .collect()
    }
}

/// Whole percents as tenths, saturating so that an out-of-range value stays out of range.
pub(super) fn tenths_of(whole: impl IntoIterator<Item = u32>) -> Vec<u32> {
    whole.into_iter().map(|p| p.saturating_mul(10)).collect()
}

/// Refuses a step above 100%, before the steps become stages.
pub(super) fn check_range(
    strategy: &str,
    field: &'static str,
    tenths: &[u32],
) -> Result<(), ConfigError> {
    match tenths.iter().find(|t| **t > 1000) {
        Some(t) => Err(ConfigError::Strategy {
            strategy: strategy.to_owned(),
            field,
            problem: format!("step {}% is outside 1-100", t / 10),
        }),
        None => Ok(()),
    }
}

/// One shift per step; steps are range-checked ([`check_range`]) before this is used
/// for a rollout, so the clamp never applies to a plan that runs.
pub(super) fn shift_stages(tenths: &[u32], bake: Duration) -> Vec<Stage> {
    tenths
        .iter()
        .map(|t| Stage::Shift {
            new_percent: Percent::from_tenths(*t).unwrap_or(Percent::ALL),
            bake,
        })
        .collect()
}

impl Strategy for Canary {
    fn name(&self) -> &str {
        "canary"
    }

    fn stages(&self) -> Vec<Stage> {
        let mut stages: Vec<Stage> = self
            .pre_check
            .map(|bake| Stage::Check { bake })
            .into_iter()
            .collect();
        stages.extend(shift_stages(&self.steps, self.bake));
        stages.push(Stage::Retire);
        stages
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.steps.is_empty() {
            return Err(ConfigError::Strategy {
                strategy: self.name().into(),
                field: "steps",
                problem: "no steps given".into(),
            });
        }
        check_range(self.name(), "steps", &self.steps)?;
        check_bake(self.name(), "bake", self.bake)?;
        if let Some(d) = self.pre_check {
            check_bake(self.name(), "pre_check", d)?;
        }
        validate_stages(self.name(), &self.stages())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pct(p: u32) -> Percent {
        Percent::whole(p).unwrap()
    }

    #[test]
    fn steps_in_tenths_validate_like_whole_ones() {
        let t =
            |v: &[u32]| Canary::steps_exact(v.iter().map(|t| Percent::from_tenths(*t).unwrap()));
        assert!(t(&[5, 50, 1000]).validate().is_ok());
        assert_eq!(
            healthy_percents(&t(&[1, 5, 1000])),
            [
                Percent::TENTH,
                Percent::from_tenths(5).unwrap(),
                Percent::ALL
            ]
        );
        assert!(t(&[5, 5, 1000]).validate().is_err());
        assert!(t(&[0, 1000]).validate().is_err());
        assert!(t(&[5, 999]).validate().is_err());
        let err = Canary::steps([10, 150]).validate().unwrap_err().to_string();
        assert!(err.contains("step 150% is outside 1-100"), "{err}");
    }

    #[test]
    fn a_pre_check_comes_first_with_no_traffic() {
        let d = Duration::from_secs(5);
        let c = Canary::steps([10, 100]).pre_check(d);
        assert!(c.validate().is_ok());
        assert_eq!(
            c.stages(),
            vec![
                Stage::Check { bake: d },
                Stage::Shift {
                    new_percent: pct(10),
                    bake: DEFAULT_BAKE
                },
                Stage::Shift {
                    new_percent: Percent::ALL,
                    bake: DEFAULT_BAKE
                },
                Stage::Retire,
            ]
        );
    }
    use crate::rollout::RollbackReason;
    use crate::strategy::table::{drive, healthy_percents};
    use crate::strategy::{Decision, Input};

    #[test]
    fn healthy_walks_every_step_then_retires() {
        let c = Canary::steps([5, 25, 50, 100]).bake(Duration::from_secs(30));
        let mut inputs = vec![Input::Start];
        inputs.extend([
            Input::Passed,
            Input::Passed,
            Input::Passed,
            Input::Passed,
            Input::Passed,
        ]);
        let bake = Duration::from_secs(30);
        let shift = |index, p| Decision::Run {
            index,
            stage: Stage::Shift {
                new_percent: pct(p),
                bake,
            },
        };
        assert_eq!(
            drive(&c, &inputs),
            vec![
                shift(0, 5),
                shift(1, 25),
                shift(2, 50),
                shift(3, 100),
                Decision::Run {
                    index: 4,
                    stage: Stage::Retire
                },
                Decision::Promote,
            ]
        );
    }

    #[test]
    fn failure_at_any_step_rolls_back() {
        let c = Canary::steps([10, 50, 100]);
        let why = RollbackReason::Unhealthy("5xx".into());
        for k in 0..3 {
            let mut inputs = vec![Input::Start];
            inputs.extend(std::iter::repeat_n(Input::Passed, k));
            inputs.push(Input::Failed(why.clone()));
            let out = drive(&c, &inputs);
            assert_eq!(
                out.last(),
                Some(&Decision::RollBack(why.clone())),
                "step {k}"
            );
        }
    }

    #[test]
    fn promote_now_jumps_to_the_cutover() {
        let c = Canary::steps([10, 50, 100]);
        let out = drive(
            &c,
            &[
                Input::Start,
                Input::PromoteNow,
                Input::Passed,
                Input::Passed,
            ],
        );
        assert!(matches!(
            out[1],
            Decision::Run {
                index: 2,
                stage: Stage::Shift {
                    new_percent: Percent::ALL,
                    ..
                }
            }
        ));
        assert_eq!(
            out[2],
            Decision::Run {
                index: 3,
                stage: Stage::Retire
            }
        );
        assert_eq!(out[3], Decision::Promote);
    }

    #[test]
    fn step_max_matches_flagger() {
        assert_eq!(
            healthy_percents(&Canary::step_max(10, 50)),
            [10, 20, 30, 40, 50, 100]
        );
        assert_eq!(
            healthy_percents(&Canary::step_max(30, 100)),
            [30, 60, 90, 100]
        );
        assert_eq!(healthy_percents(&Canary::step_max(100, 100)), [100]);
        assert!(Canary::step_max(0, 50).validate().is_err());
        assert!(Canary::step_max(10, 101).validate().is_err());
    }

    #[test]
    fn invalid_steps_are_rejected() {
        for steps in [
            vec![],
            vec![0, 100],
            vec![50, 20, 100],
            vec![10, 50],
            vec![10, 10, 100],
            vec![50, 150],
        ] {
            assert!(
                Canary::steps(steps.clone()).validate().is_err(),
                "{steps:?}"
            );
        }
    }
}
