//! The unwinder's thread: loads each announced process's tables (built in
//! parallel, or read from the cache) into the BPF row space once per file,
//! points BPF at them per mapping, applies exits, and walks the deferred
//! stacks of processes whose tables were not in yet when they were sampled.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::Result;
use libbpf_rs::MapHandle;
use rayon::prelude::*;

use crate::collector::{PendingSample, RawSample, RawStack, WalkedSamples};
use crate::process::executables::{Attached, Executables, MappingRef};
use crate::process::maps::Mapping;
use crate::process::{has_mappings, AspaceId, FileId};

use super::deferred::{self, DeferredStack, Fallback, Rows, StackCopy, WalkMapping};
use super::loader::{self, RowSpace, UnwindMaps};
use super::mapping_slots::{self, MappingSlots};
use super::{cache, table, Msg, UnwindStats};

/// A file's table, as loaded: (first row, rows); None: no usable CFI, or
/// left out. Held in the executable table, once per file.
type FileTable = Option<(u32, u32)>;

pub(super) struct State {
    /// `unwind_shards`, where `space`'s rows live.
    shards: MapHandle,
    space: RowSpace,
    /// Where BPF finds each loaded process's mappings.
    slots: MappingSlots,
    /// Each executable's table and the processes (as loaded into
    /// `unwind_procs`) that map it.
    exes: Executables<FileTable>,
    stats: UnwindStats,
    last_sweep: Instant,
    last_unmap: Instant,
    cache: cache::TableCache,
    /// How deferred walks step code without a table.
    fallback: Fallback,
    /// Exits not applied yet (see `Msg::Exited`).
    exits: Vec<AspaceId>,
    /// Deferred stacks whose process is not loaded yet.
    held: Vec<DeferredStack>,
    /// Deferred stacks walked, by sample number, until their interval ends.
    walked: HashMap<u64, WalkedStack>,
}

/// A deferred stack, walked.
struct WalkedStack {
    walk: deferred::Walk,
    /// Walked with its process's tables (else by frame pointers: the
    /// process was never loaded).
    loaded: bool,
}

/// How often processes that exited are looked for in /proc: exits come
/// as BPF events; this only catches one whose event was lost (a full ring
/// buffer, or an announcement the kernel's LRU forgot).
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// How often shards no walk in user space used since the last time are
/// unmapped: a mapped shard is 1 MB of the profiler's RSS (mapping one
/// inserts all its pages), and deferred walks touch a few at a time.
const UNMAP_EVERY: Duration = Duration::from_secs(2);

impl State {
    pub(super) fn new(
        maps: UnwindMaps,
        budget_bytes: u64,
        cache: cache::TableCache,
        fallback: Fallback,
    ) -> State {
        State {
            cache,
            fallback,
            exits: Vec::new(),
            held: Vec::new(),
            walked: HashMap::new(),
            shards: maps.shards,
            slots: MappingSlots::new(maps.mapping_slots, maps.procs),
            space: RowSpace::new(budget_bytes),
            exes: Executables::new(),
            stats: UnwindStats::default(),
            last_sweep: Instant::now(),
            last_unmap: Instant::now(),
        }
    }

    /// What the thread did, once it ends.
    pub(super) fn finish(mut self) -> UnwindStats {
        self.stats.shard_bytes = self.space.bytes();
        self.stats.slots_full = self.slots.full;
        self.stats.cache = self.cache.stats();
        self.stats
    }

