//! The request handler.

use std::future::Future;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::Empty;
use opentelemetry::Context;
use sample_support::client::{HttpClient, new_client, read_limited};
use sample_support::server::{self, Resp, json, json_string};
use sample_support::xray::Tracing;
use tokio::net::TcpListener;

use crate::Config;

/// The largest downstream body accepted.
const MAX_DOWNSTREAM_BODY: usize = 1024 * 1024;

/// The service: cheap to clone, one per process (or per test).
#[derive(Clone, Debug)]
pub struct App {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cfg: Config,
    ok_body: Bytes,
    self_json: String,
    client: HttpClient,
    tracing: Tracing,
    /// One permit per `/downstream/` call in flight.
    downstream_slots: Arc<tokio::sync::Semaphore>,
}

impl App {
    /// A service with these settings and tracing.
    pub fn new(cfg: Config, tracing: Tracing) -> Self {
        let ok_body = format!(
            r#"{{"message":"ok","service":{},"version":{}}}"#,
            json_string(&cfg.name),
            json_string(&cfg.version)
        );
        let self_json = json_string(&cfg.name);
        let downstream_slots = Arc::new(tokio::sync::Semaphore::new(
            cfg.downstream_concurrency
                .clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
        ));
        Self {
            inner: Arc::new(Inner {
                downstream_slots,
                cfg,
                ok_body: Bytes::from(ok_body),
                self_json,
                client: new_client(),
                tracing,
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.inner.cfg
    }

    /// Serves on `listener` until `shutdown` completes; in-flight requests finish.
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
        server::serve_traced(listener, handler, shutdown, &self.inner.tracing).await
    }

    /// Answers one request.
    pub async fn handle<B>(&self, req: Request<B>) -> Resp {
        let inner = &self.inner;
        let cfg = &inner.cfg;
        let cx = inner.tracing.server_span(
            req.headers(),
            req.method().as_str(),
            req.uri().path(),
            &cfg.version,
        );
        if !cfg.extra_latency.is_zero() {
            tokio::time::sleep(cfg.extra_latency).await;
        }
        let mut resp = if cfg.fail_rate > 0.0 && fastrand::f64() < cfg.fail_rate {
            self.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INJECTED_FAILURE",
                "failure injected by FAIL_RATE",
            )
        } else if let Some(service) = downstream_segment(req.method(), req.uri()) {
            self.downstream(service, &cx).await
        } else {
            json(StatusCode::OK, inner.ok_body.clone())
        };
        inner.tracing.echo(&cx, resp.headers_mut());
        Tracing::finish(&cx, resp.status().as_u16());
        resp
    }

    fn error(&self, status: StatusCode, code: &str, message: &str) -> Resp {
        let body = format!(
            r#"{{"message":"error","service":{},"error":{{"code":{},"message":{}}}}}"#,
            self.inner.self_json,
            json_string(code),
            json_string(message)
        );
        json(status, body)
    }

    async fn downstream(&self, service: &str, cx: &Context) -> Resp {
        let inner = &self.inner;
        let Some(addr) = inner.cfg.allowed(service) else {
            return self.error(
                StatusCode::FORBIDDEN,
                "DOWNSTREAM_NOT_ALLOWED",
                &format!("downstream '{service}' is not in DOWNSTREAM_ALLOW"),
            );
        };
        let Ok(_slot) = inner.downstream_slots.clone().try_acquire_owned() else {
            return self.error(
                StatusCode::SERVICE_UNAVAILABLE,
                "DOWNSTREAM_BUSY",
                &format!(
                    "{} downstream calls are in flight already (DOWNSTREAM_CONCURRENCY); try again",
                    inner.cfg.downstream_concurrency
                ),
            );
        };
        let url = format!("http://{addr}/");
        let Ok(uri) = url.parse::<Uri>() else {
            return self.error(
                StatusCode::BAD_REQUEST,
                "BAD_DOWNSTREAM",
                &format!("'{service}' is not a host name"),
            );
        };
        let client_cx = inner.tracing.client_span(cx, service, &url);
        let mut req = Request::new(Empty::<Bytes>::new());
        *req.uri_mut() = uri;
        inner.tracing.inject(&client_cx, req.headers_mut());
        req.headers_mut()
            .insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let limit = inner.cfg.downstream_timeout;
        let fetch = async {
            let resp = inner.client.request(req).await.map_err(|e| {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "DOWNSTREAM_UNREACHABLE",
                    e.to_string(),
                )
            })?;
            let status = resp.status().as_u16();
            let body = read_limited(resp.into_body(), MAX_DOWNSTREAM_BODY)
                .await
                .map_err(|e| (StatusCode::BAD_GATEWAY, "DOWNSTREAM_BODY", e.to_string()))?;
            Ok::<_, (StatusCode, &str, String)>((status, body))
        };
        let result = match tokio::time::timeout(limit, fetch).await {
            Err(_) => Err((
                StatusCode::GATEWAY_TIMEOUT,
                "DOWNSTREAM_TIMEOUT",
                format!("no answer from '{service}' within {limit:?}"),
            )),
            Ok(r) => r,
        };
        let (status, body) = match result {
            Ok(ok) => ok,
            Err((status, code, message)) => {
                Tracing::fail(&client_cx, &message);
                return self.error(status, code, &message);
            }
        };
        Tracing::finish(&client_cx, status);
        // Like the original, the body must be JSON whatever the status. It is checked
        // without building a tree (a 1 MiB answer parsed into values took ~15x its
        // size) and passed on as it came.
        let checked = std::str::from_utf8(&body)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                serde_json::from_str::<serde::de::IgnoredAny>(text)
                    .map(|_| text)
                    .map_err(|e| e.to_string())
            });
        match checked {
            Ok(raw) => json(
                StatusCode::OK,
                format!(
                    r#"{{"message":"fetched!","service":{},"response":{}}}"#,
                    inner.self_json,
                    raw.trim()
                ),
            ),
            Err(e) => self.error(
                StatusCode::BAD_GATEWAY,
                "DOWNSTREAM_NOT_JSON",
                &format!("'{service}' answered {status} with a body that is not JSON: {e}"),
            ),
        }
    }
}

/// `/downstream/<service>[/...]` → `<service>` (any method, as the original's
/// `app.use`); `None` for every other path.
fn downstream_segment<'a>(_method: &Method, uri: &'a Uri) -> Option<&'a str> {
    let rest = uri.path().strip_prefix("/downstream/")?;
    let service = rest.split('/').next().unwrap_or_default();
    (!service.is_empty()).then_some(service)
}
