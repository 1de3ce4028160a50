//! `LatticeRouter` over a fake VPC Lattice (`aws-smithy-mocks`), for what the emulator
//! cannot do: throttled and conflicting `UpdateRule`s, answers lost after the change was
//! made, other writers changing the weights or only the match. First a fixed case, then
//! the seeded fault campaign on the real Lattice router: every schedule must end
//! promoted (all on the new version), rolled back (all on the old one) or stopped with
//! an error naming what is really in force, and no write may leave the plan's splits.
//! Paused time.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_vpclattice::operation::get_rule::GetRuleOutput;
use aws_sdk_vpclattice::operation::get_target_group::GetTargetGroupOutput;
use aws_sdk_vpclattice::operation::list_target_groups::ListTargetGroupsOutput;
use aws_sdk_vpclattice::operation::update_rule::UpdateRuleOutput;
use aws_sdk_vpclattice::types::{
    ForwardAction, HttpMatch, RuleAction, RuleMatch, TargetGroupSummary, WeightedTargetGroup,
};
use aws_smithy_mocks::{MockResponse, RuleMode, mock, mock_client};
use aws_smithy_runtime_api::http::{Response, StatusCode};
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::RetryConfig;
use meshkit::health::Verdict;
use meshkit::rollout::{Event, InconclusivePolicy};
use meshkit::strategy::{Canary, Stage, Strategy};
use meshkit::traffic::lattice::LatticeRouter;
use meshkit::traffic::{Percent, Weights};
use meshkit::{Outcome, Rollout, RolloutError};
use meshkit_testing::ScriptedHealthCheck;

const ROUTE: &str = "svc-0123456789abcdefg/listener-0123456789abcdefg/rule-0123456789abcdefg";

#[derive(Debug, Clone, Copy)]
enum Fault {
    Throttle,
    Conflict,
    /// Apply, then answer 503 as if the answer was lost.
    ApplyAndLose,
    /// Another writer sets these weights (v1, v2) after this write, before the next
    /// read.
    ExternalWeights(i32, i32),
    /// Another writer changes only the match after this write, before the next read.
    ExternalMatch,
}

#[derive(Debug)]
struct Fake {
    groups: Vec<(String, i32)>,
    path: String,
    faults: VecDeque<Option<Fault>>,
    /// Another writer's change, made before the next read.
    pending: Option<Fault>,
    /// Every applied write of the router, as (v1, v2) shares in tenths.
    writes: Vec<Weights>,
}

fn action(groups: &[(String, i32)]) -> RuleAction {
    let tuples = groups
        .iter()
        .map(|(id, w)| {
            WeightedTargetGroup::builder()
                .target_group_identifier(id)
                .weight(*w)
                .build()
                .unwrap()
        })
        .collect();
    RuleAction::Forward(
        ForwardAction::builder()
            .set_target_groups(Some(tuples))
            .build()
            .unwrap(),
    )
}

fn matched(path: &str) -> RuleMatch {
    RuleMatch::HttpMatch(
        HttpMatch::builder()
            .path_match(
                aws_sdk_vpclattice::types::PathMatch::builder()
                    .r#match(aws_sdk_vpclattice::types::PathMatchType::Prefix(
                        path.into(),
                    ))
                    .build(),
            )
            .build(),
    )
}

fn weights(groups: &[(String, i32)]) -> Weights {
    Weights::relative(
        groups
            .iter()
            .map(|(id, w)| (id.replacen("tg-", "", 1), *w as u32)),
    )
    .unwrap()
}

fn error(
    status: u16,
    code: &str,
) -> MockResponse<UpdateRuleOutput, aws_sdk_vpclattice::operation::update_rule::UpdateRuleError> {
    MockResponse::Http(Response::new(
        StatusCode::try_from(status).unwrap(),
        SdkBody::from(format!(
            r#"{{"message":"mocked","resourceId":"r","resourceType":"RULE","serviceCode":"s","quotaCode":"q","__type":"{code}"}}"#
        )),
    ))
}

