//! `LatticeRouter` against the moto emulator, with meshkit's extension serving the
//! Lattice operations moto lacks (GetRule, UpdateRule, UpdateListener, ListTargets...):
//! every strategy on a rule and on a listener's default action, match, priority and
//! name kept, exact weights, another writer, calls per step, traffic confirmed from
//! `TotalRequestCount`, target health. Real time, short bakes.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_vpclattice::Client;
use meshkit::health::{CheckContext, HealthCheck, LatticeTargetHealth, Verdict, from_fn};
use meshkit::rollout::Event;
use meshkit::strategy::{BlueGreen, Canary, CanaryBlueGreen, Linear, Strategy};
use meshkit::traffic::lattice::LatticeRouter;
use meshkit::traffic::{
    Convergence, Judge, Percent, RouteRef, TrafficMetrics, TrafficRouter, Weights, WriteRequest,
};
use meshkit::{Outcome, Rollout, RolloutBuilder, RolloutError};
use meshkit_testing::lattice::{self, LatticeTopology};
use meshkit_testing::{CallCounter, MotoServer, gopher};

const V1: &str = "web-v1";
const V2: &str = "web-v2";
const V3: &str = "web-v3";

struct Setup {
    moto: MotoServer,
    sdk: meshkit::sdk::SdkConfig,
    topo: LatticeTopology,
    counter: CallCounter,
    other: Client,
}

async fn setup() -> Setup {
    let moto = gopher::moto();
    let sdk = moto.sdk_config();
    let topo = lattice::build(&sdk, &moto).await;
    Setup {
        other: Client::new(&sdk),
        counter: CallCounter::new(),
        sdk,
        topo,
        moto,
    }
}

impl Setup {
    fn router(&self) -> LatticeRouter {
        LatticeRouter::new(lattice::client(&self.sdk, &self.counter)).settle_delay(Duration::ZERO)
    }

    async fn rule(&self) -> aws_sdk_vpclattice::operation::get_rule::GetRuleOutput {
        self.other
            .get_rule()
            .service_identifier(&self.topo.service)
            .listener_identifier(&self.topo.listener)
            .rule_identifier(&self.topo.rule)
            .send()
            .await
            .unwrap()
    }

    fn named(&self, action: &aws_sdk_vpclattice::types::RuleAction) -> Vec<(String, i32)> {
        let aws_sdk_vpclattice::types::RuleAction::Forward(f) = action else {
            panic!("not a forward action: {action:?}");
        };
        f.target_groups()
            .iter()
            .map(|g| {
                let id = g.target_group_identifier();
                let name = self
                    .topo
                    .groups
                    .iter()
                    .find(|(_, i)| i == id)
                    .unwrap()
                    .0
                    .clone();
                (name, g.weight().unwrap())
            })
            .collect()
    }

    async fn set_rule(&self, groups: &[(&str, i32)]) {
        let ids: Vec<(&str, i32)> = groups.iter().map(|(n, w)| (self.topo.id(n), *w)).collect();
        self.other
            .update_rule()
            .service_identifier(&self.topo.service)
            .listener_identifier(&self.topo.listener)
            .rule_identifier(&self.topo.rule)
            .action(lattice::forward(&ids))
            .send()
            .await
            .unwrap();
    }
}

fn bake() -> Duration {
    Duration::from_millis(100)
}

