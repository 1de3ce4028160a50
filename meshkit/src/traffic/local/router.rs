//! [`LocalRouter`] (the control plane) and [`LocalMetrics`] (statistics for checks).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::table::Table;
use super::{Route, Shared};
use crate::health::{MetricsSource, WindowStats};
use crate::traffic::TrafficError;
use crate::traffic::{Observed, RouteRef, TrafficRouter, Weights, WriteRequest};

/// The local mesh's [`TrafficRouter`]: routes are named as given to
/// [`super::LocalMeshBuilder::route`]. A write takes effect for the next request.
#[derive(Clone)]
pub struct LocalRouter {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for LocalRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRouter")
            .field("routes", &self.shared.by_name.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl LocalRouter {
    fn route(&self, route: &RouteRef) -> Result<&Arc<Route>, TrafficError> {
        self.shared
            .by_name
            .get(route.as_str())
            .ok_or_else(|| TrafficError::not_found(format!("local route '{route}'")))
    }

    fn observed(table: &Table) -> Observed {
        Observed {
            weights: table.weights.clone(),
            revision: Some(table.revision.to_string()),
        }
    }
}

#[async_trait]
impl TrafficRouter for LocalRouter {
    async fn read(&self, route: &RouteRef) -> Result<Observed, TrafficError> {
        Ok(Self::observed(&self.route(route)?.table()))
    }

    async fn write(
        &self,
        route: &RouteRef,
        request: &WriteRequest,
    ) -> Result<Option<Observed>, TrafficError> {
        let r = self.route(route)?;
        let names = r.target_names();
        if let Some((t, _)) = request
            .weights
            .iter()
            .find(|(t, _)| !names.iter().any(|n| n == t))
        {
            return Err(TrafficError::BadRequest {
                message: format!("route '{route}' has no target '{t}'"),
                source: None,
            });
        }
        let table =
            r.set_table(|old| Table::new(request.weights.clone(), &names, old.revision + 1));
        tracing::info!(route = %route, weights = %table.weights, revision = table.revision, "local mesh weights changed");
        Ok(Some(Self::observed(&table)))
    }

    async fn applied(&self, route: &RouteRef) -> Result<Option<Weights>, TrafficError> {
        // The data plane reads this very table for every new request.
        Ok(Some(self.route(route)?.table().weights.clone()))
    }

    /// The local data plane picks from a schedule as long as the weights' sum in
    /// lowest terms, so it holds 0.1% steps exactly.
    fn resolution(&self) -> crate::traffic::Percent {
        crate::traffic::Percent::TENTH
    }
}

/// Statistics of one local route's targets, as a [`MetricsSource`] for metric checks.
#[derive(Clone)]
pub struct LocalMetrics {
    pub(crate) shared: Arc<Shared>,
    pub(crate) route: String,
}

impl std::fmt::Debug for LocalMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalMetrics")
            .field("route", &self.route)
            .finish()
    }
}

impl LocalMetrics {
    /// The statistics of `target` over the last `window`, now.
    pub fn window_now(&self, target: &str, window: Duration) -> Option<WindowStats> {
        let r = self.shared.by_name.get(&self.route)?;
        let t = r.targets.iter().find(|t| t.name == target)?;
        Some(t.stats.window(self.shared.second(), window))
    }

    /// Each target's requests served so far on this route, in the route's order
    /// (`None` for a route the mesh does not have).
    pub fn requests(&self) -> Option<Vec<(String, u64)>> {
        let r = self.shared.by_name.get(&self.route)?;
        Some(
            r.targets
                .iter()
                .map(|t| (t.name.clone(), t.stats.totals().requests))
                .collect(),
        )
    }
}

#[async_trait]
impl MetricsSource for LocalMetrics {
    async fn window(&self, target: &str, window: Duration) -> Result<WindowStats, String> {
        self.window_now(target, window)
            .ok_or_else(|| format!("no target '{target}' on local route '{}'", self.route))
    }
}
