//! [`Weights`]: a validated traffic split, kept exactly as a backend holds it.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use super::Percent;
use crate::error::WeightsError;

/// The most targets one route may split traffic between (App Mesh's limit, and a
/// sensible one for any backend).
pub const MAX_TARGETS: usize = 10;

/// The longest target name accepted (App Mesh virtual node names are at most 255).
pub const MAX_NAME_LEN: usize = 255;

/// The largest relative weight [`Weights::relative`] accepts (load balancers and VPC
/// Lattice take 0-999, App Mesh 0-100).
pub const MAX_WEIGHT: u32 = 1000;

/// A validated traffic split: 1 to [`MAX_TARGETS`] named targets with integer weights.
///
/// Built from percentages ([`Weights::new`], [`Weights::split`],
/// [`Weights::split_exact`]) or, for what a backend holds, from relative weights
/// ([`Weights::relative`]: a load balancer rule at 999:1 is 99.9% and 0.1%, never
/// rounded to 100/0). Two splits are equal when they name the same targets and send
/// them the same shares: `90:10` equals `9:1`. Targets are kept sorted by name. A
/// `Weights` value can only be built through the constructors, which validate, so a
/// value of this type is always a legal split with some traffic on it.
///
/// ```
/// use meshkit::traffic::{Percent, Weights};
///
/// let w = Weights::new([("blue", 90), ("green", 10)])?;
/// assert_eq!(w.get("green"), Some(10));
/// assert_eq!(w.to_string(), "blue=90 green=10");
/// assert!(Weights::new([("blue", 90), ("green", 20)]).is_err());
///
/// // What an ALB rule at 999:1 holds, exactly.
/// let rule = Weights::relative([("blue", 999), ("green", 1)])?;
/// assert_eq!(rule.share("green"), Some(Percent::TENTH));
/// assert_eq!(rule.to_string(), "blue=99.9 green=0.1");
/// // 2:1 is a third, shown as a fraction rather than rounded.
/// assert_eq!(Weights::relative([("a", 2), ("b", 1)])?.to_string(), "a=2/3 b=1/3");
/// # Ok::<(), meshkit::WeightsError>(())
/// ```
#[derive(Clone)]
pub struct Weights {
    targets: Vec<(String, u32)>,
}

impl Weights {
    /// Builds a split from `(target, percent)` pairs summing to exactly 100,
    /// validating every rule.
    pub fn new<I, S>(pairs: I) -> Result<Self, WeightsError>
    where
        I: IntoIterator<Item = (S, u32)>,
        S: Into<String>,
    {
        let w = Self::build(pairs, 100)?;
        match w.total() {
            100 => Ok(w),
            sum => Err(WeightsError::BadSum { sum }),
        }
    }

    /// Builds a split from relative weights, each 0 to [`MAX_WEIGHT`], at least one
    /// above 0: what a backend with relative weights (ALB, NLB, VPC Lattice, App Mesh)
    /// holds, kept exactly.
    pub fn relative<I, S>(pairs: I) -> Result<Self, WeightsError>
    where
        I: IntoIterator<Item = (S, u32)>,
        S: Into<String>,
    {
        let w = Self::build(pairs, MAX_WEIGHT)?;
        if w.total() == 0 {
            return Err(WeightsError::NoTraffic);
        }
        Ok(w)
    }

    fn build<I, S>(pairs: I, max: u32) -> Result<Self, WeightsError>
    where
        I: IntoIterator<Item = (S, u32)>,
        S: Into<String>,
    {
        let mut targets = Vec::new();
        for (name, weight) in pairs {
            let name = name.into();
            check_name(&name)?;
            if weight > max {
                return Err(WeightsError::OutOfRange {
                    target: name,
                    weight,
                    max,
                });
            }
            targets.push((name, weight));
            if targets.len() > MAX_TARGETS {
                return Err(WeightsError::TooManyTargets {
                    count: targets.len(),
                });
            }
        }
        if targets.is_empty() {
            return Err(WeightsError::Empty);
        }
        targets.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(pair) = targets.windows(2).find(|p| p[0].0 == p[1].0) {
            return Err(WeightsError::DuplicateTarget {
                target: pair[0].0.clone(),
            });
        }
        Ok(Self { targets })
    }

