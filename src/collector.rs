//! The collector: turns one drained [`RawBatch`] into an [`Interval`] of raw
//! samples (addresses, not yet symbols) and accounts for every sample the
//! BPF program took: counted, lost with a reason, or with a missed stack.

use std::time::Duration;

use crate::profile::LossReport;
use crate::sampler::RawBatch;

/// -EFAULT from bpf_get_stackid: the sample has no such stack (a user-mode
/// sample has no kernel stack). Not an error.
const EFAULT: i32 = 14;
/// -ENOENT: not collected (-U / -K); see bpf/profile.h.
const ENOENT: i32 = 2;
/// -EEXIST: stack-map hash collision.
const EEXIST: i32 = 17;
/// -ENOMEM: the stack map is full.
const ENOMEM: i32 = 12;

/// One half of a raw stack.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RawStack {
    /// Not collected, or no such stack.
    Absent,
    /// Lost: collision or stack map full.
    Missed,
    /// Addresses, leaf first.
    Addrs(Vec<u64>),
}

/// One counts-map entry with its stacks resolved to addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSample {
    /// Process id.
    pub tgid: u32,
    /// Which of its address spaces (see [`crate::process::AspaceId`]).
    pub aspace: u32,
    /// Thread name.
    pub comm: String,
    /// User stack.
    pub user: RawStack,
    /// Kernel stack.
    pub kernel: RawStack,
    /// The Python frames the thread ran, innermost first (empty: none).
    pub python: Vec<crate::python::RawPyFrame>,
    /// Samples.
    pub count: u64,
}

/// The raw samples of one interval.
#[derive(Debug, Clone, Default)]
pub struct Interval {
    /// Interval number, from 0.
    pub index: u64,
    /// Start, relative to the start of sampling.
    pub start: Duration,
    /// Length.
    pub duration: Duration,
    /// Samples.
    pub samples: Vec<RawSample>,
    /// Accounting.
    pub loss: LossReport,
}

/// A sample whose user stack is still to be walked: taken before its
/// process's unwind tables were loaded, it came whole from the kernel
/// (registers and the top of the user stack) and the unwinder walks it
/// once they are (see [`crate::unwind::deferred`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSample {
    /// Its number among the run's deferred samples.
    pub seq: u64,
    /// Process id.
    pub tgid: u32,
    /// Which of its address spaces.
    pub aspace: u32,
    /// Thread name.
    pub comm: String,
    /// Kernel stack.
    pub kernel: RawStack,
    /// The Python frames, innermost first (empty: none).
    pub python: Vec<crate::python::RawPyFrame>,
    /// Its user stack, unless already handed to the unwinder (which then
    /// has it walked, or waiting for its process, under `seq`).
    pub stack: Option<crate::unwind::deferred::DeferredStack>,
}

/// The pending samples' user stacks, walked: what joins the interval.
#[derive(Debug, Clone, Default)]
pub struct WalkedSamples {
    /// The samples, with their user stacks.
    pub samples: Vec<RawSample>,
    /// How they were walked.
    pub unwind: crate::sampler::UnwindCounts,
}

/// profile.py's `stack_id_err`: a negative id other than -EFAULT (and our
/// "not collected" marker) means the stack was lost.
fn stack_id_err(id: i32) -> bool {
    id < 0 && id != -EFAULT && id != -ENOENT
}

fn resolve(id: i32, batch: &RawBatch) -> RawStack {
    if id >= 0 {
        match batch.stacks.get(&id) {
            Some(addrs) => RawStack::Addrs(addrs.clone()),
            // Counted under an id the stack map no longer holds: can't
            // happen while ids are only cleared after draining; show it as
            // missed rather than invent a stack.
            None => RawStack::Missed,
        }
    } else if stack_id_err(id) {
        RawStack::Missed
    } else {
        RawStack::Absent
    }
}

/// The Python frames kept under `hash` (none for 0, or if not kept).
fn python_of(hash: u64, batch: &RawBatch) -> Vec<crate::python::RawPyFrame> {
    if hash == 0 {
        return Vec::new();
    }
    batch.python.get(&hash).cloned().unwrap_or_default()
}

