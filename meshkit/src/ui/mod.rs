//! A live web view of a [rollout store](crate::store) (feature `ui`): the list of
//! rollouts, each rollout's weights over time, the split the data plane reports, the
//! latest check verdict and its reason, the timeline and the lease holder, updated
//! as events are recorded, and buttons for pause, resume, promote and roll back that
//! go through the store's [gates](crate::store::Gate).
//!
//! One page, served by this process with its script and style: no CDN, no build
//! step, nothing fetched from the internet.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use meshkit::store::SqliteStore;
//! use meshkit::ui::Dashboard;
//!
//! let store = Arc::new(SqliteStore::open(SqliteStore::default_path())?);
//! let view = Dashboard::new(store).start().await?;
//! tracing::info!(url = %view.url(), "web view");
//! // The link carries the token in its fragment: hand it only to people who may act
//! // (on a terminal, say), not to a log.
//! let link = view.link(None);
//! # let _ = link;
//! # view.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Access
//!
//! - **Actions need the token** ([`Token`], generated at start or given), which the
//!   page sends in an `Authorization: Bearer` header. It reaches the page in the
//!   link's fragment (`#token=…`, never sent to a server or kept in a cookie): another
//!   site cannot make a user's browser act, and requests whose `Origin` or
//!   `Sec-Fetch-Site` name another site are refused anyway.
//! - **On loopback** (the default, `127.0.0.1` and a free port) anyone on the machine
//!   may look; the `Host` header must name loopback, so a DNS-rebinding page cannot
//!   read the view. **Beyond loopback** looking needs the token too.
//! - The page is sent route names, versions, holder names and the timeline's words;
//!   ARNs are cut to their resource, so no account id or region reaches it.
//!
//! # HTTP
//!
//! | request | answer |
//! |---|---|
//! | `GET /` | the page (`/app.js`, `/app.css` with it) |
//! | `GET /api/rollouts` | `{"rollouts": [...]}`, newest first (100) |
//! | `GET /api/rollouts/ID` | one rollout's view |
//! | `GET /api/stream?rollout=ID` | `text/event-stream`: `list` and `rollout` events, each sent when its data changes (the timeline only from the line the page has) |
//! | `POST /api/rollouts/ID/GATE` | `202` and the gate recorded; `401` without the token, `403` from another site, `409` when the rollout is not running |

mod access;
mod error;
mod hub;
mod server;
mod token;
mod view;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};

pub use error::UiError;
pub use token::Token;

use crate::store::RolloutStore;

/// How often the store is read while a page watches: events reach pages within
/// this much of being recorded.
pub const DEFAULT_POLL: Duration = Duration::from_millis(250);

/// A web view to start: [`Dashboard::new`], settings, then [`Dashboard::start`].
pub struct Dashboard {
    store: Arc<dyn RolloutStore>,
    listen: SocketAddr,
    token: Option<Token>,
    poll: Duration,
    served: HashMap<String, hub::Served>,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("listen", &self.listen)
            .field("poll", &self.poll)
            .field("served", &self.served.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Dashboard {
    /// A view of `store` on `127.0.0.1` and a free port, with a new random token,
    /// reading the store every [`DEFAULT_POLL`] while a page watches.
    pub fn new(store: Arc<dyn RolloutStore>) -> Self {
        Self {
            store,
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            token: None,
            poll: DEFAULT_POLL,
            served: HashMap::new(),
        }
    }

    /// Where to listen. Beyond loopback, looking needs the token too.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// The token to ask for (default: [`Token::generate`]).
    pub fn token(mut self, token: Token) -> Self {
        self.token = Some(token);
        self
    }

    /// How often the store is read while a page watches (50 ms to 10 s).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll = every;
        self
    }

    /// A data plane in this process whose request counters the view can read for
    /// rollouts on `route` (the store's route key): `counts` returns each target's
    /// requests served so far. The view shows the split served over the last second
    /// next to the split written. For the local mesh:
    /// `let m = mesh.metrics(ROUTE); dashboard.served(key, move || m.requests())`.
    pub fn served(
        mut self,
        route: impl Into<String>,
        counts: impl Fn() -> Option<Vec<(String, u64)>> + Send + Sync + 'static,
    ) -> Self {
        self.served.insert(route.into(), Arc::new(counts));
        self
    }

    /// Binds and starts serving on the current tokio runtime.
    pub async fn start(self) -> Result<RunningDashboard, UiError> {
        if !(Duration::from_millis(50)..=Duration::from_secs(10)).contains(&self.poll) {
            return Err(UiError::Invalid(format!(
                "the poll interval must be 50 ms to 10 s, not {:?}",
                self.poll
            )));
        }
        let token = match self.token {
            Some(t) => t,
            None => Token::generate()?,
        };
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .map_err(|source| UiError::Listen {
                addr: self.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| UiError::Listen {
            addr: self.listen,
            source,
        })?;
        let (stop_tx, stop) = watch::channel(false);
        let hub = hub::Hub::new(self.store, self.poll, self.served, stop.clone());
        let app = Arc::new(server::App {
            hub,
            access: access::Access::new(token.clone(), addr),
            streams: Arc::new(Semaphore::new(server::MAX_STREAMS)),
            stop,
        });
        let task = tokio::spawn(server::serve(listener, app));
        tracing::info!(%addr, "web view listening");
        Ok(RunningDashboard {
            addr,
            token,
            stop: stop_tx,
            task: Some(task),
        })
    }
}

/// A web view being served. Dropping it stops serving (open connections end with
/// their current answer); [`RunningDashboard::shutdown`] waits for that.
#[derive(Debug)]
pub struct RunningDashboard {
    addr: SocketAddr,
    token: Token,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningDashboard {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token it asks for.
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// The page's address, without the token (for looking, on loopback).
    pub fn url(&self) -> String {
        let host = if self.addr.ip().is_unspecified() {
            SocketAddr::from((Ipv4Addr::LOCALHOST, self.addr.port())).to_string()
        } else {
            self.addr.to_string()
        };
        format!("http://{host}/")
    }

    /// The link to give a person who may act: the page, opened on `rollout` if
    /// given, with the token in the fragment.
    pub fn link(&self, rollout: Option<&str>) -> String {
        let mut link = format!("{}#token={}", self.url(), self.token.reveal());
        if let Some(id) = rollout {
            link.push_str("&rollout=");
            link.push_str(&encode(id));
        }
        link
    }

    /// [`RunningDashboard::link`], opening on the newest rollout of `route` (the
    /// store's route key) once it is in the store: for a link printed before the
    /// rollout starts.
    pub fn link_route(&self, route: Option<&str>) -> String {
        let mut link = self.link(None);
        if let Some(route) = route {
            link.push_str("&route=");
            link.push_str(&encode(&view::public(route)));
        }
        link
    }

    /// Stops serving: streams end, connections close after their current answer.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningDashboard {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Percent-encodes everything but unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
