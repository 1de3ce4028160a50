//! The local embedded mesh: an in-process control plane and a real HTTP data plane on
//! loopback, so a rollout runs on one machine with no AWS.
//!
//! A gateway listener routes each request by path prefix (longest first, like App Mesh
//! gateway routes; the matched prefix is rewritten to `/`) to one of the route's
//! upstream targets, in proportion to the route's weights. A weight change swaps the
//! route's table in one step: new requests use the new split at once, requests in
//! flight finish where they were sent. Every target's requests, responses by status
//! class, upstream errors and latency are counted, exposed as Prometheus text on the
//! admin listener's `/metrics` and through [`LocalMesh::totals`] and
//! [`LocalMesh::metrics`] (a [`crate::health::MetricsSource`]). Hop-by-hop headers (the
//! standard ones and any other the `Connection` header names) are not forwarded, in
//! either direction.
//!
//! The gateway's connections are served by its own worker threads (one per core, at
//! most 4; [`LocalMeshBuilder::workers`]), each with a single-threaded tokio runtime, the
//! way nginx and Envoy workers run: a connection and its upstream connections stay on
//! one thread, and each worker keeps its own pick counter and statistics shard, so the
//! workers share nothing on the request path but the route's revision number. Upstream
//! connections are kept per downstream connection and not reused after 2 s idle. The
//! accept loop, the admin listener and the control plane run on the caller's runtime.
//! [`LocalMesh::shutdown`] waits for the workers to drain (10 s at most); dropping the
//! mesh lets them drain and end on their own.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use meshkit::traffic::local::LocalMesh;
//!
//! let mesh = LocalMesh::builder()
//!     .route("split", "/split", [("blue", "127.0.0.1:3001".parse()?), ("green", "127.0.0.1:3002".parse()?)])
//!     .start()
//!     .await?;
//! println!("gateway on http://{}/split, metrics on http://{}/metrics", mesh.gateway_addr(), mesh.admin_addr());
//! let router = mesh.router(); // a TrafficRouter for Rollout::builder().router(..)
//! # Ok(()) }
//! ```

mod admin;
mod client_body;
mod limit;
mod proxy;
mod router;
mod stats;
mod table;
mod upstream;
mod workers;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use limit::DEFAULT_MAX_CONNECTIONS;
pub use router::{LocalMetrics, LocalRouter};
pub use stats::TargetTotals;

use self::limit::ConnLimit;
use self::stats::TargetStats;
use self::table::{Lane, Padded, Table};
use crate::error::ConfigError;
use crate::traffic::{MAX_TARGETS, Weights};

