//! Connection limits for the mesh's listeners: a cap on open connections, idle
//! keep-alive connections closed oldest first when the cap is reached (as nginx does
//! when it runs low on connections), and backing off instead of spinning when the
//! process is out of file descriptors.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

/// The default cap on a gateway's open connections (see
/// [`super::LocalMeshBuilder::max_connections`]).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// How many idle connections one eviction asks to close.
const EVICT_BATCH: usize = 32;

/// A listener's cap and its open connections, oldest first.
pub(crate) struct ConnLimit {
    permits: Arc<Semaphore>,
    max: usize,
    open: Mutex<VecDeque<Weak<Conn>>>,
    warned: Mutex<Option<Instant>>,
}

/// What the limit knows of one open connection, shared with the task serving it.
#[derive(Debug, Default)]
pub(crate) struct Conn {
    /// Notified when the connection should close to make room.
    pub(crate) close: Notify,
    /// It has sent a request (hyper's graceful shutdown waits for a first request, so
    /// one that never sent any is simply closed).
    pub(crate) started: AtomicBool,
    /// A request of it is being answered: not idle, not asked to close.
    pub(crate) busy: AtomicBool,
}

impl ConnLimit {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
            open: Mutex::new(VecDeque::new()),
            warned: Mutex::new(None),
        })
    }

    fn register(&self) -> Arc<Conn> {
        let conn = Arc::new(Conn::default());
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.len() > 2 * self.max {
            open.retain(|w| w.strong_count() > 0);
        }
        open.push_back(Arc::downgrade(&conn));
        conn
    }

    /// Asks up to [`EVICT_BATCH`] of the oldest idle connections (never-started, or
    /// keep-alive between requests) to close; busy ones are left alone, as nginx
    /// reclaims only idle keep-alive connections when it runs low.
    fn evict(&self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let mut asked = 0;
        let mut busy = Vec::new();
        while asked < EVICT_BATCH {
            let Some(w) = open.pop_front() else { break };
            let Some(conn) = w.upgrade() else { continue };
            if conn.busy.load(Ordering::Relaxed) {
                busy.push(w);
                continue;
            }
            conn.close.notify_one();
            asked += 1;
        }
        for w in busy.into_iter().rev() {
            open.push_front(w);
        }
        drop(open);
        if asked > 0 {
            let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if warned.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10)) {
                tracing::warn!(
                    asked,
                    cap = self.max,
                    "local mesh at its connection cap: closing the oldest idle connections"
                );
                *warned = Some(now);
            }
        }
    }

    /// Waits until every connection has closed, for at most `limit`.
    pub(crate) async fn drained(&self, limit: Duration) {
        let all = u32::try_from(self.max).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(limit, self.permits.acquire_many(all)).await;
    }
}

/// Logs failed accepts at most every 10 s, with a count, and paces the retries.
struct Backoff {
    delay: Duration,
    failures: u64,
    logged: Option<Instant>,
}

impl Backoff {
    fn new() -> Self {
        Self {
            delay: Duration::ZERO,
            failures: 0,
            logged: None,
        }
    }

    async fn failed(&mut self, e: &std::io::Error) {
        self.failures += 1;
        let now = Instant::now();
        if self
            .logged
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10))
        {
            tracing::warn!(error = %e, failures = self.failures, "local mesh accept failed; backing off");
            self.logged = Some(now);
            self.failures = 0;
        }
        self.delay = (self.delay * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
        tokio::time::sleep(self.delay).await;
    }

    fn ok(&mut self) {
        self.delay = Duration::ZERO;
    }
}

/// An accepted connection's place under the cap, given back when dropped.
pub(crate) struct Slot {
    pub(crate) _permit: OwnedSemaphorePermit,
    pub(crate) conn: Arc<Conn>,
}

/// The next accepted connection (with `TCP_NODELAY`) and its place under the cap, or
/// `None` once `stopped` turns true. At the cap, the accepted connection waits while the
/// oldest idle connections are asked to close (again every 100 ms while none goes); out
/// of descriptors (`EMFILE`), idle connections are asked to close too, and tries are
/// paced by a growing pause with a log line at most every 10 s.
pub(crate) async fn accept_next(
    listener: &TcpListener,
    limit: &ConnLimit,
    stopped: &mut watch::Receiver<bool>,
) -> Option<(TcpStream, Slot)> {
    let mut backoff = Backoff::new();
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    if is_out_of_descriptors(&e) {
                        limit.evict();
                    }
                    backoff.failed(&e).await;
                    continue;
                }
            },
            () = async { let _ = stopped.wait_for(|s| *s).await; } => return None,
        };
        backoff.ok();
        let _ = stream.set_nodelay(true);
        let permit = match limit.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            // Someone is waiting for room: only now make it.
            Err(_) => loop {
                limit.evict();
                tokio::select! {
                    p = limit.permits.clone().acquire_owned() => match p {
                        Ok(p) => break p,
                        Err(_) => return None,
                    },
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    () = async { let _ = stopped.wait_for(|s| *s).await; } => return None,
                }
            },
        };
        let conn = limit.register();
        return Some((
            stream,
            Slot {
                _permit: permit,
                conn,
            },
        ));
    }
}

/// `EMFILE` or `ENFILE`: the process or the system is out of file descriptors.
fn is_out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24))
}

/// The process's soft limit on open files, where the system says (Linux).
pub(crate) fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The cap to use for `wanted` connections when each may hold `per_conn` descriptors
/// (its own and one upstream connection per target): what the open-file limit can
/// hold, keeping 32 for everything else.
pub(crate) fn fit(wanted: usize, per_conn: usize, open_files: Option<u64>) -> usize {
    let Some(limit) = open_files else {
        return wanted.max(1);
    };
    let room = usize::try_from(limit.saturating_sub(32)).unwrap_or(usize::MAX) / per_conn.max(1);
    wanted.min(room).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_fits_the_descriptor_limit() {
        #[rustfmt::skip]
        let table = [
            (4096, 3, None, 4096),
            (4096, 3, Some(1024), 330),
            (4096, 3, Some(256), 74),
            (4096, 3, Some(1_048_576), 4096),
            (4096, 3, Some(10), 1),
            (100, 1, Some(1024), 100),
        ];
        for (wanted, per, limit, expected) in table {
            assert_eq!(
                fit(wanted, per, limit),
                expected,
                "{wanted} {per} {limit:?}"
            );
        }
        #[cfg(target_os = "linux")]
        assert!(open_files_limit().is_some_and(|n| n > 0));
    }

    #[test]
    fn at_the_cap_the_oldest_idle_connections_are_asked_to_close() {
        let limit = ConnLimit::new(64);
        let conns: Vec<Arc<Conn>> = (0..40).map(|_| limit.register()).collect();
        // The second oldest is answering a request: it is left alone.
        conns[1].busy.store(true, Ordering::Relaxed);
        limit.evict();
        let asked = |c: &Arc<Conn>| {
            let waiter = c.close.notified();
            futures_util::FutureExt::now_or_never(waiter).is_some()
        };
        let got: Vec<bool> = conns.iter().map(asked).collect();
        // The 32 oldest idle ones: 0 and 2..=32; not 1 (busy), not 33.. (newer).
        let expected: Vec<bool> = (0..40).map(|i| i != 1 && i <= 32).collect();
        assert_eq!(got, expected);
    }
}
