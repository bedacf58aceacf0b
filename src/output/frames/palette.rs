//! The frames' colours, shared by both renderers: the SVG route hands them to
//! inferno as a pre-filled palette map, the direct renderer fills with them.
//! In the default `hot` mode a function's colour depends only on its name
//! (an FNV-1a hash), so it is the same in every frame and every run; the
//! other modes (`--colors`) colour by process, by kernel or user, or by how
//! much a bar grew since the previous frame.

use inferno::flamegraph::color::{Color, PaletteMap};

/// The `-` between user and kernel frames (inferno draws it grey itself).
pub const DELIMITER: [u8; 3] = [200, 200, 200];
/// The `--` delimiter.
pub const DOUBLE_DELIMITER: [u8; 3] = [160, 160, 160];

/// `--colors`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Colors {
    /// Warm colours by function name, stable across frames and runs.
    #[default]
    Hot,
    /// One colour per process (its bars in shades of it), with a legend.
    Comm,
    /// Kernel frames orange, JIT frames green, other user frames red
    /// (flamegraph.pl's java scheme).
    Kernel,
    /// Red where a bar grew since the previous frame, blue where it shrank
    /// (Gregg's differential flame graph, animated).
    Diff,
}

/// `--theme`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Theme {
    /// Light background, dark text.
    #[default]
    Light,
    /// Dark background, light text (stages, dark slides).
    Dark,
}

/// How frames look: colours, theme, background.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Look {
    /// `--colors`.
    pub colors: Colors,
    /// `--theme`.
    pub theme: Theme,
    /// `--background transparent`: PNG frames with alpha.
    pub transparent: bool,
    /// `--orientation icicle`: the root at the top, stacks growing down.
    pub icicle: bool,
}

impl Look {
    /// Canvas colour, RGBA (alpha 0 when transparent).
    pub fn background(&self) -> [u8; 4] {
        let a = if self.transparent { 0 } else { 0xff };
        match self.theme {
            Theme::Light => [0xf8, 0xf8, 0xf8, a],
            Theme::Dark => [0x16, 0x18, 0x1c, a],
        }
    }

    /// Header title colour.
    pub fn title(&self) -> [u8; 3] {
        match self.theme {
            Theme::Light => [0x20, 0x20, 0x20],
            Theme::Dark => [0xf0, 0xf0, 0xf0],
        }
    }

    /// Header second line and messages.
    pub fn subtitle(&self) -> [u8; 3] {
        match self.theme {
            Theme::Light => [0x50, 0x50, 0x50],
            Theme::Dark => [0xb0, 0xb0, 0xb8],
        }
    }

    /// `#rrggbb` of an RGB colour.
    pub fn hex([r, g, b]: [u8; 3]) -> String {
        format!("#{r:02x}{g:02x}{b:02x}")
    }
}

/// Twelve colours told apart at a glance, none grey (the root and the
/// background are): the process palette of `--colors comm`. The first
/// eight are the most distinct; the biggest processes get them.
pub const CATEGORICAL: [[u8; 3]; 12] = [
    [230, 120, 40],
    [70, 130, 220],
    [90, 180, 90],
    [190, 100, 200],
    [225, 200, 50],
    [40, 190, 180],
    [225, 80, 100],
    [140, 95, 55],
    [150, 210, 250],
    [170, 225, 110],
    [250, 170, 210],
    [100, 80, 180],
];

/// The colour of a process (`--colors comm`); `slot` is its rank among the
/// run's biggest processes when it has one, so those get distinct colours;
/// the others a colour of the palette by name.
pub fn comm_color(comm: &str, slot: Option<usize>) -> [u8; 3] {
    let i = slot.unwrap_or_else(|| fnv1a(comm) as usize) % CATEGORICAL.len();
    CATEGORICAL[i]
}

/// A bar of a process in `comm` mode: its process's colour, a little
/// lighter or darker by function name so neighbours stay apart.
pub fn shade([r, g, b]: [u8; 3], name: &str) -> [u8; 3] {
    let k = 0.85 + 0.3 * ((fnv1a(name) & 0xff) as f64 / 255.0);
    let c = |v: u8| (f64::from(v) * k).clamp(0.0, 255.0) as u8;
    [c(r), c(g), c(b)]
}

