//! The JSON forms the stores keep holders and progress in.

use serde_json::json;

use super::{Holder, Progress};

/// A holder as JSON.
pub(crate) fn holder_json(h: &Holder) -> String {
    json!({"name": h.name, "host": h.host, "user": h.user, "pid": h.pid}).to_string()
}

/// A holder back from [`holder_json`]'s form.
pub(crate) fn holder_from(s: &str) -> Option<Holder> {
    let v: serde_json::Value = serde_json::from_str(s).ok()?;
    Some(Holder {
        name: v.get("name")?.as_str()?.to_owned(),
        host: v.get("host")?.as_str()?.to_owned(),
        user: v.get("user")?.as_str()?.to_owned(),
        pid: u32::try_from(v.get("pid")?.as_u64()?).ok()?,
    })
}

/// Progress as JSON.
pub(crate) fn progress_json(p: &Progress) -> String {
    json!({
        "stage": p.stage, "written": p.written, "verified": p.verified,
        "pending": p.pending, "rolling_back": p.rolling_back,
    })
    .to_string()
}

/// Progress back from [`progress_json`]'s form.
pub(crate) fn progress_from(s: &str) -> Option<Progress> {
    let v: serde_json::Value = serde_json::from_str(s).ok()?;
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    Some(Progress {
        stage: v
            .get("stage")
            .and_then(serde_json::Value::as_u64)
            .and_then(|s| usize::try_from(s).ok()),
        written: text("written"),
        verified: v.get("verified")?.as_bool()?,
        pending: text("pending"),
        rolling_back: text("rolling_back"),
    })
}
