//! Metric checks: success rate and p99 latency over a recent window, from any
//! [`MetricsSource`] (the local mesh's statistics, or your own).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{CheckContext, HealthCheck, Verdict};
use crate::error::ConfigError;

/// What a metrics source saw for one target over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowStats {
    /// Requests in the window.
    pub requests: u64,
    /// Failed requests (5xx answers or no answer).
    pub failures: u64,
    /// 99th percentile latency; `None` without requests.
    pub p99: Option<Duration>,
}

impl WindowStats {
    /// The share of requests that did not fail, or `None` without requests.
    pub fn success_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| {
            (self.requests - self.failures.min(self.requests)) as f64 / self.requests as f64
        })
    }
}

/// Where metric checks read request statistics per target.
#[async_trait]
pub trait MetricsSource: Send + Sync {
    /// Statistics for `target` over the last `window`. An `Err` makes the check
    /// inconclusive.
    async fn window(&self, target: &str, window: Duration) -> Result<WindowStats, String>;
}

#[async_trait]
impl<T: MetricsSource + ?Sized> MetricsSource for Arc<T> {
    async fn window(&self, target: &str, window: Duration) -> Result<WindowStats, String> {
        (**self).window(target, window).await
    }
}

/// Settings shared by the metric checks.
#[derive(Clone)]
struct Common {
    source: Arc<dyn MetricsSource>,
    window: Duration,
    min_requests: u64,
}

impl Common {
    /// The window to look at: never older than the current stage's traffic.
    fn window(&self, ctx: &CheckContext) -> Duration {
        self.window
            .min(ctx.stage_elapsed)
            .max(Duration::from_secs(1))
    }

    async fn stats(&self, target: &str, ctx: &CheckContext) -> Result<WindowStats, Verdict> {
        let window = self.window(ctx);
        let stats = self
            .source
            .window(target, window)
            .await
            .map_err(|e| Verdict::inconclusive(format!("metrics unavailable: {e}")))?;
        if stats.requests < self.min_requests {
            return Err(Verdict::inconclusive(format!(
                "no data: {} requests to '{target}' in the last {window:?} (need {})",
                stats.requests, self.min_requests
            )));
        }
        Ok(stats)
    }

    fn validate(&self, what: &str) -> Result<(), ConfigError> {
        if self.window < Duration::from_secs(1) {
            return Err(ConfigError::Check(format!(
                "{what}: window must be at least 1 s"
            )));
        }
        if self.min_requests == 0 {
            return Err(ConfigError::Check(format!(
                "{what}: min_requests must be at least 1 (no data is not healthy)"
            )));
        }
        Ok(())
    }
}

/// Healthy when the new version's success rate over the window is at least `min`
/// (and, optionally, not more than `max_drop` below the stable version's).
pub struct SuccessRate {
    common: Common,
    min: f64,
    max_drop: Option<f64>,
    name: String,
}

impl SuccessRate {
    /// Requires at least `min` (0.0-1.0) of the new version's requests to succeed.
    /// Defaults: 30 s window, at least 10 requests (fewer is inconclusive).
    pub fn new(source: impl MetricsSource + 'static, min: f64) -> Self {
        let common = Common {
            source: Arc::new(source),
            window: Duration::from_secs(30),
            min_requests: 10,
        };
        Self {
            common,
            min,
            max_drop: None,
            name: format!("success-rate>={:.1}%", min * 100.0),
        }
    }

    /// The window to look back over (bounded by the current stage's age). Default: 30 s.
    pub fn window(mut self, window: Duration) -> Self {
        self.common.window = window;
        self
    }

    /// Fewer requests than this in the window is inconclusive. Default: 10.
    pub fn min_requests(mut self, n: u64) -> Self {
        self.common.min_requests = n;
        self
    }

    /// Also unhealthy when the new version's rate is more than `max_drop` (0.0-1.0)
    /// below the stable version's over the same window.
    pub fn relative_to_stable(mut self, max_drop: f64) -> Self {
        self.max_drop = Some(max_drop);
        self
    }

