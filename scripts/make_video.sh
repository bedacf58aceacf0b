#!/usr/bin/env bash
# Assembles numbered PNG flame-graph frames into a video for talks and demos.
# (`profile -E ... -o talk.mp4` and `profile render run.rsprof -o talk.mp4`
# do it in one step; this is for frames already on disk.)
#
# usage: make_video.sh PATTERN OUT.mp4|OUT.webm|OUT.gif [--fps N] [--start-number N] [--overwrite]
#   PATTERN   the -g pattern the frames were written with, e.g. frames/flamegraph%04d.png
#   --fps N           frames per second (default: from the PATTERN's sidecar,
#                     frames/flamegraph.video.json, which -E and render write:
#                     real time, one frame per interval)
#   --start-number N  number of the first frame (default: the lowest one found)
#   --overwrite       replace OUT if it exists (refused otherwise)
#
# It runs `profile encode`, which writes the video the way every output of
# the profiler is written: the frame folder opened once, ffmpeg writing to a
# descriptor (never a path), the file named at the end without replacing
# anything, a folder other users can change refused. mp4: H.264 with -crf 18
# -tune stillimage; webm: VP9, with alpha when the frames are transparent;
# gif: a generated palette.
set -euo pipefail

die() { echo "make_video.sh: $*" >&2; exit 1; }

[ $# -ge 2 ] || die "usage: make_video.sh PATTERN OUT.mp4|OUT.webm|OUT.gif [--fps N] [--start-number N] [--overwrite]"
pattern=$1
out=$2
shift 2

here=$(cd "$(dirname "$0")/.." && pwd)
profile=${PROFILE:-}
if [ -z "$profile" ]; then
    for p in "$here/target/release/profile" "$(command -v profile || true)" "$here/target/debug/profile"; do
        if [ -n "$p" ] && [ -x "$p" ]; then profile=$p; break; fi
    done
fi
[ -n "$profile" ] || die "the profile binary was not found: build it (cargo build --release), install it, or set PROFILE"
exec "$profile" encode "$pattern" -o "$out" "$@"
