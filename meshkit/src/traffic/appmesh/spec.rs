//! Reading and replacing the weighted targets inside an App Mesh route spec, leaving
//! every other field as it was.

use aws_sdk_appmesh::types::{RouteSpec, WeightedTarget};

use crate::traffic::TrafficError;
use crate::traffic::Weights;

/// The protocol of a route, i.e. which member of the spec carries the action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// `httpRoute`.
    Http,
    /// `http2Route`.
    Http2,
    /// `grpcRoute`.
    Grpc,
    /// `tcpRoute`.
    Tcp,
}

/// The route's weighted targets, wherever the spec keeps them.
pub(crate) fn targets(spec: &RouteSpec) -> Result<(RouteKind, &[WeightedTarget]), TrafficError> {
    let found = if let Some(r) = &spec.http_route {
        (
            RouteKind::Http,
            r.action.as_ref().map(|a| &a.weighted_targets),
        )
    } else if let Some(r) = &spec.http2_route {
        (
            RouteKind::Http2,
            r.action.as_ref().map(|a| &a.weighted_targets),
        )
    } else if let Some(r) = &spec.grpc_route {
        (
            RouteKind::Grpc,
            r.action.as_ref().map(|a| &a.weighted_targets),
        )
    } else if let Some(r) = &spec.tcp_route {
        (
            RouteKind::Tcp,
            r.action.as_ref().map(|a| &a.weighted_targets),
        )
    } else {
        return Err(TrafficError::Unsupported {
            message: "the route spec has no http, http2, grpc or tcp route".into(),
        });
    };
    match found {
        (kind, Some(targets)) => Ok((kind, targets.as_slice())),
        (kind, None) => Err(TrafficError::Unsupported {
            message: format!("the {kind:?} route has no action"),
        }),
    }
}

fn targets_mut(spec: &mut RouteSpec) -> Option<&mut Vec<WeightedTarget>> {
    if let Some(r) = spec.http_route.as_mut() {
        r.action.as_mut().map(|a| &mut a.weighted_targets)
    } else if let Some(r) = spec.http2_route.as_mut() {
        r.action.as_mut().map(|a| &mut a.weighted_targets)
    } else if let Some(r) = spec.grpc_route.as_mut() {
        r.action.as_mut().map(|a| &mut a.weighted_targets)
    } else if let Some(r) = spec.tcp_route.as_mut() {
        r.action.as_mut().map(|a| &mut a.weighted_targets)
    } else {
        None
    }
}

/// The route's split, exactly as held.
///
/// App Mesh weights are relative (1 and 2 is a third and two thirds); they are kept as
/// they are, never rounded. A route with all weights zero is refused.
pub(crate) fn weights(spec: &RouteSpec) -> Result<Weights, TrafficError> {
    let (_, targets) = targets(spec)?;
    let mut raw = Vec::with_capacity(targets.len());
    for t in targets {
        let w = u32::try_from(t.weight).map_err(|_| TrafficError::Unsupported {
            message: format!(
                "target {} has a negative weight {}",
                t.virtual_node, t.weight
            ),
        })?;
        raw.push((t.virtual_node.clone(), w));
    }
    Weights::relative(raw).map_err(|e| TrafficError::Unsupported {
        message: format!("the route's targets are not a valid split: {e}"),
    })
}

/// `weights` as App Mesh weights (0-100 each): as percentages when they are whole,
/// otherwise in lowest terms when those fit (a third is 1:2); refused otherwise.
fn appmesh_weights(weights: &Weights) -> Result<Vec<(&str, i32)>, TrafficError> {
    fn fit(v: Vec<(&str, u32)>) -> Vec<(&str, i32)> {
        // At most 100 here.
        v.into_iter().map(|(n, w)| (n, w as i32)).collect()
    }
    if let Some(percents) = weights.in_units(100) {
        return Ok(fit(percents));
    }
    let lowest = weights.lowest_terms();
    if lowest.iter().all(|(_, w)| *w <= 100) {
        return Ok(fit(lowest));
    }
    Err(TrafficError::BadRequest {
        message: format!(
            "App Mesh holds weights 0-100, which cannot express {weights} exactly; use whole percents"
        ),
        source: None,
    })
}

