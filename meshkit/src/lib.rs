//! # meshkit
//!
//! Progressive delivery on AWS as a library. meshkit shifts traffic between two
//! versions of a service step by step ([`strategy::Canary`], [`strategy::Linear`],
//! [`strategy::BlueGreen`], [`strategy::CanaryBlueGreen`]), watches health checks at
//! every step, and ends with the new version promoted or all traffic back on the old
//! one. It never leaves traffic in between without saying so: every write is read
//! back, another writer is detected instead of overwritten, and an error names the
//! weights actually in force.
//!
//! The pieces are traits, so backends and checks plug in:
//! [`traffic::TrafficRouter`] (ALB and NLB, VPC Lattice, App Mesh, the local embedded
//! mesh, or your own),
//! [`health::HealthCheck`] (HTTP probe, metrics, Cloud Map, or an async closure),
//! [`fleet::Fleet`] (bring versions up and retire them).
//!
//! ## Backends
//!
//! | feature (default on) | what |
//! |---|---|
//! | `elbv2` | `traffic::elb::ElbRouter`: ALB and NLB listeners and rules; `health::TargetGroupHealth`; turns on `cloudwatch` |
//! | `vpclattice` | `traffic::lattice::LatticeRouter`: VPC Lattice listeners and rules; `health::LatticeTargetHealth`; turns on `cloudwatch` |
//! | `local` | `traffic::local::LocalMesh`: an embedded mesh with a real HTTP data plane on loopback |
//! | `appmesh` | `traffic::appmesh::AppMeshRouter`, plus helpers to create the new virtual node and check the mesh before any write |
//! | `ecs` | `fleet::ecs::EcsFleet`: each version as its own ECS service, behind a load balancer or as Lattice targets |
//! | `cloudmap` | `health::CloudMapHealth`: the share of healthy Cloud Map instances |
//! | `cloudwatch` | `health::CloudWatchMetric` (a metric over a window: the canary pipeline's 5xx count, a target group's 5xx or p99) and `traffic::TrafficMetrics` (confirming a split from request counts) |
//! | `prometheus`, `http-check` | the Prometheus query and HTTP probe checks |
//! | `sqlite` | `store::SqliteStore`: the embedded rollout store (leases, records, gates) in one file |
//! | `dynamodb` | `store::DynamoStore`: the rollout store in one DynamoDB table, for several machines |
//! | `ui` | `ui::Dashboard`: the live web view of a rollout store, with gates behind a token |
//!
//! The AWS adapters take SDK clients you build (see [`sdk`]); meshkit never reads
//! credentials. App Mesh reached end of support on 2026-09-30: only its adapter is
//! App Mesh specific.
//!
//! ## Quickstart
//!
//! A canary against the in-memory router from `meshkit-testing`; swap in a real
//! router for production.
//!
//! ```
//! use std::time::Duration;
//! use meshkit::{Rollout, health, strategy::Canary, traffic::Weights};
//! use meshkit_testing::InMemoryRouter;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # tokio::time::pause();
//! let router = InMemoryRouter::new();
//! router.insert("checkout", Weights::new([("v1", 100), ("v2", 0)])?);
//!
//! let rollout = Rollout::builder()
//!     .router(router.clone())
//!     .route("checkout")
//!     .from("v1")
//!     .to("v2")
//!     .strategy(Canary::steps([10, 50, 100]).bake(Duration::from_secs(60)))
//!     .check(health::from_fn("error-rate", |_ctx| async { health::Verdict::Healthy }))
//!     .check_interval(Duration::from_secs(10))
//!     .build()?;
//!
//! let outcome = rollout.run().await?;
//! assert!(outcome.is_promoted());
//! // After promotion v1 is taken off the route: the next rollout starts from v2.
//! assert_eq!(router.weights("checkout"), Some(Weights::new([("v2", 100)])?));
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![deny(clippy::print_stdout, clippy::print_stderr)]

#[cfg(any(
    feature = "appmesh",
    feature = "ecs",
    feature = "cloudmap",
    feature = "cloudwatch",
    feature = "elbv2",
    feature = "vpclattice"
))]
mod aws;
pub mod error;
pub mod fleet;
pub mod health;
pub mod native;
pub mod rollout;
pub mod store;
pub mod strategy;
pub mod traffic;
#[cfg(feature = "ui")]
pub mod ui;

/// The AWS SDK crates meshkit's adapters take clients of, re-exported so your clients
/// come from the same versions. Build them from the `SdkConfig` that
/// `aws_config::load_defaults` gives you: meshkit never reads credentials itself.
#[cfg(any(
    feature = "appmesh",
    feature = "ecs",
    feature = "cloudmap",
    feature = "cloudwatch",
    feature = "elbv2",
    feature = "vpclattice",
    feature = "dynamodb"
))]
pub mod sdk {
    #[cfg(feature = "appmesh")]
    pub use aws_sdk_appmesh as appmesh;
    #[cfg(feature = "cloudwatch")]
    pub use aws_sdk_cloudwatch as cloudwatch;
    #[cfg(feature = "dynamodb")]
    pub use aws_sdk_dynamodb as dynamodb;
    #[cfg(feature = "ecs")]
    pub use aws_sdk_ecs as ecs;
    #[cfg(feature = "elbv2")]
    pub use aws_sdk_elasticloadbalancingv2 as elbv2;
    #[cfg(feature = "cloudmap")]
    pub use aws_sdk_servicediscovery as servicediscovery;
    #[cfg(feature = "vpclattice")]
    pub use aws_sdk_vpclattice as vpclattice;
    pub use aws_types::SdkConfig;
}

/// Re-exports of the OpenTelemetry types meshkit's API uses.
pub mod global {
    pub use opentelemetry::global::BoxedTracer;
}

/// The `#[async_trait]` attribute that [`traffic::TrafficRouter`],
/// [`health::HealthCheck`] and [`fleet::Fleet`] implementations need, re-exported so
/// an implementation needs no dependency of its own: `use meshkit::async_trait;`.
pub use async_trait::async_trait;
pub use error::{ConfigError, WeightsError};
pub use fleet::FleetError;
pub use rollout::RolloutError;
pub use rollout::{Outcome, Rollout, RolloutBuilder, RolloutHandle};
pub use traffic::TrafficError;

/// The README's code blocks, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

/// The migration guide's code blocks, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/migrating-from-app-mesh.md")]
struct MigrationDoctests;
