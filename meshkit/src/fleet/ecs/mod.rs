//! The ECS backend: [`EcsFleet`] runs each version of a service as its own ECS service.
//!
//! Bringing up the new version registers a task definition revision (the base's, with
//! the new image and environment), then creates the version's service (or updates it
//! when it exists) with its desired count and optional Cloud Map registry. Waiting
//! polls `DescribeServices` until the deployment is complete with every task running
//! and none failed, and names the stuck state on timeout. Retiring scales the loser to
//! zero, and deletes it when asked.
//!
//! Behind a load balancer ([`EcsVersion::target_group`]), the new version's service is
//! created with the stable service's load-balancer wiring pointed at its own target
//! group, and with [`EcsFleet::target_health`] readiness also waits until that group
//! has as many healthy targets as the service has tasks.
//!
//! Retirement of the stable version happens at the end of the plan, so give the rollout
//! a [`crate::RolloutBuilder::rollback_window`] to keep it running (and the rollout
//! watching) for a while after promotion.

mod ready;
mod taskdef;
mod version;

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{LoadBalancer, Service, ServiceRegistry, VpcLatticeConfiguration};
use tokio::time::Instant;

pub use version::EcsVersion;

use self::ready::{Readiness, readiness};
use crate::aws::{Kind, classify, describe, fleet_error};
use crate::fleet::Fleet;
use crate::fleet::FleetError;

/// A [`Fleet`] on one ECS cluster. Versions are the route's target names, each mapped
/// to an [`EcsVersion`].
///
/// ```no_run
/// # fn example(sdk: meshkit::sdk::SdkConfig) {
/// use meshkit::fleet::ecs::{EcsFleet, EcsVersion};
///
/// let fleet = EcsFleet::new(meshkit::sdk::ecs::Client::new(&sdk), "gopher")
///     .version("distributorV1", EcsVersion::existing("distributor-v1"))
///     .version(
///         "distributorV2",
///         EcsVersion::new("distributor-v2", "distributor")
///             .image("app", "123456789012.dkr.ecr.us-east-1.amazonaws.com/distributor:v2")
///             .env("app", "VERSION", "v2")
///             .desired_count(2)
///             .like_service("distributor-v1"),
///     );
/// # }
/// ```
pub struct EcsFleet {
    client: Client,
    cluster: String,
    versions: HashMap<String, EcsVersion>,
    poll_interval: Duration,
    delete_on_retire: bool,
    #[cfg(feature = "elbv2")]
    elb: Option<aws_sdk_elasticloadbalancingv2::Client>,
    #[cfg(feature = "vpclattice")]
    lattice: Option<aws_sdk_vpclattice::Client>,
}

impl fmt::Debug for EcsFleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcsFleet")
            .field("cluster", &self.cluster)
            .field("versions", &self.versions)
            .field("poll_interval", &self.poll_interval)
            .field("delete_on_retire", &self.delete_on_retire)
            .finish_non_exhaustive()
    }
}

impl EcsFleet {
    /// A fleet on `cluster` (name or ARN) with no versions yet.
    pub fn new(client: Client, cluster: impl Into<String>) -> Self {
        Self {
            client,
            cluster: cluster.into(),
            versions: HashMap::new(),
            poll_interval: Duration::from_secs(5),
            delete_on_retire: false,
            #[cfg(feature = "elbv2")]
            elb: None,
            #[cfg(feature = "vpclattice")]
            lattice: None,
        }
    }

    /// Readiness of a version registered as VPC Lattice targets
    /// ([`EcsVersion::lattice_target_group`]) also waits until its target group has
    /// at least as many `HEALTHY` targets as the service runs tasks (`ListTargets`).
    #[cfg(feature = "vpclattice")]
    pub fn lattice_health(mut self, client: aws_sdk_vpclattice::Client) -> Self {
        self.lattice = Some(client);
        self
    }

    /// Readiness of a version behind a load balancer also waits until its target
    /// group has at least as many `healthy` targets as the service runs tasks, read
    /// with `client` (`DescribeTargetHealth`).
    #[cfg(feature = "elbv2")]
    pub fn target_health(mut self, client: aws_sdk_elasticloadbalancingv2::Client) -> Self {
        self.elb = Some(client);
        self
    }

    /// Maps the route target `name` to an ECS service.
    pub fn version(mut self, name: impl Into<String>, version: EcsVersion) -> Self {
        self.versions.insert(name.into(), version);
        self
    }

