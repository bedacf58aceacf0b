//! Bad input: one clear line on stderr and a non-zero exit, never a panic.

use std::process::Command;

use crate::common::{profile, require_bpf};

fn one_line_error(args: &[&str], want: &str) {
    let out = profile(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    assert!(stderr.starts_with("profile: "), "{args:?}: {stderr}");
    assert!(stderr.contains(want), "{args:?}: want {want:?} in {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_arguments() {
    one_line_error(&["-F", "99", "-c", "100000"], "cannot be used with");
    one_line_error(&["-F", "100000000"], "perf_event_max_sample_rate");
    one_line_error(&["-c", "1"], "perf_event_max_sample_rate");
    one_line_error(&["-p", "abc"], "invalid PID \"abc\"");
    one_line_error(&["-p", "999999999"], "PID 999999999 does not exist");
    one_line_error(&["-L", "0"], "invalid TID");
    one_line_error(&["-C", "9999"], "CPU 9999 is not online");
    one_line_error(&["-U", "-K"], "cannot be used with");
    one_line_error(&["--cgroupmap", "/nonexistent"], "no such file");
    one_line_error(&["--bogus"], "unexpected argument");
    one_line_error(&["abc"], "invalid value");
}

/// Values that used to panic or run away (issue 9): each is one line and a
/// non-zero exit, before anything is sampled.
#[test]
fn no_panic_on_extreme_values() {
    for p in ["//", "/{x}", "/*", "/:id", "/a//b", "/a b", "/%2e%2e"] {
        one_line_error(&["-T", "-P", p, "1"], "-P");
    }
    one_line_error(&["--interval", "1e19", "1"], "--interval must be from");
    one_line_error(&["--interval", "inf", "1"], "--interval must be from");
    one_line_error(&["-E", "--width", "100000", "1"], "7680x4320");
    one_line_error(&["-E", "--height", "100000", "1"], "7680x4320");
    one_line_error(
        &["-E", "--render-threads", "100000", "1"],
        "--render-threads",
    );
    one_line_error(
        &["-E", "--start-number", "18446744073709551615", "1"],
        "--start-number",
    );
    one_line_error(&["18446744073709551616"], "invalid value");
}

/// A duration too long to represent runs until Ctrl-C, as profile.py's
/// 99999999 does, instead of overflowing the clock.
#[test]
fn huge_duration_runs_until_signal() {
    require_bpf!();
    let child = Command::new(env!("CARGO_BIN_EXE_profile"))
        .args(["-f", "18446744073709551615"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // SAFETY: kill with a valid pid and signal.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_file_that_is_not_a_bpf_map() {
    require_bpf!();
    let f = tempfile::NamedTempFile::new().unwrap();
    one_line_error(
        &["--mntnsmap", f.path().to_str().unwrap(), "1"],
        "not a pinned BPF map",
    );
}

#[test]
fn no_permission_without_root() {
    require_bpf!();
    // As nobody, with no capabilities.
    let out = crate::common::as_nobody(env!("CARGO_BIN_EXE_profile"))
        .arg("1")
        .output()
        .expect("setpriv (util-linux) is needed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("run as root or grant CAP_BPF and CAP_PERFMON"),
        "{stderr}"
    );
}
