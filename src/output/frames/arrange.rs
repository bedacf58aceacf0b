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

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Identical frames in a row drawn as one bar from this many.
const RUN_MIN: usize = 3;
/// The bar that ends a stack cut at the depth cap.
pub const CUT_MARK: &str = "[+ deeper]";
/// The depth the layout starts from (live), and its steps.
const MIN_DEPTH: usize = 12;
const DEPTH_STEP: usize = 8;
/// Frames the visible depth must stay lower before the lock shrinks.
const SHRINK_AFTER: u64 = 60;
/// Decay of the live running weights per frame.
const DECAY: f64 = 0.85;
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

/// The hash of the prefix `parent;name`, from the hash of `parent` (0 for
/// the empty prefix): each frame is hashed once per stack, not once per
/// prefix it is part of.
pub fn extend_hash(parent: u64, name: &str) -> u64 {
    let mut h = (parent ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0x0100_0000_01b3);
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The hash of a whole prefix (`comm;a;b`), as [`extend_hash`] builds it.
pub fn prefix_hash(path: &str) -> u64 {
    if path.is_empty() {
        return 0;
    }
    path.split(';').fold(0, extend_hash)
}

/// `a;b;b;b;b;c` -> `a;b ×4;c` (unchanged, and not copied, when there is
/// no such run).
pub fn collapse_runs(stack: &str) -> Cow<'_, str> {
    let frames: Vec<&str> = stack.split(';').collect();
    if !frames
        .windows(RUN_MIN)
        .any(|w| w.iter().all(|f| *f == w[0]))
    {
        return Cow::Borrowed(stack);
    }
    let mut out = String::with_capacity(stack.len());
    let mut i = 0;
    while i < frames.len() {
        let mut j = i + 1;
        while j < frames.len() && frames[j] == frames[i] {
            j += 1;
        }
        if !out.is_empty() {
            out.push(';');
        }
        out.push_str(frames[i]);
        if j - i >= RUN_MIN {
            out.push_str(&format!(" \u{d7}{}", j - i));
        } else {
            for _ in i + 1..j {
                out.push(';');
                out.push_str(frames[i]);
            }
        }
        i = j;
    }
    Cow::Owned(out)
}

/// A frame's samples per stack prefix (by hash), with each prefix's depth.
#[derive(Debug, Default)]
pub struct Prefixes {
    counts: PrefixMap<(u64, u32)>,
    total: u64,
}

impl Prefixes {
    /// Counts the prefixes of a frame's stacks.
    pub fn of(stacks: &[(String, u64)]) -> Prefixes {
        Self::count(stacks.iter().map(|(s, n)| (s.as_str(), *n)))
    }

    /// Counts the prefixes of folded lines (`stack count`).
    pub fn of_lines(lines: &[String]) -> Prefixes {
        Self::count(lines.iter().filter_map(|l| {
            let (s, n) = l.rsplit_once(' ')?;
            Some((s, n.parse().ok()?))
        }))
    }

    fn count<'a>(stacks: impl Iterator<Item = (&'a str, u64)>) -> Prefixes {
        let mut counts: PrefixMap<(u64, u32)> = PrefixMap::default();
        let mut total = 0;
        for (s, n) in stacks {
            total += n;
            let mut h = 0;
            for (d, f) in s.split(';').enumerate() {
                h = extend_hash(h, f);
                let e = counts.entry(h).or_insert((0, d as u32 + 1));
                e.0 += n;
            }
        }
        Prefixes { counts, total }
    }

    /// The depth (frames, comm included) of the deepest prefix holding at
    /// least `min_share` of the samples: what can be seen at all.
    pub fn visible_depth(&self, min_share: f64) -> usize {
        if self.total == 0 {
            return 0;
        }
        let min = (min_share * self.total as f64).max(1.0);
        self.counts
            .values()
            .filter(|(n, _)| *n as f64 >= min)
            .map(|(_, d)| *d as usize)
            .max()
            .unwrap_or(0)
    }
}

