//! What the page is sent: the list of rollouts and one rollout's live view, as JSON,
//! with nothing of AWS beyond route names (account ids and regions are cut out of
//! ARNs).

use std::time::SystemTime;

use serde_json::{Value, json};

use crate::store::{
    Entry, GateRequest, Lease, RecordState, RolloutRecord, Summary, decode_weights,
};

/// Milliseconds since the Unix epoch (what the page's `Date` takes).
pub(crate) fn ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `s` with every ARN cut down to its resource (`arn:aws:elasticloadbalancing:
/// eu-west-1:123456789012:listener-rule/app/web/…` becomes `listener-rule/app/web/…`):
/// the page shows route names, not accounts or regions.
pub(crate) fn public(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("arn:") {
        let starts_word = at == 0 || !rest.as_bytes()[at - 1].is_ascii_alphanumeric();
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| c.is_whitespace() || "\"'(),;<>[]{}".contains(c))
            .unwrap_or(tail.len());
        let arn = &tail[..end];
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        if starts_word && parts.len() == 6 && !parts[5].is_empty() {
            out.push_str(parts[5]);
        } else {
            out.push_str(arn);
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    mask_accounts(&out)
}

/// Runs of exactly 12 digits (AWS account ids) as `############`.
fn mask_accounts(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        let run = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if run == 0 {
            let ch = s[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8().max(1);
        } else {
            if run == 12 {
                out.push_str("############");
            } else {
                out.push_str(&s[i..i + run]);
            }
            i += run;
        }
    }
    out
}

/// What the page is told when the store fails: no error text (a DynamoDB error names
/// roles, tables and regions; a SQLite one, paths), which goes to the log instead.
pub(crate) fn trouble(what: &str, e: &dyn std::fmt::Display) -> String {
    tracing::warn!(error = %e, "web view: {what}");
    format!("{what} (the server's log says why)")
}

/// A split in encoded form as `{target: percent}`, in the route's order.
fn shares(encoded: &str) -> Option<Value> {
    let w = decode_weights(encoded)?;
    Some(Value::Array(
        w.iter()
            .map(|(name, _)| json!([public(name), w.percent_f64(name)]))
            .collect(),
    ))
}

/// One line of the history list.
pub(crate) fn summary(s: &Summary) -> Value {
    json!({
        "id": s.id, "route": public(&s.route), "from": public(&s.stable),
        "to": public(&s.candidate), "strategy": s.strategy, "state": s.state.as_str(),
        "detail": s.detail.as_deref().map(public), "started": ms(s.started),
        "ended": s.ended.map(ms), "by": public(&s.started_by),
    })
}

/// The history list.
pub(crate) fn list(lines: &[Summary]) -> Value {
    json!({ "rollouts": lines.iter().map(summary).collect::<Vec<_>>() })
}

/// Kinds of lines whose split is what meshkit wrote or found on the route.
const WRITTEN: [&str; 6] = [
    "Started",
    "WeightsWritten",
    "AlreadyInForce",
    "TargetRemoved",
    "DeploymentProgress",
    "Stopped",
];

/// Kinds of lines that say what the data plane does.
const DATA_PLANE: [&str; 3] = ["WeightsVerified", "TrafficMeasured", "DataPlaneUnconfirmed"];

fn line(e: &Entry) -> Value {
    json!({"at": ms(e.at), "by": public(&e.by), "kind": e.kind, "message": public(&e.message)})
}

/// The latest line of one of `kinds`.
fn latest<'a>(rec: &'a RolloutRecord, kinds: &[&str]) -> Option<&'a Entry> {
    rec.entries
        .iter()
        .rev()
        .find(|e| kinds.contains(&e.kind.as_str()))
}

/// How a verdict line reads: `healthy`, `unhealthy` or `inconclusive`.
fn verdict_kind(message: &str) -> &'static str {
    if message.contains("check: unhealthy") {
        "unhealthy"
    } else if message.contains("check: inconclusive") {
        "inconclusive"
    } else {
        "healthy"
    }
}

/// Whether gates can be asked of rollout `rec` now: it runs and holds its route's
/// lease.
pub(crate) fn actionable(rec: &RolloutRecord, lease: Option<&Lease>) -> bool {
    rec.state == RecordState::Running
        && lease.is_some_and(|l| l.rollout.as_deref() == Some(rec.rollout.id.as_str()))
}

