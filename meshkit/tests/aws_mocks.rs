//! What the emulator cannot do, with `aws-smithy-mocks`: throttling, conflicts, a write
//! whose response is lost, AWS's own not-found code, and ECS tasks reaching RUNNING.
//! Paused time: the mocks answer in process.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_appmesh::operation::describe_route::{DescribeRouteError, DescribeRouteOutput};
use aws_sdk_appmesh::operation::update_route::{UpdateRouteError, UpdateRouteOutput};
use aws_sdk_appmesh::types::error::{ConflictException, TooManyRequestsException};
use aws_sdk_appmesh::types::{
    HttpRoute, HttpRouteAction, HttpRouteMatch, ResourceMetadata, RouteData, RouteSpec,
    WeightedTarget,
};
use aws_sdk_ecs::operation::describe_services::{DescribeServicesError, DescribeServicesOutput};
use aws_sdk_ecs::types::{Deployment, DeploymentRolloutState, Service};
use aws_smithy_mocks::{MockResponse, RuleMode, mock, mock_client};
use aws_smithy_runtime_api::http::{Response, StatusCode};
use aws_smithy_types::DateTime;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::error::ErrorMetadata;
use aws_smithy_types::retry::RetryConfig;
use meshkit::fleet::Fleet;
use meshkit::fleet::ecs::{EcsFleet, EcsVersion};
use meshkit::rollout::Event;
use meshkit::strategy::Canary;
use meshkit::traffic::appmesh::AppMeshRouter;
use meshkit::traffic::{RouteRef, TrafficRouter, Weights, WriteRequest};
use meshkit::{FleetError, Outcome, Rollout, TrafficError};
use meshkit_testing::ScriptedHealthCheck;

const ROUTE: &str = "gophermesh/distributor-router/distributor-route";

/// What the fake App Mesh does with the next `UpdateRoute`.
#[derive(Debug, Clone, Copy)]
enum Next {
    Throttle,
    Conflict,
    /// Apply the update, then answer 503 as if the response was lost.
    ApplyAndLose,
}

#[derive(Debug)]
struct FakeMesh {
    targets: Vec<(String, i32)>,
    version: i64,
    faults: VecDeque<Next>,
    applied: usize,
}

fn spec(targets: &[(String, i32)]) -> RouteSpec {
    let mut action = HttpRouteAction::builder();
    for (node, w) in targets {
        action = action.weighted_targets(
            WeightedTarget::builder()
                .virtual_node(node)
                .weight(*w)
                .build()
                .unwrap(),
        );
    }
    RouteSpec::builder()
        .http_route(
            HttpRoute::builder()
                .r#match(HttpRouteMatch::builder().prefix("/").build())
                .action(action.build().unwrap())
                .build(),
        )
        .build()
}

