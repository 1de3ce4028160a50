//! Health: the [`HealthCheck`] trait, its [`Verdict`], checks from async closures
//! ([`from_fn`]), combinators ([`all`], [`any`], [`consecutive`]) and built-in checks.

#[cfg(feature = "cloudmap")]
mod cloudmap;
#[cfg(feature = "cloudwatch")]
mod cloudwatch;
mod combinators;
#[cfg(feature = "http-check")]
mod http;
#[cfg(feature = "vpclattice")]
mod lattice_targets;
mod metrics;
#[cfg(feature = "prometheus")]
mod prometheus;
#[cfg(feature = "elbv2")]
mod target_group;
#[cfg(any(feature = "elbv2", feature = "vpclattice"))]
mod targets;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

#[cfg(feature = "cloudmap")]
pub use cloudmap::{CloudMapHealth, CloudMapHealthBuilder};
#[cfg(feature = "cloudwatch")]
pub use cloudwatch::{CloudWatchMetric, CloudWatchMetricBuilder, ENVOY_NAMESPACE};
pub use combinators::{
    All, Any, Consecutive, OnlyWithTraffic, all, any, consecutive, only_with_traffic,
};
#[cfg(feature = "http-check")]
pub use http::{HttpCheck, HttpCheckBuilder};
#[cfg(feature = "vpclattice")]
pub use lattice_targets::{LatticeTargetHealth, LatticeTargetHealthBuilder};
pub use metrics::{LatencyP99, MetricsSource, SuccessRate, WindowStats};
#[cfg(feature = "prometheus")]
pub use prometheus::{PrometheusQuery, PrometheusQueryBuilder};
#[cfg(feature = "elbv2")]
pub use target_group::{TargetGroupHealth, TargetGroupHealthBuilder};

use crate::traffic::Weights;

/// The result of one evaluation of a health check.
///
/// `Unhealthy` and `Inconclusive` are different on purpose: a check that could not run
/// (timeout, no data, backend down) is inconclusive, and the rollout's
/// [`crate::rollout::InconclusivePolicy`] decides what that means. Inconclusive never
/// counts as healthy unless the rollout explicitly opts into the canary pipeline's rule
/// ([`crate::rollout::InconclusivePolicy::Pass`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The new version looks good.
    Healthy,
    /// The new version looks bad; counts toward rollback.
    Unhealthy {
        /// Why, in words a person can act on.
        reason: String,
    },
    /// The check could not decide (no data, timeout, error reaching the source).
    Inconclusive {
        /// Why.
        reason: String,
    },
}

impl Verdict {
    /// An unhealthy verdict.
    pub fn unhealthy(reason: impl Into<String>) -> Self {
        Self::Unhealthy {
            reason: reason.into(),
        }
    }

    /// An inconclusive verdict.
    pub fn inconclusive(reason: impl Into<String>) -> Self {
        Self::Inconclusive {
            reason: reason.into(),
        }
    }

    /// True for [`Verdict::Healthy`].
    pub fn is_healthy(&self) -> bool {
        matches!(self, Self::Healthy)
    }

    /// The reason, empty for healthy.
    pub fn reason(&self) -> &str {
        match self {
            Self::Healthy => "",
            Self::Unhealthy { reason } | Self::Inconclusive { reason } => reason,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Healthy => f.write_str("healthy"),
            Self::Unhealthy { reason } => write!(f, "unhealthy: {reason}"),
            Self::Inconclusive { reason } => write!(f, "inconclusive: {reason}"),
        }
    }
}

/// What a check knows about the rollout when it is evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckContext {
    /// The index of the strategy stage being watched.
    pub stage: usize,
    /// The stable (old) version's target name.
    pub stable: String,
    /// The new version's target name.
    pub candidate: String,
    /// The weights in force (as last written and read back).
    pub weights: Weights,
    /// Time since the current stage's traffic took effect; a metric check should not
    /// look further back than this, or it would judge older traffic.
    pub stage_elapsed: Duration,
}

/// A health check. Implement it for your own checks, or use [`from_fn`] with an async
/// closure.
///
/// A check should be quick (the runner applies its check timeout and treats a timeout
/// as inconclusive) and must not panic: report problems as
/// [`Verdict::Inconclusive`].
///
/// An implementation needs `#[async_trait]`, re-exported as [`crate::async_trait`]:
///
/// ```
/// use meshkit::async_trait;
/// use meshkit::health::{CheckContext, HealthCheck, Verdict};
///
/// /// Unhealthy when the new version's error budget is spent.
/// struct ErrorBudget {
///     max_errors: u64,
/// }
///
/// impl ErrorBudget {
///     async fn errors_of(&self, _version: &str) -> Result<Option<u64>, String> {
///         Ok(Some(3)) // your metrics store here
///     }
/// }
///
/// #[async_trait]
/// impl HealthCheck for ErrorBudget {
///     fn name(&self) -> &str {
///         "error budget"
///     }
///
///     async fn check(&self, ctx: &CheckContext) -> Verdict {
///         match self.errors_of(&ctx.candidate).await {
///             Ok(Some(n)) if n > self.max_errors => {
///                 Verdict::unhealthy(format!("{n} errors, budget {}", self.max_errors))
///             }
///             Ok(Some(_)) => Verdict::Healthy,
///             // No data is not "healthy": the rollout's policy decides.
///             Ok(None) => Verdict::inconclusive("no error count yet"),
///             Err(e) => Verdict::inconclusive(format!("metrics store: {e}")),
///         }
///     }
/// }
/// ```
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// A short name for logs and events.
    fn name(&self) -> &str;

    /// Evaluates the check once.
    async fn check(&self, ctx: &CheckContext) -> Verdict;
}

#[async_trait]
impl<T: HealthCheck + ?Sized> HealthCheck for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    async fn check(&self, ctx: &CheckContext) -> Verdict {
        (**self).check(ctx).await
    }
}

#[async_trait]
impl<T: HealthCheck + ?Sized> HealthCheck for Box<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    async fn check(&self, ctx: &CheckContext) -> Verdict {
        (**self).check(ctx).await
    }
}

/// A check made from an async closure. Built by [`from_fn`].
pub struct FnCheck<F> {
    name: String,
    f: F,
}

/// Makes a check from a name and an async closure that receives the [`CheckContext`].
///
/// ```
/// use meshkit::health::{self, HealthCheck, Verdict};
///
/// let check = health::from_fn("error-budget", |ctx| async move {
///     if ctx.stage < 10 { Verdict::Healthy } else { Verdict::unhealthy("too far") }
/// });
/// assert_eq!(check.name(), "error-budget");
/// ```
pub fn from_fn<F, Fut>(name: impl Into<String>, f: F) -> FnCheck<F>
where
    F: Fn(CheckContext) -> Fut + Send + Sync,
    Fut: Future<Output = Verdict> + Send,
{
    FnCheck {
        name: name.into(),
        f,
    }
}

#[async_trait]
impl<F, Fut> HealthCheck for FnCheck<F>
where
    F: Fn(CheckContext) -> Fut + Send + Sync,
    Fut: Future<Output = Verdict> + Send,
{
    fn name(&self) -> &str {
        &self.name
    }
    async fn check(&self, ctx: &CheckContext) -> Verdict {
        (self.f)(ctx.clone()).await
    }
}

impl<F> fmt::Debug for FnCheck<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnCheck")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
