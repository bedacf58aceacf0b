//! The unwinder's user-space half (`--unwind auto|dwarf`): builds an unwind
//! table for each executable file the sampled processes map
//! ([`table::build`], from its CFI), loads it once into the BPF row space
//! however many processes share the file, and tells BPF, per process, which
//! table and bias each executable mapping uses. The BPF half
//! (bpf/unwinder.bpf.h) walks user stacks with them.
//!
//! It runs on a thread of its own, fed by the sampling thread with each
//! address space's memory maps as soon as it is announced (first sample,
//! again shortly after, and whenever the walker meets code in no known
//! mapping, a library loaded since). Tables are built in parallel, off the
//! sampling thread; until a process's tables are in, its samples come whole
//! from the kernel and are walked here once they are ([`deferred`]), at the
//! end of their interval. Tables no process maps any more stay cached until
//! the memory budget needs their room.

pub mod cache;
pub mod deferred;
pub mod loader;
pub mod mapping_slots;
mod ranges;
pub mod table;
mod worker;

use self::worker::State;

use std::cell::RefCell;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::collector::{PendingSample, WalkedSamples};
use crate::process::maps::Mapping;
use crate::process::AspaceId;

use self::deferred::{DeferredStack, Fallback};
use self::loader::UnwindMaps;

/// How user stacks are walked (`--unwind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UnwindMode {
    /// Unwind tables (.eh_frame / .debug_frame) where a file has them, frame
    /// pointers where it has none (JIT code, asm without CFI).
    Auto,
    /// Frame pointers only (bpf_get_stackid), as bcc's profile.py.
    Fp,
    /// Unwind tables only: a walk stops at code without CFI.
    Dwarf,
}

/// The unwinder's default table budget: a busy server's few hundred
/// distinct binaries (libc is ~30k rows, python3 ~90k, a C++ compiler ~1M;
/// 8 bytes a row).
pub const DEFAULT_MEMORY_MB: u64 = 256;

/// What the unwinder did over a run.
#[derive(Debug, Clone, Default)]
pub struct UnwindStats {
    /// Files whose tables were built.
    pub files_built: u64,
    /// Files without usable CFI (walked with frame pointers).
    pub files_without_cfi: u64,
    /// Rows built.
    pub rows_built: u64,
    /// Time spent building tables (summed over threads).
    pub build_time: Duration,
    /// Longest wait between an address space's announcement and its tables
    /// being loaded.
    pub max_load_latency: Duration,
    /// Address spaces loaded (including reloads after a refresh).
    pub loads: u64,
    /// Kernel memory of the table shards at the end.
    pub shard_bytes: u64,
    /// Processes left unloaded for want of mapping slots.
    pub slots_full: u64,
    /// Files left out for the budget.
    pub left_out: Vec<String>,
    /// What the on-disk table cache did.
    pub cache: cache::CacheStats,
    /// Deferred samples walked in user space, and the time that took.
    pub deferred_walks: u64,
    /// Time spent walking deferred samples.
    pub deferred_time: Duration,
}

enum Msg {
    /// An address space's executable mappings, as read when announced.
    Process(AspaceId, Arc<Vec<Mapping>>, Instant),
    /// A process exited (the BPF exit event). Applied after the next
    /// `Interval`: the samples it took before it exited may still need its
    /// mappings.
    Exited(AspaceId),
    /// Deferred samples' user stacks: walked as soon as their process is
    /// loaded, kept (small) until their interval ends.
    Stacks(Vec<DeferredStack>),
    /// An interval ended: its deferred samples to walk, and where to send
    /// them walked.
    Interval(Vec<PendingSample>, Option<mpsc::Sender<WalkedSamples>>),
    /// Answered once everything sent before it is loaded.
    Barrier(mpsc::Sender<()>),
}

