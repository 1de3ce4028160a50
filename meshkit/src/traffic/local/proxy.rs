//! The data plane: accept loop, route match, weighted pick, forwarding, counting.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

use super::upstream::ConnPool;
use super::{Route, Shared};

pub(crate) type Body = BoxBody<Bytes, hyper::Error>;

pub(crate) fn full(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(
        Full::new(body.into())
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

/// Serves until `stopped` turns true, then drains connections (10 s at most). Each
/// connection gets its own handler from `make_handler`, so it can keep state.
pub(crate) async fn serve<M, H, F>(
    listener: TcpListener,
    mut stopped: watch::Receiver<bool>,
    make_handler: M,
) where
    M: Fn() -> H,
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(64 * 1024);
    let graceful = GracefulShutdown::new();
    let stop = async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "local mesh accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let h = make_handler();
        let svc = service_fn(move |req| {
            let response = h(req);
            async move { Ok::<_, Infallible>(response.await) }
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), svc));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "local mesh connection error");
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
}

pub(crate) async fn serve_gateway(
    listener: TcpListener,
    shared: Arc<Shared>,
    stopped: watch::Receiver<bool>,
) {
    serve(listener, stopped, move || {
        let shared = shared.clone();
        let pool = Arc::new(ConnPool::new());
        move |req| {
            let (shared, pool) = (shared.clone(), pool.clone());
            async move { forward(&shared, &pool, req).await }
        }
    })
    .await;
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(h: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        h.remove(HeaderName::from_static(name));
    }
}

/// The upstream path: the matched prefix rewritten to `/`.
fn upstream_path(route: &Route, uri: &Uri) -> String {
    let path = uri.path();
    let rest = if route.prefix == "/" {
        path
    } else {
        path.strip_prefix(route.prefix.as_str()).unwrap_or(path)
    };
    let rest = rest.trim_start_matches('/');
    match uri.query() {
        Some(q) => format!("/{rest}?{q}"),
        None => format!("/{rest}"),
    }
}

async fn forward(shared: &Shared, pool: &ConnPool, req: Request<Incoming>) -> Response<Body> {
    let Some(route) = shared.routes.iter().find(|r| r.matches(req.uri().path())) else {
        return full(
            StatusCode::NOT_FOUND,
            "application/json",
            r#"{"message":"error","error":"no route for this path"}"#,
        );
    };
    let table = route.table();
    let n = route.counter.fetch_add(1, Ordering::Relaxed);
    let Some((index, target)) = table
        .pick(n)
        .and_then(|i| route.targets.get(i).map(|t| (i, t)))
    else {
        return full(
            StatusCode::SERVICE_UNAVAILABLE,
            "application/json",
            r#"{"message":"error","error":"route has no weighted target"}"#,
        );
    };
    let (mut parts, body) = req.into_parts();
    let path = upstream_path(route, &parts.uri);
    let Ok(uri) = path.parse::<Uri>() else {
        return full(
            StatusCode::BAD_REQUEST,
            "application/json",
            r#"{"message":"error","error":"bad request path"}"#,
        );
    };
    parts.uri = uri;
    strip_hop_by_hop(&mut parts.headers);
    let started = Instant::now();
    let result = tokio::time::timeout(
        shared.upstream_timeout,
        pool.send(index, target.addr, Request::from_parts(parts, body)),
    )
    .await;
    let second = shared.second();
    match result {
        Ok(Ok(resp)) => {
            target
                .stats
                .record(second, Some(resp.status().as_u16()), started.elapsed());
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, body.boxed())
        }
        Ok(Err(e)) => {
            target.stats.record(second, None, started.elapsed());
            tracing::debug!(target = %target.name, error = %e, "upstream error");
            full(
                StatusCode::BAD_GATEWAY,
                "application/json",
                format!(
                    r#"{{"message":"error","error":"upstream '{}' failed"}}"#,
                    target.name
                ),
            )
        }
        Err(_) => {
            target.stats.record(second, None, started.elapsed());
            full(
                StatusCode::GATEWAY_TIMEOUT,
                "application/json",
                format!(
                    r#"{{"message":"error","error":"upstream '{}' timed out"}}"#,
                    target.name
                ),
            )
        }
    }
}
