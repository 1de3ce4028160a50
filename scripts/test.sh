#!/usr/bin/env bash
# Installs what the tests need when it is missing, then runs every check:
# formatting, clippy (warnings are errors), docs (warnings are errors), and the whole
# test suite. Safe to run again; installs nothing that is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }

# Incremental build caches only help repeated local edits; a test run writes gigabytes
# of them for nothing (the suite links dozens of test binaries with the AWS SDKs).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# Debian packages the tests use, as "command:package".
APT_NEEDS=(prometheus:prometheus wrk:wrk tmux:tmux)
# The AWS emulator the AWS adapter tests start (see meshkit-testing's MotoServer).
MOTO_REQ='moto[server]>=5.1,<6'

apt_updated=0
apt_install() {
  local pkg=$1
  if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then
    echo "error: Debian package '$pkg' is needed and this user cannot install it" >&2
    exit 1
  fi
  local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  if [ $apt_updated = 0 ]; then $sudo apt-get update -qq; apt_updated=1; fi
  say "installing Debian package $pkg"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null
}

need_apt() {
  command -v "$1" >/dev/null 2>&1 || apt_install "$2"
}

# Uses a Python that already has moto's server, else installs it into a virtualenv
# under target/ (Debian's own Python refuses system-wide pip installs). Exports
# MESHKIT_PYTHON for the tests.
need_moto() {
  local py=${MESHKIT_PYTHON:-python3} venv=target/moto-venv
  if "$py" -c "import moto.server" >/dev/null 2>&1; then
    export MESHKIT_PYTHON=$py; return 0
  fi
  if ! "$venv/bin/python" -c "import moto.server" >/dev/null 2>&1; then
    mkdir -p target
    python3 -m venv "$venv" >/dev/null 2>&1 || { apt_install python3-venv; rm -rf "$venv"; python3 -m venv "$venv"; }
    say "installing Python package $MOTO_REQ into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$MOTO_REQ"
  fi
  export MESHKIT_PYTHON=$PWD/$venv/bin/python
}

for n in "${APT_NEEDS[@]}"; do need_apt "${n%%:*}" "${n#*:}"; done
need_moto

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
