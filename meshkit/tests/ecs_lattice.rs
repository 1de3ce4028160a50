//! The gopher distributor v1 -> v2 on ECS as VPC Lattice targets, on the emulator:
//! `EcsFleet` brings v2 up registered in its own Lattice target group (role and port
//! name copied from v1's service), waits for its targets, `LatticeRouter` shifts the
//! listener rule, and Lattice target health plus a CloudWatch 5xx check judge it.
//! Promoted, and rolled back. The emulator's ECS registers no targets, so the test
//! registers them as ECS would.

use std::time::{Duration, SystemTime};

use aws_sdk_ecs::types::{ContainerDefinition, VpcLatticeConfiguration};
use aws_sdk_vpclattice::types::Target;
use meshkit::fleet::Fleet;
use meshkit::fleet::ecs::{EcsFleet, EcsVersion};
use meshkit::health::{CloudWatchMetric, LatticeTargetHealth};
use meshkit::rollout::RollbackReason;
use meshkit::strategy::CanaryBlueGreen;
use meshkit::traffic::lattice::LatticeRouter;
use meshkit::traffic::{RouteRef, TrafficRouter, Weights};
use meshkit::{FleetError, Outcome, Rollout};
use meshkit_testing::MotoServer;
use meshkit_testing::lattice::{self, LatticeTopology};

const CLUSTER: &str = "gopher";
const V1: &str = "web-v1";
const V2: &str = "web-v2";
const ROLE: &str = "arn:aws:iam::123456789012:role/ecsInfrastructureRoleForVpcLattice";

struct World {
    _moto: MotoServer,
    sdk: meshkit::sdk::SdkConfig,
    topo: LatticeTopology,
    ecs: aws_sdk_ecs::Client,
    lattice: aws_sdk_vpclattice::Client,
}

async fn world() -> World {
    let moto = match MotoServer::start_with_env(&[("MOTO_ECS_SERVICE_RUNNING", "2")]) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    };
    let sdk = moto.sdk_config();
    let topo = lattice::build(&sdk, &moto).await;
    let ecs = aws_sdk_ecs::Client::new(&sdk);
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
        .vpc_lattice_configurations(
            VpcLatticeConfiguration::builder()
                .role_arn(ROLE)
                .target_group_arn(topo.arn(V1))
                .port_name("http")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    World {
        lattice: aws_sdk_vpclattice::Client::new(&sdk),
        _moto: moto,
        sdk,
        topo,
        ecs,
    }
}

impl World {
    fn fleet(&self) -> EcsFleet {
        EcsFleet::new(self.ecs.clone(), CLUSTER)
            .lattice_health(self.lattice.clone())
            .poll_interval(Duration::from_millis(20))
            .version(V1, EcsVersion::existing("distributor-v1"))
            .version(
                V2,
                EcsVersion::new("distributor-v2", "distributor:1")
                    .image("app", "gopher/distributor:v2")
                    .desired_count(2)
                    .like_service("distributor-v1")
                    .lattice_target_group(self.topo.arn(V2)),
            )
    }

