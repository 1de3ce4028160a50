//! [`Convergence`]: whether the data plane applies a written split, and [`judge`], the
//! sample-size-aware comparison of measured request counts with the written weights.

use std::fmt;

use super::Weights;

/// What the data plane says about a split meshkit wrote
/// ([`crate::traffic::TrafficRouter::converged`]).
#[derive(Debug, Clone, PartialEq)]
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
/// `target` weights: each target's measured share must lie within
/// `max(floor_points, z * sqrt(p(1-p)/n))` of its written share `p`, with `n` the
/// requests counted. Targets missing from `counts` had no requests; counts for targets
/// not in `target` are traffic the split should not send and count against it.
///
/// ```
/// use meshkit::traffic::{judge, Convergence, Judge, Weights};
///
/// let written = Weights::split("blue", "green", 10)?;
/// let j = Judge::default();
/// assert!(matches!(judge(&written, &[("blue", 905), ("green", 95)], &j), Convergence::Applied { .. }));
/// assert!(matches!(judge(&written, &[("blue", 1000)], &j), Convergence::NotYet { .. }));
/// assert!(matches!(judge(&written, &[("blue", 9), ("green", 1)], &j), Convergence::TooFewRequests { .. }));
/// # Ok::<(), meshkit::WeightsError>(())
/// ```
pub fn judge(target: &Weights, counts: &[(&str, u64)], judge: &Judge) -> Convergence {
    let n: u64 = counts.iter().map(|(_, c)| *c).sum();
    if n < judge.min_requests.max(1) {
        return Convergence::TooFewRequests {
            seen: n,
            needed: judge.min_requests.max(1),
        };
    }
    let count = |t: &str| {
        counts
            .iter()
            .filter(|(n, _)| *n == t)
            .map(|(_, c)| *c)
            .sum::<u64>()
    };
    let nf = n as f64;
    let mut off = Vec::new();
    let mut names: Vec<&str> = target.iter().map(|(t, _)| t).collect();
    names.extend(
        counts
            .iter()
            .map(|(t, _)| *t)
            .filter(|t| target.get(t).is_none()),
    );
    names.dedup();
    let mut measured = Vec::new();
    for t in names {
        let p = target.percent_f64(t) / 100.0;
        let q = count(t) as f64 / nf;
        let tolerance = (judge.floor_points / 100.0).max(judge.z * (p * (1.0 - p) / nf).sqrt());
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
            let got = judge(w, &counts, &j);
            assert!(ok(got.clone()), "row {i}: {w} {counts:?} -> {got}");
        }
    }

    #[test]
    fn says_what_it_measured() {
        let ten = Weights::split("b", "g", 10).unwrap();
        let got = judge(&ten, &[("b", 1000)], &Judge::default());
        assert!(
            got.to_string().contains("g at 0.0% (written 10.0%"),
            "{got}"
        );
        assert!(!got.settled());
        assert!(Convergence::Unknown.settled());
    }
}
