//! Preparing an App Mesh rollout: the new version's virtual node, and the checks to run
//! before the first write.

use aws_sdk_appmesh::types::{AwsCloudMapInstanceAttribute, ServiceDiscovery, VirtualNodeSpec};

use super::{AppMeshRoute, AppMeshRouter, RouteKind, spec};
use crate::aws::traffic_error;
use crate::traffic::TrafficError;
use crate::traffic::Weights;

/// How the new version's virtual node finds its instances, replacing the template's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeDiscovery {
    /// DNS service discovery with this hostname (the template must use DNS).
    Dns {
        /// The new version's hostname.
        hostname: String,
    },
    /// Cloud Map service discovery in the template's namespace and service, selecting
    /// instances by these attributes (the template must use Cloud Map).
    CloudMapAttributes {
        /// Attribute key and value pairs, e.g. `("ECS_TASK_DEFINITION_FAMILY", "gopher-v2")`.
        attributes: Vec<(String, String)>,
    },
}

impl NodeDiscovery {
    /// DNS discovery with `hostname`.
    pub fn dns(hostname: impl Into<String>) -> Self {
        Self::Dns {
            hostname: hostname.into(),
        }
    }

    /// Cloud Map discovery by attributes.
    pub fn cloud_map_attributes<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        Self::CloudMapAttributes {
            attributes: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    fn apply(&self, template: &str, spec: &mut VirtualNodeSpec) -> Result<(), TrafficError> {
        let wrong = |wanted: &str| TrafficError::BadRequest {
            message: format!("template node {template} does not use {wanted} service discovery"),
            source: None,
        };
        match (self, spec.service_discovery.as_mut()) {
            (Self::Dns { hostname }, Some(ServiceDiscovery::Dns(dns))) => {
                dns.hostname.clone_from(hostname);
                Ok(())
            }
            (Self::CloudMapAttributes { attributes }, Some(ServiceDiscovery::AwsCloudMap(map))) => {
                let mut list = Vec::with_capacity(attributes.len());
                for (key, value) in attributes {
                    let attr = AwsCloudMapInstanceAttribute::builder()
                        .key(key)
                        .value(value)
                        .build()
                        .map_err(|e| TrafficError::BadRequest {
                            message: format!("Cloud Map attribute {key}: {e}"),
                            source: Some(Box::new(e)),
                        })?;
                    list.push(attr);
                }
                map.attributes = Some(list);
                Ok(())
            }
            (Self::Dns { .. }, _) => Err(wrong("DNS")),
            (Self::CloudMapAttributes { .. }, _) => Err(wrong("Cloud Map")),
        }
    }
}

/// What [`AppMeshRouter::preflight`] found: the route exists with both nodes and may be
/// rolled out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preflight {
    /// The route's current split.
    pub weights: Weights,
    /// The route's `metadata.version`.
    pub revision: Option<String>,
    /// The route's protocol.
    pub kind: RouteKind,
    /// True when the route is part-way through a rollout between the two versions
    /// rather than all on stable.
    pub resumable: bool,
}

/// Why a rollout on App Mesh cannot start. Nothing has been written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PreflightError {
    /// A mesh, virtual router, route or virtual node does not exist.
    #[error("{kind} '{name}' not found: {source}")]
    Missing {
        /// `mesh`, `virtual router`, `route` or `virtual node`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The App Mesh error.
        #[source]
        source: TrafficError,
    },
    /// The route does not send all traffic to stable (and resuming was not allowed, or
    /// the split is not between the two versions).
    #[error("route {route} is at {weights}, not 100% on {stable}")]
    NotAtStart {
        /// The route.
        route: String,
        /// Its split.
        weights: Weights,
        /// The stable node.
        stable: String,
    },
    /// Any other App Mesh error.
    #[error(transparent)]
    Backend(#[from] TrafficError),
}

/// Whether [`AppMeshRouter::ensure_virtual_node`] created the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeEnsured {
    /// The node did not exist and was created from the template.
    Created,
    /// The node already existed and was left as it is.
    Existed,
}

