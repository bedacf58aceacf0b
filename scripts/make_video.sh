#!/usr/bin/env bash
# Assembles numbered flame-graph frames into an mp4 for talks and demos.
#
# usage: make_video.sh PATTERN OUT.mp4 [--fps N] [--start-number N]
#   PATTERN   the -g pattern the frames were written with, e.g. frames/flamegraph%04d.png
#   --fps N           frames per second of the video (default 30)
#   --start-number N  number of the first frame (default: the lowest one found)
#
# h264, yuv420p and +faststart, so it plays in browsers and presentation
# software; the video has exactly one video frame per PNG.
set -euo pipefail

die() { echo "make_video.sh: $*" >&2; exit 1; }

[ $# -ge 2 ] || die "usage: make_video.sh PATTERN OUT.mp4 [--fps N] [--start-number N]"
pattern=$1
out=$2
shift 2
fps=30
start=
while [ $# -gt 0 ]; do
    case $1 in
        --fps) fps=${2:?--fps needs a number}; shift 2 ;;
        --start-number) start=${2:?--start-number needs a number}; shift 2 ;;
        *) die "unknown option $1" ;;
    esac
done
[[ $fps =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--fps must be a number, got '$fps'"
command -v ffmpeg >/dev/null 2>&1 || die "ffmpeg not found; install it (apt-get install ffmpeg)"

# The frames that exist: the pattern with its %d / %0Nd turned into a glob.
dir=$(dirname -- "$pattern")
file=$(basename -- "$pattern")
[[ $file =~ ^(.*)%(0[0-9]+)?d(.*)$ ]] || die "PATTERN needs one %d or %0Nd: $pattern"
prefix=${BASH_REMATCH[1]}
suffix=${BASH_REMATCH[3]}
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
    -c:v libx264 -pix_fmt yuv420p -movflags +faststart \
    -vf "pad=ceil(iw/2)*2:ceil(ih/2)*2" \
    "$out"
echo "wrote $out: $count frames at $fps fps"
