//! A hyper 1 HTTP/1.1 server with graceful shutdown, header and body limits.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::limit::ConnLimit;

/// The response type every sample handler returns.
pub type Resp = Response<Full<Bytes>>;

/// Server limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request head (request line and headers). Default: 16 KiB.
    pub max_header_bytes: usize,
    /// Largest declared request body; larger gets 413. Default: 64 KiB.
    pub max_body_bytes: u64,
    /// Time allowed to send the request head. Default: 10 s.
    pub header_read_timeout: Duration,
    /// How long in-flight requests may take to finish after shutdown starts. Default: 10 s.
    pub shutdown_grace: Duration,
    /// The most connections open at once. Default: 1024, lowered at start to what the
    /// process's open-file limit can hold. At the cap the oldest connections make room
    /// (one that never sent a request is closed; a keep-alive one closes after its
    /// response), so the server keeps answering.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 16 * 1024,
            max_body_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            max_connections: 1024,
        }
    }
}

/// A response with a body and content type.
pub fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A JSON response (the body must already be JSON text).
pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    respond(status, "application/json; charset=utf-8", body)
}

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    respond(status, "text/plain; charset=utf-8", body)
}

/// JSON-escapes a string, quotes included.
pub fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// Serves `handler` on `listener` until `shutdown` completes, then stops accepting
/// and lets in-flight requests finish (up to [`Limits::shutdown_grace`]).
pub async fn serve<H, F>(
    listener: TcpListener,
    limits: Limits,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Resp> + Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    let limit = ConnLimit::new(limits.max_connections);
    tracing::debug!(cap = limit.max(), "connection cap");
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, slot) = tokio::select! {
            accepted = limit.accept(&listener) => accepted,
            () = &mut shutdown => break,
        };
        let handler = handler.clone();
        let max_body = limits.max_body_bytes;
        let state = slot.conn.clone();
        let flags = slot.conn.clone();
        let svc = service_fn(move |req: Request<Incoming>| {
            flags.started.store(true, Ordering::Relaxed);
            flags.busy.store(true, Ordering::Relaxed);
            let handler = handler.clone();
            let flags = flags.clone();
            async move {
                let resp = if declared_length(&req).is_some_and(|n| n > max_body) {
                    text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n")
                } else {
                    handler(req).await
                };
                flags.busy.store(false, Ordering::Relaxed);
                Ok::<_, Infallible>(resp)
            }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), svc);
        let mut stop = stop.clone();
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
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    if limit.drained(limits.shutdown_grace).await {
        tracing::info!("all connections finished");
    } else {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
    Ok(())
}

fn declared_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}

/// Binds `0.0.0.0:port` for a sample's `main`; on failure prints why and gives exit
/// code 1.
pub async fn bind_or_exit(program: &str, port: u16) -> Result<TcpListener, std::process::ExitCode> {
    TcpListener::bind(("0.0.0.0", port)).await.map_err(|e| {
        eprintln!("{program}: cannot listen on port {port}: {e}");
        std::process::ExitCode::from(1)
    })
}

/// A sample's exit code for the end of serving: 0, or 1 with the error printed.
pub fn exit_code(program: &str, result: io::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

/// [`serve`] with the default [`Limits`], then flushes and stops `tracing`: what every
/// sample's `App::serve` does.
pub async fn serve_traced<H, F>(
    listener: TcpListener,
    handler: H,
    shutdown: impl Future<Output = ()>,
    tracing: &crate::xray::Tracing,
) -> io::Result<()>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Resp> + Send + 'static,
{
    let result = serve(listener, Limits::default(), handler, shutdown).await;
    tracing.shutdown();
    result
}
