//! The command line: profile.py's options (same letters, same defaults),
//! go-profile's frame and feed options, and the offline subcommands (record,
//! render, report, import, export). Parsing and validation only: the result
//! is each stage's own config, bundled in an [`Action`].

mod frames;
mod offline;
mod sampling;

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};

pub use self::frames::{default_frame_mode, FrameOptions, DEFAULT_VIDEO_FREQUENCY};
pub use self::offline::{
    EncodeArgs, ExportArgs, ImportArgs, RenderArgs, ReportArgs, ServeArgs, TimeRange,
};
pub use self::sampling::{SamplingArgs, DEFAULT_INTERVAL, MAX_INTERVAL, MIN_INTERVAL};
use crate::output::feed::{self, FeedConfig};
use crate::output::frames::FramesConfig;
use crate::output::text::{Header, TextStyle};
use crate::output::StackFormat;
use crate::sampler::SamplerConfig;

/// Profile CPU usage by sampling stack traces at a timed interval.
///
/// A port of bcc's profile.py on libbpf-rs (CO-RE: no kernel headers needed)
/// that also turns its samples into flame-graph frames and video.
#[derive(Debug, Parser)]
#[command(
    name = "profile",
    version,
    args_conflicts_with_subcommands = true,
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
    profile --mntnsmap mappath   # only trace mount namespaces in the map
    profile -E 30       # one flame-graph frame per second in frames/
    profile -q -o talk.mp4 30    # a flame-graph video of 30 s, for a talk
    profile -T          # a live flame graph at http://127.0.0.1:9090/
    profile record -o run.rsprof 60 && profile render run.rsprof -g out/fg%04d.png"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Write into folders that other users can write (without the sticky
    /// bit) or that are reached through their links. Refused by default:
    /// as root, such a folder lets them redirect what is written.
    #[arg(long, global = true)]
    unsafe_output_dir: bool,
    #[command(flatten)]
    live: LiveArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sample like -E, but write each interval's profile to a recording file.
    Record(RecordArgs),
    /// Render a recording's frames offline (no root needed).
    Render(RenderArgs),
    /// Serve a recording on the live page (no root needed): a talk given
    /// from a file.
    Serve(ServeArgs),
    /// Print a recording in profile.py's text or folded format.
    Report(ReportArgs),
    /// Turn `perf script` output or folded files into a recording.
    Import(ImportArgs),
    /// Export a recording as pprof, speedscope or folded.
    Export(ExportArgs),
    /// Assemble PNG frames on disk into a video (scripts/make_video.sh).
    Encode(EncodeArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print a man page (roff), for `man -l -` or /usr/local/share/man/man1:
    /// profile(1), or a subcommand's (`profile man record` is
    /// profile-record(1)).
    Man {
        /// The subcommand whose page to print.
        #[arg(value_name = "SUBCOMMAND", value_parser = clap::builder::PossibleValuesParser::new(MAN_PAGES))]
        subcommand: Option<String>,
    },
}

/// profile.py's stack formatting options.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Output format")]
pub struct FormatArgs {
    /// Insert delimiter between kernel/user stacks.
    #[arg(short = 'd', long = "delimited")]
    pub delimited: bool,

    /// Add _[k] annotations to kernel frames.
    #[arg(short = 'a', long = "annotations")]
    pub annotations: bool,

    /// Output folded format, one line per stack (for flame graphs).
    #[arg(short = 'f', long = "folded")]
    pub folded: bool,

    /// Show raw addresses (multi-line output).
    #[arg(short = 'A', long = "address")]
    pub address: bool,

    /// Print multi-line frames as bcc 0.26 did: names only, no +offset
    /// [module]; -a then annotates kernel frames.
    #[arg(long = "bcc-0.26")]
    pub bcc_026: bool,
}

impl FormatArgs {
    /// How multi-line output names frames.
    pub fn text_style(&self) -> TextStyle {
        TextStyle {
            addresses: self.address,
            names_only: self.bcc_026,
        }
    }

    /// The stack format, given which stacks were collected.
    pub fn stack_format(&self, user_stacks: bool, kernel_stacks: bool) -> StackFormat {
        StackFormat {
            delimited: self.delimited,
            annotations: self.annotations,
            user_stacks,
            kernel_stacks,
        }
    }
}

