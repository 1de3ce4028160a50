//! ECS native deployments (LINEAR, CANARY) judged by meshkit, over HTTP through the
//! real SDK to the moto emulator with meshkit's extension for service deployments
//! (moto has none of the four operations): the extension on its own first, then the
//! judge: healthy → SUCCESSFUL, a check failing at a pause → ROLLBACK answered, a
//! check failing during a bake → StopServiceDeployment, the judge killed and
//! restarted → carries on without answering a hook twice, a hook left to expire →
//! rolled back and said why. One ECS minute lasts one second here.

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_ecs::types::{
    ContainerDefinition, DeploymentConfiguration, DeploymentLifecycleHook,
    DeploymentLifecycleHookAction, DeploymentLifecycleHookStage, DeploymentLifecycleHookTargetType,
    DeploymentLifecycleHookTimeoutConfiguration, DeploymentStrategy, LinearConfiguration,
    StopServiceDeploymentStopType,
};
use meshkit::Outcome;
use meshkit::health::{self, Verdict};
use meshkit::native::{EcsNative, NativeStrategy};
use meshkit::rollout::Event;
use meshkit::rollout::RollbackReason;
use meshkit_testing::MotoServer;

const CLUSTER: &str = "shop";
const MIN: Duration = Duration::from_secs(60);

fn moto() -> MotoServer {
    MotoServer::start_with_env(&[("MESHKIT_ECS_MINUTE_SECONDS", "1")]).unwrap()
}

