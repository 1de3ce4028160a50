//! CanaryBlueGreen: green beside blue, checked, canary steps, then the full cutover.

use std::time::Duration;

use super::canary::{check_range, shift_stages, tenths_of};
use super::{BlueGreen, Stage, Strategy, check_bake, validate_stages};
use crate::error::ConfigError;
use crate::traffic::Percent;

/// Green comes up beside blue and is checked with no user traffic; then it takes
/// canary steps (each baked for `step_bake`), then the full cutover, watched for the
/// blue/green `bake` window while blue stays ready for an instant rollback; then blue
/// is retired.
///
/// ```
/// use std::time::Duration;
/// use meshkit::strategy::{CanaryBlueGreen, Strategy};
///
/// let s = CanaryBlueGreen::new([10, 50])
///     .step_bake(Duration::from_secs(120))
///     .bake(Duration::from_secs(600));
/// assert!(s.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryBlueGreen {
    /// Tenths of a percent.
    steps: Vec<u32>,
    step_bake: Duration,
    bg: BlueGreen,
}

impl CanaryBlueGreen {
    /// Canary percentages before the cutover (each 1-99, rising). Defaults: 60 s per
    /// step, 60 s pre-check, 10 min window after the cutover.
    pub fn new(steps: impl IntoIterator<Item = u32>) -> Self {
        Self {
            steps: tenths_of(steps),
            step_bake: Duration::from_secs(60),
            bg: BlueGreen::new(),
        }
    }

    /// Canary steps in 0.1% units (each 0.1-99.9%, rising); otherwise as
    /// [`CanaryBlueGreen::new`].
    pub fn new_exact(steps: impl IntoIterator<Item = Percent>) -> Self {
        Self {
            steps: steps.into_iter().map(|p| u32::from(p.tenths())).collect(),
            step_bake: Duration::from_secs(60),
            bg: BlueGreen::new(),
        }
    }

    /// How long each canary step is watched. Default: 60 s.
    pub fn step_bake(mut self, d: Duration) -> Self {
        self.step_bake = d;
        self
    }

    /// How long to check green before it takes traffic. Default: 60 s.
    pub fn pre_check(mut self, d: Duration) -> Self {
        self.bg = self.bg.pre_check(d);
        self
    }

    /// The window after the cutover during which blue stays ready. Default: 10 min.
    pub fn bake(mut self, d: Duration) -> Self {
        self.bg = self.bg.bake(d);
        self
    }
}

impl Strategy for CanaryBlueGreen {
    fn name(&self) -> &str {
        "canary-blue-green"
    }

    fn stages(&self) -> Vec<Stage> {
        let mut stages = vec![
            Stage::Provision,
            Stage::Check {
                bake: self.bg.pre_check,
            },
        ];
        stages.extend(shift_stages(&self.steps, self.step_bake));
        stages.push(Stage::Shift {
            new_percent: Percent::ALL,
            bake: self.bg.bake,
        });
        stages.push(Stage::Retire);
        stages
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_range(self.name(), "steps", &self.steps)?;
        if let Some(p) = self.steps.iter().find(|p| **p >= 1000) {
            return Err(ConfigError::Strategy {
                strategy: self.name().into(),
                field: "steps",
                problem: format!(
                    "canary step {}% must be below 100 (the cutover is added)",
                    p / 10
                ),
            });
        }
        check_bake(self.name(), "step_bake", self.step_bake)?;
        self.bg.validate()?;
        validate_stages(self.name(), &self.stages())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::table::{drive, healthy_percents};
    use crate::strategy::{Decision, Input};

    #[test]
    fn sequence() {
        let s = CanaryBlueGreen::new([10, 50]).pre_check(Duration::from_secs(1));
        assert_eq!(healthy_percents(&s), [10, 50, 100]);
        let out = drive(&s, &[Input::Start, Input::Passed]);
        assert_eq!(
            out[0],
            Decision::Run {
                index: 0,
                stage: Stage::Provision
            }
        );
        assert_eq!(
            out[1],
            Decision::Run {
                index: 1,
                stage: Stage::Check {
                    bake: Duration::from_secs(1)
                }
            }
        );
        assert_eq!(s.stages().last(), Some(&Stage::Retire));
    }

    #[test]
    fn rejects_bad_steps() {
        assert!(CanaryBlueGreen::new([10, 100]).validate().is_err());
        assert!(CanaryBlueGreen::new([50, 10]).validate().is_err());
        assert!(CanaryBlueGreen::new([0]).validate().is_err());
        assert!(
            CanaryBlueGreen::new([]).validate().is_ok(),
            "no canary steps is plain blue/green"
        );
    }
}