    /// The two-target split used by rollouts: `new_percent` (whole percents) on
    /// `candidate`, the rest on `stable`.
    pub fn split(stable: &str, candidate: &str, new_percent: u8) -> Result<Self, WeightsError> {
        let new_percent = u32::from(new_percent);
        if new_percent > 100 {
            return Err(WeightsError::OutOfRange {
                target: candidate.to_owned(),
                weight: new_percent,
                max: 100,
            });
        }
        Self::new([(stable, 100 - new_percent), (candidate, new_percent)])
    }

    /// [`Weights::split`] in steps of 0.1%: `new` on `candidate`, the rest on `stable`.
    /// Whole percents are held as percentages (`90:10`), others as tenths (`995:5`).
    pub fn split_exact(stable: &str, candidate: &str, new: Percent) -> Result<Self, WeightsError> {
        Self::split_with(stable, candidate, new, std::iter::empty::<&str>())
    }

    /// [`Weights::split_exact`] plus `zeros`: other targets kept on the route at weight
    /// 0 (a spare target group), as a rollout writes them.
    pub fn split_with<'a>(
        stable: &str,
        candidate: &str,
        new: Percent,
        zeros: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, WeightsError> {
        let (unit, new) = if new.is_whole() {
            (100, u32::from(new.tenths() / 10))
        } else {
            (1000, u32::from(new.tenths()))
        };
        Self::build(
            [(stable, unit - new), (candidate, new)]
                .into_iter()
                .chain(zeros.into_iter().map(|z| (z, 0))),
            MAX_WEIGHT,
        )
    }

    /// The weight on `target` as held (for a split built from percentages, its
    /// percentage), or `None` when the split does not name it.
    pub fn get(&self, target: &str) -> Option<u32> {
        self.targets
            .iter()
            .find(|(n, _)| n == target)
            .map(|(_, w)| *w)
    }

    /// The sum of all weights (100 for a split built from percentages).
    pub fn total(&self) -> u32 {
        self.targets.iter().map(|(_, w)| *w).sum()
    }

    /// `target`'s share of the traffic when it is a whole number of tenths of a percent
    /// (an absent target has 0%); `None` for shares such as a third, which no
    /// [`Percent`] holds exactly.
    pub fn share(&self, target: &str) -> Option<Percent> {
        let (w, total) = (
            u64::from(self.get(target).unwrap_or(0)),
            u64::from(self.total()),
        );
        let tenths = w * 1000;
        if tenths % total != 0 {
            return None;
        }
        Percent::from_tenths(u32::try_from(tenths / total).ok()?).ok()
    }

    /// `target`'s share as a float percentage, for display and for comparing with
    /// measurements. Use [`Weights::share`] or [`Weights::compare`] for decisions.
    pub fn percent_f64(&self, target: &str) -> f64 {
        f64::from(self.get(target).unwrap_or(0)) * 100.0 / f64::from(self.total())
    }

    /// How `target`'s exact share compares with `p`.
    pub fn compare(&self, target: &str, p: Percent) -> Ordering {
        let w = u64::from(self.get(target).unwrap_or(0)) * 1000;
        w.cmp(&(u64::from(p.tenths()) * u64::from(self.total())))
    }

