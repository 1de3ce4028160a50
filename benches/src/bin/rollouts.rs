//! Many rollouts in one process: N canaries at once on one runtime, nobody watching
//! their events. Prints the memory each costs and whether their check rounds ran on
//! time. Usage: `rollouts [N]` (default 10,000). Real time, about 15 s.

use std::time::{Duration, Instant};

use meshkit::Rollout;
use meshkit::strategy::Canary;
use meshkit::traffic::Weights;
use meshkit_testing::{InMemoryRouter, ScriptedHealthCheck};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let router = InMemoryRouter::new();
        for i in 0..n {
            router.insert(&format!("r{i}"), Weights::split("v1", "v2", 0)?);
        }
        let checks: Vec<ScriptedHealthCheck> =
            (0..n).map(|_| ScriptedHealthCheck::healthy()).collect();
        let before = rss_kib();
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(n);
        for (i, check) in checks.iter().enumerate() {
            let rollout = Rollout::builder()
                .router(router.clone())
                .route(format!("r{i}"))
                .from("v1")
                .to("v2")
                .strategy(Canary::steps([10, 100]).bake(Duration::from_secs(6)))
                .check(check.clone())
                .check_interval(Duration::from_secs(1))
                .build()?;
            tasks.push(tokio::spawn(rollout.run()));
        }
        // Mid-run: every rollout is baking its first step.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let during = rss_kib();
        let rounds_mid: u64 = checks.iter().map(ScriptedHealthCheck::calls).sum();
        let mut promoted = 0;
        for t in tasks {
            if matches!(t.await, Ok(Ok(o)) if o.is_promoted()) {
                promoted += 1;
            }
        }
        let took = started.elapsed();
        let rounds: u64 = checks.iter().map(ScriptedHealthCheck::calls).sum();
        println!(
            "{n} rollouts: {promoted} promoted in {:.1} s (plan: 12 s of bakes); \
             memory {:.1} KiB per running rollout ({} KiB before, {} KiB during); \
             check rounds {} at 4 s (~{} expected), {} in all (~{} expected)",
            took.as_secs_f64(),
            (during.saturating_sub(before)) as f64 / n as f64,
            before,
            during,
            rounds_mid,
            n * 4,
            rounds,
            n * 13,
        );
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
