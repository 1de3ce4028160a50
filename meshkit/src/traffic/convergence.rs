//! [`Convergence`]: whether the data plane applies a written split, and [`judge`], the
//! sample-size-aware comparison of measured request counts with the written weights.

use std::fmt;

use super::Weights;

/// What the data plane says about a split meshkit wrote
/// ([`crate::traffic::TrafficRouter::converged`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Convergence {
    /// The backend cannot tell; the control plane's word is taken.
    Unknown,
    /// The data plane applies the split; `detail` says what was measured.
    Applied {
        /// What was measured, for events and logs.
        detail: String,
    },
    /// The data plane does not apply the split yet.
    NotYet {
        /// What was measured instead.
        detail: String,
    },
    /// Too few requests were measured to tell: not yet known (never "applied").
    TooFewRequests {
        /// Requests measured since the write.
        seen: u64,
        /// Requests needed to judge.
        needed: u64,
    },
}

impl Convergence {
    /// True when meshkit may go on: applied, or the backend cannot tell.
    pub fn settled(&self) -> bool {
        matches!(self, Self::Unknown | Self::Applied { .. })
    }
}

impl fmt::Display for Convergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown => f.write_str("the backend cannot tell what the data plane applies"),
            Self::Applied { detail } => write!(f, "applied: {detail}"),
            Self::NotYet { detail } => write!(f, "not applied yet: {detail}"),
            Self::TooFewRequests { seen, needed } => write!(
                f,
                "not yet known: {seen} requests since the write, {needed} needed to judge the split"
            ),
        }
    }
}

/// How measured request counts are judged against written weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judge {
    /// Fewer requests than this (over all targets) is "not yet known". Default: 200.
    pub min_requests: u64,
    /// How many standard deviations of sampling noise a share may be off and still
    /// count as applied. Default: 4 (a correct split is called "not yet" about once in
    /// 16,000 judgements per target).
    pub z: f64,
    /// A share may always be off by this many percentage points (requests in flight
    /// across the change, a retry landing late). Default: 1.
    pub floor_points: f64,
}

impl Default for Judge {
    fn default() -> Self {
        Self {
            min_requests: 200,
            z: 4.0,
            floor_points: 1.0,
        }
    }
}

/// Judges request `counts` per target, measured after a write, against the written
/// `target` weights. Each target's measured share must lie within
/// `max(floor, z * sqrt(p(1-p)/n))` of its written share `p`, with `n` the requests
/// counted. Targets missing from `counts` had no requests; counts for targets not in
/// `target` are traffic the split should not send and count against it.
///
/// With `previous`, the split in force before the write, the counts must also be able
/// to tell the two apart: until the tolerance of some target is at most half its step
/// (`|p_new - p_old| / 2`), the answer is [`Convergence::TooFewRequests`], never
/// "applied" (a 0% → 0.5% step needs about 12,700 requests at `z` = 4; a 10% → 50%
/// step, 100). The floor never exceeds half the step, so a small step is not swallowed
/// by it. Settings that are not numbers, or negative, count as their defaults.
///
/// ```
/// use meshkit::traffic::{judge, Convergence, Judge, Weights};
///
/// let before = Weights::split("blue", "green", 0)?;
/// let written = Weights::split("blue", "green", 10)?;
/// let j = Judge::default();
/// let said = |counts: &[(&str, u64)]| judge(&written, Some(&before), counts, &j);
/// assert!(matches!(said(&[("blue", 905), ("green", 95)]), Convergence::Applied { .. }));
/// assert!(matches!(said(&[("blue", 1000)]), Convergence::NotYet { .. }));
/// assert!(matches!(said(&[("blue", 9), ("green", 1)]), Convergence::TooFewRequests { .. }));
/// # Ok::<(), meshkit::WeightsError>(())
/// ```
pub fn judge(
    target: &Weights,
    previous: Option<&Weights>,
    counts: &[(&str, u64)],
    judge: &Judge,
) -> Convergence {
    let defaults = Judge::default();
    let z = if judge.z.is_finite() && judge.z >= 0.0 {
        judge.z
    } else {
        defaults.z
    };
    let floor_points = if judge.floor_points.is_finite() && judge.floor_points >= 0.0 {
        judge.floor_points
    } else {
        defaults.floor_points
    };
    let min_requests = judge.min_requests.max(1);
    let n: u64 = counts.iter().map(|(_, c)| *c).sum();
    let count = |t: &str| {
        counts
            .iter()
            .filter(|(n, _)| *n == t)
            .map(|(_, c)| *c)
            .sum::<u64>()
    };
    let nf = n.max(1) as f64;
    let mut names: Vec<&str> = target.iter().map(|(t, _)| t).collect();
    let extra = counts
        .iter()
        .map(|(t, _)| *t)
        .chain(previous.into_iter().flat_map(|p| p.iter().map(|(t, _)| t)));
    for t in extra {
        if !names.contains(&t) {
            names.push(t);
        }
    }
    let share = |w: &Weights, t: &str| w.percent_f64(t) / 100.0;
    let sigma = |p: f64| z * (p * (1.0 - p) / nf).sqrt();
    // The largest step of any target, and whether the counts can see it.
    let step = |t: &str| previous.map_or(0.0, |old| (share(target, t) - share(old, t)).abs());
    let largest = names.iter().map(|t| step(t)).fold(0.0, f64::max);
    let floor = if largest > 0.0 {
        (floor_points / 100.0).min(largest / 2.0)
    } else {
        floor_points / 100.0
    };
    let tolerance = |t: &str| floor.max(sigma(share(target, t)));
    // Telling the step from the split before takes z² p(1-p) / (step/2)² requests for
    // the target that shows it best.
    let to_tell = names
        .iter()
        .filter(|t| step(t) > 0.0)
        .map(|t| {
            let p = share(target, t);
            let half = step(t) / 2.0;
            (z * z * p * (1.0 - p) / (half * half)).ceil()
        })
        .fold(f64::INFINITY, f64::min);
    let to_tell = if to_tell.is_finite() {
        to_tell as u64
    } else {
        0
    };
    if n < min_requests {
        return Convergence::TooFewRequests {
            seen: n,
            needed: min_requests.max(to_tell),
        };
    }
    if largest > 0.0
        && !names
            .iter()
            .any(|t| step(t) > 0.0 && tolerance(t) <= step(t) / 2.0)
    {
        return Convergence::TooFewRequests {
            seen: n,
            needed: to_tell.max(min_requests).max(n + 1),
        };
    }
    let mut off = Vec::new();
    let mut measured = Vec::new();
    for t in names {
        let p = share(target, t);
        let q = count(t) as f64 / nf;
        let tolerance = tolerance(t);
        measured.push(format!("{t}={:.1}%", q * 100.0));
        if (q - p).abs() > tolerance {
            off.push(format!(
                "{t} at {:.1}% (written {:.1}%, tolerance {:.1} points)",
                q * 100.0,
                p * 100.0,
                tolerance * 100.0
            ));
        }
    }
    let detail = format!("{} over {n} requests", measured.join(" "));
    if off.is_empty() {
        Convergence::Applied { detail }
    } else {
        Convergence::NotYet {
            detail: format!("{detail}: {}", off.join(", ")),
        }
    }
}

