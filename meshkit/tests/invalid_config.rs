//! Bad input: every invalid configuration gives a typed error and makes no write.

mod common;

use std::time::Duration;

use common::{ROUTE, router, split};
use meshkit::rollout::{Backoff, InconclusivePolicy};
use meshkit::strategy::{BlueGreen, Canary, CanaryBlueGreen, Linear};
use meshkit::traffic::Weights;
use meshkit::{ConfigError, Rollout, RolloutBuilder, RolloutError, WeightsError};
use meshkit_testing::{InMemoryRouter, ScriptedHealthCheck};

fn base(r: &InMemoryRouter) -> RolloutBuilder {
    Rollout::builder()
        .router(r.clone())
        .route(ROUTE)
        .from("v1")
        .to("v2")
        .strategy(Canary::steps([10, 100]))
        .check(ScriptedHealthCheck::healthy())
}

fn strategy_field(e: &ConfigError) -> Option<&'static str> {
    match e {
        ConfigError::Strategy { field, .. } => Some(field),
        _ => None,
    }
}

#[tokio::test(start_paused = true)]
async fn invalid_builder_configurations() {
    type Case = (
        &'static str,
        fn(RolloutBuilder) -> RolloutBuilder,
        fn(&ConfigError) -> bool,
    );
    let cases: Vec<Case> = vec![
        (
            "canary steps empty",
            |b| b.strategy(Canary::steps([])),
            |e| strategy_field(e) == Some("steps"),
        ),
        (
            "canary step 0",
            |b| b.strategy(Canary::steps([0, 100])),
            |e| strategy_field(e) == Some("steps"),
        ),
        (
            "canary steps falling",
            |b| b.strategy(Canary::steps([50, 20, 100])),
            |e| strategy_field(e) == Some("steps"),
        ),
        (
            "canary repeated step",
            |b| b.strategy(Canary::steps([20, 20, 100])),
            |e| strategy_field(e) == Some("steps"),
        ),
        (
            "canary not ending at 100",
            |b| b.strategy(Canary::steps([10, 50])),
            |e| strategy_field(e) == Some("steps"),
        ),
        (
            "canary step over 100",
            |b| b.strategy(Canary::steps([50, 150])),
            |e| strategy_field(e) == Some("steps"),
        ),
        (
            "canary max over 100",
            |b| b.strategy(Canary::step_max(10, 120)),
            |e| strategy_field(e) == Some("steps"),
        ),
        (
            "linear step 0",
            |b| b.strategy(Linear::new(0, Duration::from_secs(60))),
            |e| strategy_field(e) == Some("step"),
        ),
        (
            "linear step 101",
            |b| b.strategy(Linear::new(101, Duration::from_secs(60))),
            |e| strategy_field(e) == Some("step"),
        ),
        (
            "bake over a week",
            |b| b.strategy(Canary::steps([100]).bake(Duration::from_secs(8 * 86400))),
            |e| strategy_field(e) == Some("bake"),
        ),
        (
            "blue/green window over a week",
            |b| b.strategy(BlueGreen::new().bake(Duration::from_secs(8 * 86400))),
            |e| strategy_field(e) == Some("bake"),
        ),
        (
            "canary-blue-green step 100",
            |b| b.strategy(CanaryBlueGreen::new([10, 100])),
            |e| strategy_field(e) == Some("steps"),
        ),
        (
            "zero check interval",
            |b| b.check_interval(Duration::ZERO),
            |e| {
                matches!(
                    e,
                    ConfigError::Policy {
                        field: "check_interval",
                        ..
                    }
                )
            },
        ),
        (
            "timeout over interval",
            |b| b.check_timeout(Duration::from_secs(60)),
            |e| {
                matches!(
                    e,
                    ConfigError::Policy {
                        field: "check_timeout",
                        ..
                    }
                )
            },
        ),
        (
            "failure threshold 0",
            |b| b.failure_threshold(0),
            |e| {
                matches!(
                    e,
                    ConfigError::Policy {
                        field: "failure_threshold",
                        ..
                    }
                )
            },
        ),
        (
            "inconclusive after 0",
            |b| b.inconclusive(InconclusivePolicy::FailAfter(0)),
            |e| {
                matches!(
                    e,
                    ConfigError::Policy {
                        field: "inconclusive",
                        ..
                    }
                )
            },
        ),
        (
            "zero write attempts",
            |b| {
                b.write_backoff(Backoff {
                    max_attempts: 0,
                    ..Backoff::default()
                })
            },
            |e| {
                matches!(
                    e,
                    ConfigError::Policy {
                        field: "write_backoff",
                        ..
                    }
                )
            },
        ),
        (
            "rollback deadline 0",
            |b| b.rollback_deadline(Duration::ZERO),
            |e| {
                matches!(
                    e,
                    ConfigError::Policy {
                        field: "rollback_deadline",
                        ..
                    }
                )
            },
        ),
        (
            "deadline shorter than plan",
            |b| b.deadline(Duration::from_secs(90)),
            |e| matches!(e, ConfigError::DeadlineTooShort { .. }),
        ),
        (
            "same versions",
            |b| b.to("v1"),
            |e| {
                matches!(
                    e,
                    ConfigError::Weights(WeightsError::DuplicateTarget { .. })
                )
            },
        ),
        (
            "empty version name",
            |b| b.to(""),
            |e| matches!(e, ConfigError::Weights(WeightsError::EmptyTargetName)),
        ),
        (
            "control char in name",
            |b| b.to("v2\n"),
            |e| matches!(e, ConfigError::Weights(WeightsError::BadTargetName { .. })),
        ),
        (
            "empty route name",
            |b| b.route(" "),
            |e| matches!(e, ConfigError::BadRouteName(_)),
        ),
        (
            "bad rollout id",
            |b| b.id("has spaces"),
            |e| matches!(e, ConfigError::BadRolloutId(_)),
        ),
        (
            "rollout id too long",
            |b| b.id("x".repeat(33)),
            |e| matches!(e, ConfigError::BadRolloutId(_)),
        ),
    ];
    assert!(cases.len() >= 15);
    for (name, change, expect) in cases {
        let r = router();
        match change(base(&r)).build() {
            Ok(_) => panic!("{name}: accepted"),
            Err(e) => assert!(expect(&e), "{name}: wrong error {e:?}"),
        }
        assert_eq!(
            (r.write_calls(), r.read_calls()),
            (0, 0),
            "{name}: touched the router"
        );
    }
}

