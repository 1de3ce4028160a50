//! The store scenarios, run against each store.

use std::time::Duration;

use meshkit::store::{Gate, RecordState, RolloutStore, StoreError, decode_weights};
use meshkit::traffic::Weights;
use meshkit::{Outcome, RolloutError};
use meshkit_testing::ScriptedHealthCheck;

use super::{ROUTE, World};

fn alone() -> Weights {
    Weights::new([("v2", 100)]).unwrap()
}

fn stable() -> Weights {
    Weights::split("v1", "v2", 0).unwrap()
}

/// A second run on the route is refused at once, naming who holds it; the first
/// carries on and ends promoted; the record shows one attempt.
pub async fn second_run_refused(w: &World) {
    let first = w.spawn("ci-1", ScriptedHealthCheck::healthy());
    w.until_writes(1).await;
    let second = w
        .process("ci-2", ScriptedHealthCheck::healthy())
        .run()
        .await;
    match &second {
        Err(RolloutError::Store(StoreError::Held {
            holder, rollout, ..
        })) => {
            assert_eq!(holder.name, "ci-1");
            assert!(rollout.is_some(), "the holder's rollout is named");
        }
        other => panic!("expected the lease to be held, got {other:?}"),
    }
    let msg = second.unwrap_err().to_string();
    assert!(msg.contains("ci-1") && msg.contains("since"), "{msg}");
    let outcome = first.await.unwrap().unwrap();
    assert!(outcome.is_promoted());
    assert_eq!(w.weights(), alone());
    assert!(w.violations().is_empty(), "{:?}", w.violations());
    let history = w.store.history(Some(ROUTE), 10).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].state, RecordState::Promoted);
    assert_eq!(
        w.store.lease(ROUTE).await.unwrap(),
        None,
        "released at the end"
    );
    // Lines that report a split keep it, as stored and read back (for charts).
    let rec = w.store.get(&history[0].id).await.unwrap().unwrap();
    let split = |kind: &str| -> Vec<Option<Weights>> {
        rec.entries
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.weights.as_deref().and_then(decode_weights))
            .collect()
    };
    assert_eq!(split("Started"), [Some(stable())]);
    let written = split("WeightsWritten");
    assert!(
        !written.is_empty() && written.iter().all(Option::is_some),
        "{written:?}"
    );
    assert_eq!(split("TargetRemoved").last(), Some(&Some(alone())));
    for e in rec
        .entries
        .iter()
        .filter(|e| e.kind == "Verdict" || e.kind == "Lease")
    {
        assert_eq!(e.weights, None, "{e:?}");
    }
}

/// The holder is killed mid-rollout; after its lease expires another process
/// resumes the same rollout from its record and ends it.
pub async fn takeover_after_kill(w: &World) {
    let first = w.spawn("ci-1", ScriptedHealthCheck::healthy());
    w.until_writes(1).await;
    w.quiet().await;
    first.abort();
    let _ = first.await;
    let killed_at = w.weights();
    assert_eq!(killed_at, Weights::split("v1", "v2", 10).unwrap());
    // Before expiry the route is still held by the dead process.
    let early = w
        .process("ci-2", ScriptedHealthCheck::healthy())
        .run()
        .await;
    assert!(
        matches!(early, Err(RolloutError::Store(StoreError::Held { .. }))),
        "{early:?}"
    );
    w.clock.expire_leases();
    let open = w
        .store
        .open_rollout(ROUTE)
        .await
        .unwrap()
        .expect("an open record");
    assert_eq!(open.state, RecordState::Running);
    // The write in force is in the record: read back, or (the kill came before the
    // lines after it were written) as the pending write recorded before it.
    let recorded: Vec<_> = [&open.progress.written, &open.progress.pending]
        .into_iter()
        .flatten()
        .filter_map(|w| decode_weights(w))
        .collect();
    assert!(recorded.contains(&killed_at), "{:?}", open.progress);
    let outcome = w
        .process("ci-2", ScriptedHealthCheck::healthy())
        .run()
        .await
        .unwrap();
    assert!(outcome.is_promoted());
    assert_eq!(w.weights(), alone());
    let rec = w.store.get(&open.rollout.id).await.unwrap().unwrap();
    assert_eq!(rec.state, RecordState::Promoted);
    assert_eq!(rec.attempts, ["ci-1", "ci-2"]);
    // ci-1's lines up to its write were recorded with the fence; its
    // "weights written" line too, unless the kill came before that line's flush, in
    // which case the write is the record's pending one.
    let written_line = rec
        .entries
        .iter()
        .any(|e| e.by == "ci-1" && e.kind == "WeightsWritten");
    let pending = open.progress.pending.as_deref().and_then(decode_weights);
    assert!(
        written_line || pending.as_ref() == Some(&killed_at),
        "{:?} {:?}",
        open.progress,
        rec.entries
    );
    assert!(
        rec.entries
            .iter()
            .any(|e| e.by == "ci-1" && e.kind == "StageStarted"),
        "{:?}",
        rec.entries
    );
    assert!(
        rec.entries
            .iter()
            .any(|e| e.by == "ci-2" && e.message.contains("resumes from its record"))
    );
    // ci-2 carried on at the 10% step, found in force: nothing rewritten.
    let resumed = rec
        .entries
        .iter()
        .find(|e| e.by == "ci-2" && e.kind == "Started")
        .unwrap();
    assert!(
        resumed.message.contains("at v1=90 v2=10 from stage 0"),
        "{}",
        resumed.message
    );
    let first_of_2: Vec<_> = rec
        .entries
        .iter()
        .filter(|e| e.by == "ci-2")
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(
        &first_of_2[..4],
        ["Lease", "Started", "StageStarted", "AlreadyInForce"],
        "{first_of_2:?}"
    );
    assert_eq!(
        w.store.history(Some(ROUTE), 10).await.unwrap().len(),
        1,
        "one rollout, two attempts"
    );
    assert!(w.violations().is_empty(), "{:?}", w.violations());
}