    pub(super) fn run(&mut self, rx: mpsc::Receiver<Vec<Msg>>) {
        loop {
            let first = match rx.recv_timeout(UNMAP_EVERY) {
                Ok(m) => Some(m),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            let batch: Vec<Msg> = first.into_iter().chain(rx.try_iter()).flatten().collect();
            if !batch.is_empty() {
                if let Err(err) = self.load(batch) {
                    eprintln!("profile: unwinder: {err:#}");
                }
            }
            if self.last_sweep.elapsed() >= SWEEP_EVERY {
                self.sweep();
                self.last_sweep = Instant::now();
            }
            if self.last_unmap.elapsed() >= UNMAP_EVERY {
                self.space.unmap_idle();
                self.last_unmap = Instant::now();
            }
        }
    }

    /// Loads a batch of announced address spaces.
    fn load(&mut self, batch: Vec<Msg>) -> Result<()> {
        // The latest maps of each pid win.
        let mut latest: HashMap<u32, (AspaceId, Arc<Vec<Mapping>>, Instant)> = HashMap::new();
        let mut barriers = Vec::new();
        // Each interval's samples, and how many exits came before it.
        let mut intervals = Vec::new();
        let mut stacks = Vec::new();
        for msg in batch {
            let (id, exec, at) = match msg {
                Msg::Process(id, exec, at) => (id, exec, at),
                Msg::Exited(id) => {
                    self.exits.push(id);
                    continue;
                }
                Msg::Interval(pending, reply) => {
                    intervals.push((pending, reply, self.exits.len()));
                    continue;
                }
                Msg::Barrier(tx) => {
                    barriers.push(tx);
                    continue;
                }
                Msg::Stacks(s) => {
                    stacks.extend(s);
                    continue;
                }
            };
            let e = latest
                .entry(id.pid)
                .or_insert((id, Arc::new(Vec::new()), at));
            if id.aspace >= e.0.aspace {
                *e = (id, exec, e.2.min(at));
            }
        }

        // Tables for files not seen before, built in parallel.
        // (paths that may reach the very file mapped, its name for messages)
        let mut wanted: HashMap<FileId, (Vec<(PathBuf, bool)>, String)> = HashMap::new();
        for (id, exec, _) in latest.values() {
            for m in exec.iter().filter(|m| m.is_file()) {
                let file = m.file_id();
                if !self.exes.contains(&file) {
                    let e = wanted
                        .entry(file)
                        .or_insert_with(|| (Vec::new(), m.path.clone().unwrap_or_default()));
                    // map_files is the very file mapped; a path is
                    // checked to still be it.
                    e.0.push((m.map_files(id.pid), false));
                    if let Some(p) = &m.path {
                        e.0.push((PathBuf::from(format!("/proc/{}/root{p}", id.pid)), true));
                        e.0.push((PathBuf::from(p), true));
                    }
                }
            }
        }
        // A few files per thread at a time, each placed in the shards before
        // the next are built: the tables of a busy machine's first batch
        // (hundreds of files) are never all in memory at once.
        let wanted: Vec<_> = wanted.into_iter().collect();
        let at_once = 4 * rayon::current_num_threads().max(1);
        for batch in wanted.chunks(at_once) {
            let cache = &self.cache;
            let built: Vec<_> = batch
                .par_iter()
                .map(|(file, (paths, name))| {
                    let t = Instant::now();
                    let table = table_of(cache, file, paths);
                    (*file, name.clone(), table, t.elapsed())
                })
                .collect();
            for (file, name, table, took) in built {
                let Some(table) = table else {
                    continue;
                };
                self.stats.build_time += took;
                self.stats.files_built += 1;
                let rows = match table {
                    Ok(t) if !t.rows.is_empty() => {
                        self.stats.rows_built += t.rows.len() as u64;
                        self.place(&t.rows, &name)?
                    }
                    _ => {
                        self.stats.files_without_cfi += 1;
                        None
                    }
                };
                self.exes.insert(file, rows);
            }
            self.space.unmap_all();
            // Building a big file's table takes tens of MB in the building
            // thread's arena: handed back now, not at the interval's end
            // (a 999 Hz busy run without the cache peaked at 91 MB RSS
            // without this, 72-74 with it, in two runs of three).
            crate::memory::release_freed_memory();
        }

        for (_, (id, exec, at)) in latest {
            // One that exited already (named from its exit) is never
            // sampled again: only its deferred stacks are walked, here.
            let live = !self.exits.contains(&id);
            self.load_process(id, &exec, live)?;
            self.stats.loads += 1;
            self.stats.max_load_latency = self.stats.max_load_latency.max(at.elapsed());
        }
        // Deferred stacks whose processes are loaded now are walked now:
        // their copies need not wait for their intervals to end.
        self.held.extend(stacks);
        let (ready, wait): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.held).into_iter().partition(|s| {
                self.exes
                    .process(s.tgid)
                    .is_some_and(|p| p.aspace >= s.aspace)
            });
        self.held = wait;
        self.walk_stacks(ready);
        let mut applied = 0;
        for (pending, reply, exits_before) in intervals {
            if let Some(reply) = reply {
                let _ = reply.send(self.join_deferred(pending));
            }
            // Processes that exited before this interval ended took their
            // last samples in it or earlier: their mappings can go now.
            let exits: Vec<AspaceId> = self.exits.drain(..exits_before - applied).collect();
            applied = exits_before;
            for id in exits {
                self.unload(id.pid, Some(id.aspace));
            }
        }
        for b in barriers {
            let _ = b.send(());
        }
        Ok(())
    }

