//! The HTTP side: the page, the JSON API, the event stream and the gate actions,
//! each behind the checks of [`Access`](super::access).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};

use super::access::{Access, Refusal};
use super::hub::{Hub, Snapshot, stopped};
use super::view;
use crate::store::Gate;

/// A response body: a whole one, or the event stream.
pub(crate) type Body = Either<Full<Bytes>, EventBody>;

/// The event stream's body: what the stream's task sends. When the connection goes,
/// hyper drops the body and the task sees its channel closed.
pub(crate) struct EventBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for EventBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

const PAGE: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 256;
/// Event streams open at once; more are answered 503.
pub(crate) const MAX_STREAMS: usize = 64;
/// A comment line on idle streams, so proxies and browsers keep them open.
const KEEPALIVE: Duration = Duration::from_secs(15);

pub(crate) struct App {
    pub(crate) hub: Arc<Hub>,
    pub(crate) access: Access,
    pub(crate) streams: Arc<Semaphore>,
    pub(crate) stop: watch::Receiver<bool>,
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Either::Left(Full::new(body.into())));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    secure(h);
    r
}

/// Headers on every answer: nothing framed, sniffed, cached or referred, and a page
/// that loads only its own script and style and talks only to this server.
fn secure(h: &mut http::HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    respond(status, "application/json", v.to_string())
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json_response(status, &json!({"error": message.into()}))
}

fn refused(r: Refusal) -> Response<Body> {
    let mut resp = error(r.status(), r.to_string());
    if r.status() == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

/// `%XX` decoding of one path segment; `None` for bad escapes or non-UTF-8.
fn decode(segment: &str) -> Option<String> {
    let b = segment.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A rollout id the store would take: 1-2048 characters, no control characters.
/// Anything else is answered 400 before the store is asked (or a poller started).
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 2048 && !id.chars().any(char::is_control)
}

/// The value of `key` in a query string.
fn query(req: &Request<Incoming>, key: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| decode(v)).flatten()
    })
}

pub(crate) async fn handle(
    app: Arc<App>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    if let Err(r) = app.access.host(&req) {
        return refused(r);
    }
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segments.first() == Some(&"api")
        && let Err(r) = app.access.same_site(&req)
    {
        return refused(r);
    }
    if req.method() == Method::GET
        && segments.first() == Some(&"api")
        && let Err(r) = app.access.view(&req)
    {
        return refused(r);
    }
    match (req.method(), segments.as_slice()) {
        (&Method::GET | &Method::HEAD, [""] | ["index.html"]) => {
            respond(StatusCode::OK, "text/html; charset=utf-8", PAGE)
        }
        (&Method::GET | &Method::HEAD, ["app.js"]) => {
            respond(StatusCode::OK, "text/javascript; charset=utf-8", SCRIPT)
        }
        (&Method::GET | &Method::HEAD, ["app.css"]) => {
            respond(StatusCode::OK, "text/css; charset=utf-8", STYLE)
        }
        (&Method::GET | &Method::HEAD, ["favicon.ico"]) => {
            respond(StatusCode::NO_CONTENT, "image/x-icon", "")
        }
        (&Method::GET, ["api", "rollouts"]) => {
            match app.hub.store().history(None, super::hub::LIST_LIMIT).await {
                Ok(lines) => json_response(StatusCode::OK, &view::list(&lines)),
                Err(e) => error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    view::trouble("the store cannot be read", &e),
                ),
            }
        }
        (&Method::GET, ["api", "rollouts", id]) => {
            let Some(id) = decode(id).filter(|id| valid_id(id)) else {
                return error(StatusCode::BAD_REQUEST, "not a rollout id");
            };
            match app.hub.detail_now(&id).await {
                Ok(Some(v)) => json_response(StatusCode::OK, &v),
                Ok(None) => error(
                    StatusCode::NOT_FOUND,
                    format!("no rollout '{id}' in the store"),
                ),
                Err(e) => error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    view::trouble("the store cannot be read", &e),
                ),
            }
        }
        (&Method::GET, ["api", "stream"]) => match query(&req, "rollout") {
            Some(id) if !valid_id(&id) => error(StatusCode::BAD_REQUEST, "not a rollout id"),
            rollout => stream(&app, rollout),
        },
        (&Method::POST, ["api", "rollouts", id, gate]) => {
            let (Some(id), Ok(gate)) = (decode(id).filter(|id| valid_id(id)), gate.parse::<Gate>())
            else {
                return error(
                    StatusCode::NOT_FOUND,
                    "POST /api/rollouts/ID/GATE, GATE one of pause, resume, promote, rollback",
                );
            };
            if let Err(r) = app.access.act(&req) {
                return refused(r);
            }
            act(&app, peer, &id, gate).await
        }
        (
            _,
            ["api", "rollouts" | "stream"] | ["api", "rollouts", _] | ["api", "rollouts", _, _],
        )
        | (_, [""] | ["index.html" | "app.js" | "app.css"]) => {
            let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
            r
        }
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