/// A copy of `spec` whose weighted targets are `weights`, every other field unchanged.
/// A target already on the route keeps its port; a new one takes the port of the
/// first existing target.
pub(crate) fn with_weights(spec: &RouteSpec, weights: &Weights) -> Result<RouteSpec, TrafficError> {
    let mut out = spec.clone();
    let Some(targets) = targets_mut(&mut out) else {
        // Same answer as `targets` gives for this spec.
        return Err(targets(spec).err().unwrap_or(TrafficError::Unsupported {
            message: "the route spec has no weighted targets".into(),
        }));
    };
    let default_port = targets.first().and_then(|t| t.port);
    let mut next = Vec::with_capacity(weights.len());
    for (name, percent) in appmesh_weights(weights)? {
        let target = match targets.iter().find(|t| t.virtual_node == name) {
            Some(existing) => {
                let mut t = existing.clone();
                t.weight = percent;
                t
            }
            None => WeightedTarget::builder()
                .virtual_node(name)
                .weight(percent)
                .set_port(default_port)
                .build()
                .map_err(|e| TrafficError::BadRequest {
                    message: format!("cannot build a weighted target for {name}: {e}"),
                    source: Some(Box::new(e)),
                })?,
        };
        next.push(target);
    }
    *targets = next;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use aws_sdk_appmesh::types::{
        Duration, DurationUnit, HttpRetryPolicy, HttpRoute, HttpRouteAction, HttpRouteMatch,
        TcpRoute, TcpRouteAction,
    };

    use super::*;

    fn target(name: &str, weight: i32, port: Option<i32>) -> WeightedTarget {
        WeightedTarget::builder()
            .virtual_node(name)
            .weight(weight)
            .set_port(port)
            .build()
            .unwrap()
    }

    fn http_spec(targets: Vec<WeightedTarget>) -> RouteSpec {
        RouteSpec::builder()
            .priority(7)
            .http_route(
                HttpRoute::builder()
                    .r#match(HttpRouteMatch::builder().prefix("/split").build())
                    .action(
                        HttpRouteAction::builder()
                            .set_weighted_targets(Some(targets))
                            .build()
                            .unwrap(),
                    )
                    .retry_policy(
                        HttpRetryPolicy::builder()
                            .max_retries(3)
                            .http_retry_events("server-error")
                            .per_retry_timeout(
                                Duration::builder()
                                    .unit(DurationUnit::Ms)
                                    .value(250)
                                    .build(),
                            )
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .build()
    }

    #[test]
    fn relative_weights_are_kept_exactly() {
        let spec = http_spec(vec![target("a", 1, None), target("b", 2, None)]);
        let w = weights(&spec).unwrap();
        assert_eq!(w.to_string(), "a=1/3 b=2/3");
        assert_eq!(w.share("a"), None);
        let spec = http_spec(vec![target("a", 1, None)]);
        assert!(weights(&spec).unwrap().is_all_on("a"));
        let spec = http_spec(vec![target("a", 0, None)]);
        assert!(matches!(
            weights(&spec),
            Err(TrafficError::Unsupported { .. })
        ));
        let spec = http_spec(vec![target("a", -1, None)]);
        assert!(matches!(
            weights(&spec),
            Err(TrafficError::Unsupported { .. })
        ));
    }

    #[test]
    fn rewrite_keeps_every_other_field_and_ports() {
        let spec = http_spec(vec![target("v1", 100, Some(8080))]);
        let w = Weights::split("v1", "v2", 10).unwrap();
        let out = with_weights(&spec, &w).unwrap();
        let mut expected = spec.clone();
        expected.http_route.as_mut().unwrap().action = Some(
            HttpRouteAction::builder()
                .weighted_targets(target("v1", 90, Some(8080)))
                .weighted_targets(target("v2", 10, Some(8080)))
                .build()
                .unwrap(),
        );
        assert_eq!(out, expected);
        assert_eq!(weights(&out).unwrap(), w);
    }

    #[test]
    fn tcp_routes_are_rewritten_too() {
        let spec = RouteSpec::builder()
            .tcp_route(
                TcpRoute::builder()
                    .action(
                        TcpRouteAction::builder()
                            .weighted_targets(target("v1", 100, None))
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .build();
        let out = with_weights(&spec, &Weights::split("v1", "v2", 50).unwrap()).unwrap();
        assert_eq!(targets(&out).unwrap().0, RouteKind::Tcp);
        assert_eq!(weights(&out).unwrap().get("v2"), Some(50));
    }

    #[test]
    fn written_as_percentages_or_lowest_terms_within_0_to_100() {
        let spec = http_spec(vec![target("v1", 100, None)]);
        let third = Weights::relative([("v1", 2), ("v2", 1)]).unwrap();
        let out = with_weights(&spec, &third).unwrap();
        assert_eq!(weights(&out).unwrap(), third);
        let per_mille = Weights::relative([("v1", 900), ("v2", 100)]).unwrap();
        let out = with_weights(&spec, &per_mille).unwrap();
        assert_eq!(targets(&out).unwrap().1[1].weight, 10);
        let half =
            Weights::split_exact("v1", "v2", crate::traffic::Percent::from_tenths(5).unwrap())
                .unwrap();
        assert!(matches!(
            with_weights(&spec, &half),
            Err(TrafficError::BadRequest { .. })
        ));
    }

    #[test]
    fn empty_spec_is_unsupported() {
        let spec = RouteSpec::builder().build();
        assert!(matches!(
            targets(&spec),
            Err(TrafficError::Unsupported { .. })
        ));
        let w = Weights::split("a", "b", 0).unwrap();
        assert!(matches!(
            with_weights(&spec, &w),
            Err(TrafficError::Unsupported { .. })
        ));
    }
}
