//! The sample servers' connection cap: at most [`crate::server::Limits::max_connections`]
//! open at once; at the cap the oldest connections make room (one that never sent a
//! request is closed, a keep-alive one closes gracefully after its response), and an
//! accept that fails for lack of file descriptors backs off with a rate-limited log
//! line instead of spinning. The same policy as the meshkit local mesh's gateway.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// A listener's cap and its open connections, oldest first.
pub(crate) struct ConnLimit {
    permits: Arc<Semaphore>,
    max: usize,
    open: Mutex<VecDeque<Weak<Conn>>>,
}

/// What the limit knows of one open connection, shared with the task serving it.
#[derive(Debug, Default)]
pub(crate) struct Conn {
    /// Notified when the connection should close to make room.
    pub(crate) close: Notify,
    /// It has sent a request.
    pub(crate) started: AtomicBool,
    /// A request of it is being answered: not asked to close.
    pub(crate) busy: AtomicBool,
}

/// An accepted connection's place under the cap, given back when dropped.
pub(crate) struct Slot {
    pub(crate) _permit: OwnedSemaphorePermit,
    pub(crate) conn: Arc<Conn>,
}

impl ConnLimit {
    /// A cap of `wanted`, lowered to what the open-file limit holds (two descriptors a
    /// connection: its own and one outgoing), keeping 32 spare.
    pub(crate) fn new(wanted: usize) -> Self {
        let max = match open_files_limit() {
            Some(n) => wanted.min(usize::try_from(n.saturating_sub(32) / 2).unwrap_or(usize::MAX)),
            None => wanted,
        }
        .clamp(1, Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
            open: Mutex::new(VecDeque::new()),
        }
    }

    /// The cap in force.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Asks up to 32 of the oldest idle connections to close; busy ones are left alone.
    fn evict(&self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let mut asked = 0;
        let mut busy = Vec::new();
        while asked < 32 {
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
    }

    /// The next connection and its slot. Never fails: running out of descriptors is
    /// waited out (paced, logged at most every 10 s), and at the cap the accepted
    /// connection waits while the oldest idle ones make room.
    pub(crate) async fn accept(&self, listener: &TcpListener) -> (TcpStream, Slot) {
        let mut delay = Duration::ZERO;
        let mut logged: Option<Instant> = None;
        let mut failures = 0u64;
        loop {
            let s = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    if matches!(e.raw_os_error(), Some(23 | 24)) {
                        self.evict();
                    }
                    failures += 1;
                    let now = Instant::now();
                    if logged.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10)) {
                        tracing::warn!(error = %e, failures, "accept failed; backing off");
                        logged = Some(now);
                        failures = 0;
                    }
                    delay = (delay * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            let _ = s.set_nodelay(true);
            let permit = match self.permits.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => loop {
                    self.evict();
                    tokio::select! {
                        p = self.permits.clone().acquire_owned() => if let Ok(p) = p { break p },
                        () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                },
            };
            let conn = Arc::new(Conn::default());
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            if open.len() > 2 * self.max {
                open.retain(|w| w.strong_count() > 0);
            }
            open.push_back(Arc::downgrade(&conn));
            return (
                s,
                Slot {
                    _permit: permit,
                    conn,
                },
            );
        }
    }

    /// Waits until every connection has closed, for at most `limit`.
    pub(crate) async fn drained(&self, limit: Duration) -> bool {
        let all = u32::try_from(self.max).unwrap_or(u32::MAX);
        tokio::time::timeout(limit, self.permits.acquire_many(all))
            .await
            .is_ok()
    }
}

/// The process's soft limit on open files, where the system says (Linux).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}
