#!/usr/bin/env bash
# What Python frames cost (issue 27), side by side in one run: a whole-system
# profile while two CPython processes (Debian's python3.11, a pure-Python
# loop four calls deep, one per CPU) run, with --python off and auto, at 99
# and 999 Hz. Per row: the profiler's CPU (user + sys), BPF time per sample
# (run_time_ns / run_cnt of the sampler with kernel.bpf_stats_enabled=1), and
# samples that came with Python frames.
#
# usage: scripts/bench-python.sh [SECONDS]   (as root; needs target/release/profile)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/target/release/profile
secs=${1:-10}
work=$(mktemp -d)
trap 'pkill -f "$work" 2>/dev/null || true; rm -rf "$work"; sysctl -q kernel.bpf_stats_enabled=0' EXIT
cat > "$work/nest.py" <<'PY'
import sys, time
def leaf(n):
    s = 0
    for i in range(n):
        s += i * i
    return s
def middle(n):
    return leaf(n) + 1
def outer(n):
    return middle(n) + 1
end = time.time() + float(sys.argv[1])
while time.time() < end:
    outer(20000)
PY
sysctl -q kernel.bpf_stats_enabled=1
printf '%-8s %5s %8s %14s %22s\n' python Hz "CPU s" "BPF ns/sample" "samples with Python"
for hz in 99 999; do
    for mode in off auto; do
        /usr/bin/python3.11 "$work/nest.py" $((secs + 3)) &
        /usr/bin/python3.11 "$work/nest.py" $((secs + 3)) &
        sleep 1
        /usr/bin/time -f '%U %S' -o "$work/time" \
            "$bin" -F "$hz" -f --python "$mode" --stats "$secs" > /dev/null 2> "$work/err" &
        prof=$!
        sleep $((secs - 1))
        read -r ns cnt < <(bpftool prog show name do_perf_event -j |
            python3 -c 'import json,sys; p=json.load(sys.stdin); print(p.get("run_time_ns",0), p.get("run_cnt",0))')
        wait $prof
        wait
        read -r u s < <(tail -1 "$work/time")
        py=$(grep -o 'python: [0-9]* samples' "$work/err" | grep -o '[0-9]*' || echo 0)
        printf '%-8s %5s %8.2f %14s %22s\n' "$mode" "$hz" "$(echo "$u + $s" | bc -l)" \
            "$((cnt > 0 ? ns / cnt : 0))" "$py"
    done
done
