//! Flame-graph frames (-E / -g) and make_video.sh, end to end.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::{self, frames_in, profile, profile_ok, read_png, require_bpf, Workload};

fn decode(path: &Path) -> (u32, u32, Vec<u8>) {
    let (info, buf) = read_png(path);
    // Opaque frames are written as RGBA straight from the canvas (no
    // conversion pass): every pixel's alpha is 255. Returned as RGB.
    assert_eq!(info.color_type, png::ColorType::Rgba);
    assert!(
        buf.chunks_exact(4).all(|p| p[3] == 255),
        "a transparent pixel"
    );
    let rgb = buf
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    (info.width, info.height, rgb)
}

#[test]
fn one_png_per_interval_all_the_same_size() {
    require_bpf!();
    let w = Workload::start("mix", 5.0, &[]);
    let dir = tempfile::tempdir().unwrap();
    let pattern = format!("{}/out/fg%04d.png", dir.path().display());
    let out = profile(&[
        "-U",
        "-F",
        "199",
        "-p",
        &w.pid.to_string(),
        "-g",
        &pattern,
        "--interval",
        "0.5",
        "--width",
        "960",
        "--height",
        "540",
        "3",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frames = frames_in(&dir.path().join("out"), "png");
    assert!(
        (5..=7).contains(&frames.len()),
        "{} frames for 3 s / 0.5 s",
        frames.len()
    );
    assert_eq!(frames[0].file_name().unwrap(), "fg0000.png");
    let mut colours = Vec::new();
    for f in &frames {
        let (width, height, rgb) = decode(f);
        assert_eq!((width, height), (960, 540), "{}", f.display());
        // The leaf row: all, comm, __libc_start_call_main, main, driver,
        // alpha|beta: level 5 from the bottom. inferno pads 2*font+10 below
        // (font 13 for shallow graphs) and bars are 18 px.
        let y = height as usize - (2 * 13 + 10) - 5 * 18 - 9;
        let x = (width as f64 * 0.3) as usize;
        let i = (y * width as usize + x) * 3;
        colours.push([rgb[i], rgb[i + 1], rgb[i + 2]]);
    }
    // alpha's bar: the same colour in every frame, and a warm one (not the
    // background).
    let first = colours[1];
    assert!(first[0] > 150 && first != [0xf8, 0xf8, 0xf8], "{first:?}");
    for c in &colours[1..colours.len() - 1] {
        assert_eq!(*c, first, "alpha's colour changed: {colours:?}");
    }
    // No temporary files left behind.
    let leftovers: Vec<_> = fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// `total_samples="N"` of an inferno SVG frame (0 for a "no samples" frame).
fn svg_samples(svg: &str) -> u64 {
    svg.split("total_samples=\"")
        .nth(1)
        .map(|r| r.split('"').next().unwrap().parse().unwrap())
        .unwrap_or(0)
}

#[test]
fn frames_account_for_every_sample_and_follow_the_workload() {
    require_bpf!();
    let w = Workload::start("switch", 4.0, &[]);
    let dir = tempfile::tempdir().unwrap();
    let pattern = format!("{}/fg%03d.svg", dir.path().display());
    let out = profile(&[
        "-U",
        "-F",
        "199",
        "--stats",
        "-p",
        &w.pid.to_string(),
        "-g",
        &pattern,
        "--interval",
        "0.5",
        // One interval a frame (the default shows the last 2 s).
        "--frame-mode",
        "interval",
        "-f",
        "4",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = common::stats(&String::from_utf8_lossy(&out.stderr));
    let frames = frames_in(dir.path(), "svg");
    assert_eq!(frames.len() as u64, stats["intervals"]);
    let svgs: Vec<String> = frames
        .iter()
        .map(|f| fs::read_to_string(f).unwrap())
        .collect();
    let drawn: u64 = svgs.iter().map(|s| svg_samples(s)).sum();
    assert_eq!(drawn, stats["counted"], "samples drawn vs counted");
    assert_eq!(stats["samples taken"], stats["counted"] + stats["lost"]);
    // The folded report at the end holds the same samples.
    let folded: u64 = common::folded(&String::from_utf8_lossy(&out.stdout))
        .iter()
        .map(|(_, n)| n)
        .sum();
    assert_eq!(folded, drawn);
    // alpha for the first half, beta for the second.
    let has = |s: &str, f: &str| s.contains(&format!("<title>{f} ("));
    assert!(has(&svgs[1], "alpha") && !has(&svgs[1], "beta"), "frame 1");
    let late = &svgs[svgs.len() - 2];
    assert!(
        has(late, "beta") && !has(late, "alpha"),
        "frame {}",
        svgs.len() - 2
    );
}

#[test]
fn make_video_has_one_frame_per_png() {
    require_bpf!();
    let _w = Workload::start("mix", 4.0, &[]);
    let dir = tempfile::tempdir().unwrap();
    let pattern = format!("{}/fg%04d.png", dir.path().display());
    profile_ok(&[
        "-F",
        "99",
        "-g",
        &pattern,
        "--interval",
        "0.25",
        "--start-number",
        "1",
        "-f",
        "2",
    ]);
    let pngs = frames_in(dir.path(), "png").len();
    assert!(pngs >= 7, "{pngs} frames");
    let mp4 = dir.path().join("talk.mp4");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make_video.sh");
    let out = Command::new(&script)
        .arg(&pattern)
        .arg(&mp4)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
        ])
        .args(["stream=nb_read_frames,pix_fmt,codec_name", "-of", "csv=p=0"])
        .arg(&mp4)
        .output()
        .expect("ffprobe (ffmpeg) is needed");
    let probe = String::from_utf8_lossy(&probe.stdout);
    assert_eq!(probe.trim(), format!("h264,yuv420p,{pngs}"));
}

#[test]
fn bad_frame_options_are_refused_before_sampling() {
    // No BPF needed: these must fail before the sampler is loaded.
    let dir = tempfile::tempdir().unwrap();
    let check = |args: &[&str], want: &str| {
        let out = profile(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    };
    check(&["-g", "x/fg.png", "1"], "needs exactly one %d");
    check(&["-g", "x/fg%d_%d.png", "1"], "more than one frame number");
    check(&["-g", "x/fg%04d.gif", "1"], "must end in .png or .svg");
    check(
        &["-g", "/proc/rs-profile-frames/fg%04d.png", "1"],
        "cannot create the folder",
    );
    let existing = dir.path().join("fg0000.png");
    fs::write(&existing, b"earlier").unwrap();
    let pattern = format!("{}/fg%04d.png", dir.path().display());
    check(&["-g", &pattern, "1"], "use --overwrite");
    assert_eq!(fs::read(&existing).unwrap(), b"earlier");
}

#[test]
fn ctrl_c_finishes_frames_in_flight() {
    require_bpf!();
    let _w = Workload::start("mix", 8.0, &[]);
    let dir = tempfile::tempdir().unwrap();
    let pattern = format!("{}/fg%04d.png", dir.path().display());
    let child = Command::new(env!("CARGO_BIN_EXE_profile"))
        .args(["-g", &pattern, "--interval", "0.2", "-f"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Start-up (BPF load, fonts) can take a second on a loaded machine;
    // eight frames need 1.6 s after it.
    std::thread::sleep(Duration::from_millis(3000));
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    let pngs = frames_in(dir.path(), "png");
    assert!(pngs.len() >= 8, "{} frames", pngs.len());
    for p in pngs {
        decode(&p);
    }
    assert!(!out.stdout.is_empty(), "the report was not printed");
}

/// `-E -o talk.mp4`: the frames go straight into ffmpeg, one per interval,
/// at real-time speed (the video lasts as long as the run); the PNG frames
/// written beside them get a sidecar that make_video.sh takes its fps
/// from, so both videos agree.
#[test]
fn one_step_video_plays_in_real_time() {
    require_bpf!();
    let _w = Workload::start("mix", 8.0, &[]);
    let dir = tempfile::tempdir().unwrap();
    let pattern = format!("{}/fg%04d.png", dir.path().display());
    let mp4 = dir.path().join("talk.mp4");
    let out = crate::common::profile(&[
        "-F",
        "99",
        "-g",
        &pattern,
        "--interval",
        "0.5",
        "--theme",
        "dark",
        "--colors",
        "comm",
        "-o",
        mp4.to_str().unwrap(),
        "-f",
        "4",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // The video was made: no hint to make it.
    assert!(!err.contains("make the video"), "{err}");
    let probe = |file: &Path| -> (u64, String, f64) {
        let o = Command::new("ffprobe")
            .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
            .args([
                "-show_entries",
                "stream=nb_read_frames,r_frame_rate:format=duration",
            ])
            .args(["-of", "default=nw=1"])
            .arg(file)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("{k} in {text}"))
                .to_string()
        };
        (
            field("nb_read_frames").parse().unwrap(),
            field("r_frame_rate"),
            field("duration").parse().unwrap(),
        )
    };
    let (frames, rate, secs) = probe(&mp4);
    let pngs = frames_in(dir.path(), "png").len() as u64;
    assert_eq!(frames, pngs, "one video frame per interval");
    assert_eq!(rate, "2/1", "0.5 s intervals play at 2 fps");
    assert!((secs - 4.0).abs() <= 0.6, "{secs} s for a 4 s run");
    // The sidecar, and make_video.sh reading its fps.
    let side: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("fg.video.json")).unwrap())
            .unwrap();
    assert_eq!(side["fps"], 2.0);
    let again = dir.path().join("again.mp4");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make_video.sh");
    let o = Command::new(&script)
        .arg(&pattern)
        .arg(&again)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(probe(&again).1, "2/1");
    // make_video.sh refuses SVG patterns and unknown extensions.
    for (p, o) in [
        (pattern.replace(".png", ".svg"), "x.mp4"),
        (pattern.clone(), "x.avi"),
    ] {
        let r = Command::new(&script)
            .arg(&p)
            .arg(dir.path().join(o))
            .output()
            .unwrap();
        assert!(!r.status.success());
        assert_eq!(String::from_utf8_lossy(&r.stderr).lines().count(), 1);
    }
    // The dark theme: the frame's corner is dark.
    let (_, _, rgb) = decode(&frames_in(dir.path(), "png")[0]);
    assert!(rgb[..3].iter().all(|c| *c < 40), "{:?}", &rgb[..3]);
}

/// `--background transparent`: PNG frames with alpha, transparent outside
/// the bars and opaque on them.
#[test]
fn transparent_frames_have_alpha() {
    require_bpf!();
    let _w = Workload::start("mix", 5.0, &[]);
    let dir = tempfile::tempdir().unwrap();
    let pattern = format!("{}/fg%04d.png", dir.path().display());
    profile_ok(&[
        "-F",
        "99",
        "-g",
        &pattern,
        "--background",
        "transparent",
        "-f",
        "2",
    ]);
    let (info, buf) = read_png(&frames_in(dir.path(), "png")[0]);
    assert_eq!(info.color_type, png::ColorType::Rgba);
    let alphas: Vec<u8> = buf.chunks_exact(4).map(|p| p[3]).collect();
    assert_eq!(alphas[0], 0, "the corner is transparent");
    assert!(
        alphas.iter().filter(|a| **a == 255).count() > 10_000,
        "bars are opaque"
    );
}

/// On a terminal, a capture shows a one-line status (elapsed, interval,
/// rate, frames written and rendering), redrawn in place and cleared at
/// the end. `script` gives the profiler a terminal.
#[test]
fn a_capture_on_a_terminal_shows_its_status() {
    require_bpf!();
    let _w = Workload::start("mix", 5.0, &[]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tty.log");
    let cmd = format!(
        "{} -F 99 -g {}/f%04d.png --interval 0.5 -f 3 > /dev/null",
        env!("CARGO_BIN_EXE_profile"),
        dir.path().display()
    );
    let st = Command::new("script")
        .args(["-qec", &cmd])
        .arg(&log)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("script (util-linux) is needed");
    assert!(st.success());
    let text = String::from_utf8_lossy(&fs::read(&log).unwrap()).into_owned();
    let lines: Vec<&str> = text.split(['\r', '\n']).collect();
    let status: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("interval ") && l.contains("samples/s"))
        .collect();
    assert!(status.len() >= 3, "{text:?}");
    assert!(status.iter().any(|l| l.contains("written")), "{status:?}");
    assert!(text.contains("\u{1b}[2K"), "redrawn in place");
    assert!(text.contains("make the video: profile encode"), "{text:?}");
}
