//! A seeded randomized fault campaign: every schedule must end safely.
//!
//! Each schedule draws a strategy, a health script and router faults (failed,
//! throttled, rejected and lost writes, failed reads, read lag, another writer) from a
//! seed. Every run must end promoted with the route really at 100% new, rolled back
//! with the route really at 100% stable, or stopped with an error naming the weights
//! really in force. No write may ever carry weights that do not sum to 100.
//!
//! The same campaign runs again on a router that behaves like a load balancer: relative
//! weights held as integers up to 999, plans in 0.1% steps, no version (the revision is
//! a digest of what was read), and other writers that set relative weights (999:1, 2:1)
//! or change only a setting beside the weights (a rule's stickiness).
//!
//! To see one schedule's history: `CAMPAIGN_DEBUG=<seed> cargo test -p meshkit --test
//! fault_campaign -- --nocapture`.

mod common;

use std::time::Duration;

use common::{ROUTE, router, split};
use meshkit::health::Verdict;
use meshkit::rollout::InconclusivePolicy;
use meshkit::strategy::{BlueGreen, Canary, CanaryBlueGreen, Linear, Stage, Strategy};
use meshkit::traffic::{Percent, Weights};
use meshkit::{Outcome, Rollout, RolloutError};
use meshkit_testing::{Fault, InMemoryFleet, InMemoryRouter, ScriptedHealthCheck};

const SCHEDULES: u64 = 600;

#[derive(Debug, Default)]
struct Tally {
    promoted: u32,
    rolled_back: u32,
    concurrent: u32,
    rollback_failed: u32,
    other_error: u32,
}

fn script(rng: &mut fastrand::Rng) -> Vec<Verdict> {
    (0..rng.usize(1..40))
        .map(|_| match rng.u8(0..20) {
            0 => Verdict::unhealthy("injected"),
            1 => Verdict::inconclusive("no data"),
            _ => Verdict::Healthy,
        })
        .collect()
}

/// Which router the campaign runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Percentages and a version number (App Mesh-like).
    Versioned,
    /// Relative weights up to 999 and a digest revision (load balancer-like).
    Versionless,
}

/// What another writer sets: on a load balancer, any relative split.
fn external(rng: &mut fastrand::Rng, kind: Kind) -> Fault {
    if kind == Kind::Versioned {
        return Fault::External(ROUTE.into(), split(rng.u8(0..=100)));
    }
    match rng.u8(0..4) {
        0 => Fault::ExternalSetting(ROUTE.into()),
        1 => Fault::External(
            ROUTE.into(),
            Weights::relative([("v1", 999), ("v2", 1)]).unwrap(),
        ),
        2 => Fault::External(
            ROUTE.into(),
            Weights::relative([("v1", 2), ("v2", 1)]).unwrap(),
        ),
        _ => Fault::External(
            ROUTE.into(),
            Weights::split_exact("v1", "v2", Percent::from_tenths(rng.u32(0..=1000)).unwrap())
                .unwrap(),
        ),
    }
}

fn faults(rng: &mut fastrand::Rng, r: &InMemoryRouter, kind: Kind) {
    for _ in 0..rng.usize(0..6) {
        let n = rng.u64(0..8);
        let k = rng.u32(1..4);
        let fault = match rng.u8(0..7) {
            0 => Fault::FailWrites(k),
            1 => Fault::RejectWrites(1),
            2 => Fault::LoseResponses(k),
            3 => Fault::Throttle(k),
            4 => Fault::FailReads(k),
            5 => external(rng, kind),
            _ => Fault::FailWrites(rng.u32(5..50)),
        };
        if n == 0 {
            // Before the first write: inject now.
            match fault {
                Fault::FailWrites(k) => r.fail_next_writes(k),
                Fault::RejectWrites(k) => r.reject_next_writes(k),
                Fault::LoseResponses(k) => r.lose_next_responses(k),
                Fault::Throttle(k) => r.throttle_next_calls(k),
                Fault::FailReads(k) => r.fail_next_reads(k),
                Fault::External(_, _) | Fault::ExternalSetting(_) => {}
            }
        } else {
            r.after_writes(n, fault);
        }
    }
    if rng.bool() {
        r.set_read_lag(Duration::from_millis(rng.u64(0..3000)));
    }
    r.report_applied(rng.bool());
}

