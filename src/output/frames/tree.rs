//! A frame's flame graph as a tree, built straight from the profile model.
//!
//! Stacks arrive as name ids (see [`super::names`]): building a tree is one
//! small lookup per frame of each stack on compact bars, and never
//! formats, splits or hashes stack strings. [`TreeBuilder::seal`] names the
//! bars and gives each its path hash; [`RawTree::finish`] cuts the tree to
//! the canvas and orders it. The finished [`FlameTree`] is what the
//! renderers lay out and what folded text (the SVG route, the live page's
//! downloads) is written from.
//!
//! Nodes are kept breadth first, each node's children next to each other in
//! drawing order, each with the sample offset where it starts: layout is a
//! single pass.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::arrange::{extend_hash, name_hash, CUT_MARK};
pub use super::names::{Name, NameId, Namer, Naming};
use crate::profile::Profile;

/// One bar of the flame graph.
#[derive(Debug, Clone)]
pub struct Node {
    /// The drawn name ("all" for the root).
    pub name: Name,
    /// [`extend_hash`] of the path from the root: identifies the bar from
    /// one frame to the next (0 for the root).
    pub hash: u64,
    /// The parent's index (the root's own is 0).
    pub parent: u32,
    /// 0 for the root, 1 for the process (comm).
    pub depth: u32,
    /// Samples in this bar.
    pub total: u64,
    /// Samples whose stack ends here.
    pub self_count: u64,
    /// Where the bar starts, in samples from the left edge.
    pub start: u64,
    /// The index of the depth-1 ancestor (the process), 0 for the root.
    pub comm: u32,
    first_child: u32,
    children: u32,
}

impl Node {
    /// Indices of the children, in drawing order.
    pub fn children(&self) -> std::ops::Range<usize> {
        self.first_child as usize..(self.first_child + self.children) as usize
    }
}

/// A tree being built from interned name ids: bars in the order first
/// seen. Children are found by walking the parent's short list (most bars
/// have a few children), or, for a parent with many, by (parent, name) in
/// a hash index. Compact on purpose: this is the hot loop of frame making.
#[derive(Debug)]
pub struct TreeBuilder {
    bars: Vec<Bar>,
    index: FxHashMap<(u32, NameId), u32>,
}

/// A bar being built.
#[derive(Debug, Clone, Copy)]
struct Bar {
    name: NameId,
    parent: u32,
    /// First child and next sibling (`NONE`: none).
    first: u32,
    next: u32,
    children: u32,
    total: u64,
    self_count: u64,
}

/// No bar.
const NONE: u32 = u32::MAX;
/// Children a parent has before its children are indexed by hash.
const INDEX_FROM: u32 = 8;

impl Default for TreeBuilder {
    fn default() -> Self {
        TreeBuilder::with_capacity(1)
    }
}

impl TreeBuilder {
    /// An empty tree (the root only), with room for `bars` bars.
    pub fn with_capacity(bars: usize) -> TreeBuilder {
        let mut b = TreeBuilder {
            bars: Vec::with_capacity(bars),
            index: FxHashMap::default(),
        };
        b.bars.push(Bar {
            name: NameId::MAX,
            parent: 0,
            first: NONE,
            next: NONE,
            children: 0,
            total: 0,
            self_count: 0,
        });
        b
    }

    fn child(&self, at: u32, name: NameId) -> Option<u32> {
        let parent = &self.bars[at as usize];
        if parent.children >= INDEX_FROM {
            return self.index.get(&(at, name)).copied();
        }
        let mut c = parent.first;
        while c != NONE {
            let bar = &self.bars[c as usize];
            if bar.name == name {
                return Some(c);
            }
            c = bar.next;
        }
        None
    }

    fn new_child(&mut self, at: u32, name: NameId) -> u32 {
        let i = self.bars.len() as u32;
        let parent = &mut self.bars[at as usize];
        let next = parent.first;
        parent.first = i;
        parent.children += 1;
        let children = parent.children;
        self.bars.push(Bar {
            name,
            parent: at,
            first: NONE,
            next,
            children: 0,
            total: 0,
            self_count: 0,
        });
        match children.cmp(&INDEX_FROM) {
            std::cmp::Ordering::Less => {}
            std::cmp::Ordering::Equal => {
                let mut c = i;
                while c != NONE {
                    let bar = self.bars[c as usize];
                    self.index.insert((at, bar.name), c);
                    c = bar.next;
                }
            }
            std::cmp::Ordering::Greater => {
                self.index.insert((at, name), i);
            }
        }
        i
    }

