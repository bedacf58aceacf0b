#!/usr/bin/env bash
# What unwinding costs, side by side in one run: whole system at 99 and
# 999 Hz while no-frame-pointer workloads run (Debian's xz -9 on a text file
# and Debian's /usr/bin/python3 running a pure-Python loop, fixed work, one
# per CPU), for
#   profile --unwind fp      (bpf_get_stackid, what bcc does)
#   profile --unwind auto    (CFI tables in BPF)
#   profile, every sample deferred (--unwind-defer-all: registers and stack
#            copied to a ring buffer and walked in user space, the path a
#            process's first samples take before its tables are loaded)
#   perf record --call-graph dwarf, then perf script
#   perf record -g
# Per row: the profiler's CPU (user+sys of it and its children; perf's
# includes perf script), BPF time per sample (kernel.bpf_stats_enabled, ours
# only: perf's kernel work is not a BPF program), the workload's wall time
# against a run with no profiler, and the profiler's max RSS.
# Then: unwind tables for every process on this machine, built and loaded.
#
# usage: scripts/bench-unwind.sh        (as root; needs target/release/profile)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/target/release/profile
work=$(mktemp -d)
trap 'rm -rf "$work"; sysctl -q kernel.bpf_stats_enabled=0' EXIT
python3 - "$work/input.txt" <<'EOF'
import sys, random
random.seed(1)
with open(sys.argv[1], "w") as f:
    for i in range(400000):
        f.write(f"line {i} value {random.randrange(100000)} word{random.randrange(997)}\n")
EOF
cat > "$work/loop.py" <<'EOF'
def f(n):
    s = 0
    for i in range(n):
        s += i * i
    return s
for _ in range(60):
    f(1000000)
EOF

# The workload: both jobs at once; prints its wall time in seconds.
workload() {
    local t0 t1
    t0=$(date +%s.%N)
    xz -9 -T1 -c "$work/input.txt" > /dev/null &
    local a=$!
    /usr/bin/python3 "$work/loop.py" &
    local b=$!
    wait $a $b
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}

# Polls the sampler's BPF run time while it runs; leaves "ns count" in $1.
bpf_poll() {
    local out=$1
    while :; do
        bpftool prog show name do_perf_event -j 2>/dev/null |
            python3 -c 'import json,sys
try:
    p=json.load(sys.stdin); print(p.get("run_time_ns",0), p.get("run_cnt",0))
except Exception: pass' > "$out.new" 2>/dev/null || true
        [ -s "$out.new" ] && mv "$out.new" "$out"
        sleep 0.5
    done
}

sysctl -q kernel.bpf_stats_enabled=1
base=$(workload)
printf 'workload alone: %.2f s\n\n' "$base"
printf '%-28s %5s %10s %14s %10s %9s\n' tool Hz "CPU s" "BPF ns/sample" slowdown "RSS MB"
for hz in 99 999; do
    for tool in fp auto deferred perf-dwarf perf-g; do
        rm -f "$work/bpf" "$work/perf.data"
        case $tool in
            fp|auto)
                /usr/bin/time -f '%U %S %M' -o "$work/time" \
                    "$bin" -F "$hz" -f --unwind "$tool" > "$work/out" 2>/dev/null &
                ;;
            deferred)
                /usr/bin/time -f '%U %S %M' -o "$work/time" \
                    "$bin" -F "$hz" -f --unwind-defer-all --stats > "$work/out" 2> "$work/stats-$hz" &
                ;;
            perf-dwarf)
                /usr/bin/time -f '%U %S %M' -o "$work/time" \
                    perf record -q -a -F "$hz" --call-graph dwarf -o "$work/perf.data" > /dev/null 2>&1 &
                ;;
            perf-g)
                /usr/bin/time -f '%U %S %M' -o "$work/time" \
                    perf record -q -a -F "$hz" -g -o "$work/perf.data" > /dev/null 2>&1 &
                ;;
        esac
        prof=$!
        sleep 1.5
        bpf_poll "$work/bpf" &
        poller=$!
        w=$(workload)
        kill $poller 2>/dev/null || true
        wait $poller 2>/dev/null || true
        # SIGINT to the profiler itself (time's child).
        pkill -INT -P $prof 2>/dev/null || true
        wait $prof 2>/dev/null || true
        # time says "Command terminated by signal 2" first when so.
        read -r u s rss < <(tail -1 "$work/time")
        cpu=$(echo "$u + $s" | bc -l)
        if [ -s "$work/perf.data" ]; then
            /usr/bin/time -f '%U %S %M' -o "$work/time2" perf script -i "$work/perf.data" > /dev/null 2>&1 || true
            read -r u2 s2 rss2 < <(tail -1 "$work/time2")
            cpu=$(echo "$cpu + $u2 + $s2" | bc -l)
            [ "$rss2" -gt "$rss" ] && rss=$rss2
        fi
        per=-
        if [ -s "$work/bpf" ]; then
            read -r ns cnt < "$work/bpf"
            [ "$cnt" -gt 0 ] && per=$((ns / cnt))
        fi
        printf '%-28s %5s %10.2f %14s %9.2fx %9.1f\n' "$tool" "$hz" "$cpu" "$per" \
            "$(echo "$w / $base" | bc -l)" "$(echo "$rss / 1024" | bc -l)"
    done
done

echo
for hz in 99 999; do
    grep -o '[0-9]* deferred walks in [0-9.]* ms' "$work/stats-$hz" |
        awk -v hz="$hz" '{ printf "deferred, %s Hz: %d samples walked in user space in %s ms: %.1f us a sample\n", hz, $1, $5, $5 * 1000 / ($1 ? $1 : 1) }'
done
# The path as a user meets it: a whole-system run started beside the
# workload, no table cache, so every process's first samples are deferred.
workload > /dev/null &
wl=$!
sleep 1
"$bin" -F 999 -f --no-cache --stats 2 2>&1 >/dev/null | grep '^stats: unwind' |
    sed 's/^stats: unwind:/cold start, 999 Hz, 2 s, no cache:/'
wait $wl

echo
echo "unwind tables for every process on this machine ($(ls /proc | grep -c '^[0-9]') processes):"
"$bin" -f --stats 1 2>&1 >/dev/null | grep '^stats: unwind'