fn fake(faults: Vec<Option<Fault>>) -> (aws_sdk_vpclattice::Client, Arc<Mutex<Fake>>) {
    let state = Arc::new(Mutex::new(Fake {
        groups: vec![("tg-v1".into(), 100), ("tg-v2".into(), 0)],
        path: "/api".into(),
        faults: faults.into(),
        pending: None,
        writes: Vec::new(),
    }));
    let read = {
        let state = state.clone();
        mock!(aws_sdk_vpclattice::Client::get_rule).then_compute_output(move |_| {
            let mut f = state.lock().unwrap();
            match f.pending.take() {
                Some(Fault::ExternalWeights(a, b)) => {
                    f.groups = vec![("tg-v1".into(), a), ("tg-v2".into(), b)]
                }
                Some(Fault::ExternalMatch) => f.path = "/other".into(),
                _ => {}
            }
            GetRuleOutput::builder()
                .id("rule-0123456789abcdefg")
                .name("api")
                .priority(10)
                .r#match(matched(&f.path))
                .action(action(&f.groups))
                .build()
        })
    };
    let group = mock!(aws_sdk_vpclattice::Client::get_target_group).then_compute_output(|input| {
        let id = input.target_group_identifier().unwrap().to_owned();
        GetTargetGroupOutput::builder()
            .name(id.replacen("tg-", "", 1))
            .id(id)
            .build()
    });
    let list = mock!(aws_sdk_vpclattice::Client::list_target_groups).then_compute_output(|_| {
        let mut out = ListTargetGroupsOutput::builder();
        for v in ["v1", "v2"] {
            out = out.items(
                TargetGroupSummary::builder()
                    .name(v)
                    .id(format!("tg-{v}"))
                    .build(),
            );
        }
        out.build()
    });
    let write = {
        let state = state.clone();
        mock!(aws_sdk_vpclattice::Client::update_rule).then_compute_response(move |input| {
            let mut f = state.lock().unwrap();
            let fault = f.faults.pop_front().flatten();
            match fault {
                Some(Fault::Throttle) => return error(429, "ThrottlingException"),
                Some(Fault::Conflict) => return error(409, "ConflictException"),
                _ => {}
            }
            let RuleAction::Forward(fwd) = input.action().unwrap() else {
                panic!()
            };
            f.groups = fwd
                .target_groups()
                .iter()
                .map(|g| (g.target_group_identifier().to_owned(), g.weight().unwrap()))
                .collect();
            let held = weights(&f.groups);
            f.writes.push(held);
            let answer = UpdateRuleOutput::builder()
                .id("rule-0123456789abcdefg")
                .name("api")
                .priority(10)
                .r#match(matched(&f.path))
                .action(action(&f.groups))
                .build();
            if matches!(
                fault,
                Some(Fault::ExternalWeights(..) | Fault::ExternalMatch)
            ) {
                f.pending = fault;
            }
            if matches!(fault, Some(Fault::ApplyAndLose)) {
                return MockResponse::Http(Response::new(
                    StatusCode::try_from(503).unwrap(),
                    SdkBody::empty(),
                ));
            }
            MockResponse::Output(answer)
        })
    };
    let client = mock_client!(
        aws_sdk_vpclattice,
        RuleMode::MatchAny,
        [&read, &group, &list, &write],
        |c| c.retry_config(RetryConfig::disabled())
    );
    (client, state)
}

fn truth(state: &Arc<Mutex<Fake>>) -> Weights {
    weights(&state.lock().unwrap().groups)
}

#[tokio::test(start_paused = true)]
async fn throttled_conflicting_and_lost_update_rules_are_retried_to_promotion() {
    let (client, state) = fake(vec![
        Some(Fault::Throttle),
        Some(Fault::Conflict),
        Some(Fault::ApplyAndLose),
    ]);
    let rollout = Rollout::builder()
        .router(LatticeRouter::new(client).settle_delay(Duration::ZERO))
        .route(ROUTE)
        .from("v1")
        .to("v2")
        .strategy(
            Canary::steps_exact([Percent::from_tenths(5).unwrap(), Percent::ALL])
                .bake(Duration::from_secs(30)),
        )
        .check(ScriptedHealthCheck::healthy())
        .build()
        .unwrap();
    let mut events = rollout.events();
    let outcome = rollout.run().await.unwrap();
    assert!(matches!(outcome, Outcome::Promoted { .. }), "{outcome}");
    let mut retries = Vec::new();
    while let Some(e) = events.recv().await {
        if let Event::WriteRetry { error, .. } = e {
            retries.push(error);
        }
    }
    assert!(
        retries[0].contains("ThrottlingException") && retries[1].contains("ConflictException"),
        "{retries:?}"
    );
    // 0.5% (once, though its answer was lost), 100%, and the rule without v1.
    let writes = state.lock().unwrap().writes.clone();
    assert_eq!(
        writes[0],
        Weights::relative([("v1", 995), ("v2", 5)]).unwrap()
    );
    assert_eq!(writes.len(), 3, "{writes:?}");
    assert_eq!(truth(&state), Weights::new([("v2", 100)]).unwrap());
}

