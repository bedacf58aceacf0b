//! Record now, render later: round trips through the recording file, import
//! of `perf script`, and exports.

use std::fs;
use std::process::Command;
use std::time::Duration;

use crate::common::{
    export, folded, leaf_counts, profile, profile_ok, require_bpf, Workload, COMM,
};

#[test]
fn render_of_a_recording_matches_live_frames() {
    require_bpf!();
    let w = Workload::start("switch", 4.0, &[]);
    let dir = tempfile::tempdir().unwrap();
    let live = format!("{}/live/fg%04d.png", dir.path().display());
    let rec = dir.path().join("run.rsprof");
    let text = profile_ok(&[
        "-U",
        "-F",
        "199",
        "-p",
        &w.pid.to_string(),
        "-g",
        &live,
        "--interval",
        "0.5",
        "-o",
        rec.to_str().unwrap(),
        "-f",
        "3",
    ]);
    // The same profiles, rendered offline as the live run drew them: the
    // same frames, byte for byte. (By default render makes a first pass to
    // lock the layout for the whole video, so its frames differ.)
    let later = format!("{}/later/fg%04d.png", dir.path().display());
    let out = profile(&["render", rec.to_str().unwrap(), "--as-live", "-g", &later]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = crate::common::frames_in(&dir.path().join("live"), "png");
    let b = crate::common::frames_in(&dir.path().join("later"), "png");
    assert!(a.len() >= 5, "{} frames", a.len());
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.file_name(), y.file_name());
        assert!(
            fs::read(x).unwrap() == fs::read(y).unwrap(),
            "{} differs",
            y.display()
        );
    }
    // report -f prints what the live run printed.
    let report = profile_ok(&["report", "-f", rec.to_str().unwrap()]);
    let mut x = folded(&text);
    let mut y = folded(&report);
    x.sort();
    y.sort();
    assert_eq!(x, y);
    // A time range and regrouping.
    let first = profile_ok(&["report", "-f", "--to", "1.0", rec.to_str().unwrap()]);
    let leaves = leaf_counts(&folded(&first), COMM);
    assert!(
        leaves.contains_key("alpha") && !leaves.contains_key("beta"),
        "{first}"
    );
    let grouped = format!("{}/grouped/fg%04d.png", dir.path().display());
    profile_ok(&[
        "render",
        rec.to_str().unwrap(),
        "-g",
        &grouped,
        "--regroup",
        "1",
    ]);
    let n = crate::common::frames_in(&dir.path().join("grouped"), "png").len();
    assert!((3..=4).contains(&n), "{n} regrouped frames");
}

