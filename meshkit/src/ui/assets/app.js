// The meshkit web view. Everything shown is set with textContent: nothing from the
// store is ever parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { token: null, id: null, detail: null, entries: [], abort: null, armed: null };

function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (token) {
    // The token came in the link: keep it for this tab only and take it out of
    // the address bar (and of anything copied from it).
    sessionStorage.setItem("meshkit-token", token);
    params.delete("token");
    history.replaceState(null, "", params.toString() ? "#" + params : location.pathname);
  }
  state.token = sessionStorage.getItem("meshkit-token");
  state.route = params.get("route");
  return params.get("rollout");
}

function headers() {
  return state.token ? { Authorization: "Bearer " + state.token } : {};
}

const utc = (ms) => (ms == null ? "-" : new Date(ms).toISOString().replace("T", " ").slice(0, 19));

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text != null) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function splitText(split) {
  if (!split) return "-";
  return split.map(([name, pct]) => name + " " + (Math.round(pct * 10) / 10) + "%").join(" \u00b7 ");
}

function stateBadge(s) {
  return el("span", s.replace("_", " "), "state s-" + s);
}

function renderList(v) {
  const err = $("list-error");
  err.hidden = !v.error;
  err.textContent = v.error || "";
  if (v.error) return;
  const body = $("list").tBodies[0];
  body.replaceChildren();
  for (const r of v.rollouts) {
    const tr = document.createElement("tr");
    tr.dataset.id = r.id;
    if (r.id === state.id) tr.setAttribute("aria-current", "true");
    const td = el("td");
    const a = el("a", r.route);
    a.href = "#rollout=" + encodeURIComponent(r.id);
    td.append(a, el("div", r.from + " \u2192 " + r.to + ", " + r.strategy, "sub"));
    const st = el("td");
    st.append(stateBadge(r.state));
    const when = el("td", utc(r.started));
    when.append(el("div", r.by, "sub"));
    tr.append(td, st, when);
    tr.addEventListener("click", (e) => { if (e.target.tagName !== "A") location.hash = a.getAttribute("href"); });
    body.append(tr);
  }
  $("list-empty").hidden = v.rollouts.length > 0;
  if (!state.id && state.route) {
    // A link printed before its rollout started: open the route's newest rollout.
    const newest = v.rollouts.find((r) => r.route === state.route);
    if (newest) {
      state.route = null;
      location.replace("#rollout=" + encodeURIComponent(newest.id));
    }
  }
}

function share(split, name) {
  const hit = (split || []).find(([n]) => n === name);
  return hit ? hit[1] : null;
}

const NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

function renderChart(d) {
  const c = $("chart");
  const title = $("chart-title");
  c.replaceChildren(title);
  const W = 640, H = 230, L = 44, R = 10, T = 10, B = 24;
  const start = d.started;
  const end = Math.max(d.ended || Date.now(), start + 1000);
  const x = (t) => L + ((t - start) / (end - start)) * (W - L - R);
  const y = (p) => T + (1 - p / 100) * (H - T - B);
  for (const p of [0, 25, 50, 75, 100]) {
    c.append(svg("line", { x1: L, x2: W - R, y1: y(p), y2: y(p), class: "grid" }));
    const t = svg("text", { x: L - 6, y: y(p) + 4, "text-anchor": "end", class: "axis" });
    t.textContent = p + "%";
    c.append(t);
  }
  const zero = svg("text", { x: L, y: H - 6, "text-anchor": "start", class: "axis" });
  zero.textContent = "0 s";
  c.append(zero);
  const secs = Math.round((end - start) / 1000);
  const lbl = svg("text", { x: W - R, y: H - 6, "text-anchor": "end", class: "axis" });
  lbl.textContent = secs + " s";
  c.append(lbl);
  const written = d.series.filter((s) => s.kind === "written");
  let path = "";
  let last = null;
  for (const s of written) {
    const p = share(s.split, d.to);
    if (p == null) continue;
    path += (last == null ? "M" + x(s.at) + "," + y(p) : "H" + x(s.at) + "V" + y(p));
    last = p;
  }
  if (last != null) path += "H" + x(d.ended || Date.now());
  c.append(svg("path", { d: path || "M0,0", class: "written" }));
  c.dataset.written = String(written.length);
  const served = (d.served_series || []).filter((s) => s.split);
  if (served.length > 1) {
    const pts = served.map((s) => x(s.at) + "," + y(share(s.split, d.to) || 0));
    c.append(svg("polyline", { points: pts.join(" "), class: "served" }));
  }
  for (const s of d.series.filter((s) => s.kind === "applied")) {
    const p = share(s.split, d.to);
    if (p != null) c.append(svg("circle", { cx: x(s.at), cy: y(p), r: 4, class: "applied" }));
  }
  const now = share(d.progress.written, d.to);
  title.textContent = "Share of traffic on " + d.to + " over time" + (now == null ? "" : ", now " + now + "%");
  const legend = $("legend");
  legend.replaceChildren("Share on " + d.to + ":");
  legend.append(el("span", null, "sw sw-written"), "written to the route");
  legend.append(el("span", null, "sw sw-applied"), "confirmed by the data plane");
  if (served.length > 1) legend.append(el("span", null, "sw sw-served"), "served (request counts)");
}

