//! The gopher topology on an AWS API (the moto emulator in tests): the mesh, nodes,
//! router and route of the gopher requester/distributor sample, and its Cloud Map
//! service. Setup helpers panic on failure: they are for tests.
//!
//! Tests against the emulator talk to a real process over loopback, so they run on
//! real time with short bakes (tokio's paused time would fire SDK timeouts while a
//! socket waits).

use crate::{CallCounter, MotoServer};
use aws_sdk_appmesh::types::{
    DnsServiceDiscovery, HttpRetryPolicy, HttpRoute, HttpRouteAction, HttpRouteMatch, Listener,
    PortMapping, PortProtocol, RouteSpec, ServiceDiscovery, VirtualNodeSpec, VirtualRouterListener,
    VirtualRouterSpec, WeightedTarget,
};
use aws_types::SdkConfig;

/// The mesh.
pub const MESH: &str = "gophermesh";
/// The virtual router.
pub const ROUTER: &str = "distributor-router";
/// The route.
pub const ROUTE: &str = "distributor-route";
/// The stable version's virtual node.
pub const V1: &str = "distributorV1";
/// The new version's virtual node.
pub const V2: &str = "distributorV2";

/// Starts the emulator, failing the test with the reason when it cannot.
pub fn moto() -> MotoServer {
    match MotoServer::start() {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    }
}

/// An App Mesh client on the emulator that counts its calls.
pub fn appmesh(sdk: &SdkConfig, counter: &CallCounter) -> aws_sdk_appmesh::Client {
    let conf = aws_sdk_appmesh::config::Builder::from(sdk)
        .interceptor(counter.clone())
        .build();
    aws_sdk_appmesh::Client::from_conf(conf)
}

/// A weighted target.
pub fn target(node: &str, weight: i32) -> WeightedTarget {
    WeightedTarget::builder()
        .virtual_node(node)
        .weight(weight)
        .build()
        .unwrap()
}

fn http_8080() -> PortMapping {
    PortMapping::builder()
        .port(8080)
        .protocol(PortProtocol::Http)
        .build()
        .unwrap()
}

fn node_spec(host: &str) -> VirtualNodeSpec {
    VirtualNodeSpec::builder()
        .listeners(Listener::builder().port_mapping(http_8080()).build())
        .service_discovery(ServiceDiscovery::Dns(
            DnsServiceDiscovery::builder()
                .hostname(host)
                .build()
                .unwrap(),
        ))
        .build()
}

/// An HTTP route spec with a retry policy, the way the gopher sample's route is set up.
pub fn http_route(v1: i32, v2: i32) -> RouteSpec {
    RouteSpec::builder()
        .priority(10)
        .http_route(
            HttpRoute::builder()
                .r#match(HttpRouteMatch::builder().prefix("/").build())
                .action(
                    HttpRouteAction::builder()
                        .weighted_targets(target(V1, v1))
                        .weighted_targets(target(V2, v2))
                        .build()
                        .unwrap(),
                )
                .retry_policy(
                    HttpRetryPolicy::builder()
                        .max_retries(2)
                        .http_retry_events("server-error")
                        .tcp_retry_events(
                            aws_sdk_appmesh::types::TcpRetryPolicyEvent::ConnectionError,
                        )
                        .per_retry_timeout(
                            aws_sdk_appmesh::types::Duration::builder()
                                .unit(aws_sdk_appmesh::types::DurationUnit::Ms)
                                .value(500)
                                .build(),
                        )
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .build()
}

/// Mesh `gophermesh`, nodes `requester`, `distributorV1`, `distributorV2`, router
/// `distributor-router` and route `distributor-route` with `spec`.
pub async fn build(client: &aws_sdk_appmesh::Client, spec: RouteSpec) {
    client.create_mesh().mesh_name(MESH).send().await.unwrap();
    for (node, host) in [
        ("requester", "requester.gopher.local"),
        (V1, "distributor-v1.gopher.local"),
        (V2, "distributor-v2.gopher.local"),
    ] {
        client
            .create_virtual_node()
            .mesh_name(MESH)
            .virtual_node_name(node)
            .spec(node_spec(host))
            .send()
            .await
            .unwrap();
    }
    client
        .create_virtual_router()
        .mesh_name(MESH)
        .virtual_router_name(ROUTER)
        .spec(
            VirtualRouterSpec::builder()
                .listeners(
                    VirtualRouterListener::builder()
                        .port_mapping(http_8080())
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    client
        .create_route()
        .mesh_name(MESH)
        .virtual_router_name(ROUTER)
        .route_name(ROUTE)
        .spec(spec)
        .send()
        .await
        .unwrap();
}

/// The route's spec as stored.
pub async fn stored_spec(client: &aws_sdk_appmesh::Client) -> RouteSpec {
    client
        .describe_route()
        .mesh_name(MESH)
        .virtual_router_name(ROUTER)
        .route_name(ROUTE)
        .send()
        .await
        .unwrap()
        .route
        .unwrap()
        .spec
        .unwrap()
}

/// A Cloud Map HTTP namespace `gopher.local` with service `distributor` holding two
/// instances per version (attribute `version`), all healthy. Returns the service id.
pub async fn cloud_map(client: &aws_sdk_servicediscovery::Client) -> String {
    use aws_sdk_servicediscovery::types::HealthCheckCustomConfig;
    client
        .create_http_namespace()
        .name("gopher.local")
        .send()
        .await
        .unwrap();
    let namespaces = client.list_namespaces().send().await.unwrap();
    let ns = namespaces.namespaces.unwrap()[0].id.clone().unwrap();
    let service = client
        .create_service()
        .name("distributor")
        .namespace_id(ns)
        .health_check_custom_config(HealthCheckCustomConfig::builder().build())
        .send()
        .await
        .unwrap()
        .service
        .unwrap();
    let id = service.id.unwrap();
    for (instance, version) in [
        ("v1-a", "v1"),
        ("v1-b", "v1"),
        ("v2-a", "v2"),
        ("v2-b", "v2"),
    ] {
        client
            .register_instance()
            .service_id(&id)
            .instance_id(instance)
            .attributes("version", version)
            .attributes("AWS_INSTANCE_IPV4", "10.0.0.1")
            .send()
            .await
            .unwrap();
    }
    id
}
