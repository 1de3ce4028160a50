#!/usr/bin/env bash
# The local mesh's data plane vs nginx, both as a 90/10 weighted proxy in front of the
# same two bluegreen-services, wrk on loopback, one after the other in one run. Then
# split accuracy: 100k requests through each with traffic-client, and over the whole
# wrk run from the mesh's own per-target counters.
# Both proxies are measured ROUNDS times, alternating which goes first, and the median
# of each is reported: on a 2-core machine shared by wrk, the proxy and both services,
# single runs vary by ±15%.
# Env: DURATION (10s), CONNS (50), THREADS (1), REQUESTS (100000), ROUNDS (3).
source "$(dirname "$0")/common.sh"
need wrk wrk
need nginx nginx
REQUESTS=${REQUESTS:-100000}
ROUNDS=${ROUNDS:-3}
cargo build --release -q -p bluegreen-service -p traffic-client -p meshkit-benches --manifest-path "$ROOT/Cargo.toml"
WORK=$(mktemp -d)
trap 'cleanup; rm -rf "$WORK"' EXIT

BLUE=$(free_port); GREEN=$(free_port)
start_bluegreen "$BLUE" blue 1
start_bluegreen "$GREEN" green 2

MESH=$(free_port); ADMIN=$(free_port)
"$BIN/mesh-proxy" "$MESH" "$ADMIN" "blue=127.0.0.1:$BLUE:90" "green=127.0.0.1:$GREEN:10" >/dev/null 2>&1 &
MESH_PID=$!; PIDS+=("$MESH_PID"); wait_port "$MESH"

NGINX=$(free_port)
nginx_conf "$WORK" "$NGINX" "$BLUE" "$GREEN" "worker_processes auto;"
nginx -c "$WORK/nginx.conf" -g 'daemon off;' &
NGINX_PID=$!; PIDS+=("$NGINX_PID"); wait_port "$NGINX"

cpu_ticks() { # pids... -> "total user" CPU ticks over all their threads
  local t=0 u=0 task
  for p in "$@"; do
    for task in /proc/"$p"/task/*; do
      read -r ut st < <(cut -d' ' -f14,15 "$task/stat")
      t=$((t + ut + st)); u=$((u + ut))
    done
  done
  echo "$t $u"
}
proxy_pids() { # name
  if [ "$1" = mesh ]; then echo "$MESH_PID"; else echo "$NGINX_PID" $(pgrep -P "$NGINX_PID"); fi
}
bench() { # name url -> "name rps p99 cpu_us_per_request user_us_per_request"
  warm_up "$2"
  local pids t0 u0 t1 u1
  pids=$(proxy_pids "$1")
  # shellcheck disable=SC2086
  read -r t0 u0 < <(cpu_ticks $pids)
  read -r rps p99 < <(wrk_run "$2")
  # shellcheck disable=SC2086
  read -r t1 u1 < <(cpu_ticks $pids)
  python3 -c '
import sys
name, tick, total, user, secs, rps, p99 = sys.argv[1:]
reqs = float(rps) * float(secs)
us = lambda ticks: round(float(ticks) / float(tick) / reqs * 1e6, 1)
print(name, rps, p99, us(total), us(user))' \
    "$1" "$(getconf CLK_TCK)" $((t1 - t0)) $((u1 - u0)) "${DURATION%s}" "$rps" "$p99"
}
split() { # name url -> "name green_share_percent"
  local out
  out=$("$BIN/traffic-client" --rate 100000 --concurrency 32 --requests "$REQUESTS" --quiet --json "$2" | tail -1)
  python3 -c 'import json,sys; d=json.loads(sys.argv[2]); print(sys.argv[1], d["requests"], d["errors"], d["split"].get("green:2", 0.0))' "$1" "$out"
}
mesh_green_share() { # from the mesh's counters
  curl -s "http://127.0.0.1:$ADMIN/metrics" | python3 -c '
import re, sys
c = {t: float(v) for t, v in re.findall(r"meshkit_requests_total\{route=\"bench\",target=\"(\w+)\"\} (\S+)", sys.stdin.read())}
print(int(sum(c.values())), 100 * c.get("green", 0) / max(1, sum(c.values())))'
}

runs=()
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then
    runs+=("$(bench mesh "http://127.0.0.1:$MESH/")" "$(bench nginx "http://127.0.0.1:$NGINX/")")
  else
    runs+=("$(bench nginx "http://127.0.0.1:$NGINX/")" "$(bench mesh "http://127.0.0.1:$MESH/")")
  fi
done
read -r mesh_total mesh_wrk_green < <(mesh_green_share)
mesh_split=$(split mesh "http://127.0.0.1:$MESH/")
nginx_split=$(split nginx "http://127.0.0.1:$NGINX/")
mesh_rss=$(peak_rss_kb "$MESH_PID")

python3 - "$mesh_split" "$nginx_split" "$mesh_total" "$mesh_wrk_green" "$mesh_rss" "${runs[@]}" <<'PY'
import statistics, sys
ms, ns = sys.argv[1].split(), sys.argv[2].split()
total, wrk_green, rss = int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]) / 1024
runs = {}
for r in sys.argv[6:]:
    name, rps, p99, cpu, user = r.split()
    runs.setdefault(name, []).append(tuple(map(float, (rps, p99, cpu, user))))
med = {n: tuple(statistics.median(x[i] for x in v) for i in range(4)) for n, v in runs.items()}
print("| proxy (90/10 over two bluegreen-services) | requests/s (median) | p99 ms (median) | proxy CPU µs/request (user) | runs (rps / p99) |")
print("|---|---:|---:|---:|---|")
for n, (rps, p99, cpu, user) in med.items():
    each = ", ".join(f"{x[0]:,.0f} / {x[1]:.2f}" for x in runs[n])
    print(f"| {n} | {rps:,.0f} | {p99:.2f} | {cpu:.1f} ({user:.1f}) | {each} |")
m, n = med["mesh"], med["nginx"]
print()
print(f"mesh / nginx: throughput {m[0]/n[0]:.2f}x, p99 {m[1]/n[1]:.2f}x; mesh-proxy peak RSS {rss:.1f} MiB")
print()
print("| proxy | requests | errors | green share % (target 10 ± 1) |")
print("|---|---:|---:|---:|")
for r in (ms, ns):
    print(f"| {r[0]} (traffic-client) | {int(r[1]):,} | {r[2]} | {float(r[3]):.2f} |")
print(f"| mesh (its counters, warm-up + wrk run) | {total:,} | - | {wrk_green:.2f} |")
PY