/// Why the local mesh could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalMeshError {
    /// The routes are not valid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The gateway's worker threads could not be started.
    #[error("cannot start the gateway's worker threads: {0}")]
    Workers(#[source] std::io::Error),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

pub(crate) struct Target {
    pub(crate) name: String,
    pub(crate) addr: SocketAddr,
    pub(crate) stats: TargetStats,
}

pub(crate) struct Route {
    pub(crate) name: String,
    pub(crate) prefix: String,
    pub(crate) targets: Vec<Target>,
    pub(crate) table: RwLock<Arc<Table>>,
    /// The table's revision, for the workers' lanes to notice a write.
    pub(crate) revision: AtomicU64,
    /// One lane per gateway worker.
    pub(crate) lanes: Box<[Padded<Mutex<Lane>>]>,
    /// Requests that failed through the client's fault (see `proxy`).
    pub(crate) client_errors: AtomicU64,
}

impl Route {
    pub(crate) fn table(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the table; requests that start after this returns use it.
    pub(crate) fn set_table(&self, make: impl FnOnce(&Table) -> Table) -> Arc<Table> {
        let mut slot = self.table.write().unwrap_or_else(|e| e.into_inner());
        let table = Arc::new(make(&slot));
        *slot = table.clone();
        self.revision.store(table.revision, Ordering::Release);
        table
    }

    /// The target index for the next request on `worker`'s lane.
    pub(crate) fn pick(&self, worker: usize) -> Option<usize> {
        let lane = &self.lanes.get(worker % self.lanes.len().max(1))?.0;
        let revision = self.revision.load(Ordering::Acquire);
        lane.lock()
            .unwrap_or_else(|e| e.into_inner())
            .pick(revision, || self.table())
    }

    pub(crate) fn target_names(&self) -> Vec<String> {
        self.targets.iter().map(|t| t.name.clone()).collect()
    }

    /// True when `path` falls under this route's prefix.
    pub(crate) fn matches(&self, path: &str) -> bool {
        self.prefix == "/"
            || path == self.prefix
            || path
                .strip_prefix(self.prefix.as_str())
                .is_some_and(|rest| rest.starts_with('/') || self.prefix.ends_with('/'))
    }
}

pub(crate) struct Shared {
    /// Longest prefix first.
    pub(crate) routes: Vec<Arc<Route>>,
    pub(crate) by_name: BTreeMap<String, Arc<Route>>,
    pub(crate) start: Instant,
    pub(crate) upstream_timeout: Duration,
}

impl Shared {
    pub(crate) fn second(&self) -> u64 {
        self.second_at(Instant::now())
    }

    /// The second since the mesh's start that `at` falls in.
    pub(crate) fn second_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_secs()
    }
}

/// A running local mesh. Dropping it stops the listeners; [`LocalMesh::shutdown`] lets
/// in-flight requests finish first.
pub struct LocalMesh {
    shared: Arc<Shared>,
    gateway: SocketAddr,
    admin: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// A route as given to the builder.
#[derive(Debug, Clone)]
struct RouteSpec {
    name: String,
    prefix: String,
    targets: Vec<(String, SocketAddr)>,
    weights: Option<Weights>,
}

/// Builds a [`LocalMesh`].
#[derive(Debug, Clone)]
pub struct LocalMeshBuilder {
    routes: Vec<RouteSpec>,
    gateway: SocketAddr,
    admin: SocketAddr,
    upstream_timeout: Duration,
    workers: usize,
    max_connections: usize,
}

impl LocalMesh {
    /// Starts a builder: gateway and admin on `127.0.0.1:0`, 15 s upstream timeout,
    /// one gateway worker thread per core (at most 4).
    pub fn builder() -> LocalMeshBuilder {
        LocalMeshBuilder {
            routes: Vec::new(),
            gateway: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            upstream_timeout: Duration::from_secs(15),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }

    /// The gateway's address (the data plane).
    pub fn gateway_addr(&self) -> SocketAddr {
        self.gateway
    }

    /// The admin listener's address (`/metrics`, `/routes`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// A [`crate::traffic::TrafficRouter`] for this mesh's routes (by route name).
    pub fn router(&self) -> LocalRouter {
        LocalRouter {
            shared: self.shared.clone(),
        }
    }

    /// A [`crate::health::MetricsSource`] over one route's targets.
    pub fn metrics(&self, route: &str) -> LocalMetrics {
        LocalMetrics {
            shared: self.shared.clone(),
            route: route.to_owned(),
        }
    }

    /// Requests on `route` that failed through the client's fault (a body that could
    /// not be read or did not arrive in time), answered 4xx and counted against no
    /// target; `None` for an unknown route.
    pub fn client_errors(&self, route: &str) -> Option<u64> {
        let r = self.shared.by_name.get(route)?;
        Some(r.client_errors.load(Ordering::Relaxed))
    }

    /// Each target's counters since the start, or `None` for an unknown route.
    pub fn totals(&self, route: &str) -> Option<Vec<(String, TargetTotals)>> {
        let r = self.shared.by_name.get(route)?;
        Some(
            r.targets
                .iter()
                .map(|t| (t.name.clone(), t.stats.totals()))
                .collect(),
        )
    }

    /// All statistics in the Prometheus text format (what `/metrics` serves).
    pub fn prometheus_text(&self) -> String {
        admin::render(&self.shared)
    }

    /// Stops accepting, lets in-flight requests finish (up to 10 s), and returns.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for LocalMesh {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl LocalMeshBuilder {
    /// Adds a route: its name (what rollouts use), its path prefix on the gateway, and
    /// its targets (name → upstream address). All traffic starts on the first target.
    pub fn route<N: Into<String>>(
        mut self,
        name: &str,
        prefix: &str,
        targets: impl IntoIterator<Item = (N, SocketAddr)>,
    ) -> Self {
        let targets = targets.into_iter().map(|(n, a)| (n.into(), a)).collect();
        self.routes.push(RouteSpec {
            name: name.to_owned(),
            prefix: prefix.to_owned(),
            targets,
            weights: None,
        });
        self
    }

    /// Sets a route's starting weights (default: all on its first target).
    pub fn weights(mut self, route: &str, weights: Weights) -> Self {
        if let Some(r) = self.routes.iter_mut().find(|r| r.name == route) {
            r.weights = Some(weights);
        }
        self
    }

    /// The gateway's listen address. Default: `127.0.0.1:0`.
    pub fn gateway(mut self, addr: SocketAddr) -> Self {
        self.gateway = addr;
        self
    }

    /// The admin listen address. Default: `127.0.0.1:0`.
    pub fn admin(mut self, addr: SocketAddr) -> Self {
        self.admin = addr;
        self
    }

    /// How long the gateway waits for an upstream's answer (then 504). Default: 15 s.
    pub fn upstream_timeout(mut self, d: Duration) -> Self {
        self.upstream_timeout = d;
        self
    }

    /// The gateway's worker threads, each with its own single-threaded tokio runtime
    /// (a connection stays on one thread). Default: one per core, at most 4; 0 counts
    /// as 1. The admin listener and the control plane stay on the caller's runtime.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// The most gateway connections open at once. Default: [`DEFAULT_MAX_CONNECTIONS`]
    /// (4096), lowered at start to what the process's open-file limit can hold (each
    /// connection may also hold one upstream connection per target). At the cap the
    /// oldest connections are closed gracefully (an idle keep-alive one at once, a busy
    /// one after its response) and new ones wait for room, so the gateway keeps
    /// answering; out of file descriptors, it backs off instead of spinning.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    fn routes(&self) -> Result<Vec<Arc<Route>>, ConfigError> {
        let bad = |m: String| ConfigError::Check(format!("local mesh: {m}"));
        if self.routes.is_empty() {
            return Err(bad("no routes".into()));
        }
        let mut out: Vec<Arc<Route>> = Vec::new();
        for RouteSpec {
            name,
            prefix,
            targets,
            weights,
        } in &self.routes
        {
            crate::traffic::RouteRef::new(name.clone())?;
            if !prefix.starts_with('/') || prefix.contains("..") {
                return Err(bad(format!(
                    "route '{name}': prefix '{prefix}' must start with '/'"
                )));
            }
            if out.iter().any(|r| r.name == *name || r.prefix == *prefix) {
                return Err(bad(format!(
                    "route '{name}' or prefix '{prefix}' given twice"
                )));
            }
            if targets.is_empty() || targets.len() > MAX_TARGETS {
                return Err(bad(format!("route '{name}' needs 1-{MAX_TARGETS} targets")));
            }
            let names: Vec<String> = targets.iter().map(|(n, _)| n.clone()).collect();
            let first = Weights::new(
                names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.clone(), if i == 0 { 100 } else { 0 })),
            )?;
            let weights = weights.clone().unwrap_or(first);
            if let Some((t, _)) = weights.iter().find(|(t, _)| !names.iter().any(|n| n == t)) {
                return Err(bad(format!(
                    "route '{name}': weights name unknown target '{t}'"
                )));
            }
            let table = Arc::new(Table::new(weights, &names, 1));
            out.push(Arc::new(Route {
                name: name.clone(),
                prefix: prefix.clone(),
                targets: targets
                    .iter()
                    .map(|(n, a)| Target {
                        name: n.clone(),
                        addr: *a,
                        stats: TargetStats::new(self.workers),
                    })
                    .collect(),
                table: RwLock::new(table.clone()),
                revision: AtomicU64::new(table.revision),
                lanes: (0..self.workers)
                    .map(|_| Padded(Lane::new(table.clone())))
                    .collect(),
                client_errors: AtomicU64::new(0),
            }));
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Ok(out)
    }

    /// Validates the routes, binds both listeners and starts serving.
    pub async fn start(self) -> Result<LocalMesh, LocalMeshError> {
        let routes = self.routes()?;
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| LocalMeshError::Bind { addr, source })
        };
        let gateway = bind(self.gateway).await?;
        let admin = bind(self.admin).await?;
        let local = |l: &TcpListener, a| {
            l.local_addr()
                .map_err(|source| LocalMeshError::Bind { addr: a, source })
        };
        let (gateway_addr, admin_addr) =
            (local(&gateway, self.gateway)?, local(&admin, self.admin)?);
        let by_name = routes.iter().map(|r| (r.name.clone(), r.clone())).collect();
        let shared = Arc::new(Shared {
            routes,
            by_name,
            start: Instant::now(),
            upstream_timeout: self.upstream_timeout,
        });
        let (stop, stopped) = watch::channel(false);
        // Each gateway connection may hold one upstream connection per target.
        let per_conn = 1 + shared
            .routes
            .iter()
            .map(|r| r.targets.len())
            .max()
            .unwrap_or(1);
        let cap = limit::fit(self.max_connections, per_conn, limit::open_files_limit());
        if cap < self.max_connections {
            tracing::warn!(
                cap,
                wanted = self.max_connections,
                "local mesh gateway connections capped to fit the open-file limit"
            );
        }
        let limit = ConnLimit::new(cap);
        let workers = workers::start(self.workers, &shared, &limit, &stopped)
            .map_err(LocalMeshError::Workers)?;
        let tasks = vec![
            tokio::spawn(workers::accept(gateway, workers, limit, stopped.clone())),
            tokio::spawn(admin::serve_admin(admin, shared.clone(), stopped)),
        ];
        tracing::info!(%gateway_addr, %admin_addr, "local mesh started");
        Ok(LocalMesh {
            shared,
            gateway: gateway_addr,
            admin: admin_addr,
            stop,
            tasks,
        })
    }
}
