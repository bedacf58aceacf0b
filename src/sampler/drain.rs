//! Reads one generation of the BPF maps out and clears it. Called only after
//! the program was flipped to the other generation, so nothing writes these
//! maps meanwhile and what is read is exactly what was counted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapMut};

use super::batch::{drain_hash, BatchBuffers};
use super::skel::types;

/// One key of the counts hash with its count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    /// Process (thread group) id.
    pub tgid: u32,
    /// Which address space of the process (see bpf/profile.h).
    pub aspace: u32,
    /// Thread name at the time of the sample.
    pub comm: String,
    /// Stack id, or -errno (see bpf/profile.h).
    pub user_stack_id: i32,
    /// Stack id, or -errno.
    pub kernel_stack_id: i32,
    /// Non-zero: the user stack was walked with unwind tables and is in
    /// [`RawBatch::walked`] under this hash.
    pub user_stack_hash: u64,
    /// Non-zero: the kernel stack is in [`RawBatch::kernel`] under this
    /// hash.
    pub kernel_stack_hash: u64,
    /// Non-zero: the Python frames are in [`RawBatch::python`] under this
    /// hash.
    pub python_stack_hash: u64,
    /// Samples with this key.
    pub count: u64,
}

/// The BPF program's own accounting for one interval, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SampleStats {
    /// Samples that passed the filters.
    pub taken: u64,
    /// Samples added to the counts hash.
    pub counted: u64,
    /// Samples dropped because the counts hash was full.
    pub lost_hash_full: u64,
    /// Samples sent whole for user space to walk (not in the counts hash).
    pub deferred: u64,
    /// Counted samples whose user stack id was -EEXIST (stack map collision).
    pub user_stack_collision: u64,
    /// Counted samples whose user stack id was another error (e.g. -ENOMEM).
    pub user_stack_nomem: u64,
    /// Like `user_stack_collision`, for kernel stacks.
    pub kernel_stack_collision: u64,
    /// Like `user_stack_nomem`, for kernel stacks.
    pub kernel_stack_nomem: u64,
    /// The unwinder's counters (bpf/profile.h's `sample_stats`).
    pub unwind: UnwindCounts,
}

/// What happened to user stacks under `--unwind auto|dwarf`, in samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnwindCounts {
    /// Walked with unwind tables.
    pub unwound: u64,
    /// Of those, walks that stopped before the outermost frame.
    pub truncated: u64,
    /// Walks that met code in no mapping the unwinder knew (maps re-read).
    pub unknown_mapping: u64,
    /// Samples of processes whose tables were not loaded yet: walked with
    /// frame pointers instead.
    pub not_loaded: u64,
    /// Walked stacks that did not fit in the map (user stack missing).
    pub stacks_full: u64,
    /// Samples taken before their tables were loaded and walked in user
    /// space with them once they were (deferred unwinding).
    pub deferred: u64,
    /// Of those, walks that stopped before the outermost frame.
    pub deferred_truncated: u64,
    /// Samples that should have been deferred but found the ring buffer
    /// full (walked with frame pointers, within `not_loaded`).
    pub deferred_ring_full: u64,
    /// Walks, in the kernel or deferred, cut at the frame limit (127)
    /// rather than stopped early: the stack is deeper than a sample keeps.
    pub cut: u64,
    /// Why walks stopped early.
    pub stopped: StopReasons,
    /// Samples of a known Python process that came with Python frames.
    pub python: u64,
    /// Of those, Python frames that did not fit in their map (left out).
    pub python_full: u64,
}

/// Why walks (in the kernel or deferred) stopped before the outermost
/// frame, in samples (bpf/profile.h's `enum stop_reason`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StopReasons {
    /// The stack could not be read where the next frame was.
    pub bad_read: u64,
    /// A frame pointer pointed below the stack pointer (code without frame
    /// pointers walked by them).
    pub fp_off_stack: u64,
    /// Code without a rule the walker can use (`--unwind dwarf`, or an
    /// unusual CFI expression).
    pub no_rule: u64,
    /// A caller's frame that was not above its callee's.
    pub not_growing: u64,
}

impl StopReasons {
    /// Adds another count.
    pub fn add(&mut self, o: &StopReasons) {
        self.bad_read = self.bad_read.saturating_add(o.bad_read);
        self.fp_off_stack = self.fp_off_stack.saturating_add(o.fp_off_stack);
        self.no_rule = self.no_rule.saturating_add(o.no_rule);
        self.not_growing = self.not_growing.saturating_add(o.not_growing);
    }
}

