#!/usr/bin/env bash
# Frame rendering throughput, side by side in one run:
#   rs-profile's in-process SVG route (inferno -> usvg/resvg -> png, rayon pool)
#   vs the inferno-flamegraph | resvg command-line pair, one process pair per
#   frame, as many in parallel as there are CPUs.
# Input: shared/bench/syn2000-seed7.folded (2,000 stacks, depth 10-60), 1920x1080.
# Both sides draw the same thing: deterministic colours, bars under 1 px left
# out (inferno --minwidth is a percentage: 1 px of the 1900 px graph), and
# labels in DejaVu Sans Mono (resvg's default monospace font, Courier New, is
# absent on Debian and it would silently skip all text).
#
# usage: scripts/bench-render.sh [FOLDED] [FRAMES]
set -euo pipefail
cd "$(dirname "$0")/.."
folded=${1:-../shared/bench/syn2000-seed7.folded}
frames=${2:-40}
ncpu=$(nproc)
[ -f "$folded" ] || { echo "bench-render.sh: no such file $folded" >&2; exit 1; }

tools=target/bench-tools/bin
if [ ! -x "$tools/inferno-flamegraph" ] || [ ! -x "$tools/resvg" ]; then
    echo "installing the inferno and resvg command-line tools into target/bench-tools..." >&2
    cargo install --quiet --root target/bench-tools inferno@0.12.8 resvg@0.49.0
fi
cargo build --release --quiet --example render_bench

echo "# $frames frames of $(wc -l < "$folded") stacks at 1920x1080 on $ncpu threads"
ours=$(./target/release/examples/render_bench "$folded" "$frames" "$ncpu")
ours_fps=$(awk '{for(i=1;i<=NF;i++) if($i=="frames_per_second") print $(i+1)}' <<<"$ours")

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s.%N)
seq 1 "$frames" | xargs -P "$ncpu" -I{} sh -c \
    "$tools/inferno-flamegraph --width 1920 --deterministic --minwidth 0.0526 < '$folded' > '$tmp/{}.svg' && $tools/resvg --monospace-family 'DejaVu Sans Mono' --width 1920 '$tmp/{}.svg' '$tmp/{}.png'"
end=$(date +%s.%N)
cli_fps=$(awk -v n="$frames" -v s="$start" -v e="$end" 'BEGIN{printf "%.2f", n/(e-s)}')

echo
echo "| renderer | frames/s | vs CLI pair |"
echo "|---|---|---|"
echo "| rs-profile SVG route (in-process) | $ours_fps | $(awk -v a="$ours_fps" -v b="$cli_fps" 'BEGIN{printf "%.1fx", a/b}') |"
echo "| inferno-flamegraph \\| resvg | $cli_fps | 1.0x |"
