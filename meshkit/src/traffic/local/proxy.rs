//! The data plane: accept loop, route match, weighted pick, forwarding, counting.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::client_body::{BodyEnd, BodyState, ClientBody};
use super::limit::{ConnLimit, Slot, accept_next};
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

/// Serves HTTP/1 connections under a [`ConnLimit`], closes them gracefully on
/// shutdown or when the limit asks, and drains them.
pub(crate) struct ConnServer {
    builder: http1::Builder,
    limit: Arc<ConnLimit>,
    stop: watch::Receiver<bool>,
}

impl ConnServer {
    pub(crate) fn new(limit: Arc<ConnLimit>, stop: watch::Receiver<bool>) -> Self {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10))
            .max_buf_size(64 * 1024);
        Self {
            builder,
            limit,
            stop,
        }
    }

    /// Serves one connection on a task of the current runtime; `slot` is its place
    /// under the cap, given back when it closes.
    pub(crate) fn serve<H, F>(&self, stream: TcpStream, slot: Slot, handler: H)
    where
        H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
        F: Future<Output = Response<Body>> + Send + 'static,
    {
        let state = slot.conn.clone();
        let flags = slot.conn.clone();
        let svc = service_fn(move |req| {
            flags.started.store(true, Ordering::Relaxed);
            flags.busy.store(true, Ordering::Relaxed);
            let response = handler(req);
            let flags = flags.clone();
            async move {
                let r = response.await;
                flags.busy.store(false, Ordering::Relaxed);
                Ok::<_, Infallible>(r)
            }
        });
        let conn = self.builder.serve_connection(TokioIo::new(stream), svc);
        let mut stop = self.stop.clone();
        tokio::spawn(async move {
            tokio::pin!(conn);
            let mut closing = false;
            let result = loop {
                tokio::select! {
                    r = conn.as_mut() => break r,
                    () = state.close.notified(), if !closing => {
                        // hyper's graceful shutdown waits for a first request that may
                        // never come: a connection that sent none is simply closed.
                        if !state.started.load(Ordering::Relaxed) {
                            break Ok(());
                        }
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                    _ = stop.wait_for(|s| *s), if !closing => {
                        if !state.started.load(Ordering::Relaxed) {
                            break Ok(());
                        }
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            };
            drop(slot);
            if let Err(e) = result {
                tracing::debug!(error = %e, "local mesh connection error");
            }
        });
    }

    /// Waits until the connections under this server's limit have closed (they close
    /// after their current request once `stop` turns true), for at most `limit`.
    pub(crate) async fn drain(self, limit: Duration) {
        self.limit.drained(limit).await;
    }
}

/// Serves until `stopped` turns true, then drains connections (10 s at most). Each
/// connection gets its own handler from `make_handler`, so it can keep state.
pub(crate) async fn serve<M, H, F>(
    listener: TcpListener,
    mut stopped: watch::Receiver<bool>,
    limit: Arc<ConnLimit>,
    make_handler: M,
) where
    M: Fn() -> H,
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let server = ConnServer::new(limit.clone(), stopped.clone());
    while let Some((stream, slot)) = accept_next(&listener, &limit, &mut stopped).await {
        server.serve(stream, slot, make_handler());
    }
    drop(listener);
    server.drain(Duration::from_secs(10)).await;
}

/// One downstream gateway connection's state: its upstream connections, the client's
/// address as an `X-Forwarded-For` entry, and how the current request's body went.
pub(crate) struct Downstream {
    shared: Arc<Shared>,
    pool: ConnPool,
    worker: usize,
    peer: Option<HeaderValue>,
    body: Arc<BodyState>,
}

impl Downstream {
    /// A connection from `peer` served by worker `worker`.
    pub(crate) fn new(shared: Arc<Shared>, worker: usize, peer: Option<SocketAddr>) -> Arc<Self> {
        Arc::new(Self {
            shared,
            pool: ConnPool::new(),
            worker,
            peer: peer.and_then(|p| HeaderValue::try_from(p.ip().to_string()).ok()),
            body: Arc::default(),
        })
    }
}

/// Forwards one request of `conn` (owned, so the future is `'static`).
pub(crate) async fn handle(conn: Arc<Downstream>, req: Request<Incoming>) -> Response<Body> {
    forward(&conn, req).await
}

/// A 4xx the mesh answers itself, closing the connection (its framing may be off, as
/// nginx does).
fn refuse(status: StatusCode, why: &str) -> Response<Body> {
    let mut r = full(
        status,
        "application/json",
        format!(r#"{{"message":"error","error":"{why}"}}"#),
    );
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Why the mesh refuses a request before routing it, as a careful reverse proxy does
/// (RFC 9112 §3.2): an HTTP/1.1 request must carry exactly one `Host`; `CONNECT` asks
/// for a tunnel, which a reverse proxy does not open.
fn ambiguity(req: &Request<Incoming>) -> Option<(StatusCode, &'static str)> {
    let hosts = req.headers().get_all(header::HOST).iter().count();
    if hosts > 1 {
        return Some((StatusCode::BAD_REQUEST, "more than one Host header"));
    }
    if hosts == 0 && req.version() == http::Version::HTTP_11 {
        return Some((
            StatusCode::BAD_REQUEST,
            "HTTP/1.1 request without a Host header",
        ));
    }
    if req.method() == http::Method::CONNECT {
        return Some((
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT is not supported: this is a reverse proxy",
        ));
    }
    None
}

/// Appends the client's address to `X-Forwarded-For` (keeping what earlier proxies
/// wrote) and sets `X-Forwarded-Proto` to `http`, the scheme the gateway serves, over
/// whatever the client sent. `Forwarded` (RFC 7239) is passed on as it came.
fn forwarded_for(h: &mut HeaderMap, peer: Option<&HeaderValue>) {
    if let Some(ip) = peer {
        let earlier: Vec<&[u8]> = h
            .get_all(X_FORWARDED_FOR)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        let value = if earlier.is_empty() {
            ip.clone()
        } else {
            let mut joined = earlier.join(&b", "[..]);
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(ip.as_bytes());
            HeaderValue::from_bytes(&joined).unwrap_or_else(|_| ip.clone())
        };
        h.insert(X_FORWARDED_FOR, value);
    }
    h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    // Not standard, but sent by old clients and honoured by some servers: stripped as
    // nginx and Envoy strip it.
    HeaderName::from_static("proxy-connection"),
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

async fn forward(conn: &Downstream, req: Request<Incoming>) -> Response<Body> {
    let (shared, pool, worker) = (&*conn.shared, &conn.pool, conn.worker);
    if let Some((status, why)) = ambiguity(&req) {
        return refuse(status, why);
    }
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
    forwarded_for(&mut parts.headers, conn.peer.as_ref());
    let started = Instant::now();
    let body = ClientBody::new(body, conn.body.clone());
    let result = pool
        .send_within(
            index,
            target.addr,
            Request::from_parts(parts, body),
            started,
            shared.upstream_timeout,
        )
        .await;
    // The client's fault is answered as such and counted against no target.
    match (&result, conn.body.end()) {
        (Some(Err(_)), BodyEnd::Failed) => {
            route.client_errors.fetch_add(1, Ordering::Relaxed);
            return refuse(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            );
        }
        (None, BodyEnd::WaitingForClient | BodyEnd::Failed) => {
            route.client_errors.fetch_add(1, Ordering::Relaxed);
            return refuse(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time",
            );
        }
        _ => {}
    }
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