    /// Checks the settings.
    pub fn build(self) -> Result<Self, ConfigError> {
        if !(0.0..=1.0).contains(&self.min)
            || self.max_drop.is_some_and(|d| !(0.0..=1.0).contains(&d))
        {
            return Err(ConfigError::Check(format!(
                "{}: rates must be within 0.0-1.0",
                self.name
            )));
        }
        self.common.validate(&self.name)?;
        Ok(self)
    }
}

#[async_trait]
impl HealthCheck for SuccessRate {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self, ctx: &CheckContext) -> Verdict {
        let stats = match self.common.stats(&ctx.candidate, ctx).await {
            Ok(s) => s,
            Err(v) => return v,
        };
        let rate = stats.success_rate().unwrap_or(0.0);
        if rate < self.min {
            return Verdict::unhealthy(format!(
                "success rate {:.2}% < {:.2}% ({} of {} failed)",
                rate * 100.0,
                self.min * 100.0,
                stats.failures,
                stats.requests
            ));
        }
        if let Some(drop) = self.max_drop
            && let Ok(base) = self.common.stats(&ctx.stable, ctx).await
            && let Some(base_rate) = base.success_rate()
            && rate + drop < base_rate
        {
            return Verdict::unhealthy(format!(
                "success rate {:.2}% is more than {:.2} points below stable's {:.2}%",
                rate * 100.0,
                drop * 100.0,
                base_rate * 100.0
            ));
        }
        Verdict::Healthy
    }
}

/// Healthy when the new version's p99 latency over the window is at most `max` (and,
/// optionally, at most `factor` times the stable version's).
pub struct LatencyP99 {
    common: Common,
    max: Duration,
    factor: Option<f64>,
    name: String,
}

impl LatencyP99 {
    /// Requires the new version's p99 to be at most `max`. Defaults: 30 s window, at
    /// least 10 requests.
    pub fn new(source: impl MetricsSource + 'static, max: Duration) -> Self {
        let common = Common {
            source: Arc::new(source),
            window: Duration::from_secs(30),
            min_requests: 10,
        };
        Self {
            common,
            max,
            factor: None,
            name: format!("p99<={max:?}"),
        }
    }

    /// The window to look back over (bounded by the current stage's age). Default: 30 s.
    pub fn window(mut self, window: Duration) -> Self {
        self.common.window = window;
        self
    }

    /// Fewer requests than this in the window is inconclusive. Default: 10.
    pub fn min_requests(mut self, n: u64) -> Self {
        self.common.min_requests = n;
        self
    }

    /// Also unhealthy when the new version's p99 exceeds `factor` × the stable's.
    pub fn relative_to_stable(mut self, factor: f64) -> Self {
        self.factor = Some(factor);
        self
    }

    /// Checks the settings.
    pub fn build(self) -> Result<Self, ConfigError> {
        if self.max.is_zero() || self.factor.is_some_and(|f| f.is_nan() || f < 1.0) {
            return Err(ConfigError::Check(format!(
                "{}: max must be positive and factor at least 1.0",
                self.name
            )));
        }
        self.common.validate(&self.name)?;
        Ok(self)
    }
}

#[async_trait]
impl HealthCheck for LatencyP99 {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self, ctx: &CheckContext) -> Verdict {
        let stats = match self.common.stats(&ctx.candidate, ctx).await {
            Ok(s) => s,
            Err(v) => return v,
        };
        let Some(p99) = stats.p99 else {
            return Verdict::inconclusive("no latency data");
        };
        if p99 > self.max {
            return Verdict::unhealthy(format!(
                "p99 {p99:?} > {:?} over {} requests",
                self.max, stats.requests
            ));
        }
        if let Some(factor) = self.factor
            && let Ok(base) = self.common.stats(&ctx.stable, ctx).await
            && let Some(base_p99) = base.p99
            && p99.as_secs_f64() > base_p99.as_secs_f64() * factor
        {
            return Verdict::unhealthy(format!(
                "p99 {p99:?} is more than {factor}x stable's {base_p99:?}"
            ));
        }
        Verdict::Healthy
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::traffic::Weights;

