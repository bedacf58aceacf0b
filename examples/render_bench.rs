//! Renders one folded profile as N PNG frames on a rayon pool, the way `-E`
//! does, and reports frames per second. Used by scripts/bench-render.sh.
//!
//! usage: render_bench FOLDED N [THREADS]

use std::time::Instant;

use rayon::prelude::*;
use rs_profile::output::frames::layout::{self, Canvas, FrameInfo};
use rs_profile::output::frames::raster::DirectRenderer;
use rs_profile::output::frames::svg::{encode_png, SvgRenderer};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (path, n) = match &args[..] {
        [_, path, n, ..] => (path, n.parse::<usize>()?),
        _ => anyhow::bail!("usage: render_bench FOLDED N [THREADS]"),
    };
    let threads = args.get(3).map(|t| t.parse()).transpose()?.unwrap_or(0);
    let text = std::fs::read_to_string(path)?;
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let depth = lines
        .iter()
        .map(|l| {
            l.rsplit_once(' ')
                .map_or(l.as_str(), |(s, _)| s)
                .matches(';')
                .count()
                + 1
        })
        .max()
        .unwrap_or(0);
    let canvas = Canvas::default();
    let svg = SvgRenderer::new(canvas)?;
    let direct = DirectRenderer::new(canvas)?;
    let use_direct = std::env::var("RENDERER").map_or(true, |r| r != "svg");
    let fit = layout::fit_canvas(canvas, depth);
    let samples: u64 = lines
        .iter()
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, n)| n.parse::<u64>().ok()))
        .sum();
    let info = |i: u64| FrameInfo {
        number: i,
        target: "bench".into(),
        start: std::time::Duration::from_secs(i),
        duration: std::time::Duration::from_secs(1),
        samples,
        interval_samples: samples,
        interval: std::time::Duration::from_secs(1),
        lost: None,
        mode: None,
        depth_cap: fit.depth_cap,
        ..Default::default()
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let out = std::env::temp_dir().join(format!("render-bench-{}", std::process::id()));
    std::fs::create_dir_all(&out)?;
    let dir = rs_profile::safe_file::SafeDir::open(&out, true)?;
    let t = Instant::now();
    pool.install(|| {
        (0..n as u64)
            .into_par_iter()
            .try_for_each(|i| -> anyhow::Result<()> {
                let png = if use_direct {
                    encode_png(&direct.pixmap_frame(&lines, &fit, &info(i))?)?
                } else {
                    svg.png_frame(&lines, &fit, &info(i))?
                };
                if i == 0 {
                    if let Ok(keep) = std::env::var("KEEP_FIRST") {
                        std::fs::write(keep, &png)?;
                    }
                }
                rs_profile::safe_file::write_whole(&dir, &format!("f{i:04}.png"), &png, true)
            })
    })?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "frames {n} threads {} seconds {secs:.3} frames_per_second {:.2}",
        pool.current_num_threads(),
        n as f64 / secs
    );
    std::fs::remove_dir_all(&out)?;
    Ok(())
}
