//! How the frames of a flame graph are named: as folded output names them
//! (`-d`, `-a`), with kernel and JIT marks for `--colors kernel`, towers of
//! one frame collapsed to `name ×N`.
//!
//! A [`Namer`] names each [`Frame`] once per run and interns every name as
//! a small id: turning a stack into names is a pointer-keyed lookup per
//! frame, with no string formatted, hashed or reference-counted.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::output::folded::{for_each_part, FrameKind, Part, KERNEL_ANNOTATION};
use crate::output::StackFormat;
use crate::profile::{Frame, StackKey};

/// A drawn name, shared by every node and tree that uses it.
pub type Name = Arc<str>;

/// An interned name: an index into its [`Namer`]'s names.
pub type NameId = u32;

/// Identical frames in a row drawn as one bar from this many.
const RUN_MIN: usize = 3;

/// Entries a namer keeps before starting afresh (bounded memory in a long
/// live run whose frames keep changing: JIT code, short-lived processes).
/// Each entry holds its frame alive (~200 bytes with its name): at 2^20 a
/// soak under process churn and a JIT grew 20 MB a minute for most of an
/// hour; a whole-system interval names ~10-30k frames, so 2^16 still
/// spares the work of naming them again from one frame to the next.
const NAMER_LIMIT: usize = 1 << 16;

/// How frames are named in the graph: as folded output names them (`-d`,
/// `-a`), and for `--colors kernel` with kernel frames marked `_[k]` and
/// JIT frames `_[j]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Naming {
    /// `-d`, `-U`, `-K` (and `-a`).
    pub format: StackFormat,
    /// Mark kernel frames `_[k]` (`-a` or `--colors kernel`).
    pub kernel_marks: bool,
    /// Mark JIT frames `_[j]` (`--colors kernel`).
    pub jit_marks: bool,
}

/// JIT code: a frame named from a process's perf map (`perf-PID.map`).
fn is_jit(frame: &Frame) -> bool {
    frame
        .info()
        .module
        .as_deref()
        .is_some_and(|m| m.starts_with("perf-") && m.ends_with(".map"))
}

/// Names frames and interns names, remembering both.
#[derive(Debug, Default)]
pub struct Namer {
    naming: Naming,
    names: Vec<Name>,
    /// Each name's [`super::arrange::name_hash`].
    hashes: Vec<u64>,
    ids: FxHashMap<Name, NameId>,
    /// By [`Frame::identity`]: the frame is kept, so the key stays its own.
    user: FxHashMap<usize, (Frame, NameId)>,
    kernel: FxHashMap<usize, (Frame, NameId)>,
}

impl Namer {
    /// A namer for one way of naming.
    pub fn new(naming: Naming) -> Namer {
        Namer {
            naming,
            ..Default::default()
        }
    }

    /// Whether the namer holds so much that it should start afresh. Only
    /// between trees: the ids of a tree being built point into it.
    pub fn full(&self) -> bool {
        self.user.len() + self.kernel.len() + self.names.len() > NAMER_LIMIT
    }

    /// The id of `s`, interned.
    pub fn intern(&mut self, s: &str) -> NameId {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.names.len() as NameId;
        let n: Name = Arc::from(s);
        self.names.push(n.clone());
        self.hashes.push(super::arrange::name_hash(s));
        self.ids.insert(n, id);
        id
    }

    /// The name of an id this namer gave.
    pub fn name(&self, id: NameId) -> &Name {
        &self.names[id as usize]
    }

    /// The hash of an id's name.
    pub fn hash(&self, id: NameId) -> u64 {
        self.hashes[id as usize]
    }

    fn frame(&mut self, frame: &Frame, kernel: bool) -> NameId {
        let cache = if kernel { &self.kernel } else { &self.user };
        if let Some((_, id)) = cache.get(&frame.identity()) {
            return *id;
        }
        let mut s = frame.display_name().into_owned();
        if kernel && self.naming.kernel_marks {
            s.push_str(KERNEL_ANNOTATION);
        } else if !kernel && self.naming.jit_marks && is_jit(frame) {
            s.push_str("_[j]");
        }
        let id = self.intern(&s);
        let cache = if kernel {
            &mut self.kernel
        } else {
            &mut self.user
        };
        cache.insert(frame.identity(), (frame.clone(), id));
        id
    }