    /// Adds `n` samples of a stack (name ids root first).
    pub fn add(&mut self, names: &[NameId], n: u64) {
        let mut at = 0u32;
        self.bars[0].total += n;
        for &name in names {
            let next = match self.child(at, name) {
                Some(c) => c,
                None => self.new_child(at, name),
            };
            self.bars[next as usize].total += n;
            at = next;
        }
        self.bars[at as usize].self_count += n;
    }

    /// A profile's stacks, named by `namer`; `hint`: bars to make room for.
    pub fn of_profile(profile: &Profile, namer: &mut Namer, hint: usize) -> TreeBuilder {
        let mut b = TreeBuilder::with_capacity(hint.max(1));
        let mut names = Vec::with_capacity(64);
        for (key, n) in &profile.counts {
            namer.stack(key, &mut names);
            b.add(&names, *n);
        }
        b
    }

    /// The tree with its names, and each bar's path hash: ready to be
    /// measured, then cut and ordered.
    pub fn seal(self, namer: &Namer) -> RawTree {
        let mut nodes: Vec<Node> = Vec::with_capacity(self.bars.len());
        let root: Name = Arc::from("all");
        for (i, bar) in self.bars.iter().enumerate() {
            // Parents come before their children.
            let (name, hash, depth, comm) = if i == 0 {
                (root.clone(), 0, 0, 0)
            } else {
                let parent = &nodes[bar.parent as usize];
                let name = namer.name(bar.name).clone();
                let hash = extend_hash(parent.hash, namer.hash(bar.name));
                let comm = if parent.depth == 0 {
                    i as u32
                } else {
                    parent.comm
                };
                (name, hash, parent.depth + 1, comm)
            };
            nodes.push(Node {
                name,
                hash,
                parent: bar.parent,
                depth,
                total: bar.total,
                self_count: bar.self_count,
                start: 0,
                comm,
                first_child: 0,
                children: 0,
            });
        }
        let links = self.bars.iter().map(|b| (b.first, b.next)).collect();
        RawTree { nodes, links }
    }
}

/// A tree built and named, not yet cut to the canvas or ordered.
#[derive(Debug)]
pub struct RawTree {
    nodes: Vec<Node>,
    /// The builder's child lists: each bar's first child and next sibling
    /// (`NONE`: none), newest first.
    links: Vec<(u32, u32)>,
}

