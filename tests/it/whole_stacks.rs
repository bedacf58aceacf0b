//! Whole stacks from the first sample (issue 26): a whole-system run
//! started while programs without frame pointers already run. Their first
//! samples come before their unwind tables are built; they are deferred
//! (registers and stack copied) and walked with the tables once built, so
//! even a one-second run reaches main in (nearly) every sample, as `perf
//! record --call-graph dwarf` does.

use std::process::{Command, Stdio};

use crate::common::{profile, require_bpf};
use crate::unwind::{
    assert_agrees_on, bins, perf_folded, shares, start_printing_pid, start_quiet, text_file, tmp,
    Target,
};

/// The three programs of the test, already running: C and C++
/// built without frame pointers, and Debian's xz.
fn running_programs() -> Vec<(Target, &'static str)> {
    vec![
        (
            start_printing_pid(Command::new(&bins()["nofp-c"]).arg("20")),
            "nofp-c",
        ),
        (
            start_printing_pid(Command::new(&bins()["nofp-cxx"]).arg("20")),
            "nofp-cxx",
        ),
        (
            start_quiet(
                Command::new("xz")
                    .args(["-9", "-T1", "-c"])
                    .arg(text_file()),
            ),
            "xz",
        ),
    ]
}

/// A `stress`-like load: two CPU burners and a shell spawning short
/// processes, as a build does.
fn load() -> Vec<Target> {
    let churn = "while :; do for i in 1 2 3 4 5; do /bin/true; echo x | sha256sum >/dev/null; done; sleep 0.02; done";
    vec![
        start_quiet(Command::new("sh").args(["-c", "while :; do :; done"])),
        start_quiet(Command::new("sh").args(["-c", churn])),
    ]
}

