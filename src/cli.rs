//! The command line: profile.py's options (same letters, same defaults) plus
//! go-profile's frame and feed options. Parsing and validation only; the
//! result is each stage's own config ([`Cli::into_run_config`]).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Parser;

use crate::output::frames::layout::{self, Canvas, HEADER_HEIGHT};
use crate::output::frames::pattern::{FramePattern, DEFAULT_PATTERN};
use crate::output::frames::FramesConfig;
use crate::output::text::Header;
use crate::output::StackFormat;
use crate::profile::modes::FrameMode;
use crate::sampler::{self, defaults, SampleRate, SamplerConfig};

/// Shortest interval `--interval` accepts.
pub const MIN_INTERVAL: f64 = 0.05;
/// Default `--interval`.
pub const DEFAULT_INTERVAL: f64 = 1.0;

/// Profile CPU usage by sampling stack traces at a timed interval.
///
/// A port of bcc's profile.py on libbpf-rs (CO-RE: no kernel headers needed).
#[derive(Debug, Parser)]
#[command(
    name = "profile",
    version,
    after_help = "examples:
    profile             # profile stack traces at 49 Hertz until Ctrl-C
    profile -F 99       # profile stack traces at 99 Hertz
    profile -c 1000000  # profile stack traces every 1 in a million events
    profile 5           # profile at 49 Hertz for 5 seconds only
    profile -f 5        # output in folded format for flame graphs
    profile -p 185      # only profile process with PID 185
    profile -L 185      # only profile thread with TID 185
    profile -U          # only show user space stacks (no kernel)
    profile -K          # only show kernel space stacks (no user)
    profile --cgroupmap mappath  # only trace cgroups in this BPF map
    profile --mntnsmap mappath   # only trace mount namespaces in the map"
)]
pub struct Cli {
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

    /// Sample frequency in Hertz [default: 49].
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

    /// Insert delimiter between kernel/user stacks.
    #[arg(short = 'd', long = "delimited")]
    pub delimited: bool,

    /// Add _[k] annotations to kernel frames.
    #[arg(short = 'a', long = "annotations")]
    pub annotations: bool,

    /// Include CPU idle stacks.
    #[arg(short = 'I', long = "include-idle")]
    pub include_idle: bool,

    /// Output folded format, one line per stack (for flame graphs).
    #[arg(short = 'f', long = "folded")]
    pub folded: bool,

    /// The number of hash keys that can be stored.
    #[arg(long, value_name = "N", default_value_t = defaults::HASH_STORAGE_SIZE)]
    pub hash_storage_size: u32,

    /// The number of unique stack traces that can be stored and displayed.
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

    /// Print the BPF program's source and exit.
    #[arg(long)]
    pub ebpf: bool,

    /// Seconds covered by one interval: one frame, one drain of the BPF maps.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_INTERVAL)]
    pub interval: f64,

    /// Keep samples of this profiler's own threads (left out by default).
    #[arg(long)]
    pub include_self: bool,

    /// Emit a flame-graph frame per interval (to frames/flamegraph%04d.png unless -g).
    #[arg(short = 'E', long = "emit-frames")]
    pub emit_frames: bool,

    /// Frame file pattern, with exactly one %d or %0Nd; .png or .svg (implies -E).
    #[arg(short = 'g', long = "frame-pattern", value_name = "PATTERN")]
    pub frame_pattern: Option<String>,

    /// What a frame shows: interval, cumulative, window:N (last N intervals) or decay:F.
    #[arg(long, value_name = "MODE", default_value = "interval")]
    pub frame_mode: FrameMode,

    /// Replace (remove) existing frames that match the pattern.
    #[arg(long)]
    pub overwrite: bool,

    /// Number of the first frame.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub start_number: u64,

    /// Frame width in pixels (even, for h264).
    #[arg(long, value_name = "PX", default_value_t = layout::DEFAULT_WIDTH)]
    pub width: u32,

    /// Frame height in pixels (even, for h264).
    #[arg(long, value_name = "PX", default_value_t = layout::DEFAULT_HEIGHT)]
    pub height: u32,

