//! Settings, read from the environment.

use std::time::Duration;

use sample_support::env::{self, EnvError, Lookup};

/// The service's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `SERVICE_PORT` (default 3000).
    pub port: u16,
    /// `SERVICE_NAME` (default `unknown`; an empty value is kept).
    pub name: String,
    /// `SERVICE_VERSION` (default `unknown`; an empty value is kept).
    pub version: String,
    /// `DOWNSTREAM_ALLOW`: comma list of `name` or `name:port` that `/downstream/` may
    /// fetch. Empty: `/downstream/` refuses everything.
    pub downstream_allow: Vec<String>,
    /// `DOWNSTREAM_TIMEOUT_MS` (default 3000).
    pub downstream_timeout: Duration,
    /// `DOWNSTREAM_CONCURRENCY` (default 16, at least 1): `/downstream/` calls in
    /// flight at once; more are answered 503 at once. Each holds at most one 1 MiB
    /// answer (and its copy in the response), so this bounds their memory.
    pub downstream_concurrency: usize,
    /// `FAIL_RATE` 0.0-1.0 (default 0): that share of requests answers 500.
    pub fail_rate: f64,
    /// `EXTRA_LATENCY_MS` (default 0): added to every request.
    pub extra_latency: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            port: 3000,
            name: "unknown".into(),
            version: "unknown".into(),
            downstream_allow: Vec::new(),
            downstream_timeout: Duration::from_millis(3000),
            downstream_concurrency: 16,
            fail_rate: 0.0,
            extra_latency: Duration::ZERO,
        }
    }
}

impl Config {
    /// Reads every setting through `get`; a malformed value is an error naming it.
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, EnvError> {
        let fail_rate: f64 = env::parse(get, "FAIL_RATE", 0.0, "a number from 0.0 to 1.0")?;
        if !(0.0..=1.0).contains(&fail_rate) {
            return Err(EnvError {
                name: "FAIL_RATE".into(),
                value: fail_rate.to_string(),
                expected: "a number from 0.0 to 1.0".into(),
            });
        }
        Ok(Self {
            port: env::parse(get, "SERVICE_PORT", 3000, "a port number")?,
            name: env::string(get, "SERVICE_NAME", "unknown"),
            version: env::string(get, "SERVICE_VERSION", "unknown"),
            downstream_allow: env::list(get, "DOWNSTREAM_ALLOW"),
            downstream_timeout: Duration::from_millis(env::parse(
                get,
                "DOWNSTREAM_TIMEOUT_MS",
                3000,
                "milliseconds",
            )?),
            downstream_concurrency: env::parse::<usize>(
                get,
                "DOWNSTREAM_CONCURRENCY",
                16,
                "a number of calls",
            )?
            .max(1),
            fail_rate,
            extra_latency: Duration::from_millis(env::parse(
                get,
                "EXTRA_LATENCY_MS",
                0,
                "milliseconds",
            )?),
        })
    }

    /// The address to fetch for an allowed `/downstream/<service>` segment, or `None`
    /// when it is not allowed. `name` means port 80; `name:80` matches `name` too.
    pub fn allowed(&self, service: &str) -> Option<String> {
        let norm = |s: &str| {
            if s.contains(':') {
                s.to_owned()
            } else {
                format!("{s}:80")
            }
        };
        let wanted = norm(service);
        self.downstream_allow
            .iter()
            .any(|a| norm(a) == wanted)
            .then_some(wanted)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<Config, EnvError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        Config::from_lookup(&move |k| map.get(k).cloned())
    }

    #[test]
    fn defaults_and_empty_strings() {
        assert_eq!(from(&[]).unwrap(), Config::default());
        let c = from(&[("SERVICE_NAME", ""), ("SERVICE_VERSION", "")]).unwrap();
        assert_eq!((c.name.as_str(), c.version.as_str()), ("", ""));
    }

    #[test]
    fn bad_values_are_named() {
        assert_eq!(from(&[("FAIL_RATE", "2")]).unwrap_err().name, "FAIL_RATE");
        assert_eq!(
            from(&[("SERVICE_PORT", "http")]).unwrap_err().name,
            "SERVICE_PORT"
        );
    }

    #[test]
    fn allow_list() {
        let c = from(&[("DOWNSTREAM_ALLOW", "green, api:8080")]).unwrap();
        assert_eq!(c.allowed("green").as_deref(), Some("green:80"));
        assert_eq!(c.allowed("green:80").as_deref(), Some("green:80"));
        assert_eq!(c.allowed("api:8080").as_deref(), Some("api:8080"));
        assert_eq!(c.allowed("api"), None);
        assert_eq!(c.allowed("169.254.169.254"), None);
    }
}
