//! Where each bar and label of a flame graph goes, by inferno's rules, so
//! the direct renderer draws what the SVG route draws: stacks merged in the
//! order given (the frame maker's stable order; inferno is told not to
//! sort), bars narrower than the minimum width left out, bars stacked up
//! from the bottom, labels truncated to the characters that fit with "..".

use super::layout::{Canvas, Fit, FONT_WIDTH, XPAD};

/// inferno's gap above each bar.
const FRAMEPAD: f64 = 1.0;

/// One bar: a function at a depth over a range of samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar<'a> {
    /// 0 is the root ("all").
    pub depth: usize,
    /// Name as in the folded line ("all" for the root).
    pub name: &'a str,
    /// The stack up to and including this bar (`comm;a;b`; "" for the
    /// root): what identifies it from frame to frame.
    pub path: &'a str,
    /// First sample.
    pub start: u64,
    /// One past the last sample.
    pub end: u64,
}

/// A bar in pixels, with its label.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed<'a> {
    /// The bar.
    pub bar: Bar<'a>,
    /// Left, top, right, bottom in canvas pixels.
    pub rect: [f32; 4],
    /// The label (empty when the bar is too narrow).
    pub label: String,
    /// Label position: x of its start, y of its baseline.
    pub label_at: [f32; 2],
}

/// Merges folded lines (`stack count`) into bars, root included, in the
/// order given: lines sharing a prefix must be next to each other.
pub fn bars(lines: &[String]) -> (Vec<Bar<'_>>, u64) {
    let mut out: Vec<Bar<'_>> = Vec::new();
    // Open bars along the previous stack: index into `out` per depth.
    let mut open: Vec<usize> = Vec::new();
    let mut prev: Vec<&str> = Vec::new();
    let mut time = 0u64;
    for line in lines {
        let Some((stack, n)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        let frames: Vec<&str> = stack.split(';').collect();
        // Where each frame ends in the stack: its path's end.
        let ends: Vec<usize> = stack
            .match_indices(';')
            .map(|(i, _)| i)
            .chain(std::iter::once(stack.len()))
            .collect();
        let common = prev.iter().zip(&frames).take_while(|(a, b)| a == b).count();
        for &i in &open[common..] {
            out[i].end = time;
        }
        open.truncate(common);
        for (d, name) in frames.iter().enumerate().skip(common) {
            open.push(out.len());
            out.push(Bar {
                depth: d + 1,
                name,
                path: &stack[..ends[d]],
                start: time,
                end: time,
            });
        }
        prev = frames;
        time += n;
    }
    for &i in &open {
        out[i].end = time;
    }
    out.push(Bar {
        depth: 0,
        name: "all",
        path: "",
        start: 0,
        end: time,
    });
    (out, time)
}

/// inferno's `deannotate`: the label drops a `_[k]`-style annotation.
pub fn deannotate(f: &str) -> &str {
    if f.ends_with(']') {
        if let Some(i) = f.rfind("_[") {
            if f[i..].len() == 4 && "kwij".contains(&f[i + 2..i + 3]) {
                return &f[..i];
            }
        }
    }
    f
}

/// Places the bars of `lines` on the canvas as the PNG route draws them:
/// bars narrower than `min_width_pct` percent left out, the graph's bottom
/// `2 * font + 10` pixels above the canvas bottom.
pub fn place<'a>(
    lines: &'a [String],
    canvas: Canvas,
    fit: &Fit,
    min_width_pct: f64,
) -> Vec<Placed<'a>> {
    place_oriented(lines, canvas, fit, min_width_pct, false)
}

/// Where an icicle graph's root bar starts: just under the header band.
pub fn icicle_top(canvas: Canvas, fit: &Fit) -> f64 {
    f64::from(super::layout::Scale::of(canvas).header) + (fit.font_size / 2) as f64
}