    async fn register_second_v2_task(&self) {
        self.lattice
            .register_targets()
            .target_group_identifier(self.topo.id(V2))
            .targets(
                Target::builder()
                    .id("10.0.2.99")
                    .port(8080)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    }

    /// v2's 5xx count for the last minute (Lattice publishes zeros too).
    async fn v2_5xx(&self, n: f64) {
        use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
        meshkit::sdk::cloudwatch::Client::new(&self.sdk)
            .put_metric_data()
            .namespace("AWS/VpcLattice")
            .metric_data(
                MetricDatum::builder()
                    .metric_name("HTTPCode_5XX_Count")
                    .value(n)
                    .timestamp(aws_sdk_cloudwatch::primitives::DateTime::from(
                        SystemTime::now() - Duration::from_secs(20),
                    ))
                    .dimensions(
                        Dimension::builder()
                            .name("TargetGroup")
                            .value(self.topo.id(V2))
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }

    fn rollout(&self) -> Rollout {
        let bake = Duration::from_millis(150);
        Rollout::builder()
            .router(LatticeRouter::new(self.lattice.clone()).settle_delay(Duration::ZERO))
            .route(self.topo.rule_route())
            .from(V1)
            .to(V2)
            .strategy(
                CanaryBlueGreen::new([10, 50])
                    .pre_check(bake)
                    .step_bake(bake)
                    .bake(bake),
            )
            .fleet(self.fleet())
            .check(
                LatticeTargetHealth::builder(self.lattice.clone(), V2)
                    .min_healthy(2)
                    .build()
                    .unwrap(),
            )
            .check(
                CloudWatchMetric::lattice_5xx(
                    meshkit::sdk::cloudwatch::Client::new(&self.sdk),
                    self.topo.arn(V2),
                )
                .window(Duration::from_secs(300))
                .build()
                .unwrap(),
            )
            .check_interval(Duration::from_millis(200))
            .check_timeout(Duration::from_millis(200))
            .ready_timeout(Duration::from_secs(5))
            .rollback_window(Duration::from_millis(200))
            .build()
            .unwrap()
    }

    async fn service(&self, name: &str) -> aws_sdk_ecs::types::Service {
        let out = self
            .ecs
            .describe_services()
            .cluster(CLUSTER)
            .services(name)
            .send()
            .await
            .unwrap();
        out.services.unwrap().remove(0)
    }

    async fn rule(&self) -> Weights {
        let router = LatticeRouter::new(self.lattice.clone());
        router
            .read(&RouteRef::new(self.topo.rule_route()).unwrap())
            .await
            .unwrap()
            .weights
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_service_is_a_lattice_target_like_the_old_and_waits_for_its_targets() {
    let w = world().await;
    let fleet = w.fleet();
    fleet.bring_up(V2).await.unwrap();
    let v2 = w.service("distributor-v2").await;
    let config = v2.deployments.clone().unwrap()[0]
        .vpc_lattice_configurations
        .clone()
        .unwrap();
    assert_eq!(config[0].target_group_arn, w.topo.arn(V2));
    assert_eq!(
        (config[0].role_arn.as_str(), config[0].port_name.as_str()),
        (ROLE, "http")
    );
    match fleet.wait_ready(V2, Duration::from_millis(300)).await {
        Err(FleetError::NotReady { state, .. }) => {
            assert!(state.contains("1 of 2 targets healthy"), "{state}");
        }
        other => panic!("{other:?}"),
    }
    w.register_second_v2_task().await;
    fleet.wait_ready(V2, Duration::from_secs(2)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gopher_v1_to_v2_on_lattice_is_promoted() {
    let w = world().await;
    w.register_second_v2_task().await;
    w.v2_5xx(0.0).await;
    let outcome = w.rollout().run().await.unwrap();
    assert!(matches!(outcome, Outcome::Promoted { .. }), "{outcome}");
    assert_eq!(w.rule().await, Weights::new([(V2, 100)]).unwrap());
    assert_eq!(w.service("distributor-v1").await.desired_count, 0);
    assert_eq!(w.service("distributor-v2").await.desired_count, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gopher_v2_with_5xx_on_lattice_is_rolled_back() {
    let w = world().await;
    w.register_second_v2_task().await;
    w.v2_5xx(4.0).await;
    let outcome = w.rollout().run().await.unwrap();
    match &outcome {
        Outcome::RolledBack {
            reason: RollbackReason::Unhealthy(why),
            ..
        } => {
            assert!(why.contains("HTTPCode_5XX_Count = 4"), "{why}");
        }
        other => panic!("expected a rollback on 5xx, got {other}"),
    }
    assert!(w.rule().await.is_all_on(V1));
    assert_eq!(w.service("distributor-v1").await.desired_count, 2);
    assert_eq!(w.service("distributor-v2").await.desired_count, 0);
}
