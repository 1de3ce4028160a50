//! The blue/green demo service: a Rust port of the Express app that App Mesh tutorials
//! use, with the original's server-side request forgery hole closed.
//!
//! - `GET /downstream/<service>[/...]` fetches `http://<service>/` when `<service>` is in
//!   `DOWNSTREAM_ALLOW` (403 otherwise), with a timeout (504), and wraps the downstream
//!   JSON: `{"message":"fetched!","service":<self>,"response":<downstream>}`.
//! - Every other path and method: `{"message":"ok","service":<name>,"version":<ver>}`.
//! - Errors: `{"message":"error","service":<self>,"error":{"code":..,"message":..}}`.
//! - `FAIL_RATE` and `EXTRA_LATENCY_MS` make a "broken version" without code changes.
//! - X-Ray tracing: the incoming `X-Amzn-Trace-Id` is continued, injected on the
//!   downstream call, and echoed on the response.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use bluegreen_service::{App, Config};
//! use sample_support::xray::{Sampling, Tracing};
//!
//! let cfg = Config { name: "blue".into(), version: "1".into(), ..Config::default() };
//! let app = App::new(cfg, Tracing::local_only("blue", "1", Sampling::Never));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! app.serve(listener, std::future::pending()).await
//! # }
//! ```
#![warn(missing_docs)]

mod app;
mod config;

pub use app::App;
pub use config::Config;
