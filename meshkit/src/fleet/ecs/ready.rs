//! Whether an ECS service is ready to take traffic, in words when it is not.

use aws_sdk_ecs::types::{DeploymentRolloutState, Service};

/// Where a service stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Readiness {
    Ready,
    /// Not yet; the state in words.
    Waiting(String),
    /// The deployment failed and will not become ready on its own.
    Failed(String),
}

/// Ready when the service is ACTIVE with a single, completed deployment, as many tasks
/// running as desired (at least one), none pending and no failed tasks.
pub(crate) fn readiness(service: &Service) -> Readiness {
    let name = service.service_name.as_deref().unwrap_or("service");
    let status = service.status.as_deref().unwrap_or("UNKNOWN");
    if status != "ACTIVE" {
        return Readiness::Waiting(format!("{name} is {status}"));
    }
    let deployments = service.deployments.as_deref().unwrap_or_default();
    let primary = deployments
        .iter()
        .find(|d| d.status.as_deref() == Some("PRIMARY"));
    if let Some(d) = primary
        && d.rollout_state == Some(DeploymentRolloutState::Failed)
    {
        return Readiness::Failed(format!(
            "{name}: deployment failed: {}",
            d.rollout_state_reason
                .as_deref()
                .unwrap_or("no reason given")
        ));
    }
    let mut state = vec![format!(
        "{}/{} tasks running, {} pending",
        service.running_count, service.desired_count, service.pending_count
    )];
    let mut ready = service.desired_count > 0
        && service.running_count >= service.desired_count
        && service.pending_count == 0;
    if service.desired_count == 0 {
        state.push("desired count is 0".into());
    }
    if deployments.len() > 1 {
        state.push(format!("{} deployments", deployments.len()));
        ready = false;
    }
    if let Some(d) = primary {
        if let Some(rs) = &d.rollout_state {
            state.push(format!("deployment {}", rs.as_str()));
            ready &= *rs == DeploymentRolloutState::Completed;
        }
        if d.failed_tasks > 0 {
            state.push(format!("{} failed tasks", d.failed_tasks));
            ready = false;
        }
    }
    if ready {
        Readiness::Ready
    } else {
        Readiness::Waiting(format!("{name}: {}", state.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecs::types::Deployment;

    use super::*;

    fn service(running: i32, desired: i32, state: DeploymentRolloutState, failed: i32) -> Service {
        Service::builder()
            .service_name("web-v2")
            .status("ACTIVE")
            .running_count(running)
            .desired_count(desired)
            .pending_count(desired - running)
            .deployments(
                Deployment::builder()
                    .status("PRIMARY")
                    .rollout_state(state)
                    .failed_tasks(failed)
                    .build(),
            )
            .build()
    }

    #[test]
    fn ready_only_when_complete_and_clean() {
        use DeploymentRolloutState::*;
        assert_eq!(readiness(&service(2, 2, Completed, 0)), Readiness::Ready);
        assert_eq!(
            readiness(&service(1, 2, InProgress, 0)),
            Readiness::Waiting(
                "web-v2: 1/2 tasks running, 1 pending, deployment IN_PROGRESS".into()
            )
        );
        assert!(matches!(
            readiness(&service(2, 2, Completed, 3)),
            Readiness::Waiting(s) if s.contains("3 failed tasks")
        ));
        assert!(matches!(
            readiness(&service(0, 2, Failed, 2)),
            Readiness::Failed(_)
        ));
        assert!(matches!(
            readiness(&service(0, 0, Completed, 0)),
            Readiness::Waiting(s) if s.contains("desired count is 0")
        ));
        let mut draining = service(2, 2, Completed, 0);
        draining.status = Some("DRAINING".into());
        assert_eq!(
            readiness(&draining),
            Readiness::Waiting("web-v2 is DRAINING".into())
        );
    }
}
