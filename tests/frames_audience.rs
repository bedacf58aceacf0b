//! Frames for an audience (issues 15 and 28), measured on real whole-system
//! recordings (0.5 s intervals, 199 Hz, made on the development machine):
//!
//! - tests/data/phased.rsprof: one program after another on a quiet
//!   machine (Debian's xz -9, then python3, then a gcc loop, then sort).
//! - tests/data/busy-phased.rsprof: a busy machine (scripts/bench-busy.sh's
//!   load: a node JIT, xz -9, a gcc loop, a shell spawning short
//!   processes), 32 s, with python3 busy from 9 to 19 s and sort from 19 to
//!   29 s on top: four busy programs at once that change phase.
//!
//! The frames `render` would draw are laid out with the library (the same
//! frame maker and geometry) and measured: how many bar heights the video
//! uses, how much of each frame the bars cover, and how far a process's
//! bar moves between frames.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use rs_profile::output::frames::geometry;
use rs_profile::output::frames::layout::{self, Canvas};
use rs_profile::output::frames::palette::{self, Look};
use rs_profile::output::frames::{Frame, FrameMaker};
use rs_profile::output::StackFormat;
use rs_profile::profile::modes::FrameMode;
use rs_profile::profile::Profile;
use rs_profile::recording::RecordingReader;

const PHASED: &str = "phased.rsprof";
const BUSY: &str = "busy-phased.rsprof";

fn intervals_of(name: &str) -> Vec<Profile> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let mut r = RecordingReader::open(&p).unwrap();
    let mut v = Vec::new();
    while let Some(p) = r.next_interval() {
        v.push(p);
    }
    assert!(v.len() >= 30, "{} intervals", v.len());
    v
}

fn frames(mode: FrameMode, canvas: Canvas, two_pass: bool) -> Vec<Frame> {
    frames_of(PHASED, mode, canvas, two_pass)
}

fn frames_of(name: &str, mode: FrameMode, canvas: Canvas, two_pass: bool) -> Vec<Frame> {
    let all = intervals_of(name);
    let mut maker = FrameMaker::new(mode, canvas, StackFormat::default(), "all".into(), 0)
        .styled(String::new(), Look::default());
    if two_pass {
        maker.prime(all.clone().into_iter());
    }
    all.iter().map(|p| maker.make(p)).collect()
}