    /// Iterates over `(target, weight as held)` in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u32)> {
        self.targets.iter().map(|(n, w)| (n.as_str(), *w))
    }

    /// The weights scaled to sum to exactly `total`, when that is exact (`995:5` in
    /// units of 100 is not); for backends that hold percentages.
    pub fn in_units(&self, total: u32) -> Option<Vec<(&str, u32)>> {
        let sum = u64::from(self.total());
        self.iter()
            .map(|(n, w)| {
                let scaled = u64::from(w) * u64::from(total);
                (scaled % sum == 0).then(|| (n, (scaled / sum) as u32))
            })
            .collect()
    }

    /// The weights divided by their greatest common divisor (`995:5` is `199:1`): the
    /// smallest integers that hold this split exactly.
    pub fn lowest_terms(&self) -> Vec<(&str, u32)> {
        let g = self.targets.iter().fold(0, |g, (_, w)| gcd(g, *w)).max(1);
        self.iter().map(|(n, w)| (n, w / g)).collect()
    }

    /// The weights as integers of at most `max` each, most readable first: as
    /// percentages (`90:10`), then in tenths of a percent (`995:5`), then in lowest
    /// terms; `None` when none fits (a load balancer holds 0-999, App Mesh 0-100).
    pub fn fit(&self, max: u32) -> Option<Vec<(&str, u32)>> {
        let fits = |v: &Vec<(&str, u32)>| v.iter().all(|(_, w)| *w <= max);
        [
            self.in_units(100),
            self.in_units(1000),
            Some(self.lowest_terms()),
        ]
        .into_iter()
        .flatten()
        .find(fits)
    }

    /// The number of targets in the split.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Always false: a valid split has at least one target. Present for API symmetry.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// True when `target` carries all the traffic.
    pub fn is_all_on(&self, target: &str) -> bool {
        self.get(target).unwrap_or(0) == self.total()
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn check_name(name: &str) -> Result<(), WeightsError> {
    if name.trim().is_empty() {
        return Err(WeightsError::EmptyTargetName);
    }
    if name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(WeightsError::BadTargetName {
            target: name.chars().take(64).collect(),
        });
    }
    Ok(())
}

impl PartialEq for Weights {
    /// Same targets, same shares: `90:10 == 9:1`.
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (u64::from(self.total()), u64::from(other.total()));
        self.targets.len() == other.targets.len()
            && self
                .targets
                .iter()
                .zip(&other.targets)
                .all(|((n1, w1), (n2, w2))| n1 == n2 && u64::from(*w1) * b == u64::from(*w2) * a)
    }
}

impl Eq for Weights {}

impl Hash for Weights {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Lowest terms are the same for every split equal to this one.
        for (n, w) in self.lowest_terms() {
            n.hash(state);
            w.hash(state);
        }
    }
}