async fn service(moto: &MotoServer) -> aws_sdk_ecs::Client {
    let ecs = aws_sdk_ecs::Client::new(&moto.sdk_config());
    ecs.create_cluster()
        .cluster_name(CLUSTER)
        .send()
        .await
        .unwrap();
    for v in ["v1", "v2"] {
        ecs.register_task_definition()
            .family("web")
            .container_definitions(
                ContainerDefinition::builder()
                    .name("web")
                    .image(format!("shop/web:{v}"))
                    .memory(256)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    ecs.create_service()
        .cluster(CLUSTER)
        .service_name("web")
        .task_definition("web:1")
        .desired_count(2)
        .send()
        .await
        .unwrap();
    ecs
}

/// The ARNs of the service's deployments, newest first, as a separate ECS client
/// lists them.
async fn deployments(ecs: &aws_sdk_ecs::Client) -> Vec<String> {
    ecs.list_service_deployments()
        .cluster(CLUSTER)
        .service("web")
        .send()
        .await
        .unwrap()
        .service_deployments()
        .iter()
        .filter_map(|d| d.service_deployment_arn().map(str::to_owned))
        .collect()
}

async fn describe(ecs: &aws_sdk_ecs::Client, arn: &str) -> aws_sdk_ecs::types::ServiceDeployment {
    ecs.describe_service_deployments()
        .service_deployment_arns(arn)
        .send()
        .await
        .unwrap()
        .service_deployments()[0]
        .clone()
}

/// The emulator extension alone: a LINEAR deployment's hooks, answers and stops,
/// shaped as the ECS API reference says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_extension_follows_the_api_reference() {
    let moto = moto();
    let ecs = service(&moto).await;
    let hooks = DeploymentLifecycleHook::builder()
        .target_type(DeploymentLifecycleHookTargetType::Pause)
        .lifecycle_stages(DeploymentLifecycleHookStage::PreProductionTrafficShift)
        .timeout_configuration(
            DeploymentLifecycleHookTimeoutConfiguration::builder()
                .timeout_in_minutes(1)
                .action(DeploymentLifecycleHookAction::Rollback)
                .build(),
        )
        .build();
    let start = |td: &'static str| {
        let ecs = ecs.clone();
        let hooks = hooks.clone();
        async move {
            ecs.update_service()
                .cluster(CLUSTER)
                .service("web")
                .task_definition(td)
                .deployment_configuration(
                    DeploymentConfiguration::builder()
                        .strategy(DeploymentStrategy::Linear)
                        .linear_configuration(
                            LinearConfiguration::builder()
                                .step_percent(50.0)
                                .step_bake_time_in_minutes(0)
                                .build(),
                        )
                        .lifecycle_hooks(hooks)
                        .build(),
                )
                .send()
                .await
                .unwrap();
            let svc = ecs
                .describe_services()
                .cluster(CLUSTER)
                .services("web")
                .send()
                .await
                .unwrap();
            svc.services()[0]
                .current_service_deployment()
                .unwrap()
                .to_owned()
        }
    };
    let arn = start("web:2").await;
    let listed = deployments(&ecs).await;
    assert_eq!(listed.first().map(String::as_str), Some(arn.as_str()));
    let d = describe(&ecs, &arn).await;
    assert_eq!(d.status().unwrap().as_str(), "IN_PROGRESS");
    // The SDK has no variant for this stage: it parses as unknown, matched by string.
    assert_eq!(
        d.lifecycle_stage().unwrap().as_str(),
        "PRE_PRODUCTION_TRAFFIC_SHIFT"
    );
    let hook = d.lifecycle_hook_details()[0].clone();
    assert_eq!(hook.status().unwrap().as_str(), "AWAITING_ACTION");
    assert!(hook.expires_at().is_some());
    let wrong = ecs
        .continue_service_deployment()
        .service_deployment_arn(&arn)
        .hook_id("not-the-hook")
        .action(DeploymentLifecycleHookAction::Continue)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        wrong.as_service_error().and_then(|e| e.meta().code()),
        Some("InvalidParameterException")
    );
    ecs.continue_service_deployment()
        .service_deployment_arn(&arn)
        .hook_id(hook.hook_id().unwrap())
        .action(DeploymentLifecycleHookAction::Continue)
        .send()
        .await
        .unwrap();
    let d = describe(&ecs, &arn).await;
    let weight = d
        .target_service_revision()
        .unwrap()
        .requested_production_traffic_weight();
    assert_eq!(weight, Some(50.0));
    let next = d.lifecycle_hook_details()[0].hook_id().unwrap().to_owned();
    assert_ne!(
        next,
        hook.hook_id().unwrap(),
        "a new hook id at every pause"
    );
    // The same hook cannot be answered twice.
    let twice = ecs
        .continue_service_deployment()
        .service_deployment_arn(&arn)
        .hook_id(hook.hook_id().unwrap())
        .action(DeploymentLifecycleHookAction::Continue)
        .send()
        .await;
    assert!(twice.is_err());
    ecs.stop_service_deployment()
        .service_deployment_arn(&arn)
        .stop_type(StopServiceDeploymentStopType::Rollback)
        .send()
        .await
        .unwrap();
    let d = describe(&ecs, &arn).await;
    assert_eq!(d.status().unwrap().as_str(), "ROLLBACK_SUCCESSFUL");
    assert_eq!(
        d.target_service_revision()
            .unwrap()
            .requested_production_traffic_weight(),
        Some(0.0)
    );
    assert!(
        d.rollback()
            .unwrap()
            .reason()
            .unwrap()
            .contains("StopServiceDeployment")
    );
    // A hook nobody answers times out into its action.
    let arn = start("web:1").await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let d = describe(&ecs, &arn).await;
    assert_eq!(d.status().unwrap().as_str(), "ROLLBACK_SUCCESSFUL");
    assert_eq!(
        d.lifecycle_hook_details()[0].status().unwrap().as_str(),
        "TIMED_OUT"
    );
    assert!(
        d.rollback()
            .unwrap()
            .reason()
            .unwrap()
            .contains("timed out")
    );
}

fn judge(
    ecs: &aws_sdk_ecs::Client,
    strategy: NativeStrategy,
    check: impl health::HealthCheck + 'static,
) -> EcsNative {
    EcsNative::builder()
        .client(ecs.clone())
        .cluster(CLUSTER)
        .service("web")
        .task_definition("web:2")
        .strategy(strategy)
        .hook_timeout(MIN)
        .names("web:1", "web:2")
        .check(check)
        .check_interval(Duration::from_millis(100))
        .poll_interval(Duration::from_millis(40))
        .call_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

const LINEAR: NativeStrategy = NativeStrategy::Linear {
    step_percent: 50.0,
    step_bake: MIN,
};

async fn run(n: EcsNative) -> (Result<Outcome, meshkit::RolloutError>, Vec<Event>) {
    let mut events = n.events();
    let collect = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(e) = events.recv().await {
            all.push(e);
        }
        all
    });
    let r = n.run().await;
    (r, collect.await.unwrap())
}

