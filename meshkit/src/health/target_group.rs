//! [`TargetGroupHealth`]: the load balancer's own health checks of the new version's
//! target group (`DescribeTargetHealth`).

use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::types::{TargetHealthDescription, TargetHealthStateEnum};

use super::targets::{Standing, Target, verdict};
use super::{CheckContext, HealthCheck, Verdict};
use crate::aws::traffic_error;
use crate::error::ConfigError;

/// Healthy when at least `min_healthy` targets (default 1) of a target group are
/// `healthy` and they are at least `min_healthy_percent` (default 100) of the targets
/// in service.
///
/// - No target registered is unhealthy: requests routed to the group fail.
/// - Targets `draining` are not in service and are not counted; nor are targets the
///   load balancer does not check because no listener or rule uses the group yet
///   (`unused`, `Target.NotInUse`): a group with only those is inconclusive (put it
///   on the route at weight 0 first, or wrap the check in
///   [`crate::health::only_with_traffic`] for checks before the first shift).
/// - Too few healthy targets while some are still `initial` (registering) is
///   inconclusive; otherwise unhealthy, with each failing target's reason.
///
/// ```no_run
/// # fn example(sdk: meshkit::sdk::SdkConfig) -> Result<(), meshkit::ConfigError> {
/// use meshkit::health::TargetGroupHealth;
///
/// let check = TargetGroupHealth::builder(meshkit::sdk::elbv2::Client::new(&sdk), "web-v2")
///     .min_healthy(2)
///     .min_healthy_percent(90.0)
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TargetGroupHealth {
    client: Client,
    group: String,
    arn: Mutex<Option<String>>,
    min_healthy: usize,
    min_percent: f64,
    name: String,
}

/// Builder for [`TargetGroupHealth`].
#[derive(Debug)]
pub struct TargetGroupHealthBuilder {
    inner: TargetGroupHealth,
    name: Option<String>,
}

impl TargetGroupHealth {
    /// A check of `target_group` (its name or ARN; a name is resolved once).
    pub fn builder(client: Client, target_group: impl Into<String>) -> TargetGroupHealthBuilder {
        TargetGroupHealthBuilder {
            inner: TargetGroupHealth {
                client,
                group: target_group.into(),
                arn: Mutex::new(None),
                min_healthy: 1,
                min_percent: 100.0,
                name: String::new(),
            },
            name: None,
        }
    }

    async fn arn(&self) -> Result<String, String> {
        if self.group.starts_with("arn:") {
            return Ok(self.group.clone());
        }
        if let Some(arn) = self.arn.lock().ok().and_then(|a| a.clone()) {
            return Ok(arn);
        }
        let out = self
            .client
            .describe_target_groups()
            .names(&self.group)
            .send()
            .await
            .map_err(|e| {
                traffic_error(&format!("DescribeTargetGroups {}", self.group), e).to_string()
            })?;
        let arn = out
            .target_groups()
            .iter()
            .find_map(|g| g.target_group_arn())
            .ok_or_else(|| format!("no target group named {}", self.group))?
            .to_owned();
        if let Ok(mut slot) = self.arn.lock() {
            *slot = Some(arn.clone());
        }
        Ok(arn)
    }

    /// The verdict on the targets described: a plain function of the answer.
    fn judge(&self, targets: &[TargetHealthDescription]) -> Verdict {
        let targets: Vec<Target> = targets
            .iter()
            .map(|d| {
                let state = d.target_health().and_then(|h| h.state());
                let reason = d
                    .target_health()
                    .and_then(|h| h.reason())
                    .map(|r| r.as_str())
                    .unwrap_or_default();
                let standing = match state {
                    Some(TargetHealthStateEnum::Healthy) => Standing::Serving,
                    Some(TargetHealthStateEnum::Initial) => Standing::Initial,
                    Some(TargetHealthStateEnum::Draining) => Standing::Out,
                    Some(TargetHealthStateEnum::Unused) if reason == "Target.NotInUse" => {
                        Standing::Out
                    }
                    _ => Standing::Failing,
                };
                Target {
                    id: d.target().and_then(|t| t.id()).unwrap_or("?").to_owned(),
                    standing,
                    said: format!("{} {reason}", state.map(|s| s.as_str()).unwrap_or_default()),
                }
            })
            .collect();
        verdict(
            &self.group,
            self.min_healthy,
            self.min_percent,
            &targets,
            "listener",
        )
    }
}

impl TargetGroupHealthBuilder {
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