async fn one(seed: u64, kind: Kind, tally: &mut Tally) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let r = match kind {
        Kind::Versioned => router(),
        Kind::Versionless => {
            let r = InMemoryRouter::versionless();
            r.insert(ROUTE, split(0));
            r
        }
    };
    faults(&mut rng, &r, kind);
    let tenths = |t: &[u32]| {
        t.iter()
            .map(|t| Percent::from_tenths(*t).unwrap())
            .collect::<Vec<_>>()
    };
    let bake = Duration::from_secs(rng.u64(0..120));
    let b = Rollout::builder()
        .router(r.clone())
        .route(ROUTE)
        .from("v1")
        .to("v2")
        .id(format!("seed{seed}"));
    let (strategy, fleet): (Box<dyn Strategy>, bool) = match (rng.u8(0..4), kind) {
        (0, Kind::Versioned) => (Box::new(Canary::steps([5, 25, 50, 100]).bake(bake)), false),
        (0, Kind::Versionless) => (
            Box::new(Canary::steps_exact(tenths(&[1, 5, 125, 500, 1000])).bake(bake)),
            false,
        ),
        (1, Kind::Versioned) => (Box::new(Linear::new(rng.u32(10..=50), bake)), false),
        (1, Kind::Versionless) => (
            Box::new(Linear::exact(
                Percent::from_tenths(rng.u32(55..=500)).unwrap(),
                bake,
            )),
            false,
        ),
        (2, _) => (Box::new(BlueGreen::new().pre_check(bake).bake(bake)), true),
        (_, Kind::Versioned) => (
            Box::new(CanaryBlueGreen::new([10, 40]).step_bake(bake).bake(bake)),
            true,
        ),
        (_, Kind::Versionless) => (
            Box::new(
                CanaryBlueGreen::new_exact(tenths(&[5, 333]))
                    .step_bake(bake)
                    .bake(bake),
            ),
            true,
        ),
    };
    // Every split meshkit may write: all on v1, each step of the plan, and v2 alone.
    let mut allowed: Vec<Weights> = vec![split(0), Weights::new([("v2", 100)]).unwrap()];
    allowed.extend(
        strategy
            .stages()
            .iter()
            .filter_map(Stage::new_percent)
            .map(|p| Weights::split_exact("v1", "v2", p).unwrap()),
    );
    let b = b.strategy(strategy);
    let b = if fleet {
        b.fleet(InMemoryFleet::new())
    } else {
        b
    };
    let b = b
        .check(ScriptedHealthCheck::new(script(&mut rng)))
        .check_interval(Duration::from_secs(rng.u64(1..30)))
        .check_timeout(Duration::from_secs(1))
        .failure_threshold(rng.u32(1..4))
        .inconclusive(if rng.bool() {
            InconclusivePolicy::Wait
        } else {
            InconclusivePolicy::FailAfter(rng.u32(1..4))
        })
        .rollback_deadline(Duration::from_secs(120))
        .deadline(Duration::from_secs(3600 * 2));
    let result = b
        .build()
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"))
        .run()
        .await;
    let truth = r.weights(ROUTE).unwrap();
    if std::env::var("CAMPAIGN_DEBUG").is_ok_and(|s| s == seed.to_string()) {
        eprintln!("seed {seed}: {result:?}\nhistory: {:#?}", r.history(ROUTE));
    }
    // Every write is a split of the plan (the same shares, however the router holds
    // them), never something in between or another writer's.
    for w in r.writes(ROUTE) {
        assert!(
            allowed.contains(&w),
            "seed {seed}: wrote {w}, not a split of the plan"
        );
        if kind == Kind::Versioned {
            assert_eq!(w.iter().map(|(_, p)| p).sum::<u32>(), 100, "seed {seed}");
        }
    }
    match result {
        Ok(Outcome::Promoted { weights, .. }) => {
            // The stable version is taken off the route after promotion; when that
            // last write fails it stays at 0 (a warning event says so).
            let alone = Weights::new([("v2", 100)]).unwrap();
            assert!(
                truth == alone || truth == split(100),
                "seed {seed}: promoted but route at {truth}"
            );
            assert_eq!(weights, truth, "seed {seed}");
            tally.promoted += 1;
        }
        Ok(Outcome::RolledBack { weights, .. }) => {
            assert_eq!(
                truth,
                split(0),
                "seed {seed}: rolled back but route at {truth}"
            );
            assert_eq!(weights, truth, "seed {seed}");
            tally.rolled_back += 1;
        }
        Err(e) => {
            assert_eq!(
                e.in_force(),
                Some(&truth),
                "seed {seed}: error {e} does not name the true weights"
            );
            match e {
                RolloutError::ConcurrentWriter { .. } => tally.concurrent += 1,
                RolloutError::RollbackFailed { .. } => tally.rollback_failed += 1,
                _ => tally.other_error += 1,
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn every_schedule_ends_safely() {
    campaign(Kind::Versioned).await;
}

#[tokio::test(start_paused = true)]
async fn every_schedule_ends_safely_on_a_versionless_relative_router() {
    campaign(Kind::Versionless).await;
}

/// Runs every seed on `kind`. A wrong end state fails the seed's assertions in `one`:
/// an outcome whose route is between versions, or a success the route does not show.
async fn campaign(kind: Kind) {
    let mut tally = Tally::default();
    for seed in 0..SCHEDULES {
        one(seed, kind, &mut tally).await;
    }
    println!("fault campaign ({kind:?}) over {SCHEDULES} schedules: {tally:?}");
    let total = tally.promoted
        + tally.rolled_back
        + tally.concurrent
        + tally.rollback_failed
        + tally.other_error;
    assert_eq!(u64::from(total), SCHEDULES);
    // The campaign must exercise every ending, or it proves little.
    assert!(
        tally.promoted > 50 && tally.rolled_back > 50 && tally.concurrent > 10,
        "{tally:?}"
    );
}
