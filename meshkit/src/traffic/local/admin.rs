//! The admin listener: `/metrics` (Prometheus text) and `/routes` (JSON weights).

use std::fmt::Write as _;
use std::sync::Arc;

use http::StatusCode;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::Shared;
use super::limit::ConnLimit;
use super::proxy::{full, serve};
use super::stats::escape;

pub(crate) async fn serve_admin(
    listener: TcpListener,
    shared: Arc<Shared>,
    stopped: watch::Receiver<bool>,
) {
    // A few connections are plenty for a scraper and a person.
    serve(listener, stopped, ConnLimit::new(64), move || {
        let shared = shared.clone();
        move |req: http::Request<hyper::body::Incoming>| {
            let shared = shared.clone();
            async move {
                match req.uri().path() {
                    "/metrics" => {
                        full(StatusCode::OK, "text/plain; version=0.0.4", render(&shared))
                    }
                    "/routes" => full(StatusCode::OK, "application/json", routes_json(&shared)),
                    _ => full(
                        StatusCode::NOT_FOUND,
                        "text/plain",
                        "try /metrics or /routes\n",
                    ),
                }
            }
        }
    })
    .await;
}

/// Every route's statistics and weights in the Prometheus text format.
pub(crate) fn render(shared: &Shared) -> String {
    let mut out = String::new();
    out.push_str("# HELP meshkit_requests_total Requests sent to a target.\n# TYPE meshkit_requests_total counter\n");
    out.push_str("# HELP meshkit_responses_total Responses by status class (mesh-made 502/504 included).\n# TYPE meshkit_responses_total counter\n");
    out.push_str("# HELP meshkit_upstream_errors_total Requests the target did not answer.\n# TYPE meshkit_upstream_errors_total counter\n");
    out.push_str("# HELP meshkit_request_duration_seconds Time to the upstream's response head.\n# TYPE meshkit_request_duration_seconds histogram\n");
    for route in shared.by_name.values() {
        for t in &route.targets {
            t.stats.render(&mut out, &route.name, &t.name);
        }
    }
    out.push_str("# HELP meshkit_client_errors_total Requests that failed through the client's fault (a request body that could not be read or stopped arriving), answered 400 or 408 and not counted against any target.\n# TYPE meshkit_client_errors_total counter\n");
    for route in shared.by_name.values() {
        let _ = writeln!(
            out,
            "meshkit_client_errors_total{{route=\"{}\"}} {}",
            escape(&route.name),
            route
                .client_errors
                .load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    out.push_str("# HELP meshkit_route_weight Weight in force per target.\n# TYPE meshkit_route_weight gauge\n");
    for route in shared.by_name.values() {
        let table = route.table();
        for t in &route.targets {
            let _ = writeln!(
                out,
                "meshkit_route_weight{{route=\"{}\",target=\"{}\"}} {}",
                escape(&route.name),
                escape(&t.name),
                table.weights.percent_f64(&t.name)
            );
        }
    }
    out
}

fn routes_json(shared: &Shared) -> String {
    let routes: Vec<serde_json::Value> = shared
        .by_name
        .values()
        .map(|route| {
            let table = route.table();
            let weights: serde_json::Map<String, serde_json::Value> =
                route.targets.iter().map(|t| (t.name.clone(), share_json(&table.weights, &t.name))).collect();
            serde_json::json!({"name": route.name, "prefix": route.prefix, "revision": table.revision, "weights": weights})
        })
        .collect();
    serde_json::Value::from(routes).to_string()
}

/// A target's share as a JSON number: an integer for whole percents (`10`), a float
/// otherwise (`0.5`, `33.333...`).
fn share_json(weights: &crate::traffic::Weights, target: &str) -> serde_json::Value {
    match weights.share(target) {
        Some(p) if p.is_whole() => (p.tenths() / 10).into(),
        _ => weights.percent_f64(target).into(),
    }
}
