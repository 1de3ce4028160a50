//! [`RolloutError`]: how a rollout stopped without reaching a safe end, and what is in
//! force on the route.

use crate::error::ConfigError;
use crate::store::StoreError;
use crate::strategy::RollbackReason;
use crate::traffic::{Percent, TrafficError, Weights};

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
    #[error(
        "route '{route}' is not at 100% '{stable}' (in force: {in_force}); nothing written (to carry on from a split this plan writes, resume)"
    )]
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
    /// meshkit did not write. Nothing was written. Set
    /// [`crate::RolloutBuilder::adopt`] (`meshkit run --adopt`) to carry on from it.
    #[error(
        "route '{route}' is at {in_force}, a split this plan never writes (its steps: {}); nothing written. Put the route back on the stable version, or adopt the split explicitly (RolloutBuilder::adopt, `meshkit run --adopt`)",
        percents(plan)
    )]
    NotResumable {
        /// The route.
        route: String,
        /// The weights found.
        in_force: Weights,
        /// The plan's percentages on the new version.
        plan: Vec<Percent>,
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
    /// The rollout store refused or failed before the first write (the route's lease
    /// is held by another process, the store is unreachable); nothing was written.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// This process lost the route's lease (taken over after it expired, or its
    /// renewals failed until it expired, or the store could not confirm it before a
    /// write): it stopped writing at once. The process that holds the lease now
    /// carries on; without one, the next run on the route resumes from the record.
    #[error(
        "stopped writing route '{route}': {detail}; weights last written and read back by this process: {in_force}; the lease holder (or the next run on the route) carries on from the record"
    )]
    LeaseLost {
        /// The route.
        route: String,
        /// What happened to the lease.
        detail: String,
        /// The weights this process last wrote and read back.
        in_force: Weights,
    },
    /// A deployment that a service shifts itself (ECS native) could not be started or
    /// followed, or ended stopped or with a failed rollback.
    #[error("deployment of {service}: {detail}{}", .in_force.as_ref().map(|w| format!("; split in force: {w}")).unwrap_or_default())]
    Deployment {
        /// `cluster/service`.
        service: String,
        /// What happened.
        detail: String,
        /// The split the service last reported, if read.
        in_force: Option<Weights>,
    },
    /// The route's record in the store does not allow this run: its open rollout has
    /// other versions or another plan while the route is between versions, or the
    /// route holds weights the record never wrote. Nothing was written.
    #[error("route '{route}': {detail}; nothing written")]
    Record {
        /// The route.
        route: String,
        /// What the record says and what to do.
        detail: String,
        /// The weights in force, when the route was read.
        in_force: Option<Weights>,
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

fn percents(plan: &[Percent]) -> String {
    let parts: Vec<String> = plan.iter().map(Percent::to_string).collect();
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
            Self::LeaseLost { in_force, .. } => Some(in_force),
            Self::Record { in_force, .. } | Self::Deployment { in_force, .. } => in_force.as_ref(),
            Self::Config(_) | Self::Start { .. } | Self::Store(_) => None,
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
                | Self::Store(_)
                | Self::Record { .. }
        )
    }
}
