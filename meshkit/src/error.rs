//! The crate's error types, one enum per area.

use std::time::Duration;

use crate::rollout::RollbackReason;
use crate::traffic::Weights;

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
    /// A weight above 100.
    #[error("weight {weight} for target '{target}' is outside 0-100")]
    OutOfRange {
        /// The target.
        target: String,
        /// The weight given.
        weight: u32,
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

/// An error from a [`crate::traffic::TrafficRouter`] backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrafficError {
    /// The route (or its mesh, router or a target) does not exist.
    #[error("route not found: {what}")]
    NotFound {
        /// What was missing.
        what: String,
        /// The backend's own error.
        #[source]
        source: Option<BoxError>,
    },
    /// The backend refused the call for now (throttling, limit exceeded); retry later.
    #[error("throttled by the backend: {message}")]
    Throttled {
        /// The backend's message.
        message: String,
        /// The backend's own error.
        #[source]
        source: Option<BoxError>,
    },
    /// The backend reported a conflicting concurrent change.
    #[error("conflict: {message}")]
    Conflict {
        /// The backend's message.
        message: String,
        /// The backend's own error.
        #[source]
        source: Option<BoxError>,
    },
    /// The call did not complete (timeout, connection reset, lost response). The write
    /// may or may not have been applied.
    #[error("transport error: {message}")]
    Transport {
        /// What happened.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// The backend rejected the request as invalid; retrying will not help.
    #[error("bad request: {message}")]
    BadRequest {
        /// The backend's message.
        message: String,
        /// The backend's own error.
        #[source]
        source: Option<BoxError>,
    },
    /// The caller is not allowed to make this call.
    #[error("forbidden: {message}")]
    Forbidden {
        /// The backend's message.
        message: String,
        /// The backend's own error.
        #[source]
        source: Option<BoxError>,
    },
    /// The route exists but its shape cannot be handled (for example no weighted
    /// targets, or an unsupported route type).
    #[error("unsupported route: {message}")]
    Unsupported {
        /// What is unsupported.
        message: String,
    },
    /// Any other backend error.
    #[error("backend error: {message}")]
    Other {
        /// The backend's message.
        message: String,
        /// The backend's own error.
        #[source]
        source: Option<BoxError>,
    },
}

impl TrafficError {
    /// True when retrying the same call may succeed (throttling, conflicts, transport).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Throttled { .. } | Self::Conflict { .. } | Self::Transport { .. }
        )
    }

    /// True for a missing route, mesh, router or target.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// A transport error with only a message.
    pub fn transport(message: impl Into<String>) -> Self {
        Self::Transport {
            message: message.into(),
            source: None,
        }
    }

    /// A throttling error with only a message.
    pub fn throttled(message: impl Into<String>) -> Self {
        Self::Throttled {
            message: message.into(),
            source: None,
        }
    }

    /// A not-found error with only a description.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound {
            what: what.into(),
            source: None,
        }
    }
}

