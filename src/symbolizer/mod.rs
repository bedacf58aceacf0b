//! The symbolizer: turns an [`Interval`]'s addresses into frames with
//! blazesym (kallsyms for the kernel; ELF symbols and DWARF for files; the
//! process's perf map for JIT code; Rust and C++ demangled).
//!
//! User addresses go through the [`ProcessModel`]: the address space the
//! sample was taken in says which file and file offset an address is, and
//! symbols are cached per file (device and inode), so a library mapped by
//! fifty processes is read and symbolized once, and a process that exec'd
//! is never named from its old binary. An address in a file with no symbol
//! for it keeps the file as its module (`[unknown]` in `libfoo.so`, drawn
//! `[libfoo.so]`).

mod debug_file;
mod frame_cache;
mod generations;
mod kernel_index;
mod kernel_text;
mod name_arena;
mod perf_map;
mod plt;
mod python_frames;
mod user_files;

use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::Arc;
use std::time::Duration;

use blazesym::symbolize::source::Source;
use blazesym::symbolize::{Input, Symbolized};

use self::frame_cache::{FrameAddr, FrameCache};
use self::generations::Generations;
use self::kernel_text::KernelText;
use self::user_files::{FileSyms, KEEP_FILE_INTERVALS};
use crate::collector::{Interval, RawStack};
use crate::process::maps::Mapping;
use crate::process::{AspaceId, FileId, ProcessModel};
use crate::profile::{Frame, FrameInfo, Profile, Stack, StackKey, Symbol};

/// What an address with no symbol prints as (profile.py's word).
pub const UNKNOWN: &str = "[unknown]";

/// Sampling time a generation of the frame and symbol caches lasts (see
/// [`generations`]).
const GENERATION: Duration = Duration::from_secs(10);

/// What blazesym said of one looked-up address.
#[derive(Clone)]
struct Resolved {
    name: Symbol,
    /// Offset of the looked-up address from the symbol's start.
    offset: u64,
    /// Source file and line, where DWARF says.
    source: Option<(Symbol, u32)>,
}

pub use perf_map::PerfMapStats;

/// How much symbolization cost, for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SymbolizerStats {
    /// File offsets looked up in ELF files.
    pub file_lookups: u64,
    /// Distinct files opened.
    pub files: u64,
    /// Addresses looked up through a live process (JIT perf maps, vDSO).
    pub process_lookups: u64,
    /// Kernel addresses looked up.
    pub kernel_lookups: u64,
    /// Which list named them (see [`kernel_text`]).
    pub kernel_list: &'static str,
    /// JIT perf maps: reads, bytes read, maps read whole again.
    pub perf_maps: PerfMapStats,
    /// JIT functions held from perf maps.
    pub perf_map_entries: u64,
    /// Bytes those functions take (entries and names).
    pub perf_map_bytes: u64,
    /// User frames cached at the end (see [`frame_cache`]).
    pub frames_cached: u64,
    /// Kernel frames cached at the end.
    pub kernel_frames_cached: u64,
    /// File offsets whose symbols are cached at the end, over all files.
    pub offsets_cached: u64,
    /// Python frames whose code object could not be read.
    pub python_unreadable: u64,
    /// Samples of interpreters this build can't read (their evaluator
    /// frames named `[python] ...`).
    pub python_unsupported: u64,
}

/// Symbolizes intervals; keeps its caches for the whole run.
pub struct Symbolizer {
    inner: blazesym::symbolize::Symbolizer,
    source_lines: bool,
    model: ProcessModel,
    kernel: Generations<FrameAddr, Frame>,
    /// Where kernel addresses are named from.
    kernel_text: KernelText,
    /// Frames of each address space, by walked address.
    user: FrameCache,
    /// Sampling time since the caches' current generation began.
    generation_age: Duration,
    files: FxHashMap<FileId, FileSyms>,
    /// Size of the files opened since blazesym was (re)started.
    opened_bytes: u64,
    /// Files opened since blazesym was (re)started.
    opened_files: u64,
    names: FxHashSet<Symbol>,
    unknown: Symbol,
    kernel_module: Symbol,
    stats: SymbolizerStats,
    /// JIT perf maps of the processes sampled.
    perf_maps: perf_map::PerfMaps,
    /// Intervals symbolized so far (perf maps refresh once per interval).
    intervals: u64,
    /// JIT addresses no perf map named yet: cached for this interval only,
    /// looked up again in the next.
    retry: Vec<(AspaceId, FrameAddr)>,
    /// Python processes' interpreters and code object names.
    python: crate::python::names::PythonNames,
}

