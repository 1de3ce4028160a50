//! [`ElbRouter`]: weighted target groups on an Application or Network Load Balancer
//! listener (its default action) or listener rule, through
//! `aws-sdk-elasticloadbalancingv2`.
//!
//! - **Routes** are listener or listener-rule ARNs ([`ElbRoute`]).
//! - **Targets** are target groups, named in [`Weights`] by target-group name
//!   ([`ElbRouter::target_group`] turns an ARN into its name). Names and ARNs are
//!   resolved once and remembered.
//! - **A write changes only the forward action's target-group weights**: the rule's
//!   conditions, priority and transforms, any authentication action before the
//!   forward (an OIDC action is sent back with `UseExistingClientSecret`, since the
//!   API never returns the secret), the action order and the target-group stickiness
//!   stay as they were. At most 5 target groups (the load balancer's limit, checked
//!   here because some emulators do not). Weights are written as percentages when
//!   whole (`90:10`), in tenths otherwise (`995:5`): the router holds 0.1% steps
//!   ([`TrafficRouter::resolution`]). Groups already on the route keep their place.
//! - **Calls per step**: one read (`DescribeRules` or `DescribeListeners`) and one write
//!   (`ModifyRule` or `ModifyListener`, whose answer carries the route, so no
//!   read-back). Resolving a target group's name costs one `DescribeTargetGroups` the
//!   first time it is seen.
//! - **Revision**: the load balancer keeps no version, so the revision is a digest of
//!   everything the route routes by ([`crate::traffic::revision_digest`]): priority,
//!   conditions, transforms and actions of a rule; port, protocol, TLS policy and
//!   default actions of a listener. Another writer changing only the stickiness is
//!   seen at meshkit's next read (before each write and once per check round). The API
//!   has no conditional write: a change that lands between meshkit's read and its
//!   `ModifyRule`, milliseconds apart, is overwritten.
//! - **Is the split real?** Load balancers apply changes eventually. With
//!   [`ElbRouter::confirm_with`] (ALB only: an NLB publishes no flow count per target
//!   group) each forward step is confirmed from CloudWatch `RequestCount` per target
//!   group: the newest whole minutes after the write (older ones only while there are
//!   too few requests), judged with [`crate::traffic::judge`] against the written split
//!   and the split before it. Too few requests to tell the two apart is "not yet
//!   known", never "applied" (a 0% → 0.5% step needs about 12,700 requests). The
//!   bake starts once the split is confirmed; the checks run meanwhile; unconfirmed
//!   after [`TrafficMetrics::wait`] (10 minutes) the step fails and rolls back. The
//!   groups must take only this route's traffic ([`ElbRouter::preflight`] refuses one
//!   that another rule of the listener, or its default action, also forwards to).
//!   Without metrics, a settle delay follows each write: 60 s on an ALB, 600 s on an
//!   NLB (ECS waits as long after its own NLB changes); set it with
//!   [`ElbRouter::settle_delay`] (metrics replace it on an ALB).
//! - **A new version's target group** must be on the route (at weight 0) before ECS
//!   can register its tasks in it and the load balancer checks their health; a rollout
//!   puts it there before its provision stage.

mod action;
mod preflight;
mod route;

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::Action;

pub use crate::traffic::{METRICS_SETTLE_TIME, TrafficMetrics};
pub use action::{MAX_ELB_WEIGHT, MAX_TARGET_GROUPS};
pub use preflight::{ElbPreflight, ElbPreflightError};
pub use route::{ElbRoute, ElbRouteKind, LoadBalancerType, target_group_dimension};

use self::action::{Forward, elb_weights, find_forward, with_groups};
use crate::aws::traffic_error;
use crate::traffic::measure::Writes;
use crate::traffic::{
    Convergence, Observed, Percent, RouteRef, TrafficError, TrafficRouter, Weights, WriteRequest,
    judge_newest,
};

/// The settle delay after a write on an Application Load Balancer without metrics.
pub const ALB_SETTLE_DELAY: Duration = Duration::from_secs(60);
/// The settle delay after a write on a Network Load Balancer without metrics.
pub const NLB_SETTLE_DELAY: Duration = Duration::from_secs(600);

/// A target group, as resolved from its name or ARN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetGroupRef {
    /// The target group's name, the name meshkit uses for it in [`Weights`].
    pub name: String,
    /// Its ARN.
    pub arn: String,
}

/// The route as last read or written: its actions and where the forward action is.
#[derive(Debug, Clone)]
struct Known {
    actions: Vec<Action>,
    forward: Forward,
}