/// The live run: profile.py's options plus frames, feed and export.
#[derive(Debug, Args)]
struct LiveArgs {
    #[command(flatten)]
    sampling: SamplingArgs,

    #[command(flatten)]
    format: FormatArgs,

    /// Print the BPF program's source and exit.
    #[arg(help_heading = "Output format")]
    #[arg(long)]
    ebpf: bool,

    /// Emit a flame-graph frame per interval (to frames/flamegraph%04d.png unless -g).
    #[arg(help_heading = "Frames and video")]
    #[arg(short = 'E', long = "emit-frames")]
    emit_frames: bool,

    /// Frame file pattern, with exactly one %d or %0Nd; .png or .svg (implies -E).
    #[arg(help_heading = "Frames and video")]
    #[arg(short = 'g', long = "frame-pattern", value_name = "PATTERN")]
    frame_pattern: Option<String>,

    #[command(flatten)]
    frames: FrameOptions,

    /// Also write the whole run: .pb.gz (pprof), .speedscope.json, .folded
    /// or .rsprof (a recording), or a video of its frames (.mp4, .webm,
    /// .gif; needs ffmpeg), by extension.
    #[arg(help_heading = "Output format")]
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,

    /// Print no report on stdout: only the frames, video, live page and
    /// -o file are made.
    #[arg(short = 'q', long = "quiet", help_heading = "Output format")]
    quiet: bool,

    /// Serve a live flame graph over HTTP (see -P, -R, --listen).
    #[arg(help_heading = "Live page")]
    #[arg(short = 'T', long = "serve")]
    serve: bool,

    /// URL path of the live flame graph.
    #[arg(help_heading = "Live page")]
    #[arg(short = 'P', long = "serve-path", value_name = "PATH", default_value = feed::defaults::PATH)]
    serve_path: String,

    /// Port of the live flame graph.
    #[arg(help_heading = "Live page")]
    #[arg(short = 'R', long = "serve-port", value_name = "PORT", default_value_t = feed::defaults::PORT)]
    serve_port: u16,

    /// Address the live flame graph listens on.
    #[arg(help_heading = "Live page")]
    #[arg(long, value_name = "ADDR", default_value = feed::defaults::LISTEN)]
    listen: std::net::IpAddr,

    /// Intervals the live flame graph keeps for its timeline.
    #[arg(help_heading = "Live page")]
    #[arg(long, value_name = "N", default_value_t = feed::defaults::HISTORY)]
    history: usize,

    /// Space (MB) those intervals may take, the newest two in memory and
    /// the rest in an unnamed temporary file ($TMPDIR, else /var/tmp); the
    /// oldest go first.
    #[arg(help_heading = "Live page")]
    #[arg(long, value_name = "MB", default_value_t = feed::defaults::HISTORY_MB)]
    history_mb: u64,

    /// Serve beyond loopback without the access token (anyone who can reach
    /// the port sees process names and stacks).
    #[arg(help_heading = "Live page")]
    #[arg(long)]
    no_token: bool,
}

/// `profile record`.
#[derive(Debug, Args)]
struct RecordArgs {
    /// The recording file to write.
    #[arg(short = 'o', long = "output", value_name = "FILE", required = true)]
    output: PathBuf,

    /// Replace the recording file if it exists.
    #[arg(long)]
    overwrite: bool,

    #[command(flatten)]
    sampling: SamplingArgs,
}

/// Everything a sampling run needs, split per consumer.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// What to sample.
    pub sampler: SamplerConfig,
    /// How stacks are printed.
    pub format: StackFormat,
    /// `-f`.
    pub folded: bool,
    /// `-A`, `--bcc-0.26`.
    pub text_style: TextStyle,
    /// Header line (default output only).
    pub header: Option<Header>,
    /// Length of one interval.
    pub interval: std::time::Duration,
    /// How long to sample (None: until a signal).
    pub duration: Option<std::time::Duration>,
    /// `--stats`.
    pub stats: bool,
    /// `-E` / `-g`.
    pub frames: Option<FramesConfig>,
    /// `-o talk.mp4`: a video of the frames.
    pub video: Option<crate::output::video::VideoConfig>,
    /// `-T`.
    pub feed: Option<FeedConfig>,
    /// `--overwrite`: earlier frames or recording may be replaced.
    pub overwrite: bool,
    /// The end-of-run export (`-o`), or the recording (`record -o`).
    pub output: Option<PathBuf>,
    /// `record`: no report on stdout, every interval to `output`.
    pub record: bool,
    /// `-q`: no report on stdout.
    pub quiet: bool,
    /// The command line, kept in recordings.
    pub command_line: String,
    /// What is profiled ("all threads", "PID 42"), for headers and recordings.
    pub target: String,
}