#[test]
fn missing_settings_are_named() {
    let missing = |b: RolloutBuilder| match b.build() {
        Err(ConfigError::Missing(what)) => what,
        other => panic!("{other:?}"),
    };
    let r = router();
    assert_eq!(missing(Rollout::builder()), "router");
    assert_eq!(missing(Rollout::builder().router(r.clone())), "route");
    assert_eq!(
        missing(
            Rollout::builder()
                .router(r.clone())
                .route(ROUTE)
                .from("v1")
                .to("v2")
        ),
        "strategy"
    );
    let no_checks = Rollout::builder()
        .router(r.clone())
        .route(ROUTE)
        .from("v1")
        .to("v2")
        .strategy(Canary::steps([100]));
    assert_eq!(no_checks.build().unwrap_err(), ConfigError::NoChecks);
}

/// Runs a rollout that must be refused at start; asserts it wrote nothing.
async fn refused(r: &InMemoryRouter, b: RolloutBuilder) -> RolloutError {
    let err = b.build().unwrap().run().await.unwrap_err();
    assert!(err.nothing_written(), "{err}");
    assert_eq!(r.write_calls(), 0, "{err}");
    err
}

#[tokio::test(start_paused = true)]
async fn invalid_routes_are_refused_before_any_write() {
    let r = router();
    let err = refused(&r, base(&r).route("nope")).await;
    assert!(
        matches!(&err, RolloutError::Start { source, .. } if source.is_not_found()),
        "{err}"
    );

    let r = router();
    r.external_write(ROUTE, split(30));
    let err = refused(&r, base(&r)).await;
    assert!(matches!(err, RolloutError::NotAtStart { .. }), "{err}");
    assert_eq!(err.in_force(), Some(&split(30)));

    let r = InMemoryRouter::new();
    r.insert(
        ROUTE,
        Weights::new([("v1", 90), ("v2", 0), ("v3", 10)]).unwrap(),
    );
    let err = refused(&r, base(&r)).await;
    assert!(
        matches!(err, RolloutError::UnexpectedTargets { .. }),
        "{err}"
    );

    let r = InMemoryRouter::new();
    r.insert(ROUTE, Weights::new([("old", 100)]).unwrap());
    let err = refused(&r, base(&r)).await;
    assert!(
        matches!(err, RolloutError::UnexpectedTargets { .. }),
        "{err}"
    );
}

#[test]
fn invalid_http_checks() {
    use meshkit::health::HttpCheck;
    for b in [
        HttpCheck::builder("not a url"),
        HttpCheck::builder("https://example.invalid/"),
        HttpCheck::builder("http://127.0.0.1/").requests(0),
        HttpCheck::builder("http://127.0.0.1/").min_success_ratio(0.0),
        HttpCheck::builder("http://127.0.0.1/").min_success_ratio(1.5),
        HttpCheck::builder("http://127.0.0.1/").timeout(Duration::ZERO),
        HttpCheck::builder("http://127.0.0.1/").expect_status(600..=700),
    ] {
        assert!(
            matches!(b.clone().build(), Err(ConfigError::Check(_))),
            "{b:?}"
        );
    }
}