impl Default for Symbolizer {
    fn default() -> Self {
        Self::new()
    }
}

/// A blazesym symbolizer as we use it: names, demangled, and source lines
/// if asked for.
fn blazesym_symbolizer(source_lines: bool) -> blazesym::symbolize::Symbolizer {
    blazesym::symbolize::Symbolizer::builder()
        // Source lines where DWARF has them, for pprof and speedscope:
        // parsing line tables is costly, so only when an output keeps them.
        .enable_code_info(source_lines)
        .enable_inlined_fns(false)
        .enable_demangling(true)
        .build()
}

impl Symbolizer {
    /// A symbolizer with empty caches.
    pub fn new() -> Self {
        Self::with_source_lines(true)
    }

    /// A symbolizer that looks up source lines only if `source_lines`
    /// (an output such as pprof, speedscope or a recording keeps them).
    pub fn with_source_lines(source_lines: bool) -> Self {
        let inner = blazesym_symbolizer(source_lines);
        Symbolizer {
            inner,
            source_lines,
            model: ProcessModel::new(),
            kernel: Generations::default(),
            kernel_text: KernelText::new(None),
            user: FrameCache::default(),
            generation_age: Duration::ZERO,
            files: FxHashMap::default(),
            opened_bytes: 0,
            opened_files: 0,
            names: FxHashSet::default(),
            unknown: Symbol::from(UNKNOWN),
            kernel_module: Symbol::from("kernel"),
            stats: SymbolizerStats::default(),
            perf_maps: perf_map::PerfMaps::new(),
            intervals: 0,
            retry: Vec::new(),
            python: Default::default(),
        }
    }

    /// Names core kernel addresses from a copy of their symbols kept in
    /// `dir` for the boot (see [`kernel_text`]), not from `/proc/kallsyms`.
    pub fn with_kernel_cache(mut self, dir: Option<Arc<crate::safe_file::SafeDir>>) -> Self {
        self.kernel_text = KernelText::new(dir);
        self
    }

    /// Names this profiler's own BPF programs (`own`, from the sampler)
    /// beside the boot's copy, so that they do not turn a run to
    /// `/proc/kallsyms`.
    pub fn with_own_programs(
        mut self,
        own: Vec<crate::sampler::own_symbols::KernelSymbol>,
    ) -> Self {
        self.kernel_text =
            std::mem::replace(&mut self.kernel_text, KernelText::new(None)).with_own(own);
        self
    }

    /// An address space the sampler saw for the first time, with its maps
    /// as read then (None if the process was gone already).
    pub fn remember_process(&mut self, id: AspaceId, maps: Option<Arc<Vec<Mapping>>>) {
        self.model.seen(id, maps);
    }

    /// A process runs a CPython interpreter whose frames are sampled.
    pub fn remember_interpreter(&mut self, id: AspaceId, found: crate::python::Found) {
        self.python.remember(id, found);
    }

    /// A process exited: its `/proc` entries are no longer asked.
    pub fn process_exited(&mut self, id: AspaceId) {
        self.model.exited(id);
        self.python.exited(id);
    }

    /// What symbolization has cost so far.
    pub fn stats(&self) -> SymbolizerStats {
        SymbolizerStats {
            perf_maps: self.perf_maps.stats(),
            perf_map_entries: self.perf_maps.entries() as u64,
            perf_map_bytes: self.perf_maps.bytes() as u64,
            kernel_list: self.kernel_text.list(),
            frames_cached: self.user.len() as u64,
            kernel_frames_cached: self.kernel.len() as u64,
            offsets_cached: self.cached_offsets() as u64,
            python_unreadable: self.python.unreadable_frames,
            python_unsupported: self.python.unreadable_interpreter_frames,
            ..self.stats
        }
    }

