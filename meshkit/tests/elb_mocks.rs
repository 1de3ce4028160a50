//! What the emulator cannot do to a load balancer rule, with `aws-smithy-mocks`:
//! throttled `ModifyRule`, `PriorityInUse` from a concurrent reprioritisation, and a
//! write whose response is lost. Paused time: the mocks answer in process.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::operation::describe_rules::DescribeRulesOutput;
use aws_sdk_elasticloadbalancingv2::operation::describe_target_groups::DescribeTargetGroupsOutput;
use aws_sdk_elasticloadbalancingv2::operation::modify_rule::ModifyRuleOutput;
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, Rule, RuleCondition, TargetGroup, TargetGroupTuple,
};
use aws_smithy_mocks::{MockResponse, RuleMode, mock, mock_client};
use aws_smithy_runtime_api::http::{Response, StatusCode};
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::RetryConfig;
use meshkit::rollout::Event;
use meshkit::strategy::Canary;
use meshkit::traffic::elb::ElbRouter;
use meshkit::{Outcome, Rollout};
use meshkit_testing::ScriptedHealthCheck;

const RULE: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/web/1111/2222/3333";
const TG: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup";

#[derive(Debug, Clone, Copy)]
enum Next {
    Throttle,
    PriorityInUse,
    /// Apply, then answer 503 as if the response was lost.
    ApplyAndLose,
}

struct FakeRule {
    groups: Vec<(String, i32)>,
    faults: VecDeque<Next>,
    applied: usize,
}

fn rule(groups: &[(String, i32)]) -> Rule {
    let tuples = groups
        .iter()
        .map(|(n, w)| {
            TargetGroupTuple::builder()
                .target_group_arn(format!("{TG}/{n}/0"))
                .weight(*w)
                .build()
        })
        .collect::<Vec<_>>();
    Rule::builder()
        .rule_arn(RULE)
        .priority("10")
        .conditions(
            RuleCondition::builder()
                .field("path-pattern")
                .values("/api/*")
                .build(),
        )
        .actions(
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .forward_config(
                    ForwardActionConfig::builder()
                        .set_target_groups(Some(tuples))
                        .build(),
                )
                .build(),
        )
        .build()
}

fn fake(faults: &[Next]) -> (aws_sdk_elasticloadbalancingv2::Client, Arc<Mutex<FakeRule>>) {
    let state = Arc::new(Mutex::new(FakeRule {
        groups: vec![("v1".into(), 100)],
        faults: faults.iter().copied().collect(),
        applied: 0,
    }));
    let read = {
        let state = state.clone();
        mock!(aws_sdk_elasticloadbalancingv2::Client::describe_rules).then_compute_output(
            move |_| {
                DescribeRulesOutput::builder()
                    .rules(rule(&state.lock().unwrap().groups))
                    .build()
            },
        )
    };
    let groups = mock!(aws_sdk_elasticloadbalancingv2::Client::describe_target_groups)
        .then_compute_output(|input| {
            let mut out = DescribeTargetGroupsOutput::builder();
            for name in input.names() {
                out = out.target_groups(
                    TargetGroup::builder()
                        .target_group_name(name)
                        .target_group_arn(format!("{TG}/{name}/0"))
                        .build(),
                );
            }
            for arn in input.target_group_arns() {
                let name = arn.split('/').nth(1).unwrap();
                out = out.target_groups(
                    TargetGroup::builder()
                        .target_group_name(name)
                        .target_group_arn(arn)
                        .build(),
                );
            }
            out.build()
        });
    let write = {
        let state = state.clone();
        mock!(aws_sdk_elasticloadbalancingv2::Client::modify_rule).then_compute_response(move |input| {
            let mut fake = state.lock().unwrap();
            let next = fake.faults.pop_front();
            let error = |code: &str, message: &str| {
                MockResponse::Http(Response::new(
                    StatusCode::try_from(400).unwrap(),
                    SdkBody::from(format!(
                        "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>1</RequestId></ErrorResponse>"
                    )),
                ))
            };
            match next {
                Some(Next::Throttle) => return error("Throttling", "Rate exceeded"),
                Some(Next::PriorityInUse) => return error("PriorityInUse", "Priority '10' is currently in use"),
                _ => {}
            }
            let tuples = input.actions()[0].forward_config().unwrap().target_groups();
            fake.groups = tuples
                .iter()
                .map(|t| (t.target_group_arn().unwrap().split('/').nth(1).unwrap().to_owned(), t.weight().unwrap()))
                .collect();
            fake.applied += 1;
            if matches!(next, Some(Next::ApplyAndLose)) {
                return MockResponse::Http(Response::new(StatusCode::try_from(503).unwrap(), SdkBody::empty()));
            }
            MockResponse::Output(ModifyRuleOutput::builder().rules(rule(&fake.groups)).build())
        })
    };
    let client = mock_client!(
        aws_sdk_elasticloadbalancingv2,
        RuleMode::MatchAny,
        [&read, &groups, &write],
        |c| c.retry_config(RetryConfig::disabled())
    );
    (client, state)
}

