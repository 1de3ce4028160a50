//! `CloudWatchMetric` against the moto emulator, with datapoints put by
//! `PutMetricData`: the canary pipeline's 5xx check. Real time (a real process).

use std::time::{Duration, SystemTime};

use meshkit::health::{CheckContext, CloudWatchMetric, HealthCheck, Verdict};
use meshkit::traffic::Weights;
use meshkit_testing::MotoServer;
use meshkit_testing::cloudwatch::put_envoy_5xx;

fn ctx() -> CheckContext {
    CheckContext {
        stage: 0,
        stable: "payments-v1".into(),
        candidate: "payments-abc123".into(),
        weights: Weights::split("payments-v1", "payments-abc123", 10).unwrap(),
        stage_elapsed: Duration::ZERO,
    }
}

async fn put_5xx(client: &aws_sdk_cloudwatch::Client, node: &str, ago: Duration, value: f64) {
    put_envoy_5xx(
        client,
        "prod",
        "payments",
        node,
        SystemTime::now() - ago,
        value,
    )
    .await;
}

fn check(client: &aws_sdk_cloudwatch::Client, node: &str) -> CloudWatchMetric {
    CloudWatchMetric::envoy_5xx(client.clone(), "prod", "payments", node)
        .window(Duration::from_secs(600))
        .max(1.0)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipelines_5xx_check_is_strict_and_no_data_is_inconclusive() {
    let moto = MotoServer::start().unwrap_or_else(|e| panic!("{e}"));
    let client = aws_sdk_cloudwatch::Client::new(&moto.sdk_config());

    // No datapoints at all: inconclusive, not healthy (the pipeline said healthy).
    match check(&client, "payments-abc123").check(&ctx()).await {
        Verdict::Inconclusive { reason } => assert!(
            reason.contains("no envoy_http_downstream_rq_xx datapoints"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }

    // 1 in the window: not more than the threshold of 1.
    put_5xx(&client, "payments-abc123", Duration::from_secs(120), 1.0).await;
    // Outside the 10-minute window, and another node's: neither counts.
    put_5xx(&client, "payments-abc123", Duration::from_secs(3600), 50.0).await;
    put_5xx(&client, "payments-old", Duration::from_secs(60), 50.0).await;
    assert_eq!(
        check(&client, "payments-abc123").check(&ctx()).await,
        Verdict::Healthy
    );

    // 2 in the window: strictly greater than 1.
    put_5xx(&client, "payments-abc123", Duration::from_secs(30), 1.0).await;
    match check(&client, "payments-abc123").check(&ctx()).await {
        Verdict::Unhealthy { reason } => {
            assert!(
                reason.contains("Sum envoy_http_downstream_rq_xx = 2"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
}