/// `--history` at most: ten hours of 0.05 s intervals.
const MAX_HISTORY: usize = 720_000;
/// `--history-mb` at most (64 GiB).
pub(crate) const MAX_HISTORY_MB: u64 = 65_536;

/// Shortens each quoted value (`'...'`) of a clap error line longer than
/// 40 characters, so an error never quotes a 300-digit number whole.
pub fn shorten_quoted(line: &str) -> String {
    let mut out = String::new();
    let mut parts = line.split('\'');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    for (i, part) in parts.enumerate() {
        out.push('\'');
        let inside = i % 2 == 0;
        if inside && part.chars().count() > 40 {
            let head: String = part.chars().take(20).collect();
            out.push_str(&format!("{head}... ({} characters)", part.chars().count()));
        } else {
            out.push_str(part);
        }
    }
    out
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Action {
    /// `--ebpf`: the header and the program with the (validated) options.
    PrintBpf(Box<RunConfig>),
    /// Sample (the live run, or `record`).
    Run(Box<RunConfig>),
    /// `render`.
    Render(RenderArgs),
    /// `serve`.
    Serve(ServeArgs),
    /// `report`.
    Report(ReportArgs),
    /// `import`.
    Import(ImportArgs),
    /// `export`.
    Export(ExportArgs),
    /// `encode`.
    Encode(EncodeArgs),
    /// `completions SHELL`.
    Completions(clap_complete::Shell),
    /// `man [SUBCOMMAND]`.
    Man(Option<String>),
}

/// The subcommands that have a man page of their own (profile-NAME(1)),
/// the ones profile(1) refers to.
pub const MAN_PAGES: &[&str] = &[
    "record",
    "render",
    "serve",
    "report",
    "import",
    "export",
    "encode",
    "completions",
    "man",
    "help",
];

fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

impl Cli {
    /// Writes `shell`'s completion script for `profile`.
    pub fn completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut cmd, "profile", out);
    }

    /// Writes the man page (roff) of `profile`, or of one of its
    /// subcommands as `profile-NAME(1)`.
    pub fn man(subcommand: Option<&str>, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        cmd.build();
        let page = match subcommand {
            None => cmd,
            Some(name) => {
                let sub = cmd
                    .find_subcommand(name)
                    .ok_or_else(|| {
                        std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            format!("no subcommand {name}"),
                        )
                    })?
                    .clone();
                // Its own page: named as profile(1) refers to it. (clap
                // names are 'static; this runs once, to print one page.)
                let full: &'static str = format!("profile-{name}").leak();
                sub.name(full)
                    .bin_name(full)
                    .version(env!("CARGO_PKG_VERSION"))
            }
        };
        clap_mangen::Man::new(page).render(out)
    }

    /// Validates the options and turns them into an [`Action`].
    pub fn into_action(self) -> Result<Action> {
        let live = self.live;
        crate::safe_file::allow_unsafe_dirs(self.unsafe_output_dir);
        match self.command {
            Some(Command::Record(mut r)) => {
                // Recorded to be rendered: the rate frames need.
                r.sampling.default_to_video_rate();
                let (sampler, _) = r.sampling.sampler_config()?;
                Ok(Action::Run(Box::new(RunConfig {
                    format: StackFormat::default(),
                    folded: false,
                    text_style: TextStyle::default(),
                    header: None,
                    interval: r.sampling.interval()?,
                    duration: r.sampling.duration(),
                    stats: r.sampling.stats,
                    frames: None,
                    feed: None,
                    overwrite: r.overwrite,
                    output: Some(r.output),
                    video: None,
                    record: true,
                    quiet: true,
                    command_line: command_line(),
                    target: r.sampling.target(),
                    sampler,
                })))
            }
            Some(Command::Render(r)) => Ok(Action::Render(r)),
            Some(Command::Serve(r)) => Ok(Action::Serve(r)),
            Some(Command::Report(r)) => Ok(Action::Report(r)),
            Some(Command::Import(r)) => Ok(Action::Import(r)),
            Some(Command::Export(r)) => Ok(Action::Export(r)),
            Some(Command::Encode(r)) => Ok(Action::Encode(r)),
            Some(Command::Completions { shell }) => Ok(Action::Completions(shell)),
            Some(Command::Man { subcommand }) => Ok(Action::Man(subcommand)),
            None if live.ebpf => live
                .into_run_config()
                .map(|c| Action::PrintBpf(Box::new(c))),
            None => live.into_run_config().map(|c| Action::Run(Box::new(c))),
        }
    }
}

