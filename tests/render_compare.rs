//! The direct renderer against the SVG route (the reference), on the same
//! profiles: bar edges and colours agree on at least 99% of the pixels that
//! are not text, and every label the SVG route draws is drawn, at the same
//! place, truncated the same way (checked by layout, not by OCR).

use std::time::Duration;

use rs_profile::output::frames::geometry;
use rs_profile::output::frames::layout::{self, Canvas, FrameInfo};
use rs_profile::output::frames::raster::DirectRenderer;
use rs_profile::output::frames::svg::SvgRenderer;
use rs_profile::output::frames::tree::FlameTree;

/// A deterministic profile: `n` stacks, up to `depth` frames, names of
/// varied length, some with `<>` and `_[k]`, heavy-tailed counts.
fn profile(n: usize, depth: usize, seed: u64) -> Vec<String> {
    let mut x = seed;
    let mut next = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x >> 33
    };
    // No name is another's prefix: sorted as whole lines, "f2;x" comes
    // after "f20;y", and inferno, which merges adjacent lines only, would
    // draw two "f2" bars where the frame tree (rightly) draws one.
    let names: Vec<String> = (0..300)
        .map(|i| match i % 5 {
            0 => format!("mod_{i:03}::Type<T>::method_{}", "x".repeat(i % 40)),
            1 => format!("do_thing_{i:03}_[k]"),
            2 => format!("f{i:03}"),
            3 => format!("alloc::vec::Vec<u8>::push_{i:03}"),
            _ => format!("namespace{i:03}::{{closure}}"),
        })
        .collect();
    let mut lines = Vec::new();
    for _ in 0..n {
        let d = 1 + (next() as usize) % depth;
        let mut stack = vec!["app".to_string()];
        for level in 0..d {
            // Shallow levels share names, so stacks merge into a tree.
            let spread = 3 + level * 20;
            stack.push(names[(next() as usize) % spread.min(names.len())].clone());
        }
        let count = 1 + (next() % 1000).pow(2) / 10_000;
        lines.push(format!("{} {count}", stack.join(";")));
    }
    lines.sort();
    lines.dedup_by(|a, b| a.rsplit_once(' ').unwrap().0 == b.rsplit_once(' ').unwrap().0);
    lines
}