/// [`place`], or with the root at the top and stacks growing down
/// (`icicle`), as inferno's inverted graph draws them.
pub fn place_oriented<'a>(
    lines: &'a [String],
    canvas: Canvas,
    fit: &Fit,
    min_width_pct: f64,
    icicle: bool,
) -> Vec<Placed<'a>> {
    let (bars, total) = bars(lines);
    if total == 0 {
        return Vec::new();
    }
    let width = f64::from(canvas.width);
    let container = width - 2.0 * XPAD;
    let fh = fit.frame_height as f64;
    let fs = fit.font_size as f64;
    let bottom = f64::from(canvas.height) - (2.0 * fs + 10.0);
    let min_time = min_width_pct * total as f64 / 100.0;
    let mut out = Vec::with_capacity(bars.len());
    for bar in bars {
        if ((bar.end - bar.start) as f64) < min_time {
            continue;
        }
        // inferno writes x and width as percentages with 4 decimals.
        let round4 = |v: f64| (v * 10_000.0).round() / 10_000.0;
        let x1_pct = round4(bar.start as f64 * 100.0 / total as f64);
        let x2_pct = x1_pct + round4((bar.end - bar.start) as f64 * 100.0 / total as f64);
        let (y1, y2) = if icicle {
            let y1 = icicle_top(canvas, fit) + bar.depth as f64 * fh;
            (y1, y1 + fh - FRAMEPAD)
        } else {
            let y2 = bottom - bar.depth as f64 * fh;
            (y2 - fh + FRAMEPAD, y2)
        };
        let fitchars = ((x2_pct - x1_pct) / (100.0 * fs * FONT_WIDTH / width)).trunc() as usize;
        let label = if fitchars >= 3 {
            let f = deannotate(bar.name);
            if f.len() < fitchars {
                f.to_string()
            } else {
                let mut s: String = f.chars().take(fitchars - 2).collect();
                s.push_str("..");
                s
            }
        } else {
            String::new()
        };
        let px = |pct: f64| (XPAD + container * pct / 100.0) as f32;
        out.push(Placed {
            rect: [px(x1_pct), y1 as f32, px(x2_pct), y2 as f32],
            label_at: [
                px(x1_pct + 100.0 * 3.0 / width),
                (3.0 + (y1 + y2) / 2.0) as f32,
            ],
            label,
            bar,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_like_a_flame_graph() {
        let lines: Vec<String> = ["c;a;x 2", "c;a;y 3", "c;b 5"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (bars, total) = bars(&lines);
        assert_eq!(total, 10);
        let find = |d: usize, n: &str| {
            bars.iter()
                .find(|b| b.depth == d && b.name == n)
                .unwrap()
                .clone()
        };
        assert_eq!((find(0, "all").start, find(0, "all").end), (0, 10));
        assert_eq!(find(3, "y").path, "c;a;y");
        assert_eq!((find(1, "c").start, find(1, "c").end), (0, 10));
        assert_eq!((find(2, "a").start, find(2, "a").end), (0, 5));
        assert_eq!((find(3, "y").start, find(3, "y").end), (2, 5));
        assert_eq!((find(2, "b").start, find(2, "b").end), (5, 10));
        assert_eq!(bars.len(), 6);
    }

    #[test]
    fn icicles_hang_from_the_header() {
        let lines: Vec<String> = ["c;a 2", "c;b 3"].iter().map(|s| s.to_string()).collect();
        let canvas = Canvas::default();
        let fit = super::super::layout::fit_canvas(canvas, 3);
        let flame = place(&lines, canvas, &fit, 0.0);
        let icicle = place_oriented(&lines, canvas, &fit, 0.0, true);
        let root = |v: &[Placed<'_>]| v.iter().find(|p| p.bar.depth == 0).unwrap().rect;
        let leaf = |v: &[Placed<'_>]| v.iter().find(|p| p.bar.name == "a").unwrap().rect;
        assert_eq!(f64::from(root(&icicle)[1]), icicle_top(canvas, &fit));
        assert!(leaf(&icicle)[1] > root(&icicle)[1], "stacks grow down");
        assert!(leaf(&flame)[1] < root(&flame)[1], "stacks grow up");
    }

    #[test]
    fn labels_truncate_like_inferno() {
        assert_eq!(deannotate("read_zero_[k]"), "read_zero");
        assert_eq!(deannotate("x_[z]"), "x_[z]");
        let lines = vec![format!("{} 1", "a".repeat(500)), "b 1000".to_string()];
        let fit = Fit {
            frame_height: 18,
            font_size: 13,
            depth_cap: None,
        };
        let placed = place(&lines, Canvas::default(), &fit, 0.0);
        let b = placed.iter().find(|p| p.bar.name == "b").unwrap();
        assert_eq!(b.label, "b");
        let a = placed.iter().find(|p| p.bar.name.starts_with('a')).unwrap();
        assert!(a.label.is_empty(), "1 of 1001 samples: too narrow");
    }
}
