//! Registering a task definition revision from a base with changed containers.

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{ContainerDefinition, KeyValuePair, TaskDefinition};

use super::version::ContainerChange;
use crate::aws::fleet_error;
use crate::fleet::FleetError;

pub(crate) async fn describe(client: &Client, name: &str) -> Result<TaskDefinition, FleetError> {
    client
        .describe_task_definition()
        .task_definition(name)
        .send()
        .await
        .map_err(|e| fleet_error(&format!("DescribeTaskDefinition {name}"), e))?
        .task_definition
        .ok_or_else(|| FleetError::Backend {
            message: format!("DescribeTaskDefinition {name}: no task definition in the answer"),
            source: None,
        })
}

/// The base's containers with `changes` applied. Every changed container must exist.
pub(crate) fn changed_containers(
    base: &TaskDefinition,
    changes: &[(String, ContainerChange)],
) -> Result<Vec<ContainerDefinition>, FleetError> {
    let mut containers = base.container_definitions.clone().unwrap_or_default();
    for (name, change) in changes {
        let Some(c) = containers
            .iter_mut()
            .find(|c| c.name.as_deref() == Some(name.as_str()))
        else {
            return Err(FleetError::Backend {
                message: format!(
                    "task definition {} has no container named {name}",
                    base.family.as_deref().unwrap_or("?")
                ),
                source: None,
            });
        };
        if let Some(image) = &change.image {
            c.image = Some(image.clone());
        }
        let env = c.environment.get_or_insert_with(Vec::new);
        for (key, value) in &change.env {
            env.retain(|kv| kv.name.as_deref() != Some(key.as_str()));
            env.push(KeyValuePair::builder().name(key).value(value).build());
        }
    }
    Ok(containers)
}

/// True when `current` already runs what `wanted` describes: same family, and every
/// container's image and environment (in any order) equal.
pub(crate) fn runs(
    current: &TaskDefinition,
    family: Option<&str>,
    wanted: &[ContainerDefinition],
) -> bool {
    if current.family.as_deref() != family {
        return false;
    }
    let have = current.container_definitions.as_deref().unwrap_or_default();
    have.len() == wanted.len()
        && wanted.iter().all(|w| {
            have.iter()
                .any(|h| h.name == w.name && h.image == w.image && sorted_env(h) == sorted_env(w))
        })
}

fn sorted_env(c: &ContainerDefinition) -> Vec<(Option<&str>, Option<&str>)> {
    let mut env: Vec<_> = c
        .environment
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|kv| (kv.name.as_deref(), kv.value.as_deref()))
        .collect();
    env.sort();
    env
}

/// Registers a revision of the base's family with `containers`, every other field
/// copied from the base. Returns its ARN.
pub(crate) async fn register(
    client: &Client,
    base: &TaskDefinition,
    containers: Vec<ContainerDefinition>,
) -> Result<String, FleetError> {
    let family = base.family.clone().unwrap_or_default();
    let out = client
        .register_task_definition()
        .family(&family)
        .set_container_definitions(Some(containers))
        .set_task_role_arn(base.task_role_arn.clone())
        .set_execution_role_arn(base.execution_role_arn.clone())
        .set_network_mode(base.network_mode.clone())
        .set_volumes(base.volumes.clone())
        .set_placement_constraints(base.placement_constraints.clone())
        .set_requires_compatibilities(base.requires_compatibilities.clone())
        .set_cpu(base.cpu.clone())
        .set_memory(base.memory.clone())
        .set_pid_mode(base.pid_mode.clone())
        .set_ipc_mode(base.ipc_mode.clone())
        .set_proxy_configuration(base.proxy_configuration.clone())
        .set_ephemeral_storage(base.ephemeral_storage.clone())
        .set_runtime_platform(base.runtime_platform.clone())
        .set_enable_fault_injection(base.enable_fault_injection)
        .send()
        .await
        .map_err(|e| fleet_error(&format!("RegisterTaskDefinition {family}"), e))?;
    out.task_definition
        .and_then(|t| t.task_definition_arn)
        .ok_or_else(|| FleetError::Backend {
            message: format!("RegisterTaskDefinition {family}: no ARN in the answer"),
            source: None,
        })
}
