//! [`SqliteStore`]: the embedded rollout store, one SQLite file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rusqlite::{
    Connection, ErrorCode, OptionalExtension, Transaction, TransactionBehavior, params,
};
use serde_json::json;

use super::codec::{holder_from, holder_json, progress_from, progress_json};
use super::time::{from_ms, to_ms};
use super::{
    Clock, Entry, Gate, GateRequest, Holder, Lease, NewRollout, Progress, RecordState,
    RecordUpdate, RolloutRecord, RolloutStore, StoreError, Summary, check_key, system_clock,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS leases (
    route TEXT PRIMARY KEY, token INTEGER NOT NULL, holder TEXT NOT NULL,
    since_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL, rollout TEXT);
CREATE TABLE IF NOT EXISTS rollouts (
    id TEXT PRIMARY KEY, route TEXT NOT NULL, stable TEXT NOT NULL,
    candidate TEXT NOT NULL, strategy TEXT NOT NULL, plan TEXT NOT NULL,
    started_by TEXT NOT NULL, started_ms INTEGER NOT NULL, ended_ms INTEGER,
    state TEXT NOT NULL, detail TEXT, progress TEXT NOT NULL, attempts TEXT NOT NULL,
    dropped INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS rollouts_by_route ON rollouts (route, started_ms);
CREATE INDEX IF NOT EXISTS rollouts_by_start ON rollouts (started_ms);
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, rollout TEXT NOT NULL, at_ms INTEGER NOT NULL,
    by TEXT NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL, weights TEXT);
CREATE INDEX IF NOT EXISTS entries_by_rollout ON entries (rollout, seq);
CREATE TABLE IF NOT EXISTS gates (
    id INTEGER PRIMARY KEY AUTOINCREMENT, rollout TEXT NOT NULL, gate TEXT NOT NULL,
    by TEXT NOT NULL, at_ms INTEGER NOT NULL, applied_ms INTEGER);
CREATE INDEX IF NOT EXISTS gates_by_rollout ON gates (rollout, id);
";

/// The embedded rollout store: one SQLite file (the library is built in, nothing to
/// install), in WAL mode, shared safely by every process on the machine that opens
/// it. Each change is one `BEGIN IMMEDIATE` transaction; a file locked by another
/// process is waited for up to the busy timeout (5 s), then
/// [`StoreError::Busy`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use meshkit::store::{Holder, RolloutStore, SqliteStore, StoreError};
///
/// let dir = std::env::temp_dir().join(format!("meshkit-doc-{}", std::process::id()));
/// let store = SqliteStore::open(dir.join("rollouts.db"))?;
/// let lease = store.acquire("checkout", &Holder::named("ci-1"), Duration::from_secs(30)).await?;
/// let again = store.acquire("checkout", &Holder::named("ci-2"), Duration::from_secs(30)).await;
/// assert!(matches!(again, Err(StoreError::Held { .. })));
/// store.release(&lease).await?;
/// # std::fs::remove_dir_all(dir)?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
    clock: Clock,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn sql_error(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Busy(format!(
            "the SQLite file is locked by another process ({e})"
        )),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            StoreError::Corrupt(e.to_string())
        }
        _ => StoreError::Unavailable(e.to_string()),
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

impl SqliteStore {
    /// Opens (creating it and its directory if needed) the store file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let conn = Connection::open(&path)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(sql_error)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql_error)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql_error)?;
        conn.execute_batch(SCHEMA).map_err(sql_error)?;
        migrate(&conn)?;
        Ok(Self {
            path,
            conn: Arc::new(Mutex::new(conn)),
            clock: system_clock(),
        })
    }

    /// The default file: `$XDG_STATE_HOME/meshkit/rollouts.db`, else
    /// `$HOME/.local/state/meshkit/rollouts.db`, else `./.meshkit/rollouts.db`.
    pub fn default_path() -> PathBuf {
        // The XDG spec: a relative XDG_STATE_HOME is ignored.
        let base = std::env::var_os("XDG_STATE_HOME")
            .filter(|v| !v.is_empty() && Path::new(v).is_absolute())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|h| PathBuf::from(h).join(".local/state"))
            });
        match base {
            Some(b) => b.join("meshkit").join("rollouts.db"),
            None => PathBuf::from(".meshkit").join("rollouts.db"),
        }
    }

    /// How long a change waits for a file another process has locked before it fails
    /// with [`StoreError::Busy`] (the runner then retries it). Default: 5 s.
    pub fn with_busy_timeout(self, wait: Duration) -> Result<Self, StoreError> {
        self.conn
            .lock()
            .map_err(|_| StoreError::Unavailable("the store's connection was poisoned".into()))?
            .busy_timeout(wait)
            .map_err(sql_error)?;
        Ok(self)
    }

    /// Reads lease times from `clock` instead of the system clock (for tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the connection on a blocking thread, with the clock's "now".
    async fn with<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, i64) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        let now = to_ms((self.clock)());
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().map_err(|_| {
                StoreError::Unavailable("the store's connection was poisoned".into())
            })?;
            f(&mut c, now)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("the store's worker failed: {e}")))?
    }

    /// A write transaction that first checks `lease` is the route's with `margin_ms`
    /// left, then runs `f`.
    async fn fenced<T, F>(&self, lease: &Lease, margin: Duration, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>, i64) -> Result<T, StoreError> + Send + 'static,
    {
        let route = lease.route.clone();
        let token = lease.token;
        let margin_ms = i64::try_from(margin.as_millis()).unwrap_or(i64::MAX);
        self.with(move |c, now| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql_error)?;
            check_fence(&tx, &route, token, now, margin_ms)?;
            let out = f(&tx, now)?;
            tx.commit().map_err(sql_error)?;
            Ok(out)
        })
        .await
    }
}

