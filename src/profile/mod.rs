//! The profile model: symbolized stacks with their counts, and the account of
//! samples lost. Pure data; imports nothing from the rest of the crate, so
//! every output (and tests) can build and read profiles without BPF.

pub mod modes;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Samples per stack. Keys hash with FxHash: a stack key's frames carry
/// precomputed hashes, so hashing a key is a few multiplies instead of a
/// SipHash pass over every frame (a fifth of reading a recording).
pub type StackCounts = HashMap<StackKey, u64, rustc_hash::FxBuildHasher>;

/// A symbol name, shared between every stack that contains it.
pub type Symbol = Arc<str>;

/// What is known of one frame: its name, and, when known, the module it
/// came from, its offset from the symbol's start and its address (as the
/// stack walk gave it: a return address for every frame but the leaf).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrameInfo {
    /// Function name (demangled), or `[unknown]`.
    pub name: Symbol,
    /// The module: a binary's file name (`libc.so.6`), `kernel`, or None.
    pub module: Option<Symbol>,
    /// `address - symbol start`, when the address was symbolized.
    pub offset: Option<u64>,
    /// The address, when the frame came from a stack walk.
    pub addr: Option<u64>,
    /// Source file and line, where the binary's DWARF says.
    pub source: Option<(Symbol, u32)>,
    /// The mapping the address was in (user frames of a live run).
    pub mapping: Option<Arc<MappingInfo>>,
}

/// A file mapping of a process, as pprof describes one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MappingInfo {
    /// The file's path as the process saw it.
    pub path: Symbol,
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// File offset of `start`.
    pub file_offset: u64,
    /// The ELF build id, hex, when the file has one.
    pub build_id: Option<Symbol>,
}

/// One frame of a stack. Cheap to clone (shared), compared by content; it
/// reads as its name (`&*frame` is the name), which is all that folded
/// output and flame graphs use. Frames at different addresses of the same
/// function are different frames: outputs that print names only merge them.
///
/// Its hash is computed once, when it is made: stacks are hashed frame by
/// frame in every profile map, and hashing each frame's names and mapping
/// paths again each time was a tenth of the profiler's CPU at 999 Hz.
#[derive(Clone)]
pub struct Frame(Arc<HashedFrame>);

struct HashedFrame {
    info: FrameInfo,
    hash: u64,
}

impl std::ops::Deref for HashedFrame {
    type Target = FrameInfo;

    fn deref(&self) -> &FrameInfo {
        &self.info
    }
}

impl PartialEq for Frame {
    fn eq(&self, other: &Frame) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
            || (self.0.hash == other.0.hash && self.0.info == other.0.info)
    }
}

impl Eq for Frame {}

impl std::hash::Hash for Frame {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.hash);
    }
}

impl PartialOrd for Frame {
    fn partial_cmp(&self, other: &Frame) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Frame {
    fn cmp(&self, other: &Frame) -> std::cmp::Ordering {
        self.0.info.cmp(&other.0.info)
    }
}

impl Frame {
    /// A frame with all it is known by.
    pub fn new(info: FrameInfo) -> Frame {
        use std::hash::{Hash, Hasher};
        // Fixed keys: equal frames hash equally in every map of the run.
        let mut h = std::hash::DefaultHasher::new();
        info.hash(&mut h);
        Frame(Arc::new(HashedFrame {
            hash: h.finish(),
            info,
        }))
    }

    /// A frame known only by name (folded input, tests).
    pub fn named(name: impl Into<Symbol>) -> Frame {
        Frame::new(FrameInfo {
            name: name.into(),
            module: None,
            offset: None,
            addr: None,
            source: None,
            mapping: None,
        })
    }

    /// The same frame, in `mapping`.
    pub fn with_mapping(self, mapping: Arc<MappingInfo>) -> Frame {
        let mut info = match Arc::try_unwrap(self.0) {
            Ok(h) => h.info,
            Err(shared) => shared.info.clone(),
        };
        info.mapping = Some(mapping);
        Frame::new(info)
    }

