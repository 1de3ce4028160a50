//! `AppMeshRouter`, its preparation helpers and `CloudMapHealth` against the moto
//! emulator, on the gopher topology. Real time, short bakes (see `meshkit_testing::gopher`).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_appmesh::types::{
    DurationUnit, RouteSpec, TcpRoute, TcpRouteAction, TcpRouteMatch, TcpTimeout,
};
use aws_sdk_servicediscovery::types::CustomHealthStatus;
use meshkit::health::{CloudMapHealth, Verdict, from_fn};
use meshkit::rollout::RollbackReason;
use meshkit::strategy::Canary;
use meshkit::traffic::appmesh::{
    AppMeshRoute, AppMeshRouter, NodeDiscovery, NodeEnsured, PreflightError, RouteKind,
};
use meshkit::traffic::{TrafficRouter, Weights};
use meshkit::{Outcome, Rollout, RolloutError, TrafficError};
use meshkit_testing::CallCounter;
use meshkit_testing::gopher::{self, MESH, ROUTE, ROUTER, V1, V2};

fn route() -> AppMeshRoute {
    AppMeshRoute::new(MESH, ROUTER, ROUTE)
}

fn split(v2: u8) -> Weights {
    Weights::split(V1, V2, v2).unwrap()
}

fn canary(router: AppMeshRouter, steps: &[u32]) -> meshkit::RolloutBuilder {
    Rollout::builder()
        .router(router)
        .route(route().to_string())
        .from(V1)
        .to(V2)
        .strategy(Canary::steps(steps.iter().copied()).bake(Duration::from_millis(100)))
        .check_interval(Duration::from_millis(50))
        .check_timeout(Duration::from_millis(50))
        .settle_timeout(Duration::from_secs(5))
}