/// The lease is taken over while the holder bakes: the holder stops before its next
/// write, with an error naming the weights in force, and writes nothing more.
pub async fn stolen_mid_bake(w: &World) {
    let first = w.spawn("ci-1", ScriptedHealthCheck::healthy());
    w.until_writes(1).await;
    w.quiet().await;
    w.clock.expire_leases();
    let lease = w
        .store
        .acquire(ROUTE, &meshkit::store::Holder::named("thief"), super::TTL)
        .await
        .unwrap();
    let writes_before = w.writes.load(std::sync::atomic::Ordering::SeqCst);
    let result = first.await.unwrap();
    match &result {
        Err(RolloutError::LeaseLost {
            in_force, detail, ..
        }) => {
            assert_eq!(*in_force, Weights::split("v1", "v2", 10).unwrap());
            assert!(
                detail.contains("thief") || detail.contains("expired"),
                "{detail}"
            );
        }
        other => panic!("expected the lease to be lost, got {other:?}"),
    }
    assert_eq!(
        w.writes.load(std::sync::atomic::Ordering::SeqCst),
        writes_before,
        "no write after the takeover"
    );
    assert_eq!(w.weights(), Weights::split("v1", "v2", 10).unwrap());
    assert!(w.violations().is_empty(), "{:?}", w.violations());
    w.store.release(&lease).await.unwrap();
}

/// A rollback asked through the store from another process lands within one check
/// interval and is in the record.
pub async fn gate_from_elsewhere(w: &World) {
    let first = w.spawn("ci-1", ScriptedHealthCheck::healthy());
    w.until_writes(2).await;
    let id = w
        .store
        .lease(ROUTE)
        .await
        .unwrap()
        .unwrap()
        .rollout
        .unwrap();
    let asked = w
        .store
        .request(&id, Gate::Pause, "ops@laptop")
        .await
        .unwrap();
    assert_eq!(asked.applied, None);
    let mut waited = Duration::ZERO;
    while w.store.gates(&id).await.unwrap()[0].applied.is_none() {
        tokio::time::sleep(w.interval / 10).await;
        waited += w.interval / 10;
        assert!(
            waited <= w.interval * 2,
            "pause not applied within a check interval"
        );
    }
    w.store
        .request(&id, Gate::Rollback, "ops@laptop")
        .await
        .unwrap();
    let outcome = first.await.unwrap().unwrap();
    match outcome {
        Outcome::RolledBack { reason, .. } => assert_eq!(reason.to_string(), "aborted"),
        other => panic!("expected a rollback, got {other}"),
    }
    assert_eq!(w.weights(), stable());
    let rec = w.store.get(&id).await.unwrap().unwrap();
    assert_eq!(rec.state, RecordState::RolledBack);
    let gates: Vec<_> = rec.entries.iter().filter(|e| e.kind == "Gate").collect();
    assert_eq!(gates.len(), 2, "{:?}", rec.entries);
    assert!(gates[0].message.contains("pause requested by ops@laptop"));
    assert!(
        gates[1]
            .message
            .contains("rollback requested by ops@laptop")
    );
    assert!(rec.entries.iter().any(|e| e.kind == "Paused"));
    assert!(
        w.store.request(&id, Gate::Promote, "late").await.is_err(),
        "a gate on an ended rollout is refused"
    );
}