    /// How often to poll while waiting for readiness. Default: 5 s.
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every.max(Duration::from_millis(10));
        self
    }

    /// Delete the retired version's service after scaling it to zero. Default: keep it
    /// (at zero tasks) so it can be scaled up again by hand.
    pub fn delete_on_retire(mut self, delete: bool) -> Self {
        self.delete_on_retire = delete;
        self
    }

    fn get(&self, version: &str) -> Result<&EcsVersion, FleetError> {
        self.versions
            .get(version)
            .ok_or_else(|| FleetError::Backend {
                message: format!("no ECS service is configured for version '{version}'"),
                source: None,
            })
    }

    /// The service, if it exists and has not been deleted.
    async fn service(&self, name: &str) -> Result<Option<Service>, FleetError> {
        let out = self
            .client
            .describe_services()
            .cluster(&self.cluster)
            .services(name)
            .send()
            .await
            .map_err(|e| fleet_error(&format!("DescribeServices {name}"), e))?;
        Ok(out
            .services
            .unwrap_or_default()
            .into_iter()
            .find(|s| s.status.as_deref() != Some("INACTIVE")))
    }

    async fn update(
        &self,
        service: &str,
        task: Option<String>,
        count: Option<i32>,
    ) -> Result<(), FleetError> {
        self.client
            .update_service()
            .cluster(&self.cluster)
            .service(service)
            .set_task_definition(task)
            .set_desired_count(count)
            .send()
            .await
            .map_err(|e| fleet_error(&format!("UpdateService {service}"), e))?;
        Ok(())
    }

    async fn create(&self, v: &EcsVersion, task: String) -> Result<(), FleetError> {
        let template = match &v.like_service {
            Some(name) => Some(
                self.service(name)
                    .await?
                    .ok_or_else(|| FleetError::Backend {
                        message: format!(
                            "template service {name} not found in cluster {}",
                            self.cluster
                        ),
                        source: None,
                    })?,
            ),
            None => None,
        };
        let registries = v
            .registries
            .iter()
            .map(|arn| ServiceRegistry::builder().registry_arn(arn).build())
            .collect::<Vec<_>>();
        let t = template.as_ref();
        let load_balancers = match &v.load_balancer {
            None => None,
            Some(wiring) => {
                let (container, port) = match &wiring.container {
                    Some(c) => c.clone(),
                    None => t
                        .and_then(|s| s.load_balancers.as_deref())
                        .and_then(|lbs| lbs.first())
                        .and_then(|lb| Some((lb.container_name.clone()?, lb.container_port?)))
                        .ok_or_else(|| FleetError::Backend {
                            message: format!(
                                "{}: no container and port for target group {}: the like_service template has no load balancer; use EcsVersion::load_balancer",
                                v.service, wiring.target_group_arn
                            ),
                            source: None,
                        })?,
                };
                Some(vec![
                    LoadBalancer::builder()
                        .target_group_arn(&wiring.target_group_arn)
                        .container_name(container)
                        .container_port(port)
                        .build(),
                ])
            }
        };
        let grace = load_balancers
            .as_ref()
            .and(t.and_then(|s| s.health_check_grace_period_seconds));
        let lattice = match &v.lattice {
            None => None,
            Some(wiring) => {
                let (role, port) = match &wiring.role_and_port {
                    Some(rp) => rp.clone(),
                    None => t
                        .and_then(|s| s.deployments.as_deref())
                        .and_then(|ds| {
                            ds.iter()
                                .find(|d| d.status.as_deref() == Some("PRIMARY"))
                                .or(ds.first())
                        })
                        .and_then(|d| d.vpc_lattice_configurations.as_deref())
                        .and_then(|c| c.first())
                        .map(|c| (c.role_arn.clone(), c.port_name.clone()))
                        .ok_or_else(|| FleetError::Backend {
                            message: format!(
                                "{}: no role and port name for VPC Lattice target group {}: the like_service template has no VPC Lattice configuration; use EcsVersion::lattice",
                                v.service, wiring.target_group_arn
                            ),
                            source: None,
                        })?,
                };
                let config = VpcLatticeConfiguration::builder()
                    .target_group_arn(&wiring.target_group_arn)
                    .role_arn(role)
                    .port_name(port)
                    .build()
                    .map_err(|e| FleetError::Backend {
                        message: format!("{}: VPC Lattice configuration: {e}", v.service),
                        source: Some(Box::new(e)),
                    })?;
                Some(vec![config])
            }
        };
        self.client
            .create_service()
            .cluster(&self.cluster)
            .service_name(&v.service)
            .task_definition(task)
            .desired_count(v.desired_count.unwrap_or(1))
            .set_service_registries((!registries.is_empty()).then_some(registries))
            .set_load_balancers(load_balancers)
            .set_vpc_lattice_configurations(lattice)
            .set_health_check_grace_period_seconds(grace)
            .set_launch_type(t.and_then(|s| s.launch_type.clone()))
            .set_capacity_provider_strategy(t.and_then(|s| s.capacity_provider_strategy.clone()))
            .set_platform_version(t.and_then(|s| s.platform_version.clone()))
            .set_network_configuration(
                // An empty configuration carries nothing; some endpoints reject it.
                t.and_then(|s| s.network_configuration.clone())
                    .filter(|n| n.awsvpc_configuration.is_some()),
            )
            .set_placement_constraints(t.and_then(|s| s.placement_constraints.clone()))
            .set_placement_strategy(t.and_then(|s| s.placement_strategy.clone()))
            .set_deployment_configuration(t.and_then(|s| s.deployment_configuration.clone()))
            .send()
            .await
            .map_err(|e| fleet_error(&format!("CreateService {}", v.service), e))?;
        Ok(())
    }
}