    /// This copy's identity: equal for clones of one frame, and never
    /// reused while a clone is kept (a cache that keeps the frame may key
    /// by it).
    pub fn identity(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }

    /// Everything known of the frame.
    pub fn info(&self) -> &FrameInfo {
        &self.0.info
    }

    /// The name as a shared symbol.
    pub fn symbol(&self) -> &Symbol {
        &self.0.name
    }

    /// The name flame graphs and folded lines show: a frame with no symbol
    /// in a known module is drawn as its module (`[libfoo.so]`), as perf
    /// and inferno draw it; any other frame as its name.
    pub fn display_name(&self) -> std::borrow::Cow<'_, str> {
        match &self.0.module {
            Some(m) if &*self.0.name == "[unknown]" => {
                if m.starts_with('[') {
                    std::borrow::Cow::Borrowed(m)
                } else {
                    std::borrow::Cow::Owned(format!("[{m}]"))
                }
            }
            _ => std::borrow::Cow::Borrowed(&self.0.name),
        }
    }
}

impl std::ops::Deref for Frame {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0.name
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.name)?;
        if let Some(off) = self.0.offset {
            write!(f, "+{off:#x}")?;
        }
        if let Some(m) = &self.0.module {
            write!(f, " [{m}]")?;
        }
        Ok(())
    }
}

impl From<&str> for Frame {
    fn from(name: &str) -> Frame {
        Frame::named(name)
    }
}

/// One half (user or kernel) of a sampled stack.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stack {
    /// Nothing to show: not collected (-U / -K), or no such stack (a user-mode
    /// sample has no kernel stack: bpf_get_stackid returns -EFAULT).
    Absent,
    /// The stack was lost: stack-map hash collision or the map was full.
    /// Printed as `[Missed User Stack]` / `[Missed Kernel Stack]`.
    Missed,
    /// Frames, leaf first.
    Frames(Vec<Frame>),
}

impl Stack {
    /// The frames' names, leaf first (empty when absent or missed).
    pub fn names(&self) -> Vec<&str> {
        match self {
            Stack::Frames(f) => f.iter().map(|f| &**f).collect(),
            _ => Vec::new(),
        }
    }

    /// The frames' display names ([`Frame::display_name`]), leaf first.
    pub fn display_names(&self) -> Vec<String> {
        match self {
            Stack::Frames(f) => f.iter().map(|f| f.display_name().into_owned()).collect(),
            _ => Vec::new(),
        }
    }
}

/// What identifies a line of output: who was sampled, and where.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StackKey {
    /// Thread name (profile.py's `comm`).
    pub comm: String,
    /// Process id (tgid).
    pub pid: u32,
    /// User stack.
    pub user: Stack,
    /// Kernel stack.
    pub kernel: Stack,
}

/// How many samples were taken and where those not in the profile went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LossReport {
    /// Samples the BPF program took (passed the filters).
    pub taken: u64,
    /// Samples that are in the profile.
    pub counted: u64,
    /// Samples dropped because the counts hash was full.
    pub lost_hash_full: u64,
    /// Samples the drain could not wait for (a program still running).
    pub lost_in_flight: u64,
    /// Distinct BPF keys whose user or kernel stack was missed (profile.py's
    /// "stack traces could not be displayed").
    pub missing_stacks: u64,
    /// Samples (within `counted`) with a missed stack.
    pub missed_stack_samples: u64,
    /// Whether any stack was missed for want of room in the stack maps (a
    /// hash collision, or a full map): profile.py's cue to suggest a
    /// larger --stack-storage-size.
    pub stack_collision: bool,
    /// How user stacks were walked (`--unwind`), in samples.
    pub unwind: crate::sampler::UnwindCounts,
}

impl LossReport {
    /// Samples taken but not in the profile.
    pub fn lost(&self) -> u64 {
        self.lost_hash_full.saturating_add(self.lost_in_flight)
    }

