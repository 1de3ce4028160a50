//! Combinators: all-of, any-of, and a consecutive-failure threshold.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use futures_util::future::join_all;

use super::{CheckContext, HealthCheck, Verdict};

/// Healthy only when every inner check is healthy. Built by [`all`].
pub struct All {
    name: String,
    checks: Vec<Arc<dyn HealthCheck>>,
}

/// Healthy when at least one inner check is healthy. Built by [`any`].
pub struct Any {
    name: String,
    checks: Vec<Arc<dyn HealthCheck>>,
}

/// Combines checks so that all must pass. Inner checks run concurrently.
///
/// Any unhealthy inner verdict makes the result unhealthy (reasons joined); otherwise
/// any inconclusive one makes it inconclusive. No checks at all is inconclusive:
/// nothing was verified.
pub fn all(checks: impl IntoIterator<Item = Arc<dyn HealthCheck>>) -> All {
    let checks: Vec<_> = checks.into_iter().collect();
    All {
        name: joined_name("all", &checks),
        checks,
    }
}

/// Combines checks so that one passing is enough. Inner checks run concurrently.
///
/// Any healthy inner verdict makes the result healthy; otherwise any inconclusive one
/// makes it inconclusive; otherwise unhealthy. No checks at all is inconclusive.
pub fn any(checks: impl IntoIterator<Item = Arc<dyn HealthCheck>>) -> Any {
    let checks: Vec<_> = checks.into_iter().collect();
    Any {
        name: joined_name("any", &checks),
        checks,
    }
}

fn joined_name(kind: &str, checks: &[Arc<dyn HealthCheck>]) -> String {
    let names: Vec<&str> = checks.iter().map(|c| c.name()).collect();
    format!("{kind}({})", names.join(", "))
}

async fn run_all(checks: &[Arc<dyn HealthCheck>], ctx: &CheckContext) -> Vec<(String, Verdict)> {
    let verdicts = join_all(checks.iter().map(|c| c.check(ctx))).await;
    checks
        .iter()
        .map(|c| c.name().to_owned())
        .zip(verdicts)
        .collect()
}

fn reasons(results: &[(String, Verdict)], keep: fn(&Verdict) -> bool) -> String {
    results
        .iter()
        .filter(|(_, v)| keep(v))
        .map(|(n, v)| format!("{n}: {}", v.reason()))
        .collect::<Vec<_>>()
        .join("; ")
}

#[async_trait]
impl HealthCheck for All {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self, ctx: &CheckContext) -> Verdict {
        if self.checks.is_empty() {
            return Verdict::inconclusive("no checks to evaluate");
        }
        let results = run_all(&self.checks, ctx).await;
        if results
            .iter()
            .any(|(_, v)| matches!(v, Verdict::Unhealthy { .. }))
        {
            return Verdict::unhealthy(reasons(&results, |v| {
                matches!(v, Verdict::Unhealthy { .. })
            }));
        }
        if results
            .iter()
            .any(|(_, v)| matches!(v, Verdict::Inconclusive { .. }))
        {
            return Verdict::inconclusive(reasons(&results, |v| {
                matches!(v, Verdict::Inconclusive { .. })
            }));
        }
        Verdict::Healthy
    }
}

#[async_trait]
impl HealthCheck for Any {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self, ctx: &CheckContext) -> Verdict {
        if self.checks.is_empty() {
            return Verdict::inconclusive("no checks to evaluate");
        }
        let results = run_all(&self.checks, ctx).await;
        if results.iter().any(|(_, v)| v.is_healthy()) {
            return Verdict::Healthy;
        }
        if results
            .iter()
            .any(|(_, v)| matches!(v, Verdict::Inconclusive { .. }))
        {
            return Verdict::inconclusive(reasons(&results, |v| !v.is_healthy()));
        }
        Verdict::unhealthy(reasons(&results, |v| !v.is_healthy()))
    }
}

/// Reports unhealthy only after `n` consecutive unhealthy evaluations of the inner
/// check. Built by [`consecutive`].
pub struct Consecutive<C> {
    name: String,
    inner: C,
    n: u32,
    failures: AtomicU32,
}

/// Wraps `check` so that it is unhealthy only after `n` consecutive unhealthy
/// evaluations (an `n` of 0 is treated as 1).
///
/// Until the threshold is reached a failing evaluation is reported as
/// [`Verdict::Inconclusive`] ("1 of 3 consecutive failures"), never as healthy, so the
/// rollout does not advance on it. A healthy or inconclusive inner verdict resets the
/// count. Note that the rollout's inconclusive policy also sees those verdicts; with
/// this combinator you usually want `InconclusivePolicy::Wait` or a higher limit.
pub fn consecutive<C: HealthCheck>(check: C, n: u32) -> Consecutive<C> {
    Consecutive {
        name: format!("{}(x{})", check.name(), n.max(1)),
        inner: check,
        n: n.max(1),
        failures: AtomicU32::new(0),
    }
}