/// The unwinder thread's handle.
///
/// Messages go over in batches, in order: what the sampling thread queued
/// since its last hand-off, one wake-up of the unwinder thread for all of
/// it (under ~300 new processes a second, a send per announcement and per
/// exit spent a fifth of the unwinder thread's CPU in futex wake-ups).
pub struct Unwinder {
    tx: Option<mpsc::Sender<Vec<Msg>>>,
    /// Announcements, exits and stacks not handed over yet (see [`Unwinder::flush`]).
    queued: RefCell<Vec<Msg>>,
    thread: Option<JoinHandle<UnwindStats>>,
}

impl Unwinder {
    /// Starts the thread that owns the unwind maps.
    pub fn start(
        maps: UnwindMaps,
        budget_bytes: u64,
        cache: cache::TableCache,
        mode: UnwindMode,
    ) -> Result<Unwinder> {
        let (tx, rx) = mpsc::channel();
        let fallback = if mode == UnwindMode::Dwarf {
            Fallback::Stop
        } else {
            Fallback::FramePointers
        };
        let thread = std::thread::Builder::new()
            .name("unwind".into())
            .spawn(move || {
                let mut state = State::new(maps, budget_bytes, cache, fallback);
                state.run(rx);
                state.finish()
            })
            .context("failed to start the unwinder thread")?;
        Ok(Unwinder {
            tx: Some(tx),
            queued: RefCell::new(Vec::new()),
            thread: Some(thread),
        })
    }

    /// An address space's current executable mappings (queued until
    /// [`Unwinder::flush`]).
    pub fn process(&self, id: AspaceId, exec: Arc<Vec<Mapping>>) {
        self.queue(Msg::Process(id, exec, Instant::now()));
    }

    /// Deferred samples' user stacks, to walk once their processes are
    /// loaded (see [`Msg::Stacks`]; queued until [`Unwinder::flush`]).
    pub fn stacks(&self, stacks: Vec<DeferredStack>) {
        if !stacks.is_empty() {
            self.queue(Msg::Stacks(stacks));
        }
    }

    /// A process exited: its mappings leave the kernel's lookup after the
    /// interval that may hold its last samples (queued until
    /// [`Unwinder::flush`]).
    pub fn exited(&self, id: AspaceId) {
        self.queue(Msg::Exited(id));
    }

    fn queue(&self, msg: Msg) {
        if self.tx.is_some() {
            self.queued.borrow_mut().push(msg);
        }
    }

    /// Hands what was queued to the unwinder thread, in one message.
    pub fn flush(&self) {
        self.send(None);
    }

    /// Sends what is queued, then `last`, as one message.
    fn send(&self, last: Option<Msg>) {
        let Some(tx) = &self.tx else {
            return;
        };
        let mut queued = std::mem::take(&mut *self.queued.borrow_mut());
        queued.extend(last);
        if !queued.is_empty() {
            let _ = tx.send(queued);
        }
    }

    /// An interval ended: walks its deferred samples (after loading what
    /// was announced before) and answers with them; None when there are
    /// none. Exits announced so far are applied after it.
    pub fn end_interval(
        &self,
        pending: Vec<PendingSample>,
    ) -> Option<mpsc::Receiver<WalkedSamples>> {
        self.tx.as_ref()?;
        if pending.is_empty() {
            self.send(Some(Msg::Interval(Vec::new(), None)));
            return None;
        }
        let (reply, rx) = mpsc::channel();
        // If the thread is gone, the receiver says so (and the samples are
        // reported lost by whoever waits for them).
        self.send(Some(Msg::Interval(pending, Some(reply))));
        Some(rx)
    }

    /// Waits up to `timeout` for everything sent so far to be loaded.
    pub fn wait_loaded(&self, timeout: Duration) {
        if self.tx.is_none() {
            return;
        }
        let (tx, rx) = mpsc::channel();
        self.send(Some(Msg::Barrier(tx)));
        let _ = rx.recv_timeout(timeout);
    }

    /// Stops the thread and returns what it did.
    pub fn finish(mut self) -> UnwindStats {
        self.tx.take();
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Unwinder {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
