//! `ElbRouter` against the moto emulator's real ELBv2 API: every strategy on a listener
//! rule and on listener default actions (ALB and NLB), everything but the weights kept,
//! exact relative weights, other writers, a spare group at 0, calls per step, and the
//! data plane judged from CloudWatch request counts. Real time, short bakes.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::{Action, Rule, TargetGroupStickinessConfig};
use meshkit::health::Verdict;
use meshkit::health::from_fn;
use meshkit::rollout::{Event, RollbackReason};
use meshkit::strategy::{BlueGreen, Canary, CanaryBlueGreen, Linear, Strategy};
use meshkit::traffic::elb::{ElbRouter, TrafficMetrics};
use meshkit::traffic::{
    Convergence, Judge, Percent, RouteRef, TrafficRouter, Weights, WriteRequest,
};
use meshkit::{Outcome, Rollout, RolloutBuilder, RolloutError};
use meshkit_testing::elb::{self, ElbTopology};
use meshkit_testing::{CallCounter, MotoServer, gopher};

const V1: &str = "web-v1";
const V2: &str = "web-v2";
const V3: &str = "web-v3";
const SPARE: &str = "web-spare";

struct Setup {
    _moto: MotoServer,
    sdk: meshkit::sdk::SdkConfig,
    topo: ElbTopology,
    counter: CallCounter,
    /// A client of another writer, uncounted.
    other: Client,
}

async fn setup(nlb: bool) -> Setup {
    let moto = gopher::moto();
    let sdk = moto.sdk_config();
    let topo = if nlb {
        elb::nlb(&sdk, &moto).await
    } else {
        elb::alb(&sdk, &moto).await
    };
    Setup {
        other: Client::new(&sdk),
        counter: CallCounter::new(),
        sdk,
        topo,
        _moto: moto,
    }
}

impl Setup {
    /// A router with no settle delay (the emulator applies at once), counting calls.
    fn router(&self) -> ElbRouter {
        ElbRouter::new(elb::client(&self.sdk, &self.counter)).settle_delay(Duration::ZERO)
    }

    fn rule(&self) -> String {
        self.topo.rule.clone().unwrap()
    }

    async fn read_rule(&self) -> Rule {
        let out = self
            .other
            .describe_rules()
            .rule_arns(self.rule())
            .send()
            .await
            .unwrap();
        out.rules()[0].clone()
    }

    async fn listener_actions(&self) -> Vec<Action> {
        let out = self
            .other
            .describe_listeners()
            .listener_arns(&self.topo.listener)
            .send()
            .await
            .unwrap();
        out.listeners()[0].default_actions().to_vec()
    }

    /// `(group name, weight)` of a forward action, as stored.
    fn weights_of(&self, actions: &[Action]) -> Vec<(String, i32)> {
        let f = actions[0].forward_config().unwrap();
        f.target_groups()
            .iter()
            .map(|t| {
                let arn = t.target_group_arn().unwrap();
                let name = self
                    .topo
                    .groups
                    .iter()
                    .find(|(_, a)| a == arn)
                    .unwrap()
                    .0
                    .clone();
                (name, t.weight().unwrap())
            })
            .collect()
    }

    async fn set_rule(&self, groups: &[(&str, i32)], sticky: Option<i32>) {
        let arns: Vec<(&str, i32)> = groups.iter().map(|(n, w)| (self.topo.arn(n), *w)).collect();
        self.other
            .modify_rule()
            .rule_arn(self.rule())
            .actions(elb::forward(&arns, sticky))
            .send()
            .await
            .unwrap();
    }
}

fn healthy() -> impl meshkit::health::HealthCheck {
    from_fn("always healthy", |_| async { Verdict::Healthy })
}

fn rollout(
    router: ElbRouter,
    route: &str,
    from: &str,
    to: &str,
    strategy: impl Strategy + 'static,
) -> RolloutBuilder {
    Rollout::builder()
        .router(router)
        .route(route)
        .from(from)
        .to(to)
        .strategy(strategy)
        .check(healthy())
        .check_interval(Duration::from_millis(50))
        .check_timeout(Duration::from_millis(50))
        .settle_timeout(Duration::from_secs(5))
        .rollback_window(Duration::from_millis(50))
}