impl RawTree {
    /// Bars (the root included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the tree is the root alone.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() == 1
    }

    /// Samples in the tree.
    pub fn total(&self) -> u64 {
        self.nodes[0].total
    }

    /// Every bar but the root: (path hash, samples, depth).
    pub fn prefixes(&self) -> impl Iterator<Item = (u64, u64, u32)> + '_ {
        self.nodes[1..].iter().map(|n| (n.hash, n.total, n.depth))
    }

    /// The processes (depth-1 bars) with their samples.
    pub fn processes(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        self.nodes[1..]
            .iter()
            .filter(|n| n.depth == 1)
            .map(|n| (n.name.as_ref(), n.total))
    }

    /// The depth (frames, comm included) of the deepest bar holding at
    /// least `min_share` of the samples: what can be seen at all.
    pub fn visible_depth(&self, min_share: f64) -> usize {
        let total = self.total();
        if total == 0 {
            return 0;
        }
        let min = (min_share * total as f64).max(1.0);
        self.prefixes()
            .filter(|(_, n, _)| *n as f64 >= min)
            .map(|(_, _, d)| d as usize)
            .max()
            .unwrap_or(0)
    }

    /// The finished tree: stacks deeper than `cap` frames cut (their last
    /// kept frame replaced by [`CUT_MARK`]), siblings ordered by `key`
    /// (smallest first).
    pub fn finish<K: Ord>(self, cap: Option<usize>, key: impl Fn(&Node) -> K) -> FlameTree {
        let RawTree { mut nodes, links } = self;
        let cap = cap.map(|c| c.max(2) as u32);
        // Cutting: a bar at the cap keeps only the stacks that end there;
        // what went deeper becomes one marked bar under its parent.
        let mut cut_marks: Vec<Node> = Vec::new();
        let mut mark_of: FxHashMap<u32, usize> = FxHashMap::default();
        if let Some(cap) = cap {
            let at_cap: Vec<usize> = (1..nodes.len())
                .filter(|&i| nodes[i].depth == cap)
                .collect();
            for i in at_cap {
                let deeper = nodes[i].total - nodes[i].self_count;
                if deeper == 0 {
                    continue;
                }
                nodes[i].total = nodes[i].self_count;
                let p = nodes[i].parent;
                let m = *mark_of.entry(p).or_insert_with(|| {
                    let parent = &nodes[p as usize];
                    cut_marks.push(Node {
                        name: Arc::from(CUT_MARK),
                        hash: extend_hash(parent.hash, name_hash(CUT_MARK)),
                        parent: p,
                        depth: cap,
                        total: 0,
                        self_count: 0,
                        start: 0,
                        comm: parent.comm,
                        first_child: 0,
                        children: 0,
                    });
                    cut_marks.len() - 1
                });
                cut_marks[m].total += deeper;
                cut_marks[m].self_count += deeper;
            }
        }
        let kept = |n: &Node| cap.is_none_or(|c| n.depth <= c) && n.total > 0;
        // Breadth first, siblings in order (a stable sort: equal keys keep
        // the order first seen).
        let mut out: Vec<Node> = Vec::with_capacity(nodes.len() + cut_marks.len());
        out.push(nodes[0].clone());
        let mut queue: Vec<(Option<u32>, usize)> = vec![(Some(0), 0)];
        let mut qi = 0;
        let mut siblings: Vec<(Option<u32>, &Node)> = Vec::new();
        while qi < queue.len() {
            let (old, new) = queue[qi];
            qi += 1;
            let Some(old) = old else { continue };
            siblings.clear();
            let mut k = links[old as usize].0;
            while k != NONE {
                if kept(&nodes[k as usize]) {
                    siblings.push((Some(k), &nodes[k as usize]));
                }
                k = links[k as usize].1;
            }
            // The builder's lists are newest first.
            siblings.reverse();
            if let Some(&m) = mark_of.get(&old) {
                siblings.push((None, &cut_marks[m]));
            }
            siblings.sort_by_cached_key(|(_, n)| key(n));
            let mut cursor = out[new].start + out[new].self_count;
            let parent_comm = out[new].comm;
            out[new].first_child = out.len() as u32;
            out[new].children = siblings.len() as u32;
            for &(k, n) in &siblings {
                let idx = out.len();
                let mut n = n.clone();
                n.parent = new as u32;
                n.start = cursor;
                n.comm = if n.depth == 1 {
                    idx as u32
                } else {
                    parent_comm
                };
                n.first_child = idx as u32;
                n.children = 0;
                cursor += n.total;
                out.push(n);
                queue.push((k, idx));
            }
        }
        FlameTree { nodes: out }
    }
}

/// A finished flame graph (see the module's doc).
#[derive(Debug, Clone)]
pub struct FlameTree {
    nodes: Vec<Node>,
}

impl Default for FlameTree {
    fn default() -> Self {
        TreeBuilder::default()
            .seal(&Namer::default())
            .finish(None, |_| ())
    }
}

