//! VPC Lattice routes for the commands: the router the spec describes, the versions'
//! target groups resolved to names (a spec may give names, ids or ARNs), and the ids
//! the Lattice checks need.

use meshkit::sdk::SdkConfig;
use meshkit::traffic::RouteRef;
use meshkit::traffic::lattice::LatticeRouter;

use crate::build::{self, Groups};
use crate::spec::{CheckKind, Spec};

/// A Lattice route, ready to use.
pub(crate) struct LatticeRoute {
    pub(crate) router: LatticeRouter,
    pub(crate) route: RouteRef,
    /// The spec with `stable` and `new` as target-group names.
    pub(crate) spec: Spec,
    /// Target group ids by every name, id or ARN the spec uses for them.
    pub(crate) groups: Groups,
}

/// The router of a `lattice` spec, as configured.
pub(crate) fn router(spec: &Spec, sdk: &SdkConfig) -> LatticeRouter {
    let r = &spec.route;
    let mut router = LatticeRouter::new(meshkit::sdk::vpclattice::Client::new(sdk));
    if let Some(d) = &r.settle_delay {
        router = router.settle_delay(d.value);
    }
    if let Some(metrics) = crate::elb::confirmation(spec, sdk) {
        router = router.confirm_with(metrics);
    }
    router
}

/// The route, the versions by name and the target groups the checks read; with
/// `preflight`, the read-only checks before a run.
pub(crate) async fn connect(
    spec: &Spec,
    sdk: &SdkConfig,
    preflight: bool,
) -> Result<LatticeRoute, String> {
    let router = router(spec, sdk);
    let route = RouteRef::new(build::route_name(spec)).map_err(|e| e.to_string())?;
    let mut spec = spec.clone();
    spec.policy.id = Some(build::rollout_id(&spec));
    let mut groups = Groups::new();
    let (stable, new) = (spec.route.stable.clone(), spec.route.new.clone());
    if preflight {
        let pre = router
            .preflight(&route, &stable, &new)
            .await
            .map_err(|e| e.to_string())?;
        for (given, g) in [(&stable, &pre.stable), (&new, &pre.candidate)] {
            groups.insert(given.clone(), g.id.clone());
            groups.insert(g.name.clone(), g.id.clone());
        }
        spec.route.stable = pre.stable.name;
        spec.route.new = pre.candidate.name;
    } else {
        for (i, given) in [stable, new].into_iter().enumerate() {
            let g = router
                .target_group(&given)
                .await
                .map_err(|e| e.to_string())?;
            groups.insert(given, g.id.clone());
            groups.insert(g.name.clone(), g.id);
            if i == 0 {
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
        groups.insert(given, g.id);
    }
    Ok(LatticeRoute {
        router,
        route,
        spec,
        groups,
    })
}
