#!/usr/bin/env bash
# The broken demo scenario, repeated: green fails 50% of requests, 1 s checks, a 5%
# first step, 100 requests/s through the local mesh. Reports failed user requests as a
# share of all, and the time from the first failed check to all traffic back on blue,
# without and with a 2 s pre-traffic check (Canary::pre_check), and with green failing
# only 10%.
# Env: RUNS (10).
source "$(dirname "$0")/common.sh"
RUNS=${RUNS:-10}
cargo build --release -q -p meshkit-demo --manifest-path "$ROOT/Cargo.toml"
OUT=$(mktemp)
trap 'cleanup; rm -f "$OUT"' EXIT
# Configurations: "pre-check fail-rate". With 50% failing, green's direct probe fails
# it in the check round before the first shift; at 10% the probe mostly passes and the
# success-rate check on its traffic has to catch it.
for config in "0s 0.5" "2s 0.5" "0s 0.1"; do
  read -r pre fail <<<"$config"
  for _ in $(seq "$RUNS"); do
    code=0
    line=$("$BIN/meshkit-demo" --fast --broken --fail-rate "$fail" --steps 5,25,50,100 \
      --check-interval 1s --pre-check "$pre" --json 2>/dev/null | tail -1) || code=$?
    echo "$pre/$fail $code $line" >>"$OUT"
  done
done
python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = {}
for raw in open(sys.argv[1]):
    pre, code, line = raw.split(" ", 2)
    rows.setdefault(pre, []).append((int(code), json.loads(line)))
print("| pre-check / green fail rate | runs | rolled back (exit 3) | requests | failed | failed % (mean / max) | first failed check → all on blue, ms (max) |")
print("|---|---:|---:|---:|---:|---:|---:|")
for pre, runs in rows.items():
    req = sum(r["requests"] for _, r in runs)
    failed = sum(r["failed"] for _, r in runs)
    shares = [r["failed_percent"] for _, r in runs]
    back = [r["rollback_ms"] for _, r in runs if r.get("rollback_ms") is not None]
    rolled = sum(1 for c, _ in runs if c == 3)
    print(f"| {pre} | {len(runs)} | {rolled} | {req:,} | {failed} | {statistics.mean(shares):.2f} / {max(shares):.2f} | {max(back) if back else float('nan'):.1f} |")
PY