fn rollout(
    router: LatticeRouter,
    route: &str,
    from: &str,
    to: &str,
    s: impl Strategy + 'static,
) -> RolloutBuilder {
    Rollout::builder()
        .router(router)
        .route(route)
        .from(from)
        .to(to)
        .strategy(s)
        .check(from_fn("always healthy", |_| async { Verdict::Healthy }))
        .check_interval(Duration::from_millis(50))
        .check_timeout(Duration::from_millis(50))
        .settle_timeout(Duration::from_secs(5))
        .rollback_window(Duration::from_millis(50))
}

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
async fn every_strategy_on_a_rule_keeps_match_priority_and_name() {
    let s = setup().await;
    let before = s.rule().await;
    for (from, to, strategy) in strategies() {
        let name = strategy.name().to_owned();
        let outcome = rollout(s.router(), &s.topo.rule_route(), from, to, strategy)
            .build()
            .unwrap()
            .run()
            .await
            .unwrap();
        assert!(
            matches!(outcome, Outcome::Promoted { .. }),
            "{name}: {outcome}"
        );
        let after = s.rule().await;
        assert_eq!(
            s.named(after.action().unwrap()),
            vec![(to.to_owned(), 100)],
            "{name}"
        );
        assert_eq!(after.r#match(), before.r#match());
        assert_eq!(after.priority(), before.priority());
        assert_eq!(after.name(), before.name());
        assert_eq!(after.arn(), before.arn());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_strategy_on_a_listener_default_action() {
    let s = setup().await;
    for (from, to, strategy) in strategies() {
        let name = strategy.name().to_owned();
        let outcome = rollout(s.router(), &s.topo.listener_route(), from, to, strategy)
            .build()
            .unwrap()
            .run()
            .await
            .unwrap();
        assert!(
            matches!(outcome, Outcome::Promoted { .. }),
            "{name}: {outcome}"
        );
        let l = s
            .other
            .get_listener()
            .service_identifier(&s.topo.service)
            .listener_identifier(&s.topo.listener)
            .send()
            .await
            .unwrap();
        assert_eq!(
            s.named(l.default_action().unwrap()),
            vec![(to.to_owned(), 100)],
            "{name}"
        );
        assert_eq!((l.port(), l.name()), (Some(80), Some("http")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_weights_and_two_calls_per_step() {
    let s = setup().await;
    s.set_rule(&[(V1, 999), (V2, 1)]).await;
    let router = s.router();
    let route = RouteRef::new(s.topo.rule_route()).unwrap();
    let seen = router.read(&route).await.unwrap();
    assert_eq!(seen.weights.to_string(), "web-v1=99.9 web-v2=0.1");
    s.set_rule(&[(V1, 100), (V2, 0)]).await;
    // A half-percent step is written as 995:5; names are resolved once.
    let plan = Canary::steps_exact([
        Percent::from_tenths(5).unwrap(),
        Percent::whole(50).unwrap(),
        Percent::ALL,
    ])
    .bake(bake());
    s.counter.clear();
    let outcome = rollout(router, &s.topo.rule_route(), V1, V2, plan)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Promoted { .. }), "{outcome}");
    let calls = s.counter.calls();
    let count = |op: &str| calls.iter().filter(|c| *c == op).count();
    // Writes: 0.5%, 50%, 100%, and the rule without v1; a read before each, no
    // read-back (UpdateRule's answer carries the action).
    assert_eq!(count("UpdateRule"), 4, "{calls:?}");
    for (i, op) in calls.iter().enumerate() {
        if op == "UpdateRule" {
            assert_eq!(calls[i - 1], "GetRule", "{calls:?}");
        }
    }
    let other = calls.len() - count("UpdateRule") - count("GetRule");
    assert!(other <= 1, "name lookups beyond the first: {calls:?}");
    // The emulator's log agrees on the first write: 995:5.
    assert!(s.moto.requests().contains(&"UpdateRule".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_writer_changing_only_the_match_is_detected_and_left_alone() {
    let s = setup().await;
    let rollout = rollout(
        s.router(),
        &s.topo.rule_route(),
        V1,
        V2,
        Canary::steps([10, 50, 100]).bake(Duration::from_secs(1)),
    )
    .build()
    .unwrap();
    let mut events = rollout.events();
    let run = tokio::spawn(rollout.run());
    while let Some(e) = events.recv().await {
        if matches!(e, Event::WeightsWritten { .. }) {
            break;
        }
    }
    // Same weights, another path.
    let m = aws_sdk_vpclattice::types::RuleMatch::HttpMatch(
        aws_sdk_vpclattice::types::HttpMatch::builder()
            .path_match(
                aws_sdk_vpclattice::types::PathMatch::builder()
                    .r#match(aws_sdk_vpclattice::types::PathMatchType::Prefix(
                        "/v2".into(),
                    ))
                    .build(),
            )
            .build(),
    );
    s.other
        .update_rule()
        .service_identifier(&s.topo.service)
        .listener_identifier(&s.topo.listener)
        .rule_identifier(&s.topo.rule)
        .r#match(m.clone())
        .send()
        .await
        .unwrap();
    let err = run.await.unwrap().unwrap_err();
    assert!(
        matches!(err, RolloutError::ConcurrentWriter { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("same weights"), "{err}");
    let rule = s.rule().await;
    assert_eq!(rule.r#match(), Some(&m));
    assert_eq!(
        s.named(rule.action().unwrap()),
        vec![(V1.to_owned(), 90), (V2.to_owned(), 10)]
    );
}

fn minute_after(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs();
    UNIX_EPOCH + Duration::from_secs(secs - secs % 60 + 60)
}

async fn put_requests(cw: &meshkit::sdk::cloudwatch::Client, tg: &str, at: SystemTime, n: f64) {
    use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
    cw.put_metric_data()
        .namespace("AWS/VpcLattice")
        .metric_data(
            MetricDatum::builder()
                .metric_name("TotalRequestCount")
                .value(n)
                .timestamp(aws_sdk_cloudwatch::primitives::DateTime::from(at))
                .dimensions(Dimension::builder().name("TargetGroup").value(tg).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converged_is_judged_from_total_request_count_per_target_group() {
    let s = setup().await;
    let cw = meshkit::sdk::cloudwatch::Client::new(&s.sdk);
    let metrics = TrafficMetrics::new(cw.clone()).judge(Judge {
        min_requests: 100,
        ..Judge::default()
    });
    let router = LatticeRouter::new(Client::new(&s.sdk)).confirm_with(metrics);
    let route = RouteRef::new(s.topo.rule_route()).unwrap();
    let ten = Weights::split(V1, V2, 10).unwrap();
    router.read(&route).await.unwrap();
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
    let after = minute_after(written);
    put_requests(
        &cw,
        s.topo.id(V1),
        written - Duration::from_secs(120),
        5000.0,
    )
    .await;
    let got = router.converged(&route, &ten).await.unwrap();
    assert!(
        matches!(got, Convergence::TooFewRequests { seen: 0, .. }),
        "{got}"
    );
    put_requests(&cw, s.topo.id(V1), after, 1000.0).await;
    let got = router.converged(&route, &ten).await.unwrap();
    assert!(matches!(got, Convergence::NotYet { .. }), "{got}");
    put_requests(&cw, s.topo.id(V1), after, 8000.0).await;
    put_requests(&cw, s.topo.id(V2), after, 1000.0).await;
    let got = router.converged(&route, &ten).await.unwrap();
    assert!(matches!(got, Convergence::Applied { .. }), "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_and_target_health_read_list_targets() {
    let s = setup().await;
    let router = s.router();
    let route = RouteRef::new(s.topo.rule_route()).unwrap();
    let pre = router.preflight(&route, V1, V2).await.unwrap();
    assert_eq!(
        (pre.stable.name.as_str(), pre.candidate_targets),
        (V1, (1, 1))
    );
    let err = router.preflight(&route, V1, "web-v9").await.unwrap_err();
    assert!(err.to_string().contains("target group web-v9"), "{err}");
    let ctx = CheckContext {
        stage: 0,
        stable: V1.into(),
        candidate: V2.into(),
        weights: Weights::split(V1, V2, 10).unwrap(),
        stage_elapsed: Duration::ZERO,
    };
    let check = LatticeTargetHealth::builder(Client::new(&s.sdk), V2)
        .build()
        .unwrap();
    assert_eq!(check.check(&ctx).await, Verdict::Healthy);
    // The extension's hook marks v2's target unhealthy, as Lattice's health checks would.
    set_target_status(&s.moto, s.topo.id(V2), "10.0.2.11", "UNHEALTHY");
    let got = check.check(&ctx).await;
    assert!(
        got.to_string().contains("0 of 1 targets healthy in web-v2"),
        "{got}"
    );
}

fn set_target_status(moto: &MotoServer, group: &str, id: &str, status: &str) {
    use std::io::{Read, Write};
    let addr = moto.endpoint().trim_start_matches("http://").to_owned();
    let body = format!(
        r#"{{"targetGroup": "{group}", "id": "{id}", "port": 8080, "status": "{status}"}}"#
    );
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "POST /_meshkit/lattice/target-status HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_traffic_confirmation_a_group_shared_with_the_listener_is_refused() {
    let s = setup().await;
    // The listener's default action forwards to web-v1 too: its TotalRequestCount is
    // not the rule's alone.
    let router = LatticeRouter::new(Client::new(&s.sdk)).confirm_with(TrafficMetrics::new(
        meshkit::sdk::cloudwatch::Client::new(&s.sdk),
    ));
    let route = RouteRef::new(s.topo.rule_route()).unwrap();
    let err = router.preflight(&route, V1, V2).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("web-v1 also takes traffic from the listener's default action"),
        "{err}"
    );
    // Without metrics the same route is fine.
    s.router().preflight(&route, V1, V2).await.unwrap();
}
