//! Rollout stores: a lease per route, a record of every rollout, and gates, shared by
//! every process that rolls out the same routes.
//!
//! Without a store a rollout lives only in the process that runs it. With one
//! ([`RolloutBuilder::store`](crate::RolloutBuilder::store)):
//!
//! - **One writer per route.** [`Rollout::run`](crate::Rollout::run) takes the route's
//!   [`Lease`] before its first read and keeps it with a heartbeat (every third of the
//!   lease time). A second run on the same route is refused at once with
//!   [`StoreError::Held`] (who, since when), or waits for the lease
//!   ([`RolloutBuilder::wait_for_lease`](crate::RolloutBuilder::wait_for_lease)).
//! - **Fenced writes.** Before every write to the route the runner records the write
//!   it is about to make with [`RolloutStore::fence`], a conditional store write that
//!   succeeds only while the lease's fencing token is still the route's and at least
//!   half the lease time is left. A runner whose lease is gone (taken over, or not
//!   renewed before it expired) stops at once, writes nothing more, and ends with
//!   [`RolloutError::LeaseLost`](crate::RolloutError::LeaseLost) naming the weights
//!   in force. Load balancers, Lattice and App Mesh have no conditional write, so the
//!   fence is checked by the runner and not by the route: a process frozen for more
//!   than half the lease time between its fence and its write (a VM paused mid-call)
//!   is the one case the store cannot exclude; keep the lease time well above your
//!   call timeouts (the lease must be at least twice the call timeout; default 60 s).
//! - **A record of every rollout** ([`RolloutRecord`]): id, route, versions,
//!   strategy and plan, who ran it, every event, the end. The timeline is bounded
//!   (1,000 lines by default: check verdicts beyond that are counted, not kept; writes,
//!   gates and the end are always kept). Old records go with [`RolloutStore::prune`].
//! - **Gates from anywhere** ([`Gate`]): [`RolloutStore::request`] records a pause,
//!   resume, promote or rollback; the lease holder applies it at its next check round
//!   (within one check interval) and marks it applied.
//!
//! # Resuming
//!
//! When a run takes the lease of a route whose last rollout is still open
//! ([`RecordState::Running`] after a crash, [`RecordState::Stopped`] after an error),
//! it resumes **that** rollout from its record, not from a guess:
//!
//! - same versions and the same plan: it keeps the rollout's id, adds itself to the
//!   record's attempts, and carries on from the recorded stage, provided the route
//!   holds the last weights recorded as written or the pending write (which may or may
//!   not have landed); a rollout that was rolling back goes on rolling back. Any other
//!   split on the route means someone else changed it: the run is refused
//!   ([`RolloutError::Record`](crate::RolloutError::Record)) and the route is left
//!   alone.
//! - same versions, but the route is at a safe end (all traffic on one version) the
//!   record never wrote (rolled back by hand after a crash, or a local mesh that died
//!   with its process): the old record is closed as [`RecordState::Abandoned`] and a
//!   new rollout starts.
//! - other versions, or another plan: refused while the route is between versions.
//!   When the route is at a safe end, the old record is closed as
//!   [`RecordState::Abandoned`] and the new rollout starts.
//!
//! A new rollout never reuses a recorded id: an id already in the store (ids derived
//! from the route and versions repeat when the same versions roll out again) gets a
//! 6-character suffix. A run refused before its first write closes its new record as
//! [`RecordState::Refused`]; a refused resume leaves the record open for the next run,
//! unless the route holds weights the record never wrote ([`RecordState::Abandoned`]).
//!
//! A pause applied through a gate before a takeover still holds in the new holder.
//!
//! A lease expires `lease_ttl` after its last renewal: a `kill -9`'d holder's route
//! can be taken over after at most that long.
//!
//! # Implementations
//!
//! - [`SqliteStore`] (feature `sqlite`, default): one file, safe for several
//!   processes on one machine.
//! - `DynamoStore` (feature `dynamodb`): one DynamoDB table, for several machines.

#[cfg(any(feature = "sqlite", feature = "dynamodb"))]
mod codec;
mod error;
mod gate;
mod holder;
mod lease;
mod record;
#[cfg(feature = "sqlite")]
mod sqlite;
mod time;

#[cfg(feature = "dynamodb")]
mod dynamodb;