/// One whole-system run of `secs` at `hz` (no table cache: every table is built
/// while the run lasts); checks that each program reached main in 98% of
/// its samples and returns the folded text and stderr.
fn first_seconds(
    programs: &[(Target, &str)],
    hz: &str,
    secs: &str,
    what: &str,
) -> (String, String) {
    let out = profile(&["-U", "-f", "-F", hz, "--no-cache", "--stats", secs]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for (_, comm) in programs {
        let s = shares(&text, comm);
        eprintln!(
            "{what}: {comm}: {} samples, {:.1}% reach main",
            s.samples, s.reach_main
        );
        assert!(
            s.samples >= 50,
            "{what}: {comm}: {} samples\n{err}",
            s.samples
        );
        assert!(
            s.reach_main >= 98.0,
            "{what}: {comm}: only {:.1}% reach main\n{err}",
            s.reach_main,
        );
    }
    (text, err)
}

#[test]
fn programs_running_before_a_whole_system_run_reach_main_from_the_first_second() {
    require_bpf!();
    let programs = running_programs();
    let (_, err) = first_seconds(&programs, "499", "1", "first second");
    // They were deferred, not walked with frame pointers.
    let line = err
        .lines()
        .find(|l| l.starts_with("stats: unwind:"))
        .expect("an unwind stats line");
    assert!(line.contains(" in user space, taken before"), "{line}");

    // The same under a stress-like load (CPU burners and process churn).
    let _load = load();
    first_seconds(&programs, "499", "1", "under load");
}

#[test]
fn a_whole_system_run_agrees_with_perf_dwarf_from_the_start() {
    require_bpf!();
    let programs = running_programs();
    let pids: Vec<String> = programs.iter().map(|(t, _)| t.pid.to_string()).collect();
    let data = tmp("whole-system.perf.data");
    let mut perf = Command::new("perf")
        .args(["record", "-q", "-F", "999", "--call-graph", "dwarf", "-p"])
        .arg(pids.join(","))
        .arg("-o")
        .arg(&data)
        .args(["--", "sleep", "5"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("perf is needed (linux-perf)");
    // 5 s at 999 Hz: ~3,000 samples a program; shares agree within 3
    // points or the sampling noise of that many samples (unwind::allowed).
    let (ours, err) = first_seconds(&programs, "999", "5", "5 s beside perf");
    assert!(perf.wait().unwrap().success());
    let theirs = perf_folded(&data, "whole-system");
    for (_, comm) in &programs {
        let hot: &[&str] = match *comm {
            "xz" => &["lzma_code"],
            _ => &["main", "lib_hot"],
        };
        assert_agrees_on(
            comm,
            &shares(&ours, comm),
            &shares(&theirs, comm),
            hot,
            2,
            &err,
        );
    }
}

/// The number before `label` in the `stats: unwind:` line.
fn unwind_figure(stderr: &str, label: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("stats: unwind:"))
        .unwrap_or_else(|| panic!("no unwind stats line: {stderr}"));
    let at = line
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in {line}"));
    line[..at]
        .rsplit(|c: char| !c.is_ascii_digit())
        .find(|w| !w.is_empty())
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no figure before {label:?} in {line}"))
}

#[test]
fn a_stack_deeper_than_a_sample_keeps_is_counted_as_cut_not_stopped() {
    require_bpf!();
    let t = start_printing_pid(Command::new(&bins()["nofp-recurse"]).args(["6", "300"]));
    let pid = t.pid.to_string();
    let out = profile(&["-p", &pid, "-U", "-f", "--stats", "2"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    let walked = unwind_figure(&err, " samples walked with tables");
    let cut = unwind_figure(&err, " cut at 127 frames");
    let stopped = unwind_figure(&err, " stopped early");
    assert!(walked >= 50, "{err}");
    // Nearly every sample is 300 calls deep; a few land in main or run.
    assert!(cut * 100 >= walked * 95, "{err}");
    assert!(stopped * 100 <= walked, "{err}");
}

#[test]
fn a_default_run_on_a_busy_machine_misses_no_stack() {
    require_bpf!();
    let _programs = running_programs();
    let _load = load();
    // The README's first command, at a rate that takes many stacks.
    let out = profile(&["-F", "999", "3"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{err}");
    assert!(
        !err.contains("could not be displayed"),
        "a storage warning on a default run: {err}"
    );
    assert!(!text.contains("[Missed "), "{err}");
}

/// The Go workload, built once with Debian's Go.
fn go_workload() -> std::path::PathBuf {
    static BIN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let out = tmp("gowork");
        let src =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workloads/go/main.go");
        let st = Command::new("go")
            .arg("build")
            .arg("-o")
            .arg(&out)
            .arg(&src)
            .env("GOCACHE", tmp("go-cache"))
            .env("GOPATH", tmp("go-path"))
            .status()
            .expect("go is needed (golang-go)");
        assert!(st.success(), "go build failed");
        out
    })
    .clone()
}

/// Share (%) of the samples whose stack reaches a Go root: runtime.goexit
/// (goroutines), runtime.main, or runtime.mstart (the g0 threads).
fn go_roots(folded_text: &str) -> (u64, f64) {
    let mut total = 0;
    let mut reach = 0;
    for (stack, n) in crate::common::folded(folded_text) {
        total += n;
        if stack.split(';').any(|f| {
            f.starts_with("runtime.goexit")
                || f.starts_with("runtime.main")
                || f.starts_with("runtime.mstart")
        }) {
            reach += n;
        }
    }
    (total, 100.0 * reach as f64 / total.max(1) as f64)
}

#[test]
fn go_stacks_cross_the_system_stack_as_perf_does() {
    require_bpf!();
    let t = start_printing_pid(Command::new(go_workload()).arg("8"));
    let pid = t.pid.to_string();
    let data = tmp("go.perf.data");
    let mut perf = Command::new("perf")
        .args(["record", "-q", "-F", "499", "-g", "-p", &pid, "-o"])
        .arg(&data)
        .args(["--", "sleep", "3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("perf is needed (linux-perf)");
    let out = profile(&["-p", &pid, "-U", "-f", "-F", "499", "--stats", "3"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    assert!(perf.wait().unwrap().success());
    let ours = String::from_utf8_lossy(&out.stdout).into_owned();
    let theirs = perf_folded(&data, "go");
    let (n, mine) = go_roots(&ours);
    let (pn, perfs) = go_roots(&theirs);
    eprintln!("go: ours {n} samples, {mine:.1}% reach a root; perf -g {pn}, {perfs:.1}%");
    assert!(n >= 300 && pn >= 300, "{err}");
    // The runtime's own work runs on the g0 stack (allocation, GC): those
    // stacks stopped at runtime.systemstack before.
    assert!(
        ours.contains("runtime.systemstack"),
        "no sample on the system stack: {ours}"
    );
    assert!(mine >= 98.0 && mine >= perfs - 1.0, "{err}\n{ours}");
}

/// pyenv's interpreter of `version`, if this machine has it; under CI its
/// absence is a failure, elsewhere a skip with a message.
pub(crate) fn pyenv_python(version: &str) -> Option<std::path::PathBuf> {
    let root = Command::new("pyenv")
        .arg("root")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .or_else(|| std::env::var("PYENV_ROOT").ok())
        .or_else(|| std::env::var("HOME").ok().map(|h| format!("{h}/.pyenv")));
    let found = root.and_then(|r| {
        let dir = std::path::Path::new(&r).join("versions");
        std::fs::read_dir(&dir).ok()?.flatten().find_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let bin = e.path().join("bin").join(format!("python{version}"));
            (name.starts_with(&format!("{version}.")) && bin.exists()).then_some(bin)
        })
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none()
                && std::env::var_os("RS_PROFILE_REQUIRE_BPF").is_none(),
            "python{version} (pyenv) is needed under CI"
        );
        eprintln!("skipped: no python{version} under pyenv on this machine");
    }
    found
}

/// `-X perf` on 3.12/3.13: every Python call goes through a trampoline
/// without CFI; each stack runs from `_start` through `<module>`, outer,
/// middle, to leaf.
fn python_perf_trampolines(version: &str) {
    let Some(python) = pyenv_python(version) else {
        return;
    };
    let script = tmp("nest.py");
    std::fs::write(
        &script,
        "import sys, time\n\
         def leaf(n):\n    s = 0\n    for i in range(n):\n        s += i * i\n    return s\n\
         def middle(n):\n    return leaf(n) + 1\n\
         def outer(n):\n    return middle(n) + 1\n\
         end = time.time() + float(sys.argv[1])\n\
         while time.time() < end:\n    outer(20000)\n",
    )
    .unwrap();
    let t = start_quiet(
        Command::new(&python)
            .args(["-X", "perf"])
            .arg(&script)
            .arg("8"),
    );
    let pid = t.pid.to_string();
    let out = profile(&["-p", &pid, "-U", "-f", "-F", "499", "--stats", "3"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let nesting = ["py::<module>:", "py::outer:", "py::middle:", "py::leaf:"];
    let mut total = 0;
    let mut whole = 0;
    for (stack, n) in crate::common::folded(&text) {
        total += n;
        let frames: Vec<&str> = stack.split(';').collect();
        let mut at = 0;
        let ordered = nesting.iter().all(|want| {
            match frames[at..].iter().position(|f| f.starts_with(want)) {
                Some(i) => {
                    at += i + 1;
                    true
                }
                None => false,
            }
        });
        if ordered && frames.get(1) == Some(&"_start") {
            whole += n;
        }
    }
    let share = 100.0 * whole as f64 / total.max(1) as f64;
    eprintln!("python{version} -X perf: {total} samples, {share:.1}% whole");
    assert!(total >= 300, "{err}");
    // The few samples outside leaf's loop (the `while` itself, time.time)
    // lack some of the nesting; none stops at a trampoline.
    assert!(share >= 95.0, "{share:.1}%\n{text}\n{err}");
    // A walk stops early only when the sample's leaf is inside a
    // trampoline stub itself (its few instructions: about 1 in 1,500).
    let stopped = unwind_figure(&err, " stopped early");
    assert!(
        stopped * 200 <= total,
        "{stopped} of {total} stopped early\n{err}"
    );
}

#[test]
fn python_3_12_perf_trampolines_are_crossed() {
    require_bpf!();
    python_perf_trampolines("3.12");
}

#[test]
fn python_3_13_perf_trampolines_are_crossed() {
    require_bpf!();
    python_perf_trampolines("3.13");
}

#[test]
fn stacks_walked_in_user_space_agree_with_the_kernel_walk() {
    require_bpf!();
    // Two profilers on one program at once: one walks in BPF, the other
    // defers every sample and walks the copies in user space.
    let t = start_printing_pid(Command::new(&bins()["nofp-c"]).arg("8"));
    let pid = t.pid.to_string();
    let args = ["-p", &pid, "-U", "-f", "-F", "499", "--stats", "4"];
    let deferred = Command::new(env!("CARGO_BIN_EXE_profile"))
        .args(args)
        .arg("--unwind-defer-all")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let kernel = profile(&args);
    let deferred = deferred.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&deferred.stderr).into_owned();
    assert!(
        kernel.status.success() && deferred.status.success(),
        "{err}"
    );
    let walked = unwind_figure(&err, " samples walked with tables");
    let in_user = unwind_figure(&err, " of them in user space");
    assert!(walked >= 500 && in_user == walked, "{err}");
    let k = shares(&String::from_utf8_lossy(&kernel.stdout), "nofp-c");
    let d = shares(&String::from_utf8_lossy(&deferred.stdout), "nofp-c");
    assert_agrees_on(
        "deferred vs kernel",
        &d,
        &k,
        &[
            "main", "run", "level1", "level2", "lib_warm", "lib_hot", "side",
        ],
        7,
        &err,
    );
    assert!(d.reach_main >= 99.0, "{err}");
}

#[test]
fn a_call_through_the_plt_is_named_name_at_plt() {
    require_bpf!();
    let bin = tmp("plt");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workloads/plt.c");
    let st = Command::new("gcc")
        .args(["-O2", "-fno-builtin", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success());
    let t = start_printing_pid(Command::new(&bin).arg("6"));
    let pid = t.pid.to_string();
    let out = profile(&["-p", &pid, "-U", "-f", "-F", "499", "2"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let in_stub: u64 = crate::common::folded(&text)
        .iter()
        .filter(|(s, _)| s.ends_with(";main;labs@plt"))
        .map(|(_, n)| n)
        .sum();
    assert!(in_stub >= 20, "{text}");
    // The symbol before the PLT never stands for it.
    assert!(!text.contains(";_init"), "{text}");
}