    /// Symbolizes an interval into a profile. Stacks stay apart by address;
    /// outputs that print names only merge what prints the same.
    pub fn symbolize(&mut self, interval: &Interval) -> Profile {
        self.prefetch(interval);
        let mut profile = Profile {
            index: interval.index,
            start: interval.start,
            duration: interval.duration,
            loss: interval.loss,
            ..Default::default()
        };
        for s in &interval.samples {
            let id = AspaceId {
                pid: s.tgid,
                aspace: s.aspace,
            };
            let mut user = self.stack(&s.user, Some(id));
            if !s.python.is_empty() {
                user = self.with_python(user, id, &s.python);
            } else {
                user = self.name_unreadable_python(user, id, s.count);
            }
            let kernel = self.stack(&s.kernel, None);
            profile.add(
                StackKey {
                    comm: s.comm.clone(),
                    pid: s.tgid,
                    user,
                    kernel,
                },
                s.count,
            );
        }
        self.model.end_interval();
        let model = &self.model;
        self.user.retain(|id| model.holds(id));
        self.perf_maps.retain(|id| model.holds(id));
        for (id, key) in self.retry.drain(..) {
            self.user.remove(id, &key);
        }
        self.end_generation(interval.duration);
        self.intervals += 1;
        if self.intervals.is_multiple_of(KEEP_FILE_INTERVALS) {
            self.forget_idle_files();
            // Names nothing holds any more (a frame, a file's symbols, the
            // profile just made is still to be handed out: it holds its own).
            self.names.retain(|n| Arc::strong_count(n) > 1);
        }
        profile
    }

    /// Sampling time `length` has passed: once a generation's worth has,
    /// the frames and symbols not used in the last two go.
    fn end_generation(&mut self, length: Duration) {
        self.generation_age += length;
        if self.generation_age < GENERATION {
            return;
        }
        self.generation_age = Duration::ZERO;
        self.user.age();
        self.kernel.age();
        self.age_file_symbols();
    }

    fn stack(&self, raw: &RawStack, id: Option<AspaceId>) -> Stack {
        match raw {
            RawStack::Absent => Stack::Absent,
            RawStack::Missed => Stack::Missed,
            RawStack::Addrs(addrs) => Stack::Frames(
                addrs
                    .iter()
                    .enumerate()
                    .map(|(i, a)| {
                        let key = (*a, i == 0);
                        let hit = match id {
                            Some(id) => self.user.get(id, &key),
                            None => self.kernel.get(&key),
                        };
                        hit.cloned().unwrap_or_else(|| self.unknown_frame(*a, None))
                    })
                    .collect(),
            ),
        }
    }

    fn unknown_frame(&self, addr: u64, module: Option<Symbol>) -> Frame {
        Frame::new(FrameInfo {
            name: self.unknown.clone(),
            module,
            offset: None,
            addr: Some(addr),
            source: None,
            mapping: None,
        })
    }

    /// Symbolizes, in batches, every address of the interval not yet cached.
    fn prefetch(&mut self, interval: &Interval) {
        let mut kernel: Vec<FrameAddr> = Vec::new();
        let mut user: Vec<(AspaceId, FrameAddr)> = Vec::new();
        for s in &interval.samples {
            if let RawStack::Addrs(addrs) = &s.kernel {
                for (i, a) in addrs.iter().enumerate() {
                    let key = (*a, i == 0);
                    if !self.kernel.touch(key) {
                        kernel.push(key);
                    }
                }
            }
            if let RawStack::Addrs(addrs) = &s.user {
                let id = AspaceId {
                    pid: s.tgid,
                    aspace: s.aspace,
                };
                for (i, a) in addrs.iter().enumerate() {
                    let key = (*a, i == 0);
                    if !self.user.touch(id, key) {
                        user.push((id, key));
                    }
                }
            }
        }
        if !kernel.is_empty() {
            kernel.sort_unstable();
            kernel.dedup();
            self.stats.kernel_lookups += kernel.len() as u64;
            self.prefetch_kernel(kernel);
        }
        if !user.is_empty() {
            user.sort_unstable();
            user.dedup();
            self.prefetch_user(user);
        }
    }

