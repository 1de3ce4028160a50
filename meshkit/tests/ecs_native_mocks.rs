//! What the emulator cannot do to an ECS native deployment, with `aws-smithy-mocks`:
//! throttled reads and answers (ridden through, each hook still answered once) and a
//! conflict when stopping a deployment that ECS already ended.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ecs::operation::continue_service_deployment::ContinueServiceDeploymentOutput;
use aws_sdk_ecs::operation::describe_service_deployments::DescribeServiceDeploymentsOutput;
use aws_sdk_ecs::operation::list_service_deployments::ListServiceDeploymentsOutput;
use aws_sdk_ecs::types::{
    DeploymentLifecycleHookDetail, DeploymentLifecycleHookStatus, ServiceDeployment,
    ServiceDeploymentBrief, ServiceDeploymentLifecycleStage, ServiceDeploymentStatus,
    ServiceRevisionSummary,
};
use aws_smithy_mocks::{MockResponse, RuleMode, mock, mock_client};
use aws_smithy_runtime_api::http::{Response, StatusCode};
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::RetryConfig;
use meshkit::Outcome;
use meshkit::health::{self, Verdict};
use meshkit::native::{EcsNative, NativeStrategy};
use meshkit::rollout::{Event, RollbackReason};

const ARN: &str = "arn:aws:ecs:us-east-1:123456789012:service-deployment/shop/web/abc";

fn error(code: &str) -> Response {
    Response::new(
        StatusCode::try_from(400).unwrap(),
        SdkBody::from(format!(
            r#"{{"__type":"{code}","message":"injected {code}"}}"#
        )),
    )
}

fn deployment(status: &str, stage: &str, weight: f64, hook: Option<&str>) -> ServiceDeployment {
    let mut b = ServiceDeployment::builder()
        .service_deployment_arn(ARN)
        .status(ServiceDeploymentStatus::from(status))
        .lifecycle_stage(ServiceDeploymentLifecycleStage::from(stage))
        .target_service_revision(
            ServiceRevisionSummary::builder()
                .requested_production_traffic_weight(weight)
                .build(),
        );
    if let Some(h) = hook {
        b = b.lifecycle_hook_details(
            DeploymentLifecycleHookDetail::builder()
                .hook_id(h)
                .status(DeploymentLifecycleHookStatus::AwaitingAction)
                .build(),
        );
    }
    b.build()
}

fn judge(client: aws_sdk_ecs::Client, check: impl health::HealthCheck + 'static) -> EcsNative {
    EcsNative::builder()
        .client(client)
        .cluster("shop")
        .service("web")
        .strategy(NativeStrategy::Canary {
            percent: 10.0,
            bake: Duration::from_secs(60),
        })
        .check(check)
        .check_interval(Duration::from_millis(20))
        .poll_interval(Duration::from_millis(10))
        .build()
        .unwrap()
}

/// The deployment in progress, found by the judge (no task definition: carry on).
fn listed() -> aws_smithy_mocks::Rule {
    mock!(aws_sdk_ecs::Client::list_service_deployments).then_output(|| {
        ListServiceDeploymentsOutput::builder()
            .service_deployments(
                ServiceDeploymentBrief::builder()
                    .service_deployment_arn(ARN)
                    .status(ServiceDeploymentStatus::InProgress)
                    .build(),
            )
            .build()
    })
}

#[tokio::test]
async fn throttled_reads_and_answers_are_ridden_through_and_answered_once() {
    let answered = Arc::new(Mutex::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let continues = Arc::new(AtomicUsize::new(0));
    let describe = {
        let (answered, reads) = (answered.clone(), reads.clone());
        mock!(aws_sdk_ecs::Client::describe_service_deployments).then_compute_response(move |_| {
            let n = reads.fetch_add(1, Ordering::SeqCst);
            if n < 2 {
                return MockResponse::Http(error("ThrottlingException"));
            }
            let d = if *answered.lock().unwrap() {
                deployment("SUCCESSFUL", "CLEAN_UP", 100.0, None)
            } else {
                deployment(
                    "IN_PROGRESS",
                    "PRE_PRODUCTION_TRAFFIC_SHIFT",
                    0.0,
                    Some("h1"),
                )
            };
            MockResponse::Output(
                DescribeServiceDeploymentsOutput::builder()
                    .service_deployments(d)
                    .build(),
            )
        })
    };
    let cont = {
        let (answered, continues) = (answered.clone(), continues.clone());
        mock!(aws_sdk_ecs::Client::continue_service_deployment).then_compute_response(
            move |input| {
                assert_eq!(input.hook_id(), Some("h1"));
                if continues.fetch_add(1, Ordering::SeqCst) == 0 {
                    return MockResponse::Http(error("ThrottlingException"));
                }
                *answered.lock().unwrap() = true;
                MockResponse::Output(
                    ContinueServiceDeploymentOutput::builder()
                        .service_deployment_arn(ARN)
                        .build(),
                )
            },
        )
    };
    let client = mock_client!(
        aws_sdk_ecs,
        RuleMode::MatchAny,
        [&listed(), &describe, &cont],
        |c| c.retry_config(RetryConfig::disabled())
    );
    let n = judge(
        client,
        health::from_fn("ok", |_| async { Verdict::Healthy }),
    );
    let mut events = n.events();
    let outcome = n.run().await.unwrap();
    assert!(outcome.is_promoted(), "{outcome}");
    assert_eq!(
        continues.load(Ordering::SeqCst),
        2,
        "one throttled, one taken"
    );
    let mut answers = Vec::new();
    while let Some(e) = events.recv().await {
        if let Event::HookAnswered { hook_id, error, .. } = e {
            answers.push((hook_id, error));
        }
    }
    assert_eq!(
        answers,
        [("h1".to_owned(), None)],
        "the hook answered once, successfully"
    );
}

#[tokio::test]
async fn a_conflict_when_stopping_an_ended_deployment_reads_the_end() {
    let stopped = Arc::new(AtomicUsize::new(0));
    let describe = {
        let stopped = stopped.clone();
        mock!(aws_sdk_ecs::Client::describe_service_deployments).then_compute_response(move |_| {
            let d = if stopped.load(Ordering::SeqCst) > 0 {
                deployment("ROLLBACK_SUCCESSFUL", "CLEAN_UP", 0.0, None)
            } else {
                deployment("IN_PROGRESS", "PRODUCTION_TRAFFIC_SHIFT", 10.0, None)
            };
            MockResponse::Output(
                DescribeServiceDeploymentsOutput::builder()
                    .service_deployments(d)
                    .build(),
            )
        })
    };
    let stop = {
        let stopped = stopped.clone();
        mock!(aws_sdk_ecs::Client::stop_service_deployment).then_compute_response(move |_| {
            stopped.fetch_add(1, Ordering::SeqCst);
            MockResponse::Http(error("ConflictException"))
        })
    };
    let client = mock_client!(
        aws_sdk_ecs,
        RuleMode::MatchAny,
        [&listed(), &describe, &stop],
        |c| c.retry_config(RetryConfig::disabled())
    );
    let check = health::from_fn("5xx", |_| async { Verdict::unhealthy("5xx 3%") });
    match judge(client, check).run().await.unwrap() {
        Outcome::RolledBack {
            reason: RollbackReason::Unhealthy(why),
            ..
        } => assert!(why.contains("5xx")),
        other => panic!("{other}"),
    }
    assert_eq!(
        stopped.load(Ordering::SeqCst),
        1,
        "a conflict is not retried"
    );
}
