//! The App Mesh backend: [`AppMeshRouter`] shifts the weighted targets of an App Mesh
//! route (HTTP, HTTP/2, gRPC or TCP) through `aws-sdk-appmesh`.
//!
//! App Mesh reached end of support on 2026-09-30; this adapter is for the teams still
//! on it and migrating off. Everything else in meshkit is backend-neutral.
//!
//! # One read and one write per step
//!
//! `UpdateRoute` replaces the whole spec, so a write needs the current spec. The router
//! keeps the spec from its last read of a route and rewrites only the weighted targets
//! of that copy (match, retry policy, timeouts, priority and ports are resent as read).
//! `UpdateRoute` answers with the route as stored, which the rollout takes as the
//! read-back, so a canary step costs one `DescribeRoute` and one `UpdateRoute`.
//!
//! # Another writer
//!
//! The App Mesh API has no conditional update. Before each write the rollout compares
//! the route's `metadata.version` and weights with what meshkit last wrote and stops if
//! someone else changed them. That narrows the race to the time between the read and
//! the write; it cannot close it. Run one rollout per route.
//!
//! # Idempotent retries
//!
//! Each write carries the rollout's token for that step as the `clientToken`
//! (`{rollout-id}-{step}-{run}`, or a digest of it when longer than App Mesh's 36
//! characters: see [`crate::traffic::client_token`]), so App Mesh treats a retried write
//! as the same request, and a rerun's write (the same weights after a rollback) as a new
//! one.

mod prepare;
mod spec;

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_appmesh::Client;
use aws_sdk_appmesh::types::{RouteData, RouteSpec};

pub use prepare::{NodeDiscovery, NodeEnsured, Preflight, PreflightError};
pub use spec::RouteKind;

use crate::aws::traffic_error;
use crate::error::ConfigError;
use crate::traffic::TrafficError;
use crate::traffic::{Observed, RouteRef, TrafficRouter, WriteRequest};

/// An App Mesh route: mesh (and its owner account when shared), virtual router, route.
///
/// Its [`RouteRef`] form is `mesh/router/route`, or `mesh/router/route@owner`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AppMeshRoute {
    mesh: String,
    mesh_owner: Option<String>,
    virtual_router: String,
    route: String,
}

impl AppMeshRoute {
    /// The route `route` of virtual router `virtual_router` in `mesh`.
    pub fn new(
        mesh: impl Into<String>,
        virtual_router: impl Into<String>,
        route: impl Into<String>,
    ) -> Self {
        Self {
            mesh: mesh.into(),
            mesh_owner: None,
            virtual_router: virtual_router.into(),
            route: route.into(),
        }
    }

    /// The account that owns a mesh shared with this one.
    pub fn owner(mut self, account: impl Into<String>) -> Self {
        self.mesh_owner = Some(account.into());
        self
    }

    /// The mesh name.
    pub fn mesh(&self) -> &str {
        &self.mesh
    }

    /// The mesh owner, when set.
    pub fn mesh_owner(&self) -> Option<&str> {
        self.mesh_owner.as_deref()
    }

    /// The virtual router name.
    pub fn virtual_router(&self) -> &str {
        &self.virtual_router
    }

    /// The route name.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// The route as a [`RouteRef`] for [`crate::Rollout::builder`].
    pub fn route_ref(&self) -> Result<RouteRef, ConfigError> {
        RouteRef::new(self.to_string())
    }

    /// Parses the `mesh/router/route[@owner]` form.
    pub fn parse(route: &RouteRef) -> Result<Self, ConfigError> {
        let bad = || ConfigError::BadRouteName(route.to_string());
        let (path, owner) = match route.as_str().rsplit_once('@') {
            Some((p, o)) if !o.is_empty() => (p, Some(o.to_string())),
            Some(_) => return Err(bad()),
            None => (route.as_str(), None),
        };
        let mut parts = path.split('/');
        let (Some(mesh), Some(router), Some(name), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        if [mesh, router, name].iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        Ok(Self {
            mesh: mesh.into(),
            mesh_owner: owner,
            virtual_router: router.into(),
            route: name.into(),
        })
    }
}

impl fmt::Display for AppMeshRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.mesh, self.virtual_router, self.route)?;
        if let Some(owner) = &self.mesh_owner {
            write!(f, "@{owner}")?;
        }
        Ok(())
    }
}

/// A [`TrafficRouter`] over App Mesh routes. Routes are named in the
/// `mesh/router/route[@owner]` form of [`AppMeshRoute`].
///
/// Build the client from `aws-config` as for any AWS SDK client (credential chain,
/// region, `endpoint_url`, retry configuration); meshkit never reads credentials.
///
/// ```no_run
/// # async fn example(sdk: meshkit::sdk::SdkConfig) -> Result<(), Box<dyn std::error::Error>> {
/// use meshkit::traffic::appmesh::{AppMeshRoute, AppMeshRouter};
/// use meshkit::traffic::TrafficRouter;
///
/// let router = AppMeshRouter::new(meshkit::sdk::appmesh::Client::new(&sdk));
/// let route = AppMeshRoute::new("gophermesh", "distributor-router", "distributor-route");
/// let now = router.read(&route.route_ref()?).await?;
/// println!("{} (version {:?})", now.weights, now.revision);
/// # Ok(()) }
/// ```
pub struct AppMeshRouter {
    client: Client,
    /// The spec and version of each route as last read or written.
    specs: Mutex<HashMap<AppMeshRoute, RouteSpec>>,
}