/// `spec` with its weighted targets replaced by `weights` in the stored order.
fn with_targets(spec: &RouteSpec, targets: &[(&str, i32)]) -> RouteSpec {
    let mut out = spec.clone();
    let list = targets
        .iter()
        .map(|(n, w)| gopher::target(n, *w))
        .collect::<Vec<_>>();
    if let Some(r) = out.http_route.as_mut() {
        r.action.as_mut().unwrap().weighted_targets = list;
    } else if let Some(r) = out.tcp_route.as_mut() {
        r.action.as_mut().unwrap().weighted_targets = list;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_resumed_on_app_mesh_costs_one_read_and_one_write_per_step() {
    let moto = gopher::moto();
    let sdk = moto.sdk_config();
    let counter = CallCounter::new();
    let client = gopher::appmesh(&sdk, &counter);
    // The gopher sample's route: 90/10, with a retry policy.
    gopher::build(&client, gopher::http_route(90, 10)).await;
    let before = gopher::stored_spec(&client).await;
    let service = gopher::cloud_map(&aws_sdk_servicediscovery::Client::new(&sdk)).await;
    let health = CloudMapHealth::builder(aws_sdk_servicediscovery::Client::new(&sdk), service)
        .attribute("version", "v2")
        .min_instances(2)
        .build()
        .unwrap();

    let router = AppMeshRouter::new(client.clone());
    let pre = router.preflight(&route(), V1, V2, true).await.unwrap();
    assert!(pre.resumable);
    assert_eq!(pre.weights, split(10));
    assert_eq!(pre.kind, RouteKind::Http);

    // AWS calls (App Mesh only; Cloud Map has its own client), and check rounds.
    let rounds = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let probe = {
        let rounds = rounds.clone();
        from_fn("call probe", move |_ctx| {
            let rounds = rounds.clone();
            async move {
                rounds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Verdict::Healthy
            }
        })
    };
    counter.clear();
    // The route is at 90/10, the plan's first step: the rollout resumes there.
    let rollout = canary(router, &[10, 50, 100])
        .resume(true)
        .check(health)
        .check(probe)
        .build()
        .unwrap();
    let events = rollout.events();
    let outcome = rollout.run().await.unwrap();
    assert!(matches!(outcome, Outcome::Promoted { .. }), "{outcome}");
    let calls = counter.calls();
    let count = |op: &str| calls.iter().filter(|c| *c == op).count();
    let seen = common::drain(events).await;
    // Stage 0's weights were in force: nothing written for it, and said so.
    assert!(
        seen.contains(&meshkit::rollout::Event::AlreadyInForce { weights: split(10) }),
        "{seen:?}"
    );

    // After promotion the stable node is taken off the route, as the pipeline did.
    let after = gopher::stored_spec(&client).await;
    assert_eq!(after, with_targets(&before, &[(V2, 100)]));
    // Writes: 50%, 100%, and the route without V1; nothing for the step in force.
    assert_eq!(count("UpdateRoute"), 3, "{calls:?}");
    // Reads: the start; one per step (3); the confirm and the read before the removal
    // at retire; the confirm at promotion; and one per check round, watching for
    // another writer. No other App Mesh call.
    let rounds = rounds.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        count("DescribeRoute"),
        1 + 3 + 2 + 1 + rounds,
        "{rounds} rounds: {calls:?}"
    );
    assert_eq!(calls.len(), 3 + 7 + rounds, "{calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_v2_in_cloud_map_ends_at_v1_100() {
    let moto = gopher::moto();
    let sdk = moto.sdk_config();
    let client = gopher::appmesh(&sdk, &CallCounter::new());
    gopher::build(&client, gopher::http_route(100, 0)).await;
    let sd = aws_sdk_servicediscovery::Client::new(&sdk);
    let service = gopher::cloud_map(&sd).await;
    sd.update_instance_custom_health_status()
        .service_id(&service)
        .instance_id("v2-b")
        .status(CustomHealthStatus::Unhealthy)
        .send()
        .await
        .unwrap();
    let health = CloudMapHealth::builder(sd.clone(), &service)
        .attribute("version", "v2")
        .build()
        .unwrap();
    let outcome = canary(AppMeshRouter::new(client.clone()), &[10, 50, 100])
        .check(health)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    match outcome {
        Outcome::RolledBack {
            reason: RollbackReason::Unhealthy(why),
            stage: Some(0),
            weights,
            ..
        } => {
            assert_eq!(weights, split(0));
            assert!(why.contains("1 of 2 instances healthy"), "{why}");
        }
        other => panic!("{other}"),
    }
    let stored = AppMeshRouter::new(client)
        .read(&route().route_ref().unwrap())
        .await;
    assert_eq!(stored.unwrap().weights, split(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_update_route_mid_rollout_is_detected_and_left_alone() {
    let moto = gopher::moto();
    let sdk = moto.sdk_config();
    let client = gopher::appmesh(&sdk, &CallCounter::new());
    gopher::build(&client, gopher::http_route(100, 0)).await;
    let intruder = client.clone();
    let done = Arc::new(Mutex::new(false));
    let meddle = from_fn("someone else", move |ctx| {
        let (intruder, done) = (intruder.clone(), done.clone());
        // Mid rollout: after the first shift, not in the check round before it.
        let shifted = ctx.weights.get(V2).unwrap_or(0) > 0;
        async move {
            if shifted && !std::mem::replace(&mut *done.lock().unwrap(), true) {
                intruder
                    .update_route()
                    .mesh_name(MESH)
                    .virtual_router_name(ROUTER)
                    .route_name(ROUTE)
                    .spec(gopher::http_route(70, 30))
                    .send()
                    .await
                    .unwrap();
            }
            Verdict::Healthy
        }
    });
    let err = canary(AppMeshRouter::new(client.clone()), &[10, 50, 100])
        .check(meddle)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap_err();
    match &err {
        RolloutError::ConcurrentWriter {
            expected, found, ..
        } => {
            assert_eq!(*expected, split(10));
            assert_eq!(*found, split(30));
        }
        other => panic!("{other}"),
    }
    // Not overwritten: the other writer's split stands.
    let stored = gopher::stored_spec(&client).await;
    assert_eq!(stored, with_targets(&stored, &[(V1, 70), (V2, 30)]));
    assert_eq!(err.in_force(), Some(&split(30)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_route_keeps_its_match_and_timeout_after_a_shift() {
    let moto = gopher::moto();
    let sdk = moto.sdk_config();
    let client = gopher::appmesh(&sdk, &CallCounter::new());
    let tcp = RouteSpec::builder()
        .priority(3)
        .tcp_route(
            TcpRoute::builder()
                .action(
                    TcpRouteAction::builder()
                        .weighted_targets(gopher::target(V1, 1))
                        .build()
                        .unwrap(),
                )
                .r#match(TcpRouteMatch::builder().port(8080).build())
                .timeout(
                    TcpTimeout::builder()
                        .idle(
                            aws_sdk_appmesh::types::Duration::builder()
                                .unit(DurationUnit::S)
                                .value(30)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .build();
    gopher::build(&client, tcp).await;
    let before = gopher::stored_spec(&client).await;
    let router = AppMeshRouter::new(client.clone());
    let rr = route().route_ref().unwrap();
    // A relative weight of 1 reads as 100%.
    let now = router.read(&rr).await.unwrap();
    assert_eq!(now.weights, Weights::new([(V1, 100)]).unwrap());
    let written = router
        .write(
            &rr,
            &meshkit::traffic::WriteRequest {
                weights: split(25),
                token: "tcp-test-0".into(),
            },
        )
        .await
        .unwrap()
        .expect("UpdateRoute returns the route");
    assert_eq!(written.weights, split(25));
    assert_ne!(written.revision, now.revision);
    let after = gopher::stored_spec(&client).await;
    assert_eq!(after, with_targets(&before, &[(V1, 75), (V2, 25)]));
    assert_eq!(router.kind(&route()).await.unwrap(), RouteKind::Tcp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_names_what_is_missing_or_wrong() {
    let moto = gopher::moto();
    let sdk = moto.sdk_config();
    let client = gopher::appmesh(&sdk, &CallCounter::new());
    let router = AppMeshRouter::new(client.clone());
    match router.preflight(&route(), V1, V2, false).await {
        Err(PreflightError::Missing {
            kind: "mesh", name, ..
        }) => assert_eq!(name, MESH),
        other => panic!("{other:?}"),
    }
    gopher::build(&client, gopher::http_route(90, 10)).await;
    match router.preflight(&route(), V1, V2, false).await {
        Err(PreflightError::NotAtStart { weights, .. }) => assert_eq!(weights, split(10)),
        other => panic!("{other:?}"),
    }
    match router.preflight(&route(), V1, "distributorV3", true).await {
        Err(PreflightError::Missing {
            kind: "virtual node",
            name,
            ..
        }) => assert_eq!(name, "distributorV3"),
        other => panic!("{other:?}"),
    }
    let other_route = AppMeshRoute::new(MESH, ROUTER, "nope");
    match router.preflight(&other_route, V1, V2, false).await {
        Err(PreflightError::Missing { kind: "route", .. }) => {}
        other => panic!("{other:?}"),
    }
    // The emulator's RouteNotFound reads as not found, like AWS's NotFoundException.
    match router.read(&other_route.route_ref().unwrap()).await {
        Err(e @ TrafficError::NotFound { .. }) => {
            assert!(e.to_string().contains("RouteNotFound"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_virtual_node_copies_the_template_with_new_discovery() {
    let moto = gopher::moto();
    let sdk = moto.sdk_config();
    let client = gopher::appmesh(&sdk, &CallCounter::new());
    gopher::build(&client, gopher::http_route(100, 0)).await;
    let router = AppMeshRouter::new(client.clone());
    let dns = NodeDiscovery::dns("distributor-v3.gopher.local");
    let made = router
        .ensure_virtual_node(&route(), V1, "distributorV3", &dns)
        .await
        .unwrap();
    assert_eq!(made, NodeEnsured::Created);
    let describe = |name: &'static str| {
        let client = client.clone();
        async move {
            client
                .describe_virtual_node()
                .mesh_name(MESH)
                .virtual_node_name(name)
                .send()
                .await
                .unwrap()
                .virtual_node
                .unwrap()
                .spec
                .unwrap()
        }
    };
    let (template, made_spec) = (describe(V1).await, describe("distributorV3").await);
    assert_eq!(made_spec.listeners, template.listeners);
    match made_spec.service_discovery {
        Some(aws_sdk_appmesh::types::ServiceDiscovery::Dns(d)) => {
            assert_eq!(d.hostname, "distributor-v3.gopher.local")
        }
        other => panic!("{other:?}"),
    }
    // Idempotent; and a Cloud Map discovery on a DNS template is refused.
    let again = router
        .ensure_virtual_node(&route(), V1, "distributorV3", &dns)
        .await;
    assert_eq!(again.unwrap(), NodeEnsured::Existed);
    let cm = NodeDiscovery::cloud_map_attributes([("version", "v4")]);
    let err = router
        .ensure_virtual_node(&route(), V1, "distributorV4", &cm)
        .await
        .unwrap_err();
    assert!(matches!(err, TrafficError::BadRequest { .. }), "{err}");
}
