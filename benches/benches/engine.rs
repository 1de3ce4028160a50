//! Criterion micro-benchmarks of the engine's hot spots.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use meshkit::Rollout;
use meshkit::strategy::{Canary, Input, Linear, Position, Strategy};
use meshkit::traffic::Weights;
use meshkit_testing::{InMemoryRouter, ScriptedHealthCheck};

fn strategy(c: &mut Criterion) {
    let canary = Canary::steps([5, 25, 50, 100]);
    c.bench_function("canary decide (one step)", |b| {
        b.iter(|| {
            canary.decide(
                Position { stage: Some(1) },
                std::hint::black_box(&Input::Passed),
            )
        })
    });
    let linear = Linear::new(1, Duration::from_secs(1));
    c.bench_function("linear 1% plan (100 stages) validate", |b| {
        b.iter(|| linear.validate())
    });
}

fn weights(c: &mut Criterion) {
    c.bench_function("Weights::split", |b| {
        b.iter(|| Weights::split("blue", "green", std::hint::black_box(25)))
    });
    let ten: Vec<(String, u32)> = (0..10).map(|i| (format!("t{i}"), 10)).collect();
    c.bench_function("Weights::new 10 targets", |b| {
        b.iter(|| Weights::new(ten.clone()))
    });
}

fn rollout(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    c.bench_function("whole canary rollout, in-memory router, paused time", |b| {
        b.iter(|| {
            rt.block_on(async {
                let router = InMemoryRouter::new();
                router.insert("r", Weights::split("a", "b", 0).unwrap());
                Rollout::builder()
                    .router(router)
                    .route("r")
                    .from("a")
                    .to("b")
                    .strategy(Canary::steps([5, 25, 50, 100]).bake(Duration::from_secs(60)))
                    .check(ScriptedHealthCheck::healthy())
                    .build()
                    .unwrap()
                    .run()
                    .await
                    .unwrap()
            })
        })
    });
}

criterion_group!(benches, strategy, weights, rollout);
criterion_main!(benches);
