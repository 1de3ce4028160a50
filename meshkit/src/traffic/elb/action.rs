//! The forward action of a listener or rule: reading its weighted target groups,
//! rewriting only their weights, and the route's revision digest. Pure functions.

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, ForwardActionConfig, Listener, Rule, TargetGroupTuple,
};

use crate::traffic::{TrafficError, Weights, revision_digest};

/// The most target groups one forward action may name (the ALB and NLB limit).
pub const MAX_TARGET_GROUPS: usize = 5;

/// The largest weight a load balancer holds.
pub const MAX_ELB_WEIGHT: u32 = 999;

/// The forward action found among a route's actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Forward {
    /// Its position in the action list.
    pub(crate) index: usize,
    /// `(target group ARN, weight)` in the order the action lists them.
    pub(crate) groups: Vec<(String, u32)>,
}

fn unsupported(message: String) -> TrafficError {
    TrafficError::Unsupported { message }
}

/// Action types that may come before the forward action (authentication); any other
/// action beside it (redirect, fixed response) means the route does not only forward.
fn is_pre_forward(t: &ActionTypeEnum) -> bool {
    matches!(
        t,
        ActionTypeEnum::AuthenticateCognito
            | ActionTypeEnum::AuthenticateOidc
            | ActionTypeEnum::JwtValidation
    )
}

/// The one forward action in `actions`, with its weighted target groups. A forward
/// action naming a single group by `TargetGroupArn` (no `ForwardConfig`) is that group
/// at weight 1; a missing weight is 1, as the load balancer takes it.
pub(crate) fn find_forward(what: &str, actions: &[Action]) -> Result<Forward, TrafficError> {
    let mut found = None;
    for (i, a) in actions.iter().enumerate() {
        match a.r#type() {
            Some(ActionTypeEnum::Forward) if found.is_none() => found = Some(i),
            Some(ActionTypeEnum::Forward) => {
                return Err(unsupported(format!(
                    "{what} has more than one forward action"
                )));
            }
            Some(t) if is_pre_forward(t) => {}
            other => {
                let t = other.map_or("unknown", |t| t.as_str());
                return Err(unsupported(format!(
                    "{what} has a {t} action: meshkit shifts traffic only on a route that forwards"
                )));
            }
        }
    }
    let index = found.ok_or_else(|| unsupported(format!("{what} has no forward action")))?;
    let action = &actions[index];
    let tuples = action
        .forward_config()
        .map(ForwardActionConfig::target_groups)
        .unwrap_or_default();
    let mut groups = Vec::with_capacity(tuples.len().max(1));
    if tuples.is_empty() {
        let arn = action.target_group_arn().ok_or_else(|| {
            unsupported(format!("{what}: the forward action names no target group"))
        })?;
        groups.push((arn.to_owned(), 1));
    }
    for t in tuples {
        let arn = t
            .target_group_arn()
            .ok_or_else(|| unsupported(format!("{what}: a weighted target group has no ARN")))?;
        let weight = t.weight().unwrap_or(1);
        let weight = u32::try_from(weight)
            .ok()
            .filter(|w| *w <= MAX_ELB_WEIGHT)
            .ok_or_else(|| {
                unsupported(format!(
                    "{what}: target group {arn} has weight {weight}, outside 0-999"
                ))
            })?;
        groups.push((arn.to_owned(), weight));
    }
    if groups.len() > MAX_TARGET_GROUPS {
        return Err(unsupported(format!(
            "{what} forwards to {} target groups, more than the load balancer's limit of {MAX_TARGET_GROUPS}",
            groups.len()
        )));
    }
    Ok(Forward { index, groups })
}

/// `weights` as load balancer weights (0-999 each), most readable first: percentages
/// (`90:10`), then tenths of a percent (`995:5`), then lowest terms. Refused when none
/// fits, or for more than [`MAX_TARGET_GROUPS`] targets.
pub(crate) fn elb_weights(weights: &Weights) -> Result<Vec<(&str, u32)>, TrafficError> {
    if weights.len() > MAX_TARGET_GROUPS {
        return Err(TrafficError::BadRequest {
            message: format!(
                "{weights} names {} target groups; a load balancer forwards to at most {MAX_TARGET_GROUPS}",
                weights.len()
            ),
            source: None,
        });
    }
    weights
        .fit(MAX_ELB_WEIGHT)
        .ok_or_else(|| TrafficError::BadRequest {
            message: format!("{weights} cannot be held in load balancer weights of 0-999"),
            source: None,
        })
}

