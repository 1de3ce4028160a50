//! Settings from the environment, through a lookup function so tests can pass a map.

use std::fmt;
use std::str::FromStr;

/// A setting that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvError {
    /// The variable.
    pub name: String,
    /// The value given.
    pub value: String,
    /// What was expected.
    pub expected: String,
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={:?} is not valid: expected {}",
            self.name, self.value, self.expected
        )
    }
}

impl std::error::Error for EnvError {}

/// Reads a variable; `None` when unset. Empty strings are kept as they are.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment as a [`Lookup`].
pub fn process(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A string setting with a default; an empty value is kept, not replaced.
pub fn string(get: Lookup<'_>, name: &str, default: &str) -> String {
    get(name).unwrap_or_else(|| default.to_owned())
}

/// A parsed setting with a default (an empty or unset value gives the default).
pub fn parse<T: FromStr>(
    get: Lookup<'_>,
    name: &str,
    default: T,
    expected: &str,
) -> Result<T, EnvError> {
    match get(name) {
        None => Ok(default),
        Some(v) if v.trim().is_empty() => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| EnvError {
            name: name.into(),
            value: v,
            expected: expected.into(),
        }),
    }
}

/// A comma-separated list (blank items dropped).
pub fn list(get: Lookup<'_>, name: &str) -> Vec<String> {
    get(name)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}
