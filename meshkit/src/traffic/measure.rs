//! [`TrafficMetrics`]: counting each target group's requests in CloudWatch since a
//! write (ALB `RequestCount`, VPC Lattice `TotalRequestCount`), to judge whether the
//! data plane applies the written weights.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::time::Instant;

use crate::aws::traffic_error;
use crate::traffic::{Convergence, Judge, TrafficError, Weights};

/// How long a router waits for [`TrafficMetrics`] to confirm a write, by default.
pub const METRICS_SETTLE_TIME: Duration = Duration::from_secs(600);

/// One target group's series: its name in [`crate::traffic::Weights`] and the
/// CloudWatch dimensions of its request count.
pub(crate) type Series = (String, Vec<(&'static str, String)>);

/// Data-plane confirmation from CloudWatch: after each write, the requests of each
/// target group (ALB `RequestCount`, VPC Lattice `TotalRequestCount`), per minute,
/// newest minutes first, from the first whole minute after the write, judged against
/// the written weights and the split before them with [`crate::traffic::judge`].
#[derive(Debug, Clone)]
pub struct TrafficMetrics {
    pub(crate) client: Client,
    pub(crate) judge: Judge,
    pub(crate) wait: Duration,
}

impl TrafficMetrics {
    /// Metrics read with `client`; [`Judge::default`] (at least 200 requests, 4
    /// standard deviations, 1 point of slack); evidence waited for up to
    /// [`super::METRICS_SETTLE_TIME`] (10 min) after each write.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            judge: Judge::default(),
            wait: METRICS_SETTLE_TIME,
        }
    }

    /// How long to wait for the metrics to confirm a write (CloudWatch publishes load
    /// balancer metrics per minute, a minute or two late). Default: 10 min. Past it,
    /// a forward step fails (the split is not known to be in force) and rolls back.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// How the counts are judged.
    pub fn judge(mut self, judge: Judge) -> Self {
        self.judge = judge;
        self
    }

    /// `metric` in `namespace` (summed) of each group per minute, newest minute first,
    /// over the whole minutes from the first minute boundary after `since` on (up to
    /// the end of the minute after `now`, so a datapoint stamped with the current
    /// minute is never missed). Each minute lists every group, 0 when it had none.
    pub(crate) async fn minutes(
        &self,
        namespace: &str,
        metric: &str,
        groups: &[Series],
        since: SystemTime,
        now: SystemTime,
    ) -> Result<Vec<Vec<(String, u64)>>, TrafficError> {
        let start = minute_ceil(since);
        let end = minute_floor(now) + Duration::from_secs(120);
        if groups.is_empty() || end <= start {
            return Ok(Vec::new());
        }
        let queries = groups
            .iter()
            .enumerate()
            .map(|(i, (_, dims))| {
                MetricDataQuery::builder()
                    .id(format!("g{i}"))
                    .return_data(true)
                    .metric_stat(
                        MetricStat::builder()
                            .metric(
                                Metric::builder()
                                    .namespace(namespace)
                                    .metric_name(metric)
                                    // In the order the service publishes them.
                                    .set_dimensions(Some(
                                        dims.iter()
                                            .map(|(k, v)| {
                                                Dimension::builder().name(*k).value(v).build()
                                            })
                                            .collect(),
                                    ))
                                    .build(),
                            )
                            .period(60)
                            .stat("Sum")
                            .build(),
                    )
                    .build()
            })
            .collect::<Vec<_>>();
        // Minute (epoch seconds) -> value per group.
        let mut by_minute: std::collections::BTreeMap<i64, Vec<f64>> = Default::default();
        let mut token = None;
        loop {
            let page = self
                .client
                .get_metric_data()
                .set_metric_data_queries(Some(queries.clone()))
                .start_time(DateTime::from(start))
                .end_time(DateTime::from(end))
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| traffic_error(&format!("GetMetricData {metric}"), e))?;
            for result in page.metric_data_results.unwrap_or_default() {
                let index = result
                    .id
                    .as_deref()
                    .and_then(|id| id.strip_prefix('g'))
                    .and_then(|i| i.parse::<usize>().ok());
                let Some(i) = index.filter(|i| *i < groups.len()) else {
                    continue;
                };
                let stamps = result.timestamps.unwrap_or_default();
                let values = result.values.unwrap_or_default();
                for (at, v) in stamps.iter().zip(values) {
                    let slot = by_minute
                        .entry(at.secs())
                        .or_insert_with(|| vec![0.0; groups.len()]);
                    slot[i] += v;
                }
            }
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
        // Counts are whole and non-negative; anything else is read as 0.
        let whole = |v: f64| {
            if v.is_finite() && v > 0.0 {
                v.round() as u64
            } else {
                0
            }
        };
        Ok(by_minute
            .into_values()
            .rev()
            .map(|values| {
                groups
                    .iter()
                    .zip(values)
                    .map(|((n, _), v)| (n.clone(), whole(v)))
                    .collect()
            })
            .collect())
    }
}

/// A router's last write of each route: when, and the split in force before it; what
/// its data-plane answers (measured, or after a settle delay) are judged from.
#[derive(Debug, Default)]
pub(crate) struct Writes(Mutex<HashMap<String, LastWrite>>);

/// One write, as [`Writes`] keeps it.
#[derive(Debug, Clone)]
pub(crate) struct LastWrite {
    /// When it was sent (tokio time, for the settle delay).
    pub(crate) at: Instant,
    /// When it was sent (wall time, for the metrics window).
    pub(crate) wall: SystemTime,
    /// The split in force before it, when known.
    pub(crate) before: Option<Weights>,
}

impl Writes {
    /// Notes a write of `route` now, from `before`.
    pub(crate) fn record(&self, route: &str, before: Option<Weights>) {
        if let Ok(mut w) = self.0.lock() {
            let last = LastWrite {
                at: Instant::now(),
                wall: SystemTime::now(),
                before,
            };
            w.insert(route.to_owned(), last);
        }
    }

    /// The last write of `route`, if this router made one.
    pub(crate) fn last(&self, route: &str) -> Option<LastWrite> {
        self.0.lock().ok()?.get(route).cloned()
    }
}

impl LastWrite {
    /// Every target of `written` and of the split before, each once.
    pub(crate) fn names<'a>(&'a self, written: &'a Weights) -> Vec<&'a str> {
        let mut names: Vec<&str> = written.iter().map(|(n, _)| n).collect();
        for (n, _) in self.before.iter().flat_map(Weights::iter) {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        names
    }

    /// Without metrics: not yet until `delay` has passed since the write, then the
    /// backend cannot tell more.
    pub(crate) fn after_delay(&self, delay: Duration, what: &str) -> Convergence {
        let waited = self.at.elapsed();
        if waited >= delay {
            Convergence::Unknown
        } else {
            Convergence::NotYet {
                detail: format!(
                    "waiting {delay:?} for {what} to apply the change ({waited:.0?} so far; no traffic metrics configured)"
                ),
            }
        }
    }
}

fn minute_floor(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + Duration::from_secs(secs - secs % 60)
}

fn minute_ceil(t: SystemTime) -> SystemTime {
    let floor = minute_floor(t);
    if floor == t {
        floor
    } else {
        floor + Duration::from_secs(60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_round_both_ways() {
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(minute_floor(at(125)), at(120));
        assert_eq!(minute_ceil(at(125)), at(180));
        assert_eq!(minute_ceil(at(120)), at(120));
        assert_eq!(minute_ceil(at(120) + Duration::from_millis(1)), at(180));
    }
}