/// `--colors kernel`: kernel frames (annotated `_[k]`) orange, JIT frames
/// (`_[j]`) green, other user frames red.
pub fn kernel_color(name: &str) -> [u8; 3] {
    let h = fnv1a(name);
    let v = |shift: u32| ((h >> shift) & 0xffff) as f64 / 65535.0;
    if name.ends_with("_[j]") {
        [
            (50.0 + 60.0 * v(0)) as u8,
            (170.0 + 60.0 * v(16)) as u8,
            (50.0 + 40.0 * v(32)) as u8,
        ]
    } else if name.ends_with("_[k]") {
        [
            (200.0 + 55.0 * v(0)) as u8,
            (120.0 + 60.0 * v(16)) as u8,
            (20.0 * v(32)) as u8,
        ]
    } else if matches!(name, "-" | "--") {
        DELIMITER
    } else {
        [
            (200.0 + 55.0 * v(0)) as u8,
            (40.0 + 60.0 * v(16)) as u8,
            (40.0 + 30.0 * v(32)) as u8,
        ]
    }
}

/// `--colors diff`: light grey for no change (white would vanish on the
/// light theme), red up to +10 points of the frame, blue down to -10.
pub fn diff_color(delta: f32) -> [u8; 3] {
    const NEUTRAL: f32 = 232.0;
    let t = (delta.abs() / 10.0).min(1.0);
    let mix = |full: f32| (NEUTRAL + (full - NEUTRAL) * t) as u8;
    if delta >= 0.0 {
        [mix(255.0), mix(40.0), mix(40.0)]
    } else {
        [mix(50.0), mix(90.0), mix(255.0)]
    }
}

fn fnv1a(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A warm ("hot") colour for a function name: red to yellow, as flame graphs
/// are drawn.
pub fn color(name: &str) -> [u8; 3] {
    match name {
        "-" => return DELIMITER,
        "--" => return DOUBLE_DELIMITER,
        _ => {}
    }
    let h = fnv1a(name);
    let v = |shift: u32| ((h >> shift) & 0xffff) as f64 / 65535.0;
    [
        (205.0 + 50.0 * v(0)) as u8,
        (230.0 * v(16)) as u8,
        (55.0 * v(32)) as u8,
    ]
}

/// A palette map for inferno holding the colour of every function in
/// `lines` (folded, `stack count`), and of its root.
pub fn palette_map(lines: &[String]) -> PaletteMap {
    palette_map_by(lines, color)
}

/// [`palette_map`] with another colour-by-name function.
pub fn palette_map_by(lines: &[String], by: fn(&str) -> [u8; 3]) -> PaletteMap {
    let mut map = PaletteMap::default();
    map.insert("", to_color(by("")));
    map.insert("all", to_color(by("all")));
    for line in lines {
        let stack = line.rsplit_once(' ').map_or(line.as_str(), |(s, _)| s);
        for f in stack.split(';') {
            if map.get(f).is_none() {
                map.insert(f, to_color(by(f)));
            }
        }
    }
    map
}

fn to_color([r, g, b]: [u8; 3]) -> Color {
    Color { r, g, b }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twelve_process_colours_far_apart_and_none_grey() {
        let dist = |a: [u8; 3], b: [u8; 3]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (f64::from(*x) - f64::from(y)).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        for (i, a) in CATEGORICAL.iter().enumerate() {
            let [r, g, b] = a.map(i32::from);
            let spread = r.max(g).max(b) - r.min(g).min(b);
            assert!(spread >= 60, "colour {i} {a:?} is greyish");
            for b in &CATEGORICAL[i + 1..] {
                assert!(dist(*a, *b) >= 70.0, "{a:?} and {b:?} look alike");
            }
        }
        // Slots give distinct colours to the first twelve.
        let all: std::collections::HashSet<[u8; 3]> =
            (0..12).map(|s| comm_color("x", Some(s))).collect();
        assert_eq!(all.len(), 12);
    }

    #[test]
    fn stable_and_warm() {
        assert_eq!(color("alpha"), color("alpha"));
        assert_ne!(color("alpha"), color("beta"));
        let [r, g, b] = color("some::function");
        assert!(r >= 205 && g <= 230 && b <= 55);
        assert_eq!(color("-"), DELIMITER);
        let map = palette_map(&["a;b 1".to_string(), "a;c 2".to_string()]);
        assert_eq!(map.get("c"), Some(to_color(color("c"))));
    }
}
