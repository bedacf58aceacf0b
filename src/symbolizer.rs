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
use crate::profile::{Profile, Stack, StackKey, Symbol};

/// What an address with no symbol prints as (profile.py's word).
pub const UNKNOWN: &str = "[unknown]";

/// Symbolizes intervals; keeps its caches for the whole run.
pub struct Symbolizer {
    inner: blazesym::symbolize::Symbolizer,
    kernel: HashMap<u64, Symbol>,
    user: HashMap<(u32, u64), Symbol>,
    names: HashSet<Symbol>,
    unknown: Symbol,
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

    /// Symbolizes an interval into a profile, merging stacks that symbolize
    /// the same.
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
                        let a = lookup_addr(i, *a);
                        let hit = match pid {
                            Some(pid) => self.user.get(&(pid, a)),
                            None => self.kernel.get(&a),
                        };
                        hit.cloned().unwrap_or_else(|| self.unknown.clone())
                    })
                    .collect(),
            ),
        }
    }

    /// Symbolizes, in batches, every address of the interval not yet cached.
    fn prefetch(&mut self, interval: &Interval) {
        let mut kernel: Vec<u64> = Vec::new();
        let mut user: HashMap<u32, Vec<u64>> = HashMap::new();
        for s in &interval.samples {
            if let RawStack::Addrs(addrs) = &s.kernel {
                for (i, a) in addrs.iter().enumerate() {
                    let a = lookup_addr(i, *a);
                    if !self.kernel.contains_key(&a) {
                        kernel.push(a);
                    }
                }
            }
            if let RawStack::Addrs(addrs) = &s.user {
                for (i, a) in addrs.iter().enumerate() {
                    let a = lookup_addr(i, *a);
                    if !self.user.contains_key(&(s.tgid, a)) {
                        user.entry(s.tgid).or_default().push(a);
                    }
                }
            }
        }
        if !kernel.is_empty() {
            kernel.sort_unstable();
            kernel.dedup();
            let names = self.resolve(&Source::Kernel(Kernel::default()), &kernel);
            self.kernel.extend(kernel.into_iter().zip(names));
        }
        for (pid, mut addrs) in user {
            addrs.sort_unstable();
            addrs.dedup();
            let mut process = Process::new(Pid::from(pid));
            // Once the process is gone, /proc/PID/map_files is too: fall back
            // to the paths its (cached) maps named.
            process.map_files = Path::new(&format!("/proc/{pid}")).exists();
            process.debug_syms = true;
            let names = self.resolve(&Source::Process(process), &addrs);
            self.user
                .extend(addrs.into_iter().map(|a| (pid, a)).zip(names));
        }
    }

    fn resolve(&mut self, src: &Source<'_>, addrs: &[u64]) -> Vec<Symbol> {
        // One bad address (a frame-pointer walk through garbage can land in a
        // mapped data file) fails a whole batch: then go one by one, so only
        // that address is unknown.
        let symbolized: Vec<Option<String>> = match self.inner.symbolize(src, Input::AbsAddr(addrs))
        {
            Ok(syms) => syms.into_iter().map(|s| name_of(&s)).collect(),
            Err(_) => addrs
                .iter()
                .map(|a| {
                    self.inner
                        .symbolize_single(src, Input::AbsAddr(*a))
                        .ok()
                        .and_then(|s| name_of(&s))
                })
                .collect(),
        };
        symbolized
            .into_iter()
            .map(|name| match name {
                Some(name) => intern(&mut self.names, &name),
                None => self.unknown.clone(),
            })
            .collect()
    }
}

fn name_of(s: &Symbolized<'_>) -> Option<String> {
    match s {
        Symbolized::Sym(sym) => Some(sym.name.to_string()),
        Symbolized::Unknown(_) => None,
    }
}

/// Return addresses point after the call instruction, possibly into the next
/// function: look up the address before them. The leaf (index 0) is the
/// interrupted instruction itself.
fn lookup_addr(index: usize, addr: u64) -> u64 {
    if index == 0 {
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
    }
}
