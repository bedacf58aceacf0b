//! User addresses named per file: each address is placed in the address
//! space it was sampled in (which file, which offset), and looked up once per
//! (file, offset) for every process that maps the file; JIT code through
//! the process's perf map, the vDSO through the live process.

use rustc_hash::{FxHashMap, FxHashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use blazesym::symbolize::source::{Elf, Process, Source};
use blazesym::symbolize::Input;
use blazesym::Pid;

use super::debug_file::DebugFile;
use super::frame_cache::FrameAddr;
use super::generations::Generations;
use super::{blazesym_symbolizer, intern, lookup_addr, plt, Resolved, Symbolizer};
use crate::process::{AspaceId, FileId, Place};
use crate::profile::{Frame, FrameInfo, MappingInfo, Symbol};

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
pub(super) const MAX_OPENED_FILES: u64 = 96;
/// Intervals a file's symbols are kept after it was last looked up.
pub(super) const KEEP_FILE_INTERVALS: u64 = 60;

/// One file's symbols, by file offset.
#[derive(Default)]
pub(super) struct FileSyms {
    /// How the file is opened, decided at its first use.
    open: Option<PathBuf>,
    /// Its ELF build id, hex, read when it is first opened.
    build_id: Option<Symbol>,
    /// Stripped: its names are in a separate debug file (a distribution's
    /// -dbgsym package), if installed.
    debug_file: Option<DebugFile>,
    /// Its PLT stubs, named as perf names them (`strlen@plt`).
    plt: plt::PltStubs,
    syms: Generations<u64, Option<Resolved>>,
    /// The interval it was last looked up in.
    last_used: u64,
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

impl Symbolizer {
    /// Forgets the files nobody sampled for a while (an old build's
    /// binary).
    pub(super) fn forget_idle_files(&mut self) {
        let now = self.intervals;
        self.files
            .retain(|_, f| now - f.last_used <= KEEP_FILE_INTERVALS);
    }

    /// A new generation: each file's symbols not used in the last two go.
    pub(super) fn age_file_symbols(&mut self) {
        for f in self.files.values_mut() {
            f.syms.age();
        }
    }

    /// File offsets whose symbols are cached, over all files.
    pub(super) fn cached_offsets(&self) -> usize {
        self.files.values().map(|f| f.syms.len()).sum()
    }

    /// Places each user address in its address space, looks up what is not
    /// cached per file (or per live process for JIT code), and caches the
    /// frames per address space.
    pub(super) fn prefetch_user(&mut self, user: Vec<(AspaceId, FrameAddr)>) {
        // Emptied before the batch, never in it: what it finds cached must
        // stay until its frames are made.
        if self.cached_offsets() > MAX_CACHED_OFFSETS {
            for f in self.files.values_mut() {
                f.syms.clear();
            }
        }
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
                        .get_mut(&file)
                        .is_some_and(|f| f.syms.touch(offset));
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
        if self.opened_bytes > MAX_OPENED_BYTES || self.opened_files >= MAX_OPENED_FILES {
            // Start blazesym afresh (it keeps every file it parsed open),
            // and with it which files are open; the hot ones reopen on
            // demand. The symbols found stay: they are this file's.
            self.inner = blazesym_symbolizer(self.source_lines);
            self.opened_bytes = 0;
            self.opened_files = 0;
            for f in self.files.values_mut() {
                f.open = None;
            }
        }
        let interval = self.intervals;
        let entry = self.files.entry(file).or_default();
        entry.last_used = interval;
        if entry.open.is_none() {
            // The path itself when it still is this file, with the content
            // that was mapped (shared by every process, and by blazesym's
            // file cache); else the process's own view of it (deleted,
            // replaced, rebuilt in place, or in a container). Neither: its
            // addresses stay unnamed rather than named from another build.
            let by_path = same_file(Path::new(path), file).then(|| PathBuf::from(path));
            let found = [by_path, live_path].into_iter().flatten().find_map(|p| {
                let id = blazesym::helper::read_elf_build_id(&p).ok().flatten();
                file.holds(id.as_deref()).then_some((p, id))
            });
            if let Some((open, id)) = found {
                self.stats.files += 1;
                self.opened_files += 1;
                self.opened_bytes += std::fs::metadata(&open).map_or(0, |m| m.len());
                entry.debug_file = DebugFile::find(&open);
                entry.plt = plt::PltStubs::read(&open);
                entry.build_id = id.map(|id| {
                    Symbol::from(id.iter().map(|b| format!("{b:02x}")).collect::<String>())
                });
                entry.open = Some(open);
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
            entry.syms.insert(*off, r);
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
}

/// The module a path names: its file name.
fn module_name(names: &mut FxHashSet<Symbol>, path: &str) -> Symbol {
    intern(names, path.rsplit('/').next().unwrap_or(path))
}

/// Whether `path` is the file `id` (same device and inode).
fn same_file(path: &Path, id: FileId) -> bool {
    std::fs::metadata(path).is_ok_and(|m| FileId::of(&m).same_inode(&id))
}
