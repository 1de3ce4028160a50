//! [`LatticeRouter`]: weighted target groups on a VPC Lattice service listener (its
//! default action) or listener rule, through `aws-sdk-vpclattice`.
//!
//! - **Routes** are [`LatticeRoute`]s: `svc-…/listener-…[/rule-…]` or the ARN.
//! - **Targets** are target groups, named in [`Weights`] by name; ids and names are
//!   resolved once (`GetTargetGroup`, `ListTargetGroups`) and remembered.
//! - **A write changes only the forward action's target-group weights** (0-999, 1 to
//!   10 groups, checked here); the rule's match, priority and name stay as read.
//!   Whole percents are written as percentages, others in tenths: 0.1% steps.
//! - **Calls per step**: one read (`GetRule` or `GetListener`) and one write
//!   (`UpdateRule` or `UpdateListener`, whose answer carries the action).
//! - **Revision**: Lattice keeps no version; the revision is a digest of the rule's
//!   name, priority, match and action (a listener's protocol, port and default action),
//!   fields the read and the write's answer both carry.
//! - **Is the split real?** With [`LatticeRouter::confirm_with`], each step waits until
//!   `AWS/VpcLattice` `TotalRequestCount` per target group (dimension `TargetGroup`,
//!   the group's id), newest minutes first, matches the split written and can be told
//!   from the split before it (see [`crate::traffic::judge`]). Without metrics a settle
//!   delay of 90 s follows each write (what ECS waits after its own Lattice changes).

mod action;
mod preflight;
mod route;

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_vpclattice::Client;
use aws_sdk_vpclattice::types::RuleAction;

pub use action::{MAX_LATTICE_GROUPS, MAX_LATTICE_WEIGHT};
pub use preflight::{LatticePreflight, LatticePreflightError};
pub use route::LatticeRoute;

use self::action::{forward_groups, forward_to, lattice_weights, listener_revision, rule_revision};
use crate::aws::traffic_error;
use crate::traffic::measure::Writes;
use crate::traffic::{
    Convergence, Observed, Percent, RouteRef, TrafficError, TrafficMetrics, TrafficRouter, Weights,
    WriteRequest, judge_newest,
};

/// The settle delay after a write without metrics (ECS waits as long on Lattice).
pub const LATTICE_SETTLE_DELAY: Duration = Duration::from_secs(90);

/// A Lattice target group, as resolved from its name, id or ARN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LatticeTargetGroup {
    /// Its name, the name meshkit uses for it in [`Weights`].
    pub name: String,
    /// Its id (`tg-…`).
    pub id: String,
    /// Its ARN.
    pub arn: String,
}

/// A [`TrafficRouter`] over VPC Lattice listeners and listener rules. See the
/// [module docs](self).
///
/// ```no_run
/// # async fn example(sdk: meshkit::sdk::SdkConfig) -> Result<(), Box<dyn std::error::Error>> {
/// use meshkit::traffic::lattice::LatticeRouter;
/// use meshkit::traffic::{RouteRef, TrafficMetrics, TrafficRouter};
///
/// let router = LatticeRouter::new(meshkit::sdk::vpclattice::Client::new(&sdk))
///     .confirm_with(TrafficMetrics::new(meshkit::sdk::cloudwatch::Client::new(&sdk)));
/// let rule = RouteRef::new("svc-0123456789abcdefg/listener-0123456789abcdefg/rule-0123456789abcdefg")?;
/// let now = router.read(&rule).await?;
/// println!("{} (revision {:?})", now.weights, now.revision);
/// # Ok(()) }
/// ```
pub struct LatticeRouter {
    client: Client,
    metrics: Option<TrafficMetrics>,
    settle_delay: Option<Duration>,
    /// Target groups by id, and ids by name.
    groups: Mutex<(HashMap<String, LatticeTargetGroup>, HashMap<String, String>)>,
    /// The split of each route as last read or written: the split before a write.
    seen: Mutex<HashMap<String, Weights>>,
    writes: Writes,
}

impl fmt::Debug for LatticeRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatticeRouter")
            .field("metrics", &self.metrics.is_some())
            .field("settle_delay", &self.settle_delay)
            .finish_non_exhaustive()
    }
}

/// An id from an id or an ARN (`…/tg-…`).
fn id_of(ident: &str) -> &str {
    ident.rsplit('/').next().unwrap_or(ident)
}

