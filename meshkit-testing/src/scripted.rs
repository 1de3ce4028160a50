//! [`ScriptedHealthCheck`]: answers a scripted sequence of verdicts.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use meshkit::health::{CheckContext, HealthCheck, Verdict};

/// A health check that answers the given verdicts in order, then repeats the last one
/// (or the one set with [`ScriptedHealthCheck::then`]). An empty script answers
/// inconclusive. Cheap to clone; clones share the script and the call count.
#[derive(Debug, Clone)]
pub struct ScriptedHealthCheck {
    name: String,
    script: Arc<Mutex<VecDeque<Verdict>>>,
    after: Arc<Mutex<Option<Verdict>>>,
    calls: Arc<AtomicU64>,
    contexts: Arc<Mutex<Vec<CheckContext>>>,
}

impl ScriptedHealthCheck {
    /// A check that answers `verdicts` in order.
    pub fn new(verdicts: impl IntoIterator<Item = Verdict>) -> Self {
        Self {
            name: "scripted".into(),
            script: Arc::new(Mutex::new(verdicts.into_iter().collect())),
            after: Arc::new(Mutex::new(None)),
            calls: Arc::new(AtomicU64::new(0)),
            contexts: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// A check that is always healthy.
    pub fn healthy() -> Self {
        Self::new([Verdict::Healthy])
    }

    /// Healthy for `n` evaluations, then unhealthy with `reason` from then on.
    pub fn fail_after(n: usize, reason: &str) -> Self {
        let mut v = vec![Verdict::Healthy; n];
        v.push(Verdict::unhealthy(reason));
        Self::new(v)
    }

    /// Sets the check's name.
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// The verdict to repeat once the script is used up (default: its last verdict).
    pub fn then(self, verdict: Verdict) -> Self {
        *self.after.lock().unwrap_or_else(|e| e.into_inner()) = Some(verdict);
        self
    }

    /// How many times the check was evaluated.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// The context of every evaluation, in order.
    pub fn contexts(&self) -> Vec<CheckContext> {
        self.contexts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[async_trait]
impl HealthCheck for ScriptedHealthCheck {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self, ctx: &CheckContext) -> Verdict {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.contexts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ctx.clone());
        let mut script = self.script.lock().unwrap_or_else(|e| e.into_inner());
        let mut after = self.after.lock().unwrap_or_else(|e| e.into_inner());
        match script.pop_front() {
            Some(v) => {
                if script.is_empty() && after.is_none() {
                    *after = Some(v.clone());
                }
                v
            }
            None => after
                .clone()
                .unwrap_or_else(|| Verdict::inconclusive("empty script")),
        }
    }
}