#[test]
fn a_recorder_killed_with_9_reads_back_to_its_last_interval() {
    require_bpf!();
    let _w = Workload::start("mix", 6.0, &[]);
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("killed.rsprof");
    let mut child = Command::new(env!("CARGO_BIN_EXE_profile"))
        .args([
            "record",
            "-o",
            rec.to_str().unwrap(),
            "--interval",
            "0.2",
            "-F",
            "99",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    child.kill().unwrap();
    child.wait().unwrap();
    let out = profile(&["report", "-f", rec.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let leaves = leaf_counts(&folded(&String::from_utf8_lossy(&out.stdout)), COMM);
    assert!(leaves.get("alpha").copied().unwrap_or(0) > 20, "{leaves:?}");
    // Cut the file mid-record: the whole intervals before it still render,
    // and the damage is named.
    let bytes = fs::read(&rec).unwrap();
    let cut = dir.path().join("cut.rsprof");
    fs::write(&cut, &bytes[..bytes.len() - 5]).unwrap();
    let pattern = format!("{}/f/fg%04d.png", dir.path().display());
    let out = profile(&["render", cut.to_str().unwrap(), "-g", &pattern]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("truncated record") && stderr.contains("offset"),
        "{stderr}"
    );
    assert!(stderr.contains("whole intervals before it"), "{stderr}");
    assert!(!crate::common::frames_in(&dir.path().join("f"), "png").is_empty());
}

#[test]
fn foreign_files_are_refused_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.rsprof");
    fs::write(&f, b"not a recording at all").unwrap();
    for args in [
        vec!["report", f.to_str().unwrap()],
        vec!["render", f.to_str().unwrap(), "-g", "/tmp/never%04d.png"],
        vec![
            "export",
            f.to_str().unwrap(),
            "--format",
            "pprof",
            "-o",
            "/tmp/never.pb.gz",
        ],
    ] {
        let out = profile(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("not an rs-profile recording"), "{stderr}");
    }
}

#[test]
fn import_of_perf_script_finds_the_hot_function() {
    require_bpf!();
    let w = Workload::start("mix", 5.0, &[]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("perf.data");
    let status = Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-F", "499", "-g", "-q", "-o"])
        .arg(&data)
        .args(["-p", &w.pid.to_string(), "--", "sleep", "3"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("perf is needed (linux-perf)");
    assert!(status.success());
    let script = Command::new("perf")
        .args(["script", "-i"])
        .arg(&data)
        .output()
        .unwrap();
    let script_path = dir.path().join("perf.script");
    fs::write(&script_path, &script.stdout).unwrap();
    let rec = dir.path().join("imported.rsprof");
    let out = profile(&[
        "import",
        script_path.to_str().unwrap(),
        "-o",
        rec.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = profile_ok(&["report", "-f", rec.to_str().unwrap()]);
    let leaves = leaf_counts(&folded(&report), COMM);
    let total: u64 = leaves.values().sum();
    let alpha = leaves.get("alpha").copied().unwrap_or(0);
    // perf's own count of samples with alpha as leaf.
    let script = String::from_utf8_lossy(&script.stdout);
    let perf_alpha = script
        .split("\n\n")
        .filter(|b| {
            b.lines().nth(1).is_some_and(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|s| s.starts_with("alpha+"))
            })
        })
        .count() as u64;
    assert_eq!(
        alpha, perf_alpha,
        "imported {alpha} alpha samples, perf script has {perf_alpha}"
    );
    assert!(alpha * 2 > total, "alpha {alpha} of {total}");
    // Several intervals, by timestamp.
    let pattern = format!("{}/fg%04d.png", dir.path().display());
    let out = profile(&["render", rec.to_str().unwrap(), "-g", &pattern]);
    assert!(out.status.success());
    let frames = crate::common::frames_in(dir.path(), "png").len();
    assert!(
        (3..=4).contains(&frames),
        "{frames} frames from 3 s of perf data"
    );
}

#[test]
fn exports_from_a_recording_and_from_a_live_run() {
    require_bpf!();
    let w = Workload::start("mix", 4.0, &[]);
    let dir = tempfile::tempdir().unwrap();
    let live_pb = dir.path().join("live.pb.gz");
    let live_ss = dir.path().join("live.speedscope.json");
    let rec = dir.path().join("run.rsprof");
    let pid = w.pid.to_string();
    profile_ok(&[
        "record",
        "-o",
        rec.to_str().unwrap(),
        "-p",
        &pid,
        "--interval",
        "0.5",
        "2",
    ]);
    profile_ok(&["-f", "-p", &pid, "-o", live_pb.to_str().unwrap(), "1"]);
    profile_ok(&["-f", "-p", &pid, "-o", live_ss.to_str().unwrap(), "1"]);
    for path in [&live_pb, &live_ss] {
        assert!(
            fs::metadata(path).unwrap().len() > 100,
            "{}",
            path.display()
        );
    }
    let pb = dir.path().join("rec.pb.gz");
    let ss = dir.path().join("rec.json");
    let fo = dir.path().join("rec.folded");
    for (format, out, extra) in [
        ("pprof", &pb, &[][..]),
        ("speedscope", &ss, &[]),
        ("folded", &fo, &["--from", "0.5"]),
    ] {
        let o = export(&rec, format, out, extra);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // pprof: parse back with a protobuf reader.
    let gz = fs::read(&pb).unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut raw).unwrap();
    let p = <rs_profile::export::pprof::PprofProfile as prost::Message>::decode(&raw[..]).unwrap();
    let total: i64 = p.sample.iter().map(|s| s.value[0]).sum();
    let report = profile_ok(&["report", "-f", rec.to_str().unwrap()]);
    let report_total: u64 = folded(&report).iter().map(|(_, n)| n).sum();
    assert_eq!(total as u64, report_total);
    assert!(p.string_table.iter().any(|s| s == "alpha"));
    if let Ok(out) = Command::new("go")
        .args(["tool", "pprof", "-top"])
        .arg(&pb)
        .output()
    {
        if out.status.success() {
            assert!(String::from_utf8_lossy(&out.stdout).contains("alpha"));
        }
    }
    // speedscope: the schema's required fields.
    let v: serde_json::Value = serde_json::from_slice(&fs::read(&ss).unwrap()).unwrap();
    assert_eq!(
        v["$schema"],
        "https://www.speedscope.app/file-format-schema.json"
    );
    assert!(v["shared"]["frames"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["name"] == "alpha"));
    let profiles = v["profiles"].as_array().unwrap();
    assert!(profiles.len() >= 4, "one profile per interval");
    for p in profiles {
        assert_eq!(p["type"], "sampled");
        assert_eq!(
            p["samples"].as_array().unwrap().len(),
            p["weights"].as_array().unwrap().len()
        );
    }
    // folded from 0.5 s on: fewer samples than the whole recording.
    let part: u64 = folded(&fs::read_to_string(&fo).unwrap())
        .iter()
        .map(|(_, n)| n)
        .sum();
    assert!(part > 0 && part < report_total, "{part} of {report_total}");
}
