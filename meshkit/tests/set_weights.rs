//! `SetWeights`: one weight change with a rollout step's guarantees, as `meshkit
//! promote` and `meshkit rollback` use it. Paused time, in-memory router with faults.

use std::time::Duration;

use meshkit::RolloutError;
use meshkit::rollout::SetWeights;
use meshkit::traffic::{RouteRef, TrafficRouter, Weights};
use meshkit_testing::InMemoryRouter;

fn split(new: u8) -> Weights {
    Weights::split("v1", "v2", new).unwrap()
}

fn route() -> RouteRef {
    RouteRef::new("checkout").unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_change_since_the_operators_read_is_refused_and_nothing_written() {
    let r = InMemoryRouter::new();
    r.insert("checkout", split(10));
    let seen = r.read(&route()).await.unwrap();
    // Someone else moves the route after the operator looked.
    r.external_write("checkout", split(30));
    let err = SetWeights::new(r.clone(), route(), split(0))
        .expect(seen)
        .apply()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RolloutError::ConcurrentWriter { found, .. } if *found == split(30)),
        "{err}"
    );
    assert_eq!(r.write_calls(), 0);
    assert_eq!(r.weights("checkout"), Some(split(30)));
}

#[tokio::test(start_paused = true)]
async fn throttling_and_a_lost_answer_are_retried_and_read_back() {
    let r = InMemoryRouter::new();
    r.insert("checkout", split(50));
    r.throttle_next_calls(1);
    r.fail_next_writes(2);
    r.lose_next_responses(1);
    let report = SetWeights::new(r.clone(), route(), split(0))
        .settle_timeout(Duration::from_secs(2))
        .apply()
        .await
        .unwrap();
    assert!(report.written);
    assert_eq!(report.before.weights, split(50));
    assert_eq!(report.after.weights, split(0));
    assert_eq!(r.writes("checkout"), vec![split(0)], "one write applied");
}

#[tokio::test(start_paused = true)]
async fn already_there_writes_nothing_and_bad_tokens_are_refused() {
    let r = InMemoryRouter::new();
    r.insert("checkout", split(0));
    let report = SetWeights::new(r.clone(), route(), split(0))
        .apply()
        .await
        .unwrap();
    assert!(!report.written);
    assert_eq!(r.write_calls(), 0);
    for bad in ["", "has space", &"x".repeat(37)] {
        let err = SetWeights::new(r.clone(), route(), split(100))
            .token(bad)
            .apply()
            .await
            .unwrap_err();
        assert!(matches!(err, RolloutError::Config(_)), "{bad:?}: {err}");
    }
    assert_eq!(r.write_calls(), 0);
}