/// Records `gate` for the lease holder of rollout `id`.
async fn act(app: &App, peer: SocketAddr, id: &str, gate: Gate) -> Response<Body> {
    let store = app.hub.store();
    let unreadable = |e: crate::store::StoreError| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            view::trouble("the store cannot be read", &e),
        )
    };
    let rec = match store.get(id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no rollout '{id}' in the store"),
            );
        }
        Err(e) => return unreadable(e),
    };
    let lease = match store.lease(&rec.rollout.route).await {
        Ok(l) => l,
        Err(e) => return unreadable(e),
    };
    if !view::actionable(&rec, lease.as_ref()) {
        return error(
            StatusCode::CONFLICT,
            format!(
                "rollout '{id}' is not running ({}): there is nothing to {}",
                rec.state,
                match gate {
                    Gate::Rollback => "roll back",
                    other => other.as_str(),
                }
            ),
        );
    }
    let by = format!("web view ({})", peer.ip());
    match store.request(id, gate, &by).await {
        Ok(asked) => {
            tracing::info!(rollout = %id, %gate, %by, "gate requested from the web view");
            json_response(
                StatusCode::ACCEPTED,
                &json!({"gate": gate.as_str(), "rollout": id, "requested": view::ms(asked.at)}),
            )
        }
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            view::trouble("the gate was not recorded", &e),
        ),
    }
}

/// The event stream: `list` events with the history, `rollout` events with the
/// watched rollout's view (only the timeline lines not sent before).
fn stream(app: &Arc<App>, rollout: Option<String>) -> Response<Body> {
    let Ok(permit) = app.streams.clone().try_acquire_owned() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many open streams; try again later",
        );
    };
    let (tx, body) = mpsc::channel(8);
    let list = app.hub.list();
    let detail = rollout.as_deref().map(|id| app.hub.rollout(id));
    let stop = app.stop.clone();
    tokio::spawn(async move {
        let _permit = permit;
        pump(tx, list, detail, stop).await;
    });
    let mut r = Response::new(Either::Right(EventBody(body)));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    secure(h);
    r
}

/// A reader that takes longer than this to take an event is dropped (its stream
/// ends), so a client that stops reading does not hold a stream forever.
const SEND_LIMIT: Duration = Duration::from_secs(10);

async fn send_bytes(tx: &mpsc::Sender<Bytes>, bytes: Bytes) -> bool {
    matches!(
        tokio::time::timeout(SEND_LIMIT, tx.send(bytes)).await,
        Ok(Ok(()))
    )
}

async fn send(tx: &mpsc::Sender<Bytes>, event: &str, data: &Value) -> bool {
    send_bytes(tx, Bytes::from(format!("event: {event}\ndata: {data}\n\n"))).await
}

