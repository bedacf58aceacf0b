//! The sampler and profile.py's output, checked against workloads whose hot
//! functions are known.

use std::process::Command;
use std::time::Duration;

use crate::common::{self, folded, leaf_counts, profile, profile_ok, require_bpf, Workload, COMM};

#[test]
fn stacks_run_root_to_leaf_with_comm_and_pid() {
    require_bpf!();
    let w = Workload::start("mix", 10.0, &[]);
    let pid = w.pid.to_string();
    let text = profile_ok(&["-f", "-p", &pid, "2"]);
    let lines = folded(&text);
    assert!(!lines.is_empty(), "no samples");
    let want = format!("{COMM};");
    assert!(lines.iter().all(|(s, _)| s.starts_with(&want)), "{text}");
    let hot: u64 = lines
        .iter()
        .filter(|(s, _)| s.contains(";main;driver;alpha") || s.contains(";main;driver;beta"))
        .map(|(_, n)| n)
        .sum();
    let all: u64 = lines.iter().map(|(_, n)| n).sum();
    assert!(
        hot * 10 >= all * 9,
        "expected main;driver;alpha|beta stacks:\n{text}"
    );

    // The default format names comm and pid on the `-` line.
    let text = profile_ok(&["-p", &pid, "1"]);
    assert!(text.starts_with(&format!(
        "Sampling at 49 Hertz of PID [{pid}] by user + kernel stack for 1 secs.\n\n"
    )));
    assert!(
        text.contains(&format!("    -                {COMM} ({pid})\n")),
        "{text}"
    );
    // Leaf first in the multi-line format, `sym+0xoff [module]` as upstream.
    let frames: Vec<&str> = text.lines().collect();
    let at = frames.windows(3).any(|w| {
        w[0].starts_with("    alpha+0x")
            && w[0].ends_with(" [workload]")
            && w[1].starts_with("    driver+0x")
            && w[2].starts_with("    main+0x")
    });
    assert!(at, "{text}");
    // bcc 0.26's form on request.
    let text = profile_ok(&["-p", &pid, "--bcc-0.26", "1"]);
    let alpha = text.find("    alpha\n    driver\n    main\n");
    assert!(alpha.is_some(), "{text}");
}

#[test]
fn pid_filter_leaves_other_processes_out() {
    require_bpf!();
    let a = Workload::start("mix", 4.0, &[]);
    let _b = Workload::start("mix", 4.0, &[]);
    let text = profile_ok(&["-p", &a.pid.to_string(), "2"]);
    let others: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("    -  ") && !l.ends_with(&format!("({})", a.pid)))
        .collect();
    assert!(others.is_empty(), "other processes sampled: {others:?}");
    assert!(text.contains(&format!("({})", a.pid)));
}

#[test]
fn tid_filter_keeps_only_that_thread() {
    require_bpf!();
    let w = Workload::start("threads", 4.0, &[]);
    assert_ne!(w.pid, w.tid);
    let text = profile_ok(&["-f", "-L", &w.tid.to_string(), "2"]);
    let leaves = leaf_counts(&folded(&text), COMM);
    assert!(leaves.get("beta").copied().unwrap_or(0) > 20, "{text}");
    assert_eq!(
        leaves.get("alpha"),
        None,
        "the main thread was sampled:\n{text}"
    );
}

#[test]
fn user_only_and_kernel_only() {
    require_bpf!();
    let w = Workload::start("syscall", 5.0, &[]);
    let pid = w.pid.to_string();
    let user = profile_ok(&["-f", "-a", "-U", "-p", &pid, "1"]);
    assert!(!user.is_empty());
    assert!(!user.contains("_[k]"), "kernel frames with -U:\n{user}");
    let kernel = profile_ok(&["-f", "-a", "-K", "-p", &pid, "1"]);
    for (stack, _) in folded(&kernel) {
        for frame in stack.split(';').skip(1) {
            assert!(
                frame.ends_with("_[k]") || frame == "[Missed Kernel Stack]",
                "user frame {frame:?} with -K in {stack}"
            );
        }
    }
    assert!(
        kernel.contains("_[k]"),
        "no kernel frames for a syscall loop:\n{kernel}"
    );
}