/// Fails with [`StoreError::Lost`] unless the route's lease has `token` and at least
/// `margin_ms` left.
fn check_fence(
    tx: &Transaction<'_>,
    route: &str,
    token: u64,
    now: i64,
    margin_ms: i64,
) -> Result<(), StoreError> {
    let row: Option<(i64, String, i64)> = tx
        .query_row(
            "SELECT token, holder, expires_ms FROM leases WHERE route = ?1",
            [route],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(sql_error)?;
    let lost = |detail: String| StoreError::Lost {
        route: route.to_owned(),
        detail,
    };
    match row {
        None => Err(lost("the route has no lease".into())),
        Some((t, holder, _)) if u64::try_from(t).ok() != Some(token) => {
            let holder = holder_from(&holder).map_or(holder, |h| h.to_string());
            Err(lost(format!(
                "taken over by {holder} (fencing token {t}, ours {token})"
            )))
        }
        Some((_, _, expires)) if expires <= now => Err(lost(format!(
            "it expired {} ms ago without renewal",
            now - expires
        ))),
        Some((_, _, expires)) if expires - now < margin_ms => Err(lost(format!(
            "only {} ms are left on it (renewals are failing); no write starts with less \
             than {margin_ms} ms",
            expires - now
        ))),
        Some(_) => Ok(()),
    }
}

/// Brings a file made by an earlier meshkit up to this schema: the timeline's
/// `weights` column (added for charts) is added when missing.
fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let has_weights: bool = conn
        .prepare("SELECT 1 FROM pragma_table_info('entries') WHERE name = 'weights'")
        .and_then(|mut s| s.exists([]))
        .map_err(sql_error)?;
    if !has_weights {
        conn.execute_batch("ALTER TABLE entries ADD COLUMN weights TEXT")
            .map_err(sql_error)?;
    }
    Ok(())
}

fn insert_entries(tx: &Transaction<'_>, id: &str, entries: &[Entry]) -> Result<(), StoreError> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO entries (rollout, at_ms, by, kind, message, weights) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(sql_error)?;
    for e in entries {
        stmt.execute(params![id, to_ms(e.at), e.by, e.kind, e.message, e.weights])
            .map_err(sql_error)?;
    }
    Ok(())
}

