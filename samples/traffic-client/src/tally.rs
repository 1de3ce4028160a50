//! Counting answers and reporting them.

use std::collections::BTreeMap;

use serde::Serialize;

/// Counts of `service:version` answers and errors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    counts: BTreeMap<String, u64>,
    errors: u64,
}

impl Tally {
    /// Counts one answer under `key` (`service:version`).
    pub fn add(&mut self, key: String) {
        *self.counts.entry(key).or_default() += 1;
    }

    /// Counts one error (network error, timeout, non-2xx, or a body without
    /// service and version).
    pub fn add_error(&mut self) {
        self.errors += 1;
    }

    /// The original client's report: `key=count` sorted lexicographically and joined by
    /// spaces, with `error=<n>` among them when there were errors.
    pub fn report(&self) -> String {
        let mut parts: Vec<String> = self
            .counts
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if self.errors > 0 {
            parts.push(format!("error={}", self.errors));
        }
        parts.sort();
        parts.join(" ")
    }

    /// The final summary.
    pub fn summary(&self) -> Summary {
        let ok: u64 = self.counts.values().sum();
        let split = self
            .counts
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    if ok == 0 {
                        0.0
                    } else {
                        (*v as f64) * 100.0 / ok as f64
                    },
                )
            })
            .collect();
        Summary {
            requests: ok + self.errors,
            ok,
            errors: self.errors,
            counts: self.counts.clone(),
            split,
        }
    }
}

/// What a run observed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Requests that completed (answered or failed).
    pub requests: u64,
    /// Answers counted under a `service:version` key.
    pub ok: u64,
    /// Errors.
    pub errors: u64,
    /// Answers per `service:version`.
    pub counts: BTreeMap<String, u64>,
    /// Share of the counted answers per `service:version`, in percent.
    pub split: BTreeMap<String, f64>,
}

impl Summary {
    /// The original client's report (`blue:1=78 error=2 green:1=76`) for the whole run.
    pub fn report(&self) -> String {
        let mut t = Tally {
            counts: self.counts.clone(),
            errors: self.errors,
        };
        t.counts.retain(|_, v| *v > 0);
        t.report()
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "summary: requests={} ok={} errors={} split:",
            self.requests, self.ok, self.errors
        )?;
        for (k, p) in &self.split {
            write!(f, " {k}={p:.1}%")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_matches_the_original_format() {
        let mut t = Tally::default();
        for _ in 0..78 {
            t.add("blue:1".into());
        }
        for _ in 0..76 {
            t.add("green:1".into());
        }
        t.add("green:2".into());
        assert_eq!(t.report(), "blue:1=78 green:1=76 green:2=1");
        t.add_error();
        assert_eq!(t.report(), "blue:1=78 error=1 green:1=76 green:2=1");
        let s = t.summary();
        assert_eq!((s.requests, s.ok, s.errors), (156, 155, 1));
        assert!((s.split["blue:1"] - 50.32).abs() < 0.01);
    }
}
