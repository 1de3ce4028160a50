//! [`Weights`]: a validated traffic split.

use std::fmt;

use crate::error::WeightsError;

/// The most targets one route may split traffic between (App Mesh's limit, and a
/// sensible one for any backend).
pub const MAX_TARGETS: usize = 10;

/// The longest target name accepted (App Mesh virtual node names are at most 255).
pub const MAX_NAME_LEN: usize = 255;

/// A validated traffic split: 1 to [`MAX_TARGETS`] named targets, each an integer
/// percentage from 0 to 100, summing to exactly 100.
///
/// Targets are kept sorted by name, so two splits with the same targets and
/// percentages compare equal whatever order they were given in. A `Weights` value can
/// only be built through [`Weights::new`] or [`Weights::split`], which validate, so a
/// value of this type is always a legal split.
///
/// ```
/// use meshkit::traffic::Weights;
///
/// let w = Weights::new([("blue", 90), ("green", 10)])?;
/// assert_eq!(w.get("green"), Some(10));
/// assert_eq!(w.to_string(), "blue=90 green=10");
/// assert!(Weights::new([("blue", 90), ("green", 20)]).is_err());
/// # Ok::<(), meshkit::WeightsError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Weights {
    targets: Vec<(String, u8)>,
}

impl Weights {
    /// Builds a split from `(target, percent)` pairs, validating every rule.
    pub fn new<I, S>(pairs: I) -> Result<Self, WeightsError>
    where
        I: IntoIterator<Item = (S, u32)>,
        S: Into<String>,
    {
        let mut targets = Vec::new();
        for (name, weight) in pairs {
            let name = name.into();
            check_name(&name)?;
            if weight > 100 {
                return Err(WeightsError::OutOfRange {
                    target: name,
                    weight,
                });
            }
            targets.push((name, weight as u8));
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
        let sum: u32 = targets.iter().map(|(_, w)| u32::from(*w)).sum();
        if sum != 100 {
            return Err(WeightsError::BadSum { sum });
        }
        Ok(Self { targets })
    }

    /// The two-target split used by rollouts: `new_percent` on `candidate`, the rest on
    /// `stable`.
    pub fn split(stable: &str, candidate: &str, new_percent: u8) -> Result<Self, WeightsError> {
        let new_percent = u32::from(new_percent);
        if new_percent > 100 {
            return Err(WeightsError::OutOfRange {
                target: candidate.to_owned(),
                weight: new_percent,
            });
        }
        Self::new([(stable, 100 - new_percent), (candidate, new_percent)])
    }

    /// The percentage on `target`, or `None` when the split does not name it.
    pub fn get(&self, target: &str) -> Option<u8> {
        self.targets
            .iter()
            .find(|(n, _)| n == target)
            .map(|(_, w)| *w)
    }

    /// The percentage on `target`, counting an absent target as 0.
    pub fn percent(&self, target: &str) -> u8 {
        self.get(target).unwrap_or(0)
    }

    /// Iterates over `(target, percent)` in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u8)> {
        self.targets.iter().map(|(n, w)| (n.as_str(), *w))
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
        self.percent(target) == 100
    }
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

impl fmt::Display for Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, w)) in self.targets.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{name}={w}")?;
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
        assert_eq!((w.percent("blue"), w.percent("green")), (75, 25));
        assert!(Weights::split("blue", "green", 101).is_err());
        assert!(Weights::split("same", "same", 10).is_err());
    }
}
