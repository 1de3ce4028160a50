//! What meshkit's sample services share, so that each sample is only its own logic:
//!
//! - [`xray`]: X-Ray tracing through OpenTelemetry and opentelemetry-aws (propagator,
//!   id generator, daemon exporter, the X-Ray default sampling rule).
//! - [`server`]: a hyper 1 server with graceful shutdown, header and body limits.
//! - [`client`]: the outgoing HTTP client and bounded body reads.
//! - [`env`](mod@env): reading settings from the environment with clear errors.
#![warn(missing_docs)]

pub mod client;
pub mod env;
pub mod server;
pub mod xray;

/// Installs a `tracing` subscriber that logs to stderr (`RUST_LOG` filters; default
/// `info`). Call once at the start of a sample's `main`.
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