/// A [`TrafficRouter`] over ALB and NLB listeners and listener rules. See the
/// [module docs](self).
///
/// ```no_run
/// # async fn example(sdk: meshkit::sdk::SdkConfig) -> Result<(), Box<dyn std::error::Error>> {
/// use meshkit::traffic::elb::{ElbRouter, TrafficMetrics};
/// use meshkit::traffic::{RouteRef, TrafficRouter};
///
/// let router = ElbRouter::new(meshkit::sdk::elbv2::Client::new(&sdk))
///     .confirm_with(TrafficMetrics::new(meshkit::sdk::cloudwatch::Client::new(&sdk)));
/// let rule = RouteRef::new("arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/web/50dc6c495c0c9188/f2f7dc8efc522ab2/9683b2d02a6cabee")?;
/// let now = router.read(&rule).await?;
/// println!("{} (revision {:?})", now.weights, now.revision);
/// # Ok(()) }
/// ```
pub struct ElbRouter {
    client: Client,
    metrics: Option<TrafficMetrics>,
    settle_delay: Option<Duration>,
    /// Target group ARN → name, and name → ARN.
    names: Mutex<(HashMap<String, String>, HashMap<String, String>)>,
    known: Mutex<HashMap<String, Known>>,
    /// When this router last wrote each route: for the settle delay and the metrics window.
    writes: Writes,
    /// Whether this router wrote an NLB route (its settle time is an NLB's).
    network: AtomicBool,
}

impl fmt::Debug for ElbRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElbRouter")
            .field("metrics", &self.metrics.is_some())
            .field("settle_delay", &self.settle_delay)
            .finish_non_exhaustive()
    }
}

impl ElbRouter {
    /// A router using `client`, without data-plane metrics (a settle delay applies).
    pub fn new(client: Client) -> Self {
        Self {
            client,
            metrics: None,
            settle_delay: None,
            names: Mutex::new((HashMap::new(), HashMap::new())),
            known: Mutex::new(HashMap::new()),
            writes: Writes::default(),
            network: AtomicBool::new(false),
        }
    }

