#!/usr/bin/env bash
# Installs what the tests need when it is missing, then runs every check:
# formatting, clippy (warnings are errors), docs (warnings are errors), and the whole
# test suite. Safe to run again; installs nothing that is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }

# Debian packages the tests use, as "command:package".
APT_NEEDS=(prometheus:prometheus wrk:wrk)
# Python packages, as "module:requirement".
PIP_NEEDS=()

apt_updated=0
need_apt() {
  local cmd=$1 pkg=$2
  command -v "$cmd" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then
    echo "error: '$cmd' is missing and this user cannot install Debian package '$pkg'" >&2
    exit 1
  fi
  local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  if [ $apt_updated = 0 ]; then $sudo apt-get update -qq; apt_updated=1; fi
  say "installing Debian package $pkg"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$pkg" >/dev/null
}

need_pip() {
  local module=$1 req=$2
  python3 -c "import $module" >/dev/null 2>&1 && return 0
  say "installing Python package $req"
  python3 -m pip install --quiet "$req"
}

for n in "${APT_NEEDS[@]+"${APT_NEEDS[@]}"}"; do need_apt "${n%%:*}" "${n#*:}"; done
for n in "${PIP_NEEDS[@]+"${PIP_NEEDS[@]}"}"; do need_pip "${n%%:*}" "${n#*:}"; done

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

say "cargo test"
cargo test --workspace --locked 2>&1 | tee target/test-output.txt
# A plain closing line with the totals over all test binaries.
python3 - <<'PY'
import re
text = open("target/test-output.txt").read()
passed = sum(int(m) for m in re.findall(r"test result: \w+\. (\d+) passed", text))
failed = sum(int(m) for m in re.findall(r"; (\d+) failed", text))
print(f"all tests: {passed} passed, {failed} failed")
PY
