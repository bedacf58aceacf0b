//! Writes an unprivileged user tries to redirect (issue 24). Root runs
//! `profile`; the attacker is `nobody` (setpriv), who can write the output
//! folder and races with the profiler: swapping temporary names for links,
//! planting the final name, swapping a FIFO, linking the folder itself.
//! Each case checks the victim file, the exit code and the one-line message,
//! and never reports as written what is not there.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::common::{profile, require_bpf};

const VICTIM: &[u8] = b"root's precious file\n";

/// A victim outside the attacker's reach and a folder the attacker can
/// write: `mode` 0o777 (no sticky bit) or 0o1777 (as /tmp).
struct Scene {
    _dir: tempfile::TempDir,
    victim: PathBuf,
    open: PathBuf,
}

fn scene(mode: u32) -> Scene {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    fs::write(&victim, VICTIM).unwrap();
    let open = dir.path().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(mode)).unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
    Scene {
        _dir: dir,
        victim,
        open,
    }
}

fn as_nobody(args: &[&str]) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(args);
    c
}

fn run_as_nobody(args: &[&str]) {
    let st = as_nobody(args).status().expect("setpriv (util-linux)");
    assert!(st.success(), "nobody: {args:?}");
}

/// The attacker: for `secs` seconds, every entry of `dir` not its own
/// (and, with `only_tmp`, named like a temporary file) is moved away and
/// replaced by a link to `victim`, as fast as it can list the folder.
const ATTACKER: &str = r#"
import ctypes, os, signal, struct, sys, time
d, victim, secs, only_tmp = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4] == "1"
swapped = 0
def done(*_):
    print(swapped); sys.stdout.flush(); os._exit(0)
signal.signal(signal.SIGTERM, done)
signal.signal(signal.SIGALRM, done)
signal.setitimer(signal.ITIMER_REAL, secs)
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init()
IN_CREATE, IN_MOVED_TO = 0x100, 0x80
libc.inotify_add_watch(fd, d.encode(), IN_CREATE | IN_MOVED_TO)
def swap(name):
    global swapped
    if name.endswith(".stolen") or (only_tmp and not name.endswith(".tmp")):
        return
    p = os.path.join(d, name)
    try:
        if os.lstat(p).st_uid == os.getuid():
            return
        os.rename(p, p + ".stolen")
        os.symlink(victim, p)
        swapped += 1
    except OSError:
        pass
while True:
    buf = os.read(fd, 65536)
    i = 0
    while i < len(buf):
        _, mask, _, n = struct.unpack_from("iIII", buf, i)
        name = buf[i + 16 : i + 16 + n].rstrip(b"\0").decode(errors="replace")
        i += 16 + n
        swap(name)
"#;