fn apply_update(
    tx: &Transaction<'_>,
    id: &str,
    u: &RecordUpdate,
    now: i64,
) -> Result<(), StoreError> {
    insert_entries(tx, id, &u.entries)?;
    let dropped = i64::try_from(u.dropped).unwrap_or(i64::MAX);
    let changed = match (&u.progress, &u.end) {
        (Some(p), _) => tx.execute(
            "UPDATE rollouts SET progress = ?2, dropped = dropped + ?3 WHERE id = ?1",
            params![id, progress_json(p), dropped],
        ),
        (None, _) => tx.execute(
            "UPDATE rollouts SET dropped = dropped + ?2 WHERE id = ?1",
            params![id, dropped],
        ),
    }
    .map_err(sql_error)?;
    if changed == 0 {
        return Err(StoreError::NotFound(id.to_owned()));
    }
    if let Some((state, detail)) = &u.end {
        let ended = (!state.is_open() || *state == RecordState::Stopped).then_some(now);
        tx.execute(
            "UPDATE rollouts SET state = ?2, detail = ?3, ended_ms = ?4 WHERE id = ?1",
            params![id, state.as_str(), detail, ended],
        )
        .map_err(sql_error)?;
    }
    Ok(())
}

const RECORD_COLUMNS: &str = "id, route, stable, candidate, strategy, plan, started_by, \
    started_ms, ended_ms, state, detail, progress, attempts, dropped";

fn record_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<[Option<String>; 14]> {
    let mut out: [Option<String>; 14] = Default::default();
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = match r.get_ref(i)? {
            rusqlite::types::ValueRef::Null => None,
            rusqlite::types::ValueRef::Integer(n) => Some(n.to_string()),
            rusqlite::types::ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
            other => Some(format!("{other:?}")),
        };
    }
    Ok(out)
}

fn record_from(row: [Option<String>; 14]) -> Result<RolloutRecord, StoreError> {
    let [
        id,
        route,
        stable,
        candidate,
        strategy,
        plan,
        by,
        started,
        ended,
        state,
        detail,
        progress,
        attempts,
        dropped,
    ] = row;
    let need = |v: Option<String>, what: &str| {
        v.ok_or_else(|| corrupt("rollout record", format!("no {what}")))
    };
    let id = need(id, "id")?;
    let int = |v: Option<String>, what: &str| -> Result<i64, StoreError> {
        need(v, what)?.parse().map_err(|e| corrupt(what, e))
    };
    let plan: Vec<String> =
        serde_json::from_str(&need(plan, "plan")?).map_err(|e| corrupt("plan", e))?;
    let attempts: Vec<String> =
        serde_json::from_str(&need(attempts, "attempts")?).map_err(|e| corrupt("attempts", e))?;
    let started_by = holder_from(&need(by, "started_by")?)
        .ok_or_else(|| corrupt("rollout record", "unreadable started_by"))?;
    Ok(RolloutRecord {
        rollout: NewRollout {
            id: id.clone(),
            route: need(route, "route")?,
            stable: need(stable, "stable")?,
            candidate: need(candidate, "candidate")?,
            strategy: need(strategy, "strategy")?,
            plan,
            started_by,
        },
        started: from_ms(int(started, "started_ms")?),
        ended: ended.and_then(|e| e.parse().ok()).map(from_ms),
        state: need(state, "state")?
            .parse()
            .map_err(|e| corrupt("state", e))?,
        detail,
        progress: progress_from(&need(progress, "progress")?)
            .ok_or_else(|| corrupt("progress", &id))?,
        attempts,
        entries: Vec::new(),
        dropped: u64::try_from(int(dropped, "dropped")?).unwrap_or(0),
    })
}

