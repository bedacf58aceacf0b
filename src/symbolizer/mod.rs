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
mod kernel_index;
mod kernel_text;
mod name_arena;
mod perf_map;
mod plt;

use rustc_hash::{FxHashMap, FxHashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use blazesym::symbolize::source::{Elf, Process, Source};
use blazesym::symbolize::{Input, Symbolized};
use blazesym::Pid;

use self::debug_file::DebugFile;
use self::frame_cache::{FrameAddr, FrameCache};
use self::kernel_text::KernelText;
use crate::collector::{Interval, RawStack};
use crate::process::maps::Mapping;
use crate::process::{AspaceId, FileId, Place, ProcessModel};
use crate::profile::{Frame, FrameInfo, MappingInfo, Profile, Stack, StackKey, Symbol};

/// What an address with no symbol prints as (profile.py's word).
pub const UNKNOWN: &str = "[unknown]";

/// File offsets whose symbols are kept, over all files, before the caches
/// are emptied (they refill from blazesym's own file cache).
const MAX_CACHED_OFFSETS: usize = 1 << 20;
/// Bytes of files blazesym may hold parsed (symbol tables, DWARF) before it
/// is started afresh: a development loop that rebuilds and runs a large
/// debug binary again and again would otherwise keep every build's.
const MAX_OPENED_BYTES: u64 = 512 << 20;
/// Files blazesym may hold open (it keeps each one it parsed open and
/// mapped) before it is started afresh: a build loop makes a new version
/// of its binaries every few seconds, each a file of its own.
const MAX_OPENED_FILES: u64 = 96;
/// Intervals a file's symbols are kept after it was last looked up.
const KEEP_FILE_INTERVALS: u64 = 60;

/// What blazesym said of one looked-up address.
#[derive(Clone)]
struct Resolved {
    name: Symbol,
    /// Offset of the looked-up address from the symbol's start.
    offset: u64,
    /// Source file and line, where DWARF says.
    source: Option<(Symbol, u32)>,
}

/// One file's symbols, by file offset.
#[derive(Default)]
struct FileSyms {
    /// How the file is opened, decided at its first use.
    open: Option<PathBuf>,
    /// Its ELF build id, hex, read when it is first opened.
    build_id: Option<Symbol>,
    /// Stripped: its names are in a separate debug file (a distribution's
    /// -dbgsym package), if installed.
    debug_file: Option<DebugFile>,
    /// Its PLT stubs, named as perf names them (`strlen@plt`).
    plt: plt::PltStubs,
    syms: FxHashMap<u64, Option<Resolved>>,
    /// The interval it was last looked up in.
    last_used: u64,
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
    kernel: FxHashMap<FrameAddr, Frame>,
    /// Where kernel addresses are named from.
    kernel_text: KernelText,
    /// Frames of each address space, by walked address.
    user: FrameCache,
    files: FxHashMap<FileId, FileSyms>,
    cached_offsets: usize,
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

/// Where a user frame's name comes from, before lookups.
enum Pending {
    File {
        file: FileId,
        lookup_offset: u64,
        module: Symbol,
        /// Path and range of the mapping (its build id comes with the file).
        mapping: (Symbol, (u64, u64, u64)),
    },
    /// Named by the process's perf map: the entry's name and the offset.
    Jit(Symbol, u64, Symbol),
    /// Looked up through the live process (the vDSO).
    Live(Option<Symbol>),
    Unknown(Option<Symbol>),
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
            kernel: FxHashMap::default(),
            kernel_text: KernelText::new(None),
            user: FrameCache::default(),
            files: FxHashMap::default(),
            cached_offsets: 0,
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
        self.user.end_interval(interval.duration);
        self.intervals += 1;
        if self.intervals.is_multiple_of(KEEP_FILE_INTERVALS) {
            // Files nobody sampled for a while (an old build's binary).
            let now = self.intervals;
            let mut dropped = 0;
            self.files.retain(|_, f| {
                let keep = now - f.last_used <= KEEP_FILE_INTERVALS;
                if !keep {
                    dropped += f.syms.len();
                }
                keep
            });
            self.cached_offsets = self.cached_offsets.saturating_sub(dropped);
            // Names nothing holds any more (a frame, a file's symbols, the
            // profile just made is still to be handed out: it holds its own).
            self.names.retain(|n| Arc::strong_count(n) > 1);
        }
        profile
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

    /// A user stack with its Python frames in place of the evaluator frames
    /// that ran them.
    fn with_python(
        &mut self,
        user: Stack,
        id: AspaceId,
        raw: &[crate::python::RawPyFrame],
    ) -> Stack {
        let names = &mut self.names;
        let groups = self.python.groups(id, raw, |n| intern(names, n));
        if groups.is_empty() {
            return user;
        }
        match user {
            Stack::Frames(frames) => {
                Stack::Frames(crate::python::splice::splice(&frames, groups, |f| {
                    &**f == crate::python::names::EVALUATOR
                }))
            }
            // No native stack to place them in: the Python frames alone.
            _ => Stack::Frames(groups.into_iter().flatten().collect()),
        }
    }

    /// A process whose CPython this build can't read: its evaluator frames
    /// say so (`[python] Python 3.7 is not supported ...`), rather than
    /// pass for native code.
    fn name_unreadable_python(&mut self, user: Stack, id: AspaceId, samples: u64) -> Stack {
        let Stack::Frames(frames) = &user else {
            return user;
        };
        if !frames
            .iter()
            .any(|f| &**f == crate::python::names::EVALUATOR)
        {
            return user;
        }
        let Some(name) = self.python.unreadable_name(id, samples) else {
            return user;
        };
        let sym = intern(&mut self.names, &name);
        Stack::Frames(
            frames
                .iter()
                .map(|f| {
                    if &**f == crate::python::names::EVALUATOR {
                        Frame::named(sym.clone())
                    } else {
                        f.clone()
                    }
                })
                .collect(),
        )
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
                    if !self.kernel.contains_key(&key) {
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

    /// Places each user address in its address space, looks up what is not
    /// cached per file (or per live process for JIT code), and caches the
    /// frames per address space.
    fn prefetch_user(&mut self, user: Vec<(AspaceId, FrameAddr)>) {
        let mut pending = Vec::with_capacity(user.len());
        let mut by_file: FxHashMap<FileId, (Vec<u64>, String, Option<PathBuf>)> =
            FxHashMap::default();
        let mut by_process: FxHashMap<u32, Vec<u64>> = FxHashMap::default();
        // `perf-PID.map` per process, made once (a JIT's stacks are mostly
        // its own frames).
        let mut map_names: FxHashMap<u32, Symbol> = FxHashMap::default();
        for (id, (addr, leaf)) in &user {
            let lookup = lookup_addr(*leaf, *addr);
            let p = match self.model.place(*id, lookup) {
                Place::File {
                    file,
                    offset,
                    path,
                    live_path,
                    range,
                } => {
                    let module = module_name(&mut self.names, &path);
                    let full = intern(&mut self.names, &path);
                    let cached = self
                        .files
                        .get(&file)
                        .is_some_and(|f| f.syms.contains_key(&offset));
                    if !cached {
                        let e = by_file
                            .entry(file)
                            .or_insert_with(|| (Vec::new(), path.clone(), None));
                        e.0.push(offset);
                        if e.2.is_none() {
                            e.2 = live_path;
                        }
                    }
                    Pending::File {
                        file,
                        lookup_offset: offset,
                        module,
                        mapping: (full, range),
                    }
                }
                Place::Anon { name: None, live } => {
                    // JIT code: named by the perf map if it has the
                    // address (what was read while the process lived
                    // stays known after it exits); else kept as the map's
                    // (drawn `[perf-PID.map]`, as perf does) and, while
                    // the process lives, asked again in the next interval.
                    let names = &mut self.names;
                    let map = map_names
                        .entry(id.pid)
                        .or_insert_with(|| intern(names, &format!("perf-{}.map", id.pid)))
                        .clone();
                    match self.perf_maps.lookup(*id, lookup, self.intervals) {
                        Some((e, off)) => {
                            let off = off + addr - lookup;
                            Pending::Jit(Symbol::from(e.name), off, map)
                        }
                        None => {
                            if live {
                                self.retry.push((*id, (*addr, *leaf)));
                            }
                            let found = self.perf_maps.found(*id);
                            Pending::Unknown(found.then_some(map))
                        }
                    }
                }
                Place::Anon { name, live } => {
                    let module = name.as_deref().map(|n| intern(&mut self.names, n));
                    if live && name.as_deref() == Some("[vdso]") {
                        by_process.entry(id.pid).or_default().push(lookup);
                        Pending::Live(module)
                    } else {
                        Pending::Unknown(module)
                    }
                }
                Place::Unmapped => Pending::Unknown(None),
            };
            pending.push(p);
        }
        for (file, (mut offsets, path, live_path)) in by_file {
            offsets.sort_unstable();
            offsets.dedup();
            self.lookup_file(file, &offsets, &path, live_path);
        }
        let mut live: FxHashMap<(u32, u64), Option<Resolved>> = FxHashMap::default();
        for (pid, mut addrs) in by_process {
            addrs.sort_unstable();
            addrs.dedup();
            self.stats.process_lookups += addrs.len() as u64;
            // The vDSO only: perf maps are ours to read (see perf_map).
            let mut process = Process::new(Pid::from(pid));
            process.perf_map = false;
            process.map_files = true;
            let resolved = self.resolve(&Source::Process(process), Input::AbsAddr(&addrs));
            live.extend(addrs.into_iter().map(|a| (pid, a)).zip(resolved));
        }
        let mut mappings: FxHashMap<MappingInfo, Arc<MappingInfo>> = FxHashMap::default();
        for ((id, key), p) in user.into_iter().zip(pending) {
            let (addr, leaf) = key;
            let frame = match p {
                Pending::File {
                    file,
                    lookup_offset,
                    module,
                    mapping: (path, (start, end, file_offset)),
                } => {
                    let f = self.files.get(&file);
                    let r = f
                        .and_then(|f| f.syms.get(&lookup_offset))
                        .cloned()
                        .flatten();
                    let mapping = MappingInfo {
                        path,
                        start,
                        end,
                        file_offset,
                        build_id: f.and_then(|f| f.build_id.clone()),
                    };
                    let mapping = mappings
                        .entry(mapping.clone())
                        .or_insert_with(|| Arc::new(mapping))
                        .clone();
                    let mut frame = match r {
                        Some(r) => self.frame(key, Some(r), Some(module)),
                        None => self.unknown_frame(addr, Some(module)),
                    };
                    frame = frame.with_mapping(mapping);
                    frame
                }
                Pending::Live(module) => {
                    let r = live
                        .get(&(id.pid, lookup_addr(leaf, addr)))
                        .cloned()
                        .flatten();
                    match r {
                        Some(r) => self.frame(key, Some(r), module),
                        None => self.unknown_frame(addr, module),
                    }
                }
                Pending::Jit(name, offset, map) => Frame::new(FrameInfo {
                    // Shared with the perf map's index, not interned: JIT
                    // names come and go with the process.
                    name,
                    module: Some(map),
                    offset: Some(offset),
                    addr: Some(addr),
                    source: None,
                    mapping: None,
                }),
                Pending::Unknown(module) => self.unknown_frame(addr, module),
            };
            self.user.insert(id, key, frame);
        }
    }

    /// Looks up file offsets in one file and caches what is found.
    fn lookup_file(
        &mut self,
        file: FileId,
        offsets: &[u64],
        path: &str,
        live_path: Option<PathBuf>,
    ) {
        if self.cached_offsets > MAX_CACHED_OFFSETS {
            for f in self.files.values_mut() {
                f.syms.clear();
            }
            self.cached_offsets = 0;
        }
        if self.opened_bytes > MAX_OPENED_BYTES || self.opened_files >= MAX_OPENED_FILES {
            // Start blazesym afresh (it keeps every file it parsed open),
            // and with it which files are open; the hot ones reopen on
            // demand.
            self.inner = blazesym_symbolizer(self.source_lines);
            self.opened_bytes = 0;
            self.opened_files = 0;
            for f in self.files.values_mut() {
                f.open = None;
                f.syms.clear();
            }
            self.cached_offsets = 0;
        }
        let interval = self.intervals;
        let entry = self.files.entry(file).or_default();
        entry.last_used = interval;
        if entry.open.is_none() {
            // The path itself when it still is this file (shared by every
            // process, and by blazesym's file cache); else the process's own
            // view of it (deleted, replaced, or in a container).
            entry.open = if same_file(Path::new(path), file) {
                Some(PathBuf::from(path))
            } else {
                live_path
            };
            if let Some(open) = &entry.open {
                self.stats.files += 1;
                self.opened_files += 1;
                self.opened_bytes += std::fs::metadata(open).map_or(0, |m| m.len());
                entry.debug_file = DebugFile::find(open);
                entry.plt = plt::PltStubs::read(open);
                entry.build_id = blazesym::helper::read_elf_build_id(open)
                    .ok()
                    .flatten()
                    .map(|id| {
                        Symbol::from(id.iter().map(|b| format!("{b:02x}")).collect::<String>())
                    });
            }
        }
        let debug_file = entry.debug_file.clone();
        let resolved = match entry.open.clone() {
            Some(open) => {
                self.stats.file_lookups += offsets.len() as u64;
                // Names from the ELF symbol tables, as perf and bcc take
                // them (a stripped file's from its debug file's); DWARF
                // (decompressed and parsed: megabytes a file) only when an
                // output keeps source lines.
                match debug_file {
                    Some(d) if !self.source_lines => self.resolve_in_debug_file(&d, offsets),
                    _ => {
                        let elf = Elf {
                            debug_syms: self.source_lines,
                            ..Elf::new(open)
                        };
                        self.resolve(&Source::Elf(elf), Input::FileOffset(offsets))
                    }
                }
            }
            None => vec![None; offsets.len()],
        };
        let entry = self.files.entry(file).or_default();
        let names = &mut self.names;
        for (off, mut r) in offsets.iter().zip(resolved) {
            // Symbol tables name no PLT stub: the name found is the symbol
            // before the PLT (`_init`), never right.
            if let Some((name, within)) = entry.plt.lookup(*off) {
                r = Some(Resolved {
                    name: intern(names, name),
                    offset: within,
                    source: None,
                });
            }
            if entry.syms.insert(*off, r).is_none() {
                self.cached_offsets += 1;
            }
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

    /// Looks file offsets of a stripped binary up in its debug file's
    /// symbol table (see [`debug_file`]).
    fn resolve_in_debug_file(&mut self, d: &DebugFile, offsets: &[u64]) -> Vec<Option<Resolved>> {
        let addrs: Vec<Option<u64>> = offsets.iter().map(|o| d.address(*o)).collect();
        let known: Vec<u64> = addrs.iter().flatten().copied().collect();
        let elf = Elf {
            debug_syms: false,
            ..Elf::new(d.path.clone())
        };
        let mut found = self
            .resolve(&Source::Elf(elf), Input::VirtOffset(&known))
            .into_iter();
        addrs
            .iter()
            .map(|a| a.and_then(|_| found.next().flatten()))
            .collect()
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

/// The module a path names: its file name.
fn module_name(names: &mut FxHashSet<Symbol>, path: &str) -> Symbol {
    intern(names, path.rsplit('/').next().unwrap_or(path))
}

/// Whether an ELF file keeps its full symbol table elsewhere: it has no
/// `.symtab` but a `.gnu_debuglink` (Debian's stripped binaries). Only the
/// section headers are read.
/// Whether `path` is the file `id` (same device and inode).
fn same_file(path: &Path, id: FileId) -> bool {
    std::fs::metadata(path).is_ok_and(|m| FileId::of(&m) == id)
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
}
