//! # meshkit-testing
//!
//! Fakes for testing code built on [`meshkit`], and for meshkit's own tests:
//!
//! - [`InMemoryRouter`]: a [`meshkit::traffic::TrafficRouter`] with fault injection
//!   (failed, throttled and rejected writes, lost responses, read lag, another writer).
//! - [`ScriptedHealthCheck`]: a check that answers a scripted sequence of verdicts.
//! - [`InMemoryFleet`]: a [`meshkit::fleet::Fleet`] that records what it was asked.
//!
//! All of them use `tokio::time`, so tests run with paused time.
#![warn(missing_docs)]

mod fleet;
mod router;
mod scripted;

pub use fleet::{FleetCall, InMemoryFleet};
pub use router::{Change, ChangedBy, Fault, InMemoryRouter};
pub use scripted::ScriptedHealthCheck;
