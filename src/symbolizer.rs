//! The symbolizer: turns an [`Interval`]'s addresses into names with blazesym
//! (kallsyms for the kernel; ELF symbols, DWARF and perf-PID.map for user
//! space; Rust and C++ demangled) and merges equal symbolic stacks.
//!
//! Every address is symbolized once per run: results are cached per
//! (process, address), so an hour-long run costs per interval what a minute
//! does. A process's memory maps are cached as soon as the sampler first sees
//! it ([`Symbolizer::remember_process`]), so it is still symbolized after it
//! exits.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use blazesym::symbolize::cache::{self, Cache};
use blazesym::symbolize::source::{Kernel, Process, Source};
use blazesym::symbolize::{Input, Symbolized};
use blazesym::Pid;

use crate::collector::{Interval, RawStack};
use crate::profile::{Frame, FrameInfo, Profile, Stack, StackKey, Symbol};

/// What an address with no symbol prints as (profile.py's word).
pub const UNKNOWN: &str = "[unknown]";

/// A frame's cache key: its address as walked, and whether it is the leaf
/// (looked up as is) or a return address (looked up one byte earlier).
type FrameAddr = (u64, bool);

/// What blazesym said of one looked-up address.
struct Resolved {
    name: Symbol,
    module: Option<Symbol>,
    /// Offset of the looked-up address from the symbol's start.
    offset: u64,
}

/// Symbolizes intervals; keeps its caches for the whole run.
pub struct Symbolizer {
    inner: blazesym::symbolize::Symbolizer,
    kernel: HashMap<FrameAddr, Frame>,
    user: HashMap<(u32, FrameAddr), Frame>,
    names: HashSet<Symbol>,
    unknown: Symbol,
    kernel_module: Symbol,
}

impl Default for Symbolizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Symbolizer {
    /// A symbolizer with empty caches.
    pub fn new() -> Self {
        let inner = blazesym::symbolize::Symbolizer::builder()
            .enable_code_info(false)
            .enable_inlined_fns(false)
            .enable_demangling(true)
            .build();
        Symbolizer {
            inner,
            kernel: HashMap::new(),
            user: HashMap::new(),
            names: HashSet::new(),
            unknown: Symbol::from(UNKNOWN),
            kernel_module: Symbol::from("kernel"),
        }
    }

    /// Caches a live process's memory maps (and perf map, if it has one) so
    /// its addresses can be symbolized after it exits. Best effort: a process
    /// already gone is simply not cached.
    pub fn remember_process(&mut self, pid: u32) {
        let perf_map = Path::new(&format!("/tmp/perf-{pid}.map")).exists();
        let mut process = cache::Process::new(Pid::from(pid));
        process.cache_perf_map = perf_map;
        let _ = self.inner.cache(&Cache::Process(process));
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
            let user = self.stack(&s.user, Some(s.tgid));
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
        profile
    }

    fn stack(&self, raw: &RawStack, pid: Option<u32>) -> Stack {
        match raw {
            RawStack::Absent => Stack::Absent,
            RawStack::Missed => Stack::Missed,
            RawStack::Addrs(addrs) => Stack::Frames(
                addrs
                    .iter()
                    .enumerate()
                    .map(|(i, a)| {
                        let key = (*a, i == 0);
                        let hit = match pid {
                            Some(pid) => self.user.get(&(pid, key)),
                            None => self.kernel.get(&key),
                        };
                        hit.cloned().unwrap_or_else(|| self.unknown_frame(*a))
                    })
                    .collect(),
            ),
        }
    }

    fn unknown_frame(&self, addr: u64) -> Frame {
        Frame::new(FrameInfo {
            name: self.unknown.clone(),
            module: None,
            offset: None,
            addr: Some(addr),
        })
    }