fn bake() -> Duration {
    Duration::from_millis(100)
}

/// One rollout per strategy, back to back: v1 -> v2 -> v3 -> v1 -> v2.
fn strategies() -> Vec<(&'static str, &'static str, Box<dyn Strategy>)> {
    vec![
        (V1, V2, Box::new(Canary::steps([10, 50, 100]).bake(bake()))),
        (V2, V3, Box::new(Linear::new(50, bake()))),
        (
            V3,
            V1,
            Box::new(BlueGreen::new().pre_check(bake()).bake(bake())),
        ),
        (
            V1,
            V2,
            Box::new(
                CanaryBlueGreen::new_exact([
                    Percent::from_tenths(5).unwrap(),
                    Percent::whole(20).unwrap(),
                ])
                .pre_check(bake())
                .step_bake(bake())
                .bake(bake()),
            ),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_strategy_on_a_rule_keeps_conditions_priority_and_stickiness() {
    let s = setup(false).await;
    let before = s.read_rule().await;
    for (from, to, strategy) in strategies() {
        let name = strategy.name().to_owned();
        let outcome = rollout(s.router(), &s.rule(), from, to, strategy)
            .build()
            .unwrap()
            .run()
            .await
            .unwrap();
        assert!(
            matches!(outcome, Outcome::Promoted { .. }),
            "{name}: {outcome}"
        );
        let after = s.read_rule().await;
        // Only the new version is left on the rule, at 100.
        assert_eq!(
            s.weights_of(after.actions()),
            vec![(to.to_owned(), 100)],
            "{name}"
        );
        // Everything else exactly as before.
        assert_eq!(after.priority(), before.priority());
        assert_eq!(after.conditions(), before.conditions());
        assert_eq!(after.is_default(), before.is_default());
        assert_eq!(
            after.actions()[0]
                .forward_config()
                .unwrap()
                .target_group_stickiness_config(),
            before.actions()[0]
                .forward_config()
                .unwrap()
                .target_group_stickiness_config(),
            "{name}"
        );
        assert_eq!(after.actions()[0].order(), before.actions()[0].order());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_strategy_on_alb_and_nlb_default_actions() {
    for nlb in [false, true] {
        let s = setup(nlb).await;
        // A Network Load Balancer's listener is named `net/`, as on AWS.
        let kind = if nlb {
            ":listener/net/"
        } else {
            ":listener/app/"
        };
        assert!(s.topo.listener.contains(kind), "{}", s.topo.listener);
        for (from, to, strategy) in strategies() {
            let name = strategy.name().to_owned();
            let outcome = rollout(s.router(), &s.topo.listener, from, to, strategy)
                .build()
                .unwrap()
                .run()
                .await
                .unwrap();
            assert!(
                matches!(outcome, Outcome::Promoted { .. }),
                "nlb={nlb} {name}: {outcome}"
            );
            let actions = s.listener_actions().await;
            assert_eq!(
                s.weights_of(&actions),
                vec![(to.to_owned(), 100)],
                "nlb={nlb} {name}"
            );
        }
        // The listener's own settings are untouched.
        let out = s
            .other
            .describe_listeners()
            .listener_arns(&s.topo.listener)
            .send()
            .await
            .unwrap();
        let l = &out.listeners()[0];
        assert_eq!(l.port(), Some(if nlb { 443 } else { 80 }));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_at_999_to_1_is_read_exactly() {
    let s = setup(false).await;
    s.set_rule(&[(V1, 999), (V2, 1)], Some(300)).await;
    let router = s.router();
    let route = RouteRef::new(s.rule()).unwrap();
    let seen = router.read(&route).await.unwrap();
    assert_eq!(seen.weights.share(V2), Some(Percent::TENTH));
    assert_eq!(seen.weights.to_string(), "web-v1=99.9 web-v2=0.1");
    assert_ne!(seen.weights, Weights::split(V1, V2, 0).unwrap());

    // Not at the start, so a plain run refuses; a resume refuses a split the plan
    // never writes, saying what is in force exactly; a plan with a 0.1% step resumes.
    let plan = || Canary::steps([10, 50, 100]).bake(bake());
    let err = rollout(s.router(), &s.rule(), V1, V2, plan())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("web-v1=99.9 web-v2=0.1"), "{err}");
    let err = rollout(s.router(), &s.rule(), V1, V2, plan())
        .resume(true)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap_err();
    assert!(matches!(err, RolloutError::NotResumable { .. }), "{err}");
    assert!(err.to_string().contains("web-v1=99.9 web-v2=0.1"), "{err}");
    let fine = Canary::steps_exact([Percent::TENTH, Percent::whole(50).unwrap(), Percent::ALL])
        .bake(bake());
    let rollout = rollout(s.router(), &s.rule(), V1, V2, fine)
        .resume(true)
        .build()
        .unwrap();
    let events = rollout.events();
    let outcome = rollout.run().await.unwrap();
    assert!(matches!(outcome, Outcome::Promoted { .. }), "{outcome}");
    let seen = common::drain(events).await;
    let exact = Weights::relative([(V1, 999), (V2, 1)]).unwrap();
    assert!(
        seen.contains(&Event::AlreadyInForce { weights: exact }),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_percent_step_is_written_as_995_to_5() {
    let s = setup(false).await;
    let plan = Canary::steps_exact(["0.5".parse().unwrap(), "5".parse().unwrap(), Percent::ALL])
        .bake(Duration::from_secs(2));
    let rollout = rollout(s.router(), &s.rule(), V1, V2, plan)
        .build()
        .unwrap();
    let mut events = rollout.events();
    let run = tokio::spawn(rollout.run());
    // While the first step bakes, the rule holds exactly 995:5.
    loop {
        if let Some(Event::WeightsWritten { weights }) = events.recv().await {
            assert_eq!(weights.share(V2), Some(Percent::from_tenths(5).unwrap()));
            break;
        }
    }
    let rule = s.read_rule().await;
    assert_eq!(
        s.weights_of(rule.actions()),
        vec![(V1.to_owned(), 995), (V2.to_owned(), 5)]
    );
    assert!(matches!(
        run.await.unwrap().unwrap(),
        Outcome::Promoted { .. }
    ));
}

/// Runs a canary and, once its first step is written, lets `other` change the rule.
async fn with_another_writer(
    s: &Setup,
    change: impl std::future::Future<Output = ()>,
) -> RolloutError {
    let rollout = rollout(
        s.router(),
        &s.rule(),
        V1,
        V2,
        Canary::steps([10, 50, 100]).bake(Duration::from_secs(1)),
    )
    .build()
    .unwrap();
    let mut events = rollout.events();
    let run = tokio::spawn(rollout.run());
    loop {
        match events.recv().await {
            Some(Event::WeightsWritten { .. }) => break,
            Some(_) => {}
            None => panic!("the rollout ended before its first write"),
        }
    }
    change.await;
    run.await.unwrap().unwrap_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_writer_changing_only_stickiness_is_detected_and_left_alone() {
    let s = setup(false).await;
    let err = with_another_writer(&s, s.set_rule(&[(V1, 90), (V2, 10)], Some(3600))).await;
    assert!(
        matches!(err, RolloutError::ConcurrentWriter { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("same weights"), "{err}");
    // The other writer's stickiness and weights stay.
    let rule = s.read_rule().await;
    let f = rule.actions()[0].forward_config().unwrap();
    assert_eq!(
        f.target_group_stickiness_config(),
        Some(
            &TargetGroupStickinessConfig::builder()
                .enabled(true)
                .duration_seconds(3600)
                .build()
        )
    );
    assert_eq!(
        s.weights_of(rule.actions()),
        vec![(V1.to_owned(), 90), (V2.to_owned(), 10)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_writer_changing_weights_is_detected_and_left_alone() {
    let s = setup(false).await;
    let err = with_another_writer(&s, s.set_rule(&[(V1, 70), (V2, 30)], Some(300))).await;
    assert!(
        matches!(err, RolloutError::ConcurrentWriter { .. }),
        "{err}"
    );
    let rule = s.read_rule().await;
    assert_eq!(
        s.weights_of(rule.actions()),
        vec![(V1.to_owned(), 70), (V2.to_owned(), 30)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spare_group_at_weight_0_stays_at_0_and_calls_per_step_are_two() {
    let s = setup(false).await;
    s.set_rule(&[(V1, 100), (SPARE, 0)], Some(300)).await;
    let router = s.router();
    // Resolve the names once, as a preflight does before a run.
    let pre = router
        .preflight(&RouteRef::new(s.rule()).unwrap(), V1, V2)
        .await
        .unwrap();
    assert_eq!(
        (pre.stable_targets, pre.candidate_targets),
        ((1, 1), (1, 1))
    );
    s.counter.clear();
    let rounds = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let probe = {
        let rounds = rounds.clone();
        from_fn("count rounds", move |_| {
            let rounds = rounds.clone();
            async move {
                rounds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Verdict::Healthy
            }
        })
    };
    let outcome = rollout(
        router,
        &s.rule(),
        V1,
        V2,
        Canary::steps([10, 50, 100]).bake(bake()),
    )
    .check(probe)
    .build()
    .unwrap()
    .run()
    .await
    .unwrap();
    assert!(matches!(outcome, Outcome::Promoted { .. }), "{outcome}");
    let rule = s.read_rule().await;
    assert_eq!(
        s.weights_of(rule.actions()),
        vec![(SPARE.to_owned(), 0), (V2.to_owned(), 100)]
    );
    let calls = s.counter.calls();
    let count = |op: &str| calls.iter().filter(|c| *c == op).count();
    let rounds = rounds.load(std::sync::atomic::Ordering::SeqCst);
    // Writes: 10%, 50%, 100%, and the rule without v1.
    assert_eq!(count("ModifyRule"), 4, "{calls:?}");
    // Reads: the start, one before each write (4), the confirm at retire and at
    // promotion, and one per check round; no read-back after a write.
    assert_eq!(
        count("DescribeRules"),
        1 + 4 + 2 + rounds,
        "{rounds} rounds: {calls:?}"
    );
    assert_eq!(
        calls.len(),
        count("ModifyRule") + count("DescribeRules"),
        "{calls:?}"
    );
    println!(
        "ELB calls for a 3-step canary: {} ModifyRule, {} DescribeRules ({rounds} check rounds)",
        count("ModifyRule"),
        count("DescribeRules")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_five_groups_or_weights_past_999_are_refused_before_any_call() {
    let s = setup(false).await;
    let router = s.router();
    let route = RouteRef::new(s.rule()).unwrap();
    s.counter.clear();
    let six = Weights::relative((0..6).map(|i| (format!("g{i}"), 1))).unwrap();
    let err = router
        .write(
            &route,
            &WriteRequest {
                weights: six,
                token: "t".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("at most 5"), "{err}");
    let wide = Weights::relative([(V1, 1000), (V2, 1)]).unwrap();
    let err = router
        .write(
            &route,
            &WriteRequest {
                weights: wide,
                token: "t".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("0-999"), "{err}");
    assert_eq!(s.counter.calls(), Vec::<String>::new());
}

fn minute_after(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs();
    UNIX_EPOCH + Duration::from_secs(secs - secs % 60 + 60)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converged_is_judged_from_request_counts_since_the_write() {
    let s = setup(false).await;
    let cw = meshkit::sdk::cloudwatch::Client::new(&s.sdk);
    let judge = Judge {
        min_requests: 100,
        ..Judge::default()
    };
    let router = ElbRouter::new(Client::new(&s.sdk))
        .confirm_with(TrafficMetrics::new(cw.clone()).judge(judge));
    let route = RouteRef::new(s.rule()).unwrap();
    let ten = Weights::split(V1, V2, 10).unwrap();
    router.read(&route).await.unwrap();
    let put = |group: &'static str, at: SystemTime, n: f64| {
        let (cw, lb, arn) = (
            cw.clone(),
            s.topo.lb_dimension.clone(),
            s.topo.arn(group).to_owned(),
        );
        async move { elb::put_metric(&cw, "AWS/ApplicationELB", "RequestCount", &lb, &arn, at, n).await }
    };
    // Before any write by this router: nothing to judge.
    assert_eq!(
        router.converged(&route, &ten).await.unwrap(),
        Convergence::Unknown
    );
    let written = SystemTime::now();
    router
        .write(
            &route,
            &WriteRequest {
                weights: ten.clone(),
                token: "t".into(),
            },
        )
        .await
        .unwrap();
    // Traffic from before the write does not count.
    put(V1, written - Duration::from_secs(120), 5000.0).await;
    let got = router.converged(&route, &ten).await.unwrap();
    assert!(
        matches!(got, Convergence::TooFewRequests { seen: 0, .. }),
        "{got}"
    );
    let after = minute_after(written);
    // Too few requests.
    put(V1, after, 40.0).await;
    put(V2, after, 4.0).await;
    let got = router.converged(&route, &ten).await.unwrap();
    assert!(
        matches!(got, Convergence::TooFewRequests { seen: 44, .. }),
        "{got}"
    );
    // Not yet: 1,000 requests, all still on v1.
    put(V1, after, 956.0).await;
    let got = router.converged(&route, &ten).await.unwrap();
    assert!(matches!(got, Convergence::NotYet { .. }), "{got}");
    assert!(got.to_string().contains("web-v2 at 0.4%"), "{got}");
    // Converged: 10% of 11,000 on v2.
    put(V1, after, 8904.0).await;
    put(V2, after, 1096.0).await;
    let got = router.converged(&route, &ten).await.unwrap();
    assert!(matches!(got, Convergence::Applied { .. }), "{got}");
}

/// A load balancer's traffic: whenever the rule's weights change, the request counts
/// of the next minute, as the weights say, or all on `stuck` (a load balancer that did
/// not apply the change).
fn feed(s: &Setup, stuck: Option<&'static str>) -> tokio::task::JoinHandle<()> {
    let cw = meshkit::sdk::cloudwatch::Client::new(&s.sdk);
    let (elb, topo, rule) = (s.other.clone(), s.topo.clone(), s.rule());
    tokio::spawn(async move {
        // The rule as found is not a change: its traffic came before the rollout.
        let mut last = None;
        loop {
            let out = elb.describe_rules().rule_arns(&rule).send().await;
            let Ok(out) = out else { continue };
            let groups: Vec<(String, i32)> = out.rules()[0].actions()[0]
                .forward_config()
                .unwrap()
                .target_groups()
                .iter()
                .map(|t| {
                    (
                        t.target_group_arn().unwrap().to_owned(),
                        t.weight().unwrap(),
                    )
                })
                .collect();
            if last.is_none() {
                last = Some(groups);
            } else if last.as_ref() != Some(&groups) {
                let total: i32 = groups.iter().map(|(_, w)| w).sum();
                let at = minute_after(SystemTime::now());
                for (arn, w) in &groups {
                    let n = match stuck {
                        Some(s) if topo.arn(s) == arn => 1000.0,
                        Some(_) => 0.0,
                        None => f64::from(*w) * 1000.0 / f64::from(total),
                    };
                    elb::put_metric(
                        &cw,
                        "AWS/ApplicationELB",
                        "RequestCount",
                        &topo.lb_dimension,
                        arn,
                        at,
                        n,
                    )
                    .await;
                }
                last = Some(groups);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_goes_on_only_when_measured_traffic_follows_the_weights() {
    let s = setup(false).await;
    let metrics = || {
        TrafficMetrics::new(meshkit::sdk::cloudwatch::Client::new(&s.sdk))
            .judge(Judge {
                min_requests: 100,
                ..Judge::default()
            })
            .wait(Duration::from_secs(3))
    };
    // The new group is on the rule at 0 already (no attaching write to feed).
    s.set_rule(&[(V1, 100), (V2, 0)], Some(300)).await;
    // The load balancer applies: promoted, with the measurement in the events.
    let router = ElbRouter::new(Client::new(&s.sdk)).confirm_with(metrics());
    let run = rollout(
        router,
        &s.rule(),
        V1,
        V2,
        BlueGreen::new().pre_check(bake()).bake(bake()),
    )
    .build()
    .unwrap();
    let feeder = feed(&s, None);
    let events = run.events();
    let outcome = run.run().await.unwrap();
    assert!(matches!(outcome, Outcome::Promoted { .. }), "{outcome}");
    let seen = common::drain(events).await;
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::TrafficMeasured { .. })),
        "{seen:?}"
    );
    feeder.abort();

    // The load balancer keeps sending everything to v2: rolled back, saying why.
    let router = ElbRouter::new(Client::new(&s.sdk)).confirm_with(metrics());
    let run = rollout(
        router,
        &s.rule(),
        V2,
        V3,
        BlueGreen::new().pre_check(bake()).bake(bake()),
    )
    .build()
    .unwrap();
    let feeder = feed(&s, Some(V2));
    let outcome = run.run().await.unwrap();
    match &outcome {
        Outcome::RolledBack {
            reason: RollbackReason::NotApplied(why),
            ..
        } => {
            assert!(why.contains("web-v3 at 0.0% (written 100.0%"), "{why}");
        }
        other => panic!("expected a rollback for an unapplied split, got {other}"),
    }
    feeder.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_checks_read_the_new_groups_metrics_given_arns() {
    use meshkit::health::{CheckContext, CloudWatchMetric, HealthCheck, TargetGroupHealth};
    let s = setup(false).await;
    let cw = meshkit::sdk::cloudwatch::Client::new(&s.sdk);
    let ctx = CheckContext {
        stage: 0,
        stable: V1.into(),
        candidate: V2.into(),
        weights: Weights::split(V1, V2, 10).unwrap(),
        stage_elapsed: Duration::ZERO,
    };
    // ARNs work as well as dimensions: the rule's for the load balancer, the group's.
    let five = || {
        CloudWatchMetric::target_5xx(cw.clone(), s.rule(), s.topo.arn(V2))
            .window(Duration::from_secs(300))
            .build()
            .unwrap()
    };
    let put = |metric: &'static str, group: &'static str, v: f64| {
        let (cw, lb, arn) = (
            cw.clone(),
            s.topo.lb_dimension.clone(),
            s.topo.arn(group).to_owned(),
        );
        let at = SystemTime::now() - Duration::from_secs(30);
        async move { elb::put_metric(&cw, "AWS/ApplicationELB", metric, &lb, &arn, at, v).await }
    };
    // No requests and no 5xx count: nothing to judge.
    assert!(matches!(
        five().check(&ctx).await,
        Verdict::Inconclusive { .. }
    ));
    // Requests, and no 5xx count (the load balancer publishes none when it is 0).
    put("RequestCount", V2, 250.0).await;
    assert_eq!(five().check(&ctx).await, Verdict::Healthy);
    // Another group's 5xx count is not v2's.
    put("HTTPCode_Target_5XX_Count", V1, 9.0).await;
    assert_eq!(five().check(&ctx).await, Verdict::Healthy);
    put("HTTPCode_Target_5XX_Count", V2, 3.0).await;
    let got = five().check(&ctx).await;
    assert!(
        got.to_string().contains("HTTPCode_Target_5XX_Count = 3"),
        "{got}"
    );
    // The group's own health, by name: one registered target, healthy.
    let health = TargetGroupHealth::builder(Client::new(&s.sdk), V2)
        .build()
        .unwrap();
    assert_eq!(health.check(&ctx).await, Verdict::Healthy);
    let two = TargetGroupHealth::builder(Client::new(&s.sdk), s.topo.arn(V2))
        .min_healthy(2)
        .build()
        .unwrap();
    let got = two.check(&ctx).await;
    assert!(
        got.to_string().contains("1 of 1 targets healthy in arn:"),
        "{got}"
    );
}