    struct Fixed(HashMap<&'static str, WindowStats>);

    #[async_trait]
    impl MetricsSource for Fixed {
        async fn window(&self, target: &str, _w: Duration) -> Result<WindowStats, String> {
            self.0.get(target).copied().ok_or_else(|| "down".to_owned())
        }
    }

    fn ctx() -> CheckContext {
        CheckContext {
            stage: 0,
            stable: "blue".into(),
            candidate: "green".into(),
            weights: Weights::split("blue", "green", 10).unwrap(),
            stage_elapsed: Duration::from_secs(60),
        }
    }

    fn stats(requests: u64, failures: u64, p99_ms: u64) -> WindowStats {
        WindowStats {
            requests,
            failures,
            p99: Some(Duration::from_millis(p99_ms)),
        }
    }

    #[tokio::test]
    async fn success_rate_table() {
        let src =
            |g: WindowStats| Fixed(HashMap::from([("green", g), ("blue", stats(1000, 0, 5))]));
        let check = |g| SuccessRate::new(src(g), 0.99).build().unwrap();
        assert_eq!(
            check(stats(100, 1, 5)).check(&ctx()).await,
            Verdict::Healthy
        );
        assert!(matches!(
            check(stats(100, 2, 5)).check(&ctx()).await,
            Verdict::Unhealthy { .. }
        ));
        assert!(
            matches!(
                check(stats(5, 0, 5)).check(&ctx()).await,
                Verdict::Inconclusive { .. }
            ),
            "too few requests"
        );
        assert!(
            matches!(
                check(stats(0, 0, 0)).check(&ctx()).await,
                Verdict::Inconclusive { .. }
            ),
            "no data is not healthy"
        );
        let relative = SuccessRate::new(src(stats(100, 3, 5)), 0.9)
            .relative_to_stable(0.02)
            .build()
            .unwrap();
        assert!(matches!(
            relative.check(&ctx()).await,
            Verdict::Unhealthy { .. }
        ));
        let down = SuccessRate::new(Fixed(HashMap::new()), 0.9)
            .build()
            .unwrap();
        assert!(matches!(
            down.check(&ctx()).await,
            Verdict::Inconclusive { .. }
        ));
    }

    #[tokio::test]
    async fn latency_table() {
        let src =
            |g: WindowStats| Fixed(HashMap::from([("green", g), ("blue", stats(1000, 0, 10))]));
        let max = Duration::from_millis(50);
        assert_eq!(
            LatencyP99::new(src(stats(100, 0, 40)), max)
                .build()
                .unwrap()
                .check(&ctx())
                .await,
            Verdict::Healthy
        );
        assert!(matches!(
            LatencyP99::new(src(stats(100, 0, 60)), max)
                .build()
                .unwrap()
                .check(&ctx())
                .await,
            Verdict::Unhealthy { .. }
        ));
        let rel = LatencyP99::new(src(stats(100, 0, 40)), max)
            .relative_to_stable(2.0)
            .build()
            .unwrap();
        assert!(matches!(rel.check(&ctx()).await, Verdict::Unhealthy { .. }));
    }

    #[test]
    fn invalid_settings() {
        let src = || Fixed(HashMap::new());
        assert!(SuccessRate::new(src(), 1.5).build().is_err());
        assert!(
            SuccessRate::new(src(), 0.9)
                .min_requests(0)
                .build()
                .is_err()
        );
        assert!(
            SuccessRate::new(src(), 0.9)
                .window(Duration::from_millis(10))
                .build()
                .is_err()
        );
        assert!(LatencyP99::new(src(), Duration::ZERO).build().is_err());
        assert!(
            LatencyP99::new(src(), Duration::from_secs(1))
                .relative_to_stable(0.5)
                .build()
                .is_err()
        );
    }
}
