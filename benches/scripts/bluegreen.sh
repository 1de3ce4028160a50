#!/usr/bin/env bash
# bluegreen-service GET / vs a bare hyper hello-world vs the Express original, with wrk
# on loopback, one after the other in one run. Tracing on at the X-Ray default sampling
# rate (spans go to 127.0.0.1:2000 over UDP). Prints a markdown table with ratios.
# Env: DURATION (10s), CONNS (50), THREADS (1).
source "$(dirname "$0")/common.sh"
need wrk wrk
command -v node >/dev/null || { echo "node is needed for the Express peer" >&2; exit 1; }
cargo build --release -q -p bluegreen-service -p meshkit-benches --manifest-path "$ROOT/Cargo.toml"
EXPRESS=$(mktemp -d)
cp "$ROOT/benches/express/app.js" "$EXPRESS/"
(cd "$EXPRESS" && npm install --silent --no-audit --no-fund express@4 >/dev/null)

measure() { # name command...
  local name=$1; shift
  local port; port=$(free_port)
  SERVICE_PORT=$port SERVICE_NAME=blue SERVICE_VERSION=1 XRAY_SAMPLING=default "$@" "$port" >/dev/null 2>&1 &
  local pid=$!; PIDS+=("$pid")
  wait_port "$port"
  wrk -t1 -c10 -d2s "http://127.0.0.1:$port/" >/dev/null # warm-up
  read -r rps p99 < <(wrk_run "http://127.0.0.1:$port/")
  local rss; rss=$(peak_rss_kb "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "$name $rps $p99 $rss"
}

# The services read SERVICE_PORT; hyper-hello takes the port as its argument too.
hyper=$(measure hyper "$BIN/hyper-hello")
blue=$(measure bluegreen "$BIN/bluegreen-service")
express=$(measure express node "$EXPRESS/app.js")
rm -rf "$EXPRESS"
python3 - "$hyper" "$blue" "$express" <<'PY'
import sys
rows = [r.split() for r in sys.argv[1:]]
d = {r[0]: (float(r[1]), float(r[2]), float(r[3]) / 1024) for r in rows}
h, b, e = d["hyper"], d["bluegreen"], d["express"]
print("| server | requests/s | p99 ms | peak RSS MiB |")
print("|---|---:|---:|---:|")
for n, (rps, p99, rss) in d.items():
    print(f"| {n} | {rps:,.0f} | {p99:.2f} | {rss:.1f} |")
print()
print(f"bluegreen / hyper: throughput {b[0]/h[0]:.2f}x, p99 {b[1]/h[1]:.2f}x")
print(f"bluegreen / express: throughput {b[0]/e[0]:.1f}x, p99 {b[1]/e[1]:.2f}x, peak RSS {b[2]/e[2]:.3f}x (1/{e[2]/b[2]:.0f})")
PY