/// [`judge`] over per-minute counts, newest minute first: the newest minutes decide,
/// since older ones may hold traffic from before the data plane applied the write;
/// older minutes are added only while there are too few requests to judge.
pub fn judge_newest(
    target: &Weights,
    previous: Option<&Weights>,
    minutes: &[Vec<(String, u64)>],
    with: &Judge,
) -> Convergence {
    let mut said = Convergence::TooFewRequests {
        seen: 0,
        needed: with.min_requests.max(1),
    };
    let mut sum: Vec<(String, u64)> = Vec::new();
    for minute in minutes {
        for (name, c) in minute {
            match sum.iter_mut().find(|(n, _)| n == name) {
                Some(slot) => slot.1 += c,
                None => sum.push((name.clone(), *c)),
            }
        }
        let counts: Vec<(&str, u64)> = sum.iter().map(|(n, c)| (n.as_str(), *c)).collect();
        said = judge(target, previous, &counts, with);
        if !matches!(said, Convergence::TooFewRequests { .. }) {
            break;
        }
    }
    said
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::Percent;

    #[test]
    fn judged_with_the_sample_size() {
        let j = Judge::default();
        let ten = Weights::split("b", "g", 10).unwrap();
        let zero = Weights::split("b", "g", 0).unwrap();
        let tenth = Weights::split_exact("b", "g", Percent::TENTH).unwrap();
        let applied = |c: Convergence| matches!(c, Convergence::Applied { .. });
        let not_yet = |c: Convergence| matches!(c, Convergence::NotYet { .. });
        let few = |c: Convergence| matches!(c, Convergence::TooFewRequests { .. });
        #[rustfmt::skip]
        type Row<'a> = (&'a Weights, Vec<(&'a str, u64)>, fn(Convergence) -> bool);
        let table: Vec<Row<'_>> = vec![
            // 10% written; 200 requests: sd 2.1 points, tolerance 8.5 points.
            (&ten, vec![("b", 180), ("g", 20)], applied),
            (&ten, vec![("b", 190), ("g", 10)], applied),
            (&ten, vec![("b", 200)], not_yet),
            (&ten, vec![("b", 199)], few),
            // 100,000 requests: tolerance 1 point (the floor).
            (&ten, vec![("b", 90_500), ("g", 9_500)], applied),
            (&ten, vec![("b", 92_000), ("g", 8_000)], not_yet),
            // Rolled back: the old share must be gone, within the floor.
            (&zero, vec![("b", 1_000)], applied),
            (&zero, vec![("b", 995), ("g", 5)], applied),
            (&zero, vec![("b", 900), ("g", 100)], not_yet),
            // 0.1%: 200 requests cannot tell it from 0 (tolerance 1 point).
            (&tenth, vec![("b", 200)], applied),
            // A target the split does not name counts against it.
            (&ten, vec![("b", 900), ("g", 100), ("x", 300)], not_yet),
            (&ten, vec![], few),
        ];
        for (i, (w, counts, ok)) in table.into_iter().enumerate() {
            let got = judge(w, None, &counts, &j);
            assert!(ok(got.clone()), "row {i}: {w} {counts:?} -> {got}");
        }
    }

    #[test]
    fn a_step_is_applied_only_when_the_counts_can_tell_it_from_the_split_before() {
        let j = Judge::default();
        let w = |t: u32| Weights::split_exact("b", "g", Percent::from_tenths(t).unwrap()).unwrap();
        let few = |c: &Convergence| matches!(c, Convergence::TooFewRequests { .. });
        let applied = |c: &Convergence| matches!(c, Convergence::Applied { .. });
        let not_yet = |c: &Convergence| matches!(c, Convergence::NotYet { .. });
        #[rustfmt::skip]
        type Row = (u32, u32, Vec<(&'static str, u64)>, fn(&Convergence) -> bool);
        let table: Vec<Row> = vec![
            // 0% -> 0.5% while the load balancer still sends nothing to g: without the
            // split before this was "applied" (1 point of floor); now it cannot tell.
            (0, 5, vec![("b", 1_000)], few),
            (0, 5, vec![("b", 995), ("g", 5)], few),
            // With enough requests it can: 20,000 at 0.5% applied, at 0% not yet.
            (0, 5, vec![("b", 19_900), ("g", 100)], applied),
            (0, 5, vec![("b", 20_000)], not_yet),
            // 5% -> 10% needs about 4,100 requests; 200 cannot tell them apart.
            (50, 100, vec![("b", 190), ("g", 10)], few),
            (50, 100, vec![("b", 9_000), ("g", 1_000)], applied),
            (50, 100, vec![("b", 9_500), ("g", 500)], not_yet),
            // A big step is seen with few requests.
            (100, 500, vec![("b", 100), ("g", 100)], applied),
            (100, 500, vec![("b", 180), ("g", 20)], not_yet),
            // A rollback to 0% is judged with the floor capped at half the step.
            (500, 0, vec![("b", 1_000)], applied),
            (500, 0, vec![("b", 500), ("g", 500)], not_yet),
        ];
        for (i, (old, new, counts, ok)) in table.into_iter().enumerate() {
            let got = judge(&w(new), Some(&w(old)), &counts, &j);
            assert!(ok(&got), "row {i}: {old} -> {new} {counts:?}: {got}");
        }
        let got = judge(&w(5), Some(&w(0)), &[("b", 1_000)], &j);
        assert!(
            matches!(got, Convergence::TooFewRequests { seen: 1_000, needed } if (12_000..13_500).contains(&needed)),
            "{got}"
        );
        // Nonsense settings fall back to the defaults instead of always agreeing.
        let bad = Judge {
            z: f64::NAN,
            floor_points: -1.0,
            ..Judge::default()
        };
        assert!(not_yet(&judge(&w(100), None, &[("b", 1_000)], &bad)));
    }

    #[test]
    fn the_newest_minute_decides_when_it_has_enough_requests() {
        let j = Judge::default();
        let before = Weights::split("b", "g", 50).unwrap();
        let all = Weights::split("b", "g", 100).unwrap();
        let minute = |b: u64, g: u64| vec![("b".to_owned(), b), ("g".to_owned(), g)];
        // The minute of the write still held old traffic; the newest is clean.
        let minutes = vec![minute(0, 1_000), minute(300, 700)];
        assert!(matches!(
            judge_newest(&all, Some(&before), &minutes, &j),
            Convergence::Applied { .. }
        ));
        // A quiet newest minute borrows from the older ones.
        let minutes = vec![minute(0, 50), minute(0, 950)];
        assert!(matches!(
            judge_newest(&all, Some(&before), &minutes, &j),
            Convergence::Applied { .. }
        ));
        let minutes = vec![minute(0, 50), minute(900, 100)];
        assert!(matches!(
            judge_newest(&all, Some(&before), &minutes, &j),
            Convergence::NotYet { .. }
        ));
        assert!(matches!(
            judge_newest(&all, None, &[], &j),
            Convergence::TooFewRequests { seen: 0, .. }
        ));
    }

    #[test]
    fn says_what_it_measured() {
        let ten = Weights::split("b", "g", 10).unwrap();
        let got = judge(&ten, None, &[("b", 1000)], &Judge::default());
        assert!(
            got.to_string().contains("g at 0.0% (written 10.0%"),
            "{got}"
        );
        assert!(!got.settled());
        assert!(Convergence::Unknown.settled());
    }
}