impl UnwindCounts {
    /// Adds another interval's counts.
    pub fn add(&mut self, o: &UnwindCounts) {
        self.unwound = self.unwound.saturating_add(o.unwound);
        self.truncated = self.truncated.saturating_add(o.truncated);
        self.unknown_mapping = self.unknown_mapping.saturating_add(o.unknown_mapping);
        self.not_loaded = self.not_loaded.saturating_add(o.not_loaded);
        self.stacks_full = self.stacks_full.saturating_add(o.stacks_full);
        self.deferred = self.deferred.saturating_add(o.deferred);
        self.deferred_truncated = self.deferred_truncated.saturating_add(o.deferred_truncated);
        self.deferred_ring_full = self.deferred_ring_full.saturating_add(o.deferred_ring_full);
        self.cut = self.cut.saturating_add(o.cut);
        self.stopped.add(&o.stopped);
        self.python = self.python.saturating_add(o.python);
        self.python_full = self.python_full.saturating_add(o.python_full);
    }
}

/// Everything one generation of the maps held.
#[derive(Debug, Default)]
pub struct RawBatch {
    /// The counts hash.
    pub entries: Vec<RawEntry>,
    /// Stack id -> addresses, leaf first, for every id the entries name.
    pub stacks: HashMap<i32, Vec<u64>>,
    /// Walked user stacks by hash, leaf first.
    pub walked: HashMap<u64, Vec<u64>>,
    /// Kernel stacks by hash, leaf first.
    pub kernel: HashMap<u64, Vec<u64>>,
    /// Python frames by hash, innermost first.
    pub python: HashMap<u64, Vec<crate::python::RawPyFrame>>,
    /// The program's accounting.
    pub stats: SampleStats,
    /// Samples the program had taken but not finished when the drain gave up
    /// waiting for it (should stay 0; reported as lost if not).
    pub in_flight: u64,
    /// Samples sent whole for user space to walk (their kernel stacks are
    /// in `stacks`).
    pub deferred: Vec<super::DeferredSample>,
}

/// How long to wait for programs still running on the old generation. BPF
/// programs run for microseconds with preemption off; a vCPU descheduled by
/// the hypervisor can stretch that, hence the generous bound.
const SETTLE_TIMEOUT: Duration = Duration::from_millis(200);

/// The maps of one generation.
pub(super) struct GenerationMaps<'a> {
    pub counts: &'a MapMut<'a>,
    pub stacks: &'a MapMut<'a>,
    pub walked: &'a MapMut<'a>,
    pub kernel: &'a MapMut<'a>,
    pub python: &'a MapMut<'a>,
}

/// Drain buffers, kept by the sampler across intervals.
#[derive(Default)]
pub(super) struct DrainBuffers {
    counts: BatchBuffers,
    walked: BatchBuffers,
    kernel: BatchBuffers,
    python: BatchBuffers,
}

pub(super) fn drain_generation(
    generation: u32,
    stats_map: &MapMut<'_>,
    maps: GenerationMaps<'_>,
    bufs: &mut DrainBuffers,
    zero_stats: &[Vec<u8>],
    take_deferred: impl FnOnce() -> Result<Vec<super::DeferredSample>>,
) -> Result<RawBatch> {
    let GenerationMaps {
        counts,
        stacks,
        walked,
        kernel,
        python,
    } = maps;
    // A program that read `generation` just before the flip may still be
    // about to touch the old maps: give it time to start, then wait until
    // every sample taken on the old generation is finished.
    std::thread::sleep(Duration::from_micros(500));
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut stats = read_stats(stats_map, generation)?;
    let done = |s: &SampleStats| s.counted + s.lost_hash_full + s.deferred;
    while stats.taken != done(&stats) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
        stats = read_stats(stats_map, generation)?;
    }
    let in_flight = stats.taken - done(&stats).min(stats.taken);

    let entries = drain_counts(counts, &mut bufs.counts)?;
    let deferred = take_deferred()?;
    let mut ids: Vec<i32> = entries
        .iter()
        .flat_map(|e| [e.user_stack_id, e.kernel_stack_id])
        .chain(deferred.iter().map(|d| d.kernel_stack_id))
        .filter(|id| *id >= 0)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut stack_of = HashMap::with_capacity(ids.len());
    for id in ids {
        if let Some(bytes) = stacks
            .lookup(&(id as u32).to_ne_bytes(), MapFlags::ANY)
            .with_context(|| format!("failed to read stack {id}"))?
        {
            stack_of.insert(id, addresses(&bytes));
        }
    }
    clear_stacks(stacks)?;
    let walked = drain_walked(walked, &mut bufs.walked)?;
    let kernel = drain_walked(kernel, &mut bufs.kernel)?;
    let python = drain_python(python, &mut bufs.python)?;
    reset_stats(stats_map, generation, zero_stats)?;
    Ok(RawBatch {
        entries,
        stacks: stack_of,
        walked,
        kernel,
        python,
        stats,
        in_flight,
        deferred,
    })
}