    /// Names kernel addresses from the boot's copy of the core kernel's
    /// symbols and this profiler's own programs, or from `/proc/kallsyms`
    /// (see [`kernel_text`]).
    fn prefetch_kernel(&mut self, kernel: Vec<FrameAddr>) {
        let addrs: Vec<u64> = kernel.iter().map(|(a, l)| lookup_addr(*l, *a)).collect();
        let resolved = match self.kernel_text.names(&addrs) {
            Some(names) => names
                .into_iter()
                .map(|n| {
                    n.map(|(name, offset)| Resolved {
                        name: intern(&mut self.names, &name),
                        offset,
                        source: None,
                    })
                })
                .collect(),
            None => self.resolve(
                &Source::Kernel(blazesym::symbolize::source::Kernel::default()),
                Input::AbsAddr(&addrs),
            ),
        };
        for (key, r) in kernel.into_iter().zip(resolved) {
            let frame = self.frame(key, r, Some(self.kernel_module.clone()));
            self.kernel.insert(key, frame);
        }
    }

    /// The frame for a walked address from what its lookup found.
    fn frame(&self, (addr, leaf): FrameAddr, r: Option<Resolved>, module: Option<Symbol>) -> Frame {
        match r {
            Some(r) => Frame::new(FrameInfo {
                name: r.name,
                module,
                // Printed from the walked address, as bcc prints it.
                offset: Some(r.offset + addr - lookup_addr(leaf, addr)),
                addr: Some(addr),
                source: r.source,
                mapping: None,
            }),
            None => self.unknown_frame(addr, module),
        }
    }

    fn resolve(&mut self, src: &Source<'_>, input: Input<&[u64]>) -> Vec<Option<Resolved>> {
        let n = match input {
            Input::AbsAddr(a) | Input::VirtOffset(a) | Input::FileOffset(a) => a.len(),
        };
        // One bad address (a frame-pointer walk through garbage can land in a
        // mapped data file) fails a whole batch: then go one by one, so only
        // that address is unknown.
        let found: Vec<Option<Found>> = match self.inner.symbolize(src, input) {
            Ok(syms) => syms.iter().map(found_of).collect(),
            Err(_) => (0..n)
                .map(|i| {
                    let one = match input {
                        Input::AbsAddr(a) => Input::AbsAddr(a[i]),
                        Input::VirtOffset(a) => Input::VirtOffset(a[i]),
                        Input::FileOffset(a) => Input::FileOffset(a[i]),
                    };
                    self.inner
                        .symbolize_single(src, one)
                        .ok()
                        .and_then(|s| found_of(&s))
                })
                .collect(),
        };
        found
            .into_iter()
            .map(|f| {
                f.map(|(name, offset, source)| Resolved {
                    name: intern(&mut self.names, &name),
                    offset,
                    source: source.map(|(file, line)| (intern(&mut self.names, &file), line)),
                })
            })
            .collect()
    }
}

/// Name, offset and source location of a symbolized address.
type Found = (String, u64, Option<(String, u32)>);

/// What blazesym found for one address.
fn found_of(s: &Symbolized<'_>) -> Option<Found> {
    match s {
        Symbolized::Sym(sym) => {
            let source = sym.code_info.as_ref().and_then(|ci| {
                let line = ci.line?;
                let file = match &ci.dir {
                    Some(dir) => dir.join(&*ci.file).to_string_lossy().into_owned(),
                    None => ci.file.to_string_lossy().into_owned(),
                };
                Some((file, line))
            });
            Some((sym.name.to_string(), sym.offset as u64, source))
        }
        Symbolized::Unknown(_) => None,
    }
}

/// Return addresses point after the call instruction, possibly into the next
/// function: look up the address before them. The leaf is the interrupted
/// instruction itself.
fn lookup_addr(leaf: bool, addr: u64) -> u64 {
    if leaf {
        addr
    } else {
        addr.saturating_sub(1)
    }
}

