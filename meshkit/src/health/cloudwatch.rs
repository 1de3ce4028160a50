//! [`CloudWatchMetric`]: a CloudWatch metric summed over a window must stay at or
//! below a threshold.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_cloudwatch::Client;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};

use super::{CheckContext, HealthCheck, Verdict};
use crate::aws::traffic_error;
use crate::error::ConfigError;

/// The namespace of Container Insights' Prometheus metrics, where App Mesh's Envoy
/// metrics land.
pub const ENVOY_NAMESPACE: &str = "ECS/ContainerInsights/Prometheus";

/// A CloudWatch metric (with a statistic, `Sum` by default, per period) summed over the
/// last `window` (or its worst period, with [`CloudWatchMetricBuilder::worst_period`]);
/// healthy when the total is at most `max`, unhealthy when strictly greater. No datapoint in the window is inconclusive, never healthy (the AWS canary
/// pipeline treated it as healthy). Uses `GetMetricData`, following pagination.
///
/// ```no_run
/// # fn example(sdk: meshkit::sdk::SdkConfig) -> Result<(), meshkit::ConfigError> {
/// use std::time::Duration;
/// use meshkit::health::CloudWatchMetric;
///
/// // The canary pipeline's check: the new node's ingress 5xx over 10 minutes, at most 1.
/// let check = CloudWatchMetric::envoy_5xx(
///     meshkit::sdk::cloudwatch::Client::new(&sdk),
///     "prod",              // ClusterName
///     "payments-abc123",   // TaskDefinitionFamily
///     "payments-abc123",   // appmesh_virtual_node
/// )
/// .window(Duration::from_secs(600))
/// .max(1.0)
/// .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct CloudWatchMetric {
    client: Client,
    namespace: String,
    metric: String,
    dimensions: Vec<(String, String)>,
    stat: String,
    period: Duration,
    window: Duration,
    max: f64,
    worst: bool,
    /// A traffic metric (summed) whose datapoints mean this one's absence is 0.
    zero_with: Option<String>,
    name: String,
}

/// Builder for [`CloudWatchMetric`].
#[derive(Debug, Clone)]
pub struct CloudWatchMetricBuilder {
    inner: CloudWatchMetric,
    name: Option<String>,
}

impl CloudWatchMetric {
    /// A check on `metric` in `namespace`. Defaults: statistic `Sum`, period 60 s,
    /// window 5 min, max 0.
    pub fn builder(
        client: Client,
        namespace: impl Into<String>,
        metric: impl Into<String>,
    ) -> CloudWatchMetricBuilder {
        CloudWatchMetricBuilder {
            inner: CloudWatchMetric {
                client,
                namespace: namespace.into(),
                metric: metric.into(),
                dimensions: Vec::new(),
                stat: "Sum".into(),
                period: Duration::from_secs(60),
                window: Duration::from_secs(300),
                max: 0.0,
                worst: false,
                zero_with: None,
                name: String::new(),
            },
            name: None,
        }
    }

    /// The AWS canary pipeline's metric: a virtual node's ingress 5xx responses as
    /// Envoy reports them through Container Insights (`envoy_http_downstream_rq_xx`,
    /// class 5, prefix `ingress`).
    pub fn envoy_5xx(
        client: Client,
        cluster: impl Into<String>,
        task_definition_family: impl Into<String>,
        virtual_node: impl Into<String>,
    ) -> CloudWatchMetricBuilder {
        Self::builder(client, ENVOY_NAMESPACE, "envoy_http_downstream_rq_xx")
            .dimension("TaskDefinitionFamily", task_definition_family)
            .dimension("envoy_http_conn_manager_prefix", "ingress")
            .dimension("envoy_response_code_class", "5")
            .dimension("ClusterName", cluster)
            .dimension("appmesh_virtual_node", virtual_node)
    }

    /// A load balancer target group's 5xx responses (`AWS/ApplicationELB`
    /// `HTTPCode_Target_5XX_Count`, summed). `load_balancer` and `target_group` are
    /// the metric dimensions (`app/<name>/<id>`, `targetgroup/<name>/<id>`) or the
    /// load balancer's, a listener's or rule's, and the group's ARNs. The load
    /// balancer publishes the count only when it is not 0: no datapoint while the group
    /// had requests (`RequestCount`) is 0, healthy; no requests either is inconclusive.
    #[cfg(feature = "elbv2")]
    pub fn target_5xx(
        client: Client,
        load_balancer: impl Into<String>,
        target_group: impl Into<String>,
    ) -> CloudWatchMetricBuilder {
        Self::builder(client, "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count")
            .dimension("TargetGroup", elb_dimension(target_group.into()))
            .dimension("LoadBalancer", elb_dimension(load_balancer.into()))
            .absent_is_zero_with("RequestCount")
            .name("target 5xx")
    }

