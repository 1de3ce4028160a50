//! Traffic: the [`TrafficRouter`] trait that every backend implements, the route it
//! acts on ([`RouteRef`]), and the validated split ([`Weights`]).

#[cfg(feature = "appmesh")]
pub mod appmesh;
#[cfg(feature = "local")]
pub mod local;
mod weights;

use std::fmt;

use async_trait::async_trait;

pub use weights::{MAX_NAME_LEN, MAX_TARGETS, Weights};

use crate::error::{ConfigError, TrafficError};

/// Names one route in a backend. What the name means is the backend's business: for
/// the local mesh it is a route name, for App Mesh a `virtual-router/route` pair inside
/// the mesh the router was built for.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteRef(String);

impl RouteRef {
    /// A route name: 1 to 255 characters, no control characters.
    pub fn new(name: impl Into<String>) -> Result<Self, ConfigError> {
        let name = name.into();
        if name.trim().is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
            return Err(ConfigError::BadRouteName(name));
        }
        Ok(Self(name))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RouteRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RouteRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RouteRef({})", self.0)
    }
}

/// What a read of a route returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The weights in force.
    pub weights: Weights,
    /// The backend's revision of the route, when it has one (App Mesh's
    /// `metadata.version`). Any change to the route changes it, so meshkit compares it
    /// to notice other writers.
    pub revision: Option<String>,
}

/// One write meshkit asks a backend to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRequest {
    /// The weights to set.
    pub weights: Weights,
    /// An idempotency token, the same for every retry of the same write and different
    /// for each step of a rollout. Backends that support client tokens pass it on.
    pub token: String,
}

/// A backend that can read and write the weighted targets of a route.
///
/// Implementations must be safe to call concurrently and must not retry on their own
/// in a way that hides a write that may have been applied: the runner retries, reads
/// back and detects other writers. Return [`TrafficError::Transport`] when the outcome
/// of a write is unknown.
#[async_trait]
pub trait TrafficRouter: Send + Sync {
    /// Reads the weights (and revision) in force on the route.
    async fn read(&self, route: &RouteRef) -> Result<Observed, TrafficError>;

    /// Sets the route's weighted targets to `request.weights`, leaving everything else
    /// about the route unchanged.
    ///
    /// Returns the route's state after the write when the backend's response carries it
    /// (App Mesh's `UpdateRoute` does); the runner then needs no separate read-back.
    /// `Ok(None)` makes the runner read the route until the write is visible.
    async fn write(
        &self,
        route: &RouteRef,
        request: &WriteRequest,
    ) -> Result<Option<Observed>, TrafficError>;

    /// The split the data plane actually applies, when the backend can tell (the local
    /// mesh can; App Mesh cannot). `Ok(None)` means not supported; the default.
    async fn applied(&self, route: &RouteRef) -> Result<Option<Weights>, TrafficError> {
        let _ = route;
        Ok(None)
    }
}

#[async_trait]
impl<T: TrafficRouter + ?Sized> TrafficRouter for std::sync::Arc<T> {
    async fn read(&self, route: &RouteRef) -> Result<Observed, TrafficError> {
        (**self).read(route).await
    }
    async fn write(
        &self,
        route: &RouteRef,
        request: &WriteRequest,
    ) -> Result<Option<Observed>, TrafficError> {
        (**self).write(route, request).await
    }
    async fn applied(&self, route: &RouteRef) -> Result<Option<Weights>, TrafficError> {
        (**self).applied(route).await
    }
}