fn answers(events: &[Event]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::HookAnswered {
                hook_id,
                action,
                error: None,
            } => Some((hook_id.clone(), action.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_linear_is_promoted_after_answering_every_pause() {
    let moto = moto();
    let ecs = service(&moto).await;
    let (r, events) = run(judge(
        &ecs,
        LINEAR,
        health::from_fn("ok", |_| async { Verdict::Healthy }),
    ))
    .await;
    let outcome = r.unwrap();
    assert!(outcome.is_promoted(), "{outcome}");
    assert_eq!(outcome.weights().to_string(), "web:1=0 web:2=100");
    // Before 50%, before 100%, after the last shift: three pauses, each continued once.
    let a = answers(&events);
    assert_eq!(a.len(), 3, "{events:#?}");
    assert!(a.iter().all(|(_, act)| act == "CONTINUE"));
    assert_eq!(a.iter().map(|(h, _)| h).collect::<HashSet<_>>().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_failing_at_step_two_is_answered_with_rollback() {
    let moto = moto();
    let ecs = service(&moto).await;
    // Unhealthy once half the traffic is on web:2: the pause before 100% is refused.
    let check = health::from_fn("5xx", |ctx| {
        let share = ctx.weights.percent_f64("web:2");
        async move {
            if share >= 50.0 {
                Verdict::unhealthy("5xx rate 4.2% above 1%")
            } else {
                Verdict::Healthy
            }
        }
    });
    // No bake between steps: the 50% split is judged at the pause before 100%.
    let linear = NativeStrategy::Linear {
        step_percent: 50.0,
        step_bake: Duration::ZERO,
    };
    let (r, events) = run(judge(&ecs, linear, check)).await;
    match r.unwrap() {
        Outcome::RolledBack {
            reason: RollbackReason::Unhealthy(why),
            weights,
            ..
        } => {
            assert!(why.contains("5xx rate"), "{why}");
            assert_eq!(weights.to_string(), "web:1=100 web:2=0");
        }
        other => panic!("{other}"),
    }
    let a = answers(&events);
    assert_eq!(a.last().unwrap().1, "ROLLBACK", "{a:?}");
    assert_eq!(
        a.iter().filter(|(_, act)| act == "CONTINUE").count(),
        1,
        "{a:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_failing_during_a_bake_stops_the_deployment() {
    let moto = moto();
    let ecs = service(&moto).await;
    let canary = NativeStrategy::Canary {
        percent: 10.0,
        bake: MIN * 2,
    };
    let check = health::from_fn("5xx", |ctx| {
        let share = ctx.weights.percent_f64("web:2");
        async move {
            if share > 0.0 {
                Verdict::unhealthy("p99 1.8 s above 500 ms")
            } else {
                Verdict::Healthy
            }
        }
    });
    let (r, events) = run(judge(&ecs, canary, check)).await;
    match r.unwrap() {
        Outcome::RolledBack {
            reason: RollbackReason::Unhealthy(why),
            ..
        } => assert!(why.contains("p99")),
        other => panic!("{other}"),
    }
    // Only the first pause was answered (continue); the rollback was a stop.
    let a = answers(&events);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].1, "CONTINUE");
    let listed = deployments(&ecs).await;
    let arn = listed[0].clone();
    let d = describe(&ecs, &arn).await;
    assert!(
        d.rollback()
            .unwrap()
            .reason()
            .unwrap()
            .contains("StopServiceDeployment")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_judge_killed_and_restarted_carries_on_without_acting_twice() {
    let moto = moto();
    let ecs = service(&moto).await;
    let ok = || health::from_fn("ok", |_| async { Verdict::Healthy });
    let first = judge(&ecs, LINEAR, ok());
    let mut events = first.events();
    let task = tokio::spawn(first.run());
    let mut first_answers = Vec::new();
    while let Some(e) = events.recv().await {
        if let Event::HookAnswered { hook_id, .. } = e {
            first_answers.push(hook_id);
            break;
        }
    }
    task.abort(); // killed mid-deployment
    let _ = task.await;
    let (r, events) = run(judge(&ecs, LINEAR, ok())).await;
    assert!(r.unwrap().is_promoted());
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::DeploymentFound { .. })),
        "carried on, not restarted"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::DeploymentStarted { .. }))
    );
    let second: Vec<String> = answers(&events).into_iter().map(|(h, _)| h).collect();
    assert_eq!(second.len(), 2, "{second:?}");
    assert!(
        second.iter().all(|h| !first_answers.contains(h)),
        "no hook answered twice"
    );
    let listed = deployments(&ecs).await;
    assert_eq!(listed.len(), 1, "one deployment, not two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_left_to_expire_rolls_back_and_says_why() {
    let moto = moto();
    let ecs = service(&moto).await;
    let n = judge(
        &ecs,
        LINEAR,
        health::from_fn("ok", |_| async { Verdict::Healthy }),
    );
    n.handle().pause().unwrap();
    let (r, events) = run(n).await;
    match r.unwrap() {
        Outcome::RolledBack {
            reason: RollbackReason::Native(why),
            ..
        } => {
            assert!(why.contains("expired before meshkit answered it"), "{why}");
            assert!(why.contains("paused"), "{why}");
        }
        other => panic!("{other}"),
    }
    assert!(answers(&events).is_empty());
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::HookAwaiting { .. }))
    );
}

