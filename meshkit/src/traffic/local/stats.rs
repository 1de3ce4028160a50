//! Per-target statistics: totals, a Prometheus histogram, and per-second windows.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::table::Padded;
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

/// One target's counters, in one shard per gateway worker so workers never wait for
/// each other; reads add the shards up. `second` arguments count from the mesh's start.
#[derive(Debug)]
pub(crate) struct TargetStats {
    shards: Box<[Padded<Mutex<Inner>>]>,
}

impl Default for TargetStats {
    fn default() -> Self {
        Self::new(1)
    }
}

/// 1 µs to 60 s at 2 significant digits. These bounds are valid, so this is always
/// `Some`; without a histogram latency is simply not tracked.
fn new_histogram() -> Option<Histogram<u64>> {
    Histogram::new_with_bounds(1, 60_000_000, 2).ok()
}

impl Inner {
    fn record(&mut self, second: u64, status: Option<u16>, latency: Duration) {
        self.totals.requests += 1;
        let failed = match status {
            Some(code) => {
                let class = usize::from((code / 100).clamp(1, 5)) - 1;
                self.totals.responses[class] += 1;
                code >= 500
            }
            None => {
                self.totals.upstream_errors += 1;
                self.totals.responses[4] += 1;
                true
            }
        };
        let secs = latency.as_secs_f64();
        self.latency_sum += secs;
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i] += 1;
        }
        if self.slots.back().is_none_or(|slot| slot.second != second) {
            let reuse = if self.slots.len() as u64 >= WINDOW_SLOTS {
                self.slots.pop_front()
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
            self.slots.push_back(slot);
        }
        if let Some(slot) = self.slots.back_mut() {
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
}

impl TargetStats {
    /// Counters in `shards` shards (at least one).
    pub(crate) fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1)).map(|_| Padded::default()).collect(),
        }
    }

    fn each(&self, mut f: impl FnMut(&Inner)) {
        for shard in &self.shards {
            f(&shard.0.lock().unwrap_or_else(|e| e.into_inner()));
        }
    }

    /// Records one request in `shard`: `status` is `None` when the target did not
    /// answer.
    pub(crate) fn record(&self, shard: usize, second: u64, status: Option<u16>, latency: Duration) {
        if let Some(s) = self.shards.get(shard % self.shards.len()) {
            s.0.lock()
                .unwrap_or_else(|e| e.into_inner())
                .record(second, status, latency);
        }
    }

    pub(crate) fn totals(&self) -> TargetTotals {
        let mut t = TargetTotals::default();
        self.each(|s| {
            t.requests += s.totals.requests;
            t.upstream_errors += s.totals.upstream_errors;
            for (sum, n) in t.responses.iter_mut().zip(s.totals.responses) {
                *sum += n;
            }
        });
        t
    }

    /// Requests, failures and p99 over the seconds in `(now - window, now]`.
    pub(crate) fn window(&self, now: u64, window: Duration) -> WindowStats {
        let span = window.as_secs().max(1);
        let mut hist = new_histogram();
        let (mut requests, mut failures) = (0, 0);
        self.each(|s| {
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
        });
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
        let totals = self.totals();
        let (mut buckets, mut latency_sum) = ([0u64; BUCKETS.len()], 0.0);
        self.each(|s| {
            latency_sum += s.latency_sum;
            for (sum, n) in buckets.iter_mut().zip(s.buckets) {
                *sum += n;
            }
        });
        let l = format!("route=\"{}\",target=\"{}\"", escape(route), escape(target));
        let _ = writeln!(out, "meshkit_requests_total{{{l}}} {}", totals.requests);
        for (i, n) in totals.responses.iter().enumerate() {
            let _ = writeln!(
                out,
                "meshkit_responses_total{{{l},class=\"{}xx\"}} {n}",
                i + 1
            );
        }
        let _ = writeln!(
            out,
            "meshkit_upstream_errors_total{{{l}}} {}",
            totals.upstream_errors
        );
        let mut cumulative = 0;
        for (b, n) in BUCKETS.iter().zip(buckets.iter()) {
            cumulative += n;
            let _ = writeln!(
                out,
                "meshkit_request_duration_seconds_bucket{{{l},le=\"{b}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "meshkit_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} {}",
            totals.requests
        );
        let _ = writeln!(
            out,
            "meshkit_request_duration_seconds_sum{{{l}}} {latency_sum}"
        );
        let _ = writeln!(
            out,
            "meshkit_request_duration_seconds_count{{{l}}} {}",
            totals.requests
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
        // Two shards, as with two workers: reads add them up.
        let t = TargetStats::new(2);
        for sec in 0..10 {
            for i in 0..10u64 {
                let status = if sec >= 8 && i < 5 { 500 } else { 200 };
                t.record(i as usize, sec, Some(status), Duration::from_millis(i + 1));
            }
        }
        t.record(1, 9, None, Duration::from_millis(100));
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
