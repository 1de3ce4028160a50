//! [`Lease`]: the right to write one route, for a bounded time.

use std::time::{Duration, SystemTime};

use super::Holder;

/// A lease on a route: only its holder writes the route, and only while it is valid.
/// Taken with [`RolloutStore::acquire`](super::RolloutStore::acquire), kept with
/// [`renew`](super::RolloutStore::renew).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The route the lease is for (the store's key, e.g. a rule ARN).
    pub route: String,
    /// Who holds it.
    pub holder: Holder,
    /// The fencing token: grows by one each time anyone takes the route's lease. Every
    /// fenced store operation checks it, so a holder that lost its lease cannot record
    /// a write, and never starts one.
    pub token: u64,
    /// When the holder took it.
    pub since: SystemTime,
    /// When it expires unless renewed.
    pub expires: SystemTime,
    /// The rollout the holder runs on the route, once recorded.
    pub rollout: Option<String>,
}

impl Lease {
    /// How long the lease stays valid after `now` (zero once expired).
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.expires.duration_since(now).unwrap_or(Duration::ZERO)
    }
}
