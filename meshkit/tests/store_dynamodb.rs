//! The DynamoDB rollout store under the runner, on the moto emulator (which evaluates
//! `ConditionExpression` and transactions): leases, takeover from the record with the
//! processes as different hosts, fencing, gates, 50 seeded kill/takeover schedules.

mod store_harness;

use std::sync::Arc;
use std::time::Duration;

use meshkit::store::{DynamoStore, Holder, RolloutStore, StoreError};
use meshkit_testing::MotoServer;
use store_harness::{ManualClock, World, scenarios};

const INTERVAL: Duration = Duration::from_millis(40);

async fn world(moto: &MotoServer) -> World {
    let client = meshkit::sdk::dynamodb::Client::new(&moto.sdk_config());
    let table = format!("rollouts-{:x}", fastrand::u64(..));
    DynamoStore::create_table(&client, &table).await.unwrap();
    let clock = ManualClock::new();
    let store = DynamoStore::new(client, table).with_clock(clock.clock());
    World::new(Arc::new(store), clock, INTERVAL)
}

#[tokio::test]
async fn second_run_is_refused_at_once() {
    let moto = MotoServer::start().unwrap();
    scenarios::second_run_refused(&world(&moto).await).await;
}

#[tokio::test]
async fn kill_then_takeover_on_another_host_resumes_from_the_record() {
    let moto = MotoServer::start().unwrap();
    scenarios::takeover_after_kill(&world(&moto).await).await;
}

#[tokio::test]
async fn a_lease_stolen_mid_bake_stops_the_holder_before_its_next_write() {
    let moto = MotoServer::start().unwrap();
    scenarios::stolen_mid_bake(&world(&moto).await).await;
}

#[tokio::test]
async fn gates_from_another_process_land_within_a_check_interval() {
    let moto = MotoServer::start().unwrap();
    scenarios::gate_from_elsewhere(&world(&moto).await).await;
}

#[tokio::test]
async fn fifty_seeded_kill_and_takeover_schedules_end_safely() {
    let moto = MotoServer::start().unwrap();
    let (mut kills, mut thefts) = (0, 0);
    for seed in 0..50 {
        let w = world(&moto).await;
        let s = scenarios::seeded(&w, seed).await;
        kills += s.steps.iter().filter(|s| s.contains("killed")).count();
        thefts += s.steps.iter().filter(|s| s.contains("robbed")).count();
    }
    assert!(
        kills >= 10 && thefts >= 10,
        "kills {kills}, thefts {thefts}"
    );
}

/// Conditional writes really are conditions: two hosts racing for one lease, one
/// wins; the loser's renew, record and fence are refused once the lease changes hands.
#[tokio::test]
async fn the_lease_is_a_conditional_write() {
    let moto = MotoServer::start().unwrap();
    let w = world(&moto).await;
    let mut a = Holder::named("host-a");
    a.host = "host-a".into();
    let mut b = Holder::named("host-b");
    b.host = "host-b".into();
    let ttl = store_harness::TTL;
    let (ra, rb) = tokio::join!(w.store.acquire("r", &a, ttl), w.store.acquire("r", &b, ttl));
    let (won, lost) = match (ra, rb) {
        (Ok(l), Err(StoreError::Held { holder, .. })) => {
            assert_eq!(holder.name, l.holder.name, "the loser is told who won");
            (l, b)
        }
        (Err(StoreError::Held { holder, .. }), Ok(l)) => {
            assert_eq!(holder.name, l.holder.name, "the loser is told who won");
            (l, a)
        }
        other => panic!("exactly one host must win: {other:?}"),
    };
    assert_eq!(won.token, 1);
    w.clock.expire_leases();
    let thief = w.store.acquire("r", &lost, ttl).await.unwrap();
    assert_eq!(thief.token, 2, "the fencing token grows");
    assert!(matches!(
        w.store.renew(&won, ttl).await,
        Err(StoreError::Lost { .. })
    ));
    let err = w
        .store
        .fence(
            &won,
            "x",
            &Default::default(),
            &Default::default(),
            Duration::ZERO,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Lost { .. } | StoreError::NotFound(_)),
        "{err:?}"
    );
    assert_eq!(
        w.store.lease("r").await.unwrap().unwrap().holder.name,
        lost.name
    );
}

/// A table that does not exist is named in the error, with how to make it.
#[tokio::test]
async fn a_missing_table_says_how_to_create_it() {
    let moto = MotoServer::start().unwrap();
    let client = meshkit::sdk::dynamodb::Client::new(&moto.sdk_config());
    let store = DynamoStore::new(client, "no-such-table");
    let err = store
        .acquire("r", &Holder::named("a"), Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("store create-table"), "{err}");
    assert!(
        !err.to_string().contains("ServiceError"),
        "no SDK dump: {err}"
    );
}
