//! The verdict on a target group's targets, whatever service reports them (a load
//! balancer's `DescribeTargetHealth`, VPC Lattice's `ListTargets`): a plain function.

use super::Verdict;

/// Where a target stands, for the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// Takes traffic and is not failing.
    Serving,
    /// Still registering: its first health checks are running.
    Initial,
    /// In service and failing (or of a state the check does not know).
    Failing,
    /// Not in service: draining, or its group is not used by any route yet.
    Out,
}

/// One target as reported: its id, its standing and its state in the service's words.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) id: String,
    pub(crate) standing: Standing,
    /// The state and reason as the service says them (`unhealthy Target.Timeout`).
    pub(crate) said: String,
}

/// Healthy when at least `min_healthy` of the targets in service serve and they are at
/// least `min_percent` of them. None registered is unhealthy (requests routed there
/// fail); none in service, or too few serving while some register, is inconclusive.
/// `unused_by` names what has not used the group yet ("listener", "service").
pub(crate) fn verdict(
    group: &str,
    min_healthy: usize,
    min_percent: f64,
    targets: &[Target],
    unused_by: &str,
) -> Verdict {
    if targets.is_empty() {
        return Verdict::unhealthy(format!(
            "no targets registered in {group}: requests routed to it fail"
        ));
    }
    let in_service: Vec<&Target> = targets
        .iter()
        .filter(|t| t.standing != Standing::Out)
        .collect();
    if in_service.is_empty() {
        return Verdict::inconclusive(format!(
            "{group}: no target in service ({} draining or not used by any {unused_by} yet)",
            targets.len()
        ));
    }
    let serving = in_service
        .iter()
        .filter(|t| t.standing == Standing::Serving)
        .count();
    let percent = serving as f64 * 100.0 / in_service.len() as f64;
    if serving >= min_healthy && percent >= min_percent {
        return Verdict::Healthy;
    }
    let summary = format!(
        "{serving} of {} targets healthy in {group} (need {min_healthy} and {min_percent}%)",
        in_service.len()
    );
    let initial = in_service
        .iter()
        .filter(|t| t.standing == Standing::Initial)
        .count();
    if initial > 0 {
        return Verdict::inconclusive(format!("{summary}; {initial} still registering"));
    }
    let failing: Vec<String> = in_service
        .iter()
        .filter(|t| t.standing != Standing::Serving)
        .take(5)
        .map(|t| format!("{} {}", t.id, t.said).trim_end().to_owned())
        .collect();
    Verdict::unhealthy(format!("{summary}: {}", failing.join(", ")))
}
