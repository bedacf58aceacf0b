#!/usr/bin/env bash
# Assembles numbered PNG flame-graph frames into a video for talks and demos.
# (`profile -E ... -o talk.mp4` and `profile render run.rsprof -o talk.mp4`
# do it in one step; this is for frames already on disk.)
#
# usage: make_video.sh PATTERN OUT.mp4|OUT.webm|OUT.gif [--fps N] [--start-number N]
#   PATTERN   the -g pattern the frames were written with, e.g. frames/flamegraph%04d.png
#   --fps N           frames per second (default: from the PATTERN's sidecar,
#                     frames/flamegraph.video.json, which -E and render write:
#                     real time, one frame per interval)
#   --start-number N  number of the first frame (default: the lowest one found)
#
# mp4: H.264 with -crf 18 -tune stillimage (sharp labels), yuv420p and
# +faststart, so it plays in browsers and presentation software; webm: VP9;
# gif: with a generated palette. One video frame per PNG.
set -euo pipefail

die() { echo "make_video.sh: $*" >&2; exit 1; }

[ $# -ge 2 ] || die "usage: make_video.sh PATTERN OUT.mp4|OUT.webm|OUT.gif [--fps N] [--start-number N]"
pattern=$1
out=$2
shift 2
fps=
start=
while [ $# -gt 0 ]; do
    case $1 in
        --fps) fps=${2:?--fps needs a number}; shift 2 ;;
        --start-number) start=${2:?--start-number needs a number}; shift 2 ;;
        *) die "unknown option $1" ;;
    esac
done
case $pattern in
    *.png) ;;
    *.svg) die "SVG frames can't be assembled into a video: write PNG frames (-g 'frames/fg%04d.png')" ;;
    *) die "PATTERN must name .png frames: $pattern" ;;
esac
case $out in
    *.mp4) codec=(-c:v libx264 -crf 18 -tune stillimage -pix_fmt yuv420p -movflags +faststart
                  -vf "pad=ceil(iw/2)*2:ceil(ih/2)*2") ;;
    *.webm) codec=(-c:v libvpx-vp9 -crf 30 -b:v 0 -pix_fmt yuv420p) ;;
    *.gif) codec=(-vf "split[a][b];[a]palettegen=stats_mode=diff[p];[b][p]paletteuse") ;;
    *) die "OUT must end in .mp4, .webm or .gif: $out" ;;
esac
command -v ffmpeg >/dev/null 2>&1 || die "ffmpeg not found; install it (apt-get install ffmpeg)"

# The frames that exist: the pattern with its %d / %0Nd turned into a glob.
dir=$(dirname -- "$pattern")
file=$(basename -- "$pattern")
[[ $file =~ ^(.*)%(0[0-9]+)?d(.*)$ ]] || die "PATTERN needs one %d or %0Nd: $pattern"
prefix=${BASH_REMATCH[1]}
suffix=${BASH_REMATCH[3]}
if [ -z "$fps" ]; then
    stem=$prefix
    while [[ $stem == *[-_.] ]]; do stem=${stem%?}; done
    [ -n "$stem" ] || stem=frames
    sidecar="$dir/$stem.video.json"
    if [ -f "$sidecar" ]; then
        fps=$(sed -n 's/.*"fps":\([0-9.eE+-]*\).*/\1/p' "$sidecar")
    fi
    [ -n "$fps" ] || die "no --fps and no $sidecar (written by profile -E and render): give --fps"
fi
[[ $fps =~ ^[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?$ ]] || die "--fps must be a number, got '$fps'"
shopt -s nullglob
frames=()
for f in "$dir/$prefix"*"$suffix"; do
    num=${f#"$dir/$prefix"}
    num=${num%"$suffix"}
    [[ $num =~ ^[0-9]+$ ]] && frames+=("$((10#$num))")
done
[ ${#frames[@]} -gt 0 ] || die "no frames match $pattern"
if [ -z "$start" ]; then
    start=$(printf '%s\n' "${frames[@]}" | sort -n | head -1)
fi
count=${#frames[@]}

mkdir -p -- "$(dirname -- "$out")"
ffmpeg -hide_banner -loglevel error -y \
    -framerate "$fps" -start_number "$start" -i "$pattern" \
    -frames:v "$count" \
    "${codec[@]}" \
    "$out"
echo "wrote $out: $count frames at $fps fps"
