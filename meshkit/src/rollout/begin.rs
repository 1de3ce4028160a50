//! Where a rollout begins, given the route as found at start: a plain function of the
//! weights, the two versions, the plan and the policy, tested with a table.

use crate::strategy::{Decision, Input, Position, Stage, Strategy};
use crate::traffic::{Percent, Weights};

/// Why a rollout cannot begin on the route as found. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Traffic on a target that is neither version.
    UnexpectedTargets,
    /// Not at 100% stable, and resuming is not allowed.
    NotAtStart,
    /// A split the plan never writes, and adopting it is not allowed.
    NotResumable { plan: Vec<Percent> },
}

/// Where to begin, and the targets other than the two versions found at weight 0
/// (kept at 0 in every write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Begin {
    pub(crate) decision: Decision,
    pub(crate) zeros: Vec<String>,
}

/// Decides where a rollout from `stable` to `candidate` begins on a route found at
/// `found`:
/// - all on stable: the strategy's start;
/// - otherwise only with `resume`: already promoted with the stable version taken off
///   the route, only retiring is left; a split the plan writes, that step again; any
///   other split only with `adopt`.
pub(crate) fn begin(
    found: &Weights,
    stable: &str,
    candidate: &str,
    strategy: &dyn Strategy,
    resume: bool,
    adopt: bool,
) -> Result<Begin, Refusal> {
    let others: Vec<(&str, u32)> = found
        .iter()
        .filter(|(t, _)| *t != stable && *t != candidate)
        .collect();
    if others.iter().any(|(_, w)| *w > 0) {
        return Err(Refusal::UnexpectedTargets);
    }
    let zeros = others.iter().map(|(t, _)| (*t).to_owned()).collect();
    let stages = strategy.stages();
    let decision = if found.is_all_on(stable) {
        strategy.decide(Position { stage: None }, &Input::Start)
    } else if !(resume || adopt) {
        return Err(Refusal::NotAtStart);
    } else if found.get(stable).is_none() && found.is_all_on(candidate) {
        match stages.iter().position(|s| *s == Stage::Retire) {
            Some(index) => Decision::Run {
                index,
                stage: Stage::Retire,
            },
            None => Decision::Promote,
        }
    } else {
        strategy
            .resume(found, candidate, adopt)
            .ok_or_else(|| Refusal::NotResumable {
                plan: stages.iter().filter_map(Stage::new_percent).collect(),
            })?
    };
    Ok(Begin { decision, zeros })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::strategy::Canary;

    fn w(pairs: &[(&str, u32)]) -> Weights {
        Weights::new(pairs.iter().copied()).unwrap()
    }

    fn r(pairs: &[(&str, u32)]) -> Weights {
        Weights::relative(pairs.iter().copied()).unwrap()
    }

    #[test]
    fn where_a_rollout_begins() {
        let plan = Canary::steps([10, 50, 100]).bake(Duration::from_secs(60));
        let run = |index: usize| {
            let stage = plan.stages()[index];
            Ok(Decision::Run { index, stage })
        };
        let refused = Err(Refusal::NotResumable {
            plan: plan.percents(),
        });
        #[rustfmt::skip]
        let table: Vec<(Weights, bool, bool, Result<Decision, Refusal>)> = vec![
            (w(&[("v1", 100), ("v2", 0)]), false, false, run(0)),
            (w(&[("v1", 100)]), false, false, run(0)),
            (w(&[("v0", 0), ("v1", 100)]), false, false, run(0)),
            (w(&[("v0", 10), ("v1", 90)]), true, true, Err(Refusal::UnexpectedTargets)),
            (w(&[("v1", 50), ("v2", 50)]), false, false, Err(Refusal::NotAtStart)),
            (w(&[("v1", 50), ("v2", 50)]), true, false, run(1)),
            (w(&[("v1", 0), ("v2", 100)]), true, false, run(2)),
            (w(&[("v1", 70), ("v2", 30)]), true, false, refused.clone()),
            (w(&[("v1", 70), ("v2", 30)]), true, true, run(1)),
            (w(&[("v2", 100)]), true, false, run(3)),
            (w(&[("v2", 100)]), false, false, Err(Refusal::NotAtStart)),
            // Exact relative weights: 999:1 is 0.1%, not 0%, and 9:1 is the 10% step.
            (r(&[("v1", 999), ("v2", 1)]), false, false, Err(Refusal::NotAtStart)),
            (r(&[("v1", 999), ("v2", 1)]), true, false, refused.clone()),
            (r(&[("v1", 999), ("v2", 1)]), true, true, run(0)),
            (r(&[("v1", 9), ("v2", 1)]), true, false, run(0)),
            (r(&[("v1", 2), ("v2", 1)]), true, false, refused.clone()),
            (r(&[("v1", 2), ("v2", 1)]), true, true, run(1)),
            (r(&[("v1", 501), ("v2", 499)]), true, true, run(1)),
            (r(&[("v1", 499), ("v2", 501)]), true, true, run(2)),
        ];
        for (found, resume, adopt, expected) in table {
            let got = begin(&found, "v1", "v2", &plan, resume, adopt).map(|b| b.decision);
            assert_eq!(got, expected, "{found} resume={resume} adopt={adopt}");
        }
        let b = begin(
            &w(&[("v0", 0), ("v1", 100)]),
            "v1",
            "v2",
            &plan,
            false,
            false,
        )
        .unwrap();
        assert_eq!(b.zeros, vec!["v0".to_string()]);
    }
}