use std::fmt;
use std::time::{Duration, SystemTime};

pub use error::StoreError;
pub use gate::{Gate, GateRequest};
pub use holder::Holder;
pub use lease::Lease;
pub use record::{
    Entry, NewRollout, Progress, RecordState, RecordUpdate, RolloutRecord, Summary, decode_weights,
    encode_weights,
};
pub use time::{Clock, system_clock, utc};

#[cfg(feature = "dynamodb")]
pub use dynamodb::DynamoStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

/// Timeline lines kept per rollout by default.
pub const DEFAULT_MAX_ENTRIES: usize = 1000;

/// Where rollouts are coordinated and recorded. Every method that changes a rollout
/// takes the caller's [`Lease`] and succeeds only while that lease is the route's
/// (its fencing token matches and it has not expired): a process that lost its lease
/// changes nothing.
#[async_trait::async_trait]
pub trait RolloutStore: Send + Sync + fmt::Debug {
    /// Takes `route`'s lease for `ttl` if nobody holds it or its holder's lease
    /// expired. [`StoreError::Held`] when someone else holds it.
    async fn acquire(
        &self,
        route: &str,
        holder: &Holder,
        ttl: Duration,
    ) -> Result<Lease, StoreError>;

    /// Extends `lease` to `ttl` from now. [`StoreError::Lost`] when it is no longer
    /// the route's (expired and taken, or released).
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StoreError>;

    /// Gives the lease up (nothing happens when it is no longer the route's).
    async fn release(&self, lease: &Lease) -> Result<(), StoreError>;

    /// The route's valid lease, if anyone holds one.
    async fn lease(&self, route: &str) -> Result<Option<Lease>, StoreError>;

    /// Creates the record of a new rollout, or (same id) marks an open one as running
    /// again under `lease`'s holder; either way the lease names the rollout. Fenced.
    async fn open(&self, lease: &Lease, rollout: &NewRollout) -> Result<(), StoreError>;

    /// Appends to and updates the record of rollout `id`. Fenced.
    async fn record(
        &self,
        lease: &Lease,
        id: &str,
        update: &RecordUpdate,
    ) -> Result<(), StoreError>;

    /// Records `pending` as the write about to be made, with `update` (lines not yet
    /// recorded); fails unless the lease is the route's with at least `margin` left.
    /// The runner calls it before every write to the route.
    async fn fence(
        &self,
        lease: &Lease,
        id: &str,
        pending: &Progress,
        update: &RecordUpdate,
        margin: Duration,
    ) -> Result<(), StoreError>;

    /// The route's latest rollout, if it is still open (running or stopped).
    async fn open_rollout(&self, route: &str) -> Result<Option<RolloutRecord>, StoreError>;

    /// A rollout's record, with its whole timeline.
    async fn get(&self, id: &str) -> Result<Option<RolloutRecord>, StoreError>;

    /// The latest `limit` rollouts, newest first, of one route or of all.
    async fn history(&self, route: Option<&str>, limit: usize) -> Result<Vec<Summary>, StoreError>;

    /// Records a gate for rollout `id`, to be applied by its lease holder.
    async fn request(&self, id: &str, gate: Gate, by: &str) -> Result<GateRequest, StoreError>;

    /// The gates requested for rollout `id`, oldest first.
    async fn gates(&self, id: &str) -> Result<Vec<GateRequest>, StoreError>;

    /// Marks a gate applied and records it in the timeline. Fenced.
    async fn gate_applied(
        &self,
        lease: &Lease,
        id: &str,
        gate: &GateRequest,
        entry: &Entry,
    ) -> Result<(), StoreError>;

    /// Deletes the records (timelines and gates) of rollouts that ended before
    /// `ended_before`; returns how many. Open rollouts are never deleted.
    async fn prune(&self, ended_before: SystemTime) -> Result<usize, StoreError>;
}

/// Checks a route key or rollout id given to a store: 1-2048 characters, no control
/// characters.
#[cfg_attr(not(any(feature = "sqlite", feature = "dynamodb")), allow(dead_code))]
pub(crate) fn check_key(what: &str, key: &str) -> Result<(), StoreError> {
    if key.is_empty() || key.len() > 2048 || key.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "{what} must be 1-2048 characters without control characters"
        )));
    }
    Ok(())
}
