//! `meshkit plan`: every step, the checks, what inconclusive checks mean, and the AWS
//! calls the run makes. No call is made.

use meshkit::strategy::Stage;
use serde::Serialize;
use serde_json::json;

use crate::load::{Loaded, validate};
use crate::spec::{Backend, CheckKind, CheckSpec, Spec};
use crate::{Cli, build, exit};

/// The route calls a run makes on App Mesh or a load balancer, counted the way
/// `meshkit run` makes them (checked against the emulator's request log by the
/// tests). A check's own calls (CloudWatch, Cloud Map, target health) come on top and
/// are listed separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Calls {
    /// Before the first write: the stable node read from the route (`deploy.json`
    /// without `--stable`), the preflight (`DescribeMesh`, `DescribeVirtualRouter`,
    /// `DescribeVirtualNode` ×2, `DescribeRoute`) and the start's `DescribeRoute`.
    pub before_first_write: u32,
    /// Each shift: `DescribeRoute`, `UpdateRoute` (whose answer is the read-back). One
    /// (no write) when the step's weights are already in force on a resumed run.
    pub per_shift: u32,
    /// Each round of checks: one `DescribeRoute`, to see another writer within one
    /// check interval.
    pub per_check_round: u32,
    /// After the last shift: confirm (`DescribeRoute`), take the stable node off the
    /// route (`DescribeRoute`, `UpdateRoute`), confirm the promotion (`DescribeRoute`).
    pub to_promote: u32,
    /// A rollback: `DescribeRoute`, `UpdateRoute`.
    pub to_roll_back: u32,
}

impl Calls {
    /// The App Mesh calls of a run of `loaded`.
    pub fn appmesh(loaded: &Loaded) -> Self {
        Self {
            before_first_write: 6 + u32::from(loaded.stable_read),
            per_shift: 2,
            per_check_round: 1,
            to_promote: 4,
            to_roll_back: 2,
        }
    }

    /// The load balancer calls of a run: before the first write, the preflight (the
    /// route's read, `DescribeTargetGroups` for the groups on the route and for the new
    /// version's, with `confirm_traffic` the listener's rules, `DescribeTargetHealth`
    /// ×2) and the start's read; then as on App Mesh, with
    /// `DescribeRules`/`DescribeListeners` and `ModifyRule`/`ModifyListener`.
    pub fn elb(confirm_traffic: bool) -> Self {
        Self {
            before_first_write: 6 + u32::from(confirm_traffic),
            per_shift: 2,
            per_check_round: 1,
            to_promote: 4,
            to_roll_back: 2,
        }
    }
}

