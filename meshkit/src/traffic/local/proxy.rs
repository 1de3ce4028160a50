//! The data plane: accept loop, route match, weighted pick, forwarding, counting.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::upstream::ConnPool;
use super::{Route, Shared};

/// A proxied upstream body, or one the mesh made itself. An enum rather than a boxed
/// body: no allocation per response.
pub(crate) type Body = Either<Incoming, Full<Bytes>>;

pub(crate) fn full(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Either::Right(Full::new(body.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

/// Serves HTTP/1 connections and drains them on shutdown.
pub(crate) struct ConnServer {
    builder: http1::Builder,
    graceful: GracefulShutdown,
}

impl ConnServer {
    pub(crate) fn new() -> Self {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10))
            .max_buf_size(64 * 1024);
        Self {
            builder,
            graceful: GracefulShutdown::new(),
        }
    }

    /// Serves one connection on a task of the current runtime.
    pub(crate) fn serve<H, F>(&self, stream: TcpStream, handler: H)
    where
        H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
        F: Future<Output = Response<Body>> + Send + 'static,
    {
        let svc = service_fn(move |req| {
            let response = handler(req);
            async move { Ok::<_, Infallible>(response.await) }
        });
        let conn = self
            .graceful
            .watch(self.builder.serve_connection(TokioIo::new(stream), svc));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "local mesh connection error");
            }
        });
    }

    /// Asks every connection to close after its current request, and waits for that
    /// for at most `limit`.
    pub(crate) async fn drain(self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.graceful.shutdown()).await;
    }
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
    let server = ConnServer::new();
    while let Some(stream) = accept_next(&listener, &mut stopped).await {
        server.serve(stream, make_handler());
    }
    drop(listener);
    server.drain(Duration::from_secs(10)).await;
}

/// The next accepted connection (with `TCP_NODELAY`), or `None` once `stopped` turns
/// true or its sender is gone. Accept errors (out of file descriptors and the like) are
/// logged and retried after 50 ms.
pub(crate) async fn accept_next(
    listener: &TcpListener,
    stopped: &mut watch::Receiver<bool>,
) -> Option<TcpStream> {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => {
                    let _ = s.set_nodelay(true);
                    return Some(s);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "local mesh accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = async { let _ = stopped.wait_for(|s| *s).await; } => return None,
        }
    }
}

/// One downstream gateway connection's state: its upstream connections.
pub(crate) struct Downstream {
    shared: Arc<Shared>,
    pool: ConnPool,
    worker: usize,
}

impl Downstream {
    /// A connection served by worker `worker`.
    pub(crate) fn new(shared: Arc<Shared>, worker: usize) -> Arc<Self> {
        Arc::new(Self {
            shared,
            pool: ConnPool::new(),
            worker,
        })
    }
}

/// Forwards one request of `conn` (owned, so the future is `'static`).
pub(crate) async fn handle(conn: Arc<Downstream>, req: Request<Incoming>) -> Response<Body> {
    forward(&conn.shared, &conn.pool, conn.worker, req).await
}

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers: the fixed list and every header the `Connection`
/// header names (RFC 9110 §7.6.1), except `Host` and `Content-Length`, which the
/// message needs on the next hop too. One pass over the (usually few) headers first:
/// most messages have none, and then nothing is looked up.
fn strip_hop_by_hop(h: &mut HeaderMap) {
    if !h.keys().any(|k| HOP_BY_HOP.contains(k)) {
        return;
    }
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| *n != header::HOST && *n != header::CONTENT_LENGTH)
        .collect();
    for name in named.iter().chain(&HOP_BY_HOP) {
        h.remove(name);
    }
}

/// The upstream URI: the matched prefix rewritten to `/`, in origin form. `None` when
/// the result is not a valid URI.
fn upstream_uri(route: &Route, uri: Uri) -> Option<Uri> {
    let path = uri.path();
    let origin_form = uri.scheme().is_none() && path.starts_with('/') && !path.starts_with("//");
    if route.prefix == "/" && origin_form {
        return Some(uri); // already origin form with nothing to rewrite
    }
    let rest = if route.prefix == "/" {
        path
    } else {
        path.strip_prefix(route.prefix.as_str()).unwrap_or(path)
    };
    let rest = rest.trim_start_matches('/');
    let rewritten = match uri.query() {
        Some(q) => format!("/{rest}?{q}"),
        None => format!("/{rest}"),
    };
    rewritten.parse().ok()
}

async fn forward(
    shared: &Shared,
    pool: &ConnPool,
    worker: usize,
    req: Request<Incoming>,
) -> Response<Body> {
    let Some(route) = shared.routes.iter().find(|r| r.matches(req.uri().path())) else {
        return full(
            StatusCode::NOT_FOUND,
            "application/json",
            r#"{"message":"error","error":"no route for this path"}"#,
        );
    };
    let Some((index, target)) = route
        .pick(worker)
        .and_then(|i| route.targets.get(i).map(|t| (i, t)))
    else {
        return full(
            StatusCode::SERVICE_UNAVAILABLE,
            "application/json",
            r#"{"message":"error","error":"route has no weighted target"}"#,
        );
    };
    let (mut parts, body) = req.into_parts();
    let Some(uri) = upstream_uri(route, std::mem::take(&mut parts.uri)) else {
        return full(
            StatusCode::BAD_REQUEST,
            "application/json",
            r#"{"message":"error","error":"bad request path"}"#,
        );
    };
    parts.uri = uri;
    strip_hop_by_hop(&mut parts.headers);
    let started = Instant::now();
    let result = pool
        .send_within(
            index,
            target.addr,
            Request::from_parts(parts, body),
            started,
            shared.upstream_timeout,
        )
        .await;
    let done = Instant::now();
    let second = shared.second_at(done);
    let took = done.saturating_duration_since(started);
    match result {
        Some(Ok(resp)) => {
            target
                .stats
                .record(worker, second, Some(resp.status().as_u16()), took);
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Either::Left(body))
        }
        Some(Err(e)) => {
            target.stats.record(worker, second, None, took);
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
        None => {
            target.stats.record(worker, second, None, took);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_names_are_stripped_but_not_host_or_content_length() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "close, X-Secret"),
            ("connection", " Host , content-length,, bad name"),
            ("x-secret", "1"),
            ("host", "example"),
            ("content-length", "2"),
            ("transfer-encoding", "chunked"),
            ("x-kept", "1"),
        ] {
            h.append(
                HeaderName::from_static(k),
                http::HeaderValue::from_static(v),
            );
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-length", "host", "x-kept"]);
    }
}
