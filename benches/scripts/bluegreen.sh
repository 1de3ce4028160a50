#!/usr/bin/env bash
# bluegreen-service GET / vs a bare hyper hello-world vs the Express original, with wrk
# on loopback, one after the other in one run. Tracing on at the X-Ray default sampling
# rate (spans go to 127.0.0.1:2000 over UDP). Prints a markdown table with ratios.
# hyper and bluegreen are measured ROUNDS times, alternating which goes first, and the
# medians are compared (single runs on a 2-core machine vary by ±15%, p99 more); each
# round is a fresh process, and peak RSS is the largest seen. Express runs once.
# BUILD=static measures a deployment build instead of the default one: both Rust servers
# linked statically against glibc, and opentelemetry-aws with its regex checks replaced by
# character checks (benches/patches/opentelemetry-aws-0.21-no-regex.patch). It is built
# from a copy of the workspace (target/static-src), so Cargo.lock is not touched, into
# target/static.
# MALLOC_ARENA_MAX, when set, applies to every server measured, Express included.
# Env: DURATION (10s), CONNS (50), THREADS (1), ROUNDS (3), BUILD (default), MALLOC_ARENA_MAX.
source "$(dirname "$0")/common.sh"
need wrk wrk
command -v node >/dev/null || { echo "node is needed for the Express peer" >&2; exit 1; }

static_build() { # sets BIN to the deployment build's binaries
  need patch patch
  local triple tmp src
  triple=$(rustc -vV | awk '/^host:/ {print $2}')
  tmp=$ROOT/target/static-src
  rm -rf "$tmp"
  mkdir -p "$tmp/ws"
  tar -C "$ROOT" --exclude=./target --exclude=./.git -cf - . | tar -C "$tmp/ws" -xf -
  cargo fetch -q --manifest-path "$ROOT/Cargo.toml"
  src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/opentelemetry-aws-0.21.0 | head -1)
  cp -r "$src" "$tmp/opentelemetry-aws"
  patch -s -p1 -d "$tmp/opentelemetry-aws" <"$ROOT/benches/patches/opentelemetry-aws-0.21-no-regex.patch"
  printf '\n[patch.crates-io]\nopentelemetry-aws = { path = "../opentelemetry-aws" }\n' >>"$tmp/ws/Cargo.toml"
  RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -q --target "$triple" \
    --target-dir "$ROOT/target/static" --manifest-path "$tmp/ws/Cargo.toml" \
    -p bluegreen-service -p meshkit-benches
  BIN=$ROOT/target/static/$triple/release
}
case ${BUILD:-default} in
  default) cargo build --release -q -p bluegreen-service -p meshkit-benches --manifest-path "$ROOT/Cargo.toml" ;;
  static) static_build ;;
  *) echo "BUILD is default or static" >&2; exit 2 ;;
esac
EXPRESS=$(mktemp -d)
cp "$ROOT/benches/express/app.js" "$EXPRESS/"
(cd "$EXPRESS" && npm install --silent --no-audit --no-fund express@4 >/dev/null)

measure() { # name command...
  local name=$1; shift
  local port; port=$(free_port)
  SERVICE_PORT=$port SERVICE_NAME=blue SERVICE_VERSION=1 XRAY_SAMPLING=default "$@" "$port" >/dev/null 2>&1 &
  local pid=$!; PIDS+=("$pid")
  wait_port "$port"
  warm_up "http://127.0.0.1:$port/"
  read -r rps p99 < <(wrk_run "http://127.0.0.1:$port/")
  local rss; rss=$(peak_rss_kb "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "$name $rps $p99 $rss"
}

# The services read SERVICE_PORT; hyper-hello takes the port as its argument too.
ROUNDS=${ROUNDS:-3}
runs=()
for round in $(seq "$ROUNDS"); do
  if (( round % 2 )); then
    runs+=("$(measure hyper "$BIN/hyper-hello")" "$(measure bluegreen "$BIN/bluegreen-service")")
  else
    runs+=("$(measure bluegreen "$BIN/bluegreen-service")" "$(measure hyper "$BIN/hyper-hello")")
  fi
done
runs+=("$(measure express node "$EXPRESS/app.js")")
rm -rf "$EXPRESS"
python3 - "${runs[@]}" <<'PY'
import statistics, sys
runs = {}
for r in sys.argv[1:]:
    name, rps, p99, rss = r.split()
    runs.setdefault(name, []).append((float(rps), float(p99), float(rss) / 1024))
d = {
    n: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v), max(x[2] for x in v))
    for n, v in runs.items()
}
h, b, e = d["hyper"], d["bluegreen"], d["express"]
print("| server | requests/s (median) | p99 ms (median) | peak RSS MiB (max) | runs (rps / p99) |")
print("|---|---:|---:|---:|---|")
for n, (rps, p99, rss) in d.items():
    each = ", ".join(f"{x[0]:,.0f} / {x[1]:.2f}" for x in runs[n])
    print(f"| {n} | {rps:,.0f} | {p99:.2f} | {rss:.1f} | {each} |")
print()
print(f"bluegreen / hyper: throughput {b[0]/h[0]:.2f}x, p99 {b[1]/h[1]:.2f}x")
print(f"bluegreen / express: throughput {b[0]/e[0]:.1f}x, p99 {b[1]/e[1]:.2f}x, peak RSS {b[2]/e[2]:.3f}x (1/{e[2]/b[2]:.1f})")
PY