    /// Adds another interval's account to this one.
    pub fn add(&mut self, other: &LossReport) {
        // Saturating: counts read from a file can be anything, and a total
        // that wraps to a small number would be a lie.
        self.taken = self.taken.saturating_add(other.taken);
        self.counted = self.counted.saturating_add(other.counted);
        self.lost_hash_full = self.lost_hash_full.saturating_add(other.lost_hash_full);
        self.lost_in_flight = self.lost_in_flight.saturating_add(other.lost_in_flight);
        self.missing_stacks = self.missing_stacks.saturating_add(other.missing_stacks);
        self.missed_stack_samples = self
            .missed_stack_samples
            .saturating_add(other.missed_stack_samples);
        self.stack_collision |= other.stack_collision;
        self.unwind.add(&other.unwind);
    }
}

/// The samples of one interval (or of several merged), symbolized.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    /// Index of the first interval this profile covers (0-based).
    pub index: u64,
    /// Start, relative to the start of sampling.
    pub start: Duration,
    /// Time covered.
    pub duration: Duration,
    /// Sample count per stack; each key appears once.
    pub counts: StackCounts,
    /// Samples taken and lost.
    pub loss: LossReport,
}

impl Profile {
    /// Total samples in the profile.
    pub fn samples(&self) -> u64 {
        self.counts
            .values()
            .fold(0u64, |sum, n| sum.saturating_add(*n))
    }

    /// Adds `n` samples of `key` (saturating).
    pub fn add(&mut self, key: StackKey, n: u64) {
        let c = self.counts.entry(key).or_insert(0);
        *c = c.saturating_add(n);
    }

    /// Merges a later profile into this one: counts add up and the covered
    /// time extends to the end of `other`.
    pub fn merge(&mut self, other: &Profile) {
        if self.counts.is_empty() && self.duration.is_zero() {
            self.index = other.index;
            self.start = other.start;
        }
        for (key, n) in &other.counts {
            self.add(key.clone(), *n);
        }
        self.loss.add(&other.loss);
        let end = (other.start + other.duration).max(self.start + self.duration);
        self.duration = end.saturating_sub(self.start);
    }

    /// The stacks sorted as profile.py prints them: by count ascending (ties
    /// broken by key, so output is deterministic).
    pub fn sorted(&self) -> Vec<(&StackKey, u64)> {
        let mut v: Vec<_> = self.counts.iter().map(|(k, n)| (k, *n)).collect();
        v.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(b.0)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(comm: &str, user: &[&str]) -> StackKey {
        StackKey {
            comm: comm.into(),
            pid: 1,
            user: Stack::Frames(user.iter().map(|s| Frame::from(*s)).collect()),
            kernel: Stack::Absent,
        }
    }

    #[test]
    fn merge_adds_counts_and_time() {
        let mut a = Profile {
            duration: Duration::from_secs(1),
            ..Default::default()
        };
        a.add(key("x", &["f"]), 2);
        a.loss.taken = 3;
        a.loss.counted = 2;
        a.loss.lost_hash_full = 1;
        let mut b = Profile {
            index: 1,
            start: Duration::from_secs(1),
            duration: Duration::from_secs(1),
            ..Default::default()
        };
        b.add(key("x", &["f"]), 5);
        b.add(key("x", &["g"]), 1);
        b.loss.taken = 6;
        b.loss.counted = 6;
        a.merge(&b);
        assert_eq!(a.counts[&key("x", &["f"])], 7);
        assert_eq!(a.samples(), 8);
        assert_eq!(a.duration, Duration::from_secs(2));
        assert_eq!(a.loss.taken, 9);
        assert_eq!(a.loss.lost(), 1);
    }

    #[test]
    fn sorted_is_ascending_and_stable() {
        let mut p = Profile::default();
        p.add(key("b", &["f"]), 3);
        p.add(key("a", &["f"]), 3);
        p.add(key("c", &["f"]), 1);
        let order: Vec<_> = p
            .sorted()
            .iter()
            .map(|(k, n)| (k.comm.clone(), *n))
            .collect();
        assert_eq!(
            order,
            vec![("c".into(), 1), ("a".into(), 3), ("b".into(), 3)]
        );
    }
}