/// Whether a stack was missed for want of room: a stack-map collision
/// (-EEXIST), or a full stack map (-ENOMEM, from the hashed maps). Either
/// way a larger --stack-storage-size helps.
fn too_small(id: i32) -> bool {
    id == -EEXIST || id == -ENOMEM
}

/// A kernel stack: by hash from the kernel-stack map, else as an id.
fn resolve_kernel(id: i32, hash: u64, batch: &RawBatch) -> RawStack {
    if hash == 0 {
        return resolve(id, batch);
    }
    match batch.kernel.get(&hash) {
        Some(addrs) => RawStack::Addrs(addrs.clone()),
        None => RawStack::Missed,
    }
}

/// Builds an interval from a drained batch.
pub fn collect(batch: &RawBatch, index: u64, start: Duration, duration: Duration) -> Interval {
    let mut loss = LossReport {
        taken: batch.stats.taken,
        lost_hash_full: batch.stats.lost_hash_full,
        lost_in_flight: batch.in_flight,
        ..Default::default()
    };
    let mut samples = Vec::with_capacity(batch.entries.len());
    loss.unwind = batch.stats.unwind;
    for e in &batch.entries {
        let user = if e.user_stack_hash != 0 {
            match batch.walked.get(&e.user_stack_hash) {
                Some(addrs) => RawStack::Addrs(addrs.clone()),
                None => RawStack::Missed,
            }
        } else {
            resolve(e.user_stack_id, batch)
        };
        let kernel = resolve_kernel(e.kernel_stack_id, e.kernel_stack_hash, batch);
        if user == RawStack::Missed || kernel == RawStack::Missed {
            loss.missing_stacks += 1;
            loss.missed_stack_samples += e.count;
            loss.stack_collision |= too_small(e.user_stack_id) || too_small(e.kernel_stack_id);
        }
        loss.counted += e.count;
        samples.push(RawSample {
            tgid: e.tgid,
            aspace: e.aspace,
            comm: e.comm.clone(),
            user,
            kernel,
            python: python_of(e.python_stack_hash, batch),
            count: e.count,
        });
    }
    // Deferred samples are in the profile (once walked): accounted here.
    for d in &batch.deferred {
        loss.counted += 1;
        if resolve_kernel(d.kernel_stack_id, d.kernel_stack_hash, batch) == RawStack::Missed {
            loss.missing_stacks += 1;
            loss.missed_stack_samples += 1;
            loss.stack_collision |= too_small(d.kernel_stack_id);
        }
    }
    // What the program counted but the map did not hold (can't happen with
    // a quiet map): report it as lost in flight rather than hide it.
    let program_counted = batch.stats.counted + batch.stats.deferred;
    if program_counted > loss.counted {
        loss.lost_in_flight += program_counted - loss.counted;
    }
    Interval {
        index,
        start,
        duration,
        samples,
        loss,
    }
}