    /// A load balancer target group's response time in seconds (`AWS/ApplicationELB`
    /// `TargetResponseTime`), its `p99` per minute, the worst minute of the window
    /// compared with `max`. Dimensions as for [`CloudWatchMetric::target_5xx`].
    #[cfg(feature = "elbv2")]
    pub fn target_response_time(
        client: Client,
        load_balancer: impl Into<String>,
        target_group: impl Into<String>,
    ) -> CloudWatchMetricBuilder {
        Self::builder(client, "AWS/ApplicationELB", "TargetResponseTime")
            .dimension("TargetGroup", elb_dimension(target_group.into()))
            .dimension("LoadBalancer", elb_dimension(load_balancer.into()))
            .stat("p99")
            .worst_period()
            .name("target response time")
    }

    /// A VPC Lattice target group's 5xx responses (`AWS/VpcLattice`
    /// `HTTPCode_5XX_Count` with dimension `TargetGroup`, the group's id `tg-…`),
    /// summed. Lattice publishes its metrics, zeros included, once the group takes
    /// traffic: no datapoint means no traffic yet, inconclusive.
    #[cfg(feature = "vpclattice")]
    pub fn lattice_5xx(
        client: Client,
        target_group_id: impl Into<String>,
    ) -> CloudWatchMetricBuilder {
        Self::builder(client, "AWS/VpcLattice", "HTTPCode_5XX_Count")
            .dimension("TargetGroup", lattice_id(target_group_id.into()))
            .name("lattice 5xx")
    }

    /// A VPC Lattice target group's request time in milliseconds (`AWS/VpcLattice`
    /// `RequestTime`), its `p99` per minute, the worst minute compared with `max`.
    #[cfg(feature = "vpclattice")]
    pub fn lattice_request_time(
        client: Client,
        target_group_id: impl Into<String>,
    ) -> CloudWatchMetricBuilder {
        Self::builder(client, "AWS/VpcLattice", "RequestTime")
            .dimension("TargetGroup", lattice_id(target_group_id.into()))
            .stat("p99")
            .worst_period()
            .name("lattice request time")
    }

    /// The sum of the statistic over the window (or its largest value with
    /// `worst_period`), or `None` without datapoints.
    async fn total(&self) -> Result<Option<f64>, crate::TrafficError> {
        self.total_of(&self.metric, &self.stat, self.worst).await
    }

    /// [`CloudWatchMetric::total`] of another metric with the same namespace and
    /// dimensions.
    async fn total_of(
        &self,
        metric: &str,
        stat: &str,
        worst: bool,
    ) -> Result<Option<f64>, crate::TrafficError> {
        let end = SystemTime::now();
        let start = end
            .checked_sub(self.window)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let dimensions = self
            .dimensions
            .iter()
            .map(|(k, v)| Dimension::builder().name(k).value(v).build())
            .collect::<Vec<_>>();
        let period = i32::try_from(self.period.as_secs()).unwrap_or(i32::MAX);
        let query = MetricDataQuery::builder()
            .id("m")
            .return_data(true)
            .metric_stat(
                MetricStat::builder()
                    .metric(
                        Metric::builder()
                            .namespace(&self.namespace)
                            .metric_name(metric)
                            .set_dimensions(Some(dimensions))
                            .build(),
                    )
                    .period(period)
                    .stat(stat)
                    .build(),
            )
            .build();
        let (mut total, mut seen, mut token) = (0.0, false, None);
        loop {
            let page = self
                .client
                .get_metric_data()
                .metric_data_queries(query.clone())
                .start_time(DateTime::from(start))
                .end_time(DateTime::from(end))
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| traffic_error(&format!("GetMetricData {metric}"), e))?;
            for result in page.metric_data_results.unwrap_or_default() {
                let values = result.values.unwrap_or_default();
                seen |= !values.is_empty();
                if worst {
                    total = values.iter().copied().fold(total, f64::max);
                } else {
                    total += values.iter().sum::<f64>();
                }
            }
            token = page.next_token;
            if token.is_none() {
                return Ok(seen.then_some(total));
            }
        }
    }
}

