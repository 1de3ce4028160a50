//! What one version of the service is on ECS: [`EcsVersion`].

/// A change to one container of the base task definition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ContainerChange {
    pub(crate) image: Option<String>,
    pub(crate) env: Vec<(String, String)>,
}

/// Where a version's tasks register behind a load balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LbWiring {
    pub(crate) target_group_arn: String,
    /// Container and port; `None` copies them from the `like_service` template.
    pub(crate) container: Option<(String, i32)>,
}

/// Where a version's tasks register as VPC Lattice targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LatticeWiring {
    pub(crate) target_group_arn: String,
    /// Role and port name; `None` copies them from the `like_service` template.
    pub(crate) role_and_port: Option<(String, String)>,
}

/// One version of the service as its own ECS service.
///
/// Either a version meshkit brings up ([`EcsVersion::new`]: a task definition revision
/// registered from a base with the new image and environment, and a service created or
/// updated to run it), or one that already runs ([`EcsVersion::existing`]: the stable
/// version, which meshkit only scales down when it retires it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsVersion {
    pub(crate) service: String,
    pub(crate) base_task_definition: Option<String>,
    pub(crate) containers: Vec<(String, ContainerChange)>,
    pub(crate) desired_count: Option<i32>,
    pub(crate) like_service: Option<String>,
    pub(crate) registries: Vec<String>,
    pub(crate) load_balancer: Option<LbWiring>,
    pub(crate) lattice: Option<LatticeWiring>,
}

impl EcsVersion {
    /// A version to bring up as service `service`, from the task definition
    /// `base_task_definition` (`family`, `family:revision` or an ARN). Default desired
    /// count: 1.
    pub fn new(service: impl Into<String>, base_task_definition: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            base_task_definition: Some(base_task_definition.into()),
            containers: Vec::new(),
            desired_count: None,
            like_service: None,
            registries: Vec::new(),
            load_balancer: None,
            lattice: None,
        }
    }

    /// A version already running as service `service`.
    pub fn existing(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            base_task_definition: None,
            containers: Vec::new(),
            desired_count: None,
            like_service: None,
            registries: Vec::new(),
            load_balancer: None,
            lattice: None,
        }
    }

    fn container(&mut self, name: String) -> &mut ContainerChange {
        let at = match self.containers.iter().position(|(n, _)| *n == name) {
            Some(i) => i,
            None => {
                self.containers.push((name, ContainerChange::default()));
                self.containers.len() - 1
            }
        };
        &mut self.containers[at].1
    }

    /// Runs `image` in container `container`.
    pub fn image(mut self, container: impl Into<String>, image: impl Into<String>) -> Self {
        self.container(container.into()).image = Some(image.into());
        self
    }

    /// Sets the environment variable `key` to `value` in container `container`
    /// (replacing the base's value, if any).
    pub fn env(
        mut self,
        container: impl Into<String>,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        let change = self.container(container.into());
        let key = key.into();
        change.env.retain(|(k, _)| *k != key);
        change.env.push((key, value.into()));
        self
    }

    /// The number of tasks to run.
    pub fn desired_count(mut self, count: i32) -> Self {
        self.desired_count = Some(count);
        self
    }

    /// Creates the service with the launch type, capacity providers, platform version,
    /// network configuration and placement of the existing service `service` (usually
    /// the stable version's).
    pub fn like_service(mut self, service: impl Into<String>) -> Self {
        self.like_service = Some(service.into());
        self
    }

    /// Registers the service's tasks in the Cloud Map service `registry_arn`.
    pub fn service_registry(mut self, registry_arn: impl Into<String>) -> Self {
        self.registries.push(registry_arn.into());
        self
    }

    /// Registers the service's tasks in the load balancer target group
    /// `target_group_arn`, with the container name and port of the `like_service`
    /// template's load balancer wiring (the stable version's service): the new version
    /// gets its own target group behind the same listener. With
    /// [`crate::fleet::ecs::EcsFleet::target_health`], readiness also waits until the
    /// group's targets are healthy.
    pub fn target_group(mut self, target_group_arn: impl Into<String>) -> Self {
        self.load_balancer = Some(LbWiring {
            target_group_arn: target_group_arn.into(),
            container: None,
        });
        self
    }

    /// Like [`EcsVersion::target_group`], with the container name and port given.
    pub fn load_balancer(
        mut self,
        target_group_arn: impl Into<String>,
        container: impl Into<String>,
        port: i32,
    ) -> Self {
        self.load_balancer = Some(LbWiring {
            target_group_arn: target_group_arn.into(),
            container: Some((container.into(), port)),
        });
        self
    }

    /// Registers the service's tasks as targets of the VPC Lattice target group
    /// `target_group_arn`, with the infrastructure role and port name of the
    /// `like_service` template's VPC Lattice configuration (read from its primary
    /// deployment). With [`crate::fleet::ecs::EcsFleet::lattice_health`], readiness
    /// also waits until the group's targets are healthy.
    pub fn lattice_target_group(mut self, target_group_arn: impl Into<String>) -> Self {
        self.lattice = Some(LatticeWiring {
            target_group_arn: target_group_arn.into(),
            role_and_port: None,
        });
        self
    }

    /// Like [`EcsVersion::lattice_target_group`], with the role and port name given.
    pub fn lattice(
        mut self,
        target_group_arn: impl Into<String>,
        role_arn: impl Into<String>,
        port_name: impl Into<String>,
    ) -> Self {
        self.lattice = Some(LatticeWiring {
            target_group_arn: target_group_arn.into(),
            role_and_port: Some((role_arn.into(), port_name.into())),
        });
        self
    }

    /// The target group the version's tasks register in, if any.
    pub fn target_group_arn(&self) -> Option<&str> {
        self.load_balancer
            .as_ref()
            .map(|l| l.target_group_arn.as_str())
    }

    /// The ECS service name.
    pub fn service(&self) -> &str {
        &self.service
    }
}