impl FlameTree {
    /// Folded lines (`stack count`) in the order given, siblings in the
    /// order first seen: what `render_bench`, tests and imports of
    /// another tool's frames draw.
    pub fn from_folded(lines: &[String]) -> FlameTree {
        let mut namer = Namer::default();
        let mut b = TreeBuilder::default();
        let mut names = Vec::new();
        for line in lines {
            let Some((stack, n)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            names.clear();
            for f in stack.split(';') {
                let name = namer.intern(f);
                names.push(name);
            }
            b.add(&names, n);
        }
        b.seal(&namer).finish(None, |_| ())
    }

    /// Every bar, root first, breadth first.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Samples in the graph.
    pub fn total(&self) -> u64 {
        self.nodes[0].total
    }

    /// Whether the graph holds no sample.
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    /// A bar's children, in drawing order.
    pub fn children(&self, i: usize) -> &[Node] {
        &self.nodes[self.nodes[i].children()]
    }

    /// The processes (depth-1 bars) with their samples, biggest first.
    pub fn processes(&self) -> Vec<(&str, u64)> {
        let mut v: Vec<(&str, u64)> = self
            .children(0)
            .iter()
            .map(|n| (n.name.as_ref(), n.total))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v
    }

    /// The path of a bar (`comm;a;b`; "" for the root).
    #[cfg(test)]
    fn path(&self, mut i: usize) -> String {
        let mut parts = Vec::new();
        while i != 0 {
            parts.push(self.nodes[i].name.as_ref());
            i = self.nodes[i].parent as usize;
        }
        parts.reverse();
        parts.join(";")
    }

    /// Folded lines (`stack count`), depth first in drawing order: inferno,
    /// told not to sort, draws the same graph from them.
    pub fn folded_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut path = String::new();
        self.walk_lines(0, &mut path, &mut out);
        out
    }

    fn walk_lines(&self, i: usize, path: &mut String, out: &mut Vec<String>) {
        let node = &self.nodes[i];
        let len = path.len();
        if i != 0 {
            if !path.is_empty() {
                path.push(';');
            }
            path.push_str(&node.name);
            if node.self_count > 0 {
                out.push(format!("{path} {}", node.self_count));
            }
        }
        for c in node.children() {
            self.walk_lines(c, path, out);
        }
        path.truncate(len);
    }