/// One rollout's live view, with its whole timeline (`entries`); the stream sends
/// only the lines a page has not seen.
pub(crate) fn detail(
    rec: &RolloutRecord,
    lease: Option<&Lease>,
    gates: &[GateRequest],
    served: Option<&Value>,
) -> Value {
    let r = &rec.rollout;
    let series: Vec<Value> = rec
        .entries
        .iter()
        .filter_map(|e| {
            let kind = if e.kind == "WeightsVerified" {
                "applied"
            } else if WRITTEN.contains(&e.kind.as_str()) {
                "written"
            } else {
                return None;
            };
            Some(json!({"at": ms(e.at), "kind": kind, "split": shares(e.weights.as_deref()?)?}))
        })
        .collect();
    let verdict = latest(rec, &["Verdict"]).map(|e| {
        json!({"at": ms(e.at), "kind": verdict_kind(&e.message), "message": public(&e.message)})
    });
    // What the data plane said about the split in force: nothing when the last write
    // came after its last report.
    let position = |kinds: &[&str]| {
        rec.entries
            .iter()
            .rposition(|e| kinds.contains(&e.kind.as_str()))
    };
    let reported = position(&DATA_PLANE);
    let data_plane = reported
        .filter(|r| {
            position(&["WeightsWritten", "AlreadyInForce", "TargetRemoved"]).is_none_or(|w| *r > w)
        })
        .map(|r| &rec.entries[r])
        .map(|e| json!({"at": ms(e.at), "kind": e.kind, "message": public(&e.message)}));
    let p = &rec.progress;
    json!({
        "id": r.id, "route": public(&r.route), "from": public(&r.stable),
        "to": public(&r.candidate), "strategy": r.strategy,
        "plan": r.plan.iter().map(|s| public(s)).collect::<Vec<_>>(),
        "state": rec.state.as_str(), "detail": rec.detail.as_deref().map(public),
        "started": ms(rec.started), "ended": rec.ended.map(ms),
        "by": public(&r.started_by.name),
        "attempts": rec.attempts.iter().map(|a| public(a)).collect::<Vec<_>>(),
        "holder": lease.map(|l| json!({
            "name": public(&l.holder.name), "since": ms(l.since), "expires": ms(l.expires),
        })),
        "progress": {
            "stage": p.stage,
            "written": p.written.as_deref().and_then(shares),
            "pending": p.pending.as_deref().and_then(shares),
            "verified": p.verified,
            "rolling_back": p.rolling_back.as_deref().map(public),
        },
        "series": series,
        "verdict": verdict,
        "data_plane": data_plane,
        "served": served,
        "gates": gates.iter().map(|g| json!({
            "gate": g.gate.as_str(), "by": public(&g.by), "at": ms(g.at),
            "applied": g.applied.map(ms),
        })).collect::<Vec<_>>(),
        "actionable": actionable(rec, lease),
        "dropped": rec.dropped,
        "entries": rec.entries.iter().map(line).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_lose_their_account_and_region() {
        let cases = [
            (
                "rule arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener-rule/app/web/1/2/3 set",
                "rule listener-rule/app/web/1/2/3 set",
            ),
            (
                "(arn:aws-cn:ecs:cn-north-1:210987654321:service-deployment/c/s/abc)",
                "(service-deployment/c/s/abc)",
            ),
            ("no arn here", "no arn here"),
            ("barn:a:b:c:d:e stays", "barn:a:b:c:d:e stays"),
            ("arn:too:short", "arn:too:short"),
            ("two arn:aws:s:r:1:x arn:aws:s:r:2:y", "two x y"),
            (
                "account 123456789012 or 1234567890123",
                "account ############ or 1234567890123",
            ),
            ("caf\u{e9} 12 \u{2192} 34", "caf\u{e9} 12 \u{2192} 34"),
            ("", ""),
        ];
        for (given, want) in cases {
            assert_eq!(public(given), want, "{given}");
        }
    }

    #[test]
    fn verdict_lines_are_classified() {
        assert_eq!(
            verdict_kind("stage 1 check: healthy (failures 0, inconclusive 0)"),
            "healthy"
        );
        assert_eq!(
            verdict_kind("stage 1 check: unhealthy: 5xx 30% (failures 1, inconclusive 0)"),
            "unhealthy"
        );
        assert_eq!(
            verdict_kind("stage 0 check: inconclusive: no data (failures 0, inconclusive 2)"),
            "inconclusive"
        );
    }
}