fn route_data(mesh: &FakeMesh) -> RouteData {
    RouteData::builder()
        .mesh_name("gophermesh")
        .virtual_router_name("distributor-router")
        .route_name("distributor-route")
        .spec(spec(&mesh.targets))
        .metadata(
            ResourceMetadata::builder()
                .arn("arn:aws:appmesh:us-east-1:123456789012:mesh/gophermesh/virtualRouter/distributor-router/route/distributor-route")
                .version(mesh.version)
                .uid("uid")
                .created_at(DateTime::from_secs(0))
                .last_updated_at(DateTime::from_secs(mesh.version))
                .mesh_owner("123456789012")
                .resource_owner("123456789012")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

fn code(code: &str) -> ErrorMetadata {
    ErrorMetadata::builder()
        .code(code)
        .message("mocked")
        .build()
}

/// An App Mesh client over a fake route at distributorV1 100.
fn fake_app_mesh(faults: &[Next]) -> (aws_sdk_appmesh::Client, Arc<Mutex<FakeMesh>>) {
    let state = Arc::new(Mutex::new(FakeMesh {
        targets: vec![("distributorV1".into(), 100), ("distributorV2".into(), 0)],
        version: 1,
        faults: faults.iter().copied().collect(),
        applied: 0,
    }));
    let read = {
        let state = state.clone();
        mock!(aws_sdk_appmesh::Client::describe_route).then_compute_output(move |_| {
            let mesh = state.lock().unwrap();
            DescribeRouteOutput::builder()
                .route(route_data(&mesh))
                .build()
        })
    };
    let write = {
        let state = state.clone();
        mock!(aws_sdk_appmesh::Client::update_route).then_compute_response(move |input| {
            let mut mesh = state.lock().unwrap();
            let next = mesh.faults.pop_front();
            match next {
                Some(Next::Throttle) => {
                    return MockResponse::Error(UpdateRouteError::TooManyRequestsException(
                        TooManyRequestsException::builder()
                            .meta(code("TooManyRequestsException"))
                            .build(),
                    ));
                }
                Some(Next::Conflict) => {
                    return MockResponse::Error(UpdateRouteError::ConflictException(
                        ConflictException::builder()
                            .meta(code("ConflictException"))
                            .build(),
                    ));
                }
                _ => {}
            }
            let action = input.spec().unwrap().http_route.as_ref().unwrap();
            mesh.targets = action
                .action
                .as_ref()
                .unwrap()
                .weighted_targets
                .iter()
                .map(|t| (t.virtual_node.clone(), t.weight))
                .collect();
            mesh.version += 1;
            mesh.applied += 1;
            if matches!(next, Some(Next::ApplyAndLose)) {
                return MockResponse::Http(Response::new(
                    StatusCode::try_from(503).unwrap(),
                    SdkBody::empty(),
                ));
            }
            MockResponse::Output(
                UpdateRouteOutput::builder()
                    .route(route_data(&mesh))
                    .build(),
            )
        })
    };
    // SDK retries off: the rollout's writer does the retrying under test.
    let client = mock_client!(aws_sdk_appmesh, RuleMode::MatchAny, [&read, &write], |c| c
        .retry_config(RetryConfig::disabled()));
    (client, state)
}

fn split(v2: u8) -> Weights {
    Weights::split("distributorV1", "distributorV2", v2).unwrap()
}

fn canary(client: aws_sdk_appmesh::Client) -> Rollout {
    Rollout::builder()
        .router(AppMeshRouter::new(client))
        .route(ROUTE)
        .from("distributorV1")
        .to("distributorV2")
        .strategy(Canary::steps([10, 50, 100]).bake(Duration::from_secs(30)))
        .check(ScriptedHealthCheck::healthy())
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn throttled_and_conflicting_writes_are_retried_to_promotion() {
    let (client, state) = fake_app_mesh(&[Next::Throttle, Next::Conflict]);
    let rollout = canary(client);
    let mut events = rollout.events();
    let outcome = rollout.run().await.unwrap();
    assert!(matches!(outcome, Outcome::Promoted { .. }), "{outcome}");
    // 10%, 50%, 100%, then the route without the stable node.
    assert_eq!(state.lock().unwrap().applied, 4);
    let mut retries = Vec::new();
    while let Some(e) = events.recv().await {
        if let Event::WriteRetry { error, .. } = e {
            retries.push(error);
        }
    }
    assert_eq!(retries.len(), 2, "{retries:?}");
    assert!(
        retries[0].contains("TooManyRequestsException"),
        "{retries:?}"
    );
    assert!(retries[1].contains("ConflictException"), "{retries:?}");
}

#[tokio::test(start_paused = true)]
async fn a_write_whose_response_is_lost_is_recognised_on_the_next_read() {
    let (client, state) = fake_app_mesh(&[Next::ApplyAndLose]);
    let outcome = canary(client).run().await.unwrap();
    assert!(matches!(outcome, Outcome::Promoted { .. }), "{outcome}");
    let mesh = state.lock().unwrap();
    // The lost write took effect; it is not mistaken for another writer.
    assert_eq!(mesh.targets, vec![("distributorV2".into(), 100)]);
    assert!(mesh.applied <= 5, "applied {} updates", mesh.applied);
}

#[tokio::test(start_paused = true)]
async fn aws_error_codes_become_typed_errors_with_the_source_kept() {
    let missing = mock!(aws_sdk_appmesh::Client::describe_route)
        .then_error(|| DescribeRouteError::generic(code("NotFoundException")));
    let client = mock_client!(aws_sdk_appmesh, [&missing]);
    let router = AppMeshRouter::new(client);
    let rr = RouteRef::new(ROUTE).unwrap();
    let err = router.read(&rr).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(std::error::Error::source(&err).is_some());

    let forbidden = mock!(aws_sdk_appmesh::Client::update_route)
        .then_error(|| UpdateRouteError::generic(code("ForbiddenException")));
    let read = mock!(aws_sdk_appmesh::Client::describe_route).then_compute_output(|_| {
        let mesh = FakeMesh {
            targets: vec![("distributorV1".into(), 100)],
            version: 1,
            faults: VecDeque::new(),
            applied: 0,
        };
        DescribeRouteOutput::builder()
            .route(route_data(&mesh))
            .build()
    });
    let client = mock_client!(aws_sdk_appmesh, RuleMode::MatchAny, [&read, &forbidden]);
    let router = AppMeshRouter::new(client);
    let request = WriteRequest {
        weights: split(10),
        token: "t-0".into(),
    };
    let err = router.write(&rr, &request).await.unwrap_err();
    assert!(matches!(err, TrafficError::Forbidden { .. }), "{err}");
    assert!(!err.is_retryable());
    let bad = RouteRef::new("no-slashes").unwrap();
    let err = router.read(&bad).await.unwrap_err();
    assert!(err.to_string().contains("mesh/router/route"), "{err}");
}

fn ecs_service(
    running: i32,
    state: DeploymentRolloutState,
    reason: &str,
) -> DescribeServicesOutput {
    DescribeServicesOutput::builder()
        .services(
            Service::builder()
                .service_name("distributor-v2")
                .status("ACTIVE")
                .desired_count(2)
                .running_count(running)
                .pending_count(2 - running)
                .deployments(
                    Deployment::builder()
                        .status("PRIMARY")
                        .rollout_state(state)
                        .rollout_state_reason(reason)
                        .build(),
                )
                .build(),
        )
        .build()
}

fn ecs_fleet(client: aws_sdk_ecs::Client) -> EcsFleet {
    EcsFleet::new(client, "gopher")
        .version("distributorV2", EcsVersion::existing("distributor-v2"))
        .poll_interval(Duration::from_secs(5))
}

#[tokio::test(start_paused = true)]
async fn wait_ready_follows_tasks_to_running_through_throttling() {
    use DeploymentRolloutState::*;
    let polls = mock!(aws_sdk_ecs::Client::describe_services)
        .sequence()
        .output(|| ecs_service(0, InProgress, "starting"))
        .error(|| DescribeServicesError::generic(code("ThrottlingException")))
        .output(|| ecs_service(1, InProgress, "starting"))
        .output(|| ecs_service(2, Completed, "done"))
        .build();
    let client = mock_client!(aws_sdk_ecs, RuleMode::Sequential, [&polls], |c| c
        .retry_config(RetryConfig::disabled()));
    let started = tokio::time::Instant::now();
    ecs_fleet(client)
        .wait_ready("distributorV2", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(polls.num_calls(), 4);
    assert_eq!(started.elapsed(), Duration::from_secs(15));
}

#[tokio::test(start_paused = true)]
async fn a_failed_deployment_stops_the_wait_at_once() {
    let polls = mock!(aws_sdk_ecs::Client::describe_services)
        .sequence()
        .output(|| {
            ecs_service(
                0,
                DeploymentRolloutState::Failed,
                "tasks failed to start: CannotPullContainerError",
            )
        })
        .repeatedly()
        .build();
    let client = mock_client!(aws_sdk_ecs, [&polls]);
    let err = ecs_fleet(client)
        .wait_ready("distributorV2", Duration::from_secs(600))
        .await
        .unwrap_err();
    assert!(matches!(err, FleetError::Backend { .. }), "{err}");
    assert!(
        err.to_string().contains("CannotPullContainerError"),
        "{err}"
    );
    assert_eq!(polls.num_calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_names_the_last_state_seen() {
    let polls = mock!(aws_sdk_ecs::Client::describe_services)
        .sequence()
        .output(|| ecs_service(1, DeploymentRolloutState::InProgress, "starting"))
        .repeatedly()
        .build();
    let client = mock_client!(aws_sdk_ecs, [&polls]);
    match ecs_fleet(client)
        .wait_ready("distributorV2", Duration::from_secs(30))
        .await
    {
        Err(FleetError::NotReady { waited, state, .. }) => {
            assert_eq!(waited, Duration::from_secs(30));
            assert_eq!(
                state,
                "distributor-v2: 1/2 tasks running, 1 pending, deployment IN_PROGRESS"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn cloud_map_health_follows_every_page() {
    use aws_sdk_servicediscovery::operation::get_instances_health_status::GetInstancesHealthStatusOutput;
    use aws_sdk_servicediscovery::operation::list_instances::ListInstancesOutput;
    use aws_sdk_servicediscovery::types::{HealthStatus, InstanceSummary};
    use meshkit::health::{CheckContext, CloudMapHealth, HealthCheck, Verdict};

    let instance = |id: &str, version: &str| {
        InstanceSummary::builder()
            .id(id)
            .attributes("version", version)
            .build()
    };
    let list = mock!(aws_sdk_servicediscovery::Client::list_instances)
        .sequence()
        .output(move || {
            ListInstancesOutput::builder()
                .instances(instance("a", "v2"))
                .instances(instance("old", "v1"))
                .next_token("page-2")
                .build()
        })
        .output(move || {
            ListInstancesOutput::builder()
                .instances(instance("b", "v2"))
                .build()
        })
        .build();
    let health = mock!(aws_sdk_servicediscovery::Client::get_instances_health_status)
        .sequence()
        .output(|| {
            GetInstancesHealthStatusOutput::builder()
                .status("a", HealthStatus::Healthy)
                .status("old", HealthStatus::Unhealthy)
                .next_token("page-2")
                .build()
        })
        .output(|| {
            GetInstancesHealthStatusOutput::builder()
                .status("b", HealthStatus::Unhealthy)
                .build()
        })
        .build();
    let client = mock_client!(
        aws_sdk_servicediscovery,
        RuleMode::MatchAny,
        [&list, &health]
    );
    let check = CloudMapHealth::builder(client, "srv-1")
        .attribute("version", "v2")
        .min_healthy_share(0.75)
        .build()
        .unwrap();
    let ctx = CheckContext {
        stage: 0,
        stable: "v1".into(),
        candidate: "v2".into(),
        weights: Weights::split("v1", "v2", 10).unwrap(),
        stage_elapsed: Duration::ZERO,
    };
    // "b" is on the second page of both calls: 1 of 2 v2 instances healthy.
    assert_eq!(
        check.check(&ctx).await,
        Verdict::unhealthy("1 of 2 instances healthy (50%), need 75%")
    );
    assert_eq!((list.num_calls(), health.num_calls()), (2, 2));
}