impl fmt::Display for Weights {
    /// Percentages when every share is a whole number of tenths (`blue=99.5
    /// green=0.5`), otherwise each weight over the total (`a=2/3 b=1/3`). Never rounded.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exact = self.targets.iter().all(|(n, _)| self.share(n).is_some());
        let total = self.total();
        for (i, (name, w)) in self.targets.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            match self.share(name) {
                Some(p) if exact => {
                    let p = p.to_string();
                    write!(f, "{name}={}", p.trim_end_matches('%'))?
                }
                _ => write!(f, "{name}={w}/{total}")?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Weights({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_does_not_matter() {
        let a = Weights::new([("a", 40), ("b", 60)]).unwrap();
        let b = Weights::new([("b", 60), ("a", 40)]).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn rejects_each_rule() {
        assert_eq!(
            Weights::new(Vec::<(&str, u32)>::new()),
            Err(WeightsError::Empty)
        );
        assert_eq!(
            Weights::new([("a", 50), ("b", 49)]),
            Err(WeightsError::BadSum { sum: 99 })
        );
        assert!(matches!(
            Weights::new([("a", 101)]),
            Err(WeightsError::OutOfRange { .. })
        ));
        assert!(matches!(
            Weights::new([("a", 50), ("a", 50)]),
            Err(WeightsError::DuplicateTarget { .. })
        ));
        assert_eq!(
            Weights::new([(" ", 100)]),
            Err(WeightsError::EmptyTargetName)
        );
        assert!(matches!(
            Weights::new([("a\n", 100)]),
            Err(WeightsError::BadTargetName { .. })
        ));
        let eleven: Vec<(String, u32)> = (0..11).map(|i| (format!("t{i}"), 0)).collect();
        assert_eq!(
            Weights::new(eleven),
            Err(WeightsError::TooManyTargets { count: 11 })
        );
    }

    #[test]
    fn ten_targets_is_fine() {
        let ten: Vec<(String, u32)> = (0..10).map(|i| (format!("t{i}"), 10)).collect();
        assert_eq!(Weights::new(ten).unwrap().len(), 10);
    }

    #[test]
    fn split_puts_the_rest_on_stable() {
        let w = Weights::split("blue", "green", 25).unwrap();
        assert_eq!((w.get("blue"), w.get("green")), (Some(75), Some(25)));
        assert!(Weights::split("blue", "green", 101).is_err());
        assert!(Weights::split("same", "same", 10).is_err());
    }

    #[test]
    fn relative_weights_are_kept_exactly() {
        let p = |t: u32| Some(Percent::from_tenths(t).unwrap());
        #[rustfmt::skip]
        type Row = (&'static [(&'static str, u32)], &'static str, Option<Percent>, &'static str);
        let table: &[Row] = &[
            (&[("a", 999), ("b", 1)], "b", p(1), "a=99.9 b=0.1"),
            (&[("a", 1), ("b", 999)], "a", p(1), "a=0.1 b=99.9"),
            (&[("a", 2), ("b", 1)], "b", None, "a=2/3 b=1/3"),
            (&[("a", 9), ("b", 1)], "b", p(100), "a=90 b=10"),
            (&[("a", 995), ("b", 5)], "b", p(5), "a=99.5 b=0.5"),
            (
                &[("a", 1), ("b", 0), ("c", 0)],
                "a",
                p(1000),
                "a=100 b=0 c=0",
            ),
            (
                &[("a", 1), ("b", 1), ("c", 1)],
                "c",
                None,
                "a=1/3 b=1/3 c=1/3",
            ),
        ];
        for (pairs, target, share, shown) in table {
            let w = Weights::relative(pairs.iter().copied()).unwrap();
            assert_eq!(w.share(target), *share, "{pairs:?}");
            assert_eq!(w.to_string(), *shown);
        }
        assert_eq!(
            Weights::relative([("a", 0), ("b", 0)]),
            Err(WeightsError::NoTraffic)
        );
        assert!(matches!(
            Weights::relative([("a", 1001)]),
            Err(WeightsError::OutOfRange { max: 1000, .. })
        ));
    }

    #[test]
    fn equal_shares_are_equal_splits_and_hash_alike() {
        use std::collections::HashSet;
        let a = Weights::relative([("a", 90), ("b", 10)]).unwrap();
        let b = Weights::relative([("a", 9), ("b", 1)]).unwrap();
        let c = Weights::relative([("a", 900), ("b", 100)]).unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        let set: HashSet<Weights> = [a.clone(), b, c].into_iter().collect();
        assert_eq!(set.len(), 1);
        // 999:1 is not 100:0, and a target at 0 is not an absent target.
        assert_ne!(
            Weights::relative([("a", 999), ("b", 1)]).unwrap(),
            Weights::split("a", "b", 0).unwrap()
        );
        assert_ne!(
            Weights::new([("a", 100)]).unwrap(),
            Weights::split("a", "b", 0).unwrap()
        );
    }

    #[test]
    fn exact_splits_and_units() {
        let half = Percent::from_tenths(5).unwrap();
        let w = Weights::split_exact("v1", "v2", half).unwrap();
        assert_eq!((w.get("v1"), w.get("v2")), (Some(995), Some(5)));
        assert_eq!(w.compare("v2", half), Ordering::Equal);
        assert_eq!(w.compare("v2", Percent::ONE), Ordering::Less);
        assert_eq!(w.in_units(100), None);
        assert_eq!(w.lowest_terms(), vec![("v1", 199), ("v2", 1)]);
        let whole = Weights::split_exact("v1", "v2", Percent::whole(10).unwrap()).unwrap();
        assert_eq!(whole.get("v2"), Some(10));
        assert_eq!(whole.in_units(1000), Some(vec![("v1", 900), ("v2", 100)]));
        let all = Weights::split_exact("v1", "v2", Percent::ALL).unwrap();
        assert!(all.is_all_on("v2"));
        assert_eq!(all.lowest_terms(), vec![("v1", 0), ("v2", 1)]);
        assert!(
            (Weights::relative([("a", 2), ("b", 1)])
                .unwrap()
                .percent_f64("b")
                - 33.333)
                .abs()
                < 0.01
        );
    }
}
