//! A frame's flame graph as the live page draws it: the frame's tree (the
//! frame maker's order, towers collapsed and deep stacks cut as in the PNG
//! frames) with each bar's colour by the run's `--colors` rule, as compact
//! JSON. The page lays the bars out for its own window (see page.html), so
//! one graph fits a laptop, a projector and an OBS source alike.

use crate::output::frames::palette::{self, Colors, Look, Theme};
use crate::output::frames::raster::bar_color;
use crate::output::frames::Frame;

/// The graph of `frame` in `look`, as JSON:
///
/// - `names`: the distinct bar names; `colors`: the distinct colours;
/// - `nodes`: per bar, in the tree's order (parents before children),
///   `[parent, depth, start, total, self, name, colour]` (indices into
///   `names` and `colors`; the root is bar 0 with parent 0);
/// - `total`, `depth` (the deepest bar), `mode` (`--colors`), `theme`;
/// - `legend`: `[text, colour]` entries for `comm` and `diff`.
pub fn graph_json(frame: &Frame, look: &Look) -> serde_json::Value {
    let nodes = frame.tree.nodes();
    let mut names: Vec<&str> = Vec::new();
    let mut name_ids: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut colors: Vec<String> = Vec::new();
    let mut color_ids: std::collections::HashMap<[u8; 3], usize> = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(nodes.len());
    let mut depth = 0;
    for (i, n) in nodes.iter().enumerate() {
        let name: &str = &n.name;
        let name_id = *name_ids.entry(name).or_insert_with(|| {
            names.push(name);
            names.len() - 1
        });
        let rgb = bar_color(look.colors, frame, i);
        let color_id = *color_ids.entry(rgb).or_insert_with(|| {
            colors.push(Look::hex(rgb));
            colors.len() - 1
        });
        depth = depth.max(n.depth);
        out.push(serde_json::json!([
            n.parent,
            n.depth,
            n.start,
            n.total,
            n.self_count,
            name_id,
            color_id
        ]));
    }
    serde_json::json!({
        "total": frame.tree.total(),
        "depth": depth,
        "mode": mode_name(look.colors),
        "theme": if look.theme == Theme::Dark { "dark" } else { "light" },
        "names": names,
        "colors": colors,
        "nodes": out,
        "legend": legend(frame, look.colors),
    })
}

fn mode_name(colors: Colors) -> &'static str {
    match colors {
        Colors::Hot => "hot",
        Colors::Comm => "comm",
        Colors::Kernel => "kernel",
        Colors::Diff => "diff",
    }
}

/// The key the PNG frames draw in the header: the biggest processes first
/// (`comm`), or what red and blue mean (`diff`).
fn legend(frame: &Frame, colors: Colors) -> Vec<(String, String)> {
    match colors {
        Colors::Comm => {
            let total = frame.tree.total().max(1) as f64;
            frame
                .tree
                .processes()
                .into_iter()
                .filter(|(_, n)| *n as f64 * 100.0 >= total)
                .take(12)
                .map(|(comm, n)| {
                    let slot = frame.comm_slots.as_ref().and_then(|s| s.get(comm).copied());
                    (
                        format!("{comm} {:.0}%", 100.0 * n as f64 / total),
                        Look::hex(palette::comm_color(comm, slot)),
                    )
                })
                .collect()
        }
        Colors::Diff => vec![
            (
                "grew or new".to_string(),
                Look::hex(palette::diff_color(10.0)),
            ),
            ("shrank".to_string(), Look::hex(palette::diff_color(-10.0))),
            ("steady".to_string(), Look::hex(palette::diff_color(0.0))),
        ],
        Colors::Hot | Colors::Kernel => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::frames::layout::FrameInfo;

    fn frame(lines: &[&str]) -> Frame {
        let lines: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        Frame::from_lines(&lines, Default::default(), FrameInfo::default())
    }

    #[test]
    fn bars_keep_the_tree_and_sum_to_the_total() {
        let f = frame(&["sh;main;a 3", "sh;main;b 2", "xz;main 5"]);
        let g = graph_json(&f, &Look::default());
        assert_eq!(g["total"], 10);
        assert_eq!(g["depth"], 3);
        let nodes = g["nodes"].as_array().unwrap();
        let names = g["names"].as_array().unwrap();
        let name = |i: usize| {
            names[nodes[i][5].as_u64().unwrap() as usize]
                .as_str()
                .unwrap()
        };
        assert_eq!(name(0), "all");
        // Every bar's parent comes before it, and children sum to at most
        // their parent.
        for (i, n) in nodes.iter().enumerate().skip(1) {
            let p = n[0].as_u64().unwrap() as usize;
            assert!(p < i);
            assert_eq!(n[1].as_u64().unwrap(), nodes[p][1].as_u64().unwrap() + 1);
        }
        let depth1: u64 = nodes
            .iter()
            .filter(|n| n[1] == 1)
            .map(|n| n[3].as_u64().unwrap())
            .sum();
        assert_eq!(depth1, 10);
        assert_eq!(g["legend"].as_array().unwrap().len(), 0);
    }

    #[test]
    fn comm_colours_match_the_frames_and_come_with_a_legend() {
        let f = frame(&["sh;main 3", "xz;main 7"]);
        let look = Look {
            colors: Colors::Comm,
            ..Look::default()
        };
        let g = graph_json(&f, &look);
        let legend = g["legend"].as_array().unwrap();
        assert_eq!(legend[0][0], "xz 70%", "biggest first");
        assert_eq!(legend[1][0], "sh 30%");
        let nodes = g["nodes"].as_array().unwrap();
        let names = g["names"].as_array().unwrap();
        let colors = g["colors"].as_array().unwrap();
        let xz = nodes
            .iter()
            .find(|n| names[n[5].as_u64().unwrap() as usize] == "xz")
            .unwrap();
        assert_eq!(colors[xz[6].as_u64().unwrap() as usize], legend[0][1]);
    }
}
