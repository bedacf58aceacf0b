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

/// One whole-system run of `secs` (no table cache: every table is built
/// while the run lasts); checks that each program reached main in 98% of
/// its samples and returns the folded text and stderr.
fn first_seconds(programs: &[(Target, &str)], secs: &str, what: &str) -> (String, String) {
    let out = profile(&["-U", "-f", "-F", "499", "--no-cache", "--stats", secs]);
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
    let (_, err) = first_seconds(&programs, "1", "first second");
    // They were deferred, not walked with frame pointers.
    let line = err
        .lines()
        .find(|l| l.starts_with("stats: unwind:"))
        .expect("an unwind stats line");
    assert!(line.contains(" in user space, taken before"), "{line}");

    // The same under a stress-like load (CPU burners and process churn).
    let _load = load();
    first_seconds(&programs, "1", "under load");
}

#[test]
fn a_whole_system_run_agrees_with_perf_dwarf_from_the_start() {
    require_bpf!();
    let programs = running_programs();
    let pids: Vec<String> = programs.iter().map(|(t, _)| t.pid.to_string()).collect();
    let data = tmp("whole-system.perf.data");
    let mut perf = Command::new("perf")
        .args(["record", "-q", "-F", "499", "--call-graph", "dwarf", "-p"])
        .arg(pids.join(","))
        .arg("-o")
        .arg(&data)
        .args(["--", "sleep", "5"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("perf is needed (linux-perf)");
    // 5 s: ~1,500 samples a program, so that sampling noise stays well
    // inside the 3 points allowed.
    let (ours, err) = first_seconds(&programs, "5", "5 s beside perf");
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
