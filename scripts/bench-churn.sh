#!/usr/bin/env bash
# Memory of a long whole-system run under process churn: `profile -f -F 99`
# for SECONDS while a spawner starts short processes (~100/s: true, sha256sum,
# a busy 40 ms binary) and a gcc loop runs; the profiler's RSS every 10 s,
# and the symbolization totals from --stats. As root.
#
# usage: scripts/bench-churn.sh [SECONDS]     (default 600)
# Needs target/release/profile, clang, gcc.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
clang -O0 -fno-omit-frame-pointer -o "$work/wl" tests/workloads/wl.c
printf 'int main(void){volatile long s=0;for(long i=0;i<2000000;i++)s+=i;return 0;}\n' > "$work/c.c"
( while :; do for _ in $(seq 20); do /bin/true; echo x | sha256sum >/dev/null; "$work/wl" 0.04 >/dev/null & done; wait; done ) &
pids+=($!)
( while :; do gcc -O2 -o "$work/c" "$work/c.c"; done ) &
pids+=($!)
./target/release/profile -f -F 99 --stats "$secs" > "$work/out.folded" 2> "$work/err" &
prof=$!
sleep 1
echo "seconds rss_MB"
t=0
while kill -0 "$prof" 2>/dev/null; do
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$prof/status" 2>/dev/null || echo 0)
    [ -n "$rss" ] && printf '%7d %7.1f\n' "$t" "$(echo "$rss / 1024" | bc -l)"
    sleep 10
    t=$((t + 10))
done
wait "$prof" || true
grep '^stats' "$work/err"
echo "distinct folded lines: $(wc -l < "$work/out.folded")"
