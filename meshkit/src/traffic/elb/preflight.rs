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
    /// The route already forwards to as many target groups as it may, and the new
    /// version's is not among them.
    #[error(
        "route {route} already forwards to {count} target groups, the most a load balancer allows, and {name} is not one of them; take a group at weight 0 off the route first"
    )]
    NoRoom {
        /// The route.
        route: String,
        /// The groups on it.
        count: usize,
        /// The new version's group.
        name: String,
    },
    /// With traffic confirmation on, a version's target group also takes traffic from
    /// another rule (or the listener's default action): its request count would not
    /// be this route's alone, and the split could not be judged.
    #[error(
        "target group {name} also takes traffic from {used_by}: its RequestCount is not this route's alone, so the split cannot be confirmed from it; give the route its own target groups, or confirm with a settle delay instead of metrics"
    )]
    SharedGroup {
        /// The group.
        name: String,
        /// The other rule (its priority) or the listener's default action.
        used_by: String,
    },
}

impl ElbRouter {
    /// Read-only checks before a rollout from `stable` to `candidate` (target groups
    /// by name or ARN) on `route`: the route exists and only forwards (optionally
    /// after authentication), both target groups exist and have registered targets.
    /// Costs one read of the route, one `DescribeTargetGroups` per group not resolved
    /// yet and one `DescribeTargetHealth` per group. With traffic confirmation on
    /// ([`ElbRouter::confirm_with`]), one more `DescribeRules` of the listener: a group
    /// another rule of the listener (or its default action) also forwards to is
    /// refused, since its request count would not be the route's alone.
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
        let count = observed.weights.len();
        if observed.weights.get(&candidate.name).is_none() && count >= super::MAX_TARGET_GROUPS {
            return Err(ElbPreflightError::NoRoom {
                route: route.to_string(),
                count,
                name: candidate.name,
            });
        }
        if self.metrics.is_some() {
            self.not_shared(&parsed, &[&stable, &candidate]).await?;
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

    /// Refuses groups that another rule of the route's listener (or its default
    /// action) also forwards to (`DescribeRules` of the listener, one call).
    async fn not_shared(
        &self,
        route: &ElbRoute,
        groups: &[&TargetGroupRef],
    ) -> Result<(), ElbPreflightError> {
        let listener = route.listener_arn();
        let out = self
            .client
            .describe_rules()
            .listener_arn(&listener)
            .send()
            .await
            .map_err(|e| ElbPreflightError::Route {
                route: route.to_string(),
                source: traffic_error(&format!("DescribeRules {listener}"), e),
            })?;
        for rule in out.rules() {
            let ours = match route.kind() {
                super::ElbRouteKind::Rule => rule.rule_arn() == Some(route.arn()),
                super::ElbRouteKind::Listener => rule.is_default() == Some(true),
            };
            if ours {
                continue;
            }
            let used_by = if rule.is_default() == Some(true) {
                "the listener's default action".to_owned()
            } else {
                format!("the rule at priority {}", rule.priority().unwrap_or("?"))
            };
            for action in rule.actions() {
                let mut arns: Vec<&str> = action.target_group_arn().into_iter().collect();
                if let Some(f) = action.forward_config() {
                    arns.extend(f.target_groups().iter().filter_map(|t| {
                        t.target_group_arn().filter(|_| t.weight().unwrap_or(1) > 0)
                    }));
                }
                if let Some(g) = groups.iter().find(|g| arns.contains(&g.arn.as_str())) {
                    return Err(ElbPreflightError::SharedGroup {
                        name: g.name.clone(),
                        used_by,
                    });
                }
            }
        }
        Ok(())
    }

    /// `(registered, healthy)` targets of `group` (`DescribeTargetHealth`).
    pub async fn targets(&self, group: &TargetGroupRef) -> Result<(usize, usize), TrafficError> {
        let out = self
            .client
            .describe_target_health()
            .target_group_arn(&group.arn)
            .send()
            .await
            .map_err(|e| traffic_error(&format!("DescribeTargetHealth {}", group.name), e))?;
        let all = out.target_health_descriptions();
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

    /// [`ElbRouter::targets`]; refused when none is registered.
    async fn registered(
        &self,
        group: &TargetGroupRef,
    ) -> Result<(usize, usize), ElbPreflightError> {
        let (all, healthy) =
            self.targets(group)
                .await
                .map_err(|source| ElbPreflightError::TargetGroup {
                    name: group.name.clone(),
                    source,
                })?;
        if all == 0 {
            return Err(ElbPreflightError::NoTargets {
                name: group.name.clone(),
            });
        }
        Ok((all, healthy))
    }
}
