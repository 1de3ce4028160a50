//! [`RollbackReason`]: the strategy's vocabulary for why a rollout goes back.

use std::fmt;

/// Why a rollout rolled back.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RollbackReason {
    /// The checks said unhealthy (threshold reached).
    Unhealthy(String),
    /// The checks stayed inconclusive past the inconclusive policy's limit.
    Inconclusive(String),
    /// A person or program aborted the rollout.
    Aborted,
    /// The overall deadline passed before the rollout finished.
    DeadlineExceeded,
    /// The new version could not be brought up or did not become ready.
    ProvisionFailed(String),
    /// A forward weight change could not be written (retries exhausted).
    WriteFailed(String),
    /// A forward weight change was written, but the data plane was not seen applying
    /// it within the settle time (measured traffic disagreed, or too few requests).
    NotApplied(String),
    /// The rollout was rolling back when its process stopped (a crash, a lost
    /// lease); the process that resumed it from the store's record finished the
    /// rollback. The original reason, in words.
    Resumed(String),
    /// The service that shifts the traffic itself (an ECS native deployment) rolled
    /// back on its own: why, as it says (a lifecycle hook that timed out, its alarms).
    Native(String),
}

impl fmt::Display for RollbackReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unhealthy(r) => write!(f, "unhealthy: {r}"),
            Self::Inconclusive(r) => write!(f, "inconclusive too long: {r}"),
            Self::Aborted => f.write_str("aborted"),
            Self::DeadlineExceeded => f.write_str("deadline exceeded"),
            Self::ProvisionFailed(r) => write!(f, "new version not ready: {r}"),
            Self::WriteFailed(r) => write!(f, "weight change failed: {r}"),
            Self::Native(r) => write!(f, "rolled back by the deployment service: {r}"),
            Self::Resumed(r) => write!(f, "rollback resumed from the record ({r})"),
            Self::NotApplied(r) => {
                write!(f, "weights written but not applied by the data plane: {r}")
            }
        }
    }
}
