//! Fleet: bringing a version up, waiting until it is ready, and retiring it.
//!
//! A rollout with a fleet provisions the new version on [`crate::strategy::Stage::Provision`],
//! retires the stable version after promotion and the new one after a rollback.
//! Without a fleet those steps are no-ops (both versions are managed elsewhere).

#[cfg(feature = "ecs")]
pub mod ecs;
mod error;

use std::time::Duration;

use async_trait::async_trait;

pub use error::FleetError;

/// A backend that runs versions of a service (ECS services, a local process pool…).
///
/// `version` is the target name the route uses for that version. Every method must be
/// idempotent: a restarted rollout calls them again.
#[async_trait]
pub trait Fleet: Send + Sync {
    /// Starts `version` (or makes sure it is running) beside the others.
    async fn bring_up(&self, version: &str) -> Result<(), FleetError>;

    /// Waits until `version` is ready to take traffic, or `timeout` passes; on timeout
    /// returns [`FleetError::NotReady`] naming where it was stuck.
    async fn wait_ready(&self, version: &str, timeout: Duration) -> Result<(), FleetError>;

    /// Stops `version` (scale to zero, or delete).
    async fn retire(&self, version: &str) -> Result<(), FleetError>;
}

#[async_trait]
impl<T: Fleet + ?Sized> Fleet for std::sync::Arc<T> {
    async fn bring_up(&self, version: &str) -> Result<(), FleetError> {
        (**self).bring_up(version).await
    }
    async fn wait_ready(&self, version: &str, timeout: Duration) -> Result<(), FleetError> {
        (**self).wait_ready(version, timeout).await
    }
    async fn retire(&self, version: &str) -> Result<(), FleetError> {
        (**self).retire(version).await
    }
}