/// What a seeded schedule did, for the failure message.
#[derive(Debug)]
pub struct Schedule {
    pub seed: u64,
    pub steps: Vec<String>,
}

/// One seeded kill/takeover schedule: up to three processes take turns, each killed
/// (or robbed of its lease while alive) after a random number of writes and yields,
/// the last one left to finish. Ends at a safe end, consistent with the record, with
/// no write by a process that did not hold the lease.
pub async fn seeded(w: &World, seed: u64) -> Schedule {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut steps = Vec::new();
    let fails = rng.u8(..4) == 0;
    let check = |rng: &mut fastrand::Rng| {
        if fails {
            ScriptedHealthCheck::fail_after(rng.usize(2..8), "5xx above 1%")
        } else {
            ScriptedHealthCheck::healthy()
        }
    };
    let turns = rng.usize(1..=3);
    let mut id = None;
    for turn in 0..turns {
        let name = format!("p{turn}");
        let handle = w.spawn(&name, check(&mut rng));
        let writes = w.writes.load(std::sync::atomic::Ordering::SeqCst) + rng.usize(1..4);
        let yields = rng.usize(0..40);
        let steal = rng.bool();
        // Wait for the writes, or for the process to end first.
        let ended = tokio::select! {
            () = w.until_writes(writes) => false,
            _ = tokio::time::sleep(w.interval * 60) => true,
        };
        for _ in 0..yields {
            tokio::task::yield_now().await;
        }
        if handle.is_finished() || ended {
            let r = handle.await.unwrap();
            steps.push(format!("{name} ended by itself: {r:?}"));
            break;
        }
        w.quiet().await;
        if steal {
            w.clock.expire_leases();
            steps.push(format!(
                "{name} robbed after {writes} writes + {yields} yields"
            ));
            let next = w.spawn(&format!("{name}-heir"), check(&mut rng));
            let robbed = handle.await.unwrap();
            match &robbed {
                Err(RolloutError::LeaseLost { .. }) => {}
                Ok(_) | Err(_) => {
                    // It may have ended before noticing (its last write came first).
                    steps.push(format!("{name} ended as {robbed:?}"));
                }
            }
            let r = next.await.unwrap();
            let open = w
                .store
                .open_rollout(ROUTE)
                .await
                .unwrap()
                .map(|r| (r.state, r.progress, r.attempts));
            steps.push(format!("{name}-heir: {r:?}; open record: {open:?}"));
            if r.is_ok() {
                break;
            }
            continue;
        }
        handle.abort();
        let _ = handle.await;
        steps.push(format!(
            "{name} killed after {writes} writes + {yields} yields at {}",
            w.weights()
        ));
        w.clock.expire_leases();
        if id.is_none() {
            id = w
                .store
                .history(Some(super::ROUTE), 1)
                .await
                .unwrap()
                .first()
                .map(|s| s.id.clone());
        }
    }
    // Whoever is left: a last process finishes the job.
    if w.store.open_rollout(ROUTE).await.unwrap().is_some() {
        w.clock.expire_leases();
        let r = w.process("last", check(&mut rng)).run().await;
        steps.push(format!("last: {r:?}"));
        assert!(r.is_ok(), "seed {seed}: {steps:?}");
    }
    let sched = Schedule { seed, steps };
    let end = w.weights();
    assert!(
        end == alone() || end == stable() || end == Weights::split("v1", "v2", 100).unwrap(),
        "{sched:?}: ended at {end}"
    );
    assert!(w.violations().is_empty(), "{sched:?}: {:?}", w.violations());
    // The rollout's record (runs refused before any write leave closed records of
    // their own).
    let last = w.store.history(Some(ROUTE), 10).await.unwrap();
    let rec = last
        .iter()
        .find(|r| r.state != RecordState::Refused)
        .unwrap();
    match rec.state {
        RecordState::Promoted => assert!(end.is_all_on("v2"), "{sched:?}"),
        RecordState::RolledBack => assert!(end.is_all_on("v1"), "{sched:?}"),
        other => panic!("{sched:?}: record ended {other}"),
    }
    assert!(
        w.store.open_rollout(ROUTE).await.unwrap().is_none(),
        "{sched:?}"
    );
    sched
}
