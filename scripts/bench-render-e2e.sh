#!/usr/bin/env bash
# `profile render` end to end, as users run it, side by side in one run with
# the SVG route (`--renderer svg`) and the inferno-flamegraph | resvg
# command-line pair (one process pair per frame, as many in parallel as
# there are CPUs), plus max RSS, and `-E`'s CPU per near-empty frame.
#
# Inputs: syn2000 (../shared/bench) imported N times into a recording (one
# interval each), and optionally a real capture: a recording made by
# `profile import` of `perf script` output.
#
# usage: scripts/bench-render-e2e.sh [REAL.rsprof]      (the -E part needs root)
set -euo pipefail
cd "$(dirname "$0")/.."
folded=../shared/bench/syn2000-seed7.folded
real=${1:-}
cargo build --release --quiet
P=$PWD/target/release/profile
tools=target/bench-tools/bin
if [ ! -x "$tools/inferno-flamegraph" ] || [ ! -x "$tools/resvg" ]; then
    echo "installing the inferno and resvg command-line tools into target/bench-tools..." >&2
    cargo install --quiet --root target/bench-tools inferno@0.12.8 resvg@0.49.0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for n in 60 600; do
    "$P" import --overwrite -o "$tmp/syn$n.rsprof" $(for _ in $(seq "$n"); do echo "$folded"; done) 2>/dev/null
done

# wall s, CPU s, max RSS MB of a command
measure() {
    /usr/bin/time -f "%e %U %S %M" -o "$tmp/time" "$@" >/dev/null 2>&1
    awk '{printf "%.2f %.2f %.0f", $1, $2 + $3, $4 / 1024}' "$tmp/time"
}
row() { # name command... (frames: the PNGs it wrote)
    local name=$1
    shift
    rm -rf "$tmp/out" && mkdir "$tmp/out"
    read -r wall cpu rss <<<"$(measure "$@")"
    local frames
    frames=$(find "$tmp/out" -name '*.png' | wc -l)
    printf "| %s | %s | %s | %s | %.1f | %s |\n" "$name" "$frames" "$wall" "$cpu" \
        "$(awk -v n="$frames" -v w="$wall" 'BEGIN{print n / w}')" "$rss"
}
echo "# 1920x1080 PNG, $(nproc) CPUs, $(date -u +%F)"
echo
echo "| run | frames | wall s | CPU s | frames/s | max RSS MB |"
echo "|---|---|---|---|---|---|"
row "syn2000 x60: render (two passes)" "$P" render "$tmp/syn60.rsprof" -g "$tmp/out/f%04d.png"
row "syn2000 x60: render --as-live" "$P" render "$tmp/syn60.rsprof" --as-live -g "$tmp/out/f%04d.png"
row "syn2000 x60: render --renderer svg" "$P" render "$tmp/syn60.rsprof" --renderer svg -g "$tmp/out/f%04d.png"
cli() {
    seq 1 60 | xargs -P "$(nproc)" -I{} sh -c \
        "$tools/inferno-flamegraph --width 1920 --deterministic --minwidth 0.0526 < '$folded' > '$tmp/out/{}.svg' && $tools/resvg --monospace-family 'DejaVu Sans Mono' --width 1920 '$tmp/out/{}.svg' '$tmp/out/{}.png'"
}
export -f cli
export tools folded tmp
row "syn2000 x60: inferno-flamegraph \\| resvg" bash -c cli
row "syn2000 x600: render (two passes)" "$P" render "$tmp/syn600.rsprof" -g "$tmp/out/f%04d.png"
if [ -n "$real" ]; then
    row "real capture: render (two passes)" "$P" render "$real" -g "$tmp/out/f%04d.png"
    row "real capture: render --as-live" "$P" render "$real" --as-live -g "$tmp/out/f%04d.png"
fi
if [ "$(id -u)" = 0 ]; then
    echo
    echo "-E, whole system, 200 intervals of 0.05 s (CPU s with and without frames):"
    rm -rf "$tmp/out" && mkdir "$tmp/out"
    read -r _ with _ <<<"$(measure "$P" --interval 0.05 -E -g "$tmp/out/f%04d.png" 10)"
    read -r _ without _ <<<"$(measure "$P" --interval 0.05 -f 10)"
    awk -v a="$with" -v b="$without" 'BEGIN{printf "idle system (empty frames): with -E %.2f s, without %.2f s: %.2f ms of CPU per frame\n", a, b, (a - b) * 1000 / 200}'
    # A few samples of one short stack per frame: a nice'd busy shell.
    nice -n 19 sh -c 'while :; do :; done' &
    spin=$!
    rm -rf "$tmp/out" && mkdir "$tmp/out"
    read -r _ with _ <<<"$(measure "$P" -p "$spin" --interval 0.05 -E -g "$tmp/out/f%04d.png" 10)"
    read -r _ without _ <<<"$(measure "$P" -p "$spin" --interval 0.05 -f 10)"
    kill "$spin"
    awk -v a="$with" -v b="$without" 'BEGIN{printf "-p of a busy shell (2 samples, 6 bars a frame): with -E %.2f s, without %.2f s: %.2f ms of CPU per frame\n", a, b, (a - b) * 1000 / 200}'
fi
