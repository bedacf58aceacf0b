//! What the command says when it is done: `-q`, the make-the-video hint,
//! the one-line summaries of `record` and `render`, the man pages.

use std::process::Command;

use crate::common::{profile, require_bpf, Workload};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn quiet_keeps_the_report_off_stdout() {
    // Nothing left to make is refused before anything runs.
    let out = profile(&["-q", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("-q leaves nothing to make"),
        "{}",
        stderr(&out)
    );

    require_bpf!();
    let dir = tempfile::tempdir().unwrap();
    let pattern = dir.path().join("f%02d.png");
    let mut w = Workload::start("mix", 3.0, &[]);
    let out = profile(&["-q", "-F", "99", "-g", pattern.to_str().unwrap(), "2"]);
    w.wait();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(dir.path().join("f00.png").exists() && dir.path().join("f01.png").exists());
    // Frames and no video: how to make one.
    assert!(err.contains("make the video: profile encode '"), "{err}");
}

#[test]
fn record_and_render_end_with_one_summary_line() {
    require_bpf!();
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("run.rsprof");
    let mut w = Workload::start("mix", 3.0, &[]);
    let out = profile(&["record", "-F", "99", "-o", rec.to_str().unwrap(), "2"]);
    w.wait();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("recorded "))
        .unwrap_or_else(|| panic!("no summary: {err}"));
    assert!(line.contains(rec.to_str().unwrap()), "{line}");
    assert!(line.contains(": 2 intervals, "), "{line}");
    let samples: u64 = line
        .split(", ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(samples > 50, "{line}");

    let pattern = dir.path().join("g%02d.png");
    let out = profile(&[
        "render",
        rec.to_str().unwrap(),
        "-g",
        pattern.to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("rendered "))
        .unwrap_or_else(|| panic!("no summary: {err}"));
    assert!(line.contains(&format!(", {samples} samples, ")), "{line}");
    assert!(line.contains(": 2 frames from 2 of"), "{line}");
}

#[test]
fn every_man_page_renders() {
    for page in [
        None,
        Some("record"),
        Some("render"),
        Some("export"),
        Some("encode"),
    ] {
        let mut args = vec!["man"];
        args.extend(page);
        let out = profile(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        // man itself reads it back without a warning.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.1");
        std::fs::write(&file, &out.stdout).unwrap();
        let shown = Command::new("man")
            .env("MANWIDTH", "80")
            .arg("-l")
            .arg(&file)
            .output()
            .expect("man (man-db) is needed");
        assert!(shown.status.success(), "{}", stderr(&shown));
        let text = String::from_utf8_lossy(&shown.stdout);
        let name = page.map_or("profile".to_string(), |p| format!("profile-{p}"));
        assert!(text.contains(&name), "{text}");
    }
    let out = profile(&["man", "nonsense"]);
    assert_eq!(out.status.code(), Some(2));
}