    /// Threads rendering frames (0: one per CPU).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub render_threads: usize,

    /// Serve a live flame graph over HTTP (not available yet).
    #[arg(short = 'T', long = "serve")]
    pub serve: bool,

    /// URL path of the live flame graph.
    #[arg(
        short = 'P',
        long = "serve-path",
        value_name = "PATH",
        default_value = "/"
    )]
    pub serve_path: String,

    /// Port of the live flame graph.
    #[arg(
        short = 'R',
        long = "serve-port",
        value_name = "PORT",
        default_value_t = 9090
    )]
    pub serve_port: u16,

    /// Print the sample accounting (taken, counted, lost by reason) on stderr at the end.
    #[arg(long)]
    pub stats: bool,

    /// Duration of trace, in seconds [default: until Ctrl-C].
    #[arg(value_name = "DURATION")]
    pub duration: Option<u64>,
}

/// Everything a run needs, split per consumer.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// What to sample.
    pub sampler: SamplerConfig,
    /// How stacks are printed.
    pub format: StackFormat,
    /// `-f`.
    pub folded: bool,
    /// Header line (default output only).
    pub header: Option<Header>,
    /// Length of one interval.
    pub interval: Duration,
    /// How long to sample (None: until a signal).
    pub duration: Option<Duration>,
    /// `--stats`.
    pub stats: bool,
    /// `-E` / `-g`.
    pub frames: Option<FramesConfig>,
    /// `--overwrite`.
    pub overwrite: bool,
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