/// Takes a batch's deferred samples, their kernel stacks resolved, for the
/// unwinder to walk (they were accounted for by [`collect`]).
pub fn pending(batch: &mut RawBatch) -> Vec<PendingSample> {
    let deferred = std::mem::take(&mut batch.deferred);
    deferred
        .into_iter()
        .map(|mut d| PendingSample {
            stack: d.take_stack(),
            seq: d.seq,
            tgid: d.tgid,
            aspace: d.aspace,
            kernel: resolve_kernel(d.kernel_stack_id, d.kernel_stack_hash, batch),
            python: python_of(d.python_stack_hash, batch),
            comm: d.comm,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::{RawEntry, SampleStats};

    fn entry(u: i32, k: i32, count: u64) -> RawEntry {
        RawEntry {
            tgid: 7,
            aspace: 0,
            comm: "w".into(),
            user_stack_id: u,
            kernel_stack_id: k,
            user_stack_hash: 0,
            kernel_stack_hash: 0,
            python_stack_hash: 0,
            count,
        }
    }

    #[test]
    fn accounts_for_every_sample() {
        let batch = RawBatch {
            entries: vec![
                entry(1, -EFAULT, 10),
                entry(-EEXIST, 2, 3),
                entry(1, -12, 1),
                entry(-ENOENT, 2, 4),
            ],
            stacks: [(1, vec![0x10, 0x20]), (2, vec![0xffff_0000])].into(),
            stats: SampleStats {
                taken: 20,
                counted: 18,
                lost_hash_full: 2,
                ..Default::default()
            },
            in_flight: 0,
            ..Default::default()
        };
        let iv = collect(&batch, 0, Duration::ZERO, Duration::from_secs(1));
        assert_eq!(iv.loss.counted, 18);
        assert_eq!(iv.loss.taken, iv.loss.counted + iv.loss.lost());
        assert_eq!(iv.loss.missing_stacks, 2);
        assert_eq!(iv.loss.missed_stack_samples, 4);
        assert!(iv.loss.stack_collision);
        assert_eq!(iv.samples[0].user, RawStack::Addrs(vec![0x10, 0x20]));
        assert_eq!(iv.samples[0].kernel, RawStack::Absent);
        assert_eq!(iv.samples[1].user, RawStack::Missed);
        assert_eq!(iv.samples[2].kernel, RawStack::Missed);
        assert_eq!(iv.samples[3].user, RawStack::Absent);
    }

    #[test]
    fn a_shortfall_is_reported_not_hidden() {
        let batch = RawBatch {
            entries: vec![entry(-ENOENT, -ENOENT, 5)],
            stats: SampleStats {
                taken: 7,
                counted: 7,
                ..Default::default()
            },
            ..Default::default()
        };
        let iv = collect(&batch, 0, Duration::ZERO, Duration::ZERO);
        assert_eq!(iv.loss.counted, 5);
        assert_eq!(iv.loss.lost(), 2);
        assert_eq!(iv.loss.taken, iv.loss.counted + iv.loss.lost());
    }

    #[test]
    fn kernel_stacks_by_hash_are_found_or_missed() {
        let mut e = entry(-ENOENT, -ENOENT, 2);
        e.kernel_stack_hash = 0x51;
        let mut gone = entry(-ENOENT, -ENOENT, 1);
        gone.kernel_stack_hash = 0x77;
        let batch = RawBatch {
            entries: vec![e, gone],
            kernel: [(0x51, vec![0xffff_1000, 0xffff_2000])].into(),
            stats: SampleStats {
                taken: 3,
                counted: 3,
                ..Default::default()
            },
            ..Default::default()
        };
        let iv = collect(&batch, 0, Duration::ZERO, Duration::ZERO);
        assert_eq!(
            iv.samples[0].kernel,
            RawStack::Addrs(vec![0xffff_1000, 0xffff_2000])
        );
        assert_eq!(iv.samples[1].kernel, RawStack::Missed);
        assert_eq!(iv.loss.missed_stack_samples, 1);
    }

    fn deferred(kernel_stack_id: i32) -> crate::sampler::DeferredSample {
        crate::sampler::DeferredSample {
            seq: 0,
            tgid: 9,
            aspace: 1,
            generation: 0,
            kernel_stack_id,
            kernel_stack_hash: 0,
            python_stack_hash: 0,
            comm: "cc1".into(),
            regs: Default::default(),
            stack: Some(vec![0; 16]),
        }
    }

    #[test]
    fn deferred_samples_are_counted_once_and_a_missing_record_is_lost() {
        let mut batch = RawBatch {
            entries: vec![entry(1, -EFAULT, 2)],
            stacks: [(1, vec![0x10]), (4, vec![0xffff_0000])].into(),
            stats: SampleStats {
                taken: 6,
                counted: 2,
                deferred: 4,
                ..Default::default()
            },
            // One of the four records never arrived.
            deferred: vec![deferred(4), deferred(-EFAULT), deferred(-EEXIST)],
            ..Default::default()
        };
        let iv = collect(&batch, 0, Duration::ZERO, Duration::ZERO);
        assert_eq!(iv.loss.counted, 5);
        assert_eq!(iv.loss.lost_in_flight, 1);
        assert_eq!(iv.loss.taken, iv.loss.counted + iv.loss.lost());
        assert_eq!(iv.loss.missed_stack_samples, 1);
        assert_eq!(iv.samples.len(), 1, "deferred samples join once walked");
        let p = pending(&mut batch);
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].kernel, RawStack::Addrs(vec![0xffff_0000]));
        assert_eq!(p[1].kernel, RawStack::Absent);
        assert_eq!(p[2].kernel, RawStack::Missed);
        assert!(batch.deferred.is_empty());
    }
}