fn attacker(dir: &Path, victim: &Path, secs: f64, only_tmp: bool) -> Child {
    // Debian's python3: root's pyenv shims are not nobody's to run.
    as_nobody(&["/usr/bin/python3", "-c", ATTACKER])
        .arg(dir)
        .arg(victim)
        .arg(secs.to_string())
        .arg(if only_tmp { "1" } else { "0" })
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `profile render REC ARGS --overwrite --unsafe-output-dir` while the
/// attacker swaps temporary names in the scene's open folder; the output
/// and how many names it swapped. The victim is checked untouched.
fn render_under_attack(s: &Scene, rec: &Path, args: &[&str], secs: f64) -> (Output, u64) {
    let a = attacker(&s.open, &s.victim, secs, true);
    let mut all = vec!["render", rec.to_str().unwrap()];
    all.extend_from_slice(args);
    all.extend(["--overwrite", "--unsafe-output-dir"]);
    let out = profile(&all);
    let swapped = stop_attacker(a);
    assert_eq!(fs::read(&s.victim).unwrap(), VICTIM);
    (out, swapped)
}

/// Stops the attacker; how many names it swapped.
fn stop_attacker(a: Child) -> u64 {
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(a.id() as i32, libc::SIGTERM) };
    let out = a.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

fn err(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A recording of a few dozen intervals, made without BPF.
fn recording(dir: &Path, intervals: usize) -> PathBuf {
    let mut script = String::new();
    for i in 0..intervals {
        for s in 0..20 {
            script.push_str(&format!(
                "app 100/100 {}.{:03}: 1 cpu-clock:\n\t1 work{}+0x1 (/bin/app)\n\t2 main+0x1 (/bin/app)\n\n",
                1000 + i,
                s * 40,
                s % 5
            ));
        }
    }
    let input = dir.join("in.script");
    fs::write(&input, script).unwrap();
    let rec = dir.join("run.rsprof");
    let out = profile(&[
        "import",
        input.to_str().unwrap(),
        "-o",
        rec.to_str().unwrap(),
        "--interval",
        "0.5",
    ]);
    assert!(out.status.success(), "{}", err(&out));
    rec
}

/// What is at `path`: a regular file of root's, whole (ffprobe reads it).
fn is_roots_video(path: &Path) -> bool {
    let Ok(m) = fs::symlink_metadata(path) else {
        return false;
    };
    m.file_type().is_file()
        && m.uid() == 0
        && Command::new("ffprobe")
            .args(["-v", "error", "-show_entries", "format=duration"])
            .arg(path)
            .output()
            .is_ok_and(|o| o.status.success())
}

#[test]
fn folders_others_can_change_are_refused_with_one_line() {
    // Renders and ffmpeg: not beside the BPF tests that count samples.
    let _guard = crate::common::serial();
    let s = scene(0o777);
    let rec = recording(s.open.parent().unwrap(), 4);
    let rec = rec.to_str().unwrap();
    let o = |name: &str| s.open.join(name).to_str().unwrap().to_string();
    let cases: Vec<Vec<String>> = vec![
        vec![
            "export".into(),
            rec.into(),
            "--format".into(),
            "folded".into(),
            "-o".into(),
            o("x.folded"),
        ],
        vec!["render".into(), rec.into(), "-g".into(), o("f%04d.png")],
        vec!["render".into(), rec.into(), "-o".into(), o("talk.mp4")],
        vec![
            "import".into(),
            "/dev/null".into(),
            "-o".into(),
            o("r.rsprof"),
        ],
    ];
    for args in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = profile(&args);
        let e = err(&out);
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(e.lines().count(), 1, "{args:?}: {e}");
        assert!(
            e.contains("writable by everyone") && e.contains("--unsafe-output-dir"),
            "{e}"
        );
    }
    assert_eq!(fs::read_dir(&s.open).unwrap().count(), 0, "nothing written");
    // A folder owned by another user is theirs to change, even in a
    // sticky folder such as /tmp.
    fs::set_permissions(&s.open, fs::Permissions::from_mode(0o1777)).unwrap();
    run_as_nobody(&["mkdir", s.open.join("theirs").to_str().unwrap()]);
    let out = profile(&[
        "export",
        rec,
        "--format",
        "folded",
        "-o",
        &o("theirs/x.folded"),
    ]);
    assert!(err(&out).contains("owned by uid 65534"), "{}", err(&out));
    // Allowed when asked, explicitly.
    fs::set_permissions(&s.open, fs::Permissions::from_mode(0o777)).unwrap();
    let out = profile(&[
        "export",
        rec,
        "--format",
        "folded",
        "-o",
        &o("x.folded"),
        "--unsafe-output-dir",
    ]);
    assert!(out.status.success(), "{}", err(&out));
}

#[test]
fn a_frame_folder_that_is_their_link_is_not_followed() {
    // Renders and ffmpeg: not beside the BPF tests that count samples.
    let _guard = crate::common::serial();
    let s = scene(0o1777);
    let rec = recording(s.open.parent().unwrap(), 4);
    // Root's own frames elsewhere, which --overwrite would delete.
    let mine = s.open.parent().unwrap().join("mine");
    fs::create_dir(&mine).unwrap();
    fs::write(mine.join("f0000.png"), VICTIM).unwrap();
    let link = s.open.join("frames");
    run_as_nobody(&["ln", "-s", mine.to_str().unwrap(), link.to_str().unwrap()]);
    let pattern = link.join("f%04d.png");
    let out = profile(&[
        "render",
        rec.to_str().unwrap(),
        "-g",
        pattern.to_str().unwrap(),
        "--overwrite",
    ]);
    let e = err(&out);
    assert!(!out.status.success());
    // Their link in a folder they can write: refused as theirs.
    assert!(e.contains("owned by uid 65534"), "{e}");
    assert_eq!(fs::read(mine.join("f0000.png")).unwrap(), VICTIM);
    assert_eq!(fs::read_dir(&mine).unwrap().count(), 1);
}

#[test]
fn a_trailing_slash_names_a_folder_not_frames() {
    // Renders and ffmpeg: not beside the BPF tests that count samples.
    let _guard = crate::common::serial();
    let dir = tempfile::tempdir().unwrap();
    let rec = recording(dir.path(), 2);
    for pattern in ["/f%04d.png/", "out/f%04d.png/"] {
        let out = profile(&["render", rec.to_str().unwrap(), "-g", pattern]);
        assert!(!out.status.success());
        assert!(err(&out).contains("names a folder"), "{}", err(&out));
    }
    assert!(!Path::new("/f0000.png").exists());
    assert!(!Path::new("/flamegraph.video.json").exists() && !Path::new("/f.video.json").exists());
}

#[test]
fn links_and_block_devices_as_outputs_are_refused() {
    // Renders and ffmpeg: not beside the BPF tests that count samples.
    let _guard = crate::common::serial();
    let s = scene(0o1777);
    let rec = recording(s.open.parent().unwrap(), 2);
    // A block device node of our own (loop0's numbers) and their link to it.
    let blk = s.open.parent().unwrap().join("blk");
    let c = std::ffi::CString::new(blk.to_str().unwrap()).unwrap();
    // SAFETY: mknod of a device node in our own test folder.
    assert_eq!(
        unsafe { libc::mknod(c.as_ptr(), libc::S_IFBLK | 0o600, libc::makedev(7, 0)) },
        0
    );
    let link = s.open.join("out.pb.gz");
    run_as_nobody(&["ln", "-s", blk.to_str().unwrap(), link.to_str().unwrap()]);
    for extra in [&[][..], &["--overwrite"]] {
        let mut args = vec![
            "export",
            rec.to_str().unwrap(),
            "--format",
            "pprof",
            "-o",
            link.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = profile(&args);
        assert!(!out.status.success());
        assert!(err(&out).contains("symbolic link"), "{}", err(&out));
    }
    let out = profile(&[
        "export",
        rec.to_str().unwrap(),
        "--format",
        "pprof",
        "-o",
        blk.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(err(&out).contains("block device"), "{}", err(&out));
    assert!(fs::metadata(&blk).unwrap().file_type().is_block_device());
}

#[test]
fn make_video_refuses_a_planted_link_and_an_existing_file() {
    // Renders and ffmpeg: not beside the BPF tests that count samples.
    let _guard = crate::common::serial();
    let s = scene(0o1777);
    let rec = recording(s.open.parent().unwrap(), 4);
    let frames = s.open.parent().unwrap().join("frames");
    let pattern = frames.join("f%04d.png");
    let out = profile(&[
        "render",
        rec.to_str().unwrap(),
        "-g",
        pattern.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", err(&out));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/make_video.sh");
    let mv = |out: &Path, extra: &[&str]| {
        Command::new(script)
            .env("PROFILE", env!("CARGO_BIN_EXE_profile"))
            .arg(&pattern)
            .arg(out)
            .args(extra)
            .output()
            .unwrap()
    };
    let link = s.open.join("talk.mp4");
    run_as_nobody(&[
        "ln",
        "-s",
        s.victim.to_str().unwrap(),
        link.to_str().unwrap(),
    ]);
    for extra in [&[][..], &["--overwrite"]] {
        let out = mv(&link, extra);
        assert!(!out.status.success());
        assert!(err(&out).contains("symbolic link"), "{}", err(&out));
    }
    assert_eq!(fs::read(&s.victim).unwrap(), VICTIM);
    let mine = s.open.parent().unwrap().join("talk.mp4");
    let out = mv(&mine, &[]);
    assert!(out.status.success(), "{}", err(&out));
    assert!(is_roots_video(&mine));
    let out = mv(&mine, &[]);
    assert!(!out.status.success());
    assert!(err(&out).contains("--overwrite"), "{}", err(&out));
    let out = mv(&mine, &["--overwrite"]);
    assert!(out.status.success(), "{}", err(&out));
}

/// The worst case: a folder others can change, allowed with
/// --unsafe-output-dir, and an attacker swapping every temporary name for a
/// link while the video is written. ffmpeg writes to our descriptor, so the
/// victim is never touched; the video is either ours under its name, or the
/// run fails naming it.
#[test]
fn a_video_never_goes_through_a_swapped_name() {
    // Renders and ffmpeg: not beside the BPF tests that count samples.
    let _guard = crate::common::serial();
    let s = scene(0o777);
    let rec = recording(s.open.parent().unwrap(), 40);
    let mp4 = s.open.join("talk.mp4");
    let mut outcomes = (0, 0);
    for _ in 0..2 {
        fs::write(&mp4, b"old video").unwrap();
        let (out, swapped) = render_under_attack(&s, &rec, &["-o", mp4.to_str().unwrap()], 8.0);
        let e = err(&out);
        eprintln!("video race: the attacker swapped {swapped} names");
        if out.status.success() {
            assert!(
                is_roots_video(&mp4),
                "exit 0 but {} is not our video: {e}",
                mp4.display()
            );
            outcomes.0 += 1;
        } else {
            assert!(e.contains("talk.mp4") && e.contains("someone else"), "{e}");
            outcomes.1 += 1;
        }
        for f in fs::read_dir(&s.open).unwrap().flatten() {
            let _ = fs::remove_file(f.path());
        }
    }
    eprintln!(
        "video race: {} written whole, {} refused",
        outcomes.0, outcomes.1
    );

    // The final name planted while the video is written: refused, named.
    let mut planter = as_nobody(&[
        "sh",
        "-c",
        &format!("sleep 0.4; ln -s {} {}", s.victim.display(), mp4.display()),
    ])
    .spawn()
    .unwrap();
    let out = profile(&[
        "render",
        rec.to_str().unwrap(),
        "-o",
        mp4.to_str().unwrap(),
        "--unsafe-output-dir",
    ]);
    planter.wait().unwrap();
    let e = err(&out);
    assert!(!out.status.success(), "{e}");
    assert!(e.contains("appeared while it was being written"), "{e}");
    assert!(fs::symlink_metadata(&mp4).unwrap().is_symlink());
    assert_eq!(fs::read(&s.victim).unwrap(), VICTIM);
}

/// Frames (and their sidecar, replaced in place) under the same attack.
#[test]
fn frames_are_ours_or_the_run_says_which_is_not() {
    // Renders and ffmpeg: not beside the BPF tests that count samples.
    let _guard = crate::common::serial();
    let s = scene(0o777);
    let rec = recording(s.open.parent().unwrap(), 30);
    let pattern = s.open.join("f%04d.png");
    for round in 0..2 {
        let (out, swapped) = render_under_attack(&s, &rec, &["-g", pattern.to_str().unwrap()], 6.0);
        let e = err(&out);
        eprintln!("frames race: the attacker swapped {swapped} names");
        if out.status.success() {
            for n in 0..30 {
                let f = s.open.join(format!("f{n:04}.png"));
                let m = fs::symlink_metadata(&f)
                    .unwrap_or_else(|_| panic!("round {round}: {}", f.display()));
                assert!(
                    m.file_type().is_file() && m.uid() == 0,
                    "round {round}: {}",
                    f.display()
                );
            }
        } else {
            assert!(e.contains("someone else"), "round {round}: {e}");
        }
    }
}

/// A recording created under its name, then moved away and replaced by
/// their link mid-run (only possible in a folder others can change): the
/// run says so at the end instead of reporting it written.
#[test]
fn a_recording_replaced_mid_run_is_reported() {
    require_bpf!();
    let s = scene(0o777);
    let rec = s.open.join("r.rsprof");
    let mut swap = as_nobody(&[
        "sh",
        "-c",
        &format!(
            "sleep 1.5; mv {r} {r}.stolen && ln -s {v} {r}",
            r = rec.display(),
            v = s.victim.display()
        ),
    ])
    .spawn()
    .unwrap();
    let out = profile(&[
        "record",
        "-o",
        rec.to_str().unwrap(),
        "--unsafe-output-dir",
        "3",
    ]);
    swap.wait().unwrap();
    let e = err(&out);
    assert!(!out.status.success(), "{e}");
    assert!(e.contains("r.rsprof was replaced by someone else"), "{e}");
    assert_eq!(fs::read(&s.victim).unwrap(), VICTIM);
}

/// `-o out.folded` where out.folded is their FIFO, swapped for a link to
/// the victim mid-run: the profile goes to the FIFO pinned at the start.
#[test]
fn a_fifo_swapped_for_a_link_mid_run_is_not_followed() {
    require_bpf!();
    let s = scene(0o1777);
    let fifo = s.open.join("out.folded");
    run_as_nobody(&["mkfifo", fifo.to_str().unwrap()]);
    let moved = s.open.join("moved");
    let mut swap = as_nobody(&[
        "sh",
        "-c",
        &format!(
            "sleep 1; mv {f} {m} && ln -s {v} {f}; cat {m} > {m}.read",
            f = fifo.display(),
            m = moved.display(),
            v = s.victim.display()
        ),
    ])
    .spawn()
    .unwrap();
    // Something to sample (an idle machine may give no stack at all).
    let _load = crate::common::Workload::start("mix", 6.0, &[]);
    let out = profile(&["-f", "-o", fifo.to_str().unwrap(), "3"]);
    swap.wait().unwrap();
    assert!(out.status.success(), "{}", err(&out));
    assert_eq!(fs::read(&s.victim).unwrap(), VICTIM);
    let got = fs::read_to_string(s.open.join("moved.read")).unwrap();
    assert!(
        got.lines().count() > 0 && got.lines().all(|l| l.rsplit_once(' ').is_some()),
        "{got}"
    );
}