impl LatticeRouter {
    /// A router using `client`, without traffic metrics (a 90 s settle delay applies).
    pub fn new(client: Client) -> Self {
        Self {
            client,
            metrics: None,
            settle_delay: None,
            groups: Mutex::new((HashMap::new(), HashMap::new())),
            seen: Mutex::new(HashMap::new()),
            writes: Writes::default(),
        }
    }

    /// Confirms every write from `TotalRequestCount` per target group (module docs).
    pub fn confirm_with(mut self, metrics: TrafficMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The wait after each write without metrics. Default: 90 s. Zero trusts the API's
    /// answer (only for tests and emulators).
    pub fn settle_delay(mut self, delay: Duration) -> Self {
        self.settle_delay = Some(delay);
        self
    }

    /// The SDK client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn remembered(&self, id: &str) -> Option<LatticeTargetGroup> {
        self.groups.lock().ok()?.0.get(id).cloned()
    }

    fn remember(&self, g: LatticeTargetGroup) {
        if let Ok(mut m) = self.groups.lock() {
            m.1.insert(g.name.clone(), g.id.clone());
            m.0.insert(g.id.clone(), g);
        }
    }

    /// Resolves a target group by name, id (`tg-…`) or ARN, once (`GetTargetGroup` for
    /// an id or ARN, `ListTargetGroups` for a name); then remembered.
    pub async fn target_group(&self, ident: &str) -> Result<LatticeTargetGroup, TrafficError> {
        let by_name = self
            .groups
            .lock()
            .ok()
            .and_then(|m| m.1.get(ident).cloned());
        if let Some(g) = by_name.as_deref().and_then(|id| self.remembered(id)) {
            return Ok(g);
        }
        if ident.starts_with("tg-") || ident.starts_with("arn:") {
            if let Some(g) = self.remembered(id_of(ident)) {
                return Ok(g);
            }
            let out = self
                .client
                .get_target_group()
                .target_group_identifier(ident)
                .send()
                .await
                .map_err(|e| traffic_error(&format!("GetTargetGroup {ident}"), e))?;
            let g = LatticeTargetGroup {
                name: out.name().unwrap_or(ident).to_owned(),
                id: out.id().unwrap_or(id_of(ident)).to_owned(),
                arn: out.arn().unwrap_or_default().to_owned(),
            };
            self.remember(g.clone());
            return Ok(g);
        }
        let mut token = None;
        loop {
            let page = self
                .client
                .list_target_groups()
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| traffic_error("ListTargetGroups", e))?;
            for s in page.items() {
                if let (Some(name), Some(id)) = (s.name(), s.id()) {
                    self.remember(LatticeTargetGroup {
                        name: name.to_owned(),
                        id: id.to_owned(),
                        arn: s.arn().unwrap_or_default().to_owned(),
                    });
                }
            }
            let found = self
                .groups
                .lock()
                .ok()
                .and_then(|m| m.1.get(ident).cloned());
            if let Some(g) = found.as_deref().and_then(|id| self.remembered(id)) {
                return Ok(g);
            }
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                return Err(TrafficError::not_found(format!("target group {ident}")));
            }
        }
    }

    /// The action and revision of the route.
    async fn describe(&self, route: &LatticeRoute) -> Result<(RuleAction, String), TrafficError> {
        let missing = || TrafficError::Unsupported {
            message: format!("{route} has no action"),
        };
        match route.rule() {
            Some(rule) => {
                let out = self
                    .client
                    .get_rule()
                    .service_identifier(route.service())
                    .listener_identifier(route.listener())
                    .rule_identifier(rule)
                    .send()
                    .await
                    .map_err(|e| traffic_error(&format!("GetRule {route}"), e))?;
                let revision =
                    rule_revision(out.name(), out.priority(), out.r#match(), out.action());
                Ok((out.action().cloned().ok_or_else(missing)?, revision))
            }
            None => {
                let out = self
                    .client
                    .get_listener()
                    .service_identifier(route.service())
                    .listener_identifier(route.listener())
                    .send()
                    .await
                    .map_err(|e| traffic_error(&format!("GetListener {route}"), e))?;
                let revision = listener_revision(out.protocol(), out.port(), out.default_action());
                Ok((out.default_action().cloned().ok_or_else(missing)?, revision))
            }
        }
    }

    /// The split an action holds, by target-group name.
    async fn weights_of(
        &self,
        route: &LatticeRoute,
        action: &RuleAction,
    ) -> Result<Weights, TrafficError> {
        let groups = forward_groups(&route.to_string(), action)?;
        let mut named = Vec::with_capacity(groups.len());
        for (ident, w) in groups {
            named.push((self.target_group(&ident).await?.name, w));
        }
        Weights::relative(named).map_err(|e| TrafficError::Unsupported {
            message: format!("{route}: the forward action is not a valid split: {e}"),
        })
    }

    fn saw(&self, route: &LatticeRoute, weights: &Weights) {
        if let Ok(mut s) = self.seen.lock() {
            s.insert(route.to_string(), weights.clone());
        }
    }

    fn delay(&self) -> Duration {
        self.settle_delay.unwrap_or(LATTICE_SETTLE_DELAY)
    }
}

