//! ALB and NLB routes for the commands: the router the spec describes, its versions'
//! target groups resolved to names (a spec may give names or ARNs), and the ARNs the
//! load balancer checks need.

use std::time::Duration;

use meshkit::sdk::SdkConfig;
use meshkit::traffic::elb::{ElbRouter, TrafficMetrics};
use meshkit::traffic::{Judge, RouteRef};

use crate::build::{self, Groups};
use crate::spec::{CheckKind, Spec};

/// A load balancer route, ready to use.
pub(crate) struct ElbRoute {
    pub(crate) router: ElbRouter,
    pub(crate) route: RouteRef,
    /// The spec with `stable` and `new` as target-group names.
    pub(crate) spec: Spec,
    /// Target group ARNs by every name or ARN the spec uses for them.
    pub(crate) groups: Groups,
}

/// The router of an `alb`/`nlb` spec, as configured.
pub(crate) fn router(spec: &Spec, sdk: &SdkConfig) -> ElbRouter {
    let r = &spec.route;
    let mut router = ElbRouter::new(meshkit::sdk::elbv2::Client::new(sdk));
    if let Some(d) = &r.settle_delay {
        router = router.settle_delay(d.value);
    }
    if let Some(metrics) = confirmation(spec, sdk) {
        router = router.confirm_with(metrics);
    }
    router
}

/// The traffic confirmation a spec asks for (`confirm_traffic`, `min_requests`,
/// `confirm_within`), for the load balancer and Lattice routers alike.
pub(crate) fn confirmation(spec: &Spec, sdk: &SdkConfig) -> Option<TrafficMetrics> {
    let r = &spec.route;
    if r.confirm_traffic != Some(true) {
        return None;
    }
    let judge = Judge {
        min_requests: r.min_requests.unwrap_or(Judge::default().min_requests),
        ..Judge::default()
    };
    let mut metrics = TrafficMetrics::new(meshkit::sdk::cloudwatch::Client::new(sdk)).judge(judge);
    if let Some(d) = &r.confirm_within {
        metrics = metrics.wait(d.value);
    }
    Some(metrics)
}

/// The route, the versions by name and the target groups the checks read. With
/// `preflight`, the read-only checks before a run (route forwards only, both groups
/// exist with targets registered). Errors are in words, for the command to print.
pub(crate) async fn connect(
    spec: &Spec,
    sdk: &SdkConfig,
    preflight: bool,
) -> Result<ElbRoute, String> {
    let router = router(spec, sdk);
    let name = build::route_name(spec);
    let route = RouteRef::new(&name).map_err(|e| e.to_string())?;
    let mut spec = spec.clone();
    // The rollout id of the spec as written (plan shows it), whatever names resolve to.
    spec.policy.id = Some(build::rollout_id(&spec));
    let mut groups = Groups::new();
    let (stable, new) = (spec.route.stable.clone(), spec.route.new.clone());
    if preflight {
        let pre = router
            .preflight(&route, &stable, &new)
            .await
            .map_err(|e| e.to_string())?;
        for (given, g) in [(&stable, &pre.stable), (&new, &pre.candidate)] {
            groups.insert(given.clone(), g.arn.clone());
            groups.insert(g.name.clone(), g.arn.clone());
        }
        spec.route.stable = pre.stable.name;
        spec.route.new = pre.candidate.name;
    } else {
        for (given, slot) in [(&stable, 0), (&new, 1)] {
            let g = router
                .target_group(given)
                .await
                .map_err(|e| e.to_string())?;
            groups.insert(given.clone(), g.arn.clone());
            groups.insert(g.name.clone(), g.arn);
            if slot == 0 {
                spec.route.stable = g.name;
            } else {
                spec.route.new = g.name;
            }
        }
    }
    let extra: Vec<String> = spec
        .checks
        .iter()
        .filter(|c| matches!(c.kind, CheckKind::Target5xx | CheckKind::TargetLatency))
        .filter_map(|c| c.target_group.clone())
        .filter(|g| !groups.contains_key(g))
        .collect();
    for given in extra {
        let g = router
            .target_group(&given)
            .await
            .map_err(|e| e.to_string())?;
        groups.insert(given, g.arn);
    }
    Ok(ElbRoute {
        router,
        route,
        spec,
        groups,
    })
}

/// How long a run may wait on the load balancer after each write, for `plan`.
pub(crate) fn settle(spec: &Spec) -> String {
    let r = &spec.route;
    if r.confirm_traffic == Some(true) {
        let within = r.confirm_within.as_ref().map_or_else(
            || format!("{:?}", meshkit::traffic::elb::METRICS_SETTLE_TIME),
            ToString::to_string,
        );
        return format!(
            "each write is confirmed from CloudWatch request counts per target group (ALB RequestCount, Lattice TotalRequestCount), newest minutes first ({} requests at least, and enough to tell the step from the split before it: about 12,700 for a 0% -> 0.5% step, 100 for 10% -> 50%), within {within} plus the 10 s settle timeout; unconfirmed, the step rolls back",
            r.min_requests.unwrap_or(Judge::default().min_requests)
        );
    }
    let delay = r.settle_delay.as_ref().map_or_else(
        || match r.backend {
            crate::spec::Backend::Nlb => meshkit::traffic::elb::NLB_SETTLE_DELAY,
            crate::spec::Backend::Lattice => meshkit::traffic::lattice::LATTICE_SETTLE_DELAY,
            _ => meshkit::traffic::elb::ALB_SETTLE_DELAY,
        },
        |d| d.value,
    );
    if delay == Duration::ZERO {
        "each write is trusted at once (settle_delay = 0): the data plane is not waited for".into()
    } else {
        format!(
            "each write is followed by a {delay:?} settle delay (traffic is not measured; set confirm_traffic = true to measure it)"
        )
    }
}
