//! The errors every layer shares: [`ConfigError`] (a setting that cannot work, refused
//! before anything runs), [`WeightsError`] (a split that is not valid) and [`BoxError`].
//! It imports nothing from the rest of the crate. Each area's own error lives beside it:
//! [`crate::traffic::TrafficError`], [`crate::fleet::FleetError`],
//! [`crate::rollout::RolloutError`].

use std::time::Duration;

/// A boxed error kept as the source of another (for example an AWS `SdkError`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a traffic split is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WeightsError {
    /// No targets at all.
    #[error("a split needs at least one target")]
    Empty,
    /// More targets than [`crate::traffic::MAX_TARGETS`].
    #[error("a split may name at most 10 targets, got {count}")]
    TooManyTargets {
        /// How many were given.
        count: usize,
    },
    /// A weight above the largest allowed (100 for percentages).
    #[error("weight {weight} for target '{target}' is outside 0-{max}")]
    OutOfRange {
        /// The target.
        target: String,
        /// The weight given.
        weight: u32,
        /// The largest weight allowed.
        max: u32,
    },
    /// Every weight is 0: the split sends traffic nowhere.
    #[error("every weight is 0: a split must send traffic somewhere")]
    NoTraffic,
    /// Not a percentage meshkit can hold.
    #[error("'{value}' is not a valid percentage: use 0 to 100 in steps of 0.1")]
    BadPercent {
        /// The value given.
        value: String,
    },
    /// The weights do not add up to exactly 100.
    #[error("weights must sum to 100, got {sum}")]
    BadSum {
        /// The sum given.
        sum: u32,
    },
    /// The same target twice.
    #[error("target '{target}' appears more than once")]
    DuplicateTarget {
        /// The repeated name.
        target: String,
    },
    /// An empty or blank target name.
    #[error("target names must not be empty")]
    EmptyTargetName,
    /// A name that is too long or has control characters.
    #[error("target name '{target}' is too long or contains control characters")]
    BadTargetName {
        /// The name (cut to 64 characters).
        target: String,
    },
}

/// A rollout configuration that cannot run. Returned before anything is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required builder field was not set.
    #[error("missing required setting: {0}")]
    Missing(&'static str),
    /// A split or a target name is not valid.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// The stable and new versions are the same target.
    #[error("the stable and new versions must differ, both are '{0}'")]
    SameVersions(String),
    /// A plan step the route's backend cannot hold exactly (a 0.5% step on App Mesh,
    /// which holds whole percents).
    #[error(
        "step {step} is finer than the backend holds (steps of {resolution}); use steps that are multiples of {resolution}, or a backend with finer weights (ALB, NLB and the local mesh hold 0.1%)"
    )]
    FinerThanBackend {
        /// The step, for example `0.5%`.
        step: String,
        /// The backend's finest step, for example `1%`.
        resolution: String,
    },
    /// The route name is empty or malformed.
    #[error(
        "route name '{0}' is not valid: it must be 1-255 characters without control characters"
    )]
    BadRouteName(String),
    /// The rollout id cannot be used in idempotency tokens.
    #[error("rollout id '{0}' is not valid: use 1-32 characters from [A-Za-z0-9_-]")]
    BadRolloutId(String),
    /// A strategy parameter is out of range; `field` names it.
    #[error("strategy {strategy}: {field}: {problem}")]
    Strategy {
        /// The strategy name.
        strategy: String,
        /// The parameter.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// A policy value is out of range; `field` names it.
    #[error("policy {field}: {problem}")]
    Policy {
        /// The setting.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The overall deadline cannot fit the planned bake times.
    #[error("deadline {deadline:?} is shorter than the planned bake time {planned:?}")]
    DeadlineTooShort {
        /// The deadline set.
        deadline: Duration,
        /// The sum of the strategy's bake times.
        planned: Duration,
    },
    /// No health checks were given; a rollout without checks cannot judge anything.
    #[error("at least one health check is required")]
    NoChecks,
    /// A health check's own settings are invalid.
    #[error("health check: {0}")]
    Check(String),
}