    /// About the memory the tree holds (names are shared with other
    /// trees, so counted as pointers).
    pub fn heap_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node>()
    }

    /// Appends the tree to `out`, compactly: each name once, numbers as
    /// varints (about a fifth of its size in memory). The live page keeps
    /// its older frames this way, on disk; [`FlameTree::decode`] reads it.
    pub fn encode(&self, out: &mut Vec<u8>) {
        use prost::encoding::encode_varint;
        let mut ids: FxHashMap<&str, u64> = FxHashMap::default();
        let mut names: Vec<&str> = Vec::new();
        let name_ids: Vec<u64> = self
            .nodes
            .iter()
            .map(|n| {
                *ids.entry(&n.name).or_insert_with(|| {
                    names.push(&n.name);
                    names.len() as u64 - 1
                })
            })
            .collect();
        encode_varint(names.len() as u64, out);
        for name in names {
            encode_varint(name.len() as u64, out);
            out.extend_from_slice(name.as_bytes());
        }
        encode_varint(self.nodes.len() as u64, out);
        for (n, id) in self.nodes.iter().zip(name_ids) {
            encode_varint(id, out);
            out.extend_from_slice(&n.hash.to_le_bytes());
            for v in [
                u64::from(n.parent),
                u64::from(n.depth),
                n.total,
                n.self_count,
                n.start,
                u64::from(n.comm),
                u64::from(n.first_child),
                u64::from(n.children),
            ] {
                encode_varint(v, out);
            }
        }
    }

    /// Reads a tree [`FlameTree::encode`] wrote at the start of `buf`, and
    /// moves `buf` past it; None if it is not one (cut short, or indices
    /// that point outside it).
    pub fn decode(buf: &mut &[u8]) -> Option<FlameTree> {
        use prost::encoding::decode_varint;
        let varint = |buf: &mut &[u8]| decode_varint(buf).ok();
        let count = |buf: &mut &[u8], v: u64| (v <= buf.len() as u64).then_some(v as usize);
        let n = varint(buf)?;
        let n = count(buf, n)?;
        let mut names: Vec<Name> = Vec::with_capacity(n);
        for _ in 0..n {
            let len = varint(buf)?;
            let len = count(buf, len)?;
            let (name, rest) = buf.split_at(len);
            names.push(Name::from(std::str::from_utf8(name).ok()?));
            *buf = rest;
        }
        let n = varint(buf)?;
        let n = count(buf, n)?;
        let mut nodes = Vec::with_capacity(n);
        for _ in 0..n {
            let name = names.get(usize::try_from(varint(buf)?).ok()?)?.clone();
            let (hash, rest) = buf.split_first_chunk::<8>()?;
            let hash = u64::from_le_bytes(*hash);
            *buf = rest;
            let mut v = [0u64; 8];
            for x in &mut v {
                *x = varint(buf)?;
            }
            let small = |x: u64| u32::try_from(x).ok();
            nodes.push(Node {
                name,
                hash,
                parent: small(v[0])?,
                depth: small(v[1])?,
                total: v[2],
                self_count: v[3],
                start: v[4],
                comm: small(v[5])?,
                first_child: small(v[6])?,
                children: small(v[7])?,
            });
        }
        // Every index inside the tree: layout follows them unchecked.
        let len = nodes.len() as u64;
        let inside = |n: &Node| {
            u64::from(n.parent) < len
                && u64::from(n.comm) < len
                && u64::from(n.first_child) + u64::from(n.children) <= len
        };
        (!nodes.is_empty() && nodes.iter().all(inside)).then_some(FlameTree { nodes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_reads_back_as_written_and_a_cut_one_does_not() {
        let t = tree(&["c;a;x 2", "c;a;y 3", "c;b 5", "d;a 1"]);
        let mut bytes = Vec::new();
        t.encode(&mut bytes);
        bytes.extend_from_slice(b"next");
        let mut buf = &bytes[..];
        let back = FlameTree::decode(&mut buf).unwrap();
        assert_eq!(buf, b"next", "the reader stops where the tree ends");
        assert_eq!(back.folded_lines(), t.folded_lines());
        for (a, b) in back.nodes().iter().zip(t.nodes()) {
            assert_eq!(
                (&a.name, a.hash, a.parent, a.depth, a.total, a.start, a.comm),
                (&b.name, b.hash, b.parent, b.depth, b.total, b.start, b.comm)
            );
            assert_eq!((a.first_child, a.children), (b.first_child, b.children));
        }
        let whole = bytes.len() - 4;
        for cut in 0..whole {
            assert!(
                FlameTree::decode(&mut &bytes[..cut]).is_none(),
                "cut at {cut}"
            );
        }
    }

    fn tree(lines: &[&str]) -> FlameTree {
        let v: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        FlameTree::from_folded(&v)
    }

    #[test]
    fn merges_like_a_flame_graph() {
        let t = tree(&["c;a;x 2", "c;a;y 3", "c;b 5"]);
        assert_eq!(t.total(), 10);
        let find = |name: &str| t.nodes().iter().position(|n| &*n.name == name).unwrap();
        let n = |name: &str| &t.nodes()[find(name)];
        assert_eq!((n("c").start, n("c").total), (0, 10));
        assert_eq!((n("a").start, n("a").total), (0, 5));
        assert_eq!((n("y").start, n("y").total), (2, 3));
        assert_eq!((n("b").start, n("b").total), (5, 5));
        assert_eq!(t.path(find("y")), "c;a;y");
        assert_eq!(t.nodes().len(), 6);
        assert_eq!(t.folded_lines(), vec!["c;a;x 2", "c;a;y 3", "c;b 5"]);
        assert_eq!(n("y").comm as usize, find("c"));
    }

    #[test]
    fn self_samples_sit_left_of_the_children() {
        let t = tree(&["c;a 4", "c;a;b 6"]);
        let b = t.nodes().iter().find(|n| &*n.name == "b").unwrap();
        assert_eq!(b.start, 4);
        assert_eq!(t.folded_lines(), vec!["c;a 4", "c;a;b 6"]);
    }

    #[test]
    fn stacks_deeper_than_the_cap_end_in_a_mark() {
        let mut namer = Namer::default();
        let mut b = TreeBuilder::default();
        for (s, n) in [("c;a;b;d;e", 2), ("c;a;x", 1), ("c;a;b", 3)] {
            let names: Vec<NameId> = s.split(';').map(|f| namer.intern(f)).collect();
            b.add(&names, n);
        }
        let b = b.seal(&namer);
        assert_eq!(b.visible_depth(0.0), 5);
        let t = b.finish(Some(3), |n| n.name.clone());
        let mut lines = t.folded_lines();
        lines.sort();
        assert_eq!(lines, vec!["c;a;[+ deeper] 2", "c;a;b 3", "c;a;x 1"]);
        assert_eq!(t.total(), 6);
    }
}