fn load_record(c: &Connection, id: &str) -> Result<Option<RolloutRecord>, StoreError> {
    let row = c
        .query_row(
            &format!("SELECT {RECORD_COLUMNS} FROM rollouts WHERE id = ?1"),
            [id],
            record_row,
        )
        .optional()
        .map_err(sql_error)?;
    let Some(row) = row else { return Ok(None) };
    let mut rec = record_from(row)?;
    let mut stmt = c
        .prepare_cached(
            "SELECT at_ms, by, kind, message, weights FROM entries WHERE rollout = ?1 ORDER BY seq",
        )
        .map_err(sql_error)?;
    let rows = stmt
        .query_map([id], |r| {
            Ok(Entry {
                at: from_ms(r.get(0)?),
                by: r.get(1)?,
                kind: r.get(2)?,
                message: r.get(3)?,
                weights: r.get(4)?,
            })
        })
        .map_err(sql_error)?;
    for e in rows {
        rec.entries.push(e.map_err(sql_error)?);
    }
    Ok(Some(rec))
}

fn lease_from(
    route: &str,
    token: i64,
    holder: &str,
    since: i64,
    expires: i64,
    rollout: Option<String>,
) -> Result<Lease, StoreError> {
    Ok(Lease {
        route: route.to_owned(),
        holder: holder_from(holder).ok_or_else(|| corrupt("lease holder", holder))?,
        token: u64::try_from(token).map_err(|e| corrupt("lease token", e))?,
        since: from_ms(since),
        expires: from_ms(expires),
        rollout,
    })
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2)
}

#[async_trait::async_trait]
impl RolloutStore for SqliteStore {
    async fn acquire(
        &self,
        route: &str,
        holder: &Holder,
        ttl: Duration,
    ) -> Result<Lease, StoreError> {
        check_key("a route", route)?;
        let route = route.to_owned();
        let holder = holder.clone();
        self.with(move |c, now| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql_error)?;
            let row: Option<(i64, String, i64, i64, Option<String>)> = tx
                .query_row(
                    "SELECT token, holder, since_ms, expires_ms, rollout FROM leases WHERE route = ?1",
                    [&route],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()
                .map_err(sql_error)?;
            let token = match row {
                Some((t, h, since, expires, rollout)) if expires > now => {
                    let held = lease_from(&route, t, &h, since, expires, rollout)?;
                    return Err(StoreError::Held {
                        route,
                        holder: Box::new(held.holder),
                        since: held.since,
                        expires: held.expires,
                        rollout: held.rollout,
                    });
                }
                Some((t, ..)) => t + 1,
                None => 1,
            };
            let expires = now.saturating_add(ttl_ms(ttl));
            tx.execute(
                "INSERT INTO leases (route, token, holder, since_ms, expires_ms, rollout)
                 VALUES (?1, ?2, ?3, ?4, ?5, NULL)
                 ON CONFLICT (route) DO UPDATE SET token = ?2, holder = ?3, since_ms = ?4,
                 expires_ms = ?5, rollout = NULL",
                params![route, token, holder_json(&holder), now, expires],
            )
            .map_err(sql_error)?;
            tx.commit().map_err(sql_error)?;
            lease_from(&route, token, &holder_json(&holder), now, expires, None)
        })
        .await
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StoreError> {
        let route = lease.route.clone();
        let mut renewed = lease.clone();
        let token = i64::try_from(lease.token).unwrap_or(-1);
        let expires = self
            .fenced(lease, Duration::ZERO, move |tx, now| {
                let expires = now.saturating_add(ttl_ms(ttl));
                tx.execute(
                    "UPDATE leases SET expires_ms = ?3 WHERE route = ?1 AND token = ?2",
                    params![route, token, expires],
                )
                .map_err(sql_error)?;
                Ok(expires)
            })
            .await?;
        renewed.expires = from_ms(expires);
        Ok(renewed)
    }

