//! How a rollout ended.

use std::fmt;
use std::time::Duration;

use crate::strategy::RollbackReason;
use crate::traffic::Weights;

/// The end of a rollout that reached a safe state: all traffic on one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// All traffic is on the new version, read back from the route.
    Promoted {
        /// The weights read back after the last write.
        weights: Weights,
        /// True when a person skipped ahead with [`crate::RolloutHandle::promote`].
        manual: bool,
        /// How long the rollout took.
        elapsed: Duration,
    },
    /// All traffic is back on the stable version, read back from the route.
    RolledBack {
        /// Why.
        reason: RollbackReason,
        /// The stage that was running (its index in the strategy's plan).
        stage: Option<usize>,
        /// The weights read back after the rollback write.
        weights: Weights,
        /// How long the rollout took.
        elapsed: Duration,
    },
}

impl Outcome {
    /// True for [`Outcome::Promoted`].
    pub fn is_promoted(&self) -> bool {
        matches!(self, Self::Promoted { .. })
    }

    /// The weights in force at the end.
    pub fn weights(&self) -> &Weights {
        match self {
            Self::Promoted { weights, .. } | Self::RolledBack { weights, .. } => weights,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Promoted {
                weights,
                manual,
                elapsed,
            } => {
                let how = if *manual { " (manual)" } else { "" };
                write!(f, "promoted{how} after {elapsed:.1?}: {weights}")
            }
            Self::RolledBack {
                reason,
                stage,
                weights,
                elapsed,
            } => {
                let at = stage.map_or_else(
                    || "before any stage".to_owned(),
                    |s| format!("at stage {s}"),
                );
                write!(
                    f,
                    "rolled back {at} after {elapsed:.1?} ({reason}): {weights}"
                )
            }
        }
    }
}