/// Reads and deletes every key of a counts hash.
fn drain_counts(counts: &MapMut<'_>, bufs: &mut BatchBuffers) -> Result<Vec<RawEntry>> {
    let mut out = Vec::new();
    drain_hash(counts, bufs, |key, value| out.push(entry(key, value)))
        .context("failed to drain the counts map")?;
    Ok(out)
}

/// Reads and deletes every walked (or kernel) stack of a generation.
fn drain_walked(walked: &MapMut<'_>, bufs: &mut BatchBuffers) -> Result<HashMap<u64, Vec<u64>>> {
    let mut out = HashMap::new();
    if walked.max_entries() <= 1 {
        // A placeholder (--unwind fp, or -U for kernel stacks).
        return Ok(out);
    }
    drain_hash(walked, bufs, |key, value| {
        let hash = u64::from_ne_bytes(key[..8].try_into().expect("u64 keys"));
        out.insert(hash, walked_addresses(value));
    })
    .context("failed to drain the walked-stack map")?;
    Ok(out)
}

/// Reads and deletes every Python stack of a generation.
fn drain_python(
    map: &MapMut<'_>,
    bufs: &mut BatchBuffers,
) -> Result<HashMap<u64, Vec<crate::python::RawPyFrame>>> {
    let mut out = HashMap::new();
    if map.max_entries() <= 1 {
        // --python off: a placeholder.
        return Ok(out);
    }
    drain_hash(map, bufs, |key, value| {
        let hash = u64::from_ne_bytes(key[..8].try_into().expect("u64 keys"));
        out.insert(hash, python_frames(value));
    })
    .context("failed to drain the Python stacks")?;
    Ok(out)
}

/// A `struct python_stack`: length, then (code, instr, flags) per frame.
fn python_frames(bytes: &[u8]) -> Vec<crate::python::RawPyFrame> {
    let len = u32::from_ne_bytes(bytes[0..4].try_into().expect("struct python_stack")) as usize;
    bytes[8..]
        .chunks_exact(24)
        .take(len)
        .map(|c| crate::python::RawPyFrame {
            code: u64::from_ne_bytes(c[0..8].try_into().expect("8 bytes")),
            instr: u64::from_ne_bytes(c[8..16].try_into().expect("8 bytes")),
            entry: u32::from_ne_bytes(c[16..20].try_into().expect("4 bytes")) & 1 == 1,
        })
        .collect()
}

/// A `struct user_stack`: length, truncated flag, addresses.
fn walked_addresses(bytes: &[u8]) -> Vec<u64> {
    let len = u32::from_ne_bytes(bytes[0..4].try_into().expect("struct user_stack")) as usize;
    bytes[8..]
        .chunks_exact(8)
        .take(len)
        .map(|c| u64::from_ne_bytes(c.try_into().expect("chunks of 8")))
        .collect()
}

fn entry(key: &[u8], value: &[u8]) -> RawEntry {
    let mut k = types::stack_key::default();
    plain::copy_from_bytes(&mut k, key).expect("counts map keys are struct stack_key");
    let count = u64::from_ne_bytes(value[..8].try_into().expect("counts map values are u64"));
    let comm: Vec<u8> = k
        .comm
        .iter()
        .map(|c| *c as u8)
        .take_while(|c| *c != 0)
        .collect();
    RawEntry {
        tgid: k.tgid,
        aspace: k.aspace,
        comm: String::from_utf8_lossy(&comm).into_owned(),
        user_stack_id: k.user_stack_id,
        kernel_stack_id: k.kernel_stack_id,
        user_stack_hash: k.user_stack_hash,
        kernel_stack_hash: k.kernel_stack_hash,
        python_stack_hash: k.python_stack_hash,
        count,
    }
}

/// A stack-trace map value: u64 addresses, leaf first, zero-terminated.
fn addresses(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_ne_bytes(c.try_into().expect("chunks of 8")))
        .take_while(|a| *a != 0)
        .collect()
}

/// Stack-trace maps have no batch operations (error 524): delete one by one.
fn clear_stacks(stacks: &MapMut<'_>) -> Result<()> {
    let keys: Vec<Vec<u8>> = stacks.keys().collect();
    for key in keys {
        // ENOENT can't happen (no writer), but is harmless if it does.
        let _ = stacks.delete(&key);
    }
    Ok(())
}

