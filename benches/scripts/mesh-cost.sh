#!/usr/bin/env bash
# What one proxied request costs the local mesh and nginx, counted rather than timed, so
# the figures do not move with the machine's load (mesh.sh's timings vary by ±15% here):
# - user-space instructions per request, with valgrind's callgrind: `mesh-proxy` with one
#   gateway worker, nginx with one worker process and no master;
# - system calls per request, with `strace -c`: both proxies as mesh.sh runs them.
# Both proxies are a 90/10 split over the same two bluegreen-services, loaded by wrk
# (one thread, CONNS connections) on loopback; counters start after a warm-up.
# Env: DURATION (10s), CONNS (50).
source "$(dirname "$0")/common.sh"
need wrk wrk
need nginx nginx
need valgrind valgrind
need strace strace
cargo build --release -q -p bluegreen-service -p meshkit-benches --manifest-path "$ROOT/Cargo.toml"
WORK=$(mktemp -d)
trap 'cleanup; rm -rf "$WORK"' EXIT

BLUE=$(free_port); GREEN=$(free_port)
start_bluegreen "$BLUE" blue 1
start_bluegreen "$GREEN" green 2

load() { # url -> requests completed in DURATION
  wrk -t1 -c"$CONNS" -d"$DURATION" "$1" | awk '/requests in/ {print $1}'
}

# mesh_proxy [env...]: starts mesh-proxy (under `$WRAP`, if set) and sets PORT and PID.
mesh_proxy() {
  PORT=$(free_port)
  # shellcheck disable=SC2086 # WRAP is a command line
  env "$@" ${WRAP:-} "$BIN/mesh-proxy" "$PORT" "$(free_port)" \
    "blue=127.0.0.1:$BLUE:90" "green=127.0.0.1:$GREEN:10" >/dev/null 2>&1 &
  PID=$!; PIDS+=("$PID"); wait_port "$PORT"
}
# nginx_proxy NAME MAIN_DIRECTIVES: starts nginx (under `$WRAP`, if set), sets PORT and PID.
nginx_proxy() {
  PORT=$(free_port)
  mkdir -p "$WORK/$1"
  nginx_conf "$WORK/$1" "$PORT" "$BLUE" "$GREEN" "$2"
  # shellcheck disable=SC2086
  ${WRAP:-} nginx -c "$WORK/$1/nginx.conf" -g 'daemon off;' >/dev/null 2>&1 &
  PID=$!; PIDS+=("$PID"); wait_port "$PORT"
}
stop() { kill -INT "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

instructions() { # name -> "name instructions_per_request"; PID runs under callgrind
  local url="http://127.0.0.1:$PORT/" n
  warm_up "$url"
  callgrind_control -z "$PID" >/dev/null 2>&1
  n=$(load "$url")
  callgrind_control -d "$PID" >/dev/null 2>&1
  local ir dumps=("$WORK/$1".cg.*.*)
  [ -e "${dumps[0]}" ] || { echo "callgrind wrote no profile for $1" >&2; exit 1; }
  ir=$(cat "${dumps[@]}" | awk '/^summary:/ {s += $2} END {printf "%.0f", s}')
  echo "$1 $((ir / n))"
}
syscalls() { # name pids... -> "name calls_per_request reads writes epoll_waits"
  local name=$1 url="http://127.0.0.1:$PORT/" n args=()
  shift
  for p in "$@"; do args+=(-p "$p"); done
  warm_up "$url"
  strace -f -c -o "$WORK/$name.strace" "${args[@]}" 2>/dev/null &
  local tracer=$!
  sleep 1 # strace attaches
  n=$(load "$url")
  kill -INT "$tracer"; wait "$tracer" 2>/dev/null || true
  awk -v name="$name" -v n="$n" '
    $NF == "total" { total = $4 } # % time, seconds, usecs/call, calls, [errors,] name
    $NF ~ /^(read|recvfrom|readv)$/ { r += $4 }
    $NF ~ /^(write|writev|sendto|sendmsg)$/ { w += $4 }
    $NF == "epoll_wait" { e += $4 }
    END { printf "%s %.2f %.2f %.2f %.2f\n", name, total / n, r / n, w / n, e / n }' "$WORK/$name.strace"
}

WRAP="valgrind -q --tool=callgrind --callgrind-out-file=$WORK/mesh.cg.%p"
mesh_proxy MESH_WORKERS=1
mesh_ir=$(instructions mesh)
(cd "$WORK" && callgrind_annotate --threshold=100 mesh.cg.*.* >mesh.annotate 2>/dev/null)
stop "$PID"
WRAP="valgrind -q --tool=callgrind --callgrind-out-file=$WORK/nginx.cg.%p"
nginx_proxy cg "master_process off; worker_processes 1;"
nginx_ir=$(instructions nginx)
stop "$PID"

WRAP=
mesh_proxy
mesh_sc=$(syscalls mesh "$PID")
stop "$PID"
nginx_proxy sc "worker_processes auto;"
# shellcheck disable=SC2046
nginx_sc=$(syscalls nginx $(pgrep -P "$PID"))
stop "$PID"

python3 - "$WORK/mesh.annotate" "$mesh_ir" "$nginx_ir" "$mesh_sc" "$nginx_sc" <<'PY'
import collections, re, sys
annotate, *rows = sys.argv[1:]
ir = dict(r.split() for r in rows[:2])
sc = {r.split()[0]: r.split()[1:] for r in rows[2:]}
print("| proxy | user-space instructions / request | system calls / request | reads | writes | epoll_wait |")
print("|---|---:|---:|---:|---:|---:|")
for n in ("mesh", "nginx"):
    print(f"| {n} | {int(ir[n]):,} | " + " | ".join(sc[n]) + " |")
print(f"\nmesh / nginx: instructions {int(ir['mesh']) / int(ir['nginx']):.2f}x, "
      f"system calls {float(sc['mesh'][0]) / float(sc['nginx'][0]):.2f}x")
# Self cost by where the code comes from: a crate, the standard library, or libc.
# (Frames that callgrind charges the whole thread to, such as the thread's entry, are
# left out: anything above half of the total.)
text = open(annotate).read()
program = int(re.search(r"([\d,]+) \S+\s+PROGRAM TOTALS", text).group(1).replace(",", ""))
by = collections.Counter()
for line in text.splitlines():
    m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S+?):\S", line)
    if not m or int(m.group(1).replace(",", "")) > program / 2:
        continue
    n, f = int(m.group(1).replace(",", "")), m.group(2)
    crate = re.search(r"index\.crates\.io-[0-9a-f]+/([^/]+)/", f)
    if crate:
        key = crate.group(1)
    elif "/library/" in f:
        key = "Rust std/core/alloc"
    elif "/meshkit/src/" in f:
        key = "meshkit"
    elif f.startswith("./"):
        key = "glibc (" + f.split("/")[1] + ")"
    else:
        key = "other (no source file)"
    by[key] += n
total = sum(by.values())
print("\nmesh, where its user-space instructions go (self cost):")
for k, v in by.most_common(10):
    print(f"  {k:32} {100 * v / total:5.1f}%")
PY