#[tokio::test(start_paused = true)]
async fn every_schedule_on_the_lattice_router_ends_safely() {
    const SCHEDULES: u64 = 500;
    let (mut promoted, mut rolled_back, mut stopped) = (0, 0, 0);
    for seed in 0..SCHEDULES {
        let mut rng = fastrand::Rng::with_seed(seed);
        let faults: Vec<Option<Fault>> = (0..8)
            .map(|_| match rng.u8(0..12) {
                0 => Some(Fault::Throttle),
                1 => Some(Fault::Conflict),
                2 => Some(Fault::ApplyAndLose),
                3 => Some(Fault::ExternalWeights(rng.i32(0..=999), rng.i32(1..=999))),
                4 => Some(Fault::ExternalMatch),
                _ => None,
            })
            .collect();
        let (client, state) = fake(faults);
        let steps = [1, 5, 125, 500, 1000].map(|t| Percent::from_tenths(t).unwrap());
        let plan = Canary::steps_exact(steps).bake(Duration::from_secs(rng.u64(0..60)));
        let mut allowed: Vec<Weights> = vec![
            Weights::split("v1", "v2", 0).unwrap(),
            Weights::new([("v2", 100)]).unwrap(),
        ];
        allowed.extend(
            plan.stages()
                .iter()
                .filter_map(Stage::new_percent)
                .map(|p| Weights::split_exact("v1", "v2", p).unwrap()),
        );
        let script: Vec<Verdict> = (0..rng.usize(1..30))
            .map(|_| {
                if rng.u8(0..15) == 0 {
                    Verdict::unhealthy("injected")
                } else {
                    Verdict::Healthy
                }
            })
            .collect();
        let result = Rollout::builder()
            .router(LatticeRouter::new(client).settle_delay(Duration::from_secs(rng.u64(0..5))))
            .route(ROUTE)
            .from("v1")
            .to("v2")
            .id(format!("seed{seed}"))
            .strategy(plan)
            .check(ScriptedHealthCheck::new(script))
            .check_interval(Duration::from_secs(10))
            .inconclusive(InconclusivePolicy::Wait)
            .rollback_deadline(Duration::from_secs(120))
            .build()
            .unwrap()
            .run()
            .await;
        let truth = truth(&state);
        for w in state.lock().unwrap().writes.iter() {
            assert!(
                allowed.contains(w),
                "seed {seed}: wrote {w}, not a split of the plan"
            );
        }
        match result {
            Ok(Outcome::Promoted { weights, .. }) => {
                assert!(truth.is_all_on("v2"), "seed {seed}: promoted at {truth}");
                assert_eq!(weights, truth, "seed {seed}");
                promoted += 1;
            }
            Ok(Outcome::RolledBack { weights, .. }) => {
                assert!(truth.is_all_on("v1"), "seed {seed}: rolled back at {truth}");
                assert_eq!(weights, truth, "seed {seed}");
                rolled_back += 1;
            }
            Err(e) => {
                assert_eq!(
                    e.in_force(),
                    Some(&truth),
                    "seed {seed}: {e} does not name {truth}"
                );
                assert!(!matches!(e, RolloutError::Config(_)), "seed {seed}: {e}");
                stopped += 1;
            }
        }
    }
    println!(
        "lattice fault campaign over {SCHEDULES} schedules: {promoted} promoted, {rolled_back} rolled back, {stopped} stopped with the weights in force"
    );
    assert!(
        promoted > 50 && rolled_back > 30 && stopped > 30,
        "{promoted} {rolled_back} {stopped}"
    );
}