/// Prints the plan; returns the exit code.
pub(crate) fn plan(cli: &Cli, loaded: &Loaded) -> u8 {
    let spec = &loaded.spec;
    if spec.route.backend == Backend::EcsNative {
        return crate::native::plan(cli, loaded);
    }
    let rollout = match validate(spec) {
        Ok(Some(r)) => r,
        Ok(None) => return exit::INVALID,
        Err(e) => {
            err!("meshkit: invalid spec: {e}");
            return exit::INVALID;
        }
    };
    let (stable, new) = build::versions(spec);
    let stages: Vec<serde_json::Value> = rollout
        .plan()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let weights = match s {
                Stage::Shift { new_percent, .. } => {
                    meshkit::traffic::Weights::split_exact(stable, new, *new_percent)
                        .map(|w| w.to_string())
                        .unwrap_or_default()
                }
                _ => String::new(),
            };
            json!({"index": i, "stage": s.to_string(), "weights": weights,
                   "bake_ms": s.bake().as_millis() as u64})
        })
        .collect();
    let lattice_metrics = spec.route.backend == Backend::Lattice;
    let checks: Vec<String> = spec
        .checks
        .iter()
        .map(|c| describe_check(c, new, lattice_metrics))
        .collect();
    let policy = rollout.policy();
    let inconclusive = policy.inconclusive().to_string();
    let calls = match spec.route.backend {
        Backend::Appmesh => Some(Calls::appmesh(loaded)),
        Backend::Alb | Backend::Nlb => Some(Calls::elb(spec.route.confirm_traffic == Some(true))),
        Backend::Lattice => Some(Calls::elb(false)),
        Backend::Local | Backend::EcsNative => None,
    };
    let check_calls = check_calls(spec);
    if cli.json {
        out!(
            "{}",
            json!({"id": rollout.id(), "route": build::route_name(spec), "from": stable,
                   "to": new, "stages": stages, "checks": checks,
                   "check_interval_ms": policy.check_interval().as_millis() as u64,
                   "failure_threshold": policy.failure_threshold(),
                   "inconclusive": inconclusive,
                   "route_calls": calls, "check_calls": check_calls})
        );
        return exit::OK;
    }
    out!(
        "rollout {} on {}: {stable} -> {new}",
        rollout.id(),
        build::route_name(spec)
    );
    for s in &stages {
        out!(
            "  {:>2}  {}{}",
            s["index"],
            s["stage"].as_str().unwrap_or_default(),
            match s["weights"].as_str() {
                Some(w) if !w.is_empty() => format!("  ({w})"),
                _ => String::new(),
            }
        );
    }
    out!(
        "checks every {:?}: {}",
        policy.check_interval(),
        checks.join("; ")
    );
    out!(
        "rolls back after {} unhealthy in a row; inconclusive: {inconclusive}",
        policy.failure_threshold()
    );
    out!("calls:");
    let elb = matches!(
        spec.route.backend,
        Backend::Alb | Backend::Nlb | Backend::Lattice
    );
    let lattice = spec.route.backend == Backend::Lattice;
    match calls {
        Some(c) if elb => {
            let (read, write) = match (lattice, spec.route.rule.is_some()) {
                (true, true) => ("GetRule", "UpdateRule"),
                (true, false) => ("GetListener", "UpdateListener"),
                (false, true) => ("DescribeRules", "ModifyRule"),
                (false, false) => ("DescribeListeners", "ModifyListener"),
            };
            let (groups, health) = if lattice {
                (
                    "GetTargetGroup for each group on the route, ListTargetGroups",
                    "ListTargets",
                )
            } else {
                (
                    "DescribeTargetGroups for the groups on the route, DescribeTargetGroups",
                    "DescribeTargetHealth",
                )
            };
            out!(
                "  before the first write: {} (preflight: {read}, {groups} {new} (none when it is on the route already){}, {health} {stable}, {health} {new}; then {read})",
                c.before_first_write,
                if spec.route.confirm_traffic == Some(true) {
                    ", DescribeRules of the listener (no other rule may share the groups)"
                } else {
                    ""
                }
            );
            out!(
                "  each shift: {} ({read}, {write}, whose answer is the read-back); each check round: {} ({read})",
                c.per_shift,
                c.per_check_round
            );
            out!(
                "  to promote: {} ({read}; {read}, {write} taking {stable} off the route; {read}); a rollback: {} ({read}, {write})",
                c.to_promote,
                c.to_roll_back
            );
            out!("  data plane: {}", crate::elb::settle(spec));
        }
        Some(c) => {
            out!(
                "  before the first write: {} (preflight: DescribeMesh, DescribeVirtualRouter, DescribeVirtualNode {stable}, DescribeVirtualNode {new}, DescribeRoute; then DescribeRoute{})",
                c.before_first_write,
                if loaded.stable_read {
                    "; and DescribeRoute first, to find the stable node"
                } else {
                    ""
                }
            );
            out!(
                "  each shift: {} (DescribeRoute, UpdateRoute with a client token of the rollout id {}, the stage and a per-run suffix); each check round: {} (DescribeRoute)",
                c.per_shift,
                rollout.id(),
                c.per_check_round
            );
            out!(
                "  to promote: {} (DescribeRoute; DescribeRoute, UpdateRoute taking {stable} off the route; DescribeRoute); a rollback: {} (DescribeRoute, UpdateRoute)",
                c.to_promote,
                c.to_roll_back
            );
        }
        None => out!("  none to AWS for the route: the local mesh runs inside `meshkit run`"),
    }
    for c in &check_calls {
        out!("  {c}");
    }
    exit::OK
}

