//! The frames' colours, shared by both renderers: the SVG route hands them to
//! inferno as a pre-filled palette map, the direct renderer fills with them.
//! A function's colour depends only on its name (an FNV-1a hash), so it is
//! the same in every frame and every run.

use inferno::flamegraph::color::{Color, PaletteMap};

/// The `-` between user and kernel frames (inferno draws it grey itself).
pub const DELIMITER: [u8; 3] = [200, 200, 200];
/// The `--` delimiter.
pub const DOUBLE_DELIMITER: [u8; 3] = [160, 160, 160];

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
    let mut map = PaletteMap::default();
    map.insert("", to_color(color("")));
    for line in lines {
        let stack = line.rsplit_once(' ').map_or(line.as_str(), |(s, _)| s);
        for f in stack.split(';') {
            if map.get(f).is_none() {
                map.insert(f, to_color(color(f)));
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