    /// Confirms every write from CloudWatch request counts (see the module docs).
    pub fn confirm_with(mut self, metrics: TrafficMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The wait after each write when no metrics confirm it. Default: 60 s on an ALB,
    /// 600 s on an NLB. Zero trusts the API's answer (only for tests and emulators).
    pub fn settle_delay(mut self, delay: Duration) -> Self {
        self.settle_delay = Some(delay);
        self
    }

    /// The SDK client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Resolves a target group by name or ARN (`DescribeTargetGroups`, once; then
    /// remembered).
    pub async fn target_group(&self, name_or_arn: &str) -> Result<TargetGroupRef, TrafficError> {
        if name_or_arn.starts_with("arn:") {
            let names = self.names_of(&[name_or_arn.to_owned()]).await?;
            let name = names.into_iter().next().unwrap_or_default();
            return Ok(TargetGroupRef {
                name,
                arn: name_or_arn.to_owned(),
            });
        }
        let arns = self.arns_of(&[name_or_arn]).await?;
        Ok(TargetGroupRef {
            name: name_or_arn.to_owned(),
            arn: arns.into_iter().next().unwrap_or_default(),
        })
    }

    fn remembered_name(&self, arn: &str) -> Option<String> {
        self.names.lock().ok()?.0.get(arn).cloned()
    }

    fn remembered_arn(&self, name: &str) -> Option<String> {
        self.names.lock().ok()?.1.get(name).cloned()
    }

    fn remember_group(&self, name: &str, arn: &str) {
        if let Ok(mut n) = self.names.lock() {
            n.0.insert(arn.to_owned(), name.to_owned());
            n.1.insert(name.to_owned(), arn.to_owned());
        }
    }

    /// Names of target groups by ARN, in order; one `DescribeTargetGroups` for the
    /// ones not seen before.
    async fn names_of(&self, arns: &[String]) -> Result<Vec<String>, TrafficError> {
        let unknown: Vec<String> = arns
            .iter()
            .filter(|a| self.remembered_name(a).is_none())
            .cloned()
            .collect();
        if !unknown.is_empty() {
            self.describe_groups(None, Some(unknown)).await?;
        }
        arns.iter()
            .map(|a| {
                self.remembered_name(a)
                    .ok_or_else(|| TrafficError::not_found(format!("target group {a}")))
            })
            .collect()
    }

    /// ARNs of target groups by name, in order; one `DescribeTargetGroups` for the
    /// ones not seen before.
    async fn arns_of(&self, names: &[&str]) -> Result<Vec<String>, TrafficError> {
        if let Some(arn) = names.iter().find(|n| n.starts_with("arn:")) {
            return Err(TrafficError::BadRequest {
                message: format!(
                    "target {arn} is an ARN: name target groups by name in weights (ElbRouter::target_group gives the name of an ARN)"
                ),
                source: None,
            });
        }
        let unknown: Vec<String> = names
            .iter()
            .filter(|n| self.remembered_arn(n).is_none())
            .map(|n| (*n).to_owned())
            .collect();
        if !unknown.is_empty() {
            self.describe_groups(Some(unknown), None).await?;
        }
        names
            .iter()
            .map(|n| {
                self.remembered_arn(n)
                    .ok_or_else(|| TrafficError::not_found(format!("target group {n}")))
            })
            .collect()
    }

    async fn describe_groups(
        &self,
        names: Option<Vec<String>>,
        arns: Option<Vec<String>>,
    ) -> Result<(), TrafficError> {
        let what = format!(
            "DescribeTargetGroups {}",
            names
                .as_ref()
                .or(arns.as_ref())
                .map(|v| v.join(","))
                .unwrap_or_default()
        );
        let out = self
            .client
            .describe_target_groups()
            .set_names(names)
            .set_target_group_arns(arns)
            .send()
            .await
            .map_err(|e| traffic_error(&what, e))?;
        for g in out.target_groups() {
            if let (Some(name), Some(arn)) = (g.target_group_name(), g.target_group_arn()) {
                self.remember_group(name, arn);
            }
        }
        Ok(())
    }

    /// Reads the route's actions and revision.
    async fn describe(&self, route: &ElbRoute) -> Result<(Vec<Action>, String), TrafficError> {
        match route.kind() {
            ElbRouteKind::Rule => {
                let out = self
                    .client
                    .describe_rules()
                    .rule_arns(route.arn())
                    .send()
                    .await
                    .map_err(|e| traffic_error(&format!("DescribeRules {route}"), e))?;
                let rule = out
                    .rules()
                    .iter()
                    .find(|r| r.rule_arn() == Some(route.arn()))
                    .ok_or_else(|| TrafficError::not_found(format!("rule {route}")))?;
                Ok((rule.actions().to_vec(), action::rule_revision(rule)))
            }
            ElbRouteKind::Listener => {
                let out = self
                    .client
                    .describe_listeners()
                    .listener_arns(route.arn())
                    .send()
                    .await
                    .map_err(|e| traffic_error(&format!("DescribeListeners {route}"), e))?;
                let listener = out
                    .listeners()
                    .iter()
                    .find(|l| l.listener_arn() == Some(route.arn()))
                    .ok_or_else(|| TrafficError::not_found(format!("listener {route}")))?;
                Ok((
                    listener.default_actions().to_vec(),
                    action::listener_revision(listener),
                ))
            }
        }
    }

    /// Turns actions read or written into what meshkit observes, and remembers them.
    async fn observe(
        &self,
        route: &ElbRoute,
        actions: Vec<Action>,
        revision: String,
    ) -> Result<Observed, TrafficError> {
        let forward = find_forward(
            &format!("{:?} {route}", route.kind()).to_lowercase(),
            &actions,
        )?;
        let weights = self.weights_of(&forward).await.map_err(|e| match e {
            TrafficError::Unsupported { message } => TrafficError::Unsupported {
                message: format!("{route}: the forward action is not a valid split: {message}"),
            },
            other => other,
        })?;
        if let Ok(mut known) = self.known.lock() {
            known.insert(route.arn().to_owned(), Known { actions, forward });
        }
        Ok(Observed {
            weights,
            revision: Some(revision),
        })
    }

    /// The split a forward action holds, by target-group name.
    async fn weights_of(&self, forward: &Forward) -> Result<Weights, TrafficError> {
        let arns: Vec<String> = forward.groups.iter().map(|(a, _)| a.clone()).collect();
        let names = self.names_of(&arns).await?;
        Weights::relative(
            names
                .into_iter()
                .zip(forward.groups.iter().map(|(_, w)| *w)),
        )
        .map_err(|e| TrafficError::Unsupported {
            message: e.to_string(),
        })
    }

    fn remembered(&self, route: &ElbRoute) -> Option<Known> {
        self.known.lock().ok()?.get(route.arn()).cloned()
    }

    fn delay_for(&self, route: &ElbRoute) -> Duration {
        self.settle_delay
            .unwrap_or(match route.load_balancer_type() {
                LoadBalancerType::Application => ALB_SETTLE_DELAY,
                LoadBalancerType::Network => NLB_SETTLE_DELAY,
            })
    }
}

#[async_trait]
impl TrafficRouter for ElbRouter {
    async fn read(&self, route: &RouteRef) -> Result<Observed, TrafficError> {
        let route = ElbRoute::from_route(route)?;
        let (actions, revision) = self.describe(&route).await?;
        self.observe(&route, actions, revision).await
    }

