//! The hub: one poller for the list and one per rollout being watched, however many
//! pages watch it, each publishing a snapshot only when it changed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use super::view;
use crate::store::RolloutStore;

/// How many rollouts the list shows.
pub(crate) const LIST_LIMIT: usize = 100;

/// Cumulative requests served per target, read from a data plane in this process.
pub(crate) type Served = Arc<dyn Fn() -> Option<Vec<(String, u64)>> + Send + Sync>;

/// A published snapshot (`None` until the first poll).
pub(crate) type Snapshot = Option<Arc<Value>>;

pub(crate) struct Hub {
    store: Arc<dyn RolloutStore>,
    poll: Duration,
    list: watch::Sender<Snapshot>,
    list_wanted: Notify,
    rollouts: Mutex<HashMap<String, watch::Sender<Snapshot>>>,
    served: HashMap<String, Served>,
    stop: watch::Receiver<bool>,
}

impl Hub {
    pub(crate) fn new(
        store: Arc<dyn RolloutStore>,
        poll: Duration,
        served: HashMap<String, Served>,
        stop: watch::Receiver<bool>,
    ) -> Arc<Self> {
        let hub = Arc::new(Self {
            store,
            poll,
            list: watch::channel(None).0,
            list_wanted: Notify::new(),
            rollouts: Mutex::new(HashMap::new()),
            served,
            stop,
        });
        tokio::spawn(list_poller(hub.clone()));
        hub
    }

    pub(crate) fn store(&self) -> &Arc<dyn RolloutStore> {
        &self.store
    }

    /// The list, kept current while anyone watches.
    pub(crate) fn list(&self) -> watch::Receiver<Snapshot> {
        let rx = self.list.subscribe();
        self.list_wanted.notify_one();
        rx
    }

    /// Rollout `id`'s live view, kept current while anyone watches.
    pub(crate) fn rollout(self: &Arc<Self>, id: &str) -> watch::Receiver<Snapshot> {
        let mut map = self.rollouts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = map.get(id) {
            return tx.subscribe();
        }
        let (tx, rx) = watch::channel(None);
        map.insert(id.to_owned(), tx.clone());
        tokio::spawn(rollout_poller(self.clone(), id.to_owned(), tx));
        rx
    }

    /// One rollout's view now, read from the store (for a plain GET).
    pub(crate) async fn detail_now(&self, id: &str) -> Result<Option<Value>, String> {
        let Some(rec) = self.store.get(id).await.map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let lease = self
            .store
            .lease(&rec.rollout.route)
            .await
            .map_err(|e| e.to_string())?;
        let gates = self.store.gates(id).await.map_err(|e| e.to_string())?;
        Ok(Some(view::detail(&rec, lease.as_ref(), &gates, None)))
    }

    async fn pause(&self) -> bool {
        let mut stop = self.stop.clone();
        tokio::select! {
            () = tokio::time::sleep(self.poll) => true,
            () = stopped(&mut stop) => false,
        }
    }
}

/// Returns once `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Logs a store failure once until it changes or ends (a poller would otherwise log
/// it four times a second), and tells the page without its text.
#[derive(Default)]
struct Quiet(Option<String>);

impl Quiet {
    fn see<T>(&mut self, read: Result<T, String>) -> Result<T, String> {
        match read {
            Ok(v) => {
                self.0 = None;
                Ok(v)
            }
            Err(e) if self.0.as_deref() == Some(e.as_str()) => {
                Err("the store cannot be read (the server's log says why)".to_owned())
            }
            Err(e) => {
                let said = view::trouble("the store cannot be read", &e);
                self.0 = Some(e);
                Err(said)
            }
        }
    }
}

/// How long one poll's store calls may take before the poll is given up.
const CALL_LIMIT: Duration = Duration::from_secs(10);

async fn list_poller(hub: Arc<Hub>) {
    let mut quiet = Quiet::default();
    let mut stop = hub.stop.clone();
    loop {
        if *stop.borrow() {
            return;
        }
        if hub.list.receiver_count() == 0 {
            tokio::select! {
                () = hub.list_wanted.notified() => {}
                () = stopped(&mut stop) => return,
            }
            continue;
        }
        let read = tokio::time::timeout(CALL_LIMIT, hub.store.history(None, LIST_LIMIT));
        let read = tokio::select! {
            r = read => match r {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err("timed out".to_owned()),
            },
            () = stopped(&mut stop) => return,
        };
        let value = match quiet.see(read) {
            Ok(lines) => view::list(&lines),
            Err(e) => json!({ "error": e }),
        };
        publish(&hub.list, value);
        if !hub.pause().await {
            return;
        }
    }
}