async fn pump(
    tx: mpsc::Sender<Bytes>,
    mut list: watch::Receiver<Snapshot>,
    mut detail: Option<watch::Receiver<Snapshot>>,
    mut stop: watch::Receiver<bool>,
) {
    // Sends the current snapshots first, then every change.
    list.mark_changed();
    if let Some(d) = detail.as_mut() {
        d.mark_changed();
    }
    let mut sent = Sent::default();
    loop {
        tokio::select! {
            r = list.changed() => {
                if r.is_err() { return; }
                let v = list.borrow_and_update().clone();
                if let Some(v) = v && !send(&tx, "list", &v).await {
                    return;
                }
            }
            r = async { detail.as_mut()?.changed().await.ok() }, if detail.is_some() => {
                let Some(()) = r else { return };
                let v = detail.as_mut().and_then(|d| d.borrow_and_update().clone());
                if let Some(v) = v {
                    let v = delta(&v, &mut sent);
                    if !send(&tx, "rollout", &v).await { return; }
                }
            }
            () = tokio::time::sleep(KEEPALIVE) => {
                if !send_bytes(&tx, Bytes::from_static(b": keepalive\n\n")).await {
                    return;
                }
            }
            () = stopped(&mut stop) => return,
            () = tx.closed() => return,
        }
    }
}

/// What a stream has sent of the timeline: how many lines, and the last one.
#[derive(Default)]
struct Sent {
    count: usize,
    last: Option<Value>,
}

/// `v` with only the timeline lines the page does not have, and `entries_from`
/// saying where they go. The whole timeline when what was sent is no longer its
/// start (lines recorded late sort before lines already sent; a pruned record).
fn delta(v: &Value, sent: &mut Sent) -> Value {
    let mut v = v.clone();
    let all = v["entries"].as_array().cloned().unwrap_or_default();
    let kept =
        sent.count > 0 && sent.count <= all.len() && all.get(sent.count - 1) == sent.last.as_ref();
    let from = if kept { sent.count } else { 0 };
    v["entries"] = Value::Array(all.get(from..).unwrap_or_default().to_vec());
    v["entries_from"] = json!(from);
    sent.count = all.len();
    sent.last = all.last().cloned();
    v
}

/// Accepts connections until `stop` turns true; each is served on its own task and
/// closed gracefully on stop.
pub(crate) async fn serve(listener: TcpListener, app: Arc<App>) {
    let conns = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(64 * 1024);
    let mut stop = app.stop.clone();
    loop {
        let permit = tokio::select! {
            p = conns.clone().acquire_owned() => p,
            () = stopped(&mut stop) => return,
        };
        let Ok(permit) = permit else { return };
        let (stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "web view: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => return,
        };
        let app = app.clone();
        let svc = service_fn(move |req| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(handle(app, peer, req).await) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), svc);
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "web view connection error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_decoded_strictly() {
        assert_eq!(decode("web%2Fv1").as_deref(), Some("web/v1"));
        assert_eq!(decode("plain").as_deref(), Some("plain"));
        assert_eq!(decode("%zz"), None);
        assert_eq!(decode("%4"), None);
        assert_eq!(decode("%ff"), None);
    }

    #[test]
    fn the_stream_sends_only_new_timeline_lines() {
        let mut sent = Sent::default();
        let lines = |v: &Value| (v["entries"].clone(), v["entries_from"].clone());
        let d = delta(&json!({"entries": [1, 2, 3]}), &mut sent);
        assert_eq!(lines(&d), (json!([1, 2, 3]), json!(0)));
        let d = delta(&json!({"entries": [1, 2, 3, 4]}), &mut sent);
        assert_eq!(lines(&d), (json!([4]), json!(3)));
        let d = delta(&json!({"entries": [1, 2, 3, 4]}), &mut sent);
        assert_eq!(lines(&d), (json!([]), json!(4)));
        // A line recorded late sorts before one already sent: all again.
        let d = delta(&json!({"entries": [1, 2, 3, 9, 4, 5]}), &mut sent);
        assert_eq!(lines(&d), (json!([1, 2, 3, 9, 4, 5]), json!(0)));
        // A shorter timeline (pruned, replaced) is sent whole.
        let d = delta(&json!({"entries": [7]}), &mut sent);
        assert_eq!(lines(&d), (json!([7]), json!(0)));
    }
}