impl Cli {
    /// Validates the options and splits them into per-stage configs.
    pub fn into_run_config(self) -> Result<RunConfig> {
        let rate = match (self.frequency, self.count) {
            (_, Some(0)) => bail!("-c/--count must be a positive number of events"),
            (_, Some(n)) => SampleRate::Period(n),
            (Some(0), _) => bail!("-F/--frequency must be a positive number of Hertz"),
            (Some(hz), _) => SampleRate::Frequency(hz),
            (None, None) => SampleRate::Frequency(defaults::FREQUENCY),
        };
        if self.hash_storage_size == 0 {
            bail!("--hash-storage-size must be at least 1");
        }
        if self.stack_storage_size == 0 {
            bail!("--stack-storage-size must be at least 1");
        }
        if self.duration == Some(0) {
            bail!("duration must be a positive number of seconds");
        }
        if !self.interval.is_finite() || self.interval < MIN_INTERVAL {
            bail!("--interval must be at least {MIN_INTERVAL} seconds");
        }
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
        if !self.serve_path.starts_with('/') {
            bail!("-P/--serve-path must start with '/': {:?}", self.serve_path);
        }
        if self.serve {
            bail!("-T (the live flame graph) is not available in this version yet");
        }
        if self.width < 64
            || self.height < HEADER_HEIGHT + 64
            || self.width % 2 == 1
            || self.height % 2 == 1
        {
            bail!(
                "--width and --height must be even (h264 needs it) and at least 64x{}; got {}x{}",
                HEADER_HEIGHT + 64,
                self.width,
                self.height
            );
        }
        let pattern = match (&self.frame_pattern, self.emit_frames) {
            (Some(p), _) => Some(FramePattern::parse(p)?),
            (None, true) => Some(FramePattern::parse(DEFAULT_PATTERN)?),
            (None, false) => None,
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

        let sampler = SamplerConfig {
            rate,
            pids: pids.unwrap_or_default(),
            tids: tids.unwrap_or_default(),
            include_idle: self.include_idle,
            user_stacks: !self.kernel_stacks_only,
            kernel_stacks: !self.user_stacks_only,
            cpu,
            hash_storage_size: self.hash_storage_size,
            stack_storage_size: self.stack_storage_size,
            cgroup_map: self.cgroupmap,
            mntns_map: self.mntnsmap,
            include_self: self.include_self,
        };
        let header = (!self.folded).then(|| Header {
            rate: match rate {
                SampleRate::Frequency(hz) => format!("{hz} Hertz"),
                SampleRate::Period(n) => format!("every {n} events"),
            },
            threads: match (&self.tid, &self.pid) {
                (Some(t), _) => format!("TID {t}"),
                (None, Some(p)) => format!("PID {p}"),
                (None, None) => "all threads".into(),
            },
            stacks: match (self.user_stacks_only, self.kernel_stacks_only) {
                (true, _) => "user".into(),
                (_, true) => "kernel".into(),
                _ => "user + kernel".into(),
            },
            cpu,
            duration: self.duration,
        });
        let format = StackFormat {
            delimited: self.delimited,
            annotations: self.annotations,
            user_stacks: sampler.user_stacks,
            kernel_stacks: sampler.kernel_stacks,
        };
        let frames = pattern.map(|pattern| FramesConfig {
            pattern,
            mode: self.frame_mode,
            start_number: self.start_number,
            canvas: Canvas {
                width: self.width,
                height: self.height,
            },
            format,
            target: match (&self.tid, &self.pid) {
                (Some(t), _) => format!("TID {t}"),
                (None, Some(p)) => format!("PID {p}"),
                (None, None) => "all threads".into(),
            },
            threads: self.render_threads,
        });
        Ok(RunConfig {
            format,
            frames,
            overwrite: self.overwrite,
            sampler,
            folded: self.folded,
            header,
            interval: Duration::from_secs_f64(self.interval),
            duration: self.duration.map(Duration::from_secs),
            stats: self.stats,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<RunConfig> {
        let mut v = vec!["profile"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v)?.into_run_config()
    }

    #[test]
    fn defaults_match_profile_py() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.sampler.rate, SampleRate::Frequency(49));
        assert_eq!(c.sampler.hash_storage_size, 40960);
        assert_eq!(c.sampler.stack_storage_size, 16384);
        assert!(c.sampler.user_stacks && c.sampler.kernel_stacks);
        assert!(!c.sampler.include_idle);
        assert_eq!(
            c.header.unwrap().line(),
            "Sampling at 49 Hertz of all threads by user + kernel stack... Hit Ctrl-C to end."
        );
    }

    #[test]
    fn rejects_bad_input() {
        for args in [
            &["-F", "0"][..],
            &["-F", "99", "-c", "10"],
            &["-c", "0"],
            &["-p", "abc"],
            &["-p", "4000000000"],
            &["-p", "1", "-L", "1"],
            &["-U", "-K"],
            &["-C", "4096"],
            &["-C", "-2"],
            &["--interval", "0.01"],
            &["--cgroupmap", "/nonexistent/map"],
            &["0"],
            &["-g", "frames/fg.png"],
            &["-g", "frames/fg%d%d.png"],
            &["-E", "--frame-mode", "window:0"],
            &["-E", "--width", "1921"],
            &["-P", "live"],
            &["-T"],
        ] {
            assert!(parse(args).is_err(), "{args:?} was accepted");
        }
    }

    #[test]
    fn own_pid_is_accepted_and_headers_name_it() {
        let me = std::process::id().to_string();
        let c = parse(&["-p", &me, "-U", "-c", "1000", "5"]).unwrap();
        assert_eq!(c.sampler.pids, vec![std::process::id()]);
        assert_eq!(
            c.header.unwrap().line(),
            format!("Sampling at every 1000 events of PID {me} by user stack for 5 secs.")
        );
        assert!(parse(&["-f"]).unwrap().header.is_none());
        let c = parse(&["-E"]).unwrap();
        let frames = c.frames.unwrap();
        assert_eq!(
            frames.pattern.path(3),
            std::path::PathBuf::from("frames/flamegraph0003.png")
        );
        assert_eq!(
            frames.canvas,
            Canvas {
                width: 1920,
                height: 1080
            }
        );
        let c = parse(&["-g", "out/x%03d.svg", "--frame-mode", "decay:0.8"]).unwrap();
        assert_eq!(c.frames.unwrap().mode, FrameMode::Decay(0.8));
    }
}
