//! Helpers shared by the runner tests.
#![allow(dead_code)]

use std::time::Duration;

use meshkit::strategy::Canary;
use meshkit::traffic::Weights;
use meshkit::{Rollout, RolloutBuilder};
use meshkit_testing::{InMemoryRouter, ScriptedHealthCheck};

pub const ROUTE: &str = "checkout";

pub fn split(new: u8) -> Weights {
    Weights::split("v1", "v2", new).unwrap()
}

/// The route after promotion: v1 taken off, v2 alone.
pub fn alone() -> Weights {
    Weights::new([("v2", 100)]).unwrap()
}

/// A router with `checkout` at v1 100.
pub fn router() -> InMemoryRouter {
    let r = InMemoryRouter::new();
    r.insert(ROUTE, split(0));
    r
}

/// A canary 5/25/50/100 baking 60 s per step with 10 s checks.
pub fn canary(router: &InMemoryRouter, check: ScriptedHealthCheck) -> RolloutBuilder {
    Rollout::builder()
        .router(router.clone())
        .route(ROUTE)
        .from("v1")
        .to("v2")
        .strategy(Canary::steps([5, 25, 50, 100]).bake(Duration::from_secs(60)))
        .check(check)
        .check_interval(Duration::from_secs(10))
        .check_timeout(Duration::from_secs(5))
}

/// A rollout of `ROUTE` from v1 to v2 on `router`, strategy and checks still to set.
pub fn builder(router: &InMemoryRouter) -> RolloutBuilder {
    Rollout::builder()
        .router(router.clone())
        .route(ROUTE)
        .from("v1")
        .to("v2")
}

/// Every event still to come, once the rollout has ended.
pub async fn drain(mut events: meshkit::rollout::Events) -> Vec<meshkit::rollout::Event> {
    let mut seen = Vec::new();
    while let Some(e) = events.recv().await {
        seen.push(e);
    }
    seen
}

/// Builds and runs a rollout that must end with an outcome (not an error).
pub async fn run(builder: RolloutBuilder) -> meshkit::Outcome {
    builder.build().unwrap().run().await.unwrap()
}
