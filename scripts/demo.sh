#!/usr/bin/env bash
# The main job, from a fresh Debian/Ubuntu machine: installs what is needed,
# builds rs-profile, profiles the whole system for a few seconds while a small
# workload changes its hot function halfway, writes one flame-graph frame per
# interval to frames/, and assembles them into frames/profile.mp4.
#
# usage (as root): scripts/demo.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
./scripts/install-deps.sh
cargo build --release --quiet

# Something to look at: a clang-built workload (frame pointers kept) that
# runs alpha() for the first half and beta() for the second.
work=$(mktemp -d)
trap 'rm -rf "$work"; kill "${wl:-0}" 2>/dev/null || true' EXIT
clang -O2 -fno-omit-frame-pointer -pthread -o "$work/workload" tests/workloads/workload.c
"$work/workload" switch "$((seconds + 1))" >/dev/null &
wl=$!

# PNG frames and, in the same step, the video (real time: 2 frames/s).
./target/release/profile -F 199 -E --overwrite --interval 0.5 -f \
    --title "rs-profile demo: alpha, then beta" \
    -o frames/profile.mp4 "$seconds" > frames/profile.folded
echo "frames: frames/flamegraph*.png   video: frames/profile.mp4   folded: frames/profile.folded"
