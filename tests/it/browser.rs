//! The live page in headless Chromium (Debian's chromium, driven by
//! playwright-core from tests/browser): it updates, zooms on click, and
//! draws something.

use std::path::Path;
use std::process::Command;

use crate::common::{require_bpf, Workload};
use crate::feed::Feed;

/// Whether the browser test can run; like BPF, required under CI.
fn browser_available() -> bool {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let ok = Path::new("/usr/bin/chromium").exists()
        && dir.join("node_modules/playwright-core").exists()
        && Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok {
        let required = std::env::var_os("RS_PROFILE_REQUIRE_BPF").is_some()
            || std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !required,
            "chromium, node or tests/browser/node_modules missing (scripts/install-deps.sh)"
        );
        eprintln!("browser test: chromium or playwright-core missing, skipping");
    }
    ok
}

#[test]
fn the_page_updates_zooms_and_draws() {
    require_bpf!();
    if !browser_available() {
        return;
    }
    let w = Workload::start("mix", 20.0, &[]);
    let feed = Feed::start(&["-p", &w.pid.to_string(), "--interval", "0.5", "-f", "15"]);
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("page.png");
    let v = run_page_script("feed.mjs", feed.port, &shot);
    assert!(v["shown"].as_u64().unwrap() >= 2, "{v}");
    assert_eq!(v["zoomed"], true, "{v}");
    assert_eq!(v["frame"], "alpha", "{v}");
    assert!(
        v["details"].as_str().unwrap().starts_with("alpha — "),
        "{v}"
    );

    // The screenshot is not blank: many colours, and flame-graph warm ones.
    let (_, _, rgb) = read_png(&shot);
    let mut colours = std::collections::HashSet::new();
    let mut warm = 0;
    for px in rgb.chunks_exact(3) {
        colours.insert((px[0], px[1], px[2]));
        if px[0] > 180 && px[2] < 100 {
            warm += 1;
        }
    }
    assert!(colours.len() > 20, "{} colours", colours.len());
    assert!(warm > 10_000, "{warm} warm pixels");
    drop(feed);
}

/// The page as a speaker uses it (issue 16): zoom and search survive live
/// updates, the keyboard steps the timeline with the header following, a
/// drag merges a range, stage mode has no controls and screen-sized
/// labels, and the end of the run keeps the last graph with a badge.
#[test]
fn the_page_is_ready_for_a_stage() {
    require_bpf!();
    if !browser_available() {
        return;
    }
    let w = Workload::start("mix", 40.0, &[]);
    let feed = Feed::start(&["-p", &w.pid.to_string(), "--interval", "0.5", "-f", "25"]);
    let dir = tempfile::tempdir().unwrap();
    let v = run_page_script("stage.mjs", feed.port, dir.path());
    // Stage mode: no control visible, labels of at least 14 px at 1280x720,
    // a dark background.
    assert_eq!(v["stage_controls_visible"], false, "{v}");
    assert!(v["stage_label_px"].as_f64().unwrap() >= 14.0, "{v}");
    let (w_px, _, px) = read_png(&dir.path().join("stage.png"));
    let corner = &px[..3];
    assert!(corner.iter().all(|c| *c < 48), "background {corner:?}");
    let bottom_right = &px[px.len() - w_px * 3..][..3];
    assert!(bottom_right.iter().all(|c| *c < 48), "{bottom_right:?}");
    // Zoom while live, kept across three updates.
    assert!(
        v["zoom_path"].as_str().unwrap().ends_with(";driver;alpha"),
        "{v}"
    );
    assert_eq!(v["zoom_after_updates"]["unzoom_shown"], true, "{v}");
    assert!(
        v["zoom_after_updates"]["alpha_width_pct"].as_f64().unwrap() > 99.9,
        "{v}"
    );
    // Search kept across two updates.
    assert!(v["search_after_updates"].as_u64().unwrap() >= 1, "{v}");
    // Space pauses; two steps back, and the header says what is shown.
    assert_eq!(v["paused_status"], "paused", "{v}");
    let step = &v["step"];
    assert_eq!(step["header_time"], step["want_time"], "{v}");
    assert_eq!(
        step["header_idx"].as_str().unwrap(),
        step["index"].to_string(),
        "{v}"
    );
    // A drag merges a range.
    assert!(v["range"]["index"].as_str().unwrap().contains('-'), "{v}");
    assert!(
        v["range"]["header_idx"]
            .as_str()
            .unwrap()
            .ends_with("merged"),
        "{v}"
    );
    // The run ended: the last graph stays, with its badge.
    assert!(v["after_end"]["bars"].as_u64().unwrap() >= 5, "{v}");
    assert_eq!(v["after_end"]["badge"], "block", "{v}");
    assert_eq!(v["after_end"]["status"], "run ended", "{v}");
    let (_, _, px) = read_png(&dir.path().join("ended.png"));
    let warm = px
        .chunks_exact(3)
        .filter(|p| p[0] > 180 && p[2] < 100)
        .count();
    assert!(warm > 10_000, "the last graph is gone: {warm} warm pixels");
    drop(feed);
}