/// An error from a [`crate::fleet::Fleet`] backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// The version did not become ready in time; `state` says where it was stuck.
    #[error("version '{version}' not ready after {waited:?}: {state}")]
    NotReady {
        /// The version.
        version: String,
        /// How long meshkit waited.
        waited: Duration,
        /// The last state seen, in words.
        state: String,
    },
    /// The backend call failed.
    #[error("fleet backend error: {message}")]
    Backend {
        /// What failed.
        message: String,
        /// The backend's own error.
        #[source]
        source: Option<BoxError>,
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

/// How a rollout stopped without reaching promoted or rolled back.
///
/// Every variant says which weights are in force on the route as far as meshkit could
/// read them ([`RolloutError::in_force`]); `None` means the route could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RolloutError {
    /// The configuration is invalid; nothing was written.
    #[error("invalid rollout: {0}")]
    Config(#[from] ConfigError),
    /// The route could not be read before the first write; nothing was written.
    #[error("cannot read route '{route}' before starting: {source}")]
    Start {
        /// The route.
        route: String,
        /// The backend error.
        #[source]
        source: TrafficError,
    },
    /// The route is not at 100% stable (and resuming was not allowed or not possible);
    /// nothing was written.
    #[error("route '{route}' is not at 100% '{stable}' (in force: {in_force}); nothing written")]
    NotAtStart {
        /// The route.
        route: String,
        /// The stable version.
        stable: String,
        /// The weights found.
        in_force: Weights,
    },
    /// The route is split between the two versions in a way the plan never writes
    /// (another writer's split, or another plan's): resuming from it would adopt a state
    /// meshkit did not write. Nothing was written. Pass `adopt` (`meshkit run --adopt`)
    /// to carry on from it anyway.
    #[error(
        "route '{route}' is at {in_force}, a split this plan never writes (its steps: {}); nothing written. Put the route back on the stable version, or adopt the split explicitly (--adopt)",
        percents(plan)
    )]
    NotResumable {
        /// The route.
        route: String,
        /// The weights found.
        in_force: Weights,
        /// The plan's percentages on the new version.
        plan: Vec<u8>,
    },
    /// The route names targets other than the two versions with traffic on them;
    /// nothing was written. (Other targets at weight 0 are accepted and kept at 0.)
    #[error(
        "route '{route}' has targets other than the two versions (in force: {in_force}); nothing written"
    )]
    UnexpectedTargets {
        /// The route.
        route: String,
        /// The weights found.
        in_force: Weights,
    },
    /// Someone else changed the route since meshkit last wrote it. The rollout stopped
    /// without writing, and the route is left as the other writer set it. The weights
    /// may be the same as meshkit's (another change to the route, or another writer that
    /// set exactly the weights meshkit was about to write): the revisions then differ.
    #[error(
        "route '{route}' was changed by another writer: {}; stopped, route left as found",
        concurrent(expected, expected_revision.as_deref(), found, found_revision.as_deref())
    )]
    ConcurrentWriter {
        /// The route.
        route: String,
        /// What meshkit last wrote or read.
        expected: Weights,
        /// What it found.
        found: Weights,
        /// The revision meshkit expected (see [`crate::traffic::Observed::revision`]).
        expected_revision: Option<String>,
        /// The revision found.
        found_revision: Option<String>,
    },
    /// The route could not be read or written to confirm the last step (for example at
    /// promotion). `last_written` is what meshkit last wrote and read back.
    #[error("could not confirm route '{route}' (last written {last_written}; in force: {}): {source}", show(.in_force.as_ref()))]
    Unconfirmed {
        /// The route.
        route: String,
        /// What meshkit last wrote and read back.
        last_written: Weights,
        /// The weights last read, if any read succeeded.
        in_force: Option<Weights>,
        /// The backend error.
        #[source]
        source: TrafficError,
    },
    /// Rolling back failed and retries ran out at the rollback deadline. Traffic may be
    /// on the new version: act now.
    #[error("ROLLBACK FAILED on route '{route}' ({reason}); weights in force: {}; last error: {source}", show(.in_force.as_ref()))]
    RollbackFailed {
        /// The route.
        route: String,
        /// Why the rollback was started.
        reason: RollbackReason,
        /// The weights last read from the route, if it could be read.
        in_force: Option<Weights>,
        /// The last write error.
        #[source]
        source: TrafficError,
    },
}

fn concurrent(
    expected: &Weights,
    expected_rev: Option<&str>,
    found: &Weights,
    found_rev: Option<&str>,
) -> String {
    let revs = match (expected_rev, found_rev) {
        (Some(a), Some(b)) if a != b => format!(" (version {a} \u{2192} {b})"),
        _ => String::new(),
    };
    if expected == found {
        format!("route changed{revs}, same weights {found}")
    } else {
        format!("expected {expected}, found {found}{revs}")
    }
}

fn percents(plan: &[u8]) -> String {
    let parts: Vec<String> = plan.iter().map(|p| format!("{p}%")).collect();
    parts.join(", ")
}

fn show(w: Option<&Weights>) -> String {
    w.map_or_else(
        || "unknown (route unreadable)".to_owned(),
        Weights::to_string,
    )
}

impl RolloutError {
    /// The weights in force on the route when the rollout stopped, as last read.
    /// `None` when the route could not be read (or the error came before any read).
    pub fn in_force(&self) -> Option<&Weights> {
        match self {
            Self::NotAtStart { in_force, .. }
            | Self::UnexpectedTargets { in_force, .. }
            | Self::NotResumable { in_force, .. } => Some(in_force),
            Self::ConcurrentWriter { found, .. } => Some(found),
            Self::RollbackFailed { in_force, .. } | Self::Unconfirmed { in_force, .. } => {
                in_force.as_ref()
            }
            Self::Config(_) | Self::Start { .. } => None,
        }
    }

    /// True when the error came before any write to the route.
    pub fn nothing_written(&self) -> bool {
        matches!(
            self,
            Self::Config(_)
                | Self::Start { .. }
                | Self::NotAtStart { .. }
                | Self::NotResumable { .. }
                | Self::UnexpectedTargets { .. }
        )
    }
}