#[async_trait]
impl TrafficRouter for LatticeRouter {
    async fn read(&self, route: &RouteRef) -> Result<Observed, TrafficError> {
        let route = LatticeRoute::from_route(route)?;
        let (action, revision) = self.describe(&route).await?;
        let weights = self.weights_of(&route, &action).await?;
        self.saw(&route, &weights);
        Ok(Observed {
            weights,
            revision: Some(revision),
        })
    }

    async fn write(
        &self,
        route: &RouteRef,
        request: &WriteRequest,
    ) -> Result<Option<Observed>, TrafficError> {
        let route = LatticeRoute::from_route(route)?;
        let weights = lattice_weights(&request.weights)?;
        let mut groups = Vec::with_capacity(weights.len());
        for (name, w) in &weights {
            groups.push((self.target_group(name).await?.id, *w));
        }
        let action = forward_to(&groups)?;
        // The split in force before, as last read (a rollout reads right before it
        // writes), for judging the step.
        let before = self
            .seen
            .lock()
            .ok()
            .and_then(|s| s.get(&route.to_string()).cloned());
        self.writes.record(&route.to_string(), before);
        let (action, revision) = match route.rule() {
            Some(rule) => {
                let out = self
                    .client
                    .update_rule()
                    .service_identifier(route.service())
                    .listener_identifier(route.listener())
                    .rule_identifier(rule)
                    .action(action)
                    .send()
                    .await
                    .map_err(|e| traffic_error(&format!("UpdateRule {route}"), e))?;
                let revision =
                    rule_revision(out.name(), out.priority(), out.r#match(), out.action());
                match out.action() {
                    Some(a) => (a.clone(), revision),
                    None => return Ok(None),
                }
            }
            None => {
                let out = self
                    .client
                    .update_listener()
                    .service_identifier(route.service())
                    .listener_identifier(route.listener())
                    .default_action(action)
                    .send()
                    .await
                    .map_err(|e| traffic_error(&format!("UpdateListener {route}"), e))?;
                let revision = listener_revision(out.protocol(), out.port(), out.default_action());
                match out.default_action() {
                    Some(a) => (a.clone(), revision),
                    None => return Ok(None),
                }
            }
        };
        tracing::debug!(%route, weights = %request.weights, "lattice weights written");
        let weights = self.weights_of(&route, &action).await?;
        self.saw(&route, &weights);
        Ok(Some(Observed {
            weights,
            revision: Some(revision),
        }))
    }

    async fn converged(
        &self,
        route: &RouteRef,
        written: &Weights,
    ) -> Result<Convergence, TrafficError> {
        let route = LatticeRoute::from_route(route)?;
        let Some(last) = self.writes.last(&route.to_string()) else {
            return Ok(Convergence::Unknown);
        };
        match &self.metrics {
            Some(metrics) => {
                let names = last.names(written);
                let mut series = Vec::with_capacity(names.len());
                for n in names {
                    let g = self.target_group(n).await?;
                    series.push((n.to_owned(), vec![("TargetGroup", g.id)]));
                }
                let minutes = metrics
                    .minutes(
                        "AWS/VpcLattice",
                        "TotalRequestCount",
                        &series,
                        last.wall,
                        SystemTime::now(),
                    )
                    .await?;
                Ok(judge_newest(
                    written,
                    last.before.as_ref(),
                    &minutes,
                    &metrics.judge,
                ))
            }
            None => Ok(last.after_delay(self.delay(), "VPC Lattice")),
        }
    }

    fn settle_time(&self) -> Duration {
        match &self.metrics {
            Some(m) => m.wait,
            None => self.delay(),
        }
    }

    fn resolution(&self) -> Percent {
        Percent::TENTH
    }
}
