#!/usr/bin/env bash
# The broken demo scenarios, repeated: 1 s checks, a 5% first step, 100 requests/s
# through the local mesh. Reports failed user requests as a share of all, and the time
# from the first failed check to all traffic back on blue, for: --broken-probe (green
# fails its probe: caught before any user traffic), --broken with green failing 50% and
# 10% of its users' requests while its probe stays healthy (caught by the success-rate
# check on real traffic).
# Env: RUNS (10).
source "$(dirname "$0")/common.sh"
RUNS=${RUNS:-10}
cargo build --release -q -p meshkit-demo --manifest-path "$ROOT/Cargo.toml"
OUT=$(mktemp)
trap 'cleanup; rm -f "$OUT"' EXIT
# Configurations: "scenario fail-rate".
for config in "--broken-probe 0.5" "--broken 0.5" "--broken 0.1"; do
  read -r scenario fail <<<"$config"
  for _ in $(seq "$RUNS"); do
    code=0
    line=$("$BIN/meshkit-demo" --fast "$scenario" --fail-rate "$fail" --steps 5,25,50,100 \
      --check-interval 1s --json 2>/dev/null | tail -1) || code=$?
    echo "${scenario#--}/$fail $code $line" >>"$OUT"
  done
done
python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = {}
for raw in open(sys.argv[1]):
    pre, code, line = raw.split(" ", 2)
    rows.setdefault(pre, []).append((int(code), json.loads(line)))
print("| scenario / green's users failing | runs | rolled back (exit 3) | requests | failed | failed % (mean / max) | first failed check → all on blue, ms (max) |")
print("|---|---:|---:|---:|---:|---:|---:|")
for pre, runs in rows.items():
    req = sum(r["requests"] for _, r in runs)
    failed = sum(r["failed"] for _, r in runs)
    shares = [r["failed_percent"] for _, r in runs]
    back = [r["rollback_ms"] for _, r in runs if r.get("rollback_ms") is not None]
    rolled = sum(1 for c, _ in runs if c == 3)
    print(f"| {pre} | {len(runs)} | {rolled} | {req:,} | {failed} | {statistics.mean(shares):.2f} / {max(shares):.2f} | {max(back) if back else float('nan'):.1f} |")
PY
