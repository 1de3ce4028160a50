//! Runner tests with paused time against the in-memory router.

mod common;

use std::time::Duration;

use common::{ROUTE, alone, canary, router, run, split};
use meshkit::health::Verdict;
use meshkit::rollout::{Event, InconclusivePolicy, RollbackReason};
use meshkit::strategy::{BlueGreen, Canary, Linear};
use meshkit::traffic::Weights;
use meshkit::{Outcome, Rollout, RolloutError};
use meshkit_testing::{
    ChangedBy, Fault, FleetCall, InMemoryFleet, InMemoryRouter, ScriptedHealthCheck,
};

#[tokio::test(start_paused = true)]
async fn healthy_canary_walks_the_exact_weights_and_is_promoted() {
    let r = router();
    let rollout = canary(&r, ScriptedHealthCheck::healthy()).build().unwrap();
    let outcome = rollout.run().await.unwrap();
    assert!(
        matches!(outcome, Outcome::Promoted { manual: false, .. }),
        "{outcome}"
    );
    assert_eq!(
        r.writes(ROUTE),
        vec![split(5), split(25), split(50), split(100), alone()]
    );
    assert_eq!(r.weights(ROUTE), Some(alone()));
    // Each step baked 60 s: 4 steps, about 240 s of (paused) time.
    let Outcome::Promoted { elapsed, .. } = outcome else {
        unreachable!()
    };
    assert!(
        elapsed >= Duration::from_secs(240) && elapsed < Duration::from_secs(241),
        "{elapsed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn unhealthy_at_each_step_rolls_back_to_all_stable() {
    // 6 evaluations per step (60 s bake / 10 s interval); fail in step k.
    for k in 0..4usize {
        let r = router();
        let check = ScriptedHealthCheck::fail_after(6 * k + 2, "5xx rate 12%");
        let outcome = canary(&r, check).build().unwrap().run().await.unwrap();
        match &outcome {
            Outcome::RolledBack {
                reason: RollbackReason::Unhealthy(why),
                stage,
                weights,
                ..
            } => {
                assert_eq!(*stage, Some(k), "step {k}");
                assert_eq!(why, "5xx rate 12%");
                assert_eq!(*weights, split(0));
            }
            other => panic!("step {k}: {other}"),
        }
        assert_eq!(r.weights(ROUTE), Some(split(0)), "step {k}");
        let steps = [5, 25, 50, 100];
        let mut expected: Vec<_> = steps[..=k].iter().map(|p| split(*p)).collect();
        expected.push(split(0));
        assert_eq!(r.writes(ROUTE), expected, "step {k}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_thirty_minute_rollout_takes_well_under_a_second() {
    let r = router();
    let wall = std::time::Instant::now();
    let rollout = common::builder(&r)
        .strategy(Linear::new(10, Duration::from_secs(180)))
        .check(ScriptedHealthCheck::healthy())
        .build()
        .unwrap();
    let outcome = rollout.run().await.unwrap();
    let Outcome::Promoted { elapsed, .. } = outcome else {
        panic!("{outcome}")
    };
    assert_eq!(elapsed.as_secs(), 30 * 60);
    assert!(
        wall.elapsed() < Duration::from_secs(1),
        "wall time {:?}",
        wall.elapsed()
    );
    // Ten steps, then v1 taken off the route.
    assert_eq!(r.writes(ROUTE).len(), 11);
}

#[tokio::test(start_paused = true)]
async fn another_writer_is_detected_and_left_alone() {
    let r = router();
    let theirs = split(70);
    // Right after meshkit's second write (25%), someone else sets 70%.
    r.external_write_after(2, ROUTE, theirs.clone());
    let err = canary(&r, ScriptedHealthCheck::healthy())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap_err();
    match &err {
        RolloutError::ConcurrentWriter {
            expected, found, ..
        } => {
            assert_eq!(*expected, split(25));
            assert_eq!(*found, theirs);
        }
        other => panic!("{other}"),
    }
    assert_eq!(err.in_force(), Some(&theirs));
    assert_eq!(r.weights(ROUTE), Some(theirs));
    let last = r.history(ROUTE).pop().unwrap();
    assert_eq!(
        last.by,
        ChangedBy::External,
        "meshkit wrote after the other writer"
    );
    assert_eq!(r.writes(ROUTE), vec![split(5), split(25)]);
}

#[tokio::test(start_paused = true)]
async fn an_external_change_during_the_last_bake_stops_promotion() {
    let r = router();
    r.external_write_after(4, ROUTE, split(0));
    let err = canary(&r, ScriptedHealthCheck::healthy())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap_err();
    assert!(
        matches!(err, RolloutError::ConcurrentWriter { .. }),
        "{err}"
    );
    assert_eq!(err.in_force(), Some(&split(0)));
}

#[tokio::test(start_paused = true)]
async fn rollback_is_bounded_by_interval_times_threshold_plus_one_write() {
    let r = router();
    let check = ScriptedHealthCheck::fail_after(6, "p99 900ms");
    let rollout = canary(&r, check).failure_threshold(3).build().unwrap();
    let mut events = rollout.events();
    let task = tokio::spawn(rollout.run());
    let (mut first_fail, mut rolled_back) = (None, None);
    while let Some((at, e)) = events.recv_timed().await {
        match e {
            Event::Verdict {
                verdict: Verdict::Unhealthy { .. },
                ..
            } if first_fail.is_none() => first_fail = Some(at),
            Event::WeightsWritten { weights } if weights == split(0) => rolled_back = Some(at),
            _ => {}
        }
    }
    task.await.unwrap().unwrap();
    let took = rolled_back.unwrap() - first_fail.unwrap();
    // The first failure counts as 1 of 3: two more intervals, then the write (instant here).
    assert_eq!(took, Duration::from_secs(20));
}

#[tokio::test(start_paused = true)]
async fn inconclusive_never_promotes_and_fails_after_its_limit() {
    let r = router();
    let check = ScriptedHealthCheck::new([Verdict::inconclusive("no data")]);
    let outcome = run(canary(&r, check.clone())).await;
    assert!(
        matches!(
            outcome,
            Outcome::RolledBack {
                reason: RollbackReason::Inconclusive(_),
                stage: Some(0),
                ..
            }
        ),
        "{outcome}"
    );
    // The round before the first shift is inconclusive too but does not count.
    assert_eq!(check.calls(), 4);

    // With Wait, inconclusive holds the stage until the deadline rolls it back.
    let r = router();
    let check = ScriptedHealthCheck::new([Verdict::inconclusive("no data")]);
    let outcome = canary(&r, check)
        .inconclusive(InconclusivePolicy::Wait)
        .deadline(Duration::from_secs(600))
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(
        matches!(
            outcome,
            Outcome::RolledBack {
                reason: RollbackReason::DeadlineExceeded,
                stage: Some(0),
                ..
            }
        ),
        "{outcome}"
    );
    assert_eq!(r.writes(ROUTE), vec![split(5), split(0)]);
}

#[tokio::test(start_paused = true)]
async fn a_failing_check_holds_the_stage_until_healthy() {
    let r = router();
    // Before the shift: healthy. Step 0: healthy x5, then unhealthy at the 60 s mark
    // (threshold 2 not reached), then healthy: the stage passes 10 s late.
    let mut script = vec![Verdict::Healthy; 6];
    script.push(Verdict::unhealthy("blip"));
    script.push(Verdict::Healthy);
    let check = ScriptedHealthCheck::new(script);
    let rollout = canary(&r, check).failure_threshold(2).build().unwrap();
    let outcome = rollout.run().await.unwrap();
    let Outcome::Promoted { elapsed, .. } = outcome else {
        panic!("{outcome}")
    };
    assert_eq!(elapsed, Duration::from_secs(250));
}

#[tokio::test(start_paused = true)]
async fn abort_rolls_back() {
    let r = router();
    let rollout = canary(&r, ScriptedHealthCheck::healthy()).build().unwrap();
    let handle = rollout.handle();
    let mut events = rollout.events();
    let task = tokio::spawn(rollout.run());
    while let Some(e) = events.recv().await {
        if let Event::WeightsWritten { weights } = e
            && weights == split(25)
        {
            handle.abort().unwrap();
        }
    }
    let outcome = task.await.unwrap().unwrap();
    assert!(
        matches!(
            outcome,
            Outcome::RolledBack {
                reason: RollbackReason::Aborted,
                stage: Some(1),
                ..
            }
        ),
        "{outcome}"
    );
    assert_eq!(r.weights(ROUTE), Some(split(0)));
    assert!(
        handle.abort().is_err(),
        "handle must report the rollout ended"
    );
}

#[tokio::test(start_paused = true)]
async fn promote_now_skips_to_the_cutover_and_keeps_its_bake() {
    let r = router();
    let check = ScriptedHealthCheck::healthy();
    let rollout = canary(&r, check.clone()).build().unwrap();
    let handle = rollout.handle();
    handle.promote().unwrap();
    let outcome = rollout.run().await.unwrap();
    assert!(
        matches!(outcome, Outcome::Promoted { manual: true, .. }),
        "{outcome}"
    );
    // Taken in the check round before the first shift: no canary step was written.
    assert_eq!(r.writes(ROUTE), vec![split(100), alone()]);
    // The cutover was checked first (no healthy verdict yet) and still baked (6).
    assert_eq!(check.contexts().iter().filter(|c| c.stage == 3).count(), 7);
}

#[tokio::test(start_paused = true)]
async fn pause_stops_the_bake_clock_but_not_the_checks() {
    let r = router();
    let check = ScriptedHealthCheck::healthy();
    let rollout = canary(&r, check.clone()).build().unwrap();
    let handle = rollout.handle();
    let task = tokio::spawn(rollout.run());
    tokio::time::sleep(Duration::from_secs(30)).await;
    handle.pause().unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(r.writes(ROUTE), vec![split(5)], "no progress while paused");
    assert!(
        check.calls() >= 60,
        "checks keep running while paused: {}",
        check.calls()
    );
    handle.resume().unwrap();
    let outcome = task.await.unwrap().unwrap();
    let Outcome::Promoted { elapsed, .. } = outcome else {
        panic!("{outcome}")
    };
    assert!(
        elapsed >= Duration::from_secs(840) && elapsed <= Duration::from_secs(851),
        "{elapsed:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn blue_green_provisions_checks_without_traffic_then_retires_blue() {
    let r = router();
    let fleet = InMemoryFleet::new().ready_after(Duration::from_secs(30));
    let check = ScriptedHealthCheck::healthy();
    let rollout = common::builder(&r)
        .strategy(
            BlueGreen::new()
                .pre_check(Duration::from_secs(20))
                .bake(Duration::from_secs(60)),
        )
        .check(check.clone())
        .fleet(fleet.clone())
        .build()
        .unwrap();
    let outcome = rollout.run().await.unwrap();
    assert!(outcome.is_promoted(), "{outcome}");
    assert_eq!(
        r.writes(ROUTE),
        vec![split(100), alone()],
        "a single cutover, then blue off the route"
    );
    assert_eq!(
        fleet.calls(),
        vec![
            FleetCall::BringUp("v2".into()),
            FleetCall::Ready("v2".into()),
            FleetCall::Retire("v1".into())
        ]
    );
    // Pre-check evaluations saw no traffic on v2.
    let pre: Vec<_> = check
        .contexts()
        .into_iter()
        .filter(|c| c.stage == 1)
        .collect();
    assert_eq!(pre.len(), 2);
    assert!(pre.iter().all(|c| c.weights == split(0)));
}

#[tokio::test(start_paused = true)]
async fn blue_green_rollback_in_the_window_keeps_blue_and_retires_green() {
    let r = router();
    let fleet = InMemoryFleet::new();
    // 2 pre-check evaluations pass, then green fails after the cutover.
    let check = ScriptedHealthCheck::fail_after(3, "errors");
    let outcome = common::builder(&r)
        .strategy(
            BlueGreen::new()
                .pre_check(Duration::from_secs(20))
                .bake(Duration::from_secs(60)),
        )
        .check(check)
        .fleet(fleet.clone())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(
        matches!(outcome, Outcome::RolledBack { stage: Some(2), .. }),
        "{outcome}"
    );
    assert_eq!(r.writes(ROUTE), vec![split(100), split(0)]);
    assert_eq!(fleet.calls().last(), Some(&FleetCall::Retire("v2".into())));
    assert!(!fleet.calls().contains(&FleetCall::Retire("v1".into())));
}

#[tokio::test(start_paused = true)]
async fn a_new_version_that_never_gets_ready_rolls_back_before_any_traffic() {
    let r = router();
    let fleet = InMemoryFleet::new().ready_after(Duration::from_secs(3600));
    let outcome = common::builder(&r)
        .strategy(BlueGreen::new())
        .check(ScriptedHealthCheck::healthy())
        .fleet(fleet)
        .ready_timeout(Duration::from_secs(120))
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    match outcome {
        Outcome::RolledBack {
            reason: RollbackReason::ProvisionFailed(why),
            ..
        } => assert!(why.contains("0 of 1 tasks"), "{why}"),
        other => panic!("{other}"),
    }
    assert!(
        r.writes(ROUTE).is_empty(),
        "route already at 100% stable: no write needed"
    );
}

#[tokio::test(start_paused = true)]
async fn writes_are_retried_through_faults_and_verified() {
    let r = router();
    r.throttle_next_calls(2);
    r.fail_next_writes(2);
    r.lose_next_responses(1);
    r.set_read_lag(Duration::from_millis(700));
    r.report_applied(true);
    let rollout = canary(&r, ScriptedHealthCheck::healthy()).build().unwrap();
    let mut events = rollout.events();
    let task = tokio::spawn(rollout.run());
    let (mut retries, mut verified) = (0, 0);
    while let Some(e) = events.recv().await {
        match e {
            Event::WriteRetry { .. } => retries += 1,
            Event::WeightsVerified { .. } => verified += 1,
            _ => {}
        }
    }
    assert!(task.await.unwrap().unwrap().is_promoted());
    assert!(retries >= 3, "{retries}");
    assert_eq!(verified, 4);
    assert_eq!(r.weights(ROUTE), Some(alone()));
}

#[tokio::test(start_paused = true)]
async fn a_rollback_that_cannot_be_written_is_reported_with_the_weights_in_force() {
    let r = router();
    let check = ScriptedHealthCheck::fail_after(7, "bad");
    // After the 25% write, every write fails.
    r.after_writes(2, Fault::FailWrites(u32::MAX));
    let rollout = canary(&r, check)
        .rollback_deadline(Duration::from_secs(60))
        .build()
        .unwrap();
    let err = rollout.run().await.unwrap_err();
    assert!(matches!(err, RolloutError::RollbackFailed { .. }), "{err}");
    assert_eq!(err.in_force(), Some(&split(25)));
    assert!(err.to_string().contains("ROLLBACK FAILED"), "{err}");
    assert!(err.to_string().contains("v1=75 v2=25"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_rejected_forward_write_rolls_back() {
    let r = router();
    // The write after the first (5%) one is rejected as invalid.
    r.after_writes(1, Fault::RejectWrites(1));
    let outcome = run(canary(&r, ScriptedHealthCheck::healthy())).await;
    assert!(
        matches!(
            outcome,
            Outcome::RolledBack {
                reason: RollbackReason::WriteFailed(_),
                stage: Some(1),
                ..
            }
        ),
        "{outcome}"
    );
    assert_eq!(r.weights(ROUTE), Some(split(0)));
}

#[tokio::test(start_paused = true)]
async fn resume_continues_from_the_weights_found() {
    let r = router();
    r.external_write(ROUTE, split(25));
    let rollout = canary(&r, ScriptedHealthCheck::healthy())
        .resume(true)
        .build()
        .unwrap();
    let events = rollout.events();
    assert!(rollout.run().await.unwrap().is_promoted());
    // The 25% step runs again (its bake starts over) and writes nothing.
    assert_eq!(r.writes(ROUTE), vec![split(50), split(100), alone()]);
    let seen = common::drain(events).await;
    assert!(
        matches!(&seen[0], Event::Started { from_stage: 1, .. }),
        "{:?}",
        seen[0]
    );
    assert!(seen.contains(&Event::AlreadyInForce { weights: split(25) }));

    let r = router();
    r.external_write(ROUTE, split(25));
    let err = canary(&r, ScriptedHealthCheck::healthy())
        .build()
        .unwrap()
        .run()
        .await
        .unwrap_err();
    assert!(matches!(err, RolloutError::NotAtStart { .. }), "{err}");
    assert!(r.writes(ROUTE).is_empty());
}

#[tokio::test(start_paused = true)]
async fn events_tell_the_whole_story_in_order() {
    let r = router();
    let rollout = common::builder(&r)
        .strategy(Canary::steps([50, 100]).bake(Duration::from_secs(10)))
        .check(ScriptedHealthCheck::healthy())
        .build()
        .unwrap();
    let mut events = rollout.events();
    let task = tokio::spawn(rollout.run());
    let mut kinds = Vec::new();
    while let Some(e) = events.recv().await {
        kinds.push(match e {
            Event::Started { .. } => "started",
            Event::StageStarted { .. } => "stage",
            Event::WeightsWritten { .. } => "written",
            Event::TargetRemoved { .. } => "removed",
            Event::Verdict { .. } => "verdict",
            Event::Done { .. } => "done",
            other => panic!("unexpected {other}"),
        });
    }
    assert!(task.await.unwrap().unwrap().is_promoted());
    assert_eq!(
        kinds,
        [
            "started", "stage", "verdict", "written", "verdict", "stage", "written", "verdict",
            "stage", "removed", "done"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_rollback_window_keeps_stable_until_it_passes() {
    let r = router();
    let fleet = InMemoryFleet::new();
    let outcome = canary(&r, ScriptedHealthCheck::healthy())
        .fleet(fleet.clone())
        .rollback_window(Duration::from_secs(300))
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    let Outcome::Promoted { elapsed, .. } = outcome else {
        panic!("{outcome}")
    };
    // 4 bakes of 60 s, then the 300 s window before v1 is retired.
    assert!(elapsed >= Duration::from_secs(540), "{elapsed:?}");
    assert_eq!(fleet.calls().last(), Some(&FleetCall::Retire("v1".into())));
}

#[tokio::test(start_paused = true)]
async fn a_failure_in_the_rollback_window_returns_traffic_to_stable() {
    let r = router();
    let fleet = InMemoryFleet::new();
    // 6 evaluations per 60 s step: 24 pass, the window's third evaluation fails.
    let check = ScriptedHealthCheck::fail_after(26, "p99 doubled");
    let outcome = canary(&r, check)
        .fleet(fleet.clone())
        .rollback_window(Duration::from_secs(300))
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    match &outcome {
        Outcome::RolledBack {
            reason: RollbackReason::Unhealthy(why),
            weights,
            ..
        } => {
            assert_eq!(why, "p99 doubled");
            assert_eq!(*weights, split(0));
        }
        other => panic!("{other}"),
    }
    assert_eq!(r.weights(ROUTE), Some(split(0)));
    assert_eq!(fleet.calls().last(), Some(&FleetCall::Retire("v2".into())));
    assert!(!fleet.calls().contains(&FleetCall::Retire("v1".into())));
}

#[tokio::test(start_paused = true)]
async fn a_canary_pre_check_rolls_back_before_any_user_traffic() {
    let r = router();
    let check = ScriptedHealthCheck::fail_after(0, "probe: 2/5 succeeded");
    let pre_checked = Canary::steps([5, 25, 50, 100])
        .pre_check(Duration::from_secs(30))
        .bake(Duration::from_secs(60));
    let rollout = canary(&r, check.clone()).strategy(pre_checked).build();
    let outcome = rollout.unwrap().run().await.unwrap();
    assert!(
        matches!(outcome, Outcome::RolledBack { stage: Some(0), .. }),
        "{outcome}"
    );
    let writes = r.writes(ROUTE);
    assert!(
        writes.iter().all(|w| w.get("v2").unwrap_or(0) == 0),
        "{writes:?}"
    );
    assert!(check.contexts().iter().all(|c| c.weights == split(0)));
}

#[tokio::test(start_paused = true)]
async fn a_check_round_before_the_first_shift_keeps_a_bad_version_from_all_traffic() {
    let r = router();
    let check = ScriptedHealthCheck::fail_after(0, "probe: 2/5 succeeded");
    let outcome = run(canary(&r, check.clone())).await;
    let Outcome::RolledBack {
        stage: Some(0),
        elapsed,
        ..
    } = outcome
    else {
        panic!("{outcome}")
    };
    assert_eq!(elapsed, Duration::ZERO, "no waiting for a check interval");
    let writes = r.writes(ROUTE);
    assert!(
        writes.iter().all(|w| w.get("v2").unwrap_or(0) == 0),
        "{writes:?}"
    );
    assert_eq!(check.contexts().len(), 1);
    assert_eq!(check.contexts()[0].weights, split(0));
}

#[tokio::test(start_paused = true)]
async fn a_fresh_healthy_verdict_covers_the_next_shift() {
    let r = router();
    let check = ScriptedHealthCheck::healthy();
    let outcome = run(canary(&r, check.clone())).await;
    assert!(outcome.is_promoted(), "{outcome}");
    // One round before the first shift, then 6 per 60 s bake at 10 s: none extra
    // between steps, since each bake ends on a healthy verdict.
    assert_eq!(check.calls(), 1 + 4 * 6);
    let first = &check.contexts()[0];
    assert_eq!((first.stage, &first.weights), (0, &split(0)));
}

#[tokio::test(start_paused = true)]
async fn the_check_round_before_a_shift_can_be_turned_off() {
    let r = router();
    let check = ScriptedHealthCheck::fail_after(0, "bad");
    let outcome = canary(&r, check.clone())
        .check_before_shift(false)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(!outcome.is_promoted(), "{outcome}");
    assert_eq!(r.writes(ROUTE), vec![split(5), split(0)]);
    assert!(check.contexts().iter().all(|c| c.weights == split(5)));
}

#[tokio::test(start_paused = true)]
async fn resume_refuses_a_split_the_plan_never_writes_unless_adopted() {
    // 30% is another writer's split: the 5/25/50/100 plan never writes it.
    let r = router();
    r.external_write(ROUTE, split(30));
    let err = canary(&r, ScriptedHealthCheck::healthy())
        .resume(true)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap_err();
    match &err {
        RolloutError::NotResumable { in_force, plan, .. } => {
            assert_eq!(*in_force, split(30));
            assert_eq!(*plan, vec![5, 25, 50, 100]);
        }
        other => panic!("{other}"),
    }
    assert!(err.nothing_written());
    assert!(err.to_string().contains("--adopt"), "{err}");
    assert!(r.writes(ROUTE).is_empty());

    // Adopted explicitly: carries on from the first step at or above 30%.
    let r = router();
    r.external_write(ROUTE, split(30));
    let outcome = canary(&r, ScriptedHealthCheck::healthy())
        .resume(true)
        .adopt(true)
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(outcome.is_promoted(), "{outcome}");
    assert_eq!(r.writes(ROUTE), vec![split(50), split(100), alone()]);
}

#[tokio::test(start_paused = true)]
async fn another_writer_setting_exactly_the_next_step_is_not_adopted() {
    // During the 25% bake, another writer sets 50/50: the very next step's weights.
    let r = router();
    let rollout = canary(&r, ScriptedHealthCheck::healthy()).build().unwrap();
    let mut events = rollout.events();
    let task = tokio::spawn(rollout.run());
    let mut seen = Vec::new();
    while let Some(e) = events.recv().await {
        let at_25 = e == Event::WeightsWritten { weights: split(25) };
        seen.push(e);
        if at_25 {
            break;
        }
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    r.external_write(ROUTE, split(50));
    let err = task.await.unwrap().unwrap_err();
    match &err {
        RolloutError::ConcurrentWriter {
            expected,
            found,
            expected_revision,
            found_revision,
            ..
        } => {
            assert_eq!(*expected, split(25));
            assert_eq!(*found, split(50));
            assert_eq!(expected_revision.as_deref(), Some("3"));
            assert_eq!(found_revision.as_deref(), Some("4"));
        }
        other => panic!("{other}"),
    }
    // Left as the other writer set it; meshkit wrote 5% and 25% only.
    assert_eq!(r.weights(ROUTE), Some(split(50)));
    assert_eq!(r.writes(ROUTE), vec![split(5), split(25)]);
    seen.extend(common::drain(events).await);
    let written: Vec<_> = seen
        .iter()
        .filter_map(|e| match e {
            Event::WeightsWritten { weights } => Some(weights.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        written,
        vec![split(5), split(25)],
        "no write claimed for 50%"
    );
}

#[tokio::test(start_paused = true)]
async fn another_writer_is_seen_within_one_check_interval_not_at_the_next_step() {
    let r = router();
    let rollout = canary(&r, ScriptedHealthCheck::healthy()).build().unwrap();
    let mut events = rollout.events();
    let task = tokio::spawn(rollout.run());
    // Wait for the 5% write, then change the route 15 s into the 60 s bake.
    while let Some(e) = events.recv().await {
        if matches!(e, Event::WeightsWritten { .. }) {
            break;
        }
    }
    tokio::time::sleep(Duration::from_secs(15)).await;
    let changed_at = tokio::time::Instant::now();
    r.external_write(ROUTE, split(5));
    let err = task.await.unwrap().unwrap_err();
    // Same weights, another revision: still another writer's change.
    assert!(
        matches!(&err, RolloutError::ConcurrentWriter { expected, found, .. } if expected == found),
        "{err}"
    );
    assert!(err.to_string().contains("same weights"), "{err}");
    assert!(err.to_string().contains("version 2 \u{2192} 3"), "{err}");
    assert!(
        changed_at.elapsed() <= Duration::from_secs(10),
        "noticed after {:?}",
        changed_at.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_rollback_at_stage_zero_writes_nothing_and_says_so() {
    let r = router();
    // The check round before the first shift fails: no traffic was ever shifted.
    let rollout = canary(&r, ScriptedHealthCheck::fail_after(0, "probe failed"))
        .build()
        .unwrap();
    let events = rollout.events();
    let outcome = rollout.run().await.unwrap();
    assert!(!outcome.is_promoted(), "{outcome}");
    assert!(r.writes(ROUTE).is_empty());
    let seen = common::drain(events).await;
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, Event::WeightsWritten { .. })),
        "{seen:?}"
    );
    let said = seen
        .iter()
        .find(|e| matches!(e, Event::AlreadyInForce { .. }))
        .map(ToString::to_string);
    assert_eq!(
        said.as_deref(),
        Some("already at v1=100 v2=0, nothing written")
    );
}

#[tokio::test(start_paused = true)]
async fn back_to_back_rollouts_v1_to_v4_each_promote() {
    let r = InMemoryRouter::new();
    r.insert(ROUTE, Weights::new([("v1", 100)]).unwrap());
    for (from, to) in [("v1", "v2"), ("v2", "v3"), ("v3", "v4")] {
        let outcome = Rollout::builder()
            .router(r.clone())
            .route(ROUTE)
            .from(from)
            .to(to)
            .strategy(Canary::steps([10, 100]).bake(Duration::from_secs(30)))
            .check(ScriptedHealthCheck::healthy())
            .build()
            .unwrap()
            .run()
            .await
            .unwrap_or_else(|e| panic!("{from}->{to}: {e}"));
        assert!(outcome.is_promoted(), "{from}->{to}: {outcome}");
        assert_eq!(r.weights(ROUTE), Some(Weights::new([(to, 100)]).unwrap()));
    }
    // A leftover target at weight 0 (left by another tool) is kept at 0, not refused.
    let r = InMemoryRouter::new();
    r.insert(ROUTE, Weights::new([("v0", 0), ("v1", 100)]).unwrap());
    let outcome = run(canary(&r, ScriptedHealthCheck::healthy())).await;
    assert!(outcome.is_promoted(), "{outcome}");
    assert_eq!(
        r.writes(ROUTE)[0],
        Weights::new([("v0", 0), ("v1", 95), ("v2", 5)]).unwrap()
    );
    assert_eq!(
        r.weights(ROUTE),
        Some(Weights::new([("v0", 0), ("v2", 100)]).unwrap())
    );
}

#[tokio::test(start_paused = true)]
async fn a_rerun_after_promotion_only_retires_and_writes_nothing() {
    let r = router();
    let fleet = InMemoryFleet::new();
    assert!(
        run(canary(&r, ScriptedHealthCheck::healthy()))
            .await
            .is_promoted()
    );
    let before = r.writes(ROUTE).len();
    let outcome = run(canary(&r, ScriptedHealthCheck::healthy())
        .resume(true)
        .fleet(fleet.clone()))
    .await;
    assert!(outcome.is_promoted(), "{outcome}");
    assert_eq!(r.writes(ROUTE).len(), before, "nothing written");
    assert_eq!(fleet.calls(), vec![FleetCall::Retire("v1".into())]);
}

/// A router whose calls can hang forever, and a check that can panic: a rollout still
/// ends (bounded by the call timeout) and never leaves traffic in between silently.
mod misbehaving {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use meshkit::TrafficError;
    use meshkit::async_trait;
    use meshkit::traffic::{Observed, RouteRef, TrafficRouter, WriteRequest};

    use super::*;

    /// Delegates to an in-memory router until `hang` is set; then never answers.
    pub struct Hanging {
        pub inner: InMemoryRouter,
        pub hang: Arc<AtomicBool>,
    }

    #[async_trait]
    impl TrafficRouter for Hanging {
        async fn read(&self, route: &RouteRef) -> Result<Observed, TrafficError> {
            if self.hang.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            self.inner.read(route).await
        }
        async fn write(
            &self,
            route: &RouteRef,
            request: &WriteRequest,
        ) -> Result<Option<Observed>, TrafficError> {
            if self.hang.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            self.inner.write(route, request).await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_router_that_stops_answering_cannot_hold_the_rollout() {
        let r = router();
        let hang = Arc::new(AtomicBool::new(false));
        let rollout = Rollout::builder()
            .router(Hanging {
                inner: r.clone(),
                hang: hang.clone(),
            })
            .route(ROUTE)
            .from("v1")
            .to("v2")
            .strategy(Canary::steps([10, 100]).bake(Duration::from_secs(60)))
            .check(ScriptedHealthCheck::healthy())
            .rollback_deadline(Duration::from_secs(120))
            .build()
            .unwrap();
        let mut events = rollout.events();
        let task = tokio::spawn(rollout.run());
        while let Some(e) = events.recv().await {
            if matches!(e, Event::WeightsWritten { .. }) {
                break;
            }
        }
        hang.store(true, Ordering::SeqCst);
        let started = tokio::time::Instant::now();
        let err = task.await.unwrap().unwrap_err();
        // Stopped with an error naming what it knows, well within the deadline.
        assert!(
            started.elapsed() < Duration::from_secs(3600),
            "{:?}",
            started.elapsed()
        );
        assert!(err.to_string().contains("no answer within"), "{err}");
        assert_eq!(r.weights(ROUTE), Some(split(10)), "left as last written");
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_that_panics_counts_as_inconclusive_and_the_rollout_rolls_back() {
        let r = router();
        let outcome = common::builder(&r)
            .strategy(Canary::steps([10, 100]).bake(Duration::from_secs(60)))
            .check(meshkit::health::from_fn("panics", |_| async {
                panic!("a bug in the check")
            }))
            .build()
            .unwrap()
            .run()
            .await
            .unwrap();
        assert!(
            matches!(&outcome, Outcome::RolledBack { reason: RollbackReason::Inconclusive(why), .. } if why.contains("panicked")),
            "{outcome}"
        );
        assert_eq!(r.weights(ROUTE), Some(split(0)));
    }

    #[test]
    fn a_check_interval_alone_is_enough_and_absurd_bakes_are_refused() {
        let r = router();
        let b = || common::builder(&r).check(ScriptedHealthCheck::healthy());
        // A 1 s interval without a timeout: the timeout follows the interval.
        assert!(
            b().strategy(Canary::steps([100]))
                .check_interval(Duration::from_secs(1))
                .build()
                .is_ok()
        );
        #[derive(Debug)]
        struct Forever;
        impl meshkit::strategy::Strategy for Forever {
            fn name(&self) -> &str {
                "forever"
            }
            fn stages(&self) -> Vec<meshkit::strategy::Stage> {
                vec![meshkit::strategy::Stage::Shift {
                    new_percent: meshkit::traffic::Percent::ALL,
                    bake: Duration::MAX,
                }]
            }
        }
        assert!(b().strategy(Forever).build().is_err());
        let boxed: Box<dyn TrafficRouter> = Box::new(r.clone());
        assert!(
            Rollout::builder()
                .router(boxed)
                .route(ROUTE)
                .from("v1")
                .to("v2")
                .strategy(Canary::steps([100]))
                .check(ScriptedHealthCheck::healthy())
                .build()
                .is_ok()
        );
    }
}

/// Idempotency tokens: a retry within a run reuses its token; a rerun of the same
/// rollout id uses new ones (a backend that remembers tokens would otherwise take the
/// rerun's write for a retry of the old one and not apply it).
mod tokens {
    use std::sync::{Arc, Mutex};

    use meshkit::TrafficError;
    use meshkit::async_trait;
    use meshkit::traffic::{MAX_TOKEN_LEN, Observed, RouteRef, TrafficRouter, WriteRequest};

    use super::*;

    /// Records the token of every write call, then delegates.
    struct Recording {
        inner: InMemoryRouter,
        tokens: Arc<Mutex<Vec<String>>>,
    }

    #[async_trait]
    impl TrafficRouter for Recording {
        async fn read(&self, route: &RouteRef) -> Result<Observed, TrafficError> {
            self.inner.read(route).await
        }
        async fn write(
            &self,
            route: &RouteRef,
            request: &WriteRequest,
        ) -> Result<Option<Observed>, TrafficError> {
            self.tokens.lock().unwrap().push(request.token.clone());
            self.inner.write(route, request).await
        }
    }

    async fn run_once(r: &InMemoryRouter) -> Vec<String> {
        let tokens = Arc::new(Mutex::new(Vec::new()));
        let outcome = Rollout::builder()
            .router(Recording {
                inner: r.clone(),
                tokens: tokens.clone(),
            })
            .route(ROUTE)
            .from("v1")
            .to("v2")
            .id("a-rollout-id-that-is-32-chars-xx")
            .strategy(Canary::steps([10, 100]).bake(Duration::from_secs(30)))
            .check(ScriptedHealthCheck::fail_after(5, "bad"))
            .build()
            .unwrap()
            .run()
            .await
            .unwrap();
        assert!(!outcome.is_promoted(), "{outcome}");
        tokens.lock().unwrap().clone()
    }

    #[tokio::test(start_paused = true)]
    async fn retries_reuse_a_token_and_reruns_use_new_ones() {
        let r = router();
        // The first write fails once and is retried.
        r.fail_next_writes(1);
        let first = run_once(&r).await;
        assert_eq!(first[0], first[1], "a retry reuses its token: {first:?}");
        assert!(first.iter().all(|t| t.len() <= MAX_TOKEN_LEN), "{first:?}");
        // Rolled back; the same rollout again writes the same weights with new tokens.
        let second = run_once(&r).await;
        assert_eq!(r.weights(ROUTE), Some(split(0)));
        assert!(
            second.iter().all(|t| !first.contains(t)),
            "{first:?} / {second:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_setting_changed_beside_the_weights_on_a_versionless_router_stops_the_rollout() {
    let r = meshkit_testing::InMemoryRouter::versionless();
    r.insert(ROUTE, split(0));
    let rollout = Rollout::builder()
        .router(r.clone())
        .route(ROUTE)
        .from("v1")
        .to("v2")
        .strategy(
            meshkit::strategy::Canary::steps_exact([
                meshkit::traffic::Percent::from_tenths(5).unwrap(),
                meshkit::traffic::Percent::ALL,
            ])
            .bake(Duration::from_secs(60)),
        )
        .check(ScriptedHealthCheck::healthy())
        .build()
        .unwrap();
    // Once the first step is written and read back, another writer changes only a
    // setting (a rule's stickiness): the weights stay, the digest revision moves.
    let mut events = rollout.events();
    let other = r.clone();
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            if matches!(e, Event::WeightsWritten { .. }) {
                other.external_setting(ROUTE);
                break;
            }
        }
    });
    let err = rollout.run().await.unwrap_err();
    assert!(
        matches!(err, RolloutError::ConcurrentWriter { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("same weights"), "{err}");
    // The 0.5% write is the only one: held as 995:5, and left as the other writer left it.
    assert_eq!(
        r.writes(ROUTE),
        vec![Weights::relative([("v1", 995), ("v2", 5)]).unwrap()]
    );
    assert_eq!(r.weights(ROUTE).unwrap().get("v2"), Some(5));
}

#[tokio::test(start_paused = true)]
async fn a_plan_finer_than_the_backend_is_refused_before_anything_is_written() {
    let r = router();
    let err = Rollout::builder()
        .router(r.clone())
        .route(ROUTE)
        .from("v1")
        .to("v2")
        .strategy(meshkit::strategy::Canary::steps_exact([
            meshkit::traffic::Percent::from_tenths(5).unwrap(),
            meshkit::traffic::Percent::ALL,
        ]))
        .check(ScriptedHealthCheck::healthy())
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        meshkit::ConfigError::FinerThanBackend {
            step: "0.5%".into(),
            resolution: "1%".into()
        }
    );
    assert_eq!(r.write_calls() + r.read_calls(), 0);
}