impl LiveArgs {
    fn into_run_config(mut self) -> Result<RunConfig> {
        let makes_frames = self.emit_frames
            || self.frame_pattern.is_some()
            || self.serve
            || self
                .output
                .as_deref()
                .and_then(crate::output::video::VideoFormat::from_path)
                .is_some();
        if makes_frames {
            self.sampling.default_to_video_rate();
        }
        let interval = self.sampling.interval()?.as_secs_f64();
        let (sampler, header) = self.sampling.sampler_config()?;
        feed::validate_prefix(&self.serve_path)?;
        if !(1..=MAX_HISTORY).contains(&self.history) {
            bail!("--history must be from 1 to {MAX_HISTORY} intervals");
        }
        if !(1..=MAX_HISTORY_MB).contains(&self.history_mb) {
            bail!("--history-mb must be from 1 to {MAX_HISTORY_MB}");
        }
        feed::validate_listen(self.listen)?;
        let format = self
            .format
            .stack_format(sampler.user_stacks, sampler.kernel_stacks);
        let video = match &self.output {
            Some(out) => {
                let v = self.frames.video_config(
                    out,
                    format,
                    self.sampling.target(),
                    self.sampling.interval()?.as_secs_f64(),
                )?;
                if v.is_none() {
                    crate::export::ExportFormat::from_path(out)?;
                }
                v
            }
            None => None,
        };
        let pattern = match (&self.frame_pattern, self.emit_frames) {
            (Some(p), _) => Some(p.as_str()),
            (None, true) => Some(crate::output::frames::pattern::DEFAULT_PATTERN),
            (None, false) => None,
        };
        let frames = pattern
            .map(|p| {
                self.frames
                    .frames_config(p, format, self.sampling.target(), interval)
            })
            .transpose()?
            .map(|mut f| {
                // One frame per interval, played at --speed.
                f.fps = Some(self.frames.speed / self.sampling.interval()?.as_secs_f64());
                f.video_hint = video.is_none();
                Ok::<_, anyhow::Error>(f)
            })
            .transpose()?;
        if self.quiet && !makes_frames && self.output.is_none() {
            bail!("-q leaves nothing to make: add -E, -o FILE or -T");
        }
        let feed = if self.serve {
            // Validates the canvas the same way frames do.
            let fc = self.frames.frames_config(
                crate::output::frames::pattern::DEFAULT_PATTERN,
                format,
                self.sampling.target(),
                interval,
            )?;
            Some(FeedConfig {
                listen: self.listen,
                port: self.serve_port,
                path: self.serve_path.clone(),
                history: self.history,
                history_bytes: self.history_mb.saturating_mul(1 << 20),
                canvas: fc.canvas,
                mode: fc.mode,
                format,
                target: fc.target,
                renderer: fc.renderer,
                no_token: self.no_token,
                title: fc.title,
                look: fc.look,
            })
        } else {
            None
        };
        Ok(RunConfig {
            interval: self.sampling.interval()?,
            duration: self.sampling.duration(),
            stats: self.sampling.stats,
            header: (!self.format.folded && !self.quiet).then_some(header),
            folded: self.format.folded,
            text_style: self.format.text_style(),
            format,
            frames,
            feed,
            overwrite: self.frames.overwrite,
            output: if video.is_some() { None } else { self.output },
            video,
            record: false,
            quiet: self.quiet,
            command_line: command_line(),
            target: self.sampling.target(),
            sampler,
        })
    }
}

#[cfg(test)]
mod tests;
