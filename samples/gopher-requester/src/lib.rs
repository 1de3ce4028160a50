//! The gopher requester: any path calls the distributor and answers
//! `Request >> <distributor's body>`; JSON (`{"request":"ok","distributor":<json>}`)
//! when the client sends `Accept: application/json`. A failing distributor gives 502
//! with a clear body. The call carries the trace context.
#![warn(missing_docs)]

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, Uri, header};
use http_body_util::Empty;
use opentelemetry::Context;
use sample_support::client::{HttpClient, new_client, read_limited};
use sample_support::env::{self, EnvError, Lookup};
use sample_support::server::{self, Resp, json, json_string, text};
use sample_support::xray::Tracing;
use tokio::net::TcpListener;

/// Settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `PORT` (default 80).
    pub port: u16,
    /// `DISTRIBUTOR_URL` (default `http://distributor.gophers.local/`).
    pub distributor: Uri,
    /// `DISTRIBUTOR_TIMEOUT_MS` (default 3000).
    pub timeout: Duration,
}

impl Config {
    /// Reads the settings through `get`.
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, EnvError> {
        let url = env::string(get, "DISTRIBUTOR_URL", "http://distributor.gophers.local/");
        let distributor: Uri = url
            .parse()
            .ok()
            .filter(|u: &Uri| u.scheme_str() == Some("http") && u.host().is_some())
            .ok_or(EnvError {
                name: "DISTRIBUTOR_URL".into(),
                value: url.clone(),
                expected: "an http://host[:port]/path URL".into(),
            })?;
        Ok(Self {
            port: env::parse(get, "PORT", 80, "a port number")?,
            distributor,
            timeout: Duration::from_millis(env::parse(
                get,
                "DISTRIBUTOR_TIMEOUT_MS",
                3000,
                "milliseconds",
            )?),
        })
    }
}

/// The service.
#[derive(Clone, Debug)]
pub struct App {
    cfg: Arc<Config>,
    client: HttpClient,
    tracing: Tracing,
}

impl App {
    /// A requester with these settings.
    pub fn new(cfg: Config, tracing: Tracing) -> Self {
        Self {
            cfg: Arc::new(cfg),
            client: new_client(),
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
            async move { app.handle(req).await }
        };
        server::serve_traced(listener, handler, shutdown, &self.tracing).await
    }

    /// Answers one request.
    pub async fn handle<B>(&self, req: Request<B>) -> Resp {
        let cx = self.tracing.server_span(
            req.headers(),
            req.method().as_str(),
            req.uri().path(),
            "requester",
        );
        let as_json = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/json"));
        let mut resp = match self.call(&cx, as_json).await {
            Ok(body) if as_json => match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(v) => json(
                    StatusCode::OK,
                    format!(r#"{{"request":"ok","distributor":{v}}}"#),
                ),
                Err(e) => self.failed(
                    as_json,
                    &format!("distributor answered a body that is not JSON: {e}"),
                ),
            },
            Ok(body) => {
                let mut out = b"Request >> ".to_vec();
                out.extend_from_slice(&body);
                text(StatusCode::OK, out)
            }
            Err(why) => self.failed(as_json, &why),
        };
        self.tracing.echo(&cx, resp.headers_mut());
        Tracing::finish(&cx, resp.status().as_u16());
        resp
    }

    fn failed(&self, as_json: bool, why: &str) -> Resp {
        if as_json {
            json(
                StatusCode::BAD_GATEWAY,
                format!(r#"{{"request":"failed","error":{}}}"#, json_string(why)),
            )
        } else {
            text(
                StatusCode::BAD_GATEWAY,
                format!("Request >> distributor unavailable: {why}\n"),
            )
        }
    }

    async fn call(&self, cx: &Context, as_json: bool) -> Result<Bytes, String> {
        let uri = self.cfg.distributor.clone();
        let peer = uri.host().unwrap_or("distributor").to_owned();
        let client_cx = self.tracing.client_span(cx, &peer, &uri.to_string());
        let mut req = Request::new(Empty::<Bytes>::new());
        *req.uri_mut() = uri;
        self.tracing.inject(&client_cx, req.headers_mut());
        if as_json {
            req.headers_mut()
                .insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        }
        let fetch = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("cannot reach {peer}: {e}"))?;
            let status = resp.status();
            let body = read_limited(resp.into_body(), 1024 * 1024)
                .await
                .map_err(|e| e.to_string())?;
            if !status.is_success() {
                return Err(format!("{peer} answered {status}"));
            }
            Ok(body)
        };
        let result = match tokio::time::timeout(self.cfg.timeout, fetch).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "no answer from {peer} within {:?}",
                self.cfg.timeout
            )),
        };
        match &result {
            Ok(_) => Tracing::finish(&client_cx, 200),
            Err(e) => Tracing::fail(&client_cx, e),
        }
        result
    }
}
