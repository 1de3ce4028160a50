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
mod limit;
pub mod server;
pub mod xray;

/// Installs a `tracing` subscriber that logs to stderr. Call once at the start of a
/// sample's `main`.
///
/// `RUST_LOG` filters by level and target (`info`, `warn,bluegreen_service=debug`);
/// default `info`, and a value that does not parse is reported and ignored. This is
/// `tracing_subscriber`'s `Targets` filter, not `EnvFilter`: no regex engine is built at
/// start-up, which keeps the services' memory small.
pub fn init_logs() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let default = || tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO);
    let (filter, bad) = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => match v.parse() {
            Ok(f) => (f, None),
            Err(e) => (default(), Some(format!("RUST_LOG={v:?} ignored: {e}"))),
        },
        _ => (default(), None),
    };
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if tracing_subscriber::registry()
        .with(fmt)
        .with(filter)
        .try_init()
        .is_ok()
        && let Some(message) = bad
    {
        tracing::warn!("{message}");
    }
}
