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
    one_line_error(&["-F", "0"], "frequency must be a positive number");
    one_line_error(&["-F", "99", "-c", "100"], "cannot be used with");
    one_line_error(&["-p", "abc"], "invalid PID \"abc\"");
    one_line_error(&["-p", "999999999"], "PID 999999999 does not exist");
    one_line_error(&["-L", "0"], "invalid TID");
    one_line_error(&["-C", "9999"], "CPU 9999 is not online");
    one_line_error(&["-U", "-K"], "cannot be used with");
    one_line_error(&["--cgroupmap", "/nonexistent"], "no such file");
    one_line_error(&["--bogus"], "unexpected argument");
    one_line_error(&["abc"], "invalid value");
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
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_profile"))
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
