#!/usr/bin/env python3
"""Overhead of whole-system profiling, side by side in one run.

For each frequency, runs a fixed amount of CPU-bound work (one worker per
CPU) with no profiler, then under rs-profile, `perf record -g -a` and
bpftrace, and reports each profiler's own CPU time (user + sys, normalized
to 10 s of profiling), its peak RSS, and the workload's slowdown. The BPF
program's own cost lands on the interrupted tasks, so it shows up in the
slowdown, not in the profiler's CPU time.

usage (as root): scripts/bench-overhead.py [--seconds 10] [--hz 49,99,999] [--runs 1]
Prints a Markdown table (ratios are what to compare: machines are noisy).
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build(tmp):
    wl = os.path.join(tmp, "workload")
    subprocess.run(["clang", "-O2", "-fno-omit-frame-pointer", "-pthread", "-o", wl,
                    os.path.join(ROOT, "tests/workloads/workload.c")], check=True)
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    return wl, os.path.join(ROOT, "target/release/profile")


def work(wl, rounds, ncpu):
    """Runs ncpu workers of fixed work; returns the wall time."""
    t = time.monotonic()
    procs = [subprocess.Popen([wl, "fixed", str(rounds)], stdout=subprocess.DEVNULL)
             for _ in range(ncpu)]
    for p in procs:
        p.wait()
    return time.monotonic() - t


def calibrate(wl, seconds, ncpu):
    t = work(wl, 2000, ncpu)
    return max(1000, int(2000 * seconds / t))


def under(cmd, wl, rounds, ncpu, ready_delay, tmp):
    """Starts a profiler, runs the work, stops the profiler with SIGINT.
    Returns (work seconds, profiler cpu seconds, profiler wall seconds, maxrss MiB)."""
    out = open(os.path.join(tmp, "out.txt"), "wb")
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL)
    time.sleep(ready_delay)
    w = work(wl, rounds, ncpu)
    p.send_signal(signal.SIGINT)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    out.close()
    if os.waitstatus_to_exitcode(status) not in (0, -signal.SIGINT, 130):
        raise SystemExit(f"{cmd[0]} failed: {status}")
    return w, ru.ru_utime + ru.ru_stime, wall, ru.ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--hz", default="49,99,999")
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench-overhead.py: run as root (BPF and perf -a)")
    for tool in ("perf", "bpftrace", "clang"):
        if not shutil.which(tool):
            raise SystemExit(f"bench-overhead.py: {tool} not found (scripts/install-deps.sh)")
    ncpu = os.cpu_count()
    with tempfile.TemporaryDirectory() as tmp:
        wl, prof = build(tmp)
        rounds = calibrate(wl, args.seconds, ncpu)
        print(f"# {ncpu} CPUs, {ncpu} workers x {rounds} rounds, kernel {os.uname().release}")
        print()
        print("| Hz | profiler | CPU s per 10 s | vs rs-profile | max RSS MiB | workload slowdown |")
        print("|---|---|---|---|---|---|")
        for hz in [int(h) for h in args.hz.split(",")]:
            base = min(work(wl, rounds, ncpu) for _ in range(args.runs))
            tools = [
                ("rs-profile", [prof, "-F", str(hz), "-f"], 1.0),
                ("perf record -g -a", ["perf", "record", "-g", "-a", "-F", str(hz), "-q",
                                       "-o", os.path.join(tmp, "perf.data")], 1.0),
                ("bpftrace", ["bpftrace", "-e",
                              f"profile:hz:{hz} {{ @[kstack, ustack, comm] = count(); }}"], 3.0),
            ]
            rows = []
            for name, cmd, delay in tools:
                best = None
                for _ in range(args.runs):
                    r = under(cmd, wl, rounds, ncpu, delay, tmp)
                    if best is None or r[0] < best[0]:
                        best = r
                w, cpu, wall, rss = best
                rows.append((name, cpu / wall * 10, rss, w / base))
            ours = rows[0][1]
            for name, cpu10, rss, slow in rows:
                ratio = cpu10 / ours if ours > 0 else float("inf")
                print(f"| {hz} | {name} | {cpu10:.3f} | {ratio:.2f}x | {rss:.1f} | {slow:.3f} |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