/// [`Prefixes::visible_depth`] of a frame's stacks.
pub fn visible_depth(stacks: &[(String, u64)], min_share: f64) -> usize {
    Prefixes::of(stacks).visible_depth(min_share)
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
    /// Share (in % of the frame) of each prefix in the previous frame, for
    /// the diff colours.
    last_shares: PrefixMap<f32>,
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

    /// Adds a frame's prefixes to first-pass totals.
    pub fn add_totals(totals: &mut PrefixMap<u64>, prefixes: &Prefixes) {
        for (h, (n, _)) in &prefixes.counts {
            *totals.entry(*h).or_insert(0) += n;
        }
    }

    /// Takes in a frame (its prefixes, and its visible depth). Returns the
    /// depth to fit the layout to.
    pub fn observe(&mut self, prefixes: &Prefixes, visible: usize) -> usize {
        if self.frozen {
            return self.depth;
        }
        for w in self.weights.values_mut() {
            *w *= DECAY;
        }
        self.weights.retain(|_, w| *w >= FORGET);
        for (h, (n, _)) in &prefixes.counts {
            *self.weights.entry(*h).or_insert(0.0) += *n as f64;
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

    /// The frame's folded lines (`stack count`): cut at `cap` frames (the
    /// last kept one replaced by [`CUT_MARK`]), merged, and in the stable
    /// order: at every level, heavier prefixes first, ties by name.
    pub fn lines(&self, stacks: Vec<(String, u64)>, cap: Option<usize>) -> Vec<String> {
        let mut merged: HashMap<String, u64> = HashMap::with_capacity(stacks.len());
        for (mut s, n) in stacks {
            if let Some(cap) = cap {
                if s.matches(';').count() + 1 > cap {
                    if let Some((i, _)) = s.match_indices(';').nth(cap.saturating_sub(2)) {
                        s.truncate(i);
                        s.push(';');
                        s.push_str(CUT_MARK);
                    }
                }
            }
            *merged.entry(s).or_insert(0) += n;
        }
        // Per level: (descending weight, in thousandths, name).
        type Key<'a> = Vec<(i64, &'a str)>;
        let mut keyed: Vec<(Key<'_>, &String, u64)> = merged
            .iter()
            .map(|(s, n)| {
                let mut h = 0;
                let key = s
                    .split(';')
                    .map(|f| {
                        h = extend_hash(h, f);
                        let w = self.weights.get(&h).copied().unwrap_or(0.0);
                        (-((w * 1000.0) as i64), f)
                    })
                    .collect();
                (key, s, *n)
            })
            .collect();
        keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        keyed
            .into_iter()
            .map(|(_, s, n)| format!("{s} {n}"))
            .collect()
    }

    /// How much each prefix (by [`prefix_hash`]) grew (+) or shrank (-)
    /// since the previous frame, in points of the frame's share; remembers
    /// this frame's.
    pub fn deltas(&mut self, lines: &[String]) -> PrefixMap<f32> {
        let p = Prefixes::of_lines(lines);
        let total = p.total.max(1) as f64;
        let shares: PrefixMap<f32> = p
            .counts
            .iter()
            .map(|(h, (n, _))| (*h, (100.0 * *n as f64 / total) as f32))
            .collect();
        let mut out: PrefixMap<f32> = shares
            .iter()
            .map(|(h, s)| (*h, s - self.last_shares.get(h).copied().unwrap_or(0.0)))
            .collect();
        // Gone since the last frame: fully shrunk (not drawn, but kept
        // for consistency).
        for (h, s) in &self.last_shares {
            out.entry(*h).or_insert(-s);
        }
        self.last_shares = shares;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(v: &[(&str, u64)]) -> Vec<(String, u64)> {
        v.iter().map(|(s, n)| (s.to_string(), *n)).collect()
    }

    #[test]
    fn towers_collapse() {
        assert_eq!(collapse_runs("a;b;b;b;b;c"), "a;b \u{d7}4;c");
        assert!(matches!(collapse_runs("a;b;b;c"), Cow::Borrowed(_)));
        assert_eq!(collapse_runs("a;b;b;c"), "a;b;b;c");
        let tower = format!("c{}", ";[unknown]".repeat(127));
        assert_eq!(collapse_runs(&tower), "c;[unknown] \u{d7}127");
    }

    #[test]
    fn a_rare_deep_stack_does_not_count() {
        let deep = format!("c;{}", vec!["f"; 120].join(";"));
        let s = st(&[("c;a;b", 47), (&deep, 1)]);
        // One sample of 48 is under a 3% share: only `c;a;b` is visible.
        assert_eq!(visible_depth(&s, 0.03), 3);
        assert_eq!(visible_depth(&s, 0.0), 121);
    }

    #[test]
    fn heavier_siblings_come_first_and_stay() {
        let mut a = Arranger::new();
        let f1 = st(&[("p;zeta", 90), ("p;alpha", 10)]);
        a.observe(&Prefixes::of(&f1), 2);
        assert_eq!(a.lines(f1, None), vec!["p;zeta 90", "p;alpha 10"]);
        // A frame where alpha is briefly ahead keeps the order the run
        // established (the running weight still favours zeta).
        let f2 = st(&[("p;zeta", 40), ("p;alpha", 60)]);
        a.observe(&Prefixes::of(&f2), 2);
        assert_eq!(a.lines(f2, None), vec!["p;zeta 40", "p;alpha 60"]);
        // Lines sharing a prefix stay together.
        let f3 = st(&[
            ("p;zeta;x", 5),
            ("q;y", 50),
            ("p;zeta;w", 5),
            ("p;alpha", 1),
        ]);
        a.observe(&Prefixes::of(&f3), 3);
        let l = a.lines(f3, None);
        let pos = |s: &str| l.iter().position(|x| x.starts_with(s)).unwrap();
        assert!(pos("p;zeta;x").abs_diff(pos("p;zeta;w")) == 1, "{l:?}");
    }

    #[test]
    fn cut_stacks_end_in_a_mark() {
        let a = Arranger::new();
        let l = a.lines(st(&[("c;a;b;d;e", 2), ("c;a;x", 1)]), Some(3));
        assert!(l.contains(&format!("c;a;{CUT_MARK} 2")), "{l:?}");
        assert!(l.contains(&"c;a;x 1".to_string()));
    }

    #[test]
    fn the_depth_lock_grows_at_once_and_shrinks_late() {
        let mut a = Arranger::new();
        let none = Prefixes::default();
        assert_eq!(a.observe(&none, 5), MIN_DEPTH);
        assert_eq!(a.observe(&none, 30), 32);
        for _ in 0..SHRINK_AFTER - 1 {
            assert_eq!(a.observe(&none, 10), 32);
        }
        assert_eq!(
            a.observe(&none, 10),
            MIN_DEPTH.div_ceil(DEPTH_STEP) * DEPTH_STEP
        );
    }

    #[test]
    fn diffs_say_what_grew() {
        let mut a = Arranger::new();
        a.deltas(&["p;a 50".to_string(), "p;b 50".to_string()]);
        let d = a.deltas(&["p;a 80".to_string(), "p;b 20".to_string()]);
        assert!((d[&prefix_hash("p;a")] - 30.0).abs() < 1e-3);
        assert!((d[&prefix_hash("p;b")] + 30.0).abs() < 1e-3);
        assert!(d[&prefix_hash("p")].abs() < 1e-3);
    }
}
