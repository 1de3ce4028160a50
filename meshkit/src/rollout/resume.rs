//! Where a rollout resumed from its record carries on: a plain function of the
//! record's progress and the route as found, tested with a table.

use crate::store::{Progress, decode_weights};
use crate::strategy::Stage;
use crate::traffic::Weights;

/// Where a resumed rollout carries on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resume {
    /// Nothing was written yet: start as a new rollout would.
    Fresh,
    /// Run this stage again (its write, if it landed, is found in force).
    Stage(usize),
    /// It was rolling back: finish the rollback (the original reason).
    RollBack(String),
}

/// Decides where a rollout carries on from `progress` when the route holds `found`.
/// `Err` says why the record and the route disagree (someone else wrote the route).
pub(crate) fn from_record(
    progress: &Progress,
    found: &Weights,
    stable: &str,
    candidate: &str,
    stages: &[Stage],
) -> Result<Resume, String> {
    if found
        .iter()
        .any(|(t, w)| t != stable && t != candidate && w > 0)
    {
        return Err(format!(
            "the route sends traffic to a target that is neither '{stable}' nor '{candidate}'"
        ));
    }
    if let Some(reason) = &progress.rolling_back {
        return Ok(Resume::RollBack(reason.clone()));
    }
    let known: Vec<Weights> = [&progress.written, &progress.pending]
        .into_iter()
        .flatten()
        .filter_map(|w| decode_weights(w))
        .collect();
    let Some(stage) = progress.stage else {
        return if known.is_empty() || known.contains(found) {
            Ok(Resume::Fresh)
        } else {
            Err(unknown(found, progress))
        };
    };
    if stage >= stages.len() {
        return Err(format!(
            "the record names stage {stage}, but the plan has {} stages",
            stages.len()
        ));
    }
    // Before any write of this rollout, the route is as it was found at its start.
    if known.is_empty() && found.is_all_on(stable) {
        return Ok(Resume::Stage(stage));
    }
    if known.contains(found) {
        Ok(Resume::Stage(stage))
    } else {
        Err(unknown(found, progress))
    }
}

fn unknown(found: &Weights, p: &Progress) -> String {
    let show = |w: &Option<String>| {
        w.as_deref()
            .and_then(decode_weights)
            .map_or_else(|| "none".to_owned(), |w| w.to_string())
    };
    format!(
        "the route holds {found}, which this rollout never wrote (last written {}, pending {}): \
         another writer changed it",
        show(&p.written),
        show(&p.pending)
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::encode_weights;
    use crate::traffic::Percent;

    fn w(a: u32, b: u32) -> Weights {
        Weights::new([("v1", a), ("v2", b)]).unwrap()
    }

    fn shift(p: u32) -> Stage {
        Stage::Shift {
            new_percent: Percent::whole(p).unwrap(),
            bake: Duration::from_secs(60),
        }
    }

    #[test]
    fn table() {
        let plan = [
            Stage::Provision,
            shift(10),
            shift(50),
            shift(100),
            Stage::Retire,
        ];
        let p =
            |stage: Option<usize>, written: Option<Weights>, pending: Option<Weights>| Progress {
                stage,
                written: written.as_ref().map(encode_weights),
                pending: pending.as_ref().map(encode_weights),
                ..Progress::default()
            };
        let rolling = Progress {
            rolling_back: Some("unhealthy: 5xx".into()),
            ..p(Some(2), Some(w(50, 50)), None)
        };
        let cases: Vec<(&str, Progress, Weights, Result<Resume, ()>)> = vec![
            (
                "nothing recorded",
                p(None, None, None),
                w(100, 0),
                Ok(Resume::Fresh),
            ),
            (
                "provisioning",
                p(Some(0), None, None),
                w(100, 0),
                Ok(Resume::Stage(0)),
            ),
            (
                "step 1 landed",
                p(Some(1), Some(w(100, 0)), Some(w(90, 10))),
                w(90, 10),
                Ok(Resume::Stage(1)),
            ),
            (
                "step 1 lost",
                p(Some(1), Some(w(100, 0)), Some(w(90, 10))),
                w(100, 0),
                Ok(Resume::Stage(1)),
            ),
            (
                "step 2 read back",
                p(Some(2), Some(w(50, 50)), None),
                w(50, 50),
                Ok(Resume::Stage(2)),
            ),
            (
                "someone set 70:30",
                p(Some(2), Some(w(50, 50)), None),
                w(70, 30),
                Err(()),
            ),
            (
                "rolling back",
                rolling.clone(),
                w(50, 50),
                Ok(Resume::RollBack("unhealthy: 5xx".into())),
            ),
            (
                "rollback landed",
                rolling,
                w(100, 0),
                Ok(Resume::RollBack("unhealthy: 5xx".into())),
            ),
            (
                "retired",
                p(Some(4), Some(Weights::new([("v2", 100)]).unwrap()), None),
                Weights::new([("v2", 100)]).unwrap(),
                Ok(Resume::Stage(4)),
            ),
            (
                "stage beyond plan",
                p(Some(9), Some(w(50, 50)), None),
                w(50, 50),
                Err(()),
            ),
            (
                "a third target has traffic",
                p(Some(1), Some(w(90, 10)), None),
                Weights::new([("v1", 80), ("v2", 10), ("v0", 10)]).unwrap(),
                Err(()),
            ),
            (
                "nothing recorded, route moved",
                p(None, Some(w(100, 0)), None),
                w(60, 40),
                Err(()),
            ),
        ];
        for (name, progress, found, want) in cases {
            let got = from_record(&progress, &found, "v1", "v2", &plan).map_err(|_| ());
            assert_eq!(got, want, "{name}");
        }
    }
}