mod store_harness;

/// A judge of web:1 → web:2 under a store (a SQLite file, a test clock for lease
/// expiry).
fn stored(
    ecs: &aws_sdk_ecs::Client,
    store: &std::sync::Arc<meshkit::store::SqliteStore>,
    clock: &store_harness::ManualClock,
    name: &str,
) -> EcsNative {
    stored_of(ecs, store, clock, name, ("web:1", "web:2"))
}

/// A judge of `from` → `to` under a store.
fn stored_of(
    ecs: &aws_sdk_ecs::Client,
    store: &std::sync::Arc<meshkit::store::SqliteStore>,
    clock: &store_harness::ManualClock,
    name: &str,
    (from, to): (&str, &str),
) -> EcsNative {
    EcsNative::builder()
        .client(ecs.clone())
        .cluster(CLUSTER)
        .service("web")
        .task_definition(to)
        .strategy(LINEAR)
        .hook_timeout(MIN)
        .names(from, to)
        .check(health::from_fn("ok", |_| async { Verdict::Healthy }))
        .check_interval(Duration::from_millis(100))
        .poll_interval(Duration::from_millis(40))
        .call_timeout(Duration::from_millis(900))
        .store(store.clone())
        .store_clock(clock.clock())
        .holder(meshkit::store::Holder::named(name))
        .lease_ttl(Duration::from_secs(2))
        .build()
        .unwrap()
}

fn sqlite(
    name: &str,
) -> (
    std::sync::Arc<meshkit::store::SqliteStore>,
    store_harness::ManualClock,
) {
    let clock = store_harness::ManualClock::new();
    let dir = std::env::temp_dir().join(format!(
        "meshkit-native-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let store = meshkit::store::SqliteStore::open(dir.join("r.db"))
        .unwrap()
        .with_clock(clock.clock());
    (std::sync::Arc::new(store), clock)
}

/// Paused, killed, taken over: the pause still holds in the new judge (the hook is not
/// answered), and ECS's timeout rolls back, said as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_survives_a_takeover() {
    let moto = moto();
    let ecs = service(&moto).await;
    use meshkit::store::RolloutStore as _;
    let (store, clock) = sqlite("pause");
    let first = stored(&ecs, &store, &clock, "judge-1");
    let mut events = first.events();
    let task = tokio::spawn(first.run());
    // The pause comes through the store, as `meshkit pause` sends it, and is applied.
    let id = loop {
        if let Some(id) = store
            .lease("ecs:shop/web")
            .await
            .unwrap()
            .and_then(|l| l.rollout)
        {
            break id;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    store
        .request(&id, meshkit::store::Gate::Pause, "ops")
        .await
        .unwrap();
    while let Some(e) = events.recv().await {
        if matches!(e, Event::Paused) {
            break;
        }
    }
    task.abort();
    let _ = task.await;
    clock.expire_leases();
    let (r, events) = run(stored(&ecs, &store, &clock, "judge-2")).await;
    match r.unwrap() {
        Outcome::RolledBack {
            reason: RollbackReason::Native(why),
            ..
        } => {
            assert!(
                why.contains("expired before meshkit answered it (the rollout was paused)"),
                "{why}"
            )
        }
        other => panic!("{other}"),
    }
    assert!(
        answers(&events).is_empty(),
        "the held hook was not answered: {events:#?}"
    );
}

/// The judge died and the deployment ended meanwhile (its hook expired): the next
/// judge reports that end, and starts no new deployment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_after_the_deployment_ended_reports_it_and_starts_nothing() {
    let moto = moto();
    let ecs = service(&moto).await;
    let (store, clock) = sqlite("ended");
    let first = stored(&ecs, &store, &clock, "judge-1");
    first.handle().pause().unwrap();
    let mut events = first.events();
    let task = tokio::spawn(first.run());
    while let Some(e) = events.recv().await {
        if matches!(e, Event::HookAwaiting { .. }) {
            break;
        }
    }
    task.abort();
    let _ = task.await;
    // ECS's one-minute hook timeout (one second here) passes with no judge.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    clock.expire_leases();
    let (r, events) = run(stored(&ecs, &store, &clock, "judge-2")).await;
    match r.unwrap() {
        Outcome::RolledBack {
            reason: RollbackReason::Native(why),
            ..
        } => {
            assert!(
                why.contains("(no judge was running when it expired)"),
                "{why}"
            )
        }
        other => panic!("{other}"),
    }
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::DeploymentStarted { .. }))
    );
    let listed = deployments(&ecs).await;
    assert_eq!(listed.len(), 1, "no second deployment");
    use meshkit::store::RolloutStore as _;
    let history = store.history(None, 10).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].state, meshkit::store::RecordState::RolledBack);
}