/// (share of the canvas covered by bars, depth-1 bar centres by name).
fn measure(f: &Frame, canvas: Canvas) -> (f64, HashMap<String, f64>) {
    let placed = geometry::place(
        &f.tree,
        canvas,
        &f.fit,
        layout::min_width_percent(canvas.width),
    );
    let mut area = 0.0;
    let mut centres = HashMap::new();
    for p in &placed {
        let [x1, y1, x2, y2] = p.rect;
        area += f64::from((x2 - x1) * (y2 - y1));
        if p.depth == 1 {
            centres.insert(p.name.to_string(), f64::from(x1 + x2) / 2.0);
        }
    }
    (area / f64::from(canvas.width * canvas.height), centres)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn check(mode: FrameMode, two_pass: bool) -> (usize, f64, f64) {
    let canvas = Canvas::default();
    let fs = frames(mode, canvas, two_pass);
    let heights: BTreeSet<usize> = fs.iter().map(|f| f.fit.frame_height).collect();
    let mut coverage = 0.0;
    let mut moves = Vec::new();
    let mut last: Option<HashMap<String, f64>> = None;
    for f in &fs {
        let (c, centres) = measure(f, canvas);
        coverage += c;
        if let Some(prev) = &last {
            for (name, x) in &centres {
                if let Some(px) = prev.get(name) {
                    moves.push((x - px).abs());
                }
            }
        }
        last = Some(centres);
    }
    let coverage = coverage / fs.len() as f64;
    let moved = median(moves);
    eprintln!(
        "{mode:?} two-pass {two_pass}: bar heights {heights:?}, coverage {:.0}%, median move {moved:.1} px",
        100.0 * coverage
    );
    (heights.len(), coverage, moved)
}

/// The recording as if sampled at `hz` instead of its 199 Hz: each sample
/// kept with probability hz / 199 (a fixed-seed generator, so the figures
/// are the same at every run).
fn thinned(all: &[Profile], hz: u64) -> Vec<Profile> {
    let p = hz as f64 / 199.0;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    all.iter()
        .map(|prof| {
            let mut out = prof.clone();
            let mut keys: Vec<_> = prof.counts.iter().collect();
            keys.sort();
            out.counts.clear();
            for (k, n) in keys {
                let kept = (0..*n).filter(|_| uniform() < p).count() as u64;
                if kept > 0 {
                    out.counts.insert(k.clone(), kept);
                }
            }
            out
        })
        .collect()
}

/// Median and 90th percentile of how far a process's bar moves between
/// frames of recording `name` at `hz` in `mode`, at 1080p: in a live video
/// (`-o talk.mp4`: one pass, frames as they come), or in `render`
/// (`two_pass`: order and depth from a first pass over the whole
/// recording).
fn moves_at(name: &str, hz: u64, mode: FrameMode, two_pass: bool) -> (f64, f64) {
    let canvas = Canvas::default();
    let all = thinned(&intervals_of(name), hz);
    let mut maker = FrameMaker::new(mode, canvas, StackFormat::default(), "all".into(), 0)
        .styled(String::new(), Look::default());
    if two_pass {
        maker.prime(all.clone().into_iter());
    }
    let mut moves = Vec::new();
    let mut last: Option<HashMap<String, f64>> = None;
    for p in &all {
        let (_, centres) = measure(&maker.make(p), canvas);
        if let Some(prev) = &last {
            for (name, x) in &centres {
                if let Some(px) = prev.get(name) {
                    moves.push((x - px).abs());
                }
            }
        }
        last = Some(centres);
    }
    let p90 = {
        let mut v = moves.clone();
        v.sort_by(f64::total_cmp);
        v[v.len() * 9 / 10]
    };
    (median(moves), p90)
}

/// How the defaults for videos were chosen (issue 28): the talk command's
/// old defaults (49 Hz, one interval a frame) moved bars a median ~100 px
/// (p90 ~340 px on the busy recording: bars of concurrent programs swapped
/// places); these are the figures for each rate and mode on both
/// recordings (printed with --nocapture). The defaults must keep the
/// median under 30 px on both, live and in `render`, and nine moves in ten
/// under 120 px on the busy machine. On the quiet phased recording the
/// 90th percentile stays over 200 px whatever the settings: each phase
/// replaces the one program on screen by the next within a window, and a
/// bar that loses a quarter of the frame in one step moves 240 px however
/// it is placed; those moves are a fifth of that recording's.
#[test]
fn video_defaults_keep_bars_still() {
    use rs_profile::cli::{default_frame_mode, DEFAULT_VIDEO_FREQUENCY};
    for name in [PHASED, BUSY] {
        for hz in [49, 99, 199] {
            for mode in [
                FrameMode::Interval,
                FrameMode::Window(2),
                FrameMode::Window(4),
                FrameMode::Decay(0.5),
            ] {
                let (median, p90) = moves_at(name, hz, mode, false);
                let (rm, rp) = moves_at(name, hz, mode, true);
                eprintln!("{name} {hz} Hz, {mode}: live median move {median:.1} px, p90 {p90:.1} px; render {rm:.1}, {rp:.1}");
            }
        }
    }
    // The recordings' intervals are 0.5 s, as the README's talk command.
    let mode = default_frame_mode(0.5);
    assert_eq!(mode, FrameMode::Window(4));
    for two_pass in [false, true] {
        for name in [PHASED, BUSY] {
            let (median, p90) = moves_at(name, DEFAULT_VIDEO_FREQUENCY, mode, two_pass);
            assert!(
                median < 30.0,
                "{name}, default (render {two_pass}): median move {median:.1} px, p90 {p90:.1}"
            );
            if name == BUSY {
                assert!(
                    p90 < 120.0,
                    "{name}, default (render {two_pass}): p90 move {p90:.1} px"
                );
            }
        }
    }
    // The old default was not still: the measurement can tell.
    let (median, p90) = moves_at(BUSY, 49, FrameMode::Interval, false);
    assert!(
        median > 30.0 && p90 > 120.0,
        "49 Hz, interval: median {median:.1} px, p90 {p90:.1}"
    );
}

#[test]
fn render_locks_the_layout_fills_the_frame_and_keeps_bars_still() {
    for mode in [
        FrameMode::Interval,
        FrameMode::Window(4),
        FrameMode::Decay(0.5),
    ] {
        let (heights, coverage, moved) = check(mode, true);
        assert_eq!(heights, 1, "{mode:?}: one layout for the whole render");
        assert!(coverage >= 0.40, "{mode:?}: bars cover {coverage:.2}");
        assert!(moved < 30.0, "{mode:?}: median move {moved} px");
    }
}

/// A live run keeps its bar height once it has grown (issue 28: a live
/// run went 53 -> 35 -> 27 px in 60 frames): on both recordings, one
/// interval a frame and at the default window, the height changes at most
/// once and never shrinks back (that waits for a long calm).
#[test]
fn live_frames_keep_their_bar_height_once_grown() {
    for name in [PHASED, BUSY] {
        for mode in [FrameMode::Interval, FrameMode::Window(4)] {
            let fs = frames_of(name, mode, Canvas::default(), false);
            let h: Vec<usize> = fs.iter().map(|f| f.fit.frame_height).collect();
            let changes = h.windows(2).filter(|w| w[0] != w[1]).count();
            let regrown = h.windows(2).any(|w| w[1] > w[0]);
            assert!(changes <= 1 && !regrown, "{name} {mode:?}: heights {h:?}");
        }
    }
    let (_, coverage, moved) = check(FrameMode::Interval, false);
    assert!(coverage >= 0.40, "bars cover {coverage:.2}");
    assert!(moved < 30.0, "median move {moved} px");
}

/// Every size scales as a whole (issue 28): a 4K frame is the 1080p frame
/// doubled (bar height, labels, header, depth shown), 720p two thirds of it.
#[test]
fn every_size_is_the_same_frame_scaled() {
    for two_pass in [true, false] {
        let base = frames(FrameMode::Window(4), Canvas::default(), two_pass);
        for (height, k) in [(2160u32, 2.0), (720, 2.0 / 3.0)] {
            let canvas = Canvas {
                width: height * 16 / 9,
                height,
            };
            let scaled = frames(FrameMode::Window(4), canvas, two_pass);
            for (a, b) in base.iter().zip(&scaled) {
                let want = a.fit.frame_height as f64 * k;
                assert!(
                    (b.fit.frame_height as f64 - want).abs() <= 1.0,
                    "{height}p: bars {} px, 1080p {} px",
                    b.fit.frame_height,
                    a.fit.frame_height
                );
                assert_eq!(
                    a.fit.depth_cap, b.fit.depth_cap,
                    "{height}p shows the same depth"
                );
                assert!((b.fit.font_size as f64 - a.fit.font_size as f64 * k).abs() <= 1.0);
            }
            let (ha, hb) = (
                layout::Scale::of(Canvas::default()).header,
                layout::Scale::of(canvas).header,
            );
            assert!((f64::from(hb) - f64::from(ha) * k).abs() <= 1.0);
        }
    }
}

#[test]
fn labels_scale_with_the_canvas() {
    for (height, min_font) in [(1080, 16), (2160, 32)] {
        let canvas = Canvas {
            width: height * 16 / 9,
            height,
        };
        for f in frames(FrameMode::Interval, canvas, true) {
            assert!(f.fit.font_size >= min_font, "{height}p: {:?}", f.fit);
        }
    }
}

#[test]
fn a_rare_tower_does_not_collapse_the_layout() {
    use rs_profile::profile::{Frame as F, Profile, Stack, StackKey};
    // One sample of a 127-frame [unknown] tower beside 47 ordinary ones.
    let key = |frames: Vec<F>| StackKey {
        comm: "c".into(),
        pid: 1,
        user: Stack::Frames(frames),
        kernel: Stack::Absent,
    };
    let mut p = Profile::default();
    p.add(
        key(vec![F::named("leaf"), F::named("work"), F::named("main")]),
        47,
    );
    let unknown = F::named("[unknown]");
    p.add(key(vec![unknown; 127]), 1);
    let mut maker = FrameMaker::new(
        FrameMode::Interval,
        Canvas::default(),
        StackFormat::default(),
        "all".into(),
        0,
    );
    let f = maker.make(&p);
    assert!(
        f.fit.font_size >= 16 && f.fit.depth_cap.is_none(),
        "{:?}",
        f.fit
    );
    let lines = f.lines();
    assert!(
        lines.contains(&"c;[unknown] \u{d7}127 1".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"c;main;work;leaf 47".to_string()),
        "{lines:?}"
    );
}

#[test]
fn colours_per_mode() {
    // comm: one colour per process, stable across frames; diff: red grew.
    assert_eq!(
        palette::comm_color("xz", None),
        palette::comm_color("xz", None)
    );
    assert_ne!(
        palette::comm_color("xz", None),
        palette::comm_color("python3", None)
    );
    let [r, g, b] = palette::diff_color(10.0);
    assert!(r == 255 && g < 80 && b < 80);
    let [r, g, b] = palette::diff_color(-10.0);
    assert!(b == 255 && r < 80 && g < 120);
    assert_eq!(palette::diff_color(0.0), [232, 232, 232]);
    let [r, g, _] = palette::kernel_color("do_syscall_64_[k]");
    assert!(r >= 200 && g >= 120);
    let [r, g, _] = palette::kernel_color("LazyCompile:*fib_[j]");
    assert!(g >= 170 && r <= 110, "JIT is green");
    let [r, g, _] = palette::kernel_color("main");
    assert!(r >= 200 && g <= 100, "user is red");
}

/// A frame with more distinct frames than a namer keeps (a JIT service, a
/// busy machine) is drawn whole, again and again: the namer starts afresh
/// only between two trees (it once did so in the middle of one, and the
/// tree's names pointed past its end).
#[test]
fn a_frame_with_more_names_than_a_namer_keeps_is_drawn() {
    use rs_profile::profile::{Frame, FrameInfo, Stack, StackKey};
    let mut p = Profile::default();
    let n = 70_000u64;
    for i in 0..n {
        let f = Frame::new(FrameInfo {
            name: format!("jit_fn_{i}").into(),
            module: None,
            offset: None,
            addr: Some(0x1000 + i),
            source: None,
            mapping: None,
        });
        p.add(
            StackKey {
                comm: "node".into(),
                pid: 1,
                user: Stack::Frames(vec![f]),
                kernel: Stack::Absent,
            },
            1,
        );
    }
    let mut maker = FrameMaker::new(
        FrameMode::Interval,
        Canvas::default(),
        StackFormat::default(),
        "all".into(),
        0,
    );
    for _ in 0..3 {
        assert_eq!(maker.make(&p).tree.total(), n);
    }
}
