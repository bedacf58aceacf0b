#!/usr/bin/env bash
# The full test suite: installs what it needs, checks formatting and lints,
# then runs every test. BPF tests run for real (root + BTF needed); with
# RS_PROFILE_REQUIRE_BPF=1 a BPF test that can't run fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