    /// The name in events. Default: `target health <group>`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<TargetGroupHealth, ConfigError> {
        let mut c = self.inner;
        if c.group.trim().is_empty() {
            return Err(ConfigError::Check(
                "target health: a target group name or ARN is required".into(),
            ));
        }
        if !(0.0..=100.0).contains(&c.min_percent) {
            return Err(ConfigError::Check(format!(
                "target health: min_healthy_percent {} is outside 0-100",
                c.min_percent
            )));
        }
        c.name = self
            .name
            .unwrap_or_else(|| format!("target health {}", c.group));
        Ok(c)
    }
}

#[async_trait]
impl HealthCheck for TargetGroupHealth {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self, _ctx: &CheckContext) -> Verdict {
        let arn = match self.arn().await {
            Ok(arn) => arn,
            Err(e) => return Verdict::inconclusive(e),
        };
        match self
            .client
            .describe_target_health()
            .target_group_arn(&arn)
            .send()
            .await
        {
            Ok(out) => self.judge(out.target_health_descriptions()),
            Err(e) => Verdict::inconclusive(
                traffic_error(&format!("DescribeTargetHealth {}", self.group), e).to_string(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_elasticloadbalancingv2::types::{
        TargetDescription, TargetHealth, TargetHealthReasonEnum,
    };

    use super::*;

    fn target(
        id: &str,
        state: TargetHealthStateEnum,
        reason: Option<TargetHealthReasonEnum>,
    ) -> TargetHealthDescription {
        TargetHealthDescription::builder()
            .target(TargetDescription::builder().id(id).build())
            .target_health(
                TargetHealth::builder()
                    .state(state)
                    .set_reason(reason)
                    .build(),
            )
            .build()
    }

    #[test]
    fn verdicts_from_target_states() {
        use TargetHealthStateEnum as S;
        let conf = aws_sdk_elasticloadbalancingv2::Config::builder()
            .behavior_version(aws_sdk_elasticloadbalancingv2::config::BehaviorVersion::latest())
            .build();
        let check = |min: usize, pct: f64| {
            TargetGroupHealth::builder(Client::from_conf(conf.clone()), "web-v2")
                .min_healthy(min)
                .min_healthy_percent(pct)
                .build()
                .unwrap()
        };
        let h = |id| target(id, S::Healthy, None);
        let not_in_use = |id| target(id, S::Unused, Some(TargetHealthReasonEnum::NotInUse));
        let failing = |id| {
            target(
                id,
                S::Unhealthy,
                Some(TargetHealthReasonEnum::FailedHealthChecks),
            )
        };
        #[rustfmt::skip]
        let table: Vec<(usize, f64, Vec<TargetHealthDescription>, &str)> = vec![
            (1, 100.0, vec![h("a"), h("b")], "healthy"),
            (3, 100.0, vec![h("a"), h("b")], "unhealthy"),
            (1, 100.0, vec![h("a"), failing("b")], "unhealthy"),
            (1, 50.0, vec![h("a"), failing("b")], "healthy"),
            (1, 100.0, vec![h("a"), target("b", S::Draining, None)], "healthy"),
            (2, 100.0, vec![h("a"), target("b", S::Initial, None)], "inconclusive"),
            (1, 100.0, vec![not_in_use("a"), not_in_use("b")], "inconclusive"),
            (1, 100.0, vec![], "unhealthy"),
        ];
        for (i, (min, pct, targets, want)) in table.into_iter().enumerate() {
            let got = check(min, pct).judge(&targets);
            let kind = match &got {
                Verdict::Healthy => "healthy",
                Verdict::Unhealthy { .. } => "unhealthy",
                Verdict::Inconclusive { .. } => "inconclusive",
            };
            assert_eq!(kind, want, "row {i}: {got:?}");
        }
        let got = check(1, 100.0).judge(&[h("a"), failing("10.0.0.9")]);
        assert!(
            got.to_string().contains("1 of 2 targets healthy in web-v2")
                && got
                    .to_string()
                    .contains("10.0.0.9 unhealthy Target.FailedHealthChecks"),
            "{got}"
        );
    }

    #[test]
    fn settings_are_checked() {
        let conf = aws_sdk_elasticloadbalancingv2::Config::builder()
            .behavior_version(aws_sdk_elasticloadbalancingv2::config::BehaviorVersion::latest())
            .build();
        let c = || TargetGroupHealth::builder(Client::from_conf(conf.clone()), "g");
        assert!(c().min_healthy_percent(101.0).build().is_err());
        assert!(c().min_healthy_percent(f64::NAN).build().is_err());
        assert!(
            TargetGroupHealth::builder(Client::from_conf(conf.clone()), " ")
                .build()
                .is_err()
        );
        assert_eq!(c().build().unwrap().name(), "target health g");
    }
}