    /// Symbolizes, in batches, every address of the interval not yet cached.
    fn prefetch(&mut self, interval: &Interval) {
        let mut kernel: Vec<FrameAddr> = Vec::new();
        let mut user: HashMap<u32, Vec<FrameAddr>> = HashMap::new();
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
                for (i, a) in addrs.iter().enumerate() {
                    let key = (*a, i == 0);
                    if !self.user.contains_key(&(s.tgid, key)) {
                        user.entry(s.tgid).or_default().push(key);
                    }
                }
            }
        }
        if !kernel.is_empty() {
            kernel.sort_unstable();
            kernel.dedup();
            let resolved = self.resolve(&Source::Kernel(Kernel::default()), &kernel);
            for (key, r) in kernel.into_iter().zip(resolved) {
                let frame = self.frame(key, r, Some(self.kernel_module.clone()));
                self.kernel.insert(key, frame);
            }
        }
        for (pid, mut keys) in user {
            keys.sort_unstable();
            keys.dedup();
            let mut process = Process::new(Pid::from(pid));
            // Once the process is gone (or a zombie, whose /proc entry
            // stays but whose mappings are gone), /proc/PID/map_files is
            // too: fall back to the paths its (cached) maps named.
            process.map_files = has_mappings(pid);
            process.debug_syms = true;
            let resolved = self.resolve(&Source::Process(process), &keys);
            for (key, r) in keys.into_iter().zip(resolved) {
                let frame = self.frame(key, r, None);
                self.user.insert((pid, key), frame);
            }
        }
    }

    /// The frame for a walked address from what its lookup found.
    fn frame(&self, (addr, leaf): FrameAddr, r: Option<Resolved>, module: Option<Symbol>) -> Frame {
        match r {
            Some(r) => Frame::new(FrameInfo {
                name: r.name,
                module: module.or(r.module),
                // Printed from the walked address, as bcc prints it.
                offset: Some(r.offset + addr - lookup_addr(leaf, addr)),
                addr: Some(addr),
            }),
            None => self.unknown_frame(addr),
        }
    }

    fn resolve(&mut self, src: &Source<'_>, keys: &[FrameAddr]) -> Vec<Option<Resolved>> {
        let addrs: Vec<u64> = keys
            .iter()
            .map(|(a, leaf)| lookup_addr(*leaf, *a))
            .collect();
        // One bad address (a frame-pointer walk through garbage can land in a
        // mapped data file) fails a whole batch: then go one by one, so only
        // that address is unknown.
        let found: Vec<Option<(String, Option<String>, u64)>> =
            match self.inner.symbolize(src, Input::AbsAddr(&addrs)) {
                Ok(syms) => syms.iter().map(found_of).collect(),
                Err(_) => addrs
                    .iter()
                    .map(|a| {
                        self.inner
                            .symbolize_single(src, Input::AbsAddr(*a))
                            .ok()
                            .and_then(|s| found_of(&s))
                    })
                    .collect(),
            };
        found
            .into_iter()
            .map(|f| {
                f.map(|(name, module, offset)| Resolved {
                    name: intern(&mut self.names, &name),
                    module: module.map(|m| intern(&mut self.names, &m)),
                    offset,
                })
            })
            .collect()
    }
}

/// Name, module file name and offset of a symbolized address.
fn found_of(s: &Symbolized<'_>) -> Option<(String, Option<String>, u64)> {
    match s {
        Symbolized::Sym(sym) => {
            let module = sym.module.as_ref().and_then(|m| {
                Path::new(m)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            });
            Some((sym.name.to_string(), module, sym.offset as u64))
        }
        Symbolized::Unknown(_) => None,
    }
}

/// Whether a process still has its address space: it exists and is not a
/// zombie (state `Z`) or dead (`X`).
fn has_mappings(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
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

fn intern(names: &mut HashSet<Symbol>, name: &str) -> Symbol {
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

    #[test]
    fn zombies_have_no_mappings() {
        assert!(has_mappings(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        // Not reaped yet: a zombie once it has exited.
        let pid = child.id();
        let t = std::time::Instant::now();
        while has_mappings(pid) && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        assert!(!has_mappings(pid));
        child.wait().unwrap();
        assert!(!has_mappings(pid));
    }

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
                comm: "t".into(),
                // A leaf address: looked up as is.
                user: RawStack::Addrs(vec![addr, 1]),
                kernel: RawStack::Absent,
                count: 3,
            }],
            loss: Default::default(),
        };
        let mut s = Symbolizer::new();
        s.remember_process(pid);
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
    }
}