function dd(list, term, value) {
  list.append(el("dt", term), el("dd", value));
}

function renderDetail(d) {
  $("pick").hidden = true;
  const sec = $("detail");
  sec.hidden = false;
  if (d.missing || d.error) {
    $("detail-title").textContent = d.missing ? "No rollout '" + d.id + "' in this store" : d.error;
    for (const id of ["detail-sub", "detail-state"]) $(id).textContent = "";
    return;
  }
  $("detail-title").textContent = d.route;
  $("detail-sub").textContent = d.from + " \u2192 " + d.to + ", " + d.strategy + " (" + d.plan.join(", ") + ")";
  const st = $("detail-state");
  st.replaceChildren(stateBadge(d.state), " started " + utc(d.started) + " by " + d.by +
    (d.ended ? ", ended " + utc(d.ended) : "") + (d.detail ? ": " + d.detail : ""));
  const split = $("split");
  split.replaceChildren();
  if (d.progress.stage != null) dd(split, "Stage", d.progress.stage + ": " + (d.plan[d.progress.stage] || ""));
  dd(split, "Written", splitText(d.progress.written));
  if (d.progress.pending) dd(split, "Being written", splitText(d.progress.pending));
  dd(split, "Data plane", d.data_plane ? d.data_plane.message + " (" + utc(d.data_plane.at) + ")" : "no report since the last write");
  if (d.served) {
    dd(split, "Served, last " + (d.served.window_ms / 1000).toFixed(1) + " s",
      d.served.split ? splitText(d.served.split) + " (" + d.served.requests + " requests)" : "no requests");
  }
  if (d.progress.rolling_back && d.state === "running") dd(split, "Rolling back", d.progress.rolling_back);
  const v = $("verdict");
  v.replaceChildren();
  if (d.verdict) {
    v.append(el("span", d.verdict.kind, "v-" + d.verdict.kind), " " + d.verdict.message + " (" + utc(d.verdict.at) + ")");
  } else {
    v.textContent = "No verdict yet.";
  }
  $("holder").textContent = d.holder
    ? d.holder.name + ", since " + utc(d.holder.since) + ", lease until " + utc(d.holder.expires)
    : "Nobody holds the route's lease.";
  renderChart(d);
  for (const b of document.querySelectorAll("#actions button")) b.disabled = !d.actionable;
  const gates = $("gates");
  gates.replaceChildren();
  for (const g of d.gates) {
    gates.append(el("li", g.gate + " asked by " + g.by + " at " + utc(g.at) +
      (g.applied ? ", applied at " + utc(g.applied) : ", waiting for the lease holder")));
  }
  const body = $("timeline").tBodies[0];
  body.replaceChildren();
  for (const e of state.entries.slice().reverse()) {
    const tr = document.createElement("tr");
    tr.dataset.kind = e.kind;
    tr.append(el("td", utc(e.at)), el("td", e.by), el("td", e.message));
    body.append(tr);
  }
  const dropped = $("dropped");
  dropped.hidden = !d.dropped;
  dropped.textContent = d.dropped ? d.dropped + " routine lines not kept (the record's size bound)" : "";
}

function onRollout(d) {
  if (d.entries_from === 0) state.entries = [];
  state.entries = state.entries.slice(0, d.entries_from || 0).concat(d.entries || []);
  state.detail = d;
  renderDetail(d);
}

