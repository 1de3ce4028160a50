//! [`ElbRouter::preflight`]: read-only checks before a rollout on a load balancer.

use super::{ElbRoute, ElbRouter, TargetGroupRef};
use crate::aws::traffic_error;
use crate::traffic::{Observed, RouteRef, TrafficError, TrafficRouter};

/// What [`ElbRouter::preflight`] found: the route readable and forwarding only, both
/// target groups existing with targets registered.
#[derive(Debug, Clone)]
pub struct ElbPreflight {
    /// The route.
    pub route: ElbRoute,
    /// The route as read: weights (exact) and revision.
    pub observed: Observed,
    /// The stable version's target group.
    pub stable: TargetGroupRef,
    /// The new version's target group.
    pub candidate: TargetGroupRef,
    /// Targets registered in the stable group, and how many of them are healthy.
    pub stable_targets: (usize, usize),
    /// Targets registered in the new group, and how many of them are healthy.
    pub candidate_targets: (usize, usize),
}

/// Why a load balancer route is not ready for a rollout. Nothing was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ElbPreflightError {
    /// The route could not be read, or does not only forward to weighted groups.
    #[error("route {route}: {source}")]
    Route {
        /// The route ARN.
        route: String,
        /// Why.
        #[source]
        source: TrafficError,
    },
    /// A target group does not exist or could not be read.
    #[error("target group {name}: {source}")]
    TargetGroup {
        /// The name or ARN given.
        name: String,
        /// Why.
        #[source]
        source: TrafficError,
    },
    /// A target group has no registered targets: traffic shifted to it would fail.
    #[error(
        "target group {name} has no registered targets; register the version's tasks (its ECS service's load balancer wiring) before shifting traffic"
    )]
    NoTargets {
        /// The group's name.
        name: String,
    },
    /// Both versions are the same target group.
    #[error("the stable and new versions are the same target group {0}")]
    SameGroup(String),
}

impl ElbRouter {
    /// Read-only checks before a rollout from `stable` to `candidate` (target groups
    /// by name or ARN) on `route`: the route exists and only forwards (optionally
    /// after authentication), both target groups exist and have registered targets.
    /// Costs one read of the route, one `DescribeTargetGroups` per group not resolved
    /// yet and one `DescribeTargetHealth` per group.
    pub async fn preflight(
        &self,
        route: &RouteRef,
        stable: &str,
        candidate: &str,
    ) -> Result<ElbPreflight, ElbPreflightError> {
        let route_err = |source| ElbPreflightError::Route {
            route: route.to_string(),
            source,
        };
        let parsed = ElbRoute::from_route(route).map_err(route_err)?;
        let observed = self.read(route).await.map_err(route_err)?;
        let group = |name: &str| {
            let name = name.to_owned();
            async move {
                self.target_group(&name)
                    .await
                    .map_err(|source| ElbPreflightError::TargetGroup { name, source })
            }
        };
        let stable = group(stable).await?;
        let candidate = group(candidate).await?;
        if stable.arn == candidate.arn {
            return Err(ElbPreflightError::SameGroup(stable.name));
        }
        let stable_targets = self.registered(&stable).await?;
        let candidate_targets = self.registered(&candidate).await?;
        Ok(ElbPreflight {
            route: parsed,
            observed,
            stable,
            candidate,
            stable_targets,
            candidate_targets,
        })
    }

    /// `(registered, healthy)` targets of `group`; refused when none is registered.
    async fn registered(
        &self,
        group: &TargetGroupRef,
    ) -> Result<(usize, usize), ElbPreflightError> {
        let out = self
            .client
            .describe_target_health()
            .target_group_arn(&group.arn)
            .send()
            .await
            .map_err(|e| ElbPreflightError::TargetGroup {
                name: group.name.clone(),
                source: traffic_error(&format!("DescribeTargetHealth {}", group.name), e),
            })?;
        let all = out.target_health_descriptions();
        if all.is_empty() {
            return Err(ElbPreflightError::NoTargets {
                name: group.name.clone(),
            });
        }
        let healthy = all
            .iter()
            .filter(|d| {
                d.target_health()
                    .and_then(|h| h.state())
                    .is_some_and(|s| s.as_str() == "healthy")
            })
            .count();
        Ok((all.len(), healthy))
    }
}
