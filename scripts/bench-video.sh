#!/usr/bin/env bash
# The straight-to-video route against PNG frames + make_video.sh, side by
# side in one run, on the same recording: wall time and CPU (user + sys of
# the command and its children, ffmpeg included), median of 3.
#
# usage: scripts/bench-video.sh RECORDING.rsprof
# (a 600-interval whole-system recording: `profile record -F 99 --interval
# 0.1 -o long.rsprof 60` while something runs). Needs target/release/profile.
set -euo pipefail
cd "$(dirname "$0")/.."
rec=${1:?usage: bench-video.sh RECORDING.rsprof}
bin=$PWD/target/release/profile
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run() { # label, command...: prints "wall cpu"
    /usr/bin/time -f '%e %U %S' -o "$work/t" "${@:2}" > /dev/null 2>&1
    read -r wall u s < <(tail -1 "$work/t")
    echo "$wall $(echo "$u + $s" | bc -l)"
}
median() { sort -n | sed -n 2p; }

direct_wall=(); direct_cpu=(); png_wall=(); png_cpu=()
for i in 1 2 3; do
    rm -rf "$work"/*.mp4 "$work/f"
    read -r w c < <(run direct "$bin" render "$rec" -o "$work/direct.mp4")
    direct_wall+=("$w"); direct_cpu+=("$c")
    mkdir -p "$work/f"
    read -r w1 c1 < <(run png "$bin" render "$rec" -g "$work/f/fg%05d.png")
    read -r w2 c2 < <(run mv scripts/make_video.sh "$work/f/fg%05d.png" "$work/png.mp4")
    png_wall+=("$(echo "$w1 + $w2" | bc -l)"); png_cpu+=("$(echo "$c1 + $c2" | bc -l)")
done
frames=$(ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames -of csv=p=0 "$work/direct.mp4")
dw=$(printf '%s\n' "${direct_wall[@]}" | median); dc=$(printf '%s\n' "${direct_cpu[@]}" | median)
pw=$(printf '%s\n' "${png_wall[@]}" | median); pc=$(printf '%s\n' "${png_cpu[@]}" | median)
printf '%-40s %8s %8s\n' route "wall s" "CPU s"
printf '%-40s %8.2f %8.2f\n' "render -o talk.mp4 ($frames frames)" "$dw" "$dc"
printf '%-40s %8.2f %8.2f\n' "render -g PNGs + make_video.sh" "$pw" "$pc"
printf 'straight to video: %.2fx faster (wall), %.2fx less CPU\n' \
    "$(echo "$pw / $dw" | bc -l)" "$(echo "$pc / $dc" | bc -l)"
