//! The runner waiting for a data plane that applies writes late: the checks keep
//! running and an abort is heard while it waits, the bake starts once the split is
//! applied, a split never applied fails the step, and a rollback the data plane does
//! not confirm leaves the new version running. Paused time.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{ROUTE, router, split};
use meshkit::health::Verdict;
use meshkit::rollout::{Event, RollbackReason};
use meshkit::strategy::{BlueGreen, Canary};
use meshkit::traffic::{Convergence, Observed, RouteRef, TrafficRouter, Weights, WriteRequest};
use meshkit::{Outcome, Rollout, TrafficError};
use meshkit_testing::{FleetCall, InMemoryFleet, InMemoryRouter, ScriptedHealthCheck};

/// An in-memory route whose data plane applies each write only after `lag` questions
/// (`u32::MAX`: never), and takes `settle` to do so at most.
#[derive(Clone)]
struct Lagging {
    inner: InMemoryRouter,
    lag: u32,
    asked: Arc<AtomicU32>,
    settle: Duration,
}

#[meshkit::async_trait]
impl TrafficRouter for Lagging {
    async fn read(&self, route: &RouteRef) -> Result<Observed, TrafficError> {
        self.inner.read(route).await
    }

    async fn write(
        &self,
        route: &RouteRef,
        request: &WriteRequest,
    ) -> Result<Option<Observed>, TrafficError> {
        self.asked.store(0, Ordering::SeqCst);
        self.inner.write(route, request).await
    }

    async fn converged(
        &self,
        _: &RouteRef,
        written: &Weights,
    ) -> Result<Convergence, TrafficError> {
        let n = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(if n > self.lag {
            Convergence::Applied {
                detail: format!("{written} measured"),
            }
        } else {
            Convergence::TooFewRequests {
                seen: u64::from(n),
                needed: 1000,
            }
        })
    }

    fn settle_time(&self) -> Duration {
        self.settle
    }
}

fn lagging(lag: u32, settle: Duration) -> Lagging {
    Lagging {
        inner: router(),
        lag,
        asked: Arc::new(AtomicU32::new(0)),
        settle,
    }
}

fn canary(r: &Lagging, check: ScriptedHealthCheck) -> meshkit::RolloutBuilder {
    Rollout::builder()
        .router(r.clone())
        .route(ROUTE)
        .from("v1")
        .to("v2")
        .strategy(Canary::steps([10, 100]).bake(Duration::from_secs(60)))
        .check(check)
        .check_interval(Duration::from_secs(10))
        .check_timeout(Duration::from_secs(5))
}

#[tokio::test(start_paused = true)]
async fn the_bake_starts_once_the_data_plane_applies_the_split() {
    // Applied on the 6th question: 50 ms, 100, 200, 400, 800 ms pauses, about 1.5 s.
    let r = lagging(5, Duration::from_secs(600));
    let rollout = canary(&r, ScriptedHealthCheck::healthy()).build().unwrap();
    let events = rollout.events();
    let outcome = rollout.run().await.unwrap();
    assert!(outcome.is_promoted(), "{outcome}");
    let seen = common::drain(events).await;
    let measured = seen
        .iter()
        .filter(|e| matches!(e, Event::TrafficMeasured { .. }))
        .count();
    // 10% and 100% are each confirmed (taking v1, at 0, off the route moves no traffic).
    assert_eq!(measured, 2, "{seen:?}");
    // Two 60 s bakes, each started after about 1.5 s of waiting; the gate round first.
    let Outcome::Promoted { elapsed, .. } = outcome else {
        unreachable!()
    };
    assert!(
        elapsed >= Duration::from_secs(123) && elapsed < Duration::from_secs(150),
        "{elapsed:?}"
    );
}

/// When the rollback started, from the start of the rollout, and why.
async fn rollback_started(mut events: meshkit::rollout::Events) -> (Duration, RollbackReason) {
    while let Some((at, e)) = events.recv_timed().await {
        if let Event::RollbackStarted { reason } = e {
            return (at, reason);
        }
    }
    panic!("no rollback");
}

#[tokio::test(start_paused = true)]
async fn checks_run_and_an_abort_is_heard_while_the_data_plane_is_waited_for() {
    // Never applied within the 600 s settle time: meanwhile an unhealthy verdict rolls
    // back at once instead of after ten minutes.
    let r = lagging(u32::MAX, Duration::from_secs(600));
    let check = ScriptedHealthCheck::fail_after(2, "5xx");
    let rollout = canary(&r, check).failure_threshold(1).build().unwrap();
    let events = rollout.events();
    let outcome = rollout.run().await.unwrap();
    assert!(matches!(outcome, Outcome::RolledBack { .. }), "{outcome}");
    let (at, why) = rollback_started(events).await;
    assert!(
        matches!(why, RollbackReason::Unhealthy(_)) && at < Duration::from_secs(60),
        "{at:?} {why}"
    );

    let r = lagging(u32::MAX, Duration::from_secs(600));
    let rollout = canary(&r, ScriptedHealthCheck::healthy()).build().unwrap();
    let handle = rollout.handle();
    let mut events = rollout.events();
    let watched = rollout.events();
    let task = tokio::spawn(rollout.run());
    while let Some(e) = events.recv().await {
        if matches!(e, Event::WeightsWritten { .. }) {
            tokio::time::sleep(Duration::from_secs(30)).await;
            handle.abort().unwrap();
            break;
        }
    }
    assert!(matches!(
        task.await.unwrap().unwrap(),
        Outcome::RolledBack { .. }
    ));
    let (at, why) = rollback_started(watched).await;
    assert!(
        matches!(why, RollbackReason::Aborted) && at < Duration::from_secs(60),
        "{at:?} {why}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_split_never_applied_fails_the_step_and_the_new_version_is_not_retired() {
    // The data plane confirms nothing: the step fails after the settle time plus the
    // settle timeout, and the rollback is not confirmed either, so the new version
    // (which may still take traffic) is left running.
    let r = lagging(u32::MAX, Duration::from_secs(60));
    let fleet = InMemoryFleet::new();
    let rollout = Rollout::builder()
        .router(r.clone())
        .route(ROUTE)
        .from("v1")
        .to("v2")
        .strategy(
            BlueGreen::new()
                .pre_check(Duration::from_secs(10))
                .bake(Duration::from_secs(60)),
        )
        .fleet(fleet.clone())
        .check(ScriptedHealthCheck::new(vec![Verdict::Healthy]))
        .check_interval(Duration::from_secs(10))
        .build()
        .unwrap();
    let events = rollout.events();
    let outcome = rollout.run().await.unwrap();
    match &outcome {
        Outcome::RolledBack {
            reason: RollbackReason::NotApplied(why),
            ..
        } => {
            assert!(why.contains("not yet known"), "{why}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(r.inner.weights(ROUTE), Some(split(0)));
    let seen = common::drain(events).await;
    assert!(
        seen.iter().any(|e| matches!(e, Event::DataPlaneUnconfirmed { detail } if detail.contains("left running"))),
        "{seen:?}"
    );
    assert!(
        !fleet.calls().contains(&FleetCall::Retire("v2".into())),
        "{:?}",
        fleet.calls()
    );
}
