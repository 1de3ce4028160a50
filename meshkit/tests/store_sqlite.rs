//! The SQLite rollout store under the runner: leases, takeover from the record,
//! fencing, gates, seeded kill/takeover schedules (paused time, a test clock).

mod store_harness;

use std::sync::Arc;
use std::time::Duration;

use meshkit::store::SqliteStore;
use store_harness::{ManualClock, World, scenarios};

fn world(name: &str) -> (World, tempdir::Dir) {
    let dir = tempdir::Dir::new(name);
    let clock = ManualClock::new();
    let store = SqliteStore::open(dir.0.join("rollouts.db"))
        .unwrap()
        .with_clock(clock.clock());
    (
        World::new(Arc::new(store), clock, Duration::from_secs(10)),
        dir,
    )
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new(name: &str) -> Self {
            let p = std::env::temp_dir().join(format!(
                "meshkit-store-{name}-{}-{}",
                std::process::id(),
                fastrand::u64(..)
            ));
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn second_run_is_refused_at_once() {
    let (w, _d) = world("refused");
    scenarios::second_run_refused(&w).await;
}

#[tokio::test(start_paused = true)]
async fn kill_then_takeover_resumes_from_the_record() {
    let (w, _d) = world("takeover");
    scenarios::takeover_after_kill(&w).await;
}

#[tokio::test(start_paused = true)]
async fn a_lease_stolen_mid_bake_stops_the_holder_before_its_next_write() {
    let (w, _d) = world("stolen");
    scenarios::stolen_mid_bake(&w).await;
}

#[tokio::test(start_paused = true)]
async fn gates_from_another_process_land_within_a_check_interval() {
    let (w, _d) = world("gates");
    scenarios::gate_from_elsewhere(&w).await;
}

#[tokio::test(start_paused = true)]
async fn fifty_seeded_kill_and_takeover_schedules_end_safely() {
    let (mut kills, mut thefts) = (0, 0);
    for seed in 0..50 {
        let (w, _d) = world("seeded");
        let s = scenarios::seeded(&w, seed).await;
        kills += s.steps.iter().filter(|s| s.contains("killed")).count();
        thefts += s.steps.iter().filter(|s| s.contains("robbed")).count();
    }
    // The schedules really kill and rob holders, not only let them finish.
    assert!(
        kills >= 10 && thefts >= 10,
        "kills {kills}, thefts {thefts}"
    );
}
