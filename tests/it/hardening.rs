//! Hostile and unlucky conditions (issue 9): planted links, special files,
//! a closed stdout, full disks and late interval cuts. Each test checks the
//! file system afterwards, the exit code and the message.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{export, profile, require_bpf, Workload};

const VICTIM: &[u8] = b"root's precious file\n";

/// A root-owned victim file outside a world-writable sticky folder (as
/// /tmp is: others can add names, not move ours).
struct Scene {
    _dir: tempfile::TempDir,
    victim: PathBuf,
    open: PathBuf,
}

fn scene() -> Scene {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    fs::write(&victim, VICTIM).unwrap();
    let open = dir.path().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
    // tempdir() is 0700: let nobody reach the open folder.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
    Scene {
        _dir: dir,
        victim,
        open,
    }
}

/// `ln -s TARGET LINK` as nobody, the way an unprivileged user would.
fn plant_link_as_nobody(target: &Path, link: &Path) {
    let st = crate::common::as_nobody("ln")
        .arg("-s")
        .arg(target)
        .arg(link)
        .status()
        .expect("setpriv (util-linux) is needed");
    assert!(st.success(), "nobody could not plant {}", link.display());
}

fn temp_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".tmp") || n.starts_with(".rs-profile"))
                .collect()
        })
        .unwrap_or_default()
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn planted_links_in_the_frame_folder_are_not_followed() {
    require_bpf!();
    let s = scene();
    // The names the first version wrote to: its temporary frame name and its
    // write probe, both predictable.
    plant_link_as_nobody(&s.victim, &s.open.join(".f0000.png.tmp"));
    plant_link_as_nobody(&s.victim, &s.open.join(".f0000.svg.tmp"));
    for pid in std::process::id()..std::process::id() + 50 {
        plant_link_as_nobody(
            &s.victim,
            &s.open.join(format!(".rs-profile-write-test-{pid}")),
        );
    }
    let pattern = s.open.join("f%04d.png");
    let out = profile(&["-g", pattern.to_str().unwrap(), "-f", "1"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(fs::read(&s.victim).unwrap(), VICTIM);
    assert!(s.open.join("f0000.png").is_file());

    // A link planted at a frame's own name is refused, or with --overwrite
    // removed (the link, not what it points to).
    plant_link_as_nobody(&s.victim, &s.open.join("f0007.png"));
    let out = profile(&["-g", pattern.to_str().unwrap(), "-f", "1"]);
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("--overwrite"),
        "{}",
        stderr_of(&out)
    );
    let out = profile(&["-g", pattern.to_str().unwrap(), "--overwrite", "-f", "1"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(fs::read(&s.victim).unwrap(), VICTIM);
    assert!(!s.open.join("f0007.png").exists());
    // Only the planted links are left, and no temporary file of ours.
    let ours: Vec<_> = temp_files(&s.open)
        .into_iter()
        .filter(|n| !n.starts_with(".f0000.") && !n.starts_with(".rs-profile-write-test-"))
        .collect();
    assert!(ours.is_empty(), "{ours:?}");
}

#[test]
fn a_planted_link_as_output_is_refused() {
    require_bpf!();
    let s = scene();
    for name in ["out.pb.gz", "out.rsprof"] {
        let link = s.open.join(name);
        plant_link_as_nobody(&s.victim, &link);
        for extra in [&[][..], &["--overwrite"]] {
            let mut args = vec!["-f", "-o", link.to_str().unwrap()];
            args.extend_from_slice(extra);
            args.push("1");
            let out = profile(&args);
            let err = stderr_of(&out);
            assert!(!out.status.success(), "{args:?}");
            assert!(err.contains("symbolic link"), "{err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
        assert_eq!(fs::read(&s.victim).unwrap(), VICTIM);
        assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
    }
}

/// A recording made without BPF: a folded file imported.
fn small_recording(dir: &Path) -> PathBuf {
    let folded = dir.join("in.folded");
    fs::write(&folded, "app;main;work 7\napp;main;idle 3\n").unwrap();
    let rec = dir.join("run.rsprof");
    let out = profile(&[
        "import",
        folded.to_str().unwrap(),
        "-o",
        rec.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    rec
}

#[test]
fn special_files_and_dash_stream_instead_of_being_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let rec = small_recording(dir.path());
    for target in ["/dev/stdout", "-"] {
        let out = Command::new(env!("CARGO_BIN_EXE_profile"))
            .current_dir(dir.path())
            .args(["export", rec.to_str().unwrap(), "--format", "folded", "-o"])
            .arg(target)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("app;main;work 7"), "{target}: {text:?}");
    }
    assert!(fs::symlink_metadata("/dev/stdout").unwrap().is_symlink());
    assert!(!dir.path().join("-").exists());
    // A FIFO gets the bytes; it is not replaced by a regular file.
    let fifo = dir.path().join("pipe.folded");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::read_to_string(fifo).unwrap())
    };
    let out = export(&rec, "folded", &fifo, &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(reader.join().unwrap().contains("app;main;idle 3"));
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    // An existing regular file is kept unless --overwrite.
    let kept = dir.path().join("kept.folded");
    fs::write(&kept, "mine").unwrap();
    let out = export(&rec, "folded", &kept, &[]);
    assert!(!out.status.success());
    assert_eq!(fs::read_to_string(&kept).unwrap(), "mine");
    let out = export(&rec, "folded", &kept, &["--overwrite"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(fs::read_to_string(&kept).unwrap().contains("work 7"));
    assert!(temp_files(dir.path()).is_empty());
}

#[test]
fn a_closed_stdout_ends_the_report_only() {
    require_bpf!();
    let dir = tempfile::tempdir().unwrap();
    let pattern = dir.path().join("fr/f%04d.png");
    let pb = dir.path().join("out.pb.gz");
    let mut child = Command::new(env!("CARGO_BIN_EXE_profile"))
        .args(["-F199", "--interval", "0.1", "-g"])
        .arg(&pattern)
        .arg("-o")
        .arg(&pb)
        .args(["-f", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `| head -0`: the reader is gone before the report is written.
    drop(child.stdout.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{err}");
    let frames = crate::common::frames_in(&dir.path().join("fr"), "png").len();
    assert_eq!(frames, 30, "{err}");
    assert!(fs::metadata(&pb).unwrap().len() > 0);
}

/// A small tmpfs, mounted for one test and unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn new(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs failed");
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn disk_full_under_frames_stops_the_run_with_its_cause() {
    require_bpf!();
    let _load = Workload::start("mix", 30.0, &[]);
    let disk = SmallDisk::new("256k");
    let pattern = disk.path().join("f%04d.png");
    let pb = tempfile::tempdir().unwrap();
    let pb = pb.path().join("still.folded");
    let t = Instant::now();
    let out = profile(&[
        "-g",
        pattern.to_str().unwrap(),
        "--interval",
        "0.1",
        "-o",
        pb.to_str().unwrap(),
        "--stats",
        "-f",
        "20",
    ]);
    let elapsed = t.elapsed();
    let err = stderr_of(&out);
    assert!(!out.status.success(), "{err}");
    assert!(elapsed < Duration::from_secs(12), "ran {elapsed:?}: {err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("profile: frames"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("No space left on device"), "{line}");
    assert!(line.contains(disk.path().to_str().unwrap()), "{line}");
    assert!(err.contains("stats: "), "{err}");
    // The other outputs finished: the export and the report.
    assert!(fs::read_to_string(&pb).unwrap().contains(' '));
    assert!(!out.stdout.is_empty());
    assert!(
        temp_files(disk.path()).is_empty(),
        "{:?}",
        temp_files(disk.path())
    );
}

#[test]
fn disk_full_under_record_names_the_cause() {
    require_bpf!();
    let _load = Workload::start("mix", 30.0, &[]);
    let disk = SmallDisk::new("8k");
    let rec = disk.path().join("r.rsprof");
    let t = Instant::now();
    let out = profile(&[
        "record",
        "-o",
        rec.to_str().unwrap(),
        "-F",
        "999",
        "--interval",
        "0.05",
        "20",
    ]);
    let err = stderr_of(&out);
    assert!(!out.status.success(), "{err}");
    assert!(t.elapsed() < Duration::from_secs(12), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("recording"), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(!err.contains("processing thread"), "{err}");
}

#[test]
fn intervals_keep_the_grid_under_load() {
    require_bpf!();
    let _a = Workload::start("mix", 30.0, &[]);
    let _b = Workload::start("threads", 30.0, &[]);
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("r.rsprof");
    let out = profile(&[
        "record",
        "-o",
        rec.to_str().unwrap(),
        "--interval",
        "0.05",
        "5",
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let json = dir.path().join("r.speedscope.json");
    let out = export(&rec, "speedscope", &json, &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let v: serde_json::Value = serde_json::from_slice(&fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["profiles"].as_array().unwrap().len(), 100);
}

/// A video whose disk fills: the run stops within an interval or two with
/// its cause, the report still prints, and no temporary file is left. At
/// one frame a second the encoder holds ~40 frames before it writes, so
/// only watching the disk notices this early.
#[test]
fn disk_full_under_a_video_stops_the_run_with_its_cause() {
    require_bpf!();
    let _load = Workload::start("mix", 60.0, &[]);
    let disk = SmallDisk::new("4m");
    let mp4 = disk.path().join("talk.mp4");
    let child = Command::new(env!("CARGO_BIN_EXE_profile"))
        .args(["-o", mp4.to_str().unwrap(), "--interval", "1", "-f", "45"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    // Something else fills the disk.
    let mut filler = fs::File::create(disk.path().join("filler")).unwrap();
    let chunk = vec![7u8; 64 << 10];
    while std::io::Write::write_all(&mut filler, &chunk).is_ok() {}
    let filled = Instant::now();
    let out = child.wait_with_output().unwrap();
    let err = stderr_of(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        filled.elapsed() < Duration::from_secs(4),
        "stopped {:?} after the disk filled: {err}",
        filled.elapsed()
    );
    let line = err
        .lines()
        .find(|l| l.starts_with("profile: the video"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("No space left on device"), "{line}");
    assert!(!out.stdout.is_empty(), "the report still printed");
    assert!(!mp4.exists());
    assert!(
        temp_files(disk.path()).is_empty(),
        "{:?}",
        temp_files(disk.path())
    );
}