/// Run again once the service already runs the new revision: nothing started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_on_the_deployed_revision_starts_nothing() {
    let moto = moto();
    let ecs = service(&moto).await;
    let ok = || health::from_fn("ok", |_| async { Verdict::Healthy });
    assert!(
        run(judge(&ecs, LINEAR, ok()))
            .await
            .0
            .unwrap()
            .is_promoted()
    );
    let (r, events) = run(judge(&ecs, LINEAR, ok())).await;
    assert!(r.unwrap().is_promoted());
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::AlreadyInForce { .. })),
        "{events:#?}"
    );
    let listed = deployments(&ecs).await;
    assert_eq!(listed.len(), 1, "no second deployment");
}

/// A record taken over whose judge died before starting anything: the service's
/// last deployment is older than the record (another rollout's), so it is not taken
/// for this one; a new deployment starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_deployment_is_not_taken_for_the_record() {
    use meshkit::store::RolloutStore as _;
    let moto = moto();
    let ecs = service(&moto).await;
    let ok = || health::from_fn("ok", |_| async { Verdict::Healthy });
    assert!(
        run(judge(&ecs, LINEAR, ok()))
            .await
            .0
            .unwrap()
            .is_promoted()
    );
    // Later, a judge of web:2 → web:1 opens its record and dies before UpdateService.
    let (store, clock) = sqlite("older");
    // Three hours after the real time of the first deployment (the store's clock
    // starts at a fixed date, which the real clock passes).
    let behind = std::time::SystemTime::now()
        .duration_since(clock.now())
        .unwrap_or_default();
    clock.advance(behind + Duration::from_secs(3 * 3600));
    let lease = store
        .acquire(
            "ecs:shop/web",
            &meshkit::store::Holder::named("judge-1"),
            Duration::from_secs(2),
        )
        .await
        .unwrap();
    store
        .open(
            &lease,
            &meshkit::store::NewRollout {
                id: "ecs-shop-web".into(),
                route: "ecs:shop/web".into(),
                stable: "web:2".into(),
                candidate: "web:1".into(),
                strategy: "ecs-linear".into(),
                plan: vec![],
                started_by: meshkit::store::Holder::named("judge-1"),
            },
        )
        .await
        .unwrap();
    clock.expire_leases();
    let (r, events) = run(stored_of(
        &ecs,
        &store,
        &clock,
        "judge-2",
        ("web:2", "web:1"),
    ))
    .await;
    assert!(r.unwrap().is_promoted());
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::DeploymentStarted { .. })),
        "{events:#?}"
    );
    let listed = deployments(&ecs).await;
    assert_eq!(listed.len(), 2);
}
