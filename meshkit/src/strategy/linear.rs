//! Linear: a fixed percent step with a wait, checked after every step including the last.

use std::time::Duration;

use super::canary::shift_stages;
use super::{Stage, Strategy, check_bake, validate_stages};
use crate::error::ConfigError;
use crate::traffic::Percent;

/// Moves `step` percent more to the new version every `wait`: min(w + step, 100), as
/// the AWS canary pipeline's `PercentageStep` and `WaitTime` do. Unlike that pipeline,
/// the checks also run after the last (100%) step, before promotion.
///
/// ```
/// use std::time::Duration;
/// use meshkit::strategy::{Linear, Strategy};
///
/// let linear = Linear::new(25, Duration::from_secs(60));
/// assert_eq!(linear.percents(), vec![25, 50, 75, 100]);
/// assert!(linear.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Linear {
    /// Tenths of a percent.
    step: u32,
    wait: Duration,
}

impl Linear {
    /// A step of `step` percent (1-100) every `wait`.
    pub fn new(step: u32, wait: Duration) -> Self {
        Self {
            step: step.saturating_mul(10),
            wait,
        }
    }

    /// A step in 0.1% units (`Percent::from_tenths(5)` moves 0.5% at a time, 200
    /// steps) every `wait`.
    pub fn exact(step: Percent, wait: Duration) -> Self {
        Self {
            step: u32::from(step.tenths()),
            wait,
        }
    }

    /// The percentages the plan goes through (empty for a step outside 0.1-100%).
    pub fn percents(&self) -> Vec<Percent> {
        self.tenths()
            .into_iter()
            .filter_map(|t| Percent::from_tenths(t).ok())
            .collect()
    }

    fn tenths(&self) -> Vec<u32> {
        if self.step == 0 || self.step > 1000 {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut w = 0;
        while w < 1000 {
            w = (w + self.step).min(1000);
            out.push(w);
        }
        out
    }
}

impl Strategy for Linear {
    fn name(&self) -> &str {
        "linear"
    }

    fn stages(&self) -> Vec<Stage> {
        let mut stages = shift_stages(&self.tenths(), self.wait);
        stages.push(Stage::Retire);
        stages
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.step == 0 || self.step > 1000 {
            let shown = Percent::from_tenths(self.step)
                .map_or_else(|_| format!("{}%", self.step / 10), |p| p.to_string());
            return Err(ConfigError::Strategy {
                strategy: self.name().into(),
                field: "step",
                problem: format!("{shown} is outside 0.1-100%"),
            });
        }
        check_bake(self.name(), "wait", self.wait)?;
        validate_stages(self.name(), &self.stages())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::table::{drive, healthy_percents};
    use crate::strategy::{Decision, Input};

    #[test]
    fn pipeline_steps() {
        let wait = Duration::from_secs(60);
        assert_eq!(
            healthy_percents(&Linear::new(10, wait)),
            [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
        );
        assert_eq!(healthy_percents(&Linear::new(25, wait)), [25, 50, 75, 100]);
        assert_eq!(healthy_percents(&Linear::new(30, wait)), [30, 60, 90, 100]);
        assert_eq!(healthy_percents(&Linear::new(100, wait)), [100]);
    }

    #[test]
    fn last_step_is_checked_before_promotion() {
        let l = Linear::new(50, Duration::from_secs(60));
        let out = drive(&l, &[Input::Start, Input::Passed, Input::Passed]);
        // After the 100% step passes its bake, retire comes next: the 100% step baked.
        assert!(
            matches!(out[1], Decision::Run { stage: Stage::Shift { new_percent: Percent::ALL, bake }, .. } if bake == Duration::from_secs(60))
        );
        let failed = drive(
            &l,
            &[
                Input::Start,
                Input::Passed,
                Input::Failed(crate::rollout::RollbackReason::Unhealthy("x".into())),
            ],
        );
        assert!(matches!(failed[2], Decision::RollBack(_)));
    }

    #[test]
    fn bad_steps() {
        assert!(Linear::new(0, Duration::from_secs(1)).validate().is_err());
        assert!(Linear::new(101, Duration::from_secs(1)).validate().is_err());
        assert!(
            Linear::new(10, Duration::from_secs(8 * 24 * 3600))
                .validate()
                .is_err()
        );
    }
}
