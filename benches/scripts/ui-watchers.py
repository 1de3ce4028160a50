#!/usr/bin/env python3
"""The web view under watch: page weight, event-to-page latency, and `meshkit ui`'s
CPU and memory while 20 browsers (20 headless Chromium sessions) watch a running
rollout.

Runs on loopback only: two tiny upstreams, `meshkit ui` and `meshkit run` (release
builds) over one SQLite store, and headless Chromium through chromedriver (raw
WebDriver over HTTP, no client library). Needs chromium and chromium-driver.

    cargo build --release -p meshkit-cli
    python3 benches/scripts/ui-watchers.py [TABS]
"""
import http.server, json, os, socketserver, subprocess, sys, tempfile, threading, time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MESHKIT = os.path.join(ROOT, "target/release/meshkit")
TABS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
TOKEN = "bench-token-0123456789abcdef"
WINDOW = 30  # seconds per measurement


def free_port():
    import socket
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


class Ok(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200); self.send_header("content-length", "2"); self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a): pass


def upstream():
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Ok)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv.server_address[1]


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(pid, seconds):
    c0, t0, peak = cpu_seconds(pid), time.time(), 0.0
    while time.time() - t0 < seconds:
        peak = max(peak, rss_mib(pid)); time.sleep(0.5)
    return (cpu_seconds(pid) - c0) / (time.time() - t0) * 100, peak


def wd(base, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)["value"]


def http_get(url, limit=None):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read() if limit is None else r.read(limit)


def main():
    tmp = tempfile.mkdtemp(prefix="meshkit-ui-bench-")
    store = f"sqlite:{tmp}/rollouts.db"
    blue, green, gateway, ui_port, driver_port = upstream(), upstream(), free_port(), free_port(), free_port()
    spec = os.path.join(tmp, "spec.json")
    json.dump({"route": {"backend": "local", "listen": f"127.0.0.1:{gateway}", "stable": "blue",
                         "stable_addr": f"127.0.0.1:{blue}", "new": "green",
                         "new_addr": f"127.0.0.1:{green}"},
               "strategy": {"kind": "linear", "step": 10, "wait": "9s"},
               "checks": [{"kind": "http", "url": f"http://127.0.0.1:{green}/", "requests": 1}],
               "policy": {"check_interval": "1s"}}, open(spec, "w"))
    env = dict(os.environ, MESHKIT_STORE=store, MESHKIT_UI_TOKEN=TOKEN)
    ui = subprocess.Popen([MESHKIT, "ui", "--listen", f"127.0.0.1:{ui_port}"], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = subprocess.Popen([MESHKIT, "run", spec], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Its own session: the browsers it starts go with it, whatever happens.
    driver = subprocess.Popen(["chromedriver", f"--port={driver_port}"], start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{ui_port}"
    try:
        time.sleep(2)
        rollouts = json.loads(http_get(base + "/api/rollouts"))["rollouts"]
        rid = rollouts[0]["id"]
        # Page weight: what a first load transfers (no compression is offered).
        page = {p: len(http_get(base + p)) for p in ["/", "/app.js", "/app.css"]}
        first = json.loads(http_get(f"{base}/api/rollouts/{rid}"))
        snapshot = len(json.dumps(first, separators=(",", ":")))
        print(f"page weight: {sum(page.values())} bytes ({page}), "
              f"plus the first rollout snapshot {snapshot} bytes ({len(first['entries'])} timeline lines)")

        idle_cpu, idle_rss = measure(ui.pid, WINDOW)
        print(f"meshkit ui, rollout running, no page open: CPU {idle_cpu:.2f}% of one core, RSS {idle_rss:.1f} MiB")

        wdb = f"http://127.0.0.1:{driver_port}"
        for _ in range(50):
            try:
                urllib.request.urlopen(wdb + "/status", timeout=1); break
            except Exception:
                time.sleep(0.2)
        caps = {"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                     "--disable-backgrounding-occluded-windows"]}}}}
        sid = wd(wdb, "POST", "/session", caps)["sessionId"]
        s = f"/session/{sid}"
        link = f"{base}/#token={TOKEN}&rollout={rid}"
        wd(wdb, "POST", s + "/url", {"url": link})
        wd(wdb, "POST", s + "/execute/sync", {"args": [], "script": """
            window.__seen = {}; window.__since = Date.now();
            new MutationObserver(() => {
              for (const tr of document.querySelectorAll('#timeline tbody tr')) {
                const m = tr.cells[2].textContent;
                if (!(m in window.__seen)) window.__seen[m] = Date.now();
              }
            }).observe(document.querySelector('#timeline tbody'), {childList: true});
            return null;"""})
        # Each browser its own session (its own Chromium): one browser keeps at most
        # six HTTP/1.1 connections per server, so tabs of one browser would share.
        others = []
        for i in range(TABS - 1):
            print(f"  browser {i + 2}", file=sys.stderr, flush=True)
            other = wd(wdb, "POST", "/session", caps)["sessionId"]
            wd(wdb, "POST", f"/session/{other}/url", {"url": link})
            others.append(other)
        time.sleep(2)
        rss_browsers = subprocess.run(["ps", "-C", "chromium", "-o", "rss="], capture_output=True,
                                      text=True).stdout.split()
        print(f"  {len(others) + 1} browsers: {sum(map(int, rss_browsers)) / 1024:.0f} MiB RSS together",
              file=sys.stderr)
        busy_cpu, busy_rss = measure(ui.pid, WINDOW)
        print(f"meshkit ui, {TABS} browsers watching: CPU {busy_cpu:.2f}% of one core, peak RSS {busy_rss:.1f} MiB")

        seen = wd(wdb, "POST", s + "/execute/sync", {"args": [], "script": "return [window.__since, window.__seen];"})
        since, seen = seen
        entries = json.loads(http_get(f"{base}/api/rollouts/{rid}"))["entries"]
        # Lines with a text of their own (a verdict's text repeats), recorded after the
        # first tab started watching.
        firsts = {}
        for e in entries:
            if e["kind"] in ("WeightsWritten", "StageStarted", "WeightsVerified"):
                firsts.setdefault(e["message"], e["at"])
        lat = sorted(seen[m] - at for m, at in firsts.items() if m in seen and at > since)
        if lat:
            print(f"event to page ({len(lat)} events recorded while the first tab watched, "
                  f"{TABS} browsers open): median {lat[len(lat)//2]} ms, "
                  f"p90 {lat[int(len(lat)*0.9)]} ms, max {lat[-1]} ms")
        for other in others:
            wd(wdb, "DELETE", f"/session/{other}")
        wd(wdb, "DELETE", s)
    finally:
        try:
            os.killpg(driver.pid, 15)
        except ProcessLookupError:
            pass
        for p in (run, ui, driver):
            p.terminate()
        for p in (run, ui, driver):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
