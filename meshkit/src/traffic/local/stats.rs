//! Per-target statistics: totals, a Prometheus histogram, and per-second windows.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::health::WindowStats;

/// Upper bounds of the Prometheus latency buckets, in seconds.
const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How many one-second slots are kept (the longest window that can be asked for).
pub(crate) const WINDOW_SLOTS: u64 = 300;

/// Everything counted for one target of one route since the mesh started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetTotals {
    /// Requests sent to the target (answered or not).
    pub requests: u64,
    /// Responses by status class: index 0 is 1xx, 4 is 5xx (mesh-made 502/504 included).
    pub responses: [u64; 5],
    /// Requests that got no answer from the target (refused, reset, timed out).
    pub upstream_errors: u64,
}

#[derive(Debug)]
struct Slot {
    second: u64,
    requests: u64,
    failures: u64,
    latency_us: Option<Histogram<u64>>,
}

#[derive(Debug, Default)]
struct Inner {
    totals: TargetTotals,
    buckets: [u64; BUCKETS.len()],
    latency_sum: f64,
    slots: VecDeque<Slot>,
}

/// One target's counters. `second` arguments count from the mesh's start.
#[derive(Debug, Default)]
pub(crate) struct TargetStats {
    inner: Mutex<Inner>,
}

/// 1 µs to 60 s at 2 significant digits. These bounds are valid, so this is always
/// `Some`; without a histogram latency is simply not tracked.
fn new_histogram() -> Option<Histogram<u64>> {
    Histogram::new_with_bounds(1, 60_000_000, 2).ok()
}

impl TargetStats {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one request: `status` is `None` when the target did not answer.
    pub(crate) fn record(&self, second: u64, status: Option<u16>, latency: Duration) {
        let mut s = self.lock();
        s.totals.requests += 1;
        let failed = match status {
            Some(code) => {
                let class = usize::from((code / 100).clamp(1, 5)) - 1;
                s.totals.responses[class] += 1;
                code >= 500
            }
            None => {
                s.totals.upstream_errors += 1;
                s.totals.responses[4] += 1;
                true
            }
        };
        let secs = latency.as_secs_f64();
        s.latency_sum += secs;
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            s.buckets[i] += 1;
        }
        if s.slots.back().is_none_or(|slot| slot.second != second) {
            let reuse = if s.slots.len() as u64 >= WINDOW_SLOTS {
                s.slots.pop_front()
            } else {
                None
            };
            let mut slot = reuse.unwrap_or_else(|| Slot {
                second,
                requests: 0,
                failures: 0,
                latency_us: new_histogram(),
            });
            slot.second = second;
            slot.requests = 0;
            slot.failures = 0;
            if let Some(h) = slot.latency_us.as_mut() {
                h.reset();
            }
            s.slots.push_back(slot);
        }
        if let Some(slot) = s.slots.back_mut() {
            slot.requests += 1;
            slot.failures += u64::from(failed);
            if let Some(h) = slot.latency_us.as_mut() {
                h.saturating_record(
                    u64::try_from(latency.as_micros())
                        .unwrap_or(u64::MAX)
                        .max(1),
                );
            }
        }
    }

    pub(crate) fn totals(&self) -> TargetTotals {
        self.lock().totals.clone()
    }

    /// Requests, failures and p99 over the seconds in `(now - window, now]`.
    pub(crate) fn window(&self, now: u64, window: Duration) -> WindowStats {
        let span = window.as_secs().max(1);
        let s = self.lock();
        let mut hist = new_histogram();
        let (mut requests, mut failures) = (0, 0);
        for slot in s
            .slots
            .iter()
            .filter(|sl| sl.second + span > now && sl.second <= now)
        {
            requests += slot.requests;
            failures += slot.failures;
            if let (Some(h), Some(sh)) = (hist.as_mut(), slot.latency_us.as_ref()) {
                let _ = h.add(sh);
            }
        }
        let p99 = hist
            .filter(|_| requests > 0)
            .map(|h| Duration::from_micros(h.value_at_quantile(0.99)));
        WindowStats {
            requests,
            failures,
            p99,
        }
    }

    /// Appends this target's Prometheus samples.
    pub(crate) fn render(&self, out: &mut String, route: &str, target: &str) {
        let s = self.lock();
        let l = format!("route=\"{}\",target=\"{}\"", escape(route), escape(target));
        let _ = writeln!(out, "meshkit_requests_total{{{l}}} {}", s.totals.requests);
        for (i, n) in s.totals.responses.iter().enumerate() {
            let _ = writeln!(
                out,
                "meshkit_responses_total{{{l},class=\"{}xx\"}} {n}",
                i + 1
            );
        }
        let _ = writeln!(
            out,
            "meshkit_upstream_errors_total{{{l}}} {}",
            s.totals.upstream_errors
        );
        let mut cumulative = 0;
        for (b, n) in BUCKETS.iter().zip(s.buckets.iter()) {
            cumulative += n;
            let _ = writeln!(
                out,
                "meshkit_request_duration_seconds_bucket{{{l},le=\"{b}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "meshkit_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} {}",
            s.totals.requests
        );
        let _ = writeln!(
            out,
            "meshkit_request_duration_seconds_sum{{{l}}} {}",
            s.latency_sum
        );
        let _ = writeln!(
            out,
            "meshkit_request_duration_seconds_count{{{l}}} {}",
            s.totals.requests
        );
    }
}

/// Escapes a Prometheus label value.
pub(crate) fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_count_only_recent_seconds() {
        let t = TargetStats::default();
        for sec in 0..10 {
            for i in 0..10u64 {
                let status = if sec >= 8 && i < 5 { 500 } else { 200 };
                t.record(sec, Some(status), Duration::from_millis(i + 1));
            }
        }
        t.record(9, None, Duration::from_millis(100));
        let w = t.window(9, Duration::from_secs(2));
        assert_eq!((w.requests, w.failures), (21, 11));
        assert!(w.p99.unwrap() >= Duration::from_millis(10));
        assert_eq!(t.window(9, Duration::from_secs(100)).requests, 101);
        assert_eq!(t.window(30, Duration::from_secs(5)).requests, 0);
        assert_eq!(t.window(30, Duration::from_secs(5)).p99, None);
        let totals = t.totals();
        assert_eq!(
            (
                totals.requests,
                totals.responses[1],
                totals.responses[4],
                totals.upstream_errors
            ),
            (101, 90, 11, 1)
        );
        let mut text = String::new();
        t.render(&mut text, "split", "blue");
        assert!(
            text.contains(
                "meshkit_responses_total{route=\"split\",target=\"blue\",class=\"5xx\"} 11"
            ),
            "{text}"
        );
        assert!(text.contains("meshkit_request_duration_seconds_bucket{route=\"split\",target=\"blue\",le=\"+Inf\"} 101"));
    }
}