impl fmt::Debug for AppMeshRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppMeshRouter").finish_non_exhaustive()
    }
}

impl AppMeshRouter {
    /// A router using `client`.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            specs: Mutex::new(HashMap::new()),
        }
    }

    /// The SDK client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Reads the whole route (`DescribeRoute`).
    pub async fn describe(&self, route: &AppMeshRoute) -> Result<RouteData, TrafficError> {
        let out = self
            .client
            .describe_route()
            .mesh_name(route.mesh())
            .set_mesh_owner(route.mesh_owner.clone())
            .virtual_router_name(route.virtual_router())
            .route_name(route.route())
            .send()
            .await
            .map_err(|e| traffic_error(&format!("DescribeRoute {route}"), e))?;
        out.route.ok_or_else(|| TrafficError::Other {
            message: format!("DescribeRoute {route}: the response has no route"),
            source: None,
        })
    }

    /// The protocol of `route`.
    pub async fn kind(&self, route: &AppMeshRoute) -> Result<RouteKind, TrafficError> {
        let data = self.describe(route).await?;
        Ok(spec::targets(spec_of(route, &data)?)?.0)
    }

    fn remember(&self, route: &AppMeshRoute, data: &RouteData) -> Result<Observed, TrafficError> {
        let spec = spec_of(route, data)?;
        let weights = spec::weights(spec)?;
        let revision = data.metadata.as_ref().map(|m| m.version.to_string());
        if let Ok(mut specs) = self.specs.lock() {
            specs.insert(route.clone(), spec.clone());
        }
        Ok(Observed { weights, revision })
    }

    fn remembered(&self, route: &AppMeshRoute) -> Option<RouteSpec> {
        self.specs.lock().ok()?.get(route).cloned()
    }
}

fn spec_of<'a>(route: &AppMeshRoute, data: &'a RouteData) -> Result<&'a RouteSpec, TrafficError> {
    data.spec.as_ref().ok_or_else(|| TrafficError::Other {
        message: format!("route {route} has no spec"),
        source: None,
    })
}

fn parse(route: &RouteRef) -> Result<AppMeshRoute, TrafficError> {
    AppMeshRoute::parse(route).map_err(|e| TrafficError::BadRequest {
        message: format!("{e}; App Mesh routes are named mesh/router/route[@owner]"),
        source: None,
    })
}

#[async_trait]
impl TrafficRouter for AppMeshRouter {
    async fn read(&self, route: &RouteRef) -> Result<Observed, TrafficError> {
        let route = parse(route)?;
        let data = self.describe(&route).await?;
        self.remember(&route, &data)
    }

    async fn write(
        &self,
        route: &RouteRef,
        request: &WriteRequest,
    ) -> Result<Option<Observed>, TrafficError> {
        let route = parse(route)?;
        let current = match self.remembered(&route) {
            Some(spec) => spec,
            None => {
                let data = self.describe(&route).await?;
                self.remember(&route, &data)?;
                spec_of(&route, &data)?.clone()
            }
        };
        let next = spec::with_weights(&current, &request.weights)?;
        let out = self
            .client
            .update_route()
            .mesh_name(route.mesh())
            .set_mesh_owner(route.mesh_owner.clone())
            .virtual_router_name(route.virtual_router())
            .route_name(route.route())
            .client_token(&request.token)
            .spec(next)
            .send()
            .await
            .map_err(|e| traffic_error(&format!("UpdateRoute {route}"), e))?;
        tracing::debug!(%route, weights = %request.weights, "UpdateRoute sent");
        match out.route {
            Some(data) => self.remember(&route, &data).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_names_round_trip() {
        let r = AppMeshRoute::new("m", "vr", "r");
        assert_eq!(r.to_string(), "m/vr/r");
        assert_eq!(AppMeshRoute::parse(&r.route_ref().unwrap()).unwrap(), r);
        let shared = r.clone().owner("123456789012");
        assert_eq!(shared.to_string(), "m/vr/r@123456789012");
        assert_eq!(
            AppMeshRoute::parse(&shared.route_ref().unwrap()).unwrap(),
            shared
        );
        for bad in ["m/vr", "m/vr/r/x", "m//r", "m/vr/r@", "plain"] {
            let rr = RouteRef::new(bad).unwrap();
            assert!(AppMeshRoute::parse(&rr).is_err(), "{bad}");
        }
    }
}
