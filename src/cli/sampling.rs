//! profile.py's sampling options, shared by the live run and `record`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;

use crate::output::text::Header;
use crate::sampler::{self, defaults, SampleRate, SamplerConfig};
use crate::unwind::UnwindMode;

/// Shortest interval `--interval` accepts.
pub const MIN_INTERVAL: f64 = 0.05;
/// Default `--interval`.
pub const DEFAULT_INTERVAL: f64 = 1.0;
/// Longest `--interval`: an hour (a frame per hour is already a slideshow).
pub const MAX_INTERVAL: f64 = 3600.0;
/// Where the kernel says how often a perf event may sample.
const MAX_SAMPLE_RATE_FILE: &str = "/proc/sys/kernel/perf_event_max_sample_rate";

/// The kernel's `perf_event_max_sample_rate` (Hz). The kernel lowers it by
/// itself when sampling interrupts take too long; 100000 is its default.
pub fn max_sample_rate() -> u64 {
    std::fs::read_to_string(MAX_SAMPLE_RATE_FILE)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|&hz: &u64| hz > 0)
        .unwrap_or(100_000)
}

/// Checks a sample rate against the kernel's limit: a frequency above it is
/// refused by perf_event_open, and a period so short that it would sample
/// faster (one event per nanosecond of CPU clock) makes the kernel throttle
/// and the run overrun its duration.
pub fn check_rate(rate: SampleRate, max_hz: u64) -> Result<()> {
    match rate {
        SampleRate::Frequency(hz) if hz > max_hz => {
            bail!("-F {hz}: above the kernel's limit of {max_hz} Hz ({MAX_SAMPLE_RATE_FILE})")
        }
        SampleRate::Period(n) => {
            let min = 1_000_000_000u64.div_ceil(max_hz);
            if n < min {
                bail!(
                    "-c {n}: at least {min} events per sample; fewer would sample faster than the kernel's limit of {max_hz} Hz ({MAX_SAMPLE_RATE_FILE})"
                );
            }
            Ok(())
        }
        SampleRate::Frequency(_) => Ok(()),
    }
}

/// What to sample and for how long.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Sampling")]
pub struct SamplingArgs {
    /// Profile processes with one or more comma-separated PIDs only.
    #[arg(short = 'p', long = "pid", value_name = "PID", conflicts_with = "tid")]
    pub pid: Option<String>,

    /// Profile threads with one or more comma-separated TIDs only.
    #[arg(short = 'L', long = "tid", value_name = "TID")]
    pub tid: Option<String>,