    async fn write(
        &self,
        route: &RouteRef,
        request: &WriteRequest,
    ) -> Result<Option<Observed>, TrafficError> {
        let route = ElbRoute::from_route(route)?;
        let weights = elb_weights(&request.weights)?;
        let names: Vec<&str> = weights.iter().map(|(n, _)| *n).collect();
        let arns = self.arns_of(&names).await?;
        let mut groups: Vec<(String, u32)> = arns
            .into_iter()
            .zip(weights.iter().map(|(_, w)| *w))
            .collect();
        let known = match self.remembered(&route) {
            Some(k) => k,
            None => {
                let (actions, revision) = self.describe(&route).await?;
                self.observe(&route, actions, revision).await?;
                self.remembered(&route)
                    .ok_or_else(|| TrafficError::transport("route state lost"))?
            }
        };
        // Groups already on the route keep their place; new ones come after them.
        let place = |arn: &str| {
            known
                .forward
                .groups
                .iter()
                .position(|(a, _)| a == arn)
                .unwrap_or(usize::MAX)
        };
        groups.sort_by_key(|(arn, _)| place(arn));
        let actions = with_groups(&known.actions, &known.forward, &groups);
        let before = self.weights_of(&known.forward).await.ok();
        self.writes.record(route.arn(), before);
        if route.load_balancer_type() == LoadBalancerType::Network {
            self.network.store(true, Ordering::Relaxed);
        }
        let (actions, revision) = match route.kind() {
            ElbRouteKind::Rule => {
                let out = self
                    .client
                    .modify_rule()
                    .rule_arn(route.arn())
                    .set_actions(Some(actions))
                    .send()
                    .await
                    .map_err(|e| traffic_error(&format!("ModifyRule {route}"), e))?;
                match out
                    .rules()
                    .iter()
                    .find(|r| r.rule_arn() == Some(route.arn()))
                {
                    Some(rule) => (rule.actions().to_vec(), action::rule_revision(rule)),
                    None => return Ok(None),
                }
            }
            ElbRouteKind::Listener => {
                let out = self
                    .client
                    .modify_listener()
                    .listener_arn(route.arn())
                    .set_default_actions(Some(actions))
                    .send()
                    .await
                    .map_err(|e| traffic_error(&format!("ModifyListener {route}"), e))?;
                match out
                    .listeners()
                    .iter()
                    .find(|l| l.listener_arn() == Some(route.arn()))
                {
                    Some(l) => (l.default_actions().to_vec(), action::listener_revision(l)),
                    None => return Ok(None),
                }
            }
        };
        tracing::debug!(%route, weights = %request.weights, "load balancer weights written");
        self.observe(&route, actions, revision).await.map(Some)
    }

    async fn converged(
        &self,
        route: &RouteRef,
        written: &Weights,
    ) -> Result<Convergence, TrafficError> {
        let route = ElbRoute::from_route(route)?;
        let Some(last) = self.writes.last(route.arn()) else {
            // Not written by this router: nothing to wait for.
            return Ok(Convergence::Unknown);
        };
        match &self.metrics {
            // An NLB publishes no flow count per target group: the settle delay applies.
            Some(metrics) if route.load_balancer_type() == LoadBalancerType::Application => {
                let names = last.names(written);
                let arns = self.arns_of(&names).await?;
                // The dimensions the load balancer publishes, in its order.
                let series: Vec<crate::traffic::measure::Series> = names
                    .iter()
                    .zip(&arns)
                    .map(|(n, arn)| {
                        let dims = vec![
                            ("TargetGroup", target_group_dimension(arn).to_owned()),
                            ("LoadBalancer", route.load_balancer_dimension().to_owned()),
                        ];
                        ((*n).to_owned(), dims)
                    })
                    .collect();
                let minutes = metrics
                    .minutes(
                        route.load_balancer_type().namespace(),
                        "RequestCount",
                        &series,
                        last.wall,
                        SystemTime::now(),
                    )
                    .await?;
                let said = judge_newest(written, last.before.as_ref(), &minutes, &metrics.judge);
                Ok(said)
            }
            _ => Ok(last.after_delay(self.delay_for(&route), "the load balancer")),
        }
    }

    /// The wait the routes this router wrote need: the metrics' wait on an ALB with
    /// metrics, else the settle delay (an NLB's when one was written).
    fn settle_time(&self) -> Duration {
        let network = self.network.load(Ordering::Relaxed);
        let delay = self.settle_delay.unwrap_or(if network {
            NLB_SETTLE_DELAY
        } else {
            ALB_SETTLE_DELAY
        });
        match &self.metrics {
            // An NLB publishes no per-group counts: its writes wait the delay.
            Some(m) if network => m.wait.max(delay),
            Some(m) => m.wait,
            None => delay,
        }
    }

    fn resolution(&self) -> Percent {
        Percent::TENTH
    }
}