/// A copy of `actions` whose forward action (at `forward.index`) forwards to `groups`
/// (`(ARN, weight)`), every other action and every other field of the forward action
/// (its order, the target-group stickiness) unchanged.
pub(crate) fn with_groups(
    actions: &[Action],
    forward: &Forward,
    groups: &[(String, u32)],
) -> Vec<Action> {
    let mut out = actions.to_vec();
    let old = &actions[forward.index];
    let tuples = groups
        .iter()
        .map(|(arn, w)| {
            TargetGroupTuple::builder()
                .target_group_arn(arn)
                // At most 999 (checked by `elb_weights`).
                .weight(*w as i32)
                .build()
        })
        .collect::<Vec<_>>();
    let config = ForwardActionConfig::builder()
        .set_target_groups(Some(tuples))
        .set_target_group_stickiness_config(
            old.forward_config()
                .and_then(|c| c.target_group_stickiness_config())
                .cloned(),
        )
        .build();
    // `TargetGroupArn` beside a `ForwardConfig` must name its only group; the weighted
    // form carries the groups alone.
    let mut next = old.clone();
    next.target_group_arn = None;
    next.forward_config = Some(config);
    out[forward.index] = next;
    // An OIDC action as read carries no client secret (the API never returns it), and
    // sending it back without one is refused: keep the secret the load balancer has.
    for action in &mut out {
        if let Some(oidc) = action.authenticate_oidc_config.as_mut()
            && oidc.client_secret.is_none()
        {
            oidc.use_existing_client_secret = Some(true);
        }
    }
    out
}

/// The revision of a rule: a digest of everything the rule routes by (priority,
/// conditions, transforms, every action with its weights and stickiness), from fields
/// that `DescribeRules` and `ModifyRule` both return.
pub(crate) fn rule_revision(rule: &Rule) -> String {
    revision_digest([
        format!("priority={:?}", rule.priority()),
        format!("conditions={:?}", rule.conditions()),
        format!("transforms={:?}", rule.transforms()),
        format!("actions={:?}", rule.actions()),
    ])
}

/// The revision of a listener: a digest of its port, protocol, TLS policy and default
/// actions, fields that `DescribeListeners` and `ModifyListener` both return.
pub(crate) fn listener_revision(listener: &Listener) -> String {
    revision_digest([
        format!("port={:?}", listener.port()),
        format!("protocol={:?}", listener.protocol()),
        format!("ssl={:?}", listener.ssl_policy()),
        format!("actions={:?}", listener.default_actions()),
    ])
}

#[cfg(test)]
mod tests {
    use aws_sdk_elasticloadbalancingv2::types::TargetGroupStickinessConfig;

    use super::*;
    use crate::traffic::Percent;

    fn tuple(arn: &str, w: Option<i32>) -> TargetGroupTuple {
        TargetGroupTuple::builder()
            .target_group_arn(arn)
            .set_weight(w)
            .build()
    }

    fn forward(tuples: Vec<TargetGroupTuple>, sticky: bool) -> Action {
        let config = ForwardActionConfig::builder().set_target_groups(Some(tuples));
        let config = if sticky {
            config.target_group_stickiness_config(
                TargetGroupStickinessConfig::builder()
                    .enabled(true)
                    .duration_seconds(300)
                    .build(),
            )
        } else {
            config
        };
        Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .order(2)
            .forward_config(config.build())
            .build()
    }

    fn oidc() -> Action {
        Action::builder()
            .r#type(ActionTypeEnum::AuthenticateOidc)
            .order(1)
            .authenticate_oidc_config(
                aws_sdk_elasticloadbalancingv2::types::AuthenticateOidcActionConfig::builder()
                    .issuer("https://idp.example.com")
                    .client_id("web")
                    .build(),
            )
            .build()
    }