    /// A stack's names, root first, as folded output orders them (see
    /// [`for_each_part`]); runs of one frame collapsed to `name ×N`. Into
    /// `out`, cleared first.
    pub fn stack(&mut self, key: &StackKey, out: &mut Vec<NameId>) {
        out.clear();
        let fmt = self.naming.format;
        for_each_part(key, &fmt, |part, kind| {
            let id = match part {
                Part::Text(s) => self.intern(s),
                Part::Frame(f) => self.frame(f, kind == FrameKind::Kernel),
            };
            out.push(id);
        });
        self.collapse_runs(out);
    }

    /// `a;b;b;b;b;c` -> `a;b ×4;c`.
    fn collapse_runs(&mut self, ids: &mut Vec<NameId>) {
        if !ids.windows(RUN_MIN).any(|w| w.iter().all(|n| *n == w[0])) {
            return;
        }
        let mut out = Vec::with_capacity(ids.len());
        let mut i = 0;
        while i < ids.len() {
            let mut j = i + 1;
            while j < ids.len() && ids[j] == ids[i] {
                j += 1;
            }
            if j - i >= RUN_MIN {
                let s = format!("{} \u{d7}{}", self.name(ids[i]), j - i);
                out.push(self.intern(&s));
            } else {
                out.extend_from_slice(&ids[i..j]);
            }
            i = j;
        }
        *ids = out;
    }

    /// Names of ids, joined as a folded stack (tests).
    #[cfg(test)]
    fn joined(&self, ids: &[NameId]) -> String {
        let v: Vec<&str> = ids.iter().map(|i| self.name(*i).as_ref()).collect();
        v.join(";")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::folded::folded_stack;
    use crate::profile::Stack;

    #[test]
    fn towers_collapse() {
        let mut namer = Namer::default();
        let a = namer.intern("a");
        let b = namer.intern("b");
        let mut v = vec![a, b, b, b, b, a];
        namer.collapse_runs(&mut v);
        assert_eq!(namer.joined(&v), "a;b \u{d7}4;a");
        let mut v = vec![a, b, b, a];
        namer.collapse_runs(&mut v);
        assert_eq!(v.len(), 4);
    }

    #[test]
    fn stacks_are_named_as_folded_output_names_them() {
        let unknown_in = |m: &str| {
            Frame::new(crate::profile::FrameInfo {
                name: "[unknown]".into(),
                module: Some(m.into()),
                offset: None,
                addr: None,
                source: None,
                mapping: None,
            })
        };
        let keys = [
            StackKey {
                comm: "app".into(),
                pid: 1,
                user: Stack::Frames(vec![
                    Frame::named("leaf"),
                    unknown_in("libx.so"),
                    Frame::named("main"),
                ]),
                kernel: Stack::Frames(vec![Frame::named("do_sys")]),
            },
            StackKey {
                comm: "app".into(),
                pid: 1,
                user: Stack::Missed,
                kernel: Stack::Missed,
            },
            StackKey {
                comm: "k".into(),
                pid: 0,
                user: Stack::Absent,
                kernel: Stack::Frames(vec![Frame::named("idle"), Frame::named("start")]),
            },
        ];
        for (_, fmt) in crate::output::test_data::formats() {
            let mut namer = Namer::new(Naming {
                format: fmt,
                kernel_marks: fmt.annotations,
                jit_marks: false,
            });
            let mut out = Vec::new();
            for key in &keys {
                namer.stack(key, &mut out);
                assert_eq!(namer.joined(&out), folded_stack(key, &fmt), "{fmt:?}");
            }
        }
    }

    #[test]
    fn kernel_colours_mark_kernel_and_jit_frames() {
        use crate::profile::FrameInfo as Info;
        let jit = Frame::new(Info {
            name: "LazyCompile:*fib".into(),
            module: Some("perf-42.map".into()),
            offset: None,
            addr: None,
            source: None,
            mapping: None,
        });
        let key = StackKey {
            comm: "node".into(),
            pid: 42,
            user: Stack::Frames(vec![jit, Frame::from("main")]),
            kernel: Stack::Frames(vec![Frame::from("sys_read")]),
        };
        let mut out = Vec::new();
        let mut marked = Namer::new(Naming {
            kernel_marks: true,
            jit_marks: true,
            ..Naming::default()
        });
        marked.stack(&key, &mut out);
        assert_eq!(
            marked.joined(&out),
            "node;main;LazyCompile:*fib_[j];sys_read_[k]"
        );
        let mut plain = Namer::default();
        plain.stack(&key, &mut out);
        assert_eq!(plain.joined(&out), "node;main;LazyCompile:*fib;sys_read");
    }
}