#[async_trait]
impl Fleet for EcsFleet {
    async fn bring_up(&self, version: &str) -> Result<(), FleetError> {
        let v = self.get(version)?;
        let existing = self.service(&v.service).await?;
        let Some(base_name) = &v.base_task_definition else {
            let Some(service) = existing else {
                return Err(FleetError::Backend {
                    message: format!(
                        "service {} not found in cluster {}",
                        v.service, self.cluster
                    ),
                    source: None,
                });
            };
            if let Some(n) = v.desired_count.filter(|n| *n != service.desired_count) {
                self.update(&v.service, None, Some(n)).await?;
            }
            return Ok(());
        };
        let base = taskdef::describe(&self.client, base_name).await?;
        let wanted = taskdef::changed_containers(&base, &v.containers)?;
        let running = match existing.as_ref().and_then(|s| s.task_definition.as_deref()) {
            Some(arn) => Some(taskdef::describe(&self.client, arn).await?),
            None => None,
        };
        let current = running
            .filter(|td| taskdef::runs(td, base.family.as_deref(), &wanted))
            .and_then(|td| td.task_definition_arn);
        match (existing, current) {
            (Some(service), Some(_)) => {
                let count = v.desired_count.unwrap_or(service.desired_count.max(1));
                if count != service.desired_count {
                    self.update(&v.service, None, Some(count)).await?;
                }
            }
            (Some(service), None) => {
                let arn = taskdef::register(&self.client, &base, wanted).await?;
                let count = v.desired_count.unwrap_or(service.desired_count.max(1));
                self.update(&v.service, Some(arn), Some(count)).await?;
            }
            (None, _) => {
                let arn = taskdef::register(&self.client, &base, wanted).await?;
                self.create(v, arn).await?;
            }
        }
        tracing::info!(version, service = %v.service, "ECS service brought up");
        Ok(())
    }

    async fn wait_ready(&self, version: &str, timeout: Duration) -> Result<(), FleetError> {
        let v = self.get(version)?;
        let started = Instant::now();
        let deadline = started + timeout;
        loop {
            let state = match self.describe_for_wait(&v.service).await {
                Ok(Some(service)) => match readiness(&service) {
                    Readiness::Ready => match self.targets_ready(v, &service).await {
                        Ok(None) => return Ok(()),
                        Ok(Some(waiting)) => waiting,
                        Err(e) => return Err(e),
                    },
                    Readiness::Failed(why) => {
                        return Err(FleetError::Backend {
                            message: why,
                            source: None,
                        });
                    }
                    Readiness::Waiting(s) => s,
                },
                Ok(None) => format!("service {} does not exist", v.service),
                Err(PollError::Transient(s)) => s,
                Err(PollError::Fatal(e)) => return Err(e),
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(FleetError::NotReady {
                    version: version.to_string(),
                    waited: now - started,
                    state,
                });
            }
            tracing::debug!(version, %state, "waiting for ECS service");
            tokio::time::sleep(self.poll_interval.min(deadline - now)).await;
        }
    }

    async fn retire(&self, version: &str) -> Result<(), FleetError> {
        let v = self.get(version)?;
        let Some(service) = self.service(&v.service).await? else {
            return Ok(());
        };
        if service.desired_count != 0 {
            self.update(&v.service, None, Some(0)).await?;
        }
        if self.delete_on_retire {
            self.client
                .delete_service()
                .cluster(&self.cluster)
                .service(&v.service)
                .send()
                .await
                .map_err(|e| fleet_error(&format!("DeleteService {}", v.service), e))?;
        }
        tracing::info!(version, service = %v.service, "ECS service retired");
        Ok(())
    }
}