    /// Show stacks from user space only (no kernel space stacks).
    #[arg(
        short = 'U',
        long = "user-stacks-only",
        conflicts_with = "kernel_stacks_only"
    )]
    pub user_stacks_only: bool,

    /// Show stacks from kernel space only (no user space stacks).
    #[arg(short = 'K', long = "kernel-stacks-only")]
    pub kernel_stacks_only: bool,

    /// Sample frequency in Hertz [default: 49; 199 when making frames, a
    /// video or the live page, and for record].
    #[arg(
        short = 'F',
        long = "frequency",
        value_name = "HZ",
        conflicts_with = "count"
    )]
    pub frequency: Option<u64>,

    /// Sample period: one sample every N CPU-clock events (nanoseconds).
    #[arg(short = 'c', long = "count", value_name = "N")]
    pub count: Option<u64>,

    /// Include CPU idle stacks.
    #[arg(short = 'I', long = "include-idle")]
    pub include_idle: bool,

    /// The number of hash keys that can be stored.
    #[arg(help_heading = "Limits and caches")]
    #[arg(long, value_name = "N", default_value_t = defaults::HASH_STORAGE_SIZE)]
    pub hash_storage_size: u32,

    /// The number of unique stack traces that can be stored and displayed.
    #[arg(help_heading = "Limits and caches")]
    #[arg(long, value_name = "N", default_value_t = defaults::STACK_STORAGE_SIZE)]
    pub stack_storage_size: u32,

    /// CPU number to run profile on (-1: all).
    #[arg(
        short = 'C',
        long = "cpu",
        value_name = "CPU",
        allow_negative_numbers = true
    )]
    pub cpu: Option<i64>,

    /// Trace cgroups in this pinned BPF hash map only (u64 cgroup id keys).
    #[arg(long, value_name = "PATH")]
    pub cgroupmap: Option<PathBuf>,

    /// Trace mount namespaces in this pinned BPF hash map only (u64 keys).
    #[arg(long, value_name = "PATH")]
    pub mntnsmap: Option<PathBuf>,

    /// Seconds covered by one interval: one frame, one drain of the BPF maps.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_INTERVAL)]
    pub interval: f64,

    /// How user stacks are walked: unwind tables from each file's CFI where
    /// it has them, frame pointers elsewhere (auto); frame pointers only, as
    /// bcc does (fp); unwind tables only (dwarf).
    #[arg(long, value_enum, value_name = "MODE", default_value = "auto")]
    pub unwind: UnwindMode,

    /// Kernel memory for unwind tables, in MB; files that don't fit are
    /// walked with frame pointers (with a warning naming them).
    #[arg(help_heading = "Limits and caches")]
    #[arg(long, value_name = "MB", default_value_t = crate::unwind::DEFAULT_MEMORY_MB)]
    pub unwind_memory: u64,

    /// Where built unwind tables are kept for the next run (one file per
    /// executable file version, size-bounded), with the boot's copy of the
    /// core kernel's symbols.
    #[arg(help_heading = "Limits and caches")]
    #[arg(long, value_name = "DIR", default_value = crate::unwind::cache::DEFAULT_DIR)]
    pub unwind_cache: std::path::PathBuf,

    /// Build every unwind table afresh and read /proc/kallsyms, without
    /// reading or writing the cache.
    #[arg(help_heading = "Limits and caches")]
    #[arg(long)]
    pub no_cache: bool,

    /// Walk every user stack in user space from a copy, as samples taken
    /// before their tables loaded are (for benchmarks and tests of that
    /// path; costs more).
    #[arg(long, hide = true)]
    pub unwind_defer_all: bool,

    /// Python functions in the stacks: read from each CPython 3.8-3.13
    /// process's own frames, in place of the interpreter's C frames (auto);
    /// native frames only (off).
    #[arg(long, value_enum, value_name = "MODE", default_value = "auto")]
    pub python: crate::python::PythonMode,

    /// Keep samples of this profiler's own threads (left out by default).
    #[arg(long)]
    pub include_self: bool,

    /// Print the sample accounting (taken, counted, lost by reason) on stderr at the end.
    #[arg(long)]
    pub stats: bool,

    /// Duration of trace, in seconds [default: until Ctrl-C].
    #[arg(value_name = "DURATION")]
    pub duration: Option<u64>,
}

/// A duration profile.py treats as "until Ctrl-C" (its default).
pub const FOREVER: u64 = 99_999_999;

/// What profile.py's header calls the target: `all threads`, or the parsed
/// list as Python prints it (`PID [1, 2]`, `TID [5]`).
fn header_threads(pids: &[u32], tids: &[u32]) -> String {
    let list = |ids: &[u32]| {
        ids.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !pids.is_empty() {
        format!("PID [{}]", list(pids))
    } else if !tids.is_empty() {
        format!("TID [{}]", list(tids))
    } else {
        "all threads".into()
    }
}

/// Parses a comma-separated list of process or thread ids that must exist.
fn parse_ids(list: &str, what: &str) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    for part in list.split(',') {
        let part = part.trim();
        let id: u32 = match part.parse() {
            Ok(id) if id > 0 => id,
            _ => bail!(
                "invalid {what} {part:?}: expected a positive number (or a comma-separated list)"
            ),
        };
        if !sampler::task_exists(id) {
            bail!("{what} {id} does not exist");
        }
        ids.push(id);
    }
    Ok(ids)
}

