//! The sampler: loads the BPF program (bpf/profile.bpf.c), writes its filters,
//! attaches it to a CPU-clock perf event on every profiled CPU, and hands out
//! the raw contents of its maps one interval at a time ([`Sampler::drain`]).
//!
//! It knows nothing of symbols or output formats: what it produces is a
//! [`RawBatch`] of stack ids, addresses and counters.

mod batch;
mod deferred;
mod drain;
mod loading;
pub mod own_symbols;
pub mod perf_event;
mod process_events;
pub mod program;
mod skel;

use std::fs;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, MapHandle, MapType, OpenMapMut, RingBuffer};

pub use deferred::DeferredSample;
pub use drain::{RawBatch, RawEntry, SampleStats, StopReasons, UnwindCounts};
use loading::{keep_libbpf_message, load_error, verifier_figures};
pub use loading::{LoadError, StartCost};
pub use process_events::ProcessEvent;
use process_events::{parse_process_event, version_bytes};

pub use perf_event::{SampleEvent, SampleRate};
use skel::{types, ProfileSkel, ProfileSkelBuilder};

use crate::process::kernel_maps::VersionKey;
use crate::unwind::deferred::DeferredStack;
use crate::unwind::loader::UnwindMaps;
use crate::unwind::UnwindMode;

/// Defaults shared with the command line, so `--help` and behaviour agree.
pub mod defaults {
    /// profile.py's default sampling frequency.
    pub const FREQUENCY: u64 = 49;
    /// Entries in the counts hash (profile.py's default).
    pub const HASH_STORAGE_SIZE: u32 = 40960;
    /// Entries in the stack-trace map (profile.py's default).
    pub const STACK_STORAGE_SIZE: u32 = 16384;
}

/// What the sampler samples; built by the command line.
#[derive(Debug, Clone)]
pub struct SamplerConfig {
    /// `-F` or `-c`.
    pub rate: SampleRate,
    /// `-p`: only these processes (empty: all).
    pub pids: Vec<u32>,
    /// `-L`: only these threads (empty: all).
    pub tids: Vec<u32>,
    /// `-I`: keep samples of the idle task (pid 0).
    pub include_idle: bool,
    /// Collect user stacks (false with `-K`).
    pub user_stacks: bool,
    /// Collect kernel stacks (false with `-U`).
    pub kernel_stacks: bool,
    /// `-C`: only this CPU (None: every online CPU).
    pub cpu: Option<u32>,
    /// `--hash-storage-size`.
    pub hash_storage_size: u32,
    /// `--stack-storage-size`.
    pub stack_storage_size: u32,
    /// `--cgroupmap`: a pinned hash of u64 cgroup ids.
    pub cgroup_map: Option<PathBuf>,
    /// `--mntnsmap`: a pinned hash of u64 mount namespace inode numbers.
    pub mntns_map: Option<PathBuf>,
    /// `--include-self`: keep samples of this profiler's own threads.
    pub include_self: bool,
    /// The profiler's pid namespace (device, inode of /proc/self/ns/pid)
    /// when it is not the initial one: pids are then translated into it.
    pub pid_namespace: Option<(u64, u64)>,
    /// `--unwind`.
    pub unwind: UnwindMode,
    /// `--unwind-memory`, in bytes.
    pub unwind_memory: u64,
    /// `--unwind-cache` (None: `--no-cache`).
    pub unwind_cache: Option<std::path::PathBuf>,
    /// `--unwind-defer-all`: every user stack deferred to user space.
    pub defer_all: bool,
    /// `--python`.
    pub python: crate::python::PythonMode,
    /// `--stats`: ask the kernel what verifying the sampler cost. (A load
    /// the verifier refuses then says less: its log holds statistics only;
    /// RS_PROFILE_BPF_LOG=1 without --stats gives the whole log.)
    pub verifier_stats: bool,
}

