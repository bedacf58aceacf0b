#!/usr/bin/env bash
# Installs the system packages rs-profile needs to build, test, benchmark and
# make videos, on Debian/Ubuntu, as root. Safe to run again.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps.sh: run as root (apt-get install)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Build: clang/llvm compile the BPF program; libelf, zlib and pkg-config
# build the vendored libbpf. Tests: linux-perf (reference profiles), bpftool
# (pinned filter maps), util-linux (taskset, unshare, setpriv). Video:
# ffmpeg. Frames: a monospace font. Benchmarks: bpftrace, python3. The live
# page's browser test: chromium, driven by playwright-core from npm. Export
# checks: golang-go (go tool pprof), and speedscope's schema with ajv (npm).
# The man pages are read back by man (man-db). libc6-dbg: libc's names (its
# debug file's symbol table), as perf shows them.
apt-get install -y -qq --no-install-recommends \
    clang llvm libelf-dev zlib1g-dev pkg-config make gcc \
    linux-perf bpftool bpftrace util-linux ffmpeg fonts-dejavu-core python3 \
    chromium ca-certificates golang-go time bc man-db libc6-dbg >/dev/null
if ! command -v npm >/dev/null 2>&1; then
    apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
here=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -d "$here/tests/browser/node_modules/playwright-core" ] \
    || [ ! -d "$here/tests/browser/node_modules/speedscope" ] \
    || [ ! -d "$here/tests/browser/node_modules/ajv" ]; then
    npm install --prefix "$here/tests/browser" --no-audit --no-fund --silent
fi
# py-spy (PyPI): the reference for Python stacks in the tests.
if [ ! -x "$here/target/py-spy/bin/py-spy" ]; then
    apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
    python3 -m pip install -q --disable-pip-version-check --target "$here/target/py-spy" py-spy 2>/dev/null \
        || python3 -m pip install -q --disable-pip-version-check --break-system-packages --target "$here/target/py-spy" py-spy
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "install-deps.sh: cargo not found; install a Rust toolchain (1.88 or newer) with rustup" >&2
    exit 1
fi
