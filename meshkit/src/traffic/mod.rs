//! Traffic: the [`TrafficRouter`] trait that every backend implements, the route it
//! acts on ([`RouteRef`]), the validated split ([`Weights`], exact as a backend holds
//! it) and the unit plans are written in ([`Percent`], steps of 0.1%).

#[cfg(feature = "appmesh")]
pub mod appmesh;
mod convergence;
#[cfg(feature = "elbv2")]
pub mod elb;
mod error;
#[cfg(feature = "vpclattice")]
pub mod lattice;
#[cfg(feature = "local")]
pub mod local;
#[cfg(feature = "cloudwatch")]
mod measure;
mod percent;
mod token;
mod weights;

use std::fmt;

use async_trait::async_trait;

pub use convergence::{Convergence, Judge, judge, judge_newest};
pub use error::TrafficError;
#[cfg(feature = "cloudwatch")]
pub use measure::{METRICS_SETTLE_TIME, TrafficMetrics};
pub use percent::Percent;
pub use token::{MAX_TOKEN_LEN, client_token};
pub use weights::{MAX_NAME_LEN, MAX_TARGETS, MAX_WEIGHT, Weights};

use crate::error::ConfigError;

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
    /// The route's revision: the contract every backend follows.
    ///
    /// - **What goes here.** A value that changes whenever anything about the route
    ///   that the backend reads changes, not only the weights: App Mesh's
    ///   `metadata.version`; the local mesh's table revision. A backend whose API keeps
    ///   no version (load balancer rules, VPC Lattice rules, most home-made routers)
    ///   puts a digest of the whole routing configuration it read, made with
    ///   [`revision_digest`]: conditions, priority, every target and weight, any other
    ///   setting of the route.
    /// - **How it is compared.** As an opaque string, for equality only, with the
    ///   revision meshkit saw after its own last write. Equal weights with a different
    ///   revision are another writer's change ("route changed, same weights"); so are
    ///   different weights, whatever the revision.
    ///   A digest cannot see a change that was undone between two reads (A → B → A);
    ///   a native version can. Nor can it tell a change another writer made between
    ///   meshkit's write and its read-back from meshkit's own, when that change keeps
    ///   the weights meshkit wrote: return the route from [`TrafficRouter::write`]
    ///   when the backend's answer carries it (App Mesh's and the load balancers' do),
    ///   which closes that window.
    /// - **`None`** only for a backend that can give neither a version nor a digest.
    ///   meshkit then compares weights alone, and cannot see another writer that
    ///   changed something other than the weights. Never put a timestamp of the read
    ///   here: two reads of an unchanged route must give the same revision.
    pub revision: Option<String>,
}

/// A revision for a backend that keeps no version of its own: a 64-bit FNV-1a digest,
/// as 16 hex digits, of the parts given (each part is length-prefixed, so `["ab",
/// "c"]` and `["a", "bc"]` differ). Feed it every field of the route the backend
/// reads, in a fixed order.
///
/// ```
/// use meshkit::traffic::revision_digest;
///
/// let a = revision_digest(["priority=10", "path=/api", "tg-blue=90", "tg-green=10"]);
/// assert_eq!(a.len(), 16);
/// assert_eq!(a, revision_digest(["priority=10", "path=/api", "tg-blue=90", "tg-green=10"]));
/// assert_ne!(a, revision_digest(["priority=20", "path=/api", "tg-blue=90", "tg-green=10"]));
/// ```
pub fn revision_digest<I, P>(parts: I) -> String
where
    I: IntoIterator<Item = P>,
    P: AsRef<[u8]>,
{
    let mut h = Fnv::default();
    for part in parts {
        let part = part.as_ref();
        h.eat((part.len() as u64).to_le_bytes());
        h.eat(part.iter().copied());
    }
    format!("{:016x}", h.0)
}

/// 64-bit FNV-1a: stable across runs, builds and platforms (std's hasher is not), for
/// revisions, tokens and seeds.
pub(crate) struct Fnv(pub(crate) u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub(crate) fn eat(&mut self, bytes: impl IntoIterator<Item = u8>) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// One write meshkit asks a backend to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRequest {
    /// The weights to set.
    pub weights: Weights,
    /// An idempotency token, the same for every retry of the same write and different
    /// for each step of a rollout; at most [`MAX_TOKEN_LEN`] characters of
    /// `[A-Za-z0-9_-]` (see [`client_token`]). Backends that support client tokens pass
    /// it on.
    pub token: String,
}

