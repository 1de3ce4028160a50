//! Upstream connections, kept per downstream connection.
//!
//! A downstream HTTP/1 connection carries one request at a time, so it needs at most one
//! upstream connection per target. Keeping them with the downstream connection (as
//! Envoy keeps pools per worker) avoids a shared pool and its lock on every request,
//! and closes the upstream connections when the downstream one goes.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use super::client_body::ClientBody;
use std::time::Instant;
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// Why a request got no answer from the upstream.
#[derive(Debug)]
pub(crate) enum UpstreamError {
    Connect(std::io::Error),
    Http(hyper::Error),
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "connect: {e}"),
            Self::Http(e) => write!(f, "{e}"),
        }
    }
}

/// An upstream connection idle longer than this is not reused. Servers close idle
/// keep-alive connections (Node's default after 5 s), and a request written just as
/// the server closes is lost; reusing only recently used connections avoids that race.
const REUSE_WITHIN: Duration = Duration::from_secs(2);

/// An idle upstream connection and when it was last used.
type Idle = (SendRequest<ClientBody>, Instant);

/// One idle connection per target of the route, indexed like the route's targets.
pub(crate) struct ConnPool {
    idle: Mutex<Vec<Option<Idle>>>,
    /// The downstream connection's upstream timer, kept between its requests.
    timer: Mutex<Option<Pin<Box<Sleep>>>>,
}

impl ConnPool {
    pub(crate) fn new() -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            timer: Mutex::new(None),
        }
    }

    /// [`send`](Self::send) with an answer due within `limit` of `now`; `None` when it
    /// is late. The connection's one timer is reused: each request only moves its
    /// deadline later, which tokio does without touching its timer wheel, where a new
    /// timer per request would be inserted and removed every time.
    pub(crate) async fn send_within(
        &self,
        index: usize,
        addr: SocketAddr,
        req: Request<ClientBody>,
        now: Instant,
        limit: Duration,
    ) -> Option<Result<Response<Incoming>, UpstreamError>> {
        let Some(due) = now.checked_add(limit) else {
            return Some(self.send(index, addr, req, now).await); // no practical limit
        };
        let due = tokio::time::Instant::from_std(due);
        let kept = self.timer.lock().unwrap_or_else(|e| e.into_inner()).take();
        let mut timer = kept.unwrap_or_else(|| Box::pin(tokio::time::sleep_until(due)));
        timer.as_mut().reset(due);
        let result = tokio::select! {
            biased;
            r = self.send(index, addr, req, now) => Some(r),
            () = timer.as_mut() => None,
        };
        *self.timer.lock().unwrap_or_else(|e| e.into_inner()) = Some(timer);
        result
    }

    fn take(&self, index: usize, now: Instant) -> Option<SendRequest<ClientBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let (sender, used) = idle.get_mut(index).and_then(Option::take)?;
        (now.saturating_duration_since(used) < REUSE_WITHIN && !sender.is_closed())
            .then_some(sender)
    }

    fn put(&self, index: usize, sender: SendRequest<ClientBody>, now: Instant) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() <= index {
            idle.resize_with(index + 1, || None);
        }
        idle[index] = Some((sender, now));
    }

    /// Sends `req` to target `index` at `addr`, reusing this connection's upstream
    /// connection when it is still open. A request the old connection could not take
    /// (closed by the upstream while idle) is sent again on a new one; a request that
    /// was already written is never replayed. `now` is when the request arrived; the
    /// connection counts as used at that time.
    pub(crate) async fn send(
        &self,
        index: usize,
        addr: SocketAddr,
        mut req: Request<ClientBody>,
        now: Instant,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut reused = true;
        loop {
            let mut sender = match self.take(index, now) {
                Some(s) => s,
                None => {
                    reused = false;
                    // Boxed: the rare path should not make every request's future larger.
                    Box::pin(connect(addr)).await?
                }
            };
            if let Err(e) = sender.ready().await {
                if reused {
                    reused = false;
                    continue;
                }
                return Err(UpstreamError::Http(e));
            }
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    self.put(index, sender, now);
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => {
                        req = unsent;
                        reused = false;
                    }
                    _ => return Err(UpstreamError::Http(e.into_error())),
                },
            }
        }
    }
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<ClientBody>, UpstreamError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(UpstreamError::Connect)?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(UpstreamError::Http)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream connection closed");
        }
    });
    Ok(sender)
}
