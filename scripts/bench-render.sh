#!/usr/bin/env bash
# Frame rendering throughput, side by side in one run:
#   rs-profile's direct renderer (tiny-skia + cached glyphs, rayon pool),
#   rs-profile's SVG route (inferno -> usvg/resvg -> png, rayon pool),
#   and the inferno-flamegraph | resvg command-line pair, one process pair per
#   frame, as many in parallel as there are CPUs.
# Also the direct renderer and SVG route on a shallow, 10,000-stack profile.
# Per-stage timings: cargo bench --bench render.
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

fps() { awk '{for(i=1;i<=NF;i++) if($i=="frames_per_second") print $(i+1)}'; }
echo "# $frames frames of $(wc -l < "$folded") stacks at 1920x1080 on $ncpu threads"
direct_fps=$(RENDERER=direct ./target/release/examples/render_bench "$folded" "$((frames * 5))" "$ncpu" | fps)
ours_fps=$(RENDERER=svg ./target/release/examples/render_bench "$folded" "$frames" "$ncpu" | fps)

# A shallow profile: 10,000 distinct stacks of depth 2 to 8.
shallow=target/shallow10k.folded
python3 - > "$shallow" <<'PY'
import random
random.seed(3)
stacks = {}
while len(stacks) < 10000:
    d = random.randint(2, 8)
    s = ["app"] + [f"crate{l}::module::function_{random.randrange(4 + l * l * 40)}" for l in range(d)]
    k = ";".join(s)
    stacks[k] = stacks.get(k, 0) + 1 + random.randrange(1000) ** 2 // 20000
for k in sorted(stacks):
    print(k, stacks[k])
PY
shallow_direct=$(RENDERER=direct ./target/release/examples/render_bench "$shallow" "$((frames * 10))" "$ncpu" | fps)
shallow_svg=$(RENDERER=svg ./target/release/examples/render_bench "$shallow" "$frames" "$ncpu" | fps)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s.%N)
seq 1 "$frames" | xargs -P "$ncpu" -I{} sh -c \
    "$tools/inferno-flamegraph --width 1920 --deterministic --minwidth 0.0526 < '$folded' > '$tmp/{}.svg' && $tools/resvg --monospace-family 'DejaVu Sans Mono' --width 1920 '$tmp/{}.svg' '$tmp/{}.png'"
end=$(date +%s.%N)
cli_fps=$(awk -v n="$frames" -v s="$start" -v e="$end" 'BEGIN{printf "%.2f", n/(e-s)}')

echo
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1fx", a/b}'; }
echo "| profile | renderer | frames/s | vs CLI pair | vs SVG route |"
echo "|---|---|---|---|---|"
echo "| syn2000 | rs-profile direct | $direct_fps | $(ratio "$direct_fps" "$cli_fps") | $(ratio "$direct_fps" "$ours_fps") |"
echo "| syn2000 | rs-profile SVG route | $ours_fps | $(ratio "$ours_fps" "$cli_fps") | 1.0x |"
echo "| syn2000 | inferno-flamegraph \\| resvg | $cli_fps | 1.0x | |"
echo "| shallow10k | rs-profile direct | $shallow_direct | | $(ratio "$shallow_direct" "$shallow_svg") |"
echo "| shallow10k | rs-profile SVG route | $shallow_svg | | 1.0x |"
