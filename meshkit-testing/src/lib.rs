//! # meshkit-testing
//!
//! Fakes for testing code built on [`meshkit`], and for meshkit's own tests:
//!
//! - [`InMemoryRouter`]: a [`meshkit::traffic::TrafficRouter`] with fault injection
//!   (failed, throttled and rejected writes, lost responses, read lag, another writer).
//! - [`ScriptedHealthCheck`]: a check that answers a scripted sequence of verdicts.
//! - [`InMemoryFleet`]: a [`meshkit::fleet::Fleet`] that records what it was asked.
//!
//! Those three need nothing but `meshkit`'s traits: this crate depends on `meshkit`
//! without its default features, so it adds no AWS SDK of its own (your own `meshkit`
//! dependency decides which backends, and so which SDKs, are built: `meshkit = {
//! default-features = false, features = [...] }` for none). Behind features:
//!
//! - `xray`: `FakeXrayDaemon`, a UDP socket on loopback that parses X-Ray daemon
//!   traffic (header line + segment document) so tests can assert on real segments.
//! - `emulator`: `MotoServer` and `CallCounter`, the moto AWS emulator on a free port
//!   and a count of the AWS calls a client makes; `gopher` builds the gopher sample's
//!   App Mesh and Cloud Map resources on it, `elb` an ALB or NLB with target groups,
//!   a listener and a rule, `lattice` a VPC Lattice service with target groups, a
//!   listener and a rule (with meshkit's extension of the emulator for the Lattice
//!   operations it lacks), and `cloudwatch` puts the metric the canary pipeline's 5xx
//!   check reads. These pull the AWS SDK crates.
//!
//! The fakes use `tokio::time`, so tests run with paused time (the emulator is a real
//! process: tests against it run on real time).
#![warn(missing_docs)]

#[cfg(feature = "emulator")]
pub mod cloudwatch;
#[cfg(feature = "emulator")]
pub mod elb;
mod fleet;
#[cfg(feature = "emulator")]
pub mod gopher;
#[cfg(feature = "emulator")]
pub mod lattice;
#[cfg(feature = "emulator")]
mod moto;
mod router;
mod scripted;
#[cfg(feature = "xray")]
mod xray;

pub use fleet::{FleetCall, InMemoryFleet};
#[cfg(feature = "emulator")]
pub use moto::{CallCounter, MotoError, MotoServer};
pub use router::{Change, ChangedBy, Fault, InMemoryRouter};
pub use scripted::ScriptedHealthCheck;
#[cfg(feature = "xray")]
pub use xray::{FakeXrayDaemon, Segment};
