//! Where each bar and label of a flame graph goes, by inferno's rules, so
//! the direct renderer draws what the SVG route draws: the frame's tree in
//! its order (the frame maker's stable order; inferno is told not to sort
//! the folded lines written from it), bars narrower than the minimum width
//! left out, bars stacked up from the bottom, labels truncated to the
//! characters that fit with "..".

use super::layout::{Canvas, Fit, FONT_WIDTH, XPAD};
use super::tree::FlameTree;

/// inferno's gap above each bar.
const FRAMEPAD: f64 = 1.0;

/// A bar in pixels, with its label.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed<'a> {
    /// The bar's index in the tree.
    pub node: usize,
    /// 0 is the root ("all").
    pub depth: usize,
    /// The bar's name.
    pub name: &'a str,
    /// Left, top, right, bottom in canvas pixels.
    pub rect: [f32; 4],
    /// The label (empty when the bar is too narrow).
    pub label: String,
    /// Label position: x of its start, y of its baseline.
    pub label_at: [f32; 2],
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

/// Places the bars of a tree on the canvas as the PNG route draws them:
/// bars narrower than `min_width_pct` percent left out, the graph's bottom
/// `2 * font + 10` pixels above the canvas bottom.
pub fn place<'a>(
    tree: &'a FlameTree,
    canvas: Canvas,
    fit: &Fit,
    min_width_pct: f64,
) -> Vec<Placed<'a>> {
    place_oriented(tree, canvas, fit, min_width_pct, false)
}

/// Where an icicle graph's root bar starts: just under the header band.
pub fn icicle_top(canvas: Canvas, fit: &Fit) -> f64 {
    f64::from(super::layout::Scale::of(canvas).header) + (fit.font_size / 2) as f64
}

/// [`place`], or with the root at the top and stacks growing down
/// (`icicle`), as inferno's inverted graph draws them. A bar too narrow to
/// draw hides its children too (they are narrower still).
pub fn place_oriented<'a>(
    tree: &'a FlameTree,
    canvas: Canvas,
    fit: &Fit,
    min_width_pct: f64,
    icicle: bool,
) -> Vec<Placed<'a>> {
    let total = tree.total();
    if total == 0 {
        return Vec::new();
    }
    let width = f64::from(canvas.width);
    let container = width - 2.0 * XPAD;
    let fh = fit.frame_height as f64;
    let fs = fit.font_size as f64;
    let bottom = f64::from(canvas.height) - (2.0 * fs + 10.0);
    let min_time = min_width_pct * total as f64 / 100.0;
    let top = icicle_top(canvas, fit);
    let char_pct = 100.0 * fs * FONT_WIDTH / width;
    let nodes = tree.nodes();
    let mut out = Vec::with_capacity(nodes.len().min(8192));
    // Breadth first from the root, skipping whatever is under a bar too
    // narrow to draw.
    let mut visible = vec![false; nodes.len()];
    for (i, node) in nodes.iter().enumerate() {
        if i != 0 && !visible[node.parent as usize] {
            continue;
        }
        if (node.total as f64) < min_time {
            continue;
        }
        visible[i] = true;
        let depth = node.depth as usize;
        // inferno writes x and width as percentages with 4 decimals.
        let round4 = |v: f64| (v * 10_000.0).round() / 10_000.0;
        let x1_pct = round4(node.start as f64 * 100.0 / total as f64);
        let x2_pct = x1_pct + round4(node.total as f64 * 100.0 / total as f64);
        let (y1, y2) = if icicle {
            let y1 = top + depth as f64 * fh;
            (y1, y1 + fh - FRAMEPAD)
        } else {
            let y2 = bottom - depth as f64 * fh;
            (y2 - fh + FRAMEPAD, y2)
        };
        let fitchars = ((x2_pct - x1_pct) / char_pct).trunc() as usize;
        let label = if fitchars >= 3 {
            let f = deannotate(&node.name);
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
            node: i,
            depth,
            name: &node.name,
            rect: [px(x1_pct), y1 as f32, px(x2_pct), y2 as f32],
            label_at: [
                px(x1_pct + 100.0 * 3.0 / width),
                (3.0 + (y1 + y2) / 2.0) as f32,
            ],
            label,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icicles_hang_from_the_header() {
        let lines: Vec<String> = ["c;a 2", "c;b 3"].iter().map(|s| s.to_string()).collect();
        let lines = FlameTree::from_folded(&lines);
        let canvas = Canvas::default();
        let fit = super::super::layout::fit_canvas(canvas, 3);
        let flame = place(&lines, canvas, &fit, 0.0);
        let icicle = place_oriented(&lines, canvas, &fit, 0.0, true);
        let root = |v: &[Placed<'_>]| v.iter().find(|p| p.depth == 0).unwrap().rect;
        let leaf = |v: &[Placed<'_>]| v.iter().find(|p| p.name == "a").unwrap().rect;
        assert_eq!(f64::from(root(&icicle)[1]), icicle_top(canvas, &fit));
        assert!(leaf(&icicle)[1] > root(&icicle)[1], "stacks grow down");
        assert!(leaf(&flame)[1] < root(&flame)[1], "stacks grow up");
    }

    #[test]
    fn labels_truncate_like_inferno() {
        assert_eq!(deannotate("read_zero_[k]"), "read_zero");
        assert_eq!(deannotate("x_[z]"), "x_[z]");
        let lines = vec![format!("{} 1", "a".repeat(500)), "b 1000".to_string()];
        let lines = FlameTree::from_folded(&lines);
        let fit = Fit {
            frame_height: 18,
            font_size: 13,
            depth_cap: None,
        };
        let placed = place(&lines, Canvas::default(), &fit, 0.0);
        let b = placed.iter().find(|p| p.name == "b").unwrap();
        assert_eq!(b.label, "b");
        let a = placed
            .iter()
            .find(|p| p.depth == 1 && p.name.starts_with('a'))
            .unwrap();
        assert!(a.label.is_empty(), "1 of 1001 samples: too narrow");
    }
}
