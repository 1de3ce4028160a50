//! [`LatticeTargetHealth`]: VPC Lattice's own health checks of the new version's
//! target group (`ListTargets`).

use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_vpclattice::Client;
use aws_sdk_vpclattice::types::{TargetStatus, TargetSummary};

use super::targets::{Standing, Target, verdict};
use super::{CheckContext, HealthCheck, Verdict};
use crate::aws::traffic_error;
use crate::error::ConfigError;

/// Healthy when at least `min_healthy` targets (default 1) of a Lattice target group
/// are `HEALTHY` and they are at least `min_healthy_percent` (default 100) of the
/// targets in service. `UNAVAILABLE` (the group has no health checks, as for HTTP/2 or
/// Lambda groups; Lattice still routes to it) counts as healthy. No target registered
/// is unhealthy; `DRAINING` targets are not counted; a group with only `UNUSED` targets
/// (no service uses it yet) is inconclusive, as is one still `INITIAL`.
///
/// ```no_run
/// # fn example(sdk: meshkit::sdk::SdkConfig) -> Result<(), meshkit::ConfigError> {
/// use meshkit::health::LatticeTargetHealth;
///
/// let check = LatticeTargetHealth::builder(meshkit::sdk::vpclattice::Client::new(&sdk), "web-v2")
///     .min_healthy(2)
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LatticeTargetHealth {
    client: Client,
    group: String,
    id: Mutex<Option<String>>,
    min_healthy: usize,
    min_percent: f64,
    name: String,
}

/// Builder for [`LatticeTargetHealth`].
#[derive(Debug)]
pub struct LatticeTargetHealthBuilder {
    inner: LatticeTargetHealth,
    name: Option<String>,
}

impl LatticeTargetHealth {
    /// A check of `target_group` (name, id `tg-…` or ARN; a name is resolved once).
    pub fn builder(client: Client, target_group: impl Into<String>) -> LatticeTargetHealthBuilder {
        LatticeTargetHealthBuilder {
            inner: Self {
                client,
                group: target_group.into(),
                id: Mutex::new(None),
                min_healthy: 1,
                min_percent: 100.0,
                name: String::new(),
            },
            name: None,
        }
    }

    async fn id(&self) -> Result<String, String> {
        if self.group.starts_with("tg-") || self.group.starts_with("arn:") {
            return Ok(self.group.clone());
        }
        if let Some(id) = self.id.lock().ok().and_then(|i| i.clone()) {
            return Ok(id);
        }
        let mut token = None;
        loop {
            let page = self
                .client
                .list_target_groups()
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| traffic_error("ListTargetGroups", e).to_string())?;
            if let Some(id) = page
                .items()
                .iter()
                .find(|g| g.name() == Some(self.group.as_str()))
                .and_then(|g| g.id())
            {
                if let Ok(mut slot) = self.id.lock() {
                    *slot = Some(id.to_owned());
                }
                return Ok(id.to_owned());
            }
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                return Err(format!("no VPC Lattice target group named {}", self.group));
            }
        }
    }

    /// The verdict on the targets listed: a plain function of the answer.
    fn judge(&self, targets: &[TargetSummary]) -> Verdict {
        let targets: Vec<Target> = targets
            .iter()
            .map(|t| {
                let standing = match t.status() {
                    s if serving(s) => Standing::Serving,
                    Some(TargetStatus::Initial) => Standing::Initial,
                    Some(TargetStatus::Draining | TargetStatus::Unused) => Standing::Out,
                    _ => Standing::Failing,
                };
                let status = t.status().map(|s| s.as_str()).unwrap_or_default();
                Target {
                    id: t.id().unwrap_or("?").to_owned(),
                    standing,
                    said: format!("{status} {}", t.reason_code().unwrap_or("")),
                }
            })
            .collect();
        verdict(
            &self.group,
            self.min_healthy,
            self.min_percent,
            &targets,
            "service",
        )
    }
}

/// A target Lattice sends traffic to and does not report failing: `HEALTHY`, or
/// `UNAVAILABLE` (health checks are off for its group).
pub(crate) fn serving(status: Option<&TargetStatus>) -> bool {
    matches!(
        status,
        Some(TargetStatus::Healthy | TargetStatus::Unavailable)
    )
}

impl LatticeTargetHealthBuilder {
    /// The fewest healthy targets. Default: 1.
    pub fn min_healthy(mut self, n: usize) -> Self {
        self.inner.min_healthy = n;
        self
    }

    /// The lowest healthy share of the targets in service, 0 to 100. Default: 100.
    pub fn min_healthy_percent(mut self, percent: f64) -> Self {
        self.inner.min_percent = percent;
        self
    }

    /// The name in events. Default: `lattice target health <group>`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<LatticeTargetHealth, ConfigError> {
        let mut c = self.inner;
        if c.group.trim().is_empty() {
            return Err(ConfigError::Check(
                "lattice target health: a target group name, id or ARN is required".into(),
            ));
        }
        if !(0.0..=100.0).contains(&c.min_percent) {
            return Err(ConfigError::Check(format!(
                "lattice target health: min_healthy_percent {} is outside 0-100",
                c.min_percent
            )));
        }
        c.name = self
            .name
            .unwrap_or_else(|| format!("lattice target health {}", c.group));
        Ok(c)
    }
}

#[async_trait]
impl HealthCheck for LatticeTargetHealth {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self, _ctx: &CheckContext) -> Verdict {
        let id = match self.id().await {
            Ok(id) => id,
            Err(e) => return Verdict::inconclusive(e),
        };
        let mut targets = Vec::new();
        let mut token = None;
        loop {
            let page = match self
                .client
                .list_targets()
                .target_group_identifier(&id)
                .set_next_token(token)
                .send()
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    return Verdict::inconclusive(
                        traffic_error(&format!("ListTargets {}", self.group), e).to_string(),
                    );
                }
            };
            targets.extend(page.items().iter().cloned());
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                return self.judge(&targets);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_from_target_states() {
        use TargetStatus as S;
        let conf = aws_sdk_vpclattice::Config::builder()
            .behavior_version(aws_sdk_vpclattice::config::BehaviorVersion::latest())
            .build();
        let check = |min: usize| {
            LatticeTargetHealth::builder(Client::from_conf(conf.clone()), "web-v2")
                .min_healthy(min)
                .build()
                .unwrap()
        };
        let t = |id: &str, s: S| TargetSummary::builder().id(id).status(s).build();
        let kind = |v: Verdict| match v {
            Verdict::Healthy => "healthy",
            Verdict::Unhealthy { .. } => "unhealthy",
            Verdict::Inconclusive { .. } => "inconclusive",
        };
        #[rustfmt::skip]
        let table: Vec<(usize, Vec<TargetSummary>, &str)> = vec![
            (1, vec![t("a", S::Healthy)], "healthy"),
            (2, vec![t("a", S::Healthy)], "unhealthy"),
            (1, vec![t("a", S::Healthy), t("b", S::Unhealthy)], "unhealthy"),
            (1, vec![t("a", S::Healthy), t("b", S::Draining)], "healthy"),
            (2, vec![t("a", S::Healthy), t("b", S::Initial)], "inconclusive"),
            (1, vec![t("a", S::Unused)], "inconclusive"),
            (1, vec![t("a", S::Unavailable)], "healthy"),
            (1, vec![], "unhealthy"),
        ];
        for (i, (min, targets, want)) in table.into_iter().enumerate() {
            assert_eq!(kind(check(min).judge(&targets)), want, "row {i}");
        }
        assert!(
            LatticeTargetHealth::builder(Client::from_conf(conf), " ")
                .build()
                .is_err()
        );
    }
}
