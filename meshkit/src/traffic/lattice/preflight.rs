//! [`LatticeRouter::preflight`]: read-only checks before a rollout on VPC Lattice.

use aws_sdk_vpclattice::types::TargetStatus;

use super::{LatticeRoute, LatticeRouter, LatticeTargetGroup};
use crate::aws::traffic_error;
use crate::traffic::{Observed, RouteRef, TrafficError, TrafficRouter};

/// What [`LatticeRouter::preflight`] found.
#[derive(Debug, Clone)]
pub struct LatticePreflight {
    /// The route.
    pub route: LatticeRoute,
    /// The route as read: weights (exact) and revision.
    pub observed: Observed,
    /// The stable version's target group.
    pub stable: LatticeTargetGroup,
    /// The new version's target group.
    pub candidate: LatticeTargetGroup,
    /// Targets registered in the stable group, and how many are healthy.
    pub stable_targets: (usize, usize),
    /// Targets registered in the new group, and how many are healthy.
    pub candidate_targets: (usize, usize),
}

/// Why a VPC Lattice route is not ready for a rollout. Nothing was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LatticePreflightError {
    /// The service, listener or rule could not be read, or does not forward.
    #[error("route {route}: {source}")]
    Route {
        /// The route.
        route: String,
        /// Why.
        #[source]
        source: TrafficError,
    },
    /// A target group does not exist or could not be read.
    #[error("target group {name}: {source}")]
    TargetGroup {
        /// The name, id or ARN given.
        name: String,
        /// Why.
        #[source]
        source: TrafficError,
    },
    /// A target group has no registered targets.
    #[error(
        "target group {name} has no registered targets; register the version's tasks (its ECS service's VPC Lattice configuration) before shifting traffic"
    )]
    NoTargets {
        /// The group's name.
        name: String,
    },
    /// Both versions are the same target group.
    #[error("the stable and new versions are the same target group {0}")]
    SameGroup(String),
    /// With traffic confirmation on, a version's target group also takes traffic from
    /// another rule or the listener's default action: its request count would not be
    /// this route's alone.
    #[error(
        "target group {name} also takes traffic from {used_by}: its TotalRequestCount is not this route's alone, so the split cannot be confirmed from it; give the route its own target groups, or confirm with a settle delay instead of metrics"
    )]
    SharedGroup {
        /// The group.
        name: String,
        /// The other rule (its priority) or the listener's default action.
        used_by: String,
    },
    /// The route already forwards to as many target groups as it may, and the new
    /// version's is not among them.
    #[error(
        "route {route} already forwards to {count} target groups, the most VPC Lattice allows, and {name} is not one of them; take a group at weight 0 off the route first"
    )]
    NoRoom {
        /// The route.
        route: String,
        /// The groups on it.
        count: usize,
        /// The new version's group.
        name: String,
    },
}

impl LatticeRouter {
    /// Read-only checks before a rollout from `stable` to `candidate` (target groups by
    /// name, id or ARN) on `route`: the service, listener (and rule) exist and forward,
    /// both groups exist and have registered targets.
    pub async fn preflight(
        &self,
        route: &RouteRef,
        stable: &str,
        candidate: &str,
    ) -> Result<LatticePreflight, LatticePreflightError> {
        let route_err = |source| LatticePreflightError::Route {
            route: route.to_string(),
            source,
        };
        let parsed = LatticeRoute::from_route(route).map_err(route_err)?;
        let observed = self.read(route).await.map_err(route_err)?;
        let mut groups = Vec::with_capacity(2);
        for name in [stable, candidate] {
            let g = self.target_group(name).await.map_err(|source| {
                LatticePreflightError::TargetGroup {
                    name: name.to_owned(),
                    source,
                }
            })?;
            groups.push(g);
        }
        let candidate = groups
            .pop()
            .ok_or_else(|| LatticePreflightError::SameGroup(String::new()))?;
        let stable = groups
            .pop()
            .ok_or_else(|| LatticePreflightError::SameGroup(String::new()))?;
        if stable.id == candidate.id {
            return Err(LatticePreflightError::SameGroup(stable.name));
        }
        let count = observed.weights.len();
        if observed.weights.get(&candidate.name).is_none() && count >= super::MAX_LATTICE_GROUPS {
            return Err(LatticePreflightError::NoRoom {
                route: route.to_string(),
                count,
                name: candidate.name,
            });
        }
        if self.metrics.is_some() {
            self.not_shared(&parsed, &[&stable, &candidate]).await?;
        }
        let mut counts = Vec::with_capacity(2);
        for g in [&stable, &candidate] {
            let (all, healthy) =
                self.targets(g)
                    .await
                    .map_err(|source| LatticePreflightError::TargetGroup {
                        name: g.name.clone(),
                        source,
                    })?;
            if all == 0 {
                return Err(LatticePreflightError::NoTargets {
                    name: g.name.clone(),
                });
            }
            counts.push((all, healthy));
        }
        Ok(LatticePreflight {
            route: parsed,
            observed,
            stable_targets: counts[0],
            candidate_targets: counts[1],
            stable,
            candidate,
        })
    }

