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
APT_NEEDS=(prometheus:prometheus wrk:wrk tmux:tmux chromium:chromium chromedriver:chromium-driver)
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

# axe-core, the accessibility rules the browser test runs in the page: a pinned
# release from the npm registry, checked against its published sha512.
AXE_VERSION=4.14.1
AXE_SHA512=FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ==
need_axe() {
  local dir=target/axe-core
  if [ ! -f "$dir/axe.min.js" ] || [ "$(cat "$dir/version" 2>/dev/null)" != "$AXE_VERSION" ]; then
    say "downloading axe-core $AXE_VERSION (npm registry)"
    mkdir -p "$dir"
    python3 - "$AXE_VERSION" "$dir/axe.tgz" <<'PY'
import sys, urllib.request
url = f"https://registry.npmjs.org/axe-core/-/axe-core-{sys.argv[1]}.tgz"
with urllib.request.urlopen(url, timeout=60) as r, open(sys.argv[2], "wb") as f:
    f.write(r.read())
PY
    local got; got=$(python3 -c 'import base64, hashlib, sys; print(base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' "$dir/axe.tgz")
    if [ "$got" != "$AXE_SHA512" ]; then
      echo "error: axe-core-$AXE_VERSION.tgz does not match its published sha512" >&2; exit 1
    fi
    tar -xzf "$dir/axe.tgz" -C "$dir" package/axe.min.js
    mv "$dir/package/axe.min.js" "$dir/axe.min.js"; rm -rf "$dir/package" "$dir/axe.tgz"
    echo "$AXE_VERSION" > "$dir/version"
  fi
  export MESHKIT_AXE_JS=$PWD/$dir/axe.min.js
}

for n in "${APT_NEEDS[@]}"; do need_apt "${n%%:*}" "${n#*:}"; done
# Fonts for the pages Chromium renders (only recommended by Debian's chromium, so
# absent on a minimal machine; the browser test's screenshot needs them).
dpkg -s fonts-liberation >/dev/null 2>&1 || apt_install fonts-liberation
need_moto
need_axe

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
