//! The gopher distributor: answers `Gopher Version 1 from pod <host>`, or for other
//! versions `Gopher Version 2 from pod <host> (<last 16 hex chars of the trace id>)`;
//! JSON (`{"version":..,"host":..,"trace_id":..}`) when the client sends
//! `Accept: application/json`.
#![warn(missing_docs)]

use std::future::Future;
use std::io;
use std::sync::Arc;

use http::{Request, StatusCode, header};
use sample_support::env::{self, EnvError, Lookup};
use sample_support::server::{self, Resp, json, json_string, text};
use sample_support::xray::Tracing;
use tokio::net::TcpListener;

/// Settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `VERSION` (default `1`).
    pub version: String,
    /// `PORT` (default 80, as in the original task definitions).
    pub port: u16,
    /// `HOSTNAME` (default: the machine's host name), the "pod" in the answer.
    pub host: String,
}

impl Config {
    /// Reads the settings through `get`.
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, EnvError> {
        Ok(Self {
            version: env::string(get, "VERSION", "1"),
            port: env::parse(get, "PORT", 80, "a port number")?,
            host: get("HOSTNAME").unwrap_or_else(machine_host),
        })
    }
}

fn machine_host() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// The service.
#[derive(Clone, Debug)]
pub struct App {
    cfg: Arc<Config>,
    tracing: Tracing,
}

impl App {
    /// A distributor with these settings.
    pub fn new(cfg: Config, tracing: Tracing) -> Self {
        Self {
            cfg: Arc::new(cfg),
            tracing,
        }
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let app = self.clone();
        let handler = move |req| {
            let app = app.clone();
            async move { app.handle(req) }
        };
        server::serve_traced(listener, handler, shutdown, &self.tracing).await
    }

    /// Answers one request.
    pub fn handle<B>(&self, req: Request<B>) -> Resp {
        let cfg = &self.cfg;
        let cx = self.tracing.server_span(
            req.headers(),
            req.method().as_str(),
            req.uri().path(),
            &cfg.version,
        );
        let trace_id = Tracing::xray_trace_id(&cx);
        let mut resp = if wants_json(&req) {
            json(
                StatusCode::OK,
                format!(
                    r#"{{"version":{},"host":{},"trace_id":{}}}"#,
                    json_string(&cfg.version),
                    json_string(&cfg.host),
                    json_string(&trace_id)
                ),
            )
        } else if cfg.version == "1" {
            text(
                StatusCode::OK,
                format!("Gopher Version 1 from pod {}", cfg.host),
            )
        } else {
            let tail = &trace_id[trace_id.len().saturating_sub(16)..];
            text(
                StatusCode::OK,
                format!(
                    "Gopher Version {} from pod {} ({tail})",
                    cfg.version, cfg.host
                ),
            )
        };
        self.tracing.echo(&cx, resp.headers_mut());
        Tracing::finish(&cx, resp.status().as_u16());
        resp
    }
}

/// True when the request's `Accept` header asks for JSON.
pub fn wants_json<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}