    /// Refuses groups another rule of the route's listener, or its default action,
    /// also forwards to (`GetListener`, `ListRules` and a `GetRule` per other rule:
    /// `ListRules` carries no actions).
    async fn not_shared(
        &self,
        route: &LatticeRoute,
        groups: &[&LatticeTargetGroup],
    ) -> Result<(), LatticePreflightError> {
        let fail = |source| LatticePreflightError::Route {
            route: route.to_string(),
            source,
        };
        let mut others: Vec<(String, aws_sdk_vpclattice::types::RuleAction)> = Vec::new();
        if route.rule().is_some() {
            let l = self
                .client
                .get_listener()
                .service_identifier(route.service())
                .listener_identifier(route.listener())
                .send()
                .await
                .map_err(|e| fail(traffic_error(&format!("GetListener {route}"), e)))?;
            if let Some(a) = l.default_action() {
                others.push(("the listener's default action".into(), a.clone()));
            }
        }
        let mut token = None;
        loop {
            let page = self
                .client
                .list_rules()
                .service_identifier(route.service())
                .listener_identifier(route.listener())
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| fail(traffic_error(&format!("ListRules {route}"), e)))?;
            for r in page.items() {
                let Some(id) = r.id() else { continue };
                if Some(id) == route.rule() || r.is_default() == Some(true) {
                    continue;
                }
                let rule = self
                    .client
                    .get_rule()
                    .service_identifier(route.service())
                    .listener_identifier(route.listener())
                    .rule_identifier(id)
                    .send()
                    .await
                    .map_err(|e| fail(traffic_error(&format!("GetRule {id}"), e)))?;
                if let Some(a) = rule.action() {
                    let used_by = format!(
                        "the rule at priority {}",
                        rule.priority().unwrap_or_default()
                    );
                    others.push((used_by, a.clone()));
                }
            }
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        for (used_by, action) in others {
            let Ok(forwarded) = super::action::forward_groups("", &action) else {
                continue;
            };
            for (ident, w) in forwarded {
                let id = ident.rsplit('/').next().unwrap_or(&ident);
                if let Some(g) = groups.iter().find(|g| g.id == id).filter(|_| w > 0) {
                    return Err(LatticePreflightError::SharedGroup {
                        name: g.name.clone(),
                        used_by,
                    });
                }
            }
        }
        Ok(())
    }

    /// `(registered, healthy)` targets of `group` (`ListTargets`, every page);
    /// `UNAVAILABLE` targets (health checks off for the group) count as healthy.
    pub async fn targets(
        &self,
        group: &LatticeTargetGroup,
    ) -> Result<(usize, usize), TrafficError> {
        let (mut all, mut healthy) = (0, 0);
        let mut token = None;
        loop {
            let page = self
                .client
                .list_targets()
                .target_group_identifier(&group.id)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| traffic_error(&format!("ListTargets {}", group.name), e))?;
            all += page.items().len();
            healthy += page
                .items()
                .iter()
                .filter(|t| {
                    // UNAVAILABLE: no health checks for the group; traffic goes there.
                    matches!(
                        t.status(),
                        Some(TargetStatus::Healthy | TargetStatus::Unavailable)
                    )
                })
                .count();
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                return Ok((all, healthy));
            }
        }
    }
}