fn info(samples: u64) -> FrameInfo {
    FrameInfo {
        number: 0,
        target: "test".into(),
        start: Duration::ZERO,
        duration: Duration::from_secs(1),
        samples,
        interval_samples: samples,
        interval: Duration::from_secs(1),
        lost: None,
        mode: None,
        depth_cap: None,
        ..Default::default()
    }
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// (x in canvas px, y in SVG px, text) of every non-empty bar label.
fn svg_labels(svg: &str, width: f64) -> Vec<(f64, f64, String)> {
    let frames = &svg[svg.find("<svg id=\"frames\"").unwrap()..];
    let container = width - 2.0 * layout::XPAD;
    let mut out = Vec::new();
    for part in frames.split("<text ").skip(1) {
        let (attrs, rest) = part.split_once('>').unwrap();
        let text = rest.split("</text>").next().unwrap();
        if text.is_empty() {
            continue;
        }
        let attr = |name: &str| -> &str {
            let i = attrs.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
            &attrs[i..i + attrs[i..].find('"').unwrap()]
        };
        let x_pct: f64 = attr("x").trim_end_matches('%').parse().unwrap();
        let y: f64 = attr("y").parse().unwrap();
        out.push((layout::XPAD + container * x_pct / 100.0, y, unescape(text)));
    }
    out
}

fn compare(lines: &[String], canvas: Canvas) {
    // Both renderers draw lines in the order given (the frame maker's);
    // the comparison uses sorted lines, as a folded file would have them.
    let mut lines = lines.to_vec();
    lines.sort();
    let lines = &lines[..];
    let svg = SvgRenderer::new(canvas).unwrap();
    let direct = DirectRenderer::new(canvas).unwrap();
    let depth = lines.iter().map(|l| l.split(';').count()).max().unwrap();
    let fit = layout::fit_canvas(canvas, depth);
    let samples = lines
        .iter()
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum();
    let a = svg.pixmap_frame(lines, &fit, &info(samples)).unwrap();
    let b = direct.pixmap_frame(lines, &fit, &info(samples)).unwrap();

    // Labels: the SVG route's, placed by the SVG's own height at the bottom.
    let graph = String::from_utf8(svg.graph_svg(lines, &fit).unwrap()).unwrap();
    let svg_h: f64 = {
        let i = graph.find("height=\"").unwrap() + 8;
        graph[i..i + graph[i..].find('"').unwrap()].parse().unwrap()
    };
    let dy = f64::from(canvas.height) - svg_h;
    let tree = FlameTree::from_folded(lines);
    let placed = geometry::place(&tree, canvas, &fit, layout::min_width_percent(canvas.width));
    // The root: inferno leaves its "all" out of the frames group, and the
    // direct renderer writes the frame's total on it.
    let drawn: Vec<&geometry::Placed<'_>> = placed
        .iter()
        .filter(|p| !p.label.is_empty() && p.depth > 0)
        .collect();
    let want = svg_labels(&graph, f64::from(canvas.width));
    assert!(want.len() > 10, "too few labels to test: {}", want.len());
    if want.len() != drawn.len() {
        let w: Vec<&str> = want.iter().map(|(_, _, t)| t.as_str()).collect();
        let d: Vec<&str> = drawn.iter().map(|p| p.label.as_str()).collect();
        let only_d: Vec<&&str> = d.iter().filter(|x| !w.contains(x)).collect();
        let only_w: Vec<&&str> = w.iter().filter(|x| !d.contains(x)).collect();
        panic!(
            "label count {} vs {}: only drawn {only_d:?}, only inferno {only_w:?}",
            w.len(),
            d.len()
        );
    }
    for (x, y, text) in &want {
        let hit = drawn.iter().any(|p| {
            p.label == *text
                && (f64::from(p.label_at[0]) - x).abs() <= 1.0
                && (f64::from(p.label_at[1]) - (y + dy)).abs() <= 1.0
        });
        assert!(
            hit,
            "label {text:?} at ({x:.1}, {:.1}) not drawn by the direct renderer",
            y + dy
        );
    }

    // Pixels: everything but the header band and the label boxes.
    let (w, h) = (canvas.width as usize, canvas.height as usize);
    let mut text = vec![false; w * h];
    let fs = fit.font_size as f32;
    for p in &drawn {
        let x0 = (p.label_at[0] - 2.0).max(0.0) as usize;
        let x1 =
            ((p.label_at[0] + fs * 0.7 * p.label.chars().count() as f32 + 3.0) as usize).min(w);
        let y0 = (p.label_at[1] - fs - 2.0).max(0.0) as usize;
        let y1 = ((p.label_at[1] + fs * 0.35 + 2.0) as usize).min(h);
        for y in y0..y1 {
            text[y * w + x0..y * w + x1].fill(true);
        }
    }
    if let Some(root) = placed.iter().find(|p| p.depth == 0) {
        let [x0, y0, x1, y1] = root.rect.map(|v| v.max(0.0) as usize);
        for y in y0..=y1.min(h - 1) {
            text[y * w + x0.min(w)..(x1 + 1).min(w) + y * w].fill(true);
        }
    }
    let (mut same, mut all) = (0u64, 0u64);
    for y in layout::Scale::of(canvas).header as usize..h {
        for x in 0..w {
            if text[y * w + x] {
                continue;
            }
            let i = (y * w + x) * 4;
            all += 1;
            if (0..3).all(|c| a.data()[i + c].abs_diff(b.data()[i + c]) <= 2) {
                same += 1;
            }
        }
    }
    if let Some(dir) = std::env::var_os("RS_PROFILE_DUMP") {
        let dir = std::path::PathBuf::from(dir);
        a.save_png(dir.join("svg.png")).unwrap();
        b.save_png(dir.join("direct.png")).unwrap();
        let mut d = a.clone();
        for (i, px) in d.data_mut().chunks_exact_mut(4).enumerate() {
            let diff = (0..3).any(|c| a.data()[i * 4 + c].abs_diff(b.data()[i * 4 + c]) > 2);
            let t = text[i];
            px.copy_from_slice(&if diff && !t {
                [255, 0, 255, 255]
            } else if t {
                [200, 200, 255, 255]
            } else {
                [255, 255, 255, 255]
            });
        }
        d.save_png(dir.join("diff.png")).unwrap();
    }
    let share = same as f64 / all as f64;
    assert!(
        share >= 0.99,
        "only {:.3}% of non-text pixels agree",
        share * 100.0
    );
}

#[test]
fn deep_profile_at_1080p() {
    compare(&profile(2000, 50, 7), Canvas::default());
}

#[test]
fn shallow_profile_at_a_small_canvas() {
    compare(
        &profile(800, 6, 11),
        Canvas {
            width: 960,
            height: 540,
        },
    );
}

#[test]
fn the_benchmark_profile() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/bench/syn2000-seed7.folded");
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("{} not present, skipping", path.display());
        return;
    };
    compare(
        &text.lines().map(str::to_string).collect::<Vec<_>>(),
        Canvas::default(),
    );
}