/// Sums the per-CPU accounting of one generation.
pub(super) fn read_stats(stats_map: &MapMut<'_>, generation: u32) -> Result<SampleStats> {
    let per_cpu = stats_map
        .lookup_percpu(&generation.to_ne_bytes(), MapFlags::ANY)
        .context("failed to read the sample counters")?
        .unwrap_or_default();
    let mut sum = SampleStats::default();
    for bytes in per_cpu {
        let mut s = types::sample_stats::default();
        plain::copy_from_bytes(&mut s, &bytes).expect("stats values are struct sample_stats");
        sum.taken += s.taken;
        sum.counted += s.counted;
        sum.lost_hash_full += s.lost_hash_full;
        sum.deferred += s.deferred;
        sum.user_stack_collision += s.user_stack_collision;
        sum.user_stack_nomem += s.user_stack_nomem;
        sum.kernel_stack_collision += s.kernel_stack_collision;
        sum.kernel_stack_nomem += s.kernel_stack_nomem;
        sum.unwind.add(&UnwindCounts {
            unwound: s.unwound,
            truncated: s.unwind_truncated,
            unknown_mapping: s.unwind_unknown_mapping,
            not_loaded: s.unwind_not_loaded,
            stacks_full: s.unwind_stacks_full,
            deferred_ring_full: s.deferred_ring_full,
            cut: s.unwind_cut,
            python: s.python_walked,
            python_full: s.python_stacks_full,
            stopped: StopReasons {
                bad_read: s.stop_bad_read,
                fp_off_stack: s.stop_fp_off_stack,
                no_rule: s.stop_no_rule,
                not_growing: s.stop_not_growing,
            },
            ..Default::default()
        });
    }
    Ok(sum)
}

/// One zeroed counter value per possible CPU: what resets a generation's
/// accounting. Built once per run, not per drain.
pub(super) fn zero_stats(stats_map: &MapMut<'_>) -> Result<Vec<Vec<u8>>> {
    let cpus = libbpf_rs::num_possible_cpus().context("failed to count possible CPUs")?;
    Ok(vec![vec![0u8; stats_map.value_size() as usize]; cpus])
}

fn reset_stats(stats_map: &MapMut<'_>, generation: u32, zero: &[Vec<u8>]) -> Result<()> {
    stats_map
        .update_percpu(&generation.to_ne_bytes(), zero, MapFlags::ANY)
        .context("failed to reset the sample counters")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_values_stop_at_zero() {
        let mut bytes = Vec::new();
        for a in [0x10u64, 0x20, 0, 0x30] {
            bytes.extend_from_slice(&a.to_ne_bytes());
        }
        assert_eq!(addresses(&bytes), vec![0x10, 0x20]);
    }

    #[test]
    fn generated_key_matches_the_c_layout() {
        // tgid + aspace + two stack ids + comm[16] + walked-stack hash, no
        // padding.
        assert_eq!(
            std::mem::size_of::<types::stack_key>(),
            4 + 4 + 4 + 4 + 16 + 8 + 8 + 8
        );
        assert_eq!(
            std::mem::size_of::<types::python_proc>(),
            crate::python::PROC_BYTES
        );
        assert_eq!(
            std::mem::size_of::<types::python_stack>(),
            8 + 24 * types::python_consts::PYTHON_MAX_FRAMES.0 as usize
        );
        assert_eq!(std::mem::size_of::<types::user_stack>(), 8 + 127 * 8);
        assert_eq!(std::mem::size_of::<types::unwind_row>(), 8);
        assert_eq!(std::mem::size_of::<types::mapping_info>(), 32);
        use crate::unwind::{loader, table::Kind};
        assert_eq!(
            types::unwind_consts::UNWIND_SHARD_SHIFT.0,
            loader::SHARD_SHIFT
        );
        assert_eq!(
            types::unwind_consts::UNWIND_MAX_SHARDS.0,
            loader::MAX_SHARDS
        );
        for (kind, c) in [
            (Kind::None, types::unwind_kind::UNWIND_NONE),
            (Kind::CfaRsp, types::unwind_kind::UNWIND_CFA_RSP),
            (Kind::CfaRbp, types::unwind_kind::UNWIND_CFA_RBP),
            (Kind::Plt, types::unwind_kind::UNWIND_PLT),
            (Kind::Signal, types::unwind_kind::UNWIND_SIGNAL),
            (Kind::End, types::unwind_kind::UNWIND_END),
            (Kind::Unsupported, types::unwind_kind::UNWIND_UNSUPPORTED),
            (Kind::StackSwitch, types::unwind_kind::UNWIND_STACK_SWITCH),
        ] {
            assert_eq!(kind as u32, c.0);
        }
    }
}
