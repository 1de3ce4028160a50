//! # meshkit-testing
//!
//! Fakes for testing code built on [`meshkit`], and for meshkit's own tests:
//!
//! - [`InMemoryRouter`]: a [`meshkit::traffic::TrafficRouter`] with fault injection
//!   (failed, throttled and rejected writes, lost responses, read lag, another writer).
//! - [`ScriptedHealthCheck`]: a check that answers a scripted sequence of verdicts.
//! - [`InMemoryFleet`]: a [`meshkit::fleet::Fleet`] that records what it was asked.
//! - [`FakeXrayDaemon`]: a UDP socket on loopback that parses X-Ray daemon traffic
//!   (header line + segment document) so tests can assert on real segments.
//!
//! All of them use `tokio::time`, so tests run with paused time.
#![warn(missing_docs)]

mod fleet;
mod moto;
mod router;
mod scripted;
mod xray;

pub use fleet::{FleetCall, InMemoryFleet};
pub use moto::{CallCounter, MotoError, MotoServer};
pub use router::{Change, ChangedBy, Fault, InMemoryRouter};
pub use scripted::ScriptedHealthCheck;
pub use xray::{FakeXrayDaemon, Segment};
