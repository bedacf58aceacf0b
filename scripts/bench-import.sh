#!/usr/bin/env bash
# Import of a large `perf script` file: wall time and peak memory of
# `profile import` beside inferno-collapse-perf (what a user would otherwise
# run on the same text), in one run. As root (perf record -a).
#
# usage: scripts/bench-import.sh [MB]     (default 100)
# Needs target/release/profile, perf, python3; inferno-collapse-perf on PATH
# (cargo install inferno) for the side-by-side figure.
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-100}
work=$(mktemp -d)
trap 'rm -rf "$work"; kill "${wl:-0}" 2>/dev/null || true' EXIT
clang -O2 -fno-omit-frame-pointer -pthread -o "$work/workload" tests/workloads/workload.c
"$work/workload" mix 12 >/dev/null &
wl=$!
perf record -q -a -g -F 999 -o "$work/perf.data" -- sleep 10 2>/dev/null
perf script -i "$work/perf.data" > "$work/one.script" 2>/dev/null
# Repeat the capture with its timestamps shifted, up to the size asked for.
python3 - "$work/one.script" "$work/big.script" "$mb" <<'PY'
import re, sys
src, dst, mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
text = open(src).read()
times = [float(t) for t in re.findall(r' (\d+\.\d{6}):', text)]
span = max(times) - min(times) + 1.0
stamp = re.compile(r' (\d+\.\d{6}):')
with open(dst, 'w') as out:
    k = 0
    while out.tell() < mb * 1_000_000:
        out.write(stamp.sub(lambda m: ' %.6f:' % (float(m.group(1)) + k * span), text))
        k += 1
PY
size=$(du -m "$work/big.script" | cut -f1)
measure() { # label, command...
    local label=$1; shift
    /usr/bin/time -f "%e %M" -o "$work/time" "$@" > /dev/null 2>"$work/err" || { cat "$work/err"; exit 1; }
    read -r secs kb < "$work/time"
    printf '%-28s %7.2f s  %7.1f MB max RSS\n' "$label" "$secs" "$(echo "$kb / 1024" | bc -l)"
}
echo "input: ${size} MB of perf script ($(grep -c ' cpu-clock:' "$work/big.script") samples)"
measure "profile import" ./target/release/profile import "$work/big.script" -o "$work/big.rsprof"
measure "profile import - (stdin)" sh -c "./target/release/profile import - -o '$work/stdin.rsprof' < '$work/big.script'"
if command -v inferno-collapse-perf >/dev/null; then
    measure "inferno-collapse-perf" inferno-collapse-perf "$work/big.script"
fi
