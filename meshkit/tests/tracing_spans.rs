//! The rollout itself is traced: one OpenTelemetry span per rollout and per stage.

mod common;

use std::time::Duration;

use common::{canary, router};
use meshkit::global::BoxedTracer;
use meshkit_testing::ScriptedHealthCheck;
use opentelemetry::trace::{Status, TracerProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

#[tokio::test(start_paused = true)]
async fn rollout_and_stage_spans_are_exported_with_parent_links() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let tracer = BoxedTracer::new(Box::new(provider.tracer("test")));
    let r = router();
    let check = ScriptedHealthCheck::fail_after(7, "5xx");
    let outcome = canary(&r, check)
        .tracer(tracer)
        .check_interval(Duration::from_secs(10))
        .build()
        .unwrap()
        .run()
        .await
        .unwrap();
    assert!(!outcome.is_promoted());
    let spans = exporter.get_finished_spans().unwrap();
    let rollout = spans
        .iter()
        .find(|s| s.name == "meshkit.rollout")
        .expect("rollout span");
    let stages: Vec<_> = spans
        .iter()
        .filter(|s| s.name.starts_with("meshkit.stage"))
        .collect();
    assert_eq!(stages.len(), 2, "two stages ran before the rollback");
    for s in &stages {
        assert_eq!(s.parent_span_id, rollout.span_context.span_id());
        assert_eq!(s.span_context.trace_id(), rollout.span_context.trace_id());
    }
    assert!(
        matches!(stages[1].status, Status::Error { .. }),
        "failed stage is an error"
    );
    // The check round before the first shift, then six during the bake.
    assert_eq!(
        stages[0]
            .events
            .iter()
            .filter(|e| e.name == "verdict")
            .count(),
        7
    );
    let attr = |k: &str| {
        rollout
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == k)
            .map(|kv| kv.value.to_string())
    };
    assert_eq!(attr("meshkit.outcome").as_deref(), Some("rolled_back"));
    assert_eq!(attr("meshkit.candidate").as_deref(), Some("v2"));
    assert!(rollout.events.iter().any(|e| e.name == "rollback"));
}