fn canary(client: aws_sdk_elasticloadbalancingv2::Client) -> Rollout {
    Rollout::builder()
        .router(ElbRouter::new(client).settle_delay(Duration::ZERO))
        .route(RULE)
        .from("v1")
        .to("v2")
        .strategy(Canary::steps([10, 50, 100]).bake(Duration::from_secs(30)))
        .check(ScriptedHealthCheck::healthy())
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn throttled_and_priority_in_use_writes_are_retried_to_promotion() {
    let (client, state) = fake(&[Next::Throttle, Next::PriorityInUse]);
    let rollout = canary(client);
    let mut events = rollout.events();
    let outcome = rollout.run().await.unwrap();
    assert!(matches!(outcome, Outcome::Promoted { .. }), "{outcome}");
    // 10%, 50%, 100%, then the rule without v1.
    assert_eq!(state.lock().unwrap().applied, 4);
    assert_eq!(state.lock().unwrap().groups, vec![("v2".to_owned(), 100)]);
    let mut retries = Vec::new();
    while let Some(e) = events.recv().await {
        if let Event::WriteRetry { error, .. } = e {
            retries.push(error);
        }
    }
    assert_eq!(retries.len(), 2, "{retries:?}");
    assert!(
        retries[0].contains("throttled") && retries[0].contains("Throttling"),
        "{retries:?}"
    );
    assert!(
        retries[1].contains("conflict") && retries[1].contains("PriorityInUse"),
        "{retries:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lost_modify_rule_response_is_recognised_as_ours() {
    let (client, state) = fake(&[Next::ApplyAndLose]);
    let outcome = canary(client).run().await.unwrap();
    assert!(matches!(outcome, Outcome::Promoted { .. }), "{outcome}");
    // The lost write was applied once and never repeated.
    assert_eq!(state.lock().unwrap().applied, 4);
}

#[tokio::test(start_paused = true)]
async fn a_lost_answer_still_waits_the_load_balancers_settle_delay() {
    // The default ALB settle delay (60 s) follows every write, the one whose answer was
    // lost included: the bake of each step starts only after it.
    let (client, state) = fake(&[Next::ApplyAndLose]);
    let rollout = Rollout::builder()
        .router(ElbRouter::new(client))
        .route(RULE)
        .from("v1")
        .to("v2")
        .strategy(Canary::steps([10, 50, 100]).bake(Duration::from_secs(30)))
        .check(ScriptedHealthCheck::healthy())
        .build()
        .unwrap();
    let outcome = rollout.run().await.unwrap();
    let Outcome::Promoted { elapsed, .. } = outcome else {
        panic!("{outcome}");
    };
    // Three steps of 60 s waiting then a 30 s bake each.
    assert!(elapsed >= Duration::from_secs(3 * 90), "{elapsed:?}");
    assert_eq!(state.lock().unwrap().applied, 4);
}
