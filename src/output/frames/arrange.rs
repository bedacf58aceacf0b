//! How a flame graph is arranged from one frame to the next, so a video is
//! stable and readable:
//!
//! - **Order.** Siblings are ordered by their weight over the run (live: a
//!   running total that decays; `render`: the whole run, from a first
//!   pass), ties alphabetical, so big bars stay put and new ones appear at
//!   the edges, instead of jumping about in alphabetical order as samples
//!   come and go.
//! - **Depth.** The depth the layout is fitted to is that of bars wide
//!   enough to read, not of the deepest stack (one sample of a 127-frame
//!   tower would otherwise shrink every bar), and it is locked: it grows in
//!   steps when needed and shrinks only after a long while (live), or is
//!   fixed for the whole run (`render`).
//! - **Towers.** Runs of the same frame (`[unknown]` towers from a broken
//!   walk, deep recursion) are drawn as one bar marked `×N`; stacks deeper
//!   than the cap end in a marked bar.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::tree::{FlameTree, Name, Node};
/// The bar that ends a stack cut at the depth cap.
pub const CUT_MARK: &str = "[+ deeper]";
/// The depth the layout starts from (live), and its steps.
const MIN_DEPTH: usize = 12;
const DEPTH_STEP: usize = 8;
/// Frames the visible depth must stay lower before the lock shrinks.
const SHRINK_AFTER: u64 = 60;
/// Decay of the live running weights per frame.
const DECAY: f64 = 0.85;
/// Weight of the newest frame in the diff colours' baseline (about the
/// last four frames).
const DIFF_WEIGHT: f32 = 0.25;
/// Running weights below this are forgotten (bounded memory).
const FORGET: f64 = 0.01;

/// Keys that are hashes already: used as they are.
#[derive(Default)]
pub struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A map keyed by stack-prefix hashes (see [`prefix_hash`]).
pub type PrefixMap<V> = HashMap<u64, V, BuildHasherDefault<PrefixHasher>>;