/// The inode of the initial pid namespace (the kernel's PROC_PID_INIT_INO).
const INIT_PID_NS_INO: u64 = 0xEFFF_FFFC;

/// The profiler's own pid namespace, if it is not the initial one: then the
/// BPF program must see pids as this namespace does, as `-p`, `-L`, /proc
/// and the output all do.
pub fn own_pid_namespace() -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata("/proc/self/ns/pid").ok()?;
    (m.ino() != INIT_PID_NS_INO).then(|| (m.dev(), m.ino()))
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            rate: SampleRate::Frequency(defaults::FREQUENCY),
            pids: Vec::new(),
            tids: Vec::new(),
            include_idle: false,
            user_stacks: true,
            kernel_stacks: true,
            cpu: None,
            hash_storage_size: defaults::HASH_STORAGE_SIZE,
            stack_storage_size: defaults::STACK_STORAGE_SIZE,
            cgroup_map: None,
            mntns_map: None,
            include_self: false,
            pid_namespace: None,
            unwind: UnwindMode::Auto,
            unwind_memory: crate::unwind::DEFAULT_MEMORY_MB << 20,
            unwind_cache: None,
            defer_all: false,
            python: crate::python::PythonMode::Auto,
            verifier_stats: false,
        }
    }
}

/// A loaded and attached sampler. Dropping it detaches every perf event.
pub struct Sampler {
    // Field order matters: links detach before the skeleton is closed.
    links: Vec<Link>,
    skel: ProfileSkel<'static>,
    generation: u32,
    cpus: Vec<u32>,
    /// The process-event and deferred-stack ring buffers.
    rings: RingBuffer<'static>,
    /// Processes announced and exited, as the ring buffer delivers them.
    events: mpsc::Receiver<ProcessEvent>,
    /// Samples deferred for user space to walk, as the ring buffer
    /// delivers them ...
    deferred_rx: mpsc::Receiver<DeferredSample>,
    /// ... and kept until the drain of their generation.
    deferred: Vec<DeferredSample>,
    zero_stats: Vec<Vec<u8>>,
    event: SampleEvent,
    /// Until [`Sampler::attach`]: the rate to sample at.
    rate: Option<SampleRate>,
    drain_buffers: drain::DrainBuffers,
    /// The file versions put in `known_versions`.
    known_versions: Vec<VersionKey>,
    /// What starting cost, for `--stats`.
    pub start_cost: StartCost,
}

