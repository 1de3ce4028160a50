//! [`FakeXrayDaemon`]: receives and parses X-Ray segment documents on loopback.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The header line every daemon datagram starts with.
const HEADER: &str = r#"{"format": "json", "version": 1}"#;

/// One segment or subsegment, flattened out of the documents received.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// `trace_id` (inherited from the enclosing document for nested subsegments).
    pub trace_id: String,
    /// `id`.
    pub id: String,
    /// `parent_id`: explicit, or the enclosing document's id for nested subsegments.
    pub parent_id: Option<String>,
    /// `name`.
    pub name: String,
    /// True for a top-level segment (not a subsegment).
    pub is_segment: bool,
    /// The whole JSON object as received.
    pub raw: Value,
}

#[derive(Debug, Default)]
struct State {
    documents: Vec<Value>,
    rejected: Vec<String>,
}

/// A fake X-Ray daemon: a UDP socket on 127.0.0.1 that parses each datagram as the
/// daemon wire format (`{"format": "json", "version": 1}` newline, then a segment
/// document). Datagrams that do not parse are kept in [`FakeXrayDaemon::rejected`].
/// Stops when dropped.
#[derive(Debug)]
pub struct FakeXrayDaemon {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
    task: JoinHandle<()>,
}

impl FakeXrayDaemon {
    /// Binds a free port on 127.0.0.1 and starts receiving.
    pub async fn start() -> io::Result<Self> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let notify = Arc::new(Notify::new());
        let (st, nt) = (state.clone(), notify.clone());
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok(n) = socket.recv(&mut buf).await {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let mut s = st.lock().unwrap_or_else(|e| e.into_inner());
                match parse(&text) {
                    Some(doc) => s.documents.push(doc),
                    None => s.rejected.push(text),
                }
                drop(s);
                nt.notify_waiters();
            }
        });
        Ok(Self {
            addr,
            state,
            notify,
            task,
        })
    }

    /// The address to give services as `AWS_XRAY_DAEMON_ADDRESS`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The documents received so far, as parsed.
    pub fn documents(&self) -> Vec<Value> {
        self.lock().documents.clone()
    }

    /// Datagrams that were not valid daemon traffic.
    pub fn rejected(&self) -> Vec<String> {
        self.lock().rejected.clone()
    }

    /// Every segment and subsegment received, nested ones flattened out.
    pub fn segments(&self) -> Vec<Segment> {
        let mut out = Vec::new();
        for doc in self.documents() {
            flatten(&doc, None, None, &mut out);
        }
        out
    }

    /// Waits until `done(segments)` holds, or `timeout` passes; returns the segments
    /// either way (`Err` on timeout) so a failing test can show what arrived.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&[Segment]) -> bool,
    ) -> Result<Vec<Segment>, Vec<Segment>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            let segs = self.segments();
            if done(&segs) {
                return Ok(segs);
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(deadline) => return Err(self.segments()),
            }
        }
    }
}

impl Drop for FakeXrayDaemon {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn parse(text: &str) -> Option<Value> {
    let (header, body) = text.split_once('\n')?;
    let h: Value = serde_json::from_str(header).ok()?;
    let expected: Value = serde_json::from_str(HEADER).ok()?;
    if h != expected {
        return None;
    }
    let doc: Value = serde_json::from_str(body).ok()?;
    doc.get("id")?.as_str()?;
    Some(doc)
}

fn flatten(doc: &Value, trace: Option<&str>, parent: Option<&str>, out: &mut Vec<Segment>) {
    let s = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_owned);
    let Some(id) = s("id") else { return };
    let trace_id = s("trace_id")
        .or_else(|| trace.map(str::to_owned))
        .unwrap_or_default();
    let is_segment = parent.is_none() && s("type").as_deref() != Some("subsegment");
    out.push(Segment {
        trace_id: trace_id.clone(),
        id: id.clone(),
        parent_id: s("parent_id").or_else(|| parent.map(str::to_owned)),
        name: s("name").unwrap_or_default(),
        is_segment,
        raw: doc.clone(),
    });
    if let Some(subs) = doc.get("subsegments").and_then(Value::as_array) {
        for sub in subs {
            flatten(sub, Some(&trace_id), Some(&id), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parses_the_wire_format_and_flattens() {
        let daemon = FakeXrayDaemon::start().await.unwrap();
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let doc = r#"{"id":"a1","trace_id":"1-5f000000-000000000000000000000001","name":"svc","start_time":1,"end_time":2,
            "subsegments":[{"id":"b2","name":"down","namespace":"remote","start_time":1,"end_time":2}]}"#;
        sock.send_to(format!("{HEADER}\n{doc}").as_bytes(), daemon.addr())
            .await
            .unwrap();
        sock.send_to(b"not the daemon format", daemon.addr())
            .await
            .unwrap();
        let segs = daemon
            .wait_for(Duration::from_secs(5), |s| s.len() == 2)
            .await
            .unwrap();
        assert!(segs[0].is_segment && !segs[1].is_segment);
        assert_eq!(segs[1].parent_id.as_deref(), Some("a1"));
        assert_eq!(segs[1].trace_id, segs[0].trace_id);
        daemon
            .wait_for(Duration::from_secs(5), |_| !daemon.rejected().is_empty())
            .await
            .ok();
        assert_eq!(daemon.rejected(), vec!["not the daemon format".to_owned()]);
    }
}
