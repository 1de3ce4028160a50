//! Putting the metrics a CloudWatch check reads, on the emulator.

use std::time::SystemTime;

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};

/// Puts one datapoint of a virtual node's ingress 5xx count, as Envoy reports it
/// through Container Insights (the AWS canary pipeline's metric): the dimensions the
/// pipeline's CloudWatch agent writes, with `family` the task definition family (the
/// pipeline names it after the service, without the commit) and `node` the virtual
/// node (`<service>-<sha>`). Panics on failure: it is for tests.
pub async fn put_envoy_5xx(
    client: &aws_sdk_cloudwatch::Client,
    cluster: &str,
    family: &str,
    node: &str,
    at: SystemTime,
    value: f64,
) {
    let mut datum = MetricDatum::builder()
        .metric_name("envoy_http_downstream_rq_xx")
        .value(value)
        .timestamp(DateTime::from(at));
    for (k, v) in [
        ("TaskDefinitionFamily", family),
        ("envoy_http_conn_manager_prefix", "ingress"),
        ("envoy_response_code_class", "5"),
        ("ClusterName", cluster),
        ("appmesh_virtual_node", node),
    ] {
        datum = datum.dimensions(Dimension::builder().name(k).value(v).build());
    }
    let sent = client
        .put_metric_data()
        .namespace("ECS/ContainerInsights/Prometheus")
        .metric_data(datum.build())
        .send()
        .await;
    if let Err(e) = sent {
        panic!("PutMetricData failed: {e:?}");
    }
}
