//! [`Percent`]: a share of traffic in steps of 0.1%.

use std::fmt;
use std::str::FromStr;

use crate::error::WeightsError;

/// A share of traffic from 0 to 100% in steps of 0.1%, the unit plans are written in.
///
/// Only valid values can be built: [`Percent::whole`] for whole percents,
/// [`Percent::from_tenths`] for tenths, or parsing `"0.5"`, `"0.5%"`, `"25"`. A
/// backend states the finest step it can hold ([`crate::traffic::TrafficRouter::resolution`]);
/// a plan with a finer step is refused before anything is written.
///
/// ```
/// use meshkit::traffic::Percent;
///
/// let half = Percent::from_tenths(5)?;
/// assert_eq!(half.to_string(), "0.5%");
/// assert_eq!("0.5".parse::<Percent>()?, half);
/// assert_eq!(Percent::whole(25)?.to_string(), "25%");
/// assert!(Percent::whole(101).is_err());
/// assert!("0.05".parse::<Percent>().is_err());
/// # Ok::<(), meshkit::WeightsError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Percent(u16);

impl Percent {
    /// No traffic.
    pub const ZERO: Self = Self(0);
    /// The smallest step: 0.1%.
    pub const TENTH: Self = Self(1);
    /// One whole percent.
    pub const ONE: Self = Self(10);
    /// All traffic.
    pub const ALL: Self = Self(1000);

    /// `p` whole percents, 0 to 100.
    pub fn whole(p: u32) -> Result<Self, WeightsError> {
        if p > 100 {
            return Err(WeightsError::BadPercent {
                value: p.to_string(),
            });
        }
        Ok(Self(p as u16 * 10))
    }

    /// `t` tenths of a percent, 0 to 1000 (`5` is 0.5%).
    pub fn from_tenths(t: u32) -> Result<Self, WeightsError> {
        if t > 1000 {
            return Err(WeightsError::BadPercent {
                value: format!("{}.{}", t / 10, t % 10),
            });
        }
        Ok(Self(t as u16))
    }

    /// The value in tenths of a percent (0 to 1000).
    pub const fn tenths(self) -> u16 {
        self.0
    }

    /// True for a whole number of percents.
    pub const fn is_whole(self) -> bool {
        self.0.is_multiple_of(10)
    }

    /// The rest of the traffic: `100% - self`.
    pub const fn rest(self) -> Self {
        Self(1000 - self.0)
    }

    /// True when `self` is a whole number of `unit`s (a backend holding steps of `unit`
    /// can hold it). Every value is a multiple of [`Percent::TENTH`]; a zero unit
    /// holds only zero.
    pub const fn is_multiple_of(self, unit: Self) -> bool {
        self.0.is_multiple_of(unit.0)
    }

    /// The value as a float percentage (`0.5` for 0.5%), for arithmetic on measurements.
    pub fn as_f64(self) -> f64 {
        f64::from(self.0) / 10.0
    }
}

impl PartialEq<u32> for Percent {
    /// Compares with whole percents: `Percent::whole(10)? == 10`.
    fn eq(&self, whole: &u32) -> bool {
        u64::from(self.0) == u64::from(*whole) * 10
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_whole() {
            write!(f, "{}%", self.0 / 10)
        } else {
            write!(f, "{}.{}%", self.0 / 10, self.0 % 10)
        }
    }
}

impl fmt::Debug for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Percent({self})")
    }
}

impl FromStr for Percent {
    type Err = WeightsError;

    /// `"25"`, `"25%"`, `"0.5"`, `"0.5%"`: 0 to 100 with at most one decimal.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || WeightsError::BadPercent {
            value: s.chars().take(32).collect(),
        };
        let t = s.trim();
        let t = t.strip_suffix('%').unwrap_or(t).trim_end();
        let (int, frac) = match t.split_once('.') {
            Some((int, frac)) if frac.len() == 1 => (int, frac),
            Some(_) => return Err(bad()),
            None => (t, ""),
        };
        let digits =
            |d: &str| !d.is_empty() && d.len() <= 3 && d.bytes().all(|b| b.is_ascii_digit());
        if !digits(int) || (!frac.is_empty() && !digits(frac)) {
            return Err(bad());
        }
        let int: u32 = int.parse().map_err(|_| bad())?;
        let frac: u32 = if frac.is_empty() {
            0
        } else {
            frac.parse().map_err(|_| bad())?
        };
        Self::from_tenths(int * 10 + frac).map_err(|_| bad())
    }
}

impl TryFrom<f64> for Percent {
    type Error = WeightsError;

    /// A float such as a TOML `0.5`: accepted only when it is a whole number of tenths
    /// (within floating-point noise) from 0 to 100.
    fn try_from(v: f64) -> Result<Self, Self::Error> {
        let tenths = v * 10.0;
        let rounded = tenths.round();
        if !v.is_finite() || (tenths - rounded).abs() > 1e-6 || !(0.0..=1000.0).contains(&rounded) {
            return Err(WeightsError::BadPercent {
                value: v.to_string(),
            });
        }
        Ok(Self(rounded as u16))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_people_write_and_nothing_else() {
        let table: &[(&str, Option<u16>)] = &[
            ("0", Some(0)),
            ("0.1", Some(1)),
            ("0.5%", Some(5)),
            (" 25 % ", Some(250)),
            ("100", Some(1000)),
            ("100.0", Some(1000)),
            ("99.9", Some(999)),
            ("100.1", None),
            ("0.05", None),
            ("-1", None),
            ("", None),
            (".5", None),
            ("5.", None),
            ("1e1", None),
            ("0x10", None),
            ("1000", None),
            ("NaN", None),
        ];
        for (s, want) in table {
            assert_eq!(
                s.parse::<Percent>().ok().map(Percent::tenths),
                *want,
                "{s:?}"
            );
        }
    }

    #[test]
    fn floats_must_be_whole_tenths() {
        assert_eq!(Percent::try_from(0.5).unwrap().tenths(), 5);
        assert_eq!(Percent::try_from(0.1 + 0.2).unwrap().tenths(), 3);
        assert!(Percent::try_from(0.25).is_err());
        assert!(Percent::try_from(f64::NAN).is_err());
        assert!(Percent::try_from(-0.1).is_err());
        assert!(Percent::try_from(100.1).is_err());
    }

    #[test]
    fn displays_and_compares() {
        assert_eq!(Percent::TENTH.to_string(), "0.1%");
        assert_eq!(Percent::ALL.to_string(), "100%");
        assert_eq!(Percent::from_tenths(5).unwrap().rest().to_string(), "99.5%");
        assert!(Percent::whole(5).unwrap().is_multiple_of(Percent::ONE));
        assert!(!Percent::TENTH.is_multiple_of(Percent::ONE));
        assert!(Percent::ZERO.is_multiple_of(Percent::ZERO));
        assert!(Percent::TENTH < Percent::ONE);
    }
}
