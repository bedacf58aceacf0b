//! What `--stats` prints at the end of a run: losses, what symbolizing,
//! start-up and unwinding cost, and the profiler's own memory.

use std::time::Duration;

use crate::process::announced::MapsStats;
use crate::profile::LossReport;
use crate::python::Interpreters;
use crate::sampler::StartCost;
use crate::symbolizer::SymbolizerStats;
use crate::unwind::UnwindStats;

/// Everything a run's `--stats` lines report.
pub(super) struct RunStats<'a> {
    pub loss: &'a LossReport,
    pub intervals: u64,
    pub event: &'a str,
    pub symbols: &'a SymbolizerStats,
    pub start_cost: &'a StartCost,
    pub drain_times: &'a [Duration],
    pub symbolize_wall: &'a [Duration],
    pub symbolize_cpu: &'a [Duration],
    pub unwind: Option<&'a UnwindStats>,
    pub python: Option<&'a Interpreters>,
    pub maps: MapsStats,
}

/// Prints the `--stats` lines (stderr).
pub(super) fn print(r: &RunStats<'_>) {
    let (loss, symbols) = (r.loss, r.symbols);
    eprintln!("{}", crate::output::stats_line(loss, r.intervals, r.event));
    eprintln!(
        "stats: symbols: {} file offsets looked up in {} files, {} addresses through live processes, {} kernel addresses (named from {}); cached at the end: {} user frames, {} kernel frames, {} file offsets",
        symbols.file_lookups,
        symbols.files,
        symbols.process_lookups,
        symbols.kernel_lookups,
        symbols.kernel_list,
        symbols.frames_cached,
        symbols.kernel_frames_cached,
        symbols.offsets_cached
    );
    let pm = symbols.perf_maps;
    eprintln!(
        "stats: perf maps: {} reads of {} KB (each line read once; {} read whole again), {} JIT functions held in {} KB; memory: {}",
        pm.reads,
        pm.bytes / 1024,
        pm.rereads,
        symbols.perf_map_entries,
        symbols.perf_map_bytes / 1024,
        memory_line()
    );
    eprintln!("{}", start_line(r.start_cost));
    let m = r.maps;
    eprintln!(
        "stats: process maps: {} reads ({} found the process gone), {} not made (the exit came first), {} not made or not kept (an exec had replaced the address space); {} processes named from the mappings their exit told ({} file mappings of versions no live process showed, left unnamed), {} forked children from their parent's",
        m.read, m.gone, m.skipped, m.replaced, m.from_exits, m.unnamed, m.inherited
    );
    eprintln!(
        "stats: per interval: drain {}; symbolize {}; symbolize CPU time {}",
        timing(r.drain_times),
        timing(r.symbolize_wall),
        timing(r.symbolize_cpu)
    );
    if let Some(u) = r.unwind {
        eprintln!("{}", unwind_line(loss, u));
    }
    if let Some(p) = r.python {
        eprintln!(
            "stats: python: {} samples with Python frames ({} did not fit), {} frames of code objects that could not be read, {} samples of interpreters not read; interpreters: {}",
            loss.unwind.python,
            loss.unwind.python_full,
            symbols.python_unreadable,
            symbols.python_unsupported,
            p.summary()
        );
    }
}

/// The profiler's own memory now and at its peak, and its open files.
fn memory_line() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    // File pages (the binaries symbols are read from, mapped) count in
    // RSS but are the page cache's: shown apart from the heap.
    format!(
        "RSS {} (peak {}; now {} anonymous, {} of mapped files), {fds} open files",
        field("VmRSS:"),
        field("VmHWM:"),
        field("RssAnon:"),
        field("RssFile:"),
    )
}

/// The --stats line of start-up: what an idle run mostly costs.
fn start_line(c: &StartCost) -> String {
    let verifier = match c.verifier {
        Some((time, insns)) => format!(
            ", of which the kernel verified the sampling program in {:.1} ms ({insns} instructions checked)",
            time.as_secs_f64() * 1e3
        ),
        None => String::new(),
    };
    format!(
        "stats: start-up: BPF sampler loaded in {:.0} ms{verifier}",
        c.wall.as_secs_f64() * 1e3
    )
}

/// The --stats line of the unwinder: how user stacks were walked and what
/// building the tables cost.
fn unwind_line(loss: &LossReport, u: &UnwindStats) -> String {
    let w = &loss.unwind;
    format!(
        "stats: unwind: {} samples walked with tables ({} of them in user space, taken before their tables were loaded; {} stopped early: {} unreadable stack, {} frame pointer off the stack, {} no rule for the code, {} frame not above its callee; {} cut at {} frames, {} crossed unknown code), {} with frame pointers before their tables were loaded ({} for a full ring buffer), {} stacks did not fit; {} files ({} without CFI, {} rows) built in {:.0} ms (summed over threads), longest load {:.0} ms, {} loads, {} MB of shards; {} deferred walks in {:.1} ms{}{}{}",
        w.unwound + w.deferred,
        w.deferred,
        (w.truncated + w.deferred_truncated).saturating_sub(w.cut),
        w.stopped.bad_read,
        w.stopped.fp_off_stack,
        w.stopped.no_rule,
        w.stopped.not_growing,
        w.cut,
        crate::unwind::deferred::MAX_FRAMES,
        w.unknown_mapping,
        w.not_loaded,
        w.deferred_ring_full,
        w.stacks_full,
        u.files_built,
        u.files_without_cfi,
        u.rows_built,
        u.build_time.as_secs_f64() * 1000.0,
        u.max_load_latency.as_secs_f64() * 1000.0,
        u.loads,
        u.shard_bytes >> 20,
        u.deferred_walks,
        u.deferred_time.as_secs_f64() * 1000.0,
        if u.cache.hits + u.cache.stored + u.cache.damaged == 0 {
            String::new()
        } else {
            format!(
                "; table cache: {} read, {} stored, {} damaged",
                u.cache.hits, u.cache.stored, u.cache.damaged
            )
        },
        if u.left_out.is_empty() {
            String::new()
        } else {
            format!(", left out: {}", u.left_out.join(", "))
        },
        if u.slots_full == 0 {
            String::new()
        } else {
            format!(
                "; {} processes walked in user space for want of mapping slots",
                u.slots_full
            )
        }
    )
}

/// `first X ms, median Y ms, p95 Z ms, max W ms` of per-interval times.
fn timing(times: &[Duration]) -> String {
    let Some(first) = times.first() else {
        return "none".into();
    };
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "first {:.1} ms, median {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        ms(*first),
        ms(at(0.5)),
        ms(at(0.95)),
        ms(at(1.0))
    )
}
