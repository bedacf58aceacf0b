#!/usr/bin/env bash
# The profiler on a busy machine (issue 25), side by side with perf in one
# run: it starts a load of its own (process churn of ~100 new processes a
# second, a gcc loop, xz -9, and a node --perf-basic-prof JIT service that
# keeps compiling), then profiles the same 20 s window, whole system, with
# each tool in turn, and prints CPU seconds (user + system, of the profiler
# and everything it ran), the ratio to `perf record -g`, and max RSS.
#
#   scripts/bench-busy.sh [SECONDS]          the comparison (default 20 s)
#   scripts/bench-busy.sh soak MINUTES       `profile -q -E -T --interval 1`
#                                            under the load: RSS and open
#                                            files every 30 s, and the RSS
#                                            slope from minute 2 on
#   scripts/bench-busy.sh idle [SECONDS]     the comparison without the load
#                                            (the idle-machine goal)
#
# As root; needs target/release/profile (or the binary in $PROFILE), perf
# (linux-perf), gcc, node.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
mode=compare
secs=20
if [ "${1:-}" = soak ]; then
    mode=soak
    minutes=${2:-30}
elif [ "${1:-}" = idle ]; then
    mode=idle
    secs=${2:-20}
else
    secs=${1:-20}
fi
prof=${PROFILE:-$root/target/release/profile}
[ -x "$prof" ] || { echo "build first: cargo build --release" >&2; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    pkill -f "$work" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work" /tmp/perf-*.map 2>/dev/null || true
}
trap cleanup EXIT

if [ "$mode" != idle ]; then
# --- the load -------------------------------------------------------------
printf 'int main(void){volatile long s=0;for(long i=0;i<3000000;i++)s+=i;return 0;}\n' > "$work/c.c"
printf 'static int f(int x){return x*3;}\nint g(int y){return f(y)+1;}\n' > "$work/lib.c"
head -c 30000000 /dev/urandom > "$work/big.bin"
# Churn: short processes, as a shell script or a build spawns them.
( while :; do for _ in $(seq 10); do /bin/true; echo x | sha256sum >/dev/null; done; sleep 0.05; done ) &
pids+=($!)
# A build loop: compiler processes that live tens of milliseconds.
( while :; do gcc -O2 -c -o "$work/lib.o" "$work/lib.c"; gcc -O1 -o "$work/c" "$work/c.c"; "$work/c"; done ) &
pids+=($!)
# A compressor without frame pointers.
( while :; do xz -9 -T1 -c "$work/big.bin" > /dev/null; done ) &
pids+=($!)
# A JIT service writing its perf map all the time.
( cd "$work" && exec node --perf-basic-prof "$root/tests/workloads/jit_churn.js" 100000 > /dev/null ) &
pids+=($!)
sleep 3
fi
rate() {
    local a b
    a=$(awk '/^processes/ {print $2}' /proc/stat)
    sleep 2
    b=$(awk '/^processes/ {print $2}' /proc/stat)
    echo $(( (b - a) / 2 ))
}
echo "load: $(rate) new processes/s, $(nproc) CPUs"

# CPU seconds (user + system, children included) and max RSS of a command.
measure() {
    /usr/bin/time -f '%U %S %M' -o "$work/time" "$@" > /dev/null 2> "$work/err" || true
    read -r u s m < <(tail -1 "$work/time")
    echo "$(echo "$u + $s" | bc) $m"
}

if [ "$mode" = soak ]; then
    echo "minute rss_MB open_files"
    # -q: the end-of-run text report keeps every distinct printed line of
    # the run (as profile.py's does), which under a JIT grows by design.
    "$prof" -q -E -g "$work/frames/f%06d.png" -T -R 0 --interval 1 --stats \
        $((minutes * 60)) > /dev/null 2> "$work/soak.err" &
    p=$!
    t=0
    first=
    while kill -0 "$p" 2>/dev/null; do
        rss=$(awk '/VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        fds=$(ls "/proc/$p/fd" 2>/dev/null | wc -l)
        printf '%6.1f %7.1f %5d\n' "$(echo "$t / 60" | bc -l)" "$(echo "${rss:-0} / 1024" | bc -l)" "$fds"
        if [ "$t" -ge 120 ] && [ -z "$first" ]; then first=${rss:-0}; fi
        last=${rss:-0}
        # Old frames are not the point: keep the disk from filling.
        find "$work/frames" -name 'f*.png' -mmin +1 -delete 2>/dev/null || true
        sleep 30
        t=$((t + 30))
    done
    wait "$p" || true
    grep '^stats' "$work/soak.err" || true
    if [ -n "$first" ]; then
        echo "RSS growth from minute 2 to the end: $(echo "($last - $first) / 1024" | bc -l | xargs printf '%.1f') MB"
    fi
    exit 0
fi

echo "tool                                       cpu_s   vs_perf_g   max_rss_MB"
row() {
    printf '%-42s %6.2f   %6.2fx   %8.1f\n' "$1" "$2" "$(echo "$2 / $base" | bc -l)" "$(echo "$3 / 1024" | bc -l)"
}
# Each rate against perf at the same rate: ratios are to `perf record -g`
# at that rate (the "+ perf script" row is the first-run goal).
for hz in 99 999; do
read -r pc pm < <(measure perf record -g -a -F $hz -o "$work/perf.data" -- sleep "$secs")
read -r sc sm < <(measure perf script -i "$work/perf.data")
base=$pc
row "perf record -g -a -F $hz" "$pc" "$pm"
row "  + perf script" "$(echo "$pc + $sc" | bc)" "$sm"
if [ $hz = 99 ]; then
    runs=("-f -F 99" "-f -F 99 --unwind fp" "-f -F 99 --no-cache" "-E --interval 0.1 -F 99")
else
    runs=("-f -F 999" "-f -F 999 --no-cache")
fi
for args in "${runs[@]}"; do
    extra=()
    case $args in *-E*) extra=(-g "$work/fr/f%05d.png" --overwrite) ;; esac
    # shellcheck disable=SC2086
    read -r c m < <(measure "$prof" $args "${extra[@]}" --stats "$secs")
    row "profile $args" "$c" "$m"
    grep -E '^stats: (perf maps|per interval)' "$work/err" | sed 's/^/    /' || true
done
done