    /// Walks deferred stacks with the tables of their processes, as loaded
    /// now, and keeps the walks by sample number; a process not loaded in
    /// the stack's address space (its maps could not be read, or it has
    /// exec'd since) is walked as the kernel would have: by frame pointers.
    fn walk_stacks(&mut self, stacks: Vec<DeferredStack>) {
        if stacks.is_empty() {
            return;
        }
        let started = Instant::now();
        self.stats.deferred_walks += stacks.len() as u64;
        let view = self.space.view();
        for s in stacks {
            let process = self
                .exes
                .process(s.tgid)
                .filter(|proc| proc.aspace == s.aspace);
            let mappings: Vec<WalkMapping<'_>> = process
                .map(|proc| {
                    proc.mappings
                        .iter()
                        .map(|m| {
                            let table = m.file.and_then(|f| *self.exes.state(&f)?);
                            WalkMapping {
                                start: m.start,
                                end: m.end,
                                bias: m.start.wrapping_sub(m.offset),
                                rows: table.map(|(start, len)| Rows::Shards {
                                    view: &view,
                                    start,
                                    len,
                                }),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            let copy = StackCopy {
                base: s.regs.sp,
                bytes: &s.stack,
            };
            let pid = s.tgid;
            let code = move |addr: u64, buf: &mut [u8]| crate::process::read_memory(pid, addr, buf);
            let walk = deferred::walk(s.regs, &copy, &mappings, self.fallback, &code);
            let loaded = process.is_some();
            self.walked.insert(s.seq, WalkedStack { walk, loaded });
        }
        self.stats.deferred_time += started.elapsed();
    }

    /// An interval's deferred samples, with their user stacks walked (now,
    /// for those not walked yet) and merged by stack.
    fn join_deferred(&mut self, mut pending: Vec<PendingSample>) -> WalkedSamples {
        // Stacks that came with the interval, and those still held for it.
        let mut now: Vec<DeferredStack> =
            pending.iter_mut().filter_map(|p| p.stack.take()).collect();
        let mine: std::collections::HashSet<u64> = pending.iter().map(|p| p.seq).collect();
        let (held, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|s| mine.contains(&s.seq));
        self.held = wait;
        now.extend(held);
        self.walk_stacks(now);

        let mut out = WalkedSamples::default();
        type Key = (
            u32,
            u32,
            String,
            Vec<u64>,
            RawStack,
            Vec<crate::python::RawPyFrame>,
        );
        let mut merged: HashMap<Key, u64> = HashMap::new();
        for p in pending {
            // Every stack was sent before its interval ended, so each has
            // a walk; one missing would be a bug, shown as an empty stack.
            let w = self.walked.remove(&p.seq).unwrap_or(WalkedStack {
                walk: deferred::Walk::default(),
                loaded: false,
            });
            let walk = w.walk;
            let u = &mut out.unwind;
            if w.loaded {
                u.deferred += 1;
                u.deferred_truncated += u64::from(!walk.complete);
                u.cut += u64::from(walk.cut);
                let s = &mut u.stopped;
                match walk.stopped {
                    Some(deferred::Stop::BadRead) => s.bad_read += 1,
                    Some(deferred::Stop::FpOffStack) => s.fp_off_stack += 1,
                    Some(deferred::Stop::NoRule) => s.no_rule += 1,
                    Some(deferred::Stop::NotGrowing) => s.not_growing += 1,
                    None => {}
                }
            } else {
                u.not_loaded += 1;
            }
            *merged
                .entry((p.tgid, p.aspace, p.comm, walk.ips, p.kernel, p.python))
                .or_default() += 1;
        }
        out.samples = merged
            .into_iter()
            .map(
                |((tgid, aspace, comm, ips, kernel, python), count)| RawSample {
                    tgid,
                    aspace,
                    comm,
                    user: RawStack::Addrs(ips),
                    kernel,
                    python,
                    count,
                },
            )
            .collect();
        out
    }

    /// Finds room for a table (evicting unused ones if need be) and writes
    /// it; None if it does not fit in the budget.
    fn place(&mut self, rows: &[table::Row], name: &str) -> Result<Option<(u32, u32)>> {
        let n = rows.len() as u32;
        let start = loop {
            if let Some(start) = self.space.alloc(n) {
                break start;
            }
            // Evict the least recently wanted table no process uses.
            let victim = self.exes.least_recently_used_unused(Option::is_some);
            let Some(victim) = victim else {
                eprintln!(
                    "profile: warning: the unwind table of {name} ({} KB) does not fit in --unwind-memory; its frames are walked with frame pointers",
                    rows.len() * loader::ROW_BYTES / 1024
                );
                self.stats.left_out.push(name.to_string());
                return Ok(None);
            };
            if let Some(Some((s, n))) = self.exes.remove(&victim) {
                self.space.release(s, n);
            }
        };
        self.space.write(&self.shards, start, rows)?;
        Ok(Some((start, n)))
    }

    /// Gives BPF one address space's executable mappings (replacing
    /// what the pid had; only its deferred stacks' walks here get them if
    /// not `into_kernel`) and marks it loaded.
    fn load_process(&mut self, id: AspaceId, exec: &[Mapping], into_kernel: bool) -> Result<()> {
        let mappings: Vec<MappingRef> = exec
            .iter()
            .map(|m| MappingRef {
                start: m.start,
                end: m.end,
                offset: m.offset,
                file: m.is_file().then(|| m.file_id()),
            })
            .collect();
        if self.exes.attach(id.pid, id.aspace, mappings) == Attached::Unchanged {
            return Ok(());
        }
        if !into_kernel {
            self.slots.unload(id.pid);
            return Ok(());
        }
        let loaded = self.exes.process(id.pid).expect("just attached");
        let mut infos = Vec::with_capacity(loaded.mappings.len());
        for m in &loaded.mappings {
            let (row_start, row_count) =
                m.file.and_then(|f| *self.exes.state(&f)?).unwrap_or((0, 0));
            infos.push(mapping_slots::mapping_info(
                (m.start, m.end),
                m.start.wrapping_sub(m.offset),
                row_start,
                row_count,
            ));
        }
        // No room: its stacks are copied and walked here, as for a
        // process not loaded yet.
        self.slots.load(id.pid, id.aspace, &infos)?;
        Ok(())
    }

    /// A process exited (of address space `aspace`, or whichever it had):
    /// its mappings leave the kernel, its files lose a user.
    fn unload(&mut self, pid: u32, aspace: Option<u32>) {
        if self.exes.detach(pid, aspace).is_some() {
            self.slots.unload(pid);
        }
    }

    /// Unloads processes that exited and whose exit event was lost.
    fn sweep(&mut self) {
        let gone: Vec<AspaceId> = self
            .exes
            .pids()
            .filter(|pid| !has_mappings(*pid))
            .filter_map(|pid| {
                let aspace = self.exes.process(pid)?.aspace;
                Some(AspaceId { pid, aspace })
            })
            .collect();
        // As exits: applied after the next interval.
        self.exits.extend(gone);
    }
}

/// Tables smaller than this are built again rather than cached: building
/// one takes about as long as reading it back (a few milliseconds at most),
/// and a build loop's fresh binaries (a new inode each time, never mapped
/// again) would otherwise fill the cache with entries nobody reads.
const CACHE_FROM_ROWS: usize = 1024;

/// The unwind table of `file`, reached by the first of `paths` that is
/// still that file: an earlier run's table of this very version, or built
/// now and kept for the next run. None when no path reaches it (a
/// short-lived process may be gone; its files are then reached by path, if
/// that is still the same file). A file that can't be opened at all is not
/// remembered, so the next process that maps it tries again.
fn table_of(
    cache: &cache::TableCache,
    file: &FileId,
    paths: &[(PathBuf, bool)],
) -> Option<Result<table::UnwindTable>> {
    let (f, p) = paths
        .iter()
        .find_map(|(p, check)| open_same(p, file, *check).map(|f| (f, p)))?;
    let version = f.metadata().ok().map(|m| cache::FileVersion::of(&m));
    if let Some(t) = version.as_ref().and_then(|v| cache.get(v)) {
        return Some(Ok(t));
    }
    let t = table::build_from(f, p);
    if let (Ok(t), Some(v)) = (&t, &version) {
        if t.rows.len() >= CACHE_FROM_ROWS {
            cache.put(v, t);
        }
    }
    Some(t)
}

/// Opens `path`, checking (if `check`) that it is the file `want`: the
/// same device and inode, and the build that was mapped (a program rebuilt
/// in place keeps its inode).
fn open_same(path: &std::path::Path, want: &FileId, check: bool) -> Option<std::fs::File> {
    let f = std::fs::File::open(path).ok()?;
    (!check || want.is_at(path, &f.metadata().ok()?)).then_some(f)
}
