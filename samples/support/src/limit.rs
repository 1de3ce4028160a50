//! The sample servers' connection cap: at most [`crate::server::Limits::max_connections`]
//! open at once; at the cap the oldest connections make room (one that never sent a
//! request is closed, a keep-alive one closes gracefully after its response), and an
//! accept that fails for lack of file descriptors backs off with a rate-limited log
//! line instead of spinning. The same policy as the meshkit local mesh's gateway.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// A listener's cap and its open connections, oldest first.
pub(crate) struct ConnLimit {
    permits: Arc<Semaphore>,
    max: usize,
    open: Mutex<VecDeque<Weak<Notify>>>,
}

/// An accepted connection's place under the cap; `close` asks it to make room.
pub(crate) struct Slot {
    pub(crate) _permit: OwnedSemaphorePermit,
    pub(crate) close: Arc<Notify>,
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

    fn evict(&self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let mut asked = 0;
        while asked < 32 {
            let Some(w) = open.pop_front() else { break };
            if let Some(close) = w.upgrade() {
                close.notify_one();
                asked += 1;
            }
        }
    }

    /// The next connection and its slot, or an error only when the listener itself
    /// fails for good (never for running out of descriptors).
    pub(crate) async fn accept(&self, listener: &TcpListener) -> (TcpStream, Slot) {
        let mut delay = Duration::ZERO;
        let mut logged: Option<Instant> = None;
        let mut failures = 0u64;
        loop {
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
            match listener.accept().await {
                Ok((s, _)) => {
                    let _ = s.set_nodelay(true);
                    let close = Arc::new(Notify::new());
                    let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
                    if open.len() > 2 * self.max {
                        open.retain(|w| w.strong_count() > 0);
                    }
                    open.push_back(Arc::downgrade(&close));
                    return (
                        s,
                        Slot {
                            _permit: permit,
                            close,
                        },
                    );
                }
                Err(e) => {
                    drop(permit);
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
                }
            }
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
