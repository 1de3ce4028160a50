//! Deployments that an AWS service shifts itself, with meshkit as their judge.
//!
//! [`EcsNative`]: an ECS deployment with the `LINEAR` or `CANARY` strategy (Service
//! Connect, or ECS behind an ALB, an NLB or VPC Lattice). ECS moves the traffic;
//! meshkit's checks and policies decide every step: ECS pauses before each traffic
//! shift (a `PAUSE` lifecycle hook), meshkit runs its checks and answers `CONTINUE` or
//! `ROLLBACK`; between pauses a failing check stops the deployment with a rollback.
//!
//! # When to use it
//!
//! - **Service Connect**: the only way to shift traffic between two revisions is an
//!   ECS deployment; this is how meshkit judges it.
//! - **ALB, NLB, VPC Lattice**: either works. ECS native keeps one service and lets
//!   ECS shift; its steps are ECS's (`LINEAR` 3-100% per step, `CANARY` one canary
//!   step then all), each stage at most 24 h. Driving the weights yourself
//!   ([`crate::traffic::elb`], [`crate::traffic::lattice`]) gives any plan (0.1%
//!   steps), traffic confirmation from request counts, and a route of two services.
//!
//! # IAM
//!
//! `ecs:UpdateService`, `ecs:DescribeServices`, `ecs:ListServiceDeployments`,
//! `ecs:DescribeServiceDeployments`, `ecs:ContinueServiceDeployment`,
//! `ecs:StopServiceDeployment`, and `iam:PassRole` for the service's roles when
//! `UpdateService` needs it; plus whatever the checks read.

#[cfg(feature = "ecs")]
mod ecs;
#[cfg(feature = "ecs")]
mod snapshot;

#[cfg(feature = "ecs")]
pub use ecs::{EcsNative, EcsNativeBuilder, NativeStrategy};
