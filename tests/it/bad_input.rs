//! Inputs that grow without bound or pass where they should fail, and
//! runs that must end early (issue 24): endless lines, overflowing counts,
//! repeated records, a closed pipe under the only output, absurd option
//! values, Ctrl-C under `render`.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{profile, require_bpf};

fn err(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One short line on stderr, and a failure.
fn one_short_line(out: &Output) -> String {
    let e = err(out);
    assert!(!out.status.success(), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.len() < 300,
        "{} bytes: {}",
        e.len(),
        &e[..300.min(e.len())]
    );
    e
}

fn import(inputs: &[&Path], out: &Path) -> Output {
    import_with(inputs, out, &[])
}

/// `profile import INPUTS -o OUT EXTRA...`.
fn import_with(inputs: &[&Path], out: &Path, extra: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_profile"));
    c.arg("import").args(inputs).arg("-o").arg(out).args(extra);
    c.output().unwrap()
}

#[test]
fn endless_input_is_refused_in_bounded_memory() {
    // Renders and ffmpeg: not beside the BPF tests that count samples.
    let _guard = crate::common::serial();
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("r.rsprof");
    // 1 GiB of address space is plenty for a capped line; an unbounded
    // read of /dev/zero fails it within a second.
    let t = Instant::now();
    let out = Command::new("prlimit")
        .arg("--as=1073741824")
        .arg(env!("CARGO_BIN_EXE_profile"))
        .args(["import", "/dev/zero", "-o"])
        .arg(&rec)
        .output()
        .unwrap();
    let e = one_short_line(&out);
    assert!(e.contains("longer than 1048576 bytes"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(!rec.exists(), "a failed import leaves nothing");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);

    // A 30 MB line without a count: quoted in at most ~80 characters.
    let long = dir.path().join("long.folded");
    fs::write(&long, format!("app;{}\n", "f".repeat(30 << 20))).unwrap();
    let out = import_with(&[&long], &rec, &["--max-line-bytes", "67108864"]);
    let e = one_short_line(&out);
    assert!(e.contains("no count") && e.contains("bytes)"), "{e}");
    assert!(!rec.exists());
    // Out of range: one line.
    let out = profile(&[
        "import",
        "/dev/null",
        "-o",
        "x.rsprof",
        "--max-line-bytes",
        "12",
    ]);
    one_short_line(&out);
}

#[test]
fn counts_that_overflow_are_refused_at_import_with_the_line() {
    // Renders and ffmpeg: not beside the BPF tests that count samples.
    let _guard = crate::common::serial();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("big.folded");
    fs::write(&f, format!("a;x 5\na;y {}\na;z 1\n", u64::MAX - 2)).unwrap();
    let rec = dir.path().join("r.rsprof");
    let e = one_short_line(&import(&[&f], &rec));
    assert!(e.contains("line 2") && e.contains("add up"), "{e}");
    assert!(!rec.exists());
    let script = dir.path().join("p.script");
    let mut text = String::new();
    for (i, period) in [u64::MAX - 5, 10].iter().enumerate() {
        text.push_str(&format!(
            "app 10/10 [000] 100.{i:03}: {period} cpu-clock:\n\tffff main+0x1 (/bin/app)\n\n"
        ));
    }
    fs::write(&script, text).unwrap();
    let out = import_with(&[&script], &rec, &["--weight", "period"]);
    let e = one_short_line(&out);
    assert!(e.contains("line 6") && e.contains("add up"), "{e}");
    assert!(!rec.exists());
}

#[test]
fn counts_that_overflow_over_intervals_fail_the_report() {
    // Renders and ffmpeg: not beside the BPF tests that count samples.
    let _guard = crate::common::serial();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.folded"), dir.path().join("b.folded"));
    let half = u64::MAX / 2 + 1;
    fs::write(&a, format!("app;x {half}\n")).unwrap();
    fs::write(&b, format!("app;x {half}\n")).unwrap();
    let rec = dir.path().join("r.rsprof");
    let out = import(&[&a, &b], &rec);
    assert!(out.status.success(), "{}", err(&out));
    let out = profile(&["report", rec.to_str().unwrap(), "-f"]);
    let e = err(&out);
    assert!(!out.status.success(), "{e}");
    assert!(e.contains("add up to more than"), "{e}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("app;x"),
        "the report still prints"
    );
}

/// The byte ranges of a recording's records, after its header.
fn records(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut at = 12; // magic (8) + version (4)
    let mut out = Vec::new();
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push((at, at + 8 + len));
        at += 8 + len;
    }
    out
}

#[test]
fn repeated_interval_records_are_damage_not_samples() {
    // Renders and ffmpeg: not beside the BPF tests that count samples.
    let _guard = crate::common::serial();
    let dir = tempfile::tempdir().unwrap();
    let inputs: Vec<PathBuf> = (0..3)
        .map(|i| {
            let p = dir.path().join(format!("{i}.folded"));
            fs::write(&p, format!("app;f{i} 10\n")).unwrap();
            p
        })
        .collect();
    let refs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    let rec = dir.path().join("r.rsprof");
    assert!(import(&refs, &rec).status.success());
    let bytes = fs::read(&rec).unwrap();
    let recs = records(&bytes);
    assert_eq!(recs.len(), 4, "metadata + 3 intervals");
    // Interval 1's record written twice.
    let (a, b) = recs[2];
    let mut damaged = bytes[..b].to_vec();
    damaged.extend_from_slice(&bytes[a..b]);
    damaged.extend_from_slice(&bytes[b..]);
    let bad = dir.path().join("bad.rsprof");
    fs::write(&bad, damaged).unwrap();
    let out = profile(&["report", bad.to_str().unwrap(), "-f"]);
    let e = err(&out);
    assert!(e.contains("interval 1 comes after interval 1"), "{e}");
    let total: u64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum();
    assert_eq!(total, 20, "the intervals before the damage, once each");
}

#[test]
fn absurd_option_values_get_one_short_line() {
    // Renders and ffmpeg: not beside the BPF tests that count samples.
    let _guard = crate::common::serial();
    let digits = format!("1{}", "0".repeat(300));
    for args in [
        vec!["-T", "--history", "99999999999", "1"],
        vec!["-T", "--history-mb", "99999999999", "1"],
        vec!["-T", "--listen", "255.255.255.255", "1"],
        vec!["-T", "--listen", "224.0.0.1", "1"],
        vec!["-F", &digits, "1"],
        vec!["--interval", &digits, "1"],
        vec!["render", "x.rsprof", "--regroup", "1e19"],
    ] {
        let out = profile(&args);
        let e = one_short_line(&out);
        assert!(e.len() < 200, "{args:?}: {e}");
    }
}

#[test]
fn a_closed_pipe_under_the_only_output_ends_the_run() {
    require_bpf!();
    let t = Instant::now();
    // `record -o - 30 | head -c 100`: the reader leaves after 100 bytes.
    let mut child = Command::new(env!("CARGO_BIN_EXE_profile"))
        .args(["record", "-o", "-", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 100];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let e = one_short_line(&out);
    assert!(e.contains("Broken pipe"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());

    // export -o - | head -1: cut, so a failure.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("a.folded");
    let lines: String = (0..20_000).map(|i| format!("app;f{i} 1\n")).collect();
    fs::write(&f, lines).unwrap();
    let rec = dir.path().join("r.rsprof");
    assert!(import(&[&f], &rec).status.success());
    let mut child = Command::new(env!("CARGO_BIN_EXE_profile"))
        .args([
            "export",
            rec.to_str().unwrap(),
            "--format",
            "folded",
            "-o",
            "-",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 8];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    drop(child.stdout.take());
    let e = one_short_line(&child.wait_with_output().unwrap());
    assert!(e.contains("closed the pipe"), "{e}");
}

/// A recording long enough that rendering it takes a while.
fn long_recording(dir: &Path) -> PathBuf {
    let inputs: Vec<PathBuf> = (0..300)
        .map(|i| {
            let p = dir.join(format!("{i}.folded"));
            let lines: String = (0..40)
                .map(|j| format!("app;main;f{};g{} {}\n", (i + j) % 17, j, 1 + j))
                .collect();
            fs::write(&p, lines).unwrap();
            p
        })
        .collect();
    let refs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    let rec = dir.join("long.rsprof");
    let out = import(&refs, &rec);
    assert!(out.status.success(), "{}", err(&out));
    rec
}

fn signal(child: &std::process::Child, sig: i32) {
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as i32, sig) };
}

#[test]
fn render_stops_on_the_first_ctrl_c_and_leaves_whole_files() {
    // Renders and ffmpeg: not beside the BPF tests that count samples.
    let _guard = crate::common::serial();
    let dir = tempfile::tempdir().unwrap();
    let rec = long_recording(dir.path());
    let frames = dir.path().join("out");
    let pattern = frames.join("f%04d.png");
    let child = Command::new(env!("CARGO_BIN_EXE_profile"))
        .args([
            "render",
            rec.to_str().unwrap(),
            "-g",
            pattern.to_str().unwrap(),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    signal(&child, libc::SIGINT);
    let t = Instant::now();
    let out = child.wait_with_output().unwrap();
    // Debug builds draw a frame in ~100 ms; a release build stops sooner.
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let e = err(&out);
    assert!(!out.status.success());
    assert!(
        e.contains("interrupted after") && e.contains("each one whole"),
        "{e}"
    );
    let written: Vec<_> = fs::read_dir(&frames).unwrap().flatten().collect();
    assert!(
        written.len() > 1 && written.len() < 300,
        "{}",
        written.len()
    );
    for f in &written {
        let name = f.file_name().to_string_lossy().into_owned();
        assert!(!name.ends_with(".tmp"), "{name}");
        if name.ends_with(".png") {
            crate::common::read_png(&f.path());
        }
    }

    // render -o x.mp4 and SIGTERM: the video is closed over the frames so
    // far, named, and nothing temporary is left.
    let mp4 = dir.path().join("x.mp4");
    let child = Command::new(env!("CARGO_BIN_EXE_profile"))
        .args(["render", rec.to_str().unwrap(), "-o", mp4.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    signal(&child, libc::SIGTERM);
    let t = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(!out.status.success());
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration"])
        .arg(&mp4)
        .output()
        .unwrap();
    assert!(probe.status.success(), "{}", err(&out));
    let left: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // Twice: out at once.
    let mp4 = dir.path().join("y.mp4");
    let child = Command::new(env!("CARGO_BIN_EXE_profile"))
        .args(["render", rec.to_str().unwrap(), "-o", mp4.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    signal(&child, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(50));
    signal(&child, libc::SIGINT);
    let t = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(out.status.code(), Some(130));
    assert!(!mp4.exists());
}