async function stream() {
  if (state.abort) state.abort.abort();
  const abort = new AbortController();
  state.abort = abort;
  const url = "/api/stream" + (state.id ? "?rollout=" + encodeURIComponent(state.id) : "");
  const conn = $("conn");
  try {
    const resp = await fetch(url, { headers: headers(), signal: abort.signal, cache: "no-store" });
    if (!resp.ok) {
      const body = await resp.json().catch(() => ({}));
      conn.className = "";
      conn.textContent = "Not connected: " + (body.error || resp.status);
      // Too many streams or a store hiccup pass; a refusal does not.
      if (resp.status === 503) setTimeout(() => { if (state.abort === abort) stream(); }, 3000);
      return;
    }
    conn.className = "live";
    conn.textContent = "Live";
    state.failures = 0;
    const reader = resp.body.getReader();
    const text = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done || state.abort !== abort) break;
      buf += text.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        let event = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) event = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        if (!data) continue;
        const v = JSON.parse(data);
        if (event === "list") renderList(v);
        else if (event === "rollout") onRollout(v);
      }
    }
  } catch (e) {
    if (abort.signal.aborted) return;
  }
  if (abort.signal.aborted) return;
  conn.className = "";
  state.failures = (state.failures || 0) + 1;
  // `meshkit run --ui` stops its view a moment after the rollout ends.
  conn.textContent = state.failures > 3
    ? "Disconnected: the server is gone (a `run --ui` ends with its rollout); retrying every 5 s"
    : "Reconnecting…";
  setTimeout(() => { if (state.abort === abort) stream(); }, state.failures > 3 ? 5000 : 1000);
}

const LABELS = { pause: "Pause", resume: "Resume", promote: "Promote", rollback: "Roll back" };
const CONFIRM = { promote: "Confirm promote", rollback: "Confirm roll back" };

async function act(button) {
  const gate = button.dataset.gate;
  const status = $("action-status");
  if (CONFIRM[gate] && state.armed !== button) {
    disarm();
    state.armed = button;
    button.classList.add("armed");
    button.textContent = CONFIRM[gate];
    status.textContent = "Click \u201c" + CONFIRM[gate] + "\u201d within 5 seconds to " + LABELS[gate].toLowerCase() + ".";
    state.armTimer = setTimeout(disarm, 5000);
    return;
  }
  disarm();
  status.className = "";
  status.textContent = "Asking for " + gate + "\u2026";
  try {
    const resp = await fetch("/api/rollouts/" + encodeURIComponent(state.id) + "/" + gate, {
      method: "POST", headers: headers(), cache: "no-store",
    });
    const body = await resp.json().catch(() => ({}));
    if (resp.ok) {
      status.textContent = "Recorded: " + gate + ". The lease holder applies it at its next check.";
    } else {
      status.className = "error";
      status.textContent = "Refused (" + resp.status + "): " + (body.error || "no reason given");
    }
  } catch (e) {
    status.className = "error";
    status.textContent = "Not sent: " + e;
  }
}

function disarm() {
  clearTimeout(state.armTimer);
  if (state.armed) {
    state.armed.classList.remove("armed");
    state.armed.textContent = LABELS[state.armed.dataset.gate];
  }
  state.armed = null;
}

function route() {
  state.id = readHash();
  state.entries = [];
  $("detail").hidden = !state.id;
  $("pick").hidden = !!state.id;
  for (const tr of $("list").tBodies[0].rows) {
    if (tr.dataset.id === state.id) tr.setAttribute("aria-current", "true");
    else tr.removeAttribute("aria-current");
  }
  $("access").textContent = state.token
    ? "Actions enabled (token given)"
    : "View only: actions need the link with the token that meshkit printed";
  stream();
}

// A browser keeps at most six connections to one server, and each open view holds
// one: a tab hidden for 30 s lets its stream go, and takes a new one when shown.
let hiddenTimer = null;
document.addEventListener("visibilitychange", () => {
  clearTimeout(hiddenTimer);
  if (document.hidden) {
    hiddenTimer = setTimeout(() => {
      if (state.abort) state.abort.abort();
      state.abort = null;
      $("conn").className = "";
      $("conn").textContent = "Paused while this tab is hidden";
    }, 30000);
  } else if (!state.abort) {
    stream();
  }
});

document.addEventListener("DOMContentLoaded", () => {
  for (const b of document.querySelectorAll("#actions button")) b.addEventListener("click", () => act(b));
  window.addEventListener("hashchange", route);
  setInterval(() => { if (state.detail && !state.detail.ended && !state.detail.missing) renderChart(state.detail); }, 1000);
  route();
});