impl SamplingArgs {
    /// `--interval`, validated.
    pub fn interval(&self) -> Result<Duration> {
        if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&self.interval) {
            bail!("--interval must be from {MIN_INTERVAL} to {MAX_INTERVAL} seconds");
        }
        Ok(Duration::from_secs_f64(self.interval))
    }

    /// The duration, if given.
    pub fn duration(&self) -> Option<Duration> {
        self.duration.map(Duration::from_secs)
    }

    /// What the header and frames call the target.
    pub fn target(&self) -> String {
        match (&self.tid, &self.pid) {
            (Some(t), _) => format!("TID {t}"),
            (None, Some(p)) => format!("PID {p}"),
            (None, None) => "all threads".into(),
        }
    }

    /// A run that makes frames samples at [`DEFAULT_VIDEO_FREQUENCY`] unless
    /// -F or -c says otherwise (profile.py's 49 Hz leaves too few samples
    /// per frame: bars jump).
    ///
    /// [`DEFAULT_VIDEO_FREQUENCY`]: super::DEFAULT_VIDEO_FREQUENCY
    pub fn default_to_video_rate(&mut self) {
        let given = self.frequency.is_some_and(|f| f > 0) || self.count.is_some_and(|c| c > 0);
        if !given {
            self.frequency = Some(super::DEFAULT_VIDEO_FREQUENCY);
        }
    }

    /// Validates the options into the sampler's config and profile.py's header.
    pub fn sampler_config(&self) -> Result<(SamplerConfig, Header)> {
        // As profile.py: a zero -F or -c is "not given", so 49 Hz.
        let rate = match (self.frequency, self.count) {
            (Some(hz), _) if hz > 0 => SampleRate::Frequency(hz),
            (_, Some(n)) if n > 0 => SampleRate::Period(n),
            _ => SampleRate::Frequency(defaults::FREQUENCY),
        };
        check_rate(rate, max_sample_rate())?;
        if self.hash_storage_size == 0 {
            bail!("--hash-storage-size must be at least 1");
        }
        if self.stack_storage_size == 0 {
            bail!("--stack-storage-size must be at least 1");
        }
        if !(1..=65536).contains(&self.unwind_memory) {
            bail!("--unwind-memory must be 1 to 65536 MB");
        }
        if self.duration == Some(0) {
            bail!("duration must be a positive number of seconds");
        }
        self.interval()?;
        let pids = self
            .pid
            .as_deref()
            .map(|l| parse_ids(l, "PID"))
            .transpose()?;
        let tids = self
            .tid
            .as_deref()
            .map(|l| parse_ids(l, "TID"))
            .transpose()?;
        let cpu = match self.cpu {
            None | Some(-1) => None,
            Some(n) => {
                let online = sampler::perf_event::online_cpus()?;
                match u32::try_from(n) {
                    Ok(cpu) if online.contains(&cpu) => Some(cpu),
                    _ => bail!(
                        "CPU {n} is not online (online CPUs: {})",
                        online
                            .iter()
                            .map(u32::to_string)
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                }
            }
        };
        for (flag, path) in [
            ("--cgroupmap", &self.cgroupmap),
            ("--mntnsmap", &self.mntnsmap),
        ] {
            if let Some(path) = path {
                if !path.exists() {
                    bail!("{flag} {}: no such file", path.display());
                }
            }
        }
        let config = SamplerConfig {
            rate,
            pids: pids.unwrap_or_default(),
            tids: tids.unwrap_or_default(),
            include_idle: self.include_idle,
            user_stacks: !self.kernel_stacks_only,
            kernel_stacks: !self.user_stacks_only,
            cpu,
            hash_storage_size: self.hash_storage_size,
            stack_storage_size: self.stack_storage_size,
            cgroup_map: self.cgroupmap.clone(),
            mntns_map: self.mntnsmap.clone(),
            include_self: self.include_self,
            pid_namespace: sampler::own_pid_namespace(),
            unwind: self.unwind,
            unwind_memory: self.unwind_memory << 20,
            unwind_cache: (!self.no_cache).then(|| self.unwind_cache.clone()),
            defer_all: self.unwind_defer_all,
            python: self.python,
            verifier_stats: self.stats,
        };
        let header = Header {
            rate: match rate {
                SampleRate::Frequency(hz) => format!("{hz} Hertz"),
                SampleRate::Period(n) => format!("every {n} events"),
            },
            threads: header_threads(&config.pids, &config.tids),
            stacks: match (self.user_stacks_only, self.kernel_stacks_only) {
                (true, _) => "user".into(),
                (_, true) => "kernel".into(),
                _ => "user + kernel".into(),
            },
            cpu,
            // profile.py's default duration is 99999999: from there on it
            // says "Hit Ctrl-C to end."
            duration: self.duration.filter(|d| *d < FOREVER),
        };
        Ok((config, header))
    }
}
