//! The end-of-run summary.

use std::collections::BTreeMap;

use meshkit::traffic::local::TargetTotals;
use meshkit::{Outcome, RolloutError};
use serde::Serialize;
use traffic_client::Summary;

use crate::display::{StageVerdicts, Status};

/// What the run ended with and what it measured.
#[derive(Debug, Serialize)]
pub struct Report {
    /// `promoted`, `rolled_back` or `stopped`.
    pub outcome: &'static str,
    /// The rollout's own words.
    pub detail: String,
    /// Requests the traffic client completed.
    pub requests: u64,
    /// Requests that failed (5xx, timeouts, connection errors).
    pub failed: u64,
    /// `failed / requests`, in percent.
    pub failed_percent: f64,
    /// First unhealthy check to the rollback read back, in milliseconds (only when
    /// green had traffic to take back).
    pub rollback_ms: Option<f64>,
    /// Where traffic went after the rollout ended, in percent per target.
    pub final_split: BTreeMap<String, f64>,
    /// The original client's tally.
    pub tally: String,
    /// Why the split went back to blue (rollbacks only).
    pub why: Option<String>,
    /// The checks that ran, with their thresholds.
    pub checks: Vec<String>,
    /// The verdicts per stage, healthy ones included.
    pub verdicts: Vec<StageVerdicts>,
}

impl Report {
    /// Builds the report; `before`/`after` are the mesh totals around the tail.
    pub fn new(
        result: &Result<Outcome, RolloutError>,
        summary: &Summary,
        status: &Status,
        before: &[(String, TargetTotals)],
        after: &[(String, TargetTotals)],
        checks: Vec<String>,
    ) -> Self {
        let (outcome, detail) = match result {
            Ok(o @ Outcome::Promoted { .. }) => ("promoted", o.to_string()),
            Ok(o @ Outcome::RolledBack { .. }) => ("rolled_back", o.to_string()),
            Err(e) => ("stopped", e.to_string()),
        };
        let tail: Vec<(String, u64)> = after
            .iter()
            .map(|(name, a)| {
                let b = before
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(0, |(_, t)| t.requests);
                (name.clone(), a.requests - b.min(a.requests))
            })
            .collect();
        let tail_total = tail.iter().map(|(_, n)| n).sum::<u64>().max(1) as f64;
        let rollback_ms = match (status.first_failure, status.rolled_back_at) {
            (Some(f), Some(r)) if r >= f && status.green_max > 0.0 => {
                Some((r - f).as_secs_f64() * 1000.0)
            }
            _ => None,
        };
        Self {
            outcome,
            detail,
            requests: summary.requests,
            failed: summary.errors,
            failed_percent: if summary.requests == 0 {
                0.0
            } else {
                summary.errors as f64 * 100.0 / summary.requests as f64
            },
            rollback_ms,
            final_split: tail
                .into_iter()
                .map(|(n, c)| (n, c as f64 * 100.0 / tail_total))
                .collect(),
            tally: summary.report(),
            why: status.why.clone(),
            checks,
            verdicts: status
                .verdicts
                .values()
                .filter(|v| v.healthy + v.unhealthy + v.inconclusive > 0)
                .cloned()
                .collect(),
        }
    }

    /// The summary for people.
    pub fn lines(&self) -> Vec<String> {
        let split: Vec<String> = self
            .final_split
            .iter()
            .map(|(k, v)| format!("{k} {v:.1}%"))
            .collect();
        let mut out = vec![
            format!(
                "outcome: {} ({})",
                self.outcome.replace('_', " "),
                self.detail
            ),
            format!(
                "requests: {} sent, {} failed ({:.2}%)",
                self.requests, self.failed, self.failed_percent
            ),
            format!("traffic after the end: {}", split.join(", ")),
        ];
        for v in &self.verdicts {
            let mut counts = format!("{} healthy", v.healthy);
            for (n, what) in [(v.unhealthy, "unhealthy"), (v.inconclusive, "inconclusive")] {
                if n > 0 {
                    counts.push_str(&format!(", {n} {what}"));
                }
            }
            out.push(format!(
                "checks at stage {} ({}): {counts}",
                v.stage, v.name
            ));
        }
        if let Some(why) = &self.why {
            out.push(format!("why: {why}"));
        }
        if let Some(ms) = self.rollback_ms {
            let when = if ms < 1.0 {
                "less than 1 ms".to_string()
            } else {
                format!("{ms:.0} ms")
            };
            out.push(format!(
                "rollback: all traffic back on blue {when} after the first failed check"
            ));
        }
        out
    }

    /// 0 promoted, 3 rolled back, 4 stopped.
    pub fn exit_code(&self) -> u8 {
        match self.outcome {
            "promoted" => 0,
            "rolled_back" => 3,
            _ => 4,
        }
    }
}
