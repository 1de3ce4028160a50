//! `EcsFleet` against the moto emulator, alone and in a blue/green rollout with
//! `AppMeshRouter`. Real time, short polls (see `meshkit_testing::gopher`). moto's services do
//! not start tasks on their own unless `MOTO_ECS_SERVICE_RUNNING` says how many run.

use std::time::Duration;

use aws_sdk_ecs::types::{ContainerDefinition, KeyValuePair};
use meshkit::fleet::Fleet;
use meshkit::fleet::ecs::{EcsFleet, EcsVersion};
use meshkit::health::{CloudMapHealth, Verdict, from_fn};
use meshkit::strategy::CanaryBlueGreen;
use meshkit::traffic::appmesh::{AppMeshRoute, AppMeshRouter};
use meshkit::traffic::{TrafficRouter, Weights};
use meshkit::{FleetError, Outcome, Rollout};
use meshkit_testing::gopher::{self, MESH, ROUTE, ROUTER, V1, V2};
use meshkit_testing::{CallCounter, MotoServer};

const CLUSTER: &str = "gopher";

async fn cluster(ecs: &aws_sdk_ecs::Client) {
    ecs.create_cluster()
        .cluster_name(CLUSTER)
        .send()
        .await
        .unwrap();
    ecs.register_task_definition()
        .family("distributor")
        .memory("256")
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image("gopher/distributor:v1")
                .memory(256)
                .environment(KeyValuePair::builder().name("VERSION").value("v1").build())
                .environment(KeyValuePair::builder().name("PORT").value("8080").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    ecs.create_service()
        .cluster(CLUSTER)
        .service_name("distributor-v1")
        .task_definition("distributor:1")
        .desired_count(2)
        .send()
        .await
        .unwrap();
}

fn fleet(ecs: &aws_sdk_ecs::Client, registry: Option<&str>) -> EcsFleet {
    let mut v2 = EcsVersion::new("distributor-v2", "distributor:1")
        .image("app", "gopher/distributor:v2")
        .env("app", "VERSION", "v2")
        .desired_count(2)
        .like_service("distributor-v1");
    if let Some(arn) = registry {
        v2 = v2.service_registry(arn);
    }
    EcsFleet::new(ecs.clone(), CLUSTER)
        .version(V1, EcsVersion::existing("distributor-v1"))
        .version(V2, v2)
        .poll_interval(Duration::from_millis(20))
}

async fn service(ecs: &aws_sdk_ecs::Client, name: &str) -> aws_sdk_ecs::types::Service {
    let out = ecs
        .describe_services()
        .cluster(CLUSTER)
        .services(name)
        .send()
        .await
        .unwrap();
    out.services.unwrap().remove(0)
}

async fn revisions(ecs: &aws_sdk_ecs::Client) -> usize {
    let out = ecs
        .list_task_definitions()
        .family_prefix("distributor")
        .send()
        .await
        .unwrap();
    out.task_definition_arns.unwrap_or_default().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bring_up_registers_a_revision_and_creates_the_service_once() {
    let moto = gopher::moto();
    let sdk = moto.sdk_config();
    let ecs = aws_sdk_ecs::Client::new(&sdk);
    cluster(&ecs).await;
    let registry = "arn:aws:servicediscovery:us-east-1:123456789012:service/srv-distributor";
    let fleet = fleet(&ecs, Some(registry));

    fleet.bring_up(V2).await.unwrap();
    let s = service(&ecs, "distributor-v2").await;
    assert_eq!(s.status.as_deref(), Some("ACTIVE"));
    assert_eq!(s.desired_count, 2);
    let registries = s.service_registries.unwrap_or_default();
    assert_eq!(registries[0].registry_arn.as_deref(), Some(registry));
    let td = ecs
        .describe_task_definition()
        .task_definition(s.task_definition.unwrap())
        .send()
        .await
        .unwrap()
        .task_definition
        .unwrap();
    assert_eq!(
        (td.family.as_deref(), td.revision),
        (Some("distributor"), 2)
    );
    let app = &td.container_definitions.unwrap()[0];
    assert_eq!(app.image.as_deref(), Some("gopher/distributor:v2"));
    let mut env: Vec<_> = app
        .environment
        .clone()
        .unwrap()
        .into_iter()
        .map(|kv| (kv.name.unwrap(), kv.value.unwrap()))
        .collect();
    env.sort();
    assert_eq!(
        env,
        vec![
            ("PORT".into(), "8080".into()),
            ("VERSION".into(), "v2".into())
        ]
    );
    assert_eq!(app.memory, Some(256));

    // Idempotent: a second bring-up (a resumed rollout) registers nothing new.
    fleet.bring_up(V2).await.unwrap();
    assert_eq!(revisions(&ecs).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_ready_names_the_stuck_state_and_retire_scales_to_zero() {
    let moto = gopher::moto();
    let ecs = aws_sdk_ecs::Client::new(&moto.sdk_config());
    cluster(&ecs).await;
    let fleet = fleet(&ecs, None).delete_on_retire(true);
    fleet.bring_up(V2).await.unwrap();
    match fleet.wait_ready(V2, Duration::from_millis(300)).await {
        Err(FleetError::NotReady { version, state, .. }) => {
            assert_eq!(version, V2);
            assert!(state.contains("0/2 tasks running, 2 pending"), "{state}");
            assert!(state.contains("deployment IN_PROGRESS"), "{state}");
        }
        other => panic!("{other:?}"),
    }
    fleet.retire(V2).await.unwrap();
    let gone = service(&ecs, "distributor-v2").await;
    assert_eq!(gone.desired_count, 0);
    assert_eq!(gone.status.as_deref(), Some("INACTIVE"));
    // Retiring what is already gone is fine; an unknown version is an error.
    fleet.retire(V2).await.unwrap();
    let err = fleet.bring_up("distributorV9").await.unwrap_err();
    assert!(err.to_string().contains("distributorV9"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_blue_green_on_ecs_and_app_mesh_retires_blue_after_the_window() {
    let moto = match MotoServer::start_with_env(&[("MOTO_ECS_SERVICE_RUNNING", "2")]) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    };
    let sdk = moto.sdk_config();
    let ecs = aws_sdk_ecs::Client::new(&sdk);
    cluster(&ecs).await;
    let mesh = gopher::appmesh(&sdk, &CallCounter::new());
    gopher::build(&mesh, gopher::http_route(100, 0)).await;
    let sd = aws_sdk_servicediscovery::Client::new(&sdk);
    let cloud_map = gopher::cloud_map(&sd).await;
    let health = CloudMapHealth::builder(sd, cloud_map)
        .attribute("version", "v2")
        .build()
        .unwrap();
    let route = AppMeshRoute::new(MESH, ROUTER, ROUTE);
    let outcome = Rollout::builder()
        .router(AppMeshRouter::new(mesh.clone()))
        .route(route.to_string())
        .from(V1)
        .to(V2)
        .strategy(
            CanaryBlueGreen::new([10, 50])
                .pre_check(Duration::from_millis(100))
                .step_bake(Duration::from_millis(100))
                .bake(Duration::from_millis(100)),
        )
        .fleet(fleet(&ecs, None))
        .check(health)
        .check(from_fn("always", |_| async { Verdict::Healthy }))
        .check_interval(Duration::from_millis(50))
        .check_timeout(Duration::from_millis(50))
        .ready_timeout(Duration::from_secs(5))
        .rollback_window(Duration::from_millis(200))
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Promoted { .. }), "{outcome}");
    assert_eq!(service(&ecs, "distributor-v2").await.desired_count, 2);
    assert_eq!(service(&ecs, "distributor-v1").await.desired_count, 0);
    let rr = route.route_ref().unwrap();
    let now = AppMeshRouter::new(mesh).read(&rr).await.unwrap();
    // Blue is off the route too, so the next rollout starts from green alone.
    assert_eq!(now.weights, Weights::new([(V2, 100)]).unwrap());
}