    #[test]
    fn reads_every_shape_of_forward_action() {
        let plain = Action::builder()
            .r#type(ActionTypeEnum::Forward)
            .target_group_arn("tg-a")
            .build();
        let fixed = Action::builder()
            .r#type(ActionTypeEnum::FixedResponse)
            .build();
        let six: Vec<_> = (0..6).map(|i| tuple(&format!("tg-{i}"), Some(1))).collect();
        #[rustfmt::skip]
        type Expect = Result<Vec<(&'static str, u32)>, &'static str>;
        let table: Vec<(Vec<Action>, Expect)> = vec![
            (vec![plain.clone()], Ok(vec![("tg-a", 1)])),
            (
                vec![forward(
                    vec![tuple("a", Some(999)), tuple("b", Some(1))],
                    true,
                )],
                Ok(vec![("a", 999), ("b", 1)]),
            ),
            (
                vec![forward(vec![tuple("a", None)], false)],
                Ok(vec![("a", 1)]),
            ),
            (
                vec![
                    oidc(),
                    forward(vec![tuple("a", Some(0)), tuple("b", Some(5))], false),
                ],
                Ok(vec![("a", 0), ("b", 5)]),
            ),
            (
                vec![forward(vec![tuple("a", Some(1000))], false)],
                Err("outside 0-999"),
            ),
            (
                vec![forward(vec![tuple("a", Some(-1))], false)],
                Err("outside 0-999"),
            ),
            (vec![forward(six, false)], Err("limit of 5")),
            (vec![fixed], Err("fixed-response action")),
            (vec![plain.clone(), plain], Err("more than one forward")),
            (vec![oidc()], Err("no forward action")),
        ];
        for (actions, want) in table {
            let got = find_forward("rule r", &actions);
            match (got, want) {
                (Ok(f), Ok(w)) => {
                    let w: Vec<(String, u32)> =
                        w.iter().map(|(a, n)| ((*a).to_owned(), *n)).collect();
                    assert_eq!(f.groups, w);
                }
                (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{e}"),
                (got, want) => panic!("{actions:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn weights_fit_in_0_to_999_most_readably() {
        let tenth = |t| Weights::split_exact("a", "b", Percent::from_tenths(t).unwrap()).unwrap();
        #[rustfmt::skip]
        type Pairs = Vec<(&'static str, u32)>;
        let table: Vec<(Weights, Option<Pairs>)> = vec![
            (
                Weights::split("a", "b", 10).unwrap(),
                Some(vec![("a", 90), ("b", 10)]),
            ),
            (tenth(1), Some(vec![("a", 999), ("b", 1)])),
            (tenth(5), Some(vec![("a", 995), ("b", 5)])),
            (tenth(1000), Some(vec![("a", 0), ("b", 100)])),
            (
                Weights::relative([("a", 2), ("b", 1)]).unwrap(),
                Some(vec![("a", 2), ("b", 1)]),
            ),
            (Weights::relative([("a", 1000), ("b", 1)]).unwrap(), None),
        ];
        for (w, want) in table {
            assert_eq!(elb_weights(&w).ok(), want, "{w}");
        }
        let six = Weights::relative((0..6).map(|i| (format!("t{i}"), 1))).unwrap();
        assert!(
            elb_weights(&six)
                .unwrap_err()
                .to_string()
                .contains("at most 5")
        );
    }

    #[test]
    fn rewriting_changes_only_the_weights() {
        let actions = vec![oidc(), forward(vec![tuple("a", Some(100))], true)];
        let f = find_forward("rule", &actions).unwrap();
        let out = with_groups(&actions, &f, &[("a".into(), 90), ("b".into(), 10)]);
        // The OIDC action is sent back as read, keeping the secret it has (the API
        // never returns it and refuses the action without one).
        let oidc = out[0].authenticate_oidc_config().unwrap();
        assert_eq!(oidc.use_existing_client_secret(), Some(true));
        assert_eq!(oidc.issuer(), Some("https://idp.example.com"));
        assert_eq!(out[0].order(), actions[0].order());
        assert_eq!(out[1].order(), Some(2));
        let config = out[1].forward_config().unwrap();
        assert_eq!(
            config.target_group_stickiness_config(),
            actions[1]
                .forward_config()
                .unwrap()
                .target_group_stickiness_config()
        );
        assert_eq!(
            find_forward("rule", &out).unwrap().groups,
            vec![("a".into(), 90), ("b".into(), 10)]
        );
        // A plain single-group forward becomes the weighted form, without the ARN beside it.
        let plain = vec![
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .target_group_arn("a")
                .build(),
        ];
        let f = find_forward("rule", &plain).unwrap();
        let out = with_groups(&plain, &f, &[("a".into(), 1), ("b".into(), 0)]);
        assert_eq!(out[0].target_group_arn(), None);
    }

    #[test]
    fn the_revision_sees_more_than_the_weights() {
        let rule = |priority: &str, sticky: bool| {
            Rule::builder()
                .priority(priority)
                .actions(forward(
                    vec![tuple("a", Some(90)), tuple("b", Some(10))],
                    sticky,
                ))
                .build()
        };
        let base = rule_revision(&rule("10", true));
        assert_eq!(base, rule_revision(&rule("10", true)));
        assert_ne!(base, rule_revision(&rule("11", true)));
        assert_ne!(base, rule_revision(&rule("10", false)));
    }
}