/// A name's own hash (FNV-1a): a namer computes it once per name.
pub fn name_hash(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The hash of the prefix `parent;name`, from the hash of `parent` (0 for
/// the empty prefix) and the name's [`name_hash`]: a few multiplies per
/// bar, whatever the name's length.
pub fn extend_hash(parent: u64, name: u64) -> u64 {
    let h = (parent.rotate_left(23) ^ name).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}

/// The hash of a whole prefix (`comm;a;b`), as [`extend_hash`] builds it.
pub fn prefix_hash(path: &str) -> u64 {
    if path.is_empty() {
        return 0;
    }
    path.split(';')
        .fold(0, |h, name| extend_hash(h, name_hash(name)))
}

/// The arrangement state a frame maker keeps across frames.
#[derive(Debug, Default)]
pub struct Arranger {
    /// Weight of each stack prefix (`comm;a;b`, by hash) over the run.
    weights: PrefixMap<f64>,
    /// Whether the weights and depth are fixed (a first pass made them).
    frozen: bool,
    /// The depth the layout is fitted to.
    depth: usize,
    /// Frames since the visible depth first stayed well under the lock,
    /// and the largest it was meanwhile.
    below: u64,
    below_max: usize,
    /// Share (in % of the frame) of each prefix over the recent frames (a
    /// moving average), what the diff colours compare a frame against.
    last_shares: PrefixMap<f32>,
    /// Whether a frame was taken in yet (the first has nothing to differ
    /// from).
    has_baseline: bool,
}

fn round_up(d: usize) -> usize {
    d.max(MIN_DEPTH).div_ceil(DEPTH_STEP) * DEPTH_STEP
}

impl Arranger {
    /// A live arranger: weights decay, the depth lock adapts.
    pub fn new() -> Arranger {
        Arranger {
            depth: MIN_DEPTH,
            ..Default::default()
        }
    }

    /// A first pass saw the whole run: `totals` of its stack prefixes and
    /// its largest visible depth. Order and depth are fixed from now on.
    pub fn freeze(&mut self, totals: &PrefixMap<u64>, depth: usize) {
        self.weights = totals.iter().map(|(k, v)| (*k, *v as f64)).collect();
        self.depth = depth.max(1);
        self.frozen = true;
    }

    /// Adds a frame's bars (path hash, samples) to first-pass totals.
    pub fn add_totals(totals: &mut PrefixMap<u64>, prefixes: impl Iterator<Item = (u64, u64)>) {
        for (h, n) in prefixes {
            *totals.entry(h).or_insert(0) += n;
        }
    }

    /// Takes in a frame (its prefixes, and its visible depth). Returns the
    /// depth to fit the layout to.
    pub fn observe(&mut self, prefixes: impl Iterator<Item = (u64, u64)>, visible: usize) -> usize {
        if self.frozen {
            return self.depth;
        }
        for w in self.weights.values_mut() {
            *w *= DECAY;
        }
        self.weights.retain(|_, w| *w >= FORGET);
        for (h, n) in prefixes {
            *self.weights.entry(h).or_insert(0.0) += n as f64;
        }
        if visible > self.depth {
            self.depth = round_up(visible);
            self.below = 0;
            self.below_max = 0;
        } else if round_up(visible) < self.depth {
            self.below += 1;
            self.below_max = self.below_max.max(visible);
            if self.below >= SHRINK_AFTER {
                self.depth = round_up(self.below_max);
                self.below = 0;
                self.below_max = 0;
            }
        } else {
            self.below = 0;
            self.below_max = 0;
        }
        self.depth
    }

    /// Where a bar goes among its siblings: heavier over the run first,
    /// ties by name.
    pub fn order_key(&self, node: &Node) -> (i64, Name) {
        let w = self.weights.get(&node.hash).copied().unwrap_or(0.0);
        (-((w * 1000.0) as i64), node.name.clone())
    }

    /// How much each bar (by path hash) grew (+) or shrank (-) against the
    /// recent frames (a moving average over about four frames, so one
    /// frame's sampling noise is not a change), in points of the frame's
    /// share; takes this frame into the average.
    pub fn deltas(&mut self, tree: &FlameTree) -> PrefixMap<f32> {
        let total = tree.total().max(1) as f64;
        let shares: PrefixMap<f32> = tree.nodes()[1..]
            .iter()
            .map(|n| (n.hash, (100.0 * n.total as f64 / total) as f32))
            .collect();
        if !self.has_baseline {
            self.has_baseline = true;
            self.last_shares = shares.clone();
        }
        let mut out: PrefixMap<f32> = shares
            .iter()
            .map(|(h, s)| (*h, s - self.last_shares.get(h).copied().unwrap_or(0.0)))
            .collect();
        // Gone since: fully shrunk (not drawn, but kept for consistency).
        for (h, s) in &self.last_shares {
            out.entry(*h).or_insert(-s);
        }
        for s in self.last_shares.values_mut() {
            *s *= 1.0 - DIFF_WEIGHT;
        }
        for (h, s) in shares {
            *self.last_shares.entry(h).or_insert(0.0) += DIFF_WEIGHT * s;
        }
        self.last_shares.retain(|_, s| *s >= 0.01);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::tree::{NameId, Namer, RawTree, TreeBuilder};
    use super::*;

    fn builder(v: &[(&str, u64)]) -> RawTree {
        let mut namer = Namer::default();
        let mut b = TreeBuilder::default();
        for (s, n) in v {
            let names: Vec<NameId> = s.split(';').map(|f| namer.intern(f)).collect();
            b.add(&names, *n);
        }
        b.seal(&namer)
    }

    fn lines(a: &mut Arranger, v: &[(&str, u64)]) -> Vec<String> {
        let b = builder(v);
        a.observe(b.prefixes().map(|(h, n, _)| (h, n)), 2);
        b.finish(None, |n| a.order_key(n)).folded_lines()
    }

    #[test]
    fn a_rare_deep_stack_does_not_count() {
        let deep = format!("c;{}", vec!["f"; 120].join(";"));
        let b = builder(&[("c;a;b", 47), (&deep, 1)]);
        // One sample of 48 is under a 3% share: only `c;a;b` is visible.
        assert_eq!(b.visible_depth(0.03), 3);
        assert_eq!(b.visible_depth(0.0), 121);
    }

    #[test]
    fn heavier_siblings_come_first_and_stay() {
        let mut a = Arranger::new();
        assert_eq!(
            lines(&mut a, &[("p;zeta", 90), ("p;alpha", 10)]),
            vec!["p;zeta 90", "p;alpha 10"]
        );
        // A frame where alpha is briefly ahead keeps the order the run
        // established (the running weight still favours zeta).
        assert_eq!(
            lines(&mut a, &[("p;zeta", 40), ("p;alpha", 60)]),
            vec!["p;zeta 40", "p;alpha 60"]
        );
        // Lines sharing a prefix stay together.
        let l = lines(
            &mut a,
            &[
                ("p;zeta;x", 5),
                ("q;y", 50),
                ("p;zeta;w", 5),
                ("p;alpha", 1),
            ],
        );
        let pos = |s: &str| l.iter().position(|x| x.starts_with(s)).unwrap();
        assert!(pos("p;zeta;x").abs_diff(pos("p;zeta;w")) == 1, "{l:?}");
    }

    #[test]
    fn the_depth_lock_grows_at_once_and_shrinks_late() {
        let mut a = Arranger::new();
        let none = || std::iter::empty();
        assert_eq!(a.observe(none(), 5), MIN_DEPTH);
        assert_eq!(a.observe(none(), 30), 32);
        for _ in 0..SHRINK_AFTER - 1 {
            assert_eq!(a.observe(none(), 10), 32);
        }
        assert_eq!(
            a.observe(none(), 10),
            MIN_DEPTH.div_ceil(DEPTH_STEP) * DEPTH_STEP
        );
    }

    #[test]
    fn diffs_say_what_grew() {
        let mut a = Arranger::new();
        let first = a.deltas(&builder(&[("p;a", 50), ("p;b", 50)]).finish(None, |_| ()));
        assert!(
            first.values().all(|d| d.abs() < 1e-3),
            "nothing to differ from"
        );
        let d = a.deltas(&builder(&[("p;a", 80), ("p;b", 20)]).finish(None, |_| ()));
        assert!((d[&prefix_hash("p;a")] - 30.0).abs() < 1e-3);
        assert!((d[&prefix_hash("p;b")] + 30.0).abs() < 1e-3);
        assert!(d[&prefix_hash("p")].abs() < 1e-3);
        // Against the recent frames, not the last one alone: the same
        // frame again still shows a rise, smaller (the baseline moves up).
        let again = a.deltas(&builder(&[("p;a", 80), ("p;b", 20)]).finish(None, |_| ()));
        let g = again[&prefix_hash("p;a")];
        assert!(g > 0.0 && g < 30.0, "{g}");
    }
}