/// A backend that can read and write the weighted targets of a route.
///
/// `read` must fill [`Observed::revision`] as its contract says: that is how meshkit
/// tells its own writes from another writer's. meshkit bounds every call with the
/// rollout's call timeout (`RolloutBuilder::call_timeout`, 30 s by default) and treats
/// a call that did not answer as a transport error whose outcome is unknown; a backend
/// should still time out its own requests sooner.
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Mutex;
///
/// use meshkit::async_trait;
/// use meshkit::TrafficError;
/// use meshkit::traffic::{Observed, RouteRef, TrafficRouter, Weights, WriteRequest, revision_digest};
///
/// /// Routes kept in a map; a real backend calls its API here.
/// struct MapRouter(Mutex<HashMap<String, Weights>>);
///
/// #[async_trait]
/// impl TrafficRouter for MapRouter {
///     async fn read(&self, route: &RouteRef) -> Result<Observed, TrafficError> {
///         let routes = self.0.lock().map_err(|_| TrafficError::transport("lock poisoned"))?;
///         let weights = routes
///             .get(route.as_str())
///             .cloned()
///             .ok_or_else(|| TrafficError::not_found(route.as_str()))?;
///         // No version in this store: a digest of everything read about the route.
///         let revision = Some(revision_digest([weights.to_string()]));
///         Ok(Observed { weights, revision })
///     }
///
///     async fn write(
///         &self,
///         route: &RouteRef,
///         request: &WriteRequest,
///     ) -> Result<Option<Observed>, TrafficError> {
///         let mut routes = self.0.lock().map_err(|_| TrafficError::transport("lock poisoned"))?;
///         let slot = routes
///             .get_mut(route.as_str())
///             .ok_or_else(|| TrafficError::not_found(route.as_str()))?;
///         *slot = request.weights.clone();
///         // `None`: the runner reads the route back itself.
///         Ok(None)
///     }
/// }
/// ```
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

    /// The split the data plane actually applies, when the backend knows it exactly
    /// (the local mesh does; App Mesh cannot tell). `Ok(None)` means not supported;
    /// the default.
    async fn applied(&self, route: &RouteRef) -> Result<Option<Weights>, TrafficError> {
        let _ = route;
        Ok(None)
    }

    /// Whether the data plane applies `written`, the split meshkit just wrote and saw
    /// in force. The runner asks after every write until the answer is
    /// [`Convergence::settled`] or [`TrafficRouter::settle_time`] plus the rollout's
    /// settle timeout has passed. The default answers from [`TrafficRouter::applied`]:
    /// `Unknown` when it is not supported, `Applied` when it equals `written`.
    /// Backends that measure traffic (load balancer request counts) judge the counts
    /// with [`judge`].
    async fn converged(
        &self,
        route: &RouteRef,
        written: &Weights,
    ) -> Result<Convergence, TrafficError> {
        Ok(match self.applied(route).await? {
            None => Convergence::Unknown,
            Some(w) if w == *written => Convergence::Applied {
                detail: format!("data plane applies {w}"),
            },
            Some(w) => Convergence::NotYet {
                detail: format!("data plane applies {w}"),
            },
        })
    }

    /// How long the data plane may take to apply a write (a load balancer's
    /// propagation); the runner waits for [`TrafficRouter::converged`] this long plus
    /// its settle timeout. Default: zero.
    fn settle_time(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// The finest step this backend holds exactly: [`Percent::ONE`] (whole percents)
    /// by default, [`Percent::TENTH`] for backends with relative weights up to 999. A
    /// plan with a finer step is refused before anything is written.
    fn resolution(&self) -> Percent {
        Percent::ONE
    }
}

/// `TrafficRouter` for smart pointers to a router (`Arc<dyn TrafficRouter>`,
/// `Box<dyn TrafficRouter>`), as for `HealthCheck` and `Strategy`.
macro_rules! forward_router {
    ($($ptr:ident)::+) => {
        #[async_trait]
        impl<T: TrafficRouter + ?Sized> TrafficRouter for $($ptr)::+<T> {
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
            async fn converged(
                &self,
                route: &RouteRef,
                written: &Weights,
            ) -> Result<Convergence, TrafficError> {
                (**self).converged(route, written).await
            }
            fn settle_time(&self) -> std::time::Duration {
                (**self).settle_time()
            }
            fn resolution(&self) -> Percent {
                (**self).resolution()
            }
        }
    };
}

forward_router!(std::sync::Arc);
forward_router!(Box);