fn intern(names: &mut FxHashSet<Symbol>, name: &str) -> Symbol {
    if let Some(s) = names.get(name) {
        return s.clone();
    }
    let s = Symbol::from(name);
    names.insert(s.clone());
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::RawSample;
    use std::time::Duration;

    #[inline(never)]
    fn a_function_with_a_known_name() -> u64 {
        a_function_with_a_known_name as fn() -> u64 as usize as u64
    }

    #[test]
    fn symbolizes_our_own_function() {
        let addr = a_function_with_a_known_name();
        let pid = std::process::id();
        let interval = Interval {
            index: 0,
            start: Duration::ZERO,
            duration: Duration::from_secs(1),
            samples: vec![RawSample {
                tgid: pid,
                aspace: 0,
                comm: "t".into(),
                // A leaf address: looked up as is.
                user: RawStack::Addrs(vec![addr, 1]),
                kernel: RawStack::Absent,
                python: Vec::new(),
                count: 3,
            }],
            loss: Default::default(),
        };
        let mut s = Symbolizer::new();
        let maps = crate::process::query::MapsReader::new().read(pid).unwrap();
        s.remember_process(AspaceId { pid, aspace: 0 }, Some(Arc::new(maps)));
        let p = s.symbolize(&interval);
        let (key, n) = p.counts.iter().next().unwrap();
        assert_eq!(*n, 3);
        let Stack::Frames(frames) = &key.user else {
            panic!("expected frames, got {:?}", key.user)
        };
        assert!(
            frames[0].ends_with("a_function_with_a_known_name"),
            "got {:?}",
            frames[0]
        );
        assert_eq!(&*frames[1], UNKNOWN);
        let info = frames[0].info();
        assert_eq!(info.addr, Some(addr));
        assert_eq!(info.offset, Some(0), "the function's own start");
        let module = info.module.as_deref().unwrap_or_default();
        assert!(module.starts_with("rs_profile-"), "module {module:?}");
        // The second address is in no mapping: unknown, with no module.
        assert_eq!(frames[1].info().module, None);
        // Looked up once per file offset, through the file.
        assert_eq!(s.stats().file_lookups, 1);
        assert_eq!(s.stats().files, 1);
        let again = s.symbolize(&interval);
        assert_eq!(again, p);
        assert_eq!(s.stats().file_lookups, 1, "cached per file");
    }

    /// A batch that starts blazesym afresh (too many files opened) still
    /// names what it found cached: a new process of a known binary, sampled
    /// in the same interval as a file not looked up yet.
    #[test]
    fn a_restart_in_a_batch_keeps_what_the_batch_found_cached() {
        let own = a_function_with_a_known_name();
        let libc_fn = libc::getpid as unsafe extern "C" fn() -> libc::pid_t as usize as u64;
        let pid = std::process::id();
        let sample = |aspace, user: Vec<u64>| RawSample {
            tgid: pid,
            aspace,
            comm: "t".into(),
            user: RawStack::Addrs(user),
            kernel: RawStack::Absent,
            python: Vec::new(),
            count: 1,
        };
        let interval = |index, samples| Interval {
            index,
            start: Duration::ZERO,
            duration: Duration::from_secs(1),
            samples,
            loss: Default::default(),
        };
        let maps = Arc::new(crate::process::query::MapsReader::new().read(pid).unwrap());
        let mut s = Symbolizer::new();
        s.remember_process(AspaceId { pid, aspace: 0 }, Some(maps.clone()));
        s.symbolize(&interval(0, vec![sample(0, vec![own])]));
        // Another address space of the same binary (its frames not cached
        // yet), sampled beside libc, which is not looked up yet.
        s.remember_process(AspaceId { pid, aspace: 1 }, Some(maps));
        s.opened_files = user_files::MAX_OPENED_FILES;
        // A return address: looked up one byte back.
        let p = s.symbolize(&interval(1, vec![sample(1, vec![own, libc_fn + 1])]));
        let (key, _) = p.counts.iter().next().unwrap();
        let Stack::Frames(frames) = &key.user else {
            panic!("expected frames, got {:?}", key.user)
        };
        assert!(
            frames[0].ends_with("a_function_with_a_known_name"),
            "{frames:?}"
        );
        assert!(frames[1].contains("getpid"), "{frames:?}");
        assert_eq!(s.opened_files, 1, "blazesym started afresh");
    }
}
