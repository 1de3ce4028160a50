//! Connection limits for the mesh's listeners: a cap on open connections, idle
//! keep-alive connections closed oldest first when the cap is reached (as nginx does
//! when it runs low on connections), and backing off instead of spinning when the
//! process is out of file descriptors.

use std::collections::VecDeque;
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

/// A listener's connection cap and its open connections, oldest first.
pub(crate) struct ConnLimit {
    permits: Arc<Semaphore>,
    max: usize,
    open: Mutex<VecDeque<Weak<Notify>>>,
}

impl ConnLimit {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
            open: Mutex::new(VecDeque::new()),
        })
    }

    /// Registers a new connection; the connection closes itself (gracefully: an idle
    /// one at once, a busy one after its response) when the returned handle is
    /// notified.
    fn register(&self) -> Arc<Notify> {
        let close = Arc::new(Notify::new());
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.len() > 2 * self.max {
            open.retain(|w| w.strong_count() > 0);
        }
        open.push_back(Arc::downgrade(&close));
        close
    }

    /// Asks the oldest open connections to close, to make room.
    fn evict(&self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let mut asked = 0;
        while asked < EVICT_BATCH {
            let Some(w) = open.pop_front() else { break };
            if let Some(close) = w.upgrade() {
                close.notify_one();
                asked += 1;
            }
        }
        if asked > 0 {
            tracing::warn!(
                asked,
                cap = self.max,
                "local mesh at its connection cap: closing the oldest connections"
            );
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

/// An accepted connection's place under the cap: given back when dropped; `close`
/// is notified when the connection should close to make room.
pub(crate) struct Slot {
    pub(crate) _permit: OwnedSemaphorePermit,
    pub(crate) close: Arc<Notify>,
}

/// The next accepted connection (with `TCP_NODELAY`) and its place under the cap, or
/// `None` once `stopped` turns true. At the cap, the oldest connections are asked to
/// close (again every 100 ms while none goes) and the accept waits for room; out of
/// descriptors (`EMFILE`), the same, with a growing pause between tries.
pub(crate) async fn accept_next(
    listener: &TcpListener,
    limit: &ConnLimit,
    stopped: &mut watch::Receiver<bool>,
) -> Option<(TcpStream, Slot)> {
    let mut backoff = Backoff::new();
    loop {
        let permit = match limit.permits.clone().try_acquire_owned() {
            Ok(p) => p,
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
        tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => {
                    backoff.ok();
                    let _ = s.set_nodelay(true);
                    let close = limit.register();
                    return Some((s, Slot { _permit: permit, close }));
                }
                Err(e) => {
                    drop(permit);
                    if is_out_of_descriptors(&e) {
                        limit.evict();
                    }
                    backoff.failed(&e).await;
                }
            },
            () = async { let _ = stopped.wait_for(|s| *s).await; } => return None,
        }
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
        assert!(open_files_limit().is_some_and(|n| n > 0));
    }

    #[tokio::test]
    async fn at_the_cap_the_oldest_connections_are_asked_to_close() {
        let limit = ConnLimit::new(2);
        // (Registered directly: accept_next registers each connection it accepts.)
        let a = limit.register();
        let b = limit.register();
        let waiters = (a.clone(), b.clone());
        let closed_a = tokio::spawn(async move { waiters.0.notified().await });
        limit.evict();
        // The oldest first; both fit in one batch.
        closed_a.await.unwrap();
        b.notified().await;
    }
}
