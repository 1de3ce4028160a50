//! BlueGreen: check green with no user traffic, cut over at once, keep blue warm.

use std::time::Duration;

use super::{Stage, Strategy, check_bake, validate_stages};
use crate::error::ConfigError;
use crate::traffic::Percent;

/// Brings green (the new version) up beside blue, runs the checks against green before
/// it takes any user traffic, switches all traffic at once, then watches for `bake`
/// while blue stays up for an instant rollback, and only then retires blue.
///
/// ```
/// use std::time::Duration;
/// use meshkit::strategy::{BlueGreen, Strategy};
///
/// let bg = BlueGreen::new()
///     .pre_check(Duration::from_secs(60))
///     .bake(Duration::from_secs(600));
/// assert!(bg.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlueGreen {
    pub(super) pre_check: Duration,
    pub(super) bake: Duration,
}

impl Default for BlueGreen {
    fn default() -> Self {
        Self::new()
    }
}

impl BlueGreen {
    /// Defaults: 60 s of checks before the cutover, 10 min rollback window after it.
    pub fn new() -> Self {
        Self {
            pre_check: Duration::from_secs(60),
            bake: Duration::from_secs(600),
        }
    }

    /// How long to check green before it takes traffic. Default: 60 s.
    pub fn pre_check(mut self, d: Duration) -> Self {
        self.pre_check = d;
        self
    }

    /// The window after the cutover during which blue stays ready. Default: 10 min.
    pub fn bake(mut self, d: Duration) -> Self {
        self.bake = d;
        self
    }
}

impl Strategy for BlueGreen {
    fn name(&self) -> &str {
        "blue-green"
    }

    fn stages(&self) -> Vec<Stage> {
        vec![
            Stage::Provision,
            Stage::Check {
                bake: self.pre_check,
            },
            Stage::Shift {
                new_percent: Percent::ALL,
                bake: self.bake,
            },
            Stage::Retire,
        ]
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_bake(self.name(), "pre_check", self.pre_check)?;
        check_bake(self.name(), "bake", self.bake)?;
        validate_stages(self.name(), &self.stages())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::RollbackReason;
    use crate::strategy::table::drive;
    use crate::strategy::{Decision, Input};

    #[test]
    fn sequence() {
        let bg = BlueGreen::new()
            .pre_check(Duration::from_secs(5))
            .bake(Duration::from_secs(50));
        let out = drive(
            &bg,
            &[
                Input::Start,
                Input::Passed,
                Input::Passed,
                Input::Passed,
                Input::Passed,
            ],
        );
        assert_eq!(
            out,
            vec![
                Decision::Run {
                    index: 0,
                    stage: Stage::Provision
                },
                Decision::Run {
                    index: 1,
                    stage: Stage::Check {
                        bake: Duration::from_secs(5)
                    }
                },
                Decision::Run {
                    index: 2,
                    stage: Stage::Shift {
                        new_percent: Percent::ALL,
                        bake: Duration::from_secs(50)
                    }
                },
                Decision::Run {
                    index: 3,
                    stage: Stage::Retire
                },
                Decision::Promote,
            ]
        );
    }

    #[test]
    fn failing_pre_check_rolls_back_before_any_traffic() {
        let bg = BlueGreen::new();
        let why = RollbackReason::Unhealthy("green down".into());
        let out = drive(
            &bg,
            &[Input::Start, Input::Passed, Input::Failed(why.clone())],
        );
        assert_eq!(out[2], Decision::RollBack(why));
    }

    #[test]
    fn failing_in_the_window_rolls_back() {
        let bg = BlueGreen::new();
        let why = RollbackReason::Unhealthy("5xx".into());
        let out = drive(
            &bg,
            &[
                Input::Start,
                Input::Passed,
                Input::Passed,
                Input::Failed(why.clone()),
            ],
        );
        assert_eq!(out[3], Decision::RollBack(why));
    }
}