fn missing(kind: &'static str, name: &str) -> impl FnOnce(TrafficError) -> PreflightError {
    let name = name.to_string();
    move |e| {
        if e.is_not_found() {
            PreflightError::Missing {
                kind,
                name,
                source: e,
            }
        } else {
            PreflightError::Backend(e)
        }
    }
}

impl AppMeshRouter {
    async fn describe_node(
        &self,
        route: &AppMeshRoute,
        name: &str,
    ) -> Result<Option<VirtualNodeSpec>, TrafficError> {
        let out = self
            .client
            .describe_virtual_node()
            .mesh_name(route.mesh())
            .set_mesh_owner(route.mesh_owner.clone())
            .virtual_node_name(name)
            .send()
            .await
            .map_err(|e| traffic_error(&format!("DescribeVirtualNode {name}"), e))?;
        Ok(out.virtual_node.and_then(|n| n.spec))
    }

    /// Makes sure the virtual node `name` exists in the route's mesh. When it does not,
    /// creates it as a copy of `template` (listeners, backends, logging, TLS…) with the
    /// service discovery replaced by `discovery`. An existing node is left unchanged.
    pub async fn ensure_virtual_node(
        &self,
        route: &AppMeshRoute,
        template: &str,
        name: &str,
        discovery: &NodeDiscovery,
    ) -> Result<NodeEnsured, TrafficError> {
        match self.describe_node(route, name).await {
            Ok(_) => return Ok(NodeEnsured::Existed),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        let mut spec =
            self.describe_node(route, template)
                .await?
                .ok_or_else(|| TrafficError::Other {
                    message: format!("template node {template} has no spec"),
                    source: None,
                })?;
        discovery.apply(template, &mut spec)?;
        self.client
            .create_virtual_node()
            .mesh_name(route.mesh())
            .set_mesh_owner(route.mesh_owner.clone())
            .virtual_node_name(name)
            .spec(spec)
            .send()
            .await
            .map_err(|e| traffic_error(&format!("CreateVirtualNode {name}"), e))?;
        tracing::info!(node = name, template, "created virtual node");
        Ok(NodeEnsured::Created)
    }

    /// Checks, before any write, that the mesh, virtual router, route and both nodes
    /// exist and that the route sends 100% to `stable`. With `allow_resume`, a split
    /// between `stable` and `candidate` only is accepted too (a rollout that stopped
    /// part-way). Read-only.
    pub async fn preflight(
        &self,
        route: &AppMeshRoute,
        stable: &str,
        candidate: &str,
        allow_resume: bool,
    ) -> Result<Preflight, PreflightError> {
        self.client
            .describe_mesh()
            .mesh_name(route.mesh())
            .set_mesh_owner(route.mesh_owner.clone())
            .send()
            .await
            .map_err(|e| traffic_error(&format!("DescribeMesh {}", route.mesh()), e))
            .map_err(missing("mesh", route.mesh()))?;
        self.client
            .describe_virtual_router()
            .mesh_name(route.mesh())
            .set_mesh_owner(route.mesh_owner.clone())
            .virtual_router_name(route.virtual_router())
            .send()
            .await
            .map_err(|e| {
                traffic_error(
                    &format!("DescribeVirtualRouter {}", route.virtual_router()),
                    e,
                )
            })
            .map_err(missing("virtual router", route.virtual_router()))?;
        for node in [stable, candidate] {
            self.describe_node(route, node)
                .await
                .map_err(missing("virtual node", node))?;
        }
        let data = self
            .describe(route)
            .await
            .map_err(missing("route", route.route()))?;
        let observed = self.remember(route, &data)?;
        let kind = spec::targets(super::spec_of(route, &data)?)?.0;
        let weights = observed.weights;
        let only_ours = weights
            .iter()
            .all(|(n, w)| n == stable || n == candidate || w == 0);
        let resumable = !weights.is_all_on(stable);
        if resumable && !(allow_resume && only_ours) {
            return Err(PreflightError::NotAtStart {
                route: route.to_string(),
                weights,
                stable: stable.to_string(),
            });
        }
        Ok(Preflight {
            weights,
            revision: observed.revision,
            kind,
            resumable,
        })
    }
}