impl CloudWatchMetricBuilder {
    /// Adds a dimension the metric must have.
    pub fn dimension(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.inner.dimensions.push((name.into(), value.into()));
        self
    }

    /// The statistic per period: `Sum` (default), `Average`, `Maximum`, `p99`…
    pub fn stat(mut self, stat: impl Into<String>) -> Self {
        self.inner.stat = stat.into();
        self
    }

    /// The period of each datapoint. Default: 60 s.
    pub fn period(mut self, period: Duration) -> Self {
        self.inner.period = period;
        self
    }

    /// How far back to sum. Default: 5 min.
    pub fn window(mut self, window: Duration) -> Self {
        self.inner.window = window;
        self
    }

    /// When the metric has no datapoint in the window but `metric` (same namespace and
    /// dimensions, summed) has some above 0, the metric counts as 0: for counts a
    /// service publishes only when not 0, such as a load balancer's 5xx count.
    pub fn absent_is_zero_with(mut self, metric: impl Into<String>) -> Self {
        self.inner.zero_with = Some(metric.into());
        self
    }

    /// Compare the worst period of the window with `max` instead of the window's sum:
    /// for statistics that do not add up, such as a latency percentile or an average.
    pub fn worst_period(mut self) -> Self {
        self.inner.worst = true;
        self
    }

    /// The highest healthy total. Default: 0.
    pub fn max(mut self, max: f64) -> Self {
        self.inner.max = max;
        self
    }

    /// The name in events. Default: `cloudwatch <metric>`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<CloudWatchMetric, ConfigError> {
        let mut c = self.inner;
        let bad = |m: &str| ConfigError::Check(format!("cloudwatch check: {m}"));
        if c.namespace.trim().is_empty() || c.metric.trim().is_empty() {
            return Err(bad("namespace and metric name are required"));
        }
        if c.period.as_secs() < 1 || c.window < c.period {
            return Err(bad(
                "the period must be at least 1 s and the window at least one period",
            ));
        }
        if c.max.is_nan() {
            return Err(bad("max is not a number"));
        }
        c.name = self
            .name
            .unwrap_or_else(|| format!("cloudwatch {}", c.metric));
        Ok(c)
    }
}

#[async_trait]
impl HealthCheck for CloudWatchMetric {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self, _ctx: &CheckContext) -> Verdict {
        match self.total().await {
            Ok(Some(total)) if total > self.max => Verdict::unhealthy(format!(
                "{} {} = {total} {} the last {:?}, more than {}",
                self.stat,
                self.metric,
                if self.worst { "at worst over" } else { "over" },
                self.window,
                self.max
            )),
            Ok(Some(_)) => Verdict::Healthy,
            Ok(None) => match &self.zero_with {
                Some(traffic) => match self.total_of(traffic, "Sum", false).await {
                    Ok(Some(n)) if n > 0.0 && self.max >= 0.0 => Verdict::Healthy,
                    Ok(_) => Verdict::inconclusive(format!(
                        "no {} and no {traffic} datapoints in the last {:?}",
                        self.metric, self.window
                    )),
                    Err(e) => Verdict::inconclusive(e.to_string()),
                },
                None => Verdict::inconclusive(format!(
                    "no {} datapoints in the last {:?}",
                    self.metric, self.window
                )),
            },
            Err(e) => Verdict::inconclusive(e.to_string()),
        }
    }
}

/// A CloudWatch dimension value from what a user may give: the value itself, or an
/// ARN (`...:loadbalancer/app/web/1`, a listener's or rule's, `...:targetgroup/web/1`).
#[cfg(feature = "elbv2")]
fn elb_dimension(given: String) -> String {
    if !given.starts_with("arn:") {
        return given;
    }
    if given.contains(":targetgroup/") {
        return crate::traffic::elb::target_group_dimension(&given).to_owned();
    }
    if let Some((_, rest)) = given.split_once(":loadbalancer/") {
        return rest.to_owned();
    }
    crate::traffic::elb::ElbRoute::parse(&given)
        .map(|r| r.load_balancer_dimension().to_owned())
        .unwrap_or(given)
}

/// A Lattice target group id from an id or an ARN (`…:targetgroup/tg-…`).
#[cfg(feature = "vpclattice")]
fn lattice_id(given: String) -> String {
    given
        .rsplit('/')
        .next()
        .map_or(given.clone(), str::to_owned)
}