    async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        let route = lease.route.clone();
        let token = i64::try_from(lease.token).unwrap_or(-1);
        self.with(move |c, _| {
            c.execute(
                "UPDATE leases SET expires_ms = 0 WHERE route = ?1 AND token = ?2",
                params![route, token],
            )
            .map_err(sql_error)?;
            Ok(())
        })
        .await
    }

    async fn lease(&self, route: &str) -> Result<Option<Lease>, StoreError> {
        let route = route.to_owned();
        self.with(move |c, now| {
            let row: Option<(i64, String, i64, i64, Option<String>)> = c
                .query_row(
                    "SELECT token, holder, since_ms, expires_ms, rollout FROM leases
                     WHERE route = ?1 AND expires_ms > ?2",
                    params![route, now],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()
                .map_err(sql_error)?;
            row.map(|(t, h, s, e, r)| lease_from(&route, t, &h, s, e, r))
                .transpose()
        })
        .await
    }

    async fn open(&self, lease: &Lease, rollout: &NewRollout) -> Result<(), StoreError> {
        check_key("a rollout id", &rollout.id)?;
        let r = rollout.clone();
        let holder = lease.holder.name.clone();
        let route = lease.route.clone();
        self.fenced(lease, Duration::ZERO, move |tx, now| {
            let attempts: Option<String> = tx
                .query_row(
                    "SELECT attempts FROM rollouts WHERE id = ?1",
                    [&r.id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(sql_error)?;
            match attempts {
                Some(a) => {
                    let mut list: Vec<String> =
                        serde_json::from_str(&a).map_err(|e| corrupt("attempts", e))?;
                    list.push(holder);
                    tx.execute(
                        "UPDATE rollouts SET state = 'running', ended_ms = NULL, detail = NULL,
                         attempts = ?2 WHERE id = ?1",
                        params![r.id, json!(list).to_string()],
                    )
                    .map_err(sql_error)?;
                }
                None => {
                    tx.execute(
                        &format!(
                            "INSERT INTO rollouts ({RECORD_COLUMNS}) VALUES
                             (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, 'running', NULL, ?9, ?10, 0)"
                        ),
                        params![
                            r.id,
                            r.route,
                            r.stable,
                            r.candidate,
                            r.strategy,
                            json!(r.plan).to_string(),
                            holder_json(&r.started_by),
                            now,
                            progress_json(&Progress::default()),
                            json!([holder]).to_string(),
                        ],
                    )
                    .map_err(sql_error)?;
                }
            }
            tx.execute(
                "UPDATE leases SET rollout = ?2 WHERE route = ?1",
                params![route, r.id],
            )
            .map_err(sql_error)?;
            Ok(())
        })
        .await
    }

    async fn record(
        &self,
        lease: &Lease,
        id: &str,
        update: &RecordUpdate,
    ) -> Result<(), StoreError> {
        let id = id.to_owned();
        let update = update.clone();
        self.fenced(lease, Duration::ZERO, move |tx, now| {
            apply_update(tx, &id, &update, now)
        })
        .await
    }

    async fn fence(
        &self,
        lease: &Lease,
        id: &str,
        pending: &Progress,
        update: &RecordUpdate,
        margin: Duration,
    ) -> Result<(), StoreError> {
        let id = id.to_owned();
        let mut update = update.clone();
        update.progress = Some(pending.clone());
        self.fenced(lease, margin, move |tx, now| {
            apply_update(tx, &id, &update, now)
        })
        .await
    }

    async fn open_rollout(&self, route: &str) -> Result<Option<RolloutRecord>, StoreError> {
        let route = route.to_owned();
        self.with(move |c, _| {
            let id: Option<(String, String)> = c
                .query_row(
                    "SELECT id, state FROM rollouts WHERE route = ?1
                     ORDER BY started_ms DESC, rowid DESC LIMIT 1",
                    [&route],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(sql_error)?;
            match id {
                Some((id, state))
                    if state.parse::<RecordState>().is_ok_and(RecordState::is_open) =>
                {
                    load_record(c, &id)
                }
                _ => Ok(None),
            }
        })
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<RolloutRecord>, StoreError> {
        let id = id.to_owned();
        self.with(move |c, _| load_record(c, &id)).await
    }

    async fn history(&self, route: Option<&str>, limit: usize) -> Result<Vec<Summary>, StoreError> {
        let route = route.map(str::to_owned);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(move |c, _| {
            let sql = format!(
                "SELECT {RECORD_COLUMNS} FROM rollouts {} ORDER BY started_ms DESC, rowid DESC LIMIT ?1",
                if route.is_some() { "WHERE route = ?2" } else { "" }
            );
            let mut stmt = c.prepare(&sql).map_err(sql_error)?;
            let rows = match &route {
                Some(r) => stmt.query_map(params![limit, r], record_row),
                None => stmt.query_map(params![limit], record_row),
            }
            .map_err(sql_error)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(record_from(row.map_err(sql_error)?)?.summary());
            }
            Ok(out)
        })
        .await
    }

    async fn request(&self, id: &str, gate: Gate, by: &str) -> Result<GateRequest, StoreError> {
        let id = id.to_owned();
        let by = by.to_owned();
        self.with(move |c, now| {
            let state: Option<String> = c
                .query_row("SELECT state FROM rollouts WHERE id = ?1", [&id], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(sql_error)?;
            match state.map(|s| s.parse::<RecordState>()) {
                None => return Err(StoreError::NotFound(id)),
                Some(Ok(s)) if !s.is_open() => {
                    return Err(StoreError::Invalid(format!(
                        "rollout {id} has ended ({s}): there is nothing to {gate}"
                    )));
                }
                _ => {}
            }
            c.execute(
                "INSERT INTO gates (rollout, gate, by, at_ms) VALUES (?1, ?2, ?3, ?4)",
                params![id, gate.as_str(), by, now],
            )
            .map_err(sql_error)?;
            Ok(GateRequest {
                id: c.last_insert_rowid().to_string(),
                gate,
                by,
                at: from_ms(now),
                applied: None,
            })
        })
        .await
    }

    async fn gates(&self, id: &str) -> Result<Vec<GateRequest>, StoreError> {
        let id = id.to_owned();
        self.with(move |c, _| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT id, gate, by, at_ms, applied_ms FROM gates WHERE rollout = ?1 ORDER BY id",
                )
                .map_err(sql_error)?;
            let rows = stmt
                .query_map([&id], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                    ))
                })
                .map_err(sql_error)?;
            let mut out = Vec::new();
            for row in rows {
                let (gid, gate, by, at, applied) = row.map_err(sql_error)?;
                out.push(GateRequest {
                    id: gid.to_string(),
                    gate: gate.parse().map_err(|e| corrupt("gate", e))?,
                    by,
                    at: from_ms(at),
                    applied: applied.map(from_ms),
                });
            }
            Ok(out)
        })
        .await
    }

    async fn gate_applied(
        &self,
        lease: &Lease,
        id: &str,
        gate: &GateRequest,
        entry: &Entry,
    ) -> Result<(), StoreError> {
        let id = id.to_owned();
        let gid: i64 = gate.id.parse().map_err(|_| {
            StoreError::Invalid(format!("not a gate id of this store: {}", gate.id))
        })?;
        let entry = entry.clone();
        self.fenced(lease, Duration::ZERO, move |tx, now| {
            tx.execute(
                "UPDATE gates SET applied_ms = ?3 WHERE id = ?1 AND rollout = ?2",
                params![gid, id, now],
            )
            .map_err(sql_error)?;
            insert_entries(tx, &id, std::slice::from_ref(&entry))
        })
        .await
    }

    async fn prune(&self, ended_before: SystemTime) -> Result<usize, StoreError> {
        let before = to_ms(ended_before);
        self.with(move |c, _| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql_error)?;
            let old = "SELECT id FROM rollouts WHERE ended_ms IS NOT NULL AND ended_ms < ?1
                       AND state NOT IN ('running', 'stopped')";
            for table in ["entries", "gates"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE rollout IN ({old})"),
                    [before],
                )
                .map_err(sql_error)?;
            }
            let n = tx
                .execute(
                    &format!("DELETE FROM rollouts WHERE id IN ({old})"),
                    [before],
                )
                .map_err(sql_error)?;
            tx.commit().map_err(sql_error)?;
            Ok(n)
        })
        .await
    }
}