impl Sampler {
    /// Loads and configures the BPF sampler and attaches its exec and fork
    /// hooks; [`Sampler::attach`] starts sampling.
    pub fn start(cfg: &SamplerConfig) -> Result<Sampler> {
        if !Path::new("/sys/kernel/btf/vmlinux").exists() {
            return Err(LoadError::NoBtf.into());
        }
        let started = std::time::Instant::now();
        let cpus = match cfg.cpu {
            Some(cpu) => vec![cpu],
            None => perf_event::online_cpus()?,
        };

        // The skeleton borrows its object storage for its whole life; the
        // sampler lives until the end of the run, so one small leak is fine.
        libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Warn, keep_libbpf_message)));
        let storage: &'static mut MaybeUninit<libbpf_rs::OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = ProfileSkelBuilder::default()
            .open(storage)
            .context("failed to open the BPF object")?;

        {
            let rodata = open
                .maps
                .rodata_data
                .as_deref_mut()
                .expect("the skeleton maps .rodata: it holds `cfg`");
            let c = &mut rodata.cfg;
            c.filter_tgid = u8::from(!cfg.pids.is_empty());
            c.filter_tid = u8::from(!cfg.tids.is_empty());
            c.include_idle = u8::from(cfg.include_idle);
            c.user_stacks = u8::from(cfg.user_stacks);
            c.kernel_stacks = u8::from(cfg.kernel_stacks);
            c.filter_cgroup = u8::from(cfg.cgroup_map.is_some());
            c.filter_mntns = u8::from(cfg.mntns_map.is_some());
            c.exclude_self = u8::from(!cfg.include_self);
            c.self_tgid = std::process::id();
            c.defer_all = u8::from(cfg.defer_all);
            c.python = u8::from(cfg.python == crate::python::PythonMode::Auto && cfg.user_stacks);
            c.unwind_mode = match cfg.unwind {
                UnwindMode::Fp => types::unwind_mode::UNWIND_MODE_FP,
                UnwindMode::Auto => types::unwind_mode::UNWIND_MODE_AUTO,
                UnwindMode::Dwarf => types::unwind_mode::UNWIND_MODE_DWARF,
            }
            .0 as u8;
            if let Some((dev, ino)) = cfg.pid_namespace {
                c.use_pidns = 1;
                c.pidns_dev = dev;
                c.pidns_ino = ino;
            }
        }
        let maps = &mut open.maps;
        for map in [&mut maps.counts0, &mut maps.counts1] {
            map.set_max_entries(cfg.hash_storage_size)
                .context("failed to size the counts map")?;
        }
        for map in [&mut maps.stacks0, &mut maps.stacks1] {
            map.set_max_entries(cfg.stack_storage_size)
                .context("failed to size the stack map")?;
        }
        // Walked stacks take 1 KB each (allocated as stacks are stored, not
        // up front: 32 MB the kernel zeroed at every start); none without
        // tables.
        let walked = if cfg.unwind == UnwindMode::Fp {
            1
        } else {
            cfg.stack_storage_size
        };
        for map in [&mut maps.user_stacks0, &mut maps.user_stacks1] {
            map.set_max_entries(walked)
                .context("failed to size the walked-stack map")?;
        }
        let kernel = if cfg.kernel_stacks {
            cfg.stack_storage_size
        } else {
            1
        };
        for map in [&mut maps.kernel_stacks0, &mut maps.kernel_stacks1] {
            map.set_max_entries(kernel)
                .context("failed to size the kernel-stack map")?;
        }
        let python = if cfg.python == crate::python::PythonMode::Auto && cfg.user_stacks {
            cfg.stack_storage_size
        } else {
            1
        };
        for map in [&mut maps.python_stacks0, &mut maps.python_stacks1] {
            map.set_max_entries(python)
                .context("failed to size the Python-stack map")?;
        }
        let cgroup_set = cfg
            .cgroup_map
            .as_deref()
            .map(|path| use_pinned_set(&mut maps.cgroup_sets, path, "--cgroupmap"))
            .transpose()?;
        let mntns_set = cfg
            .mntns_map
            .as_deref()
            .map(|path| use_pinned_set(&mut maps.mount_ns_sets, path, "--mntnsmap"))
            .transpose()?;

        // Level 4 logs statistics only; the buffer outlives the load.
        let mut verifier_log = vec![0u8; if cfg.verifier_stats { 4096 } else { 0 }];
        if cfg.verifier_stats {
            use libbpf_rs::AsRawLibbpf;
            let prog = &mut open.progs.do_perf_event;
            prog.set_log_level(4);
            // SAFETY: the program belongs to `open`, and the buffer lives
            // until after `open.load()` below, the only call that writes it.
            unsafe {
                libbpf_rs::libbpf_sys::bpf_program__set_log_buf(
                    prog.as_libbpf_object().as_ptr(),
                    verifier_log.as_mut_ptr().cast(),
                    verifier_log.len() as _,
                );
            }
        }
        let skel = open
            .load()
            .map_err(|err| load_error(err, "failed to load the BPF program"))?;
        let verifier = cfg
            .verifier_stats
            .then(|| {
                let end = verifier_log.iter().position(|&b| b == 0).unwrap_or(0);
                verifier_figures(&String::from_utf8_lossy(&verifier_log[..end]))
            })
            .flatten();
        for (outer, set, flag) in [
            (&skel.maps.cgroup_sets, &cgroup_set, "--cgroupmap"),
            (&skel.maps.mount_ns_sets, &mntns_set, "--mntnsmap"),
        ] {
            if let Some(set) = set {
                let fd = set.as_fd().as_raw_fd() as u32;
                outer
                    .update(&0u32.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
                    .map_err(|err| anyhow!("{flag}: failed to use the map: {err}"))?;
            }
        }
        for (map, ids, what) in [
            (&skel.maps.tgids, &cfg.pids, "PID"),
            (&skel.maps.tids, &cfg.tids, "TID"),
        ] {
            for id in ids {
                map.update(&id.to_ne_bytes(), &[1], MapFlags::ANY)
                    .with_context(|| format!("failed to add {what} {id} to the filter"))?;
            }
        }

        // Both rings in one epoll set: an announcement wakes the sampling
        // thread, and so does a deferred-stack ring a quarter full.
        let (tx, rx) = mpsc::channel();
        let (deferred_tx, deferred_rx) = mpsc::channel();
        let mut seq = 0u64;
        let mut builder = libbpf_rs::RingBufferBuilder::new();
        builder
            .add(&skel.maps.new_tgids, move |data: &[u8]| {
                if let Some(event) = parse_process_event(data) {
                    let _ = tx.send(event);
                }
                0
            })
            .context("failed to set up the new-process ring buffer")?
            .add(&skel.maps.deferred_stacks, move |data: &[u8]| {
                if let Some(mut d) = deferred::parse(data) {
                    d.seq = seq;
                    seq += 1;
                    let _ = deferred_tx.send(d);
                }
                0
            })
            .context("failed to set up the deferred-stack ring buffer")?;
        let rings = builder
            .build()
            .context("failed to set up the ring buffers")?;

        let zero_stats = drain::zero_stats(&skel.maps.stats)?;
        let mut sampler = Sampler {
            zero_stats,
            links: Vec::with_capacity(cpus.len()),
            skel,
            generation: 0,
            cpus: cpus.clone(),
            rings,
            events: rx,
            deferred_rx,
            deferred: Vec::new(),
            event: SampleEvent::CpuClock,
            rate: None,
            drain_buffers: Default::default(),
            known_versions: Vec::new(),
            start_cost: StartCost {
                wall: Duration::ZERO,
                verifier,
            },
        };
        // Number address spaces from now on: exec and new processes.
        for (prog, what) in [
            (&sampler.skel.progs.on_exec, "exec"),
            (&sampler.skel.progs.on_fork, "fork"),
            (&sampler.skel.progs.on_exit, "process exit"),
        ] {
            let link = prog
                .attach()
                .map_err(|err| load_error(err, &format!("failed to attach to {what}")))?;
            sampler.links.push(link);
        }
        sampler.rate = Some(cfg.rate);
        sampler.start_cost.wall = started.elapsed();
        Ok(sampler)
    }

    /// Starts sampling: attaches the program to a perf event on every
    /// profiled CPU. Separate from [`Sampler::start`] so that what must be
    /// ready before the first sample (the targets' unwind tables) can be.
    pub fn attach(&mut self) -> Result<()> {
        let Some(rate) = self.rate.take() else {
            return Ok(());
        };
        for cpu in self.cpus.clone() {
            let (fd, event) = perf_event::open_sampling_event(cpu, rate)?;
            self.event = event;
            let link = self
                .skel
                .progs
                .do_perf_event
                .attach_perf_event(fd)
                .map_err(|err| {
                    load_error(
                        err,
                        &format!("failed to attach to the perf event on CPU {cpu}"),
                    )
                })?;
            self.links.push(link);
        }
        Ok(())
    }

    /// The event that drives sampling (cpu-cycles where the CPU counts
    /// them, else cpu-clock).
    pub fn event(&self) -> SampleEvent {
        self.event
    }

    /// The CPUs being sampled.
    pub fn cpus(&self) -> &[u32] {
        &self.cpus
    }

    /// Waits up to `timeout` for address spaces seen for the first time
    /// (so their memory maps can be read while they live) and for processes
    /// that were seen and exited, and returns them in order.
    pub fn poll_process_events(&mut self, timeout: Duration) -> Result<Vec<ProcessEvent>> {
        self.rings.poll(timeout).or_else(|err| {
            // A signal (Ctrl-C) interrupts epoll: not an error.
            if err.kind() == libbpf_rs::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(err)
            }
        })?;
        // Exits are submitted without a wake-up: epoll does not see them.
        self.rings
            .consume()
            .context("failed to read the ring buffers")?;
        let events = self.events.try_iter().collect();
        // After the announcements: a deferred sample is then never handed
        // on before the announcement of its process.
        self.deferred.extend(self.deferred_rx.try_iter());
        Ok(events)
    }

    /// The user stacks of the deferred samples read so far, for the
    /// unwinder to walk as soon as their process is loaded (so a record's
    /// stack copy is not held to the interval's end); the samples stay,
    /// to be drained with their generation.
    pub fn take_stacks(&mut self) -> Vec<DeferredStack> {
        self.deferred
            .iter_mut()
            .filter_map(DeferredSample::take_stack)
            .collect()
    }

    /// Ends the current interval: flips the BPF program to the other map set,
    /// waits for programs still writing the old one, and returns everything it
    /// held, leaving it empty for the interval after next.
    pub fn drain(&mut self) -> Result<RawBatch> {
        let old = self.generation;
        self.generation ^= 1;
        let bss = self
            .skel
            .maps
            .bss_data
            .as_deref_mut()
            .expect("the skeleton maps .bss: it holds `generation`");
        // SAFETY: a valid, aligned pointer into the mmap'ed .bss; volatile so
        // the store is not elided (the BPF program reads it concurrently).
        unsafe { std::ptr::write_volatile(&mut bss.generation, self.generation) };
        let Sampler {
            skel,
            rings,
            deferred_rx,
            deferred,
            drain_buffers,
            zero_stats,
            ..
        } = self;
        let maps = &skel.maps;
        let (counts, stacks, walked, kernel, python) = if old == 0 {
            (
                &maps.counts0,
                &maps.stacks0,
                &maps.user_stacks0,
                &maps.kernel_stacks0,
                &maps.python_stacks0,
            )
        } else {
            (
                &maps.counts1,
                &maps.stacks1,
                &maps.user_stacks1,
                &maps.kernel_stacks1,
                &maps.python_stacks1,
            )
        };
        drain::drain_generation(
            old,
            &maps.stats,
            drain::GenerationMaps {
                counts,
                stacks,
                walked,
                kernel,
                python,
            },
            drain_buffers,
            zero_stats,
            || {
                // Called once the programs on `old` are done: every record
                // of it is in the ring by now.
                // (Process events read here wait in their channel for the
                // next poll.)
                rings.consume().context("failed to read the ring buffers")?;
                deferred.extend(deferred_rx.try_iter());
                let (mine, later): (Vec<_>, Vec<_>) = std::mem::take(deferred)
                    .into_iter()
                    .partition(|d| d.generation == old);
                *deferred = later;
                Ok(mine)
            },
        )
    }

    /// This profiler's own programs as the kernel names them, so that
    /// samples in them (its exec, fork and exit hooks) are named without
    /// reading all of `/proc/kallsyms`.
    pub fn own_kernel_symbols(&self) -> Vec<own_symbols::KernelSymbol> {
        use libbpf_rs::skel::Skel;
        let progs: Vec<_> = self.skel.object().progs().collect();
        own_symbols::of_programs(
            progs
                .iter()
                .filter_map(|p| Some((p.name().to_str()?, p.as_fd()))),
        )
    }

    /// Owned handles on the unwinder's maps, for the one thread that
    /// writes them (see [`crate::unwind`]).
    pub fn unwind_maps(&self) -> Result<UnwindMaps> {
        let maps = &self.skel.maps;
        let dup = |m: &libbpf_rs::Map<'_>, what: &str| {
            MapHandle::try_from(m).with_context(|| format!("failed to open the {what} map"))
        };
        Ok(UnwindMaps {
            shards: dup(&maps.unwind_shards, "unwind shards")?,
            mapping_slots: dup(&maps.unwind_mapping_slots, "unwind mapping slots")?,
            procs: dup(&maps.unwind_procs, "unwind processes")?,
        })
    }

    /// Whether `aspace` is still the current address space of the process
    /// `host_tgid` (its pid in the kernel's own namespace): a read of
    /// `/proc/PID/maps` describes that address space only then (an exec
    /// since replaced it). True when it can't be told.
    pub fn is_current(&self, host_tgid: u32, aspace: u32) -> bool {
        match self
            .skel
            .maps
            .proc_gens
            .lookup(&host_tgid.to_ne_bytes(), MapFlags::ANY)
        {
            // struct aspace_num: the number first.
            Ok(Some(v)) => v
                .get(..4)
                .is_none_or(|n| u32::from_ne_bytes([n[0], n[1], n[2], n[3]]) == aspace),
            // Running since before the sampler started: address space 0.
            Ok(None) => aspace == 0,
            Err(_) => true,
        }
    }

    /// Tells the BPF program which file versions user space can name
    /// (bpf/mappings.bpf.h's `known_versions`), after taking back all it
    /// was told before if `forget`: processes of those executables are
    /// announced without a wake-up.
    pub fn know_versions(&mut self, forget: bool, learnt: &[VersionKey]) -> Result<()> {
        let map = &self.skel.maps.known_versions;
        if forget {
            for k in self.known_versions.drain(..) {
                if let Err(e) = map.delete(&version_bytes(&k)) {
                    // Never left behind: BPF would spare the wake-up of a
                    // process whose files user space could not name.
                    if e.kind() != libbpf_rs::ErrorKind::NotFound {
                        return Err(e).context("failed to take back a known file version");
                    }
                }
            }
        }
        for k in learnt {
            // Full: its processes wake user space, as before.
            if map.update(&version_bytes(k), &[1], MapFlags::ANY).is_ok() {
                self.known_versions.push(*k);
            }
        }
        Ok(())
    }

    /// An owned handle on `python_procs`, for the one owner that writes it
    /// ([`crate::python::Interpreters`]).
    pub fn python_procs(&self) -> Result<MapHandle> {
        MapHandle::try_from(&self.skel.maps.python_procs)
            .context("failed to open the Python processes map")
    }

    /// Accounting of the interval in progress, without ending it.
    pub fn peek_stats(&self) -> Result<SampleStats> {
        drain::read_stats(&self.skel.maps.stats, self.generation)
    }
}

/// Opens the user's pinned filter map, checks that it is a hash with u64
/// keys as profile.py requires, and makes it the template of the map-in-map
/// that will hold it.
fn use_pinned_set(outer: &mut OpenMapMut<'_>, path: &Path, flag: &str) -> Result<MapHandle> {
    if !path.exists() {
        bail!("{flag} {}: no such file", path.display());
    }
    let handle = MapHandle::from_pinned_path(path)
        .map_err(|err| anyhow!("{flag} {}: not a pinned BPF map ({err})", path.display()))?;
    if handle.map_type() != MapType::Hash || handle.key_size() != 8 {
        bail!(
            "{flag} {}: a {:?} map with {}-byte keys; a hash map with 8-byte keys is needed",
            path.display(),
            handle.map_type(),
            handle.key_size()
        );
    }
    outer
        .set_inner_map_fd(handle.as_fd())
        .map_err(|err| anyhow!("{flag} {}: failed to use the map: {err}", path.display()))?;
    Ok(handle)
}

/// Whether a process (thread group) or thread with this id exists now.
pub fn task_exists(id: u32) -> bool {
    id != 0 && fs::metadata(format!("/proc/{id}")).is_ok()
}