/// Runs `node tests/browser/SCRIPT URL ARG` against the feed on `port` and
/// returns the one JSON line it prints.
fn run_page_script(script: &str, port: u16, arg: &Path) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser")
        .join(script);
    let out = Command::new("node")
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}/"))
        .arg(arg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

/// (width, height, RGB pixels) of a PNG screenshot.
fn read_png(path: &Path) -> (usize, usize, Vec<u8>) {
    let (info, buf) = crate::common::read_png(path);
    let ch = info.color_type.samples();
    let rgb: Vec<u8> = buf
        .chunks_exact(ch)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    (info.width as usize, info.height as usize, rgb)
}

#[test]
fn the_page_follows_a_profiler_restarted_on_its_port() {
    require_bpf!();
    if !browser_available() {
        return;
    }
    use std::io::BufRead;
    let w = Workload::start("mix", 30.0, &[]);
    let pid = w.pid.to_string();
    let args = ["-p", pid.as_str(), "--interval", "0.5", "-f", "4"];
    let first = Feed::start(&args);
    let port = first.port;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/reconnect.mjs");
    let mut node = Command::new("node")
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}/"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(node.stdout.take().unwrap()).lines();
    let ended = lines.next().expect("a line").unwrap();
    assert_eq!(ended, "ended");
    let (ok, _, err) = first.wait();
    assert!(ok, "{err}");
    // The same port, a new run: the page picks it up by itself.
    let second = Feed::start_on(port, &["-p", pid.as_str(), "--interval", "0.5", "-f", "20"]);
    let verdict = lines.next().expect("a verdict").unwrap();
    let status = node.wait().unwrap();
    assert!(status.success(), "{verdict}");
    let v: serde_json::Value = serde_json::from_str(&verdict).unwrap();
    assert_ne!(v["first"], v["second"], "{v}");
    assert!(v["shown"].as_u64().unwrap() >= 1, "{v}");
    drop(second);
}

/// A child that spins until killed: killed when the test ends, whether it
/// passes or fails (a spinning leftover would load every later test).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A program whose stacks are 60 functions deep (`level_59` down to
/// `level_0`, then a spin), built with frame pointers.
fn deep_program(dir: &Path) -> std::path::PathBuf {
    let mut src = String::from(
        "#include <stdio.h>\n#include <unistd.h>\n\
         __attribute__((noinline)) void spin(volatile long *x) { for (;;) x[0]++; }\n",
    );
    src.push_str("__attribute__((noinline)) void level_0(volatile long *x) { spin(x); x[1]++; }\n");
    for i in 1..60 {
        src.push_str(&format!(
            "__attribute__((noinline)) void level_{i}(volatile long *x) {{ level_{}(x); x[1]++; }}\n",
            i - 1
        ));
    }
    // alarm: gone within two minutes even if the test is killed.
    src.push_str(
        "int main(void) { static volatile long x[2]; alarm(120); level_59(x); return 0; }\n",
    );
    let c = dir.join("deep.c");
    std::fs::write(&c, src).unwrap();
    let bin = dir.join("deep");
    let ok = Command::new("gcc")
        .args([
            "-O1",
            "-fno-omit-frame-pointer",
            "-fno-optimize-sibling-calls",
            "-o",
        ])
        .arg(&bin)
        .arg(&c)
        .status()
        .unwrap()
        .success();
    assert!(ok, "gcc failed");
    bin
}