#[async_trait]
impl<C: HealthCheck> HealthCheck for Consecutive<C> {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self, ctx: &CheckContext) -> Verdict {
        match self.inner.check(ctx).await {
            Verdict::Unhealthy { reason } => {
                let k = self
                    .failures
                    .fetch_add(1, Ordering::SeqCst)
                    .saturating_add(1);
                if k >= self.n {
                    Verdict::unhealthy(format!("{reason} ({k} consecutive failures)"))
                } else {
                    Verdict::inconclusive(format!(
                        "{reason} ({k} of {} consecutive failures)",
                        self.n
                    ))
                }
            }
            other => {
                self.failures.store(0, Ordering::SeqCst);
                other
            }
        }
    }
}

/// Evaluates the inner check only while the new version receives traffic. Built by
/// [`only_with_traffic`].
pub struct OnlyWithTraffic<C> {
    inner: C,
    name: String,
}

/// Wraps a traffic-based check (success rate, latency, a metric query) so that it is
/// evaluated only when the new version's weight is above 0%.
///
/// At 0% (a blue/green pre-check, before any user traffic) there is no traffic to
/// judge, and the wrapped check would be inconclusive at every evaluation. This wrapper
/// answers healthy there *without evaluating anything*, so always pair it with a check
/// that does evaluate the new version with no traffic, such as an
/// [`HttpCheck`](super::HttpCheck) probe of its own address.
pub fn only_with_traffic<C: HealthCheck>(check: C) -> OnlyWithTraffic<C> {
    OnlyWithTraffic {
        name: format!("{} (with traffic)", check.name()),
        inner: check,
    }
}

#[async_trait]
impl<C: HealthCheck> HealthCheck for OnlyWithTraffic<C> {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self, ctx: &CheckContext) -> Verdict {
        if ctx.weights.get(&ctx.candidate).unwrap_or(0) == 0 {
            return Verdict::Healthy;
        }
        self.inner.check(ctx).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::health::from_fn;
    use crate::traffic::Weights;

    fn ctx() -> CheckContext {
        CheckContext {
            stage: 0,
            stable: "a".into(),
            candidate: "b".into(),
            weights: Weights::split("a", "b", 10).unwrap(),
            stage_elapsed: std::time::Duration::ZERO,
        }
    }

    fn fixed(name: &'static str, v: Verdict) -> Arc<dyn HealthCheck> {
        Arc::new(from_fn(name, move |_| {
            let v = v.clone();
            async move { v }
        }))
    }

    #[tokio::test]
    async fn all_and_any_tables() {
        let h = || fixed("h", Verdict::Healthy);
        let u = || fixed("u", Verdict::unhealthy("bad"));
        let i = || fixed("i", Verdict::inconclusive("no data"));
        let c = ctx();
        assert_eq!(all([h(), h()]).check(&c).await, Verdict::Healthy);
        assert_eq!(
            all([h(), u(), i()]).check(&c).await,
            Verdict::unhealthy("u: bad")
        );
        assert_eq!(
            all([h(), i()]).check(&c).await,
            Verdict::inconclusive("i: no data")
        );
        assert!(matches!(
            all([]).check(&c).await,
            Verdict::Inconclusive { .. }
        ));
        assert_eq!(any([u(), h()]).check(&c).await, Verdict::Healthy);
        assert!(matches!(
            any([u(), i()]).check(&c).await,
            Verdict::Inconclusive { .. }
        ));
        assert_eq!(
            any([u(), u()]).check(&c).await,
            Verdict::unhealthy("u: bad; u: bad")
        );
        assert!(matches!(
            any([]).check(&c).await,
            Verdict::Inconclusive { .. }
        ));
        assert_eq!(all([h(), u()]).name(), "all(h, u)");
    }

    #[tokio::test]
    async fn only_with_traffic_skips_at_zero_percent() {
        let check = only_with_traffic(from_fn("no-data", |_| async {
            Verdict::inconclusive("no data")
        }));
        let mut c = ctx();
        assert!(
            matches!(check.check(&c).await, Verdict::Inconclusive { .. }),
            "10% on b: evaluated"
        );
        c.weights = Weights::split("a", "b", 0).unwrap();
        assert_eq!(check.check(&c).await, Verdict::Healthy);
    }

    #[tokio::test]
    async fn consecutive_needs_n_failures_in_a_row() {
        let script = Arc::new(Mutex::new(vec![
            Verdict::unhealthy("x"),
            Verdict::unhealthy("x"),
            Verdict::Healthy,
            Verdict::unhealthy("x"),
            Verdict::unhealthy("x"),
            Verdict::unhealthy("x"),
        ]));
        let inner = from_fn("s", move |_| {
            let v = script.lock().unwrap().remove(0);
            async move { v }
        });
        let check = consecutive(inner, 3);
        let c = ctx();
        let got: Vec<bool> = {
            let mut out = Vec::new();
            for _ in 0..6 {
                out.push(matches!(check.check(&c).await, Verdict::Unhealthy { .. }));
            }
            out
        };
        assert_eq!(got, [false, false, false, false, false, true]);
    }
}