fn check_calls(spec: &Spec) -> Vec<String> {
    let mut calls = Vec::new();
    if spec.route.confirm_traffic == Some(true) {
        calls.push("after each write, until confirmed: GetMetricData (per poll)".to_string());
    }
    if spec
        .checks
        .iter()
        .any(|c| c.kind == CheckKind::TargetHealth)
    {
        calls.push(if spec.route.backend == Backend::Lattice {
            "each check round: ListTargets (per target-health check; ListTargetGroups once for a name)".to_string()
        } else {
            "each check round: DescribeTargetHealth (per target-health check; DescribeTargetGroups once for a name)".to_string()
        });
    }
    if spec.checks.iter().any(|c| {
        matches!(
            c.kind,
            CheckKind::Envoy5xx | CheckKind::Target5xx | CheckKind::TargetLatency
        )
    }) {
        calls.push("each check round: GetMetricData (per page)".to_string());
    }
    if spec.checks.iter().any(|c| c.kind == CheckKind::Cloudmap) {
        calls.push(
            "each check round: ListInstances, GetInstancesHealthStatus (per Cloud Map check, per page)"
                .to_string(),
        );
    }
    calls
}

pub(crate) fn describe_check(c: &CheckSpec, new: &str, lattice: bool) -> String {
    let (five, latency) = if lattice {
        (
            "AWS/VpcLattice HTTPCode_5XX_Count",
            "AWS/VpcLattice RequestTime",
        )
    } else {
        ("HTTPCode_Target_5XX_Count", "TargetResponseTime")
    };
    let or_blank = |v: &Option<String>| v.clone().unwrap_or_default();
    let dur =
        |v: &Option<crate::spec::Dur>| v.as_ref().map(ToString::to_string).unwrap_or_default();
    match c.kind {
        CheckKind::Http => format!("http probe {}", or_blank(&c.url)),
        CheckKind::Cloudmap => {
            format!("Cloud Map instance health of {}", or_blank(&c.service_id))
        }
        CheckKind::Prometheus => format!("prometheus {}", or_blank(&c.query)),
        CheckKind::SuccessRate => format!(
            "success rate of the new version at least {}",
            c.min.unwrap_or(1.0)
        ),
        CheckKind::LatencyP99 => format!("p99 of the new version at most {}", dur(&c.max_latency)),
        CheckKind::TargetHealth => format!(
            "target health of {}: at least {} healthy, {}% of those in service",
            c.target_group.as_deref().unwrap_or(new),
            c.min_instances.unwrap_or(1),
            c.min_healthy.map_or(100.0, |s| s * 100.0)
        ),
        CheckKind::Target5xx => format!(
            "CloudWatch {five} of {} over {}, at most {}",
            c.target_group.as_deref().unwrap_or(new),
            dur(&c.window),
            c.max.unwrap_or_default()
        ),
        CheckKind::TargetLatency => format!(
            "CloudWatch {latency} p99 of {} in any minute of {}, at most {}",
            c.target_group.as_deref().unwrap_or(new),
            dur(&c.window),
            dur(&c.max_latency)
        ),
        CheckKind::Envoy5xx => format!(
            "CloudWatch ingress 5xx of {} (task family {}, cluster {}) over {}, at most {}",
            c.virtual_node.as_deref().unwrap_or(new),
            c.task_family.as_deref().unwrap_or(new),
            or_blank(&c.cluster),
            dur(&c.window),
            c.max.unwrap_or_default()
        ),
    }
}
