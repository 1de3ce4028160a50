//! A VPC Lattice rule's or listener's action: reading its weighted target groups,
//! rewriting only their weights, and the route's revision digest. Pure functions.

use aws_sdk_vpclattice::types::{ForwardAction, RuleAction, WeightedTargetGroup};

use crate::traffic::{TrafficError, Weights, revision_digest};

/// The most target groups one Lattice forward action may name.
pub const MAX_LATTICE_GROUPS: usize = 10;

/// The largest weight VPC Lattice holds.
pub const MAX_LATTICE_WEIGHT: u32 = 999;

/// `(target group id or ARN, weight)` of a forward action, in its order. A missing
/// weight is read as 1; a fixed-response action is not a route meshkit shifts.
pub(crate) fn forward_groups(
    what: &str,
    action: &RuleAction,
) -> Result<Vec<(String, u32)>, TrafficError> {
    let unsupported = |message: String| TrafficError::Unsupported { message };
    let forward = match action {
        RuleAction::Forward(f) => f,
        RuleAction::FixedResponse(_) => {
            return Err(unsupported(format!(
                "{what} answers with a fixed response: meshkit shifts traffic only on a route that forwards"
            )));
        }
        _ => {
            return Err(unsupported(format!(
                "{what} has an action this SDK does not know"
            )));
        }
    };
    let groups = forward.target_groups();
    if groups.is_empty() || groups.len() > MAX_LATTICE_GROUPS {
        return Err(unsupported(format!(
            "{what} forwards to {} target groups; VPC Lattice takes 1 to {MAX_LATTICE_GROUPS}",
            groups.len()
        )));
    }
    groups
        .iter()
        .map(|g| {
            let w = g.weight().unwrap_or(1);
            let w = u32::try_from(w)
                .ok()
                .filter(|w| *w <= MAX_LATTICE_WEIGHT)
                .ok_or_else(|| {
                    unsupported(format!(
                        "{what}: target group {} has weight {w}, outside 0-999",
                        g.target_group_identifier()
                    ))
                })?;
            Ok((g.target_group_identifier().to_owned(), w))
        })
        .collect()
}

/// `weights` as Lattice weights (0-999, at most 10 groups), most readable first.
pub(crate) fn lattice_weights(weights: &Weights) -> Result<Vec<(&str, u32)>, TrafficError> {
    if weights.len() > MAX_LATTICE_GROUPS {
        return Err(TrafficError::BadRequest {
            message: format!(
                "{weights} names {} target groups; VPC Lattice forwards to at most {MAX_LATTICE_GROUPS}",
                weights.len()
            ),
            source: None,
        });
    }
    weights
        .fit(MAX_LATTICE_WEIGHT)
        .ok_or_else(|| TrafficError::BadRequest {
            message: format!("{weights} cannot be held in VPC Lattice weights of 0-999"),
            source: None,
        })
}

/// A forward action to `groups` (`(target group id, weight)`).
pub(crate) fn forward_to(groups: &[(String, u32)]) -> Result<RuleAction, TrafficError> {
    let bad = |e: aws_smithy_types::error::operation::BuildError| TrafficError::BadRequest {
        message: format!("cannot build the forward action: {e}"),
        source: Some(Box::new(e)),
    };
    let tuples = groups
        .iter()
        .map(|(id, w)| {
            WeightedTargetGroup::builder()
                .target_group_identifier(id)
                // At most 999 (checked by `lattice_weights`).
                .weight(*w as i32)
                .build()
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    let forward = ForwardAction::builder()
        .set_target_groups(Some(tuples))
        .build()
        .map_err(bad)?;
    Ok(RuleAction::Forward(forward))
}

/// The revision of a rule: a digest of what it routes by (name, priority, match,
/// action), fields `GetRule` and `UpdateRule` both return.
pub(crate) fn rule_revision(
    name: Option<&str>,
    priority: Option<i32>,
    matched: Option<&impl std::fmt::Debug>,
    action: Option<&RuleAction>,
) -> String {
    revision_digest([
        format!("name={name:?}"),
        format!("priority={priority:?}"),
        format!("match={matched:?}"),
        format!("action={action:?}"),
    ])
}

/// The revision of a listener: its protocol, port and default action.
pub(crate) fn listener_revision(
    protocol: Option<&impl std::fmt::Debug>,
    port: Option<i32>,
    action: Option<&RuleAction>,
) -> String {
    revision_digest([
        format!("protocol={protocol:?}"),
        format!("port={port:?}"),
        format!("action={action:?}"),
    ])
}

#[cfg(test)]
mod tests {
    use aws_sdk_vpclattice::types::FixedResponseAction;

    use super::*;
    use crate::traffic::Percent;

    fn fwd(groups: &[(&str, Option<i32>)]) -> RuleAction {
        let tuples = groups
            .iter()
            .map(|(id, w)| {
                WeightedTargetGroup::builder()
                    .target_group_identifier(*id)
                    .set_weight(*w)
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

    #[test]
    fn reads_forward_actions_and_refuses_the_rest() {
        let got = forward_groups("rule", &fwd(&[("tg-a", Some(999)), ("tg-b", None)])).unwrap();
        assert_eq!(got, vec![("tg-a".to_owned(), 999), ("tg-b".to_owned(), 1)]);
        let fixed = RuleAction::FixedResponse(
            FixedResponseAction::builder()
                .status_code(404)
                .build()
                .unwrap(),
        );
        assert!(
            forward_groups("rule", &fixed)
                .unwrap_err()
                .to_string()
                .contains("fixed response")
        );
        assert!(
            forward_groups("rule", &fwd(&[("tg-a", Some(1000))]))
                .unwrap_err()
                .to_string()
                .contains("0-999")
        );
        let eleven: Vec<(String, Option<i32>)> =
            (0..11).map(|i| (format!("tg-{i}"), Some(1))).collect();
        let eleven: Vec<(&str, Option<i32>)> =
            eleven.iter().map(|(n, w)| (n.as_str(), *w)).collect();
        assert!(
            forward_groups("rule", &fwd(&eleven))
                .unwrap_err()
                .to_string()
                .contains("1 to 10")
        );
    }

    #[test]
    fn weights_are_written_exactly_and_the_digest_sees_the_action() {
        let half = Weights::split_exact("a", "b", Percent::from_tenths(5).unwrap()).unwrap();
        assert_eq!(lattice_weights(&half).unwrap(), vec![("a", 995), ("b", 5)]);
        let action = forward_to(&[("tg-a".into(), 995), ("tg-b".into(), 5)]).unwrap();
        assert_eq!(
            forward_groups("rule", &action).unwrap(),
            vec![("tg-a".to_owned(), 995), ("tg-b".to_owned(), 5)]
        );
        let other = forward_to(&[("tg-a".into(), 990), ("tg-b".into(), 10)]).unwrap();
        let m: Option<&String> = None;
        assert_ne!(
            rule_revision(None, Some(1), m, Some(&action)),
            rule_revision(None, Some(1), m, Some(&other))
        );
        assert_ne!(
            rule_revision(None, Some(1), m, Some(&action)),
            rule_revision(None, Some(2), m, Some(&action))
        );
        // Eleven groups cannot even be a split (at most 10 targets, Lattice's limit too).
        assert!(Weights::relative((0..11).map(|i| (format!("t{i}"), 1))).is_err());
    }
}