fn publish(tx: &watch::Sender<Snapshot>, value: Value) {
    tx.send_if_modified(|cur| {
        if cur.as_deref() == Some(&value) {
            false
        } else {
            *cur = Some(Arc::new(value));
            true
        }
    });
}

/// Takes a rollout's poller out of the hub's map however it ends (a panic in a
/// `served` closure included), so the next page starts a new one.
struct Listed<'a> {
    hub: &'a Hub,
    id: &'a str,
    tx: &'a watch::Sender<Snapshot>,
}

impl Drop for Listed<'_> {
    fn drop(&mut self) {
        let mut map = self
            .hub
            .rollouts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Only this poller's entry: a later one may have taken the id's place.
        if map.get(self.id).is_some_and(|tx| tx.same_channel(self.tx)) {
            map.remove(self.id);
        }
    }
}

async fn rollout_poller(hub: Arc<Hub>, id: String, tx: watch::Sender<Snapshot>) {
    let _listed = Listed {
        hub: &hub,
        id: &id,
        tx: &tx,
    };
    let mut counts = Counts::default();
    let mut quiet = Quiet::default();
    let mut stop = hub.stop.clone();
    loop {
        {
            // Under the map's lock: a page subscribing now either finds this poller
            // still listed (and is served by it) or not listed (and starts another).
            let mut map = hub.rollouts.lock().unwrap_or_else(PoisonError::into_inner);
            if tx.receiver_count() == 0 || *hub.stop.borrow() {
                map.remove(&id);
                return;
            }
        }
        let read = tokio::time::timeout(CALL_LIMIT, snapshot(&hub, &id, &mut counts));
        let read = tokio::select! {
            r = read => r.unwrap_or_else(|_| Err("timed out".to_owned())),
            () = stopped(&mut stop) => return,
        };
        let value = match quiet.see(read) {
            Ok(Some(v)) => v,
            Ok(None) => json!({"id": id, "missing": true}),
            Err(e) => json!({"id": id, "error": e}),
        };
        publish(&tx, value);
        if !hub.pause().await {
            return;
        }
    }
}

async fn snapshot(hub: &Hub, id: &str, counts: &mut Counts) -> Result<Option<Value>, String> {
    let store = &hub.store;
    let Some(rec) = store.get(id).await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let lease = store
        .lease(&rec.rollout.route)
        .await
        .map_err(|e| e.to_string())?;
    let gates = store.gates(id).await.map_err(|e| e.to_string())?;
    let served = hub
        .served
        .get(&rec.rollout.route)
        .and_then(|read| counts.sample(|| read()));
    let mut v = view::detail(&rec, lease.as_ref(), &gates, served.as_ref());
    v["served_series"] = Value::Array(counts.series.iter().cloned().collect());
    Ok(Some(v))
}

/// Samples of a data plane's request counters, read once a second: the split served
/// since the previous sample, and its history (the last 10 minutes).
#[derive(Default)]
struct Counts {
    previous: Option<(Instant, Vec<(String, u64)>)>,
    last: Option<Value>,
    series: VecDeque<Value>,
}

impl Counts {
    const EVERY: Duration = Duration::from_secs(1);
    const POINTS: usize = 600;

    /// The split served over the last second or so. The counters are read at most
    /// once a second, so between reads a watched rollout's view does not change.
    fn sample(&mut self, read: impl FnOnce() -> Option<Vec<(String, u64)>>) -> Option<Value> {
        let now = Instant::now();
        if let Some((at, _)) = &self.previous
            && now.duration_since(*at) < Self::EVERY
        {
            return self.last.clone();
        }
        let counts = read()?;
        // The first read only starts the window.
        let (at, before) = self.previous.replace((now, counts.clone()))?;
        let window = now.duration_since(at);
        let deltas: Vec<(String, u64)> = counts
            .iter()
            .map(|(name, n)| {
                let b = before
                    .iter()
                    .find(|(f, _)| f == name)
                    .map_or(0, |(_, b)| *b);
                (name.clone(), n.saturating_sub(b))
            })
            .collect();
        let total: u64 = deltas.iter().map(|(_, d)| d).sum();
        let split = (total > 0).then(|| {
            deltas
                .iter()
                .map(|(name, d)| json!([view::public(name), *d as f64 * 100.0 / total as f64]))
                .collect::<Vec<_>>()
        });
        let v = json!({
            "window_ms": u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
            "requests": total,
            "split": split,
        });
        if split.is_some() {
            self.series
                .push_back(json!({"at": view::ms(SystemTime::now()), "split": v["split"]}));
            if self.series.len() > Self::POINTS {
                self.series.pop_front();
            }
        }
        self.last = Some(v.clone());
        Some(v)
    }
}
