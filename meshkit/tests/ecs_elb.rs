//! The gopher distributor v1 -> v2 on ECS behind an ALB, on the emulator: `EcsFleet`
//! brings v2 up in its own target group (wired like v1's service), waits for its
//! targets, `ElbRouter` shifts the listener rule, and target-group health plus a
//! CloudWatch 5xx check (fed through `PutMetricData`) judge it. Promoted, and rolled
//! back. moto's ECS registers no targets, so the test registers them as ECS would.

use std::time::{Duration, SystemTime};

use aws_sdk_ecs::types::{ContainerDefinition, LoadBalancer};
use aws_sdk_elasticloadbalancingv2::types::TargetDescription;
use meshkit::fleet::Fleet;
use meshkit::fleet::ecs::{EcsFleet, EcsVersion};
use meshkit::health::{CloudWatchMetric, TargetGroupHealth};
use meshkit::rollout::RollbackReason;
use meshkit::strategy::CanaryBlueGreen;
use meshkit::traffic::elb::{ElbRouter, target_group_dimension};
use meshkit::traffic::{RouteRef, TrafficRouter, Weights};
use meshkit::{FleetError, Outcome, Rollout};
use meshkit_testing::MotoServer;
use meshkit_testing::elb::{self, ElbTopology};

const CLUSTER: &str = "gopher";
const V1: &str = "web-v1";
const V2: &str = "web-v2";

struct World {
    _moto: MotoServer,
    sdk: meshkit::sdk::SdkConfig,
    topo: ElbTopology,
    ecs: aws_sdk_ecs::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
}

async fn world() -> World {
    let moto = match MotoServer::start_with_env(&[("MOTO_ECS_SERVICE_RUNNING", "2")]) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    };
    let sdk = moto.sdk_config();
    let topo = elb::alb(&sdk, &moto).await;
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
        .load_balancers(
            LoadBalancer::builder()
                .target_group_arn(topo.arn(V1))
                .container_name("app")
                .container_port(8080)
                .build(),
        )
        .health_check_grace_period_seconds(30)
        .send()
        .await
        .unwrap();
    World {
        elb: aws_sdk_elasticloadbalancingv2::Client::new(&sdk),
        _moto: moto,
        sdk,
        topo,
        ecs,
    }
}

impl World {
    fn fleet(&self) -> EcsFleet {
        EcsFleet::new(self.ecs.clone(), CLUSTER)
            .target_health(self.elb.clone())
            .poll_interval(Duration::from_millis(20))
            .version(V1, EcsVersion::existing("distributor-v1"))
            .version(
                V2,
                EcsVersion::new("distributor-v2", "distributor:1")
                    .image("app", "gopher/distributor:v2")
                    .desired_count(2)
                    .like_service("distributor-v1")
                    .target_group(self.topo.arn(V2)),
            )
    }

    /// Registers a second v2 task in its group, as ECS does when it starts.
    async fn register_second_v2_task(&self) {
        self.elb
            .register_targets()
            .target_group_arn(self.topo.arn(V2))
            .targets(
                TargetDescription::builder()
                    .id("10.0.1.99")
                    .port(8080)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }

    /// Puts one of v2's load balancer metrics for the last minute.
    async fn v2_metric(&self, metric: &str, value: f64) {
        let cw = meshkit::sdk::cloudwatch::Client::new(&self.sdk);
        let at = SystemTime::now() - Duration::from_secs(20);
        let (lb, arn) = (&self.topo.lb_dimension, self.topo.arn(V2));
        elb::put_metric(&cw, "AWS/ApplicationELB", metric, lb, arn, at, value).await;
    }

    fn rollout(&self) -> Rollout {
        let cw = meshkit::sdk::cloudwatch::Client::new(&self.sdk);
        let bake = Duration::from_millis(150);
        Rollout::builder()
            .router(ElbRouter::new(self.elb.clone()).settle_delay(Duration::ZERO))
            .route(self.topo.rule.clone().unwrap())
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
                TargetGroupHealth::builder(self.elb.clone(), V2)
                    .min_healthy(2)
                    .build()
                    .unwrap(),
            )
            .check(
                CloudWatchMetric::target_5xx(
                    cw,
                    &self.topo.lb_dimension,
                    target_group_dimension(self.topo.arn(V2)),
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
        let router = ElbRouter::new(self.elb.clone());
        router
            .read(&RouteRef::new(self.topo.rule.clone().unwrap()).unwrap())
            .await
            .unwrap()
            .weights
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_service_is_wired_like_the_old_and_waits_for_its_targets() {
    let w = world().await;
    let fleet = w.fleet();
    fleet.bring_up(V2).await.unwrap();
    let v2 = w.service("distributor-v2").await;
    let lb = &v2.load_balancers.clone().unwrap()[0];
    assert_eq!(lb.target_group_arn.as_deref(), Some(w.topo.arn(V2)));
    assert_eq!(
        (lb.container_name.as_deref(), lb.container_port),
        (Some("app"), Some(8080))
    );
    // (The emulator keeps no health-check grace period, which is copied too.)
    // Both tasks run, but only one target is registered and healthy.
    match fleet.wait_ready(V2, Duration::from_millis(300)).await {
        Err(FleetError::NotReady { state, .. }) => {
            assert!(
                state.contains("target group web-v2: 1 of 2 targets healthy"),
                "{state}"
            );
        }
        other => panic!("{other:?}"),
    }
    w.register_second_v2_task().await;
    fleet.wait_ready(V2, Duration::from_secs(2)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gopher_v1_to_v2_behind_an_alb_is_promoted() {
    let w = world().await;
    w.register_second_v2_task().await;
    // v2 has taken requests and the load balancer published no 5xx count (it does
    // not publish zeros): healthy.
    w.v2_metric("RequestCount", 120.0).await;
    let outcome = w.rollout().run().await.unwrap();
    assert!(matches!(outcome, Outcome::Promoted { .. }), "{outcome}");
    assert_eq!(w.rule().await, Weights::new([(V2, 100)]).unwrap());
    assert_eq!(w.service("distributor-v1").await.desired_count, 0);
    assert_eq!(w.service("distributor-v2").await.desired_count, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gopher_v2_with_5xx_behind_an_alb_is_rolled_back() {
    let w = world().await;
    w.register_second_v2_task().await;
    w.v2_metric("HTTPCode_Target_5XX_Count", 3.0).await;
    let outcome = w.rollout().run().await.unwrap();
    match &outcome {
        Outcome::RolledBack {
            reason: RollbackReason::Unhealthy(why),
            ..
        } => {
            assert!(why.contains("HTTPCode_Target_5XX_Count = 3"), "{why}");
        }
        other => panic!("expected a rollback on 5xx, got {other}"),
    }
    assert_eq!(w.rule().await, Weights::split(V1, V2, 0).unwrap());
    assert_eq!(w.service("distributor-v1").await.desired_count, 2);
    assert_eq!(w.service("distributor-v2").await.desired_count, 0);
}
