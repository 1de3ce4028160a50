//! [`CloudMapHealth`]: the share of a Cloud Map service's instances that are HEALTHY.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_servicediscovery::Client;
use aws_sdk_servicediscovery::types::HealthStatus;

use super::{CheckContext, HealthCheck, Verdict};
use crate::aws::traffic_error;
use crate::error::ConfigError;
use crate::traffic::TrafficError;

/// A check on Cloud Map instance health: among the instances of a service (optionally
/// only those whose attributes match, e.g. the new version's task definition family),
/// the share that Cloud Map reports HEALTHY must be at least a threshold, and at least a
/// minimum number must be healthy.
///
/// No matching instance is inconclusive, never healthy; so is an error reaching Cloud
/// Map. Uses `ListInstances` and `GetInstancesHealthStatus`, following pagination.
/// (`DiscoverInstances` is not used: it needs the `data-` endpoint, which private
/// networks and emulators often cannot reach.)
///
/// ```no_run
/// # fn example(sdk: meshkit::sdk::SdkConfig) -> Result<(), meshkit::ConfigError> {
/// use meshkit::health::CloudMapHealth;
///
/// let check = CloudMapHealth::builder(meshkit::sdk::servicediscovery::Client::new(&sdk), "srv-abc123")
///     .attribute("ECS_TASK_DEFINITION_FAMILY", "distributor-v2")
///     .min_healthy_share(1.0)
///     .min_instances(2)
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct CloudMapHealth {
    client: Client,
    service_id: String,
    attributes: Vec<(String, String)>,
    min_share: f64,
    min_instances: usize,
    name: String,
}

/// Builder for [`CloudMapHealth`].
#[derive(Debug, Clone)]
pub struct CloudMapHealthBuilder {
    inner: CloudMapHealth,
    name: Option<String>,
}

impl CloudMapHealth {
    /// A check on the Cloud Map service `service_id` (`srv-…`). Defaults: every
    /// instance, all must be healthy, at least one.
    pub fn builder(client: Client, service_id: impl Into<String>) -> CloudMapHealthBuilder {
        CloudMapHealthBuilder {
            inner: CloudMapHealth {
                client,
                service_id: service_id.into(),
                attributes: Vec::new(),
                min_share: 1.0,
                min_instances: 1,
                name: String::new(),
            },
            name: None,
        }
    }

    async fn matching_instances(&self) -> Result<Vec<String>, TrafficError> {
        let mut ids = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_instances()
                .service_id(&self.service_id)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| traffic_error(&format!("ListInstances {}", self.service_id), e))?;
            for instance in page.instances.unwrap_or_default() {
                let attrs = instance.attributes.unwrap_or_default();
                let wanted = self
                    .attributes
                    .iter()
                    .all(|(k, v)| attrs.get(k).is_some_and(|a| a == v));
                if wanted && let Some(id) = instance.id {
                    ids.push(id);
                }
            }
            token = page.next_token;
            if token.is_none() {
                return Ok(ids);
            }
        }
    }

    async fn statuses(&self) -> Result<HashMap<String, HealthStatus>, TrafficError> {
        let mut all = HashMap::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .get_instances_health_status()
                .service_id(&self.service_id)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| {
                    traffic_error(&format!("GetInstancesHealthStatus {}", self.service_id), e)
                })?;
            all.extend(page.status.unwrap_or_default());
            token = page.next_token;
            if token.is_none() {
                return Ok(all);
            }
        }
    }

    fn judge(&self, ids: &[String], statuses: &HashMap<String, HealthStatus>) -> Verdict {
        if ids.is_empty() {
            return Verdict::inconclusive(format!(
                "no instances{} in Cloud Map service {}",
                self.filter_words(),
                self.service_id
            ));
        }
        let healthy = ids
            .iter()
            .filter(|id| statuses.get(*id) == Some(&HealthStatus::Healthy))
            .count();
        let share = healthy as f64 / ids.len() as f64;
        if healthy < self.min_instances {
            return Verdict::unhealthy(format!(
                "{healthy} of {} instances healthy, need at least {}",
                ids.len(),
                self.min_instances
            ));
        }
        if share + 1e-9 < self.min_share {
            return Verdict::unhealthy(format!(
                "{healthy} of {} instances healthy ({:.0}%), need {:.0}%",
                ids.len(),
                share * 100.0,
                self.min_share * 100.0
            ));
        }
        Verdict::Healthy
    }

    fn filter_words(&self) -> String {
        if self.attributes.is_empty() {
            return String::new();
        }
        let pairs: Vec<String> = self
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(" with {}", pairs.join(", "))
    }
}

impl CloudMapHealthBuilder {
    /// Only count instances whose attribute `key` equals `value`. Repeat to require
    /// several.
    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.inner.attributes.push((key.into(), value.into()));
        self
    }

    /// The least share of matching instances that must be healthy, from 0 to 1.
    /// Default: 1 (all).
    pub fn min_healthy_share(mut self, share: f64) -> Self {
        self.inner.min_share = share;
        self
    }

    /// The least number of healthy instances. Default: 1.
    pub fn min_instances(mut self, count: usize) -> Self {
        self.inner.min_instances = count;
        self
    }

    /// The name in events. Default: `cloudmap <service id>`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<CloudMapHealth, ConfigError> {
        let mut check = self.inner;
        let bad = |m: &str| ConfigError::Check(format!("cloud map check: {m}"));
        if check.service_id.trim().is_empty() {
            return Err(bad("empty service id"));
        }
        if !(0.0..=1.0).contains(&check.min_share) {
            return Err(bad("min_healthy_share must be between 0 and 1"));
        }
        check.name = self
            .name
            .unwrap_or_else(|| format!("cloudmap {}", check.service_id));
        Ok(check)
    }
}

#[async_trait]
impl HealthCheck for CloudMapHealth {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self, _ctx: &CheckContext) -> Verdict {
        let ids = match self.matching_instances().await {
            Ok(ids) => ids,
            Err(e) => return Verdict::inconclusive(e.to_string()),
        };
        if ids.is_empty() {
            return self.judge(&ids, &HashMap::new());
        }
        match self.statuses().await {
            Ok(statuses) => self.judge(&ids, &statuses),
            Err(e) => Verdict::inconclusive(e.to_string()),
        }
    }
}