impl EcsFleet {
    /// With target health on: `None` when the version's target group (its own, or the
    /// existing service's first) has at least as many healthy targets as the service
    /// runs tasks; otherwise what is missing, in words.
    async fn targets_ready(
        &self,
        v: &EcsVersion,
        service: &Service,
    ) -> Result<Option<String>, FleetError> {
        #[cfg(feature = "elbv2")]
        if let Some(elb) = &self.elb {
            let group = v.target_group_arn().map(str::to_owned).or_else(|| {
                service
                    .load_balancers
                    .as_deref()
                    .and_then(|l| l.first())
                    .and_then(|l| l.target_group_arn.clone())
            });
            let Some(group) = group else { return Ok(None) };
            let out = match elb
                .describe_target_health()
                .target_group_arn(&group)
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) if matches!(classify(&e), Kind::Throttled | Kind::Transport) => {
                    return Ok(Some(format!(
                        "DescribeTargetHealth failing: {}",
                        describe(&e)
                    )));
                }
                Err(e) => return Err(fleet_error(&format!("DescribeTargetHealth {group}"), e)),
            };
            let targets = out.target_health_descriptions();
            let healthy = targets
                .iter()
                .filter(|d| {
                    d.target_health()
                        .and_then(|h| h.state())
                        .map(|s| s.as_str())
                        == Some("healthy")
                })
                .count();
            let needed = usize::try_from(service.running_count.max(1)).unwrap_or(1);
            if healthy < needed {
                let name = group.rsplit('/').nth(1).unwrap_or(&group);
                let not_in_use = targets.iter().any(|d| {
                    d.target_health()
                        .and_then(|h| h.reason())
                        .is_some_and(|r| r.as_str() == "Target.NotInUse")
                });
                let why = if not_in_use {
                    "; the group is not used by any listener or rule yet, so the load balancer does not check its targets: put it on the route at weight 0 (a rollout does so before provisioning)"
                } else {
                    ""
                };
                return Ok(Some(format!(
                    "target group {name}: {healthy} of {needed} targets healthy ({} registered){why}",
                    targets.len()
                )));
            }
        }
        #[cfg(feature = "vpclattice")]
        if let (Some(lattice), Some(wiring)) = (&self.lattice, &v.lattice) {
            let group = &wiring.target_group_arn;
            let mut targets = Vec::new();
            let mut token = None;
            loop {
                let page = match lattice
                    .list_targets()
                    .target_group_identifier(group)
                    .set_next_token(token)
                    .send()
                    .await
                {
                    Ok(p) => p,
                    Err(e) if matches!(classify(&e), Kind::Throttled | Kind::Transport) => {
                        return Ok(Some(format!("ListTargets failing: {}", describe(&e))));
                    }
                    Err(e) => return Err(fleet_error(&format!("ListTargets {group}"), e)),
                };
                targets.extend(page.items().iter().cloned());
                token = page.next_token().map(str::to_owned);
                if token.is_none() {
                    break;
                }
            }
            let healthy = targets
                .iter()
                .filter(|t| {
                    matches!(
                        t.status(),
                        Some(
                            aws_sdk_vpclattice::types::TargetStatus::Healthy
                                | aws_sdk_vpclattice::types::TargetStatus::Unavailable
                        )
                    )
                })
                .count();
            let needed = usize::try_from(service.running_count.max(1)).unwrap_or(1);
            if healthy < needed {
                let name = group.rsplit('/').next().unwrap_or(group);
                return Ok(Some(format!(
                    "VPC Lattice target group {name}: {healthy} of {needed} targets healthy ({} registered)",
                    targets.len()
                )));
            }
        }
        let _ = (v, service);
        Ok(None)
    }
}

/// A failure while polling: transient ones are kept as the state to report.
enum PollError {
    Transient(String),
    Fatal(FleetError),
}

impl EcsFleet {
    /// Like `service`, but throttling and transport errors are transient while polling.
    async fn describe_for_wait(&self, name: &str) -> Result<Option<Service>, PollError> {
        let out = self
            .client
            .describe_services()
            .cluster(&self.cluster)
            .services(name)
            .send()
            .await;
        match out {
            Ok(out) => Ok(out
                .services
                .unwrap_or_default()
                .into_iter()
                .find(|s| s.status.as_deref() != Some("INACTIVE"))),
            Err(e) if matches!(classify(&e), Kind::Throttled | Kind::Transport) => Err(
                PollError::Transient(format!("DescribeServices {name} failing: {}", describe(&e))),
            ),
            Err(e) => Err(PollError::Fatal(fleet_error(
                &format!("DescribeServices {name}"),
                e,
            ))),
        }
    }
}