/// The page on any stage (issue 29): at 720p, 1080p and 4K, light and
/// dark, with and without controls, a 60-deep graph fits the window with
/// its root on screen, labels of 14 px or more cut on the right, 4K is
/// 1080p doubled; the table's self column sums to the graph's total; the
/// search shows its share; the URL restores interval, zoom, search and view.
#[test]
fn the_page_fits_any_stage_and_keeps_its_view_in_the_url() {
    require_bpf!();
    if !browser_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = deep_program(dir.path());
    let child = KillOnDrop(Command::new(&bin).spawn().unwrap());
    let pid = child.0.id().to_string();
    let feed = Feed::start(&["-p", &pid, "--interval", "0.5", "-f", "30"]);
    let v = run_page_script("sizes.mjs", feed.port, dir.path());
    drop(child);
    let sizes = v["sizes"].as_array().unwrap();
    assert_eq!(sizes.len(), 6, "{v}");
    let mut bar = std::collections::HashMap::new();
    for s in sizes {
        let l = &s["layout"];
        let what = s["size"].as_str().unwrap();
        let root = l["root"]
            .as_array()
            .unwrap_or_else(|| panic!("no root bar: {s}"));
        let (y, h) = (root[1].as_f64().unwrap(), root[3].as_f64().unwrap());
        let c = s["canvas"].as_array().unwrap();
        let ch = c[3].as_f64().unwrap();
        assert!(
            y >= 0.0 && y + h <= ch,
            "{what}: root bar off the graph: {s}"
        );
        let vp = s["viewport"].as_array().unwrap();
        assert!(
            c[1].as_f64().unwrap() + ch <= vp[1].as_f64().unwrap() + 1.0,
            "{what}: graph below the window: {s}"
        );
        assert!(l["font"].as_f64().unwrap() >= 14.0, "{what}: {s}");
        assert!(s["labels"].as_u64().unwrap() >= 10, "{what}: {s}");
        assert_eq!(s["dotted"], 0, "{what}: labels cut from the left: {s}");
        assert_eq!(s["badcut"], 0, "{what}: {s}");
        // Every level is drawn, or the graph is cut under "[+ deeper]"
        // (at 720p, 60 levels never fit).
        let whole = s["deepest"] == s["graph_depth"];
        let cut = l["deeper"].as_u64().unwrap() >= 1;
        assert!(whole || cut, "{what}: levels lost without a cut: {s}");
        if what.starts_with("1280x720") {
            assert!(cut, "{what}: {s}");
        }
        bar.insert(what.to_string(), l["bar"].as_f64().unwrap());
    }
    assert_eq!(
        bar["3840x2160 chrome=0&theme=dark"],
        2.0 * bar["1920x1080 chrome=0&theme=dark"],
        "4K is 1080p doubled: {bar:?}"
    );
    // The table's self column is every sample once.
    assert_eq!(v["table"]["self_sum"], v["table"]["total"], "{v}");
    assert!(v["table"]["shown_rows"].as_u64().unwrap() >= 30, "{v}");
    // The search's share, as the page says it.
    let share = v["search"]["share"].as_f64().unwrap();
    assert!(share > 0.9, "{v}");
    assert_eq!(
        v["search"]["text"].as_str().unwrap(),
        format!("matched {:.1}%", share * 100.0),
        "{v}"
    );
    // The URL gives back the view.
    let (before, after) = (&v["url"]["before"], &v["url"]["after"]);
    assert!(before["hash"].as_str().unwrap().contains("z="), "{v}");
    assert_eq!(before["index"], after["index"], "{v}");
    assert_eq!(before["zoom"], after["zoom"], "{v}");
    assert_ne!(after["zoom"], 0, "{v}");
    assert_eq!(before["search"], after["search"], "{v}");
    assert_eq!(after["view"], "table", "{v}");
    // The sandwich of level_50: its callers above (level_51 up to the
    // process), its callees below (level_49 down), its total the table's.
    let sw = &v["sandwich"];
    assert_eq!(sw["sandwich"], "level_50", "{v}");
    assert_eq!(sw["function_total"], sw["table_total"], "{v}");
    let names = |k: &str| -> Vec<String> {
        sw[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    };
    assert!(names("callers").contains(&"level_51".to_string()), "{v}");
    assert_eq!(names("callers")[0], "level_51", "{v}");
    assert!(names("callees").contains(&"level_49".to_string()), "{v}");
    assert!(!names("callees").contains(&"level_51".to_string()), "{v}");
    assert!(sw["hash"].as_str().unwrap().contains("s=level_50"), "{v}");
    drop(feed);
}

/// `profile serve rec.rsprof` (issue 29): the page of a recording, served
/// without root; a drag over the whole timeline gives a graph of every
/// sample the recording holds.
#[test]
fn a_recording_is_served_on_the_page_without_root() {
    require_bpf!();
    if !browser_available() {
        return;
    }
    let w = Workload::start("mix", 10.0, &[]);
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("talk.rsprof");
    let pid = w.pid.to_string();
    crate::common::profile_ok(&[
        "record",
        "-p",
        &pid,
        "--interval",
        "0.5",
        "-F",
        "199",
        "-o",
        rec.to_str().unwrap(),
        "3",
    ]);
    // Readable by nobody, who serves it.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&rec, std::fs::Permissions::from_mode(0o644)).unwrap();
    let port = crate::feed::free_port();
    let mut server = crate::common::as_nobody(env!("CARGO_BIN_EXE_profile"))
        .args(["serve", "-R", &port.to_string()])
        .arg(&rec)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "profile serve never listened"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let v = run_page_script("serve.mjs", port, dir.path());
    // Ctrl-C ends it cleanly.
    unsafe { libc::kill(server.id() as i32, libc::SIGINT) };
    let status = server.wait().unwrap();
    let mut err = String::new();
    use std::io::Read;
    server
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{err}");
    assert!(err.contains("serving"), "{err}");
    let n = v["intervals"].as_u64().unwrap();
    assert!((5..=7).contains(&n), "{v}");
    assert_eq!(v["range"].as_str().unwrap(), format!("0-{}", n - 1), "{v}");
    assert_eq!(v["range_total"], v["samples"], "{v}");
    assert!(v["samples"].as_u64().unwrap() > 100, "{v}");
}

/// The heat map (issue 29, FlameScope's view): with 0.2 s intervals a
/// column per second has five rows; a drag from a cell to one in a later
/// second shows a graph of exactly the samples of the intervals between.
#[test]
fn a_heat_map_drag_selects_intervals_across_seconds() {
    require_bpf!();
    if !browser_available() {
        return;
    }
    let w = Workload::start("mix", 30.0, &[]);
    let feed = Feed::start(&["-p", &w.pid.to_string(), "--interval", "0.2", "-f", "20"]);
    let dir = tempfile::tempdir().unwrap();
    let v = run_page_script("heat.mjs", feed.port, dir.path());
    // Five intervals a second (a loaded machine cuts some late: then a
    // second holds fewer, the next more).
    let rows = v["rows"].as_u64().unwrap();
    assert!((3..=8).contains(&rows), "{v}");
    assert!(v["cols"].as_u64().unwrap() >= 3, "{v}");
    // Across seconds: the two cells are in different columns.
    assert!(v["cells_x"][1].as_f64() > v["cells_x"][0].as_f64(), "{v}");
    assert_eq!(v["range"][0], v["a"], "{v}");
    assert_eq!(v["range"][1], v["b"], "{v}");
    assert_eq!(v["total"], v["want"], "{v}");
    assert!(v["want"].as_u64().unwrap() > 0, "{v}");
    assert!(v["hash"].as_str().unwrap().contains("h=1"), "{v}");
    drop(feed);
}

/// The differential view (issue 29): against a baseline taken while the
/// workload ran alpha, a later interval shows beta red (grew)
/// and alpha blue (shrank), with a legend, and the URL keeps the baseline.
#[test]
fn the_page_compares_a_view_with_a_baseline() {
    require_bpf!();
    if !browser_available() {
        return;
    }
    // 8 s of each phase: room for a slow start and a slow browser.
    let w = Workload::start("switch", 16.0, &[]);
    let feed = Feed::start(&[
        "-p",
        &w.pid.to_string(),
        "--interval",
        "0.5",
        "--frame-mode",
        "interval",
        "-f",
        "17",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let v = run_page_script("diff.mjs", feed.port, dir.path());
    let red = |c: &serde_json::Value| c[0].as_u64() > c[2].as_u64();
    let blue = |c: &serde_json::Value| c[2].as_u64() > c[0].as_u64();
    assert!(v["beta"]["delta"].as_f64().unwrap() > 5.0, "{v}");
    assert!(red(&v["beta"]["rgb"]), "{v}");
    if !v["alpha"].is_null() {
        assert!(v["alpha"]["delta"].as_f64().unwrap() < 0.0, "{v}");
        assert!(blue(&v["alpha"]["rgb"]), "{v}");
    }
    let legend = v["legend"].as_str().unwrap();
    assert!(legend.contains("grew") && legend.contains("shrank"), "{v}");
    let base = v["base"].as_str().unwrap();
    assert!(legend.contains(&format!("vs {base}")), "{v}");
    assert!(
        v["hash"].as_str().unwrap().contains(&format!("c={base}")),
        "{v}"
    );
    drop(feed);
}
