//! Frame rendering, per frame on one thread and per stage: the direct
//! renderer (layout, fill, text, encode) and the SVG route, on the 2,000-stack
//! benchmark profile and on a shallow 10,000-stack one. Frames per second on
//! all cores, beside the command-line tools, come from scripts/bench-render.sh.
//!
//! cargo bench --bench render

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use rs_profile::output::frames::geometry;
use rs_profile::output::frames::layout::{self, Canvas, Fit, FrameInfo};
use rs_profile::output::frames::raster::DirectRenderer;
use rs_profile::output::frames::svg::{encode_png, SvgRenderer};
use rs_profile::output::frames::tree::FlameTree;

/// The shared benchmark input (../shared/bench), or a generated deep profile.
fn deep() -> Vec<String> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/syn2000-seed7.folded");
    match std::fs::read_to_string(p) {
        Ok(t) => t.lines().map(str::to_string).collect(),
        Err(_) => generate(2000, 10, 60, 7),
    }
}

/// `n` distinct stacks of depth `lo..=hi`, tree-shaped, heavy-tailed counts.
pub fn generate(n: usize, lo: usize, hi: usize, seed: u64) -> Vec<String> {
    let mut x = seed;
    let mut next = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x >> 33
    };
    let mut lines = std::collections::BTreeMap::new();
    while lines.len() < n {
        let d = lo + (next() as usize) % (hi - lo + 1);
        let mut stack = vec!["app".to_string()];
        for level in 0..d {
            let spread = 4 + level * level * 40;
            stack.push(format!(
                "crate{}::module::function_{}",
                level,
                next() as usize % spread
            ));
        }
        let count = 1 + (next() % 1000).pow(2) / 20_000;
        *lines.entry(stack.join(";")).or_insert(0) += count;
    }
    lines.into_iter().map(|(s, n)| format!("{s} {n}")).collect()
}

fn setup(lines: &[String]) -> (Fit, FrameInfo) {
    let depth = lines
        .iter()
        .map(|l| l.split(';').count())
        .max()
        .unwrap_or(1);
    let fit = layout::fit_canvas(Canvas::default(), depth);
    let info = FrameInfo {
        number: 0,
        target: "bench".into(),
        start: Duration::ZERO,
        duration: Duration::from_secs(1),
        samples: 1,
        interval_samples: 1,
        interval: Duration::from_secs(1),
        lost: None,
        mode: None,
        depth_cap: fit.depth_cap,
        ..Default::default()
    };
    (fit, info)
}

fn bench(c: &mut Criterion) {
    let canvas = Canvas::default();
    let direct = DirectRenderer::new(canvas).unwrap();
    let svg = SvgRenderer::new(canvas).unwrap();
    for (name, lines) in [
        ("syn2000", deep()),
        ("shallow10k", generate(10_000, 2, 8, 3)),
    ] {
        let (fit, info) = setup(&lines);
        let min = layout::min_width_percent(canvas.width);
        let mut g = c.benchmark_group(name);
        g.sample_size(20);
        g.bench_function("direct/frame", |b| {
            b.iter(|| {
                encode_png(&direct.pixmap_frame(black_box(&lines), &fit, &info).unwrap()).unwrap()
            })
        });
        g.bench_function("tree", |b| {
            b.iter(|| FlameTree::from_folded(black_box(&lines)).nodes().len())
        });
        let tree = FlameTree::from_folded(&lines);
        g.bench_function("direct/layout", |b| {
            b.iter(|| geometry::place(black_box(&tree), canvas, &fit, min).len())
        });
        let placed = geometry::place(&tree, canvas, &fit, min);
        g.bench_function("direct/fill", |b| {
            b.iter(|| {
                let mut p = direct.blank().unwrap();
                direct.draw_bars(&mut p, black_box(&placed));
                p
            })
        });
        let mut filled = direct.blank().unwrap();
        direct.draw_bars(&mut filled, &placed);
        g.bench_function("direct/text", |b| {
            b.iter(|| {
                let mut p = filled.clone();
                direct.draw_labels(&mut p, black_box(&placed), &fit);
                direct.draw_header(&mut p, &info, false);
                p
            })
        });
        g.bench_function("direct/blank", |b| b.iter(|| direct.blank().unwrap()));
        let full = direct.pixmap_frame(&lines, &fit, &info).unwrap();
        g.bench_function("encode_png", |b| {
            b.iter(|| encode_png(black_box(&full)).unwrap())
        });
        g.bench_function("svg_route/frame", |b| {
            b.iter(|| svg.png_frame(black_box(&lines), &fit, &info).unwrap())
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