/// Under a churn of processes, samples land in this profiler's own exec,
/// fork and exit hooks: they are named as `/proc/kallsyms` names them
/// (read while the run lasts), and the run stays on the boot's copy of the
/// core kernel's symbols rather than reading all of `/proc/kallsyms`.
#[test]
fn own_bpf_programs_are_named_as_the_kernel_names_them() {
    require_bpf!();
    let mut churn = Command::new("sh")
        .args(["-c", "while :; do /bin/true; done"])
        .spawn()
        .unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_profile"))
        .args(["-f", "-K", "-F", "999", "--stats", "3"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // Symbols outside the core kernel (modules, BPF programs), by name.
    let outside: std::collections::HashSet<String> = std::fs::read_to_string("/proc/kallsyms")
        .unwrap()
        .lines()
        .filter(|l| l.ends_with(']'))
        .filter_map(|l| Some(l.split_whitespace().nth(2)?.to_string()))
        .collect();
    let out = run.wait_with_output().unwrap();
    let _ = churn.kill();
    let _ = churn.wait();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut own = std::collections::BTreeSet::new();
    let mut others = 0;
    for (stack, _) in folded(&text) {
        for f in stack.split(';').skip(1) {
            if ["_on_exec", "_on_fork", "_on_exit"]
                .iter()
                .any(|s| f.ends_with(s))
                && f.starts_with("bpf_prog_")
            {
                own.insert(f.to_string());
            } else if outside.contains(f) {
                others += 1;
            }
        }
    }
    assert!(
        !own.is_empty(),
        "no sample in the exec, fork or exit hooks\n{err}"
    );
    for f in &own {
        assert!(
            outside.contains(f),
            "{f} is not what the kernel calls it: {outside:?}"
        );
    }
    let line = err
        .lines()
        .find(|l| l.starts_with("stats: symbols:"))
        .unwrap();
    if others == 0 {
        assert!(line.contains("(named from the boot's copy)"), "{line}");
    }
}

#[test]
fn delimiter_and_annotations_in_both_formats() {
    require_bpf!();
    // Three runs of 1-2 s, each with its start-up: the workload outlives
    // them all, also on a loaded machine.
    let w = Workload::start("syscall", 12.0, &[]);
    let pid = w.pid.to_string();
    // Upstream's newest profile.py ignores -a in multi-line output.
    let text = profile_ok(&["-d", "-a", "-p", &pid, "1"]);
    assert!(text.contains("\n    --\n"), "{text}");
    assert!(!text.contains("_[k]"), "{text}");
    // bcc 0.26 annotated there: --bcc-0.26 keeps that form.
    let text = profile_ok(&["-d", "-a", "--bcc-0.26", "-p", &pid, "2"]);
    // A block: kernel frames (annotated), `--`, user frames, the `-` line.
    let block = text
        .split("\n\n")
        .find(|b| b.contains("\n    --\n"))
        .unwrap_or_else(|| panic!("no delimited block:\n{text}"));
    let lines: Vec<&str> = block.lines().filter(|l| l.starts_with("    ")).collect();
    let delim = lines.iter().position(|l| *l == "    --").unwrap();
    assert!(
        lines[..delim].iter().all(|l| l.ends_with("_[k]")),
        "{block}"
    );
    assert!(
        lines[delim + 1..].iter().any(|l| l.starts_with("    -  ")),
        "{block}"
    );
    assert!(
        !lines[delim + 1..].iter().any(|l| l.ends_with("_[k]")),
        "{block}"
    );

    let fold = profile_ok(&["-f", "-d", "-p", &pid, "2"]);
    assert!(
        folded(&fold).iter().any(|(s, _)| s.contains(";-;")),
        "no `-` between user and kernel frames:\n{fold}"
    );
}

#[test]
fn idle_only_with_include_idle() {
    require_bpf!();
    // Idle CPUs take few cpu-clock samples (tickless idle): sample fast.
    let without = profile_ok(&["-f", "-F", "999", "2"]);
    assert!(
        !without.lines().any(|l| l.starts_with("swapper")),
        "idle samples without -I"
    );
    let with = profile_ok(&["-f", "-I", "-F", "999", "2"]);
    assert!(
        with.lines().any(|l| l.starts_with("swapper")),
        "no idle samples with -I:\n{with}"
    );
}

#[test]
fn cpu_filter() {
    require_bpf!();
    let cpus = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    if cpus.trim() == "0" {
        eprintln!("one CPU only: -C can't be told apart from all CPUs, skipping");
        return;
    }
    let on0 = Workload::start("mix", 4.0, &["taskset", "-c", "0"]);
    let on1 = Workload::start("mix", 4.0, &["taskset", "-c", "1"]);
    let text = profile_ok(&["-C", "1", "-p", &format!("{},{}", on0.pid, on1.pid), "2"]);
    assert!(text.contains("on CPU#1 for 2 secs."), "{text}");
    assert!(text.contains(&format!("({})", on1.pid)), "{text}");
    assert!(
        !text.contains(&format!("({})", on0.pid)),
        "CPU 0 sampled:\n{text}"
    );
}

#[test]
fn exited_process_is_still_symbolized() {
    require_bpf!();
    let mut w = Workload::start("mix", 1.0, &[]);
    // The interval is longer than the process lives: its stacks are
    // symbolized after it exited, from the maps cached when it was first seen.
    let handle = std::thread::spawn({
        let pid = w.pid.to_string();
        move || profile_ok(&["-f", "--interval", "3", "-p", &pid, "3"])
    });
    w.wait();
    let text = handle.join().unwrap();
    let leaves = leaf_counts(&folded(&text), COMM);
    assert!(leaves.get("alpha").copied().unwrap_or(0) > 10, "{text}");
    assert_eq!(leaves.get("[unknown]"), None, "{text}");
}

#[test]
fn every_sample_is_counted_or_reported_lost() {
    require_bpf!();
    let _w = Workload::start("mix", 4.0, &[]);
    // Plenty of room: nothing lost.
    let out = profile(&["-f", "--stats", "-F", "199", "--interval", "0.2", "2"]);
    assert!(out.status.success());
    let stats = common::stats(&String::from_utf8_lossy(&out.stderr));
    let lines = folded(&String::from_utf8_lossy(&out.stdout));
    let printed: u64 = lines.iter().map(|(_, n)| n).sum();
    assert_eq!(printed, stats["counted"]);
    assert_eq!(stats["samples taken"], stats["counted"] + stats["lost"]);
    assert_eq!(stats["lost"], 0);
    assert!(stats["intervals"] >= 10);

    // A tiny hash: samples are dropped, and said to be.
    let out = profile(&[
        "-f",
        "--stats",
        "--hash-storage-size",
        "2",
        "-F",
        "199",
        "2",
    ]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stats = common::stats(&stderr);
    let printed: u64 = folded(&String::from_utf8_lossy(&out.stdout))
        .iter()
        .map(|(_, n)| n)
        .sum();
    assert_eq!(printed, stats["counted"]);
    assert!(stats["hash full"] > 0, "{stderr}");
    assert_eq!(stats["samples taken"], stats["counted"] + stats["lost"]);
    assert!(stderr.contains("WARNING: hash table full. Consider increasing --hash-storage-size."));
}

#[test]
fn missed_stacks_are_marked_and_warned() {
    require_bpf!();
    let _w = Workload::start("syscall", 4.0, &[]);
    let out = profile(&["-f", "--stack-storage-size", "1", "2"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("[Missed User Stack]") || text.contains("[Missed Kernel Stack]"),
        "{text}"
    );
    let warning = stderr
        .lines()
        .find(|l| l.contains("stack traces could not be displayed."))
        .unwrap_or_else(|| panic!("no warning: {stderr}"));
    assert!(warning.starts_with("WARNING: "));
    assert!(warning.ends_with(" Consider increasing --stack-storage-size."));
}

#[test]
fn ctrl_c_prints_the_report_and_exits_0() {
    require_bpf!();
    let w = Workload::start("mix", 5.0, &[]);
    let child = Command::new(env!("CARGO_BIN_EXE_profile"))
        .args(["-p", &w.pid.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("... Hit Ctrl-C to end.\n\n"), "{text}");
    assert!(text.contains("    alpha+0x"), "{text}");
}

#[test]
fn nothing_stays_attached() {
    require_bpf!();
    let _ = profile_ok(&["-f", "1"]);
    let progs = Command::new("bpftool")
        .args(["prog", "show"])
        .output()
        .unwrap();
    let progs = String::from_utf8_lossy(&progs.stdout);
    assert!(!progs.contains("do_perf_event"), "still loaded:\n{progs}");
}

/// Samples of `comm`'s leaf `f` over all samples of `comm`, from perf script.
fn perf_share(script: &str, comm: &str, f: &str) -> (u64, u64) {
    let (mut hit, mut all) = (0, 0);
    for block in script.split("\n\n") {
        let mut lines = block.lines().filter(|l| !l.trim().is_empty());
        let Some(head) = lines.next() else { continue };
        if !head.trim_start().starts_with(comm) {
            continue;
        }
        all += 1;
        // Frame lines: "\t    addr sym+0xoff (dso)"; the first is the leaf.
        if let Some(leaf) = lines.next() {
            let sym = leaf.split_whitespace().nth(1).unwrap_or("");
            if sym.split('+').next() == Some(f) {
                hit += 1;
            }
        }
    }
    (hit, all)
}

#[test]
fn shares_agree_with_perf_record() {
    require_bpf!();
    let w = Workload::start("mix", 8.0, &[]);
    let pid = w.pid.to_string();
    let data = tempfile::NamedTempFile::new().unwrap();
    let perf = Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-F", "499", "-g", "-q", "-o"])
        .arg(data.path())
        .args(["-p", &pid, "--", "sleep", "5"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("perf is needed (linux-perf)");
    let ours = profile_ok(&["-f", "-F", "499", "-p", &pid, "5"]);
    assert!(perf.wait_with_output().unwrap().status.success());
    let script = Command::new("perf")
        .args(["script", "-i"])
        .arg(data.path())
        .output()
        .unwrap();
    let script = String::from_utf8_lossy(&script.stdout);
    let leaves = leaf_counts(&folded(&ours), COMM);
    let total: u64 = leaves.values().sum();
    for f in ["alpha", "beta"] {
        let our_share = 100.0 * leaves.get(f).copied().unwrap_or(0) as f64 / total as f64;
        let (hit, all) = perf_share(&script, COMM, f);
        assert!(all > 1000, "perf took {all} samples");
        let perf_share = 100.0 * hit as f64 / all as f64;
        assert!(
            (our_share - perf_share).abs() <= 3.0,
            "{f}: ours {our_share:.1}% of {total}, perf {perf_share:.1}% of {all}"
        );
    }
}
