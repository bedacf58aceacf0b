//! `perf script` output, read line by line (any length, bounded memory) and
//! cut into intervals by timestamp. It follows the rules of inferno's
//! collapse-perf (and so of flamegraph.pl's stackcollapse-perf), which users
//! already trust for this text:
//!
//! - an event line `comm pid[/tid] [cpu] time: [period] event:` opens a
//!   sample; its frames follow, leaf first, one per line
//!   (`addr sym+off (dso)`); a capture without `-g` puts its one frame on the
//!   event line itself;
//! - only one event is imported: the first one seen unless `--event-filter`
//!   names another (mixing cycles with instructions would be nonsense);
//! - `[unknown]` frames keep their DSO (drawn `[libfoo.so]`), symbol
//!   offsets and argument lists are dropped, `;` becomes `:`;
//! - tasks perf has no COMM for (`:-1 -1`) are kept, `(deleted)` mappings
//!   keep their path, `-F +srcline` lines are skipped;
//! - a sample with no frames (an empty call chain) counts for its task alone;
//! - each sample weighs 1, or its period with `--weight period`.

use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::profile::{Frame, FrameInfo, Profile, Stack, StackKey, Symbol};

/// x86-64 kernel addresses start here: a frame with no DSO at or above it is
/// a kernel frame.
const KERNEL_START: u64 = 0xffff_8000_0000_0000;
/// Most intervals one file's timestamps may span: more is a broken clock,
/// not a profile (and would fill the disk with empty intervals).
const MAX_INTERVALS: u64 = 10_000_000;

/// What a sample counts for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Weight {
    /// Each sample counts 1 (as a live run counts).
    #[default]
    Samples,
    /// Each sample counts its period (events, or nanoseconds of CPU clock):
    /// right for variable-period captures such as `cycles` on bare metal.
    Period,
}

/// How to read a capture.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Import this event only (default: the first one in the file).
    pub event_filter: Option<String>,
    /// What a sample counts for.
    pub weight: Weight,
}

/// What an import saw besides its samples, for the messages after it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// The event imported.
    pub event: Option<String>,
    /// Samples of other events left out, and which events they were.
    pub other_events: u64,
    /// Names of the events left out.
    pub other_event_names: Vec<String>,
    /// Samples with no timestamp (all in one interval).
    pub untimed: u64,
    /// Samples imported.
    pub samples: u64,
}

/// One sample being read.
struct Pending {
    comm: String,
    pid: u32,
    time: Option<f64>,
    weight: u64,
    skip: bool,
    user: Vec<Frame>,
    kernel: Vec<Frame>,
}

/// Reads `perf script` text line by line and hands each finished interval
/// to `emit`, in order.
pub struct PerfScriptReader<'a> {
    opts: Options,
    step: f64,
    /// Where this file's intervals start (after earlier inputs).
    base: Duration,
    first_index: u64,
    t0: Option<f64>,
    current: Profile,
    pending: Option<Pending>,
    emit: &'a mut dyn FnMut(Profile) -> Result<()>,
    summary: Summary,
    line_no: u64,
}

impl<'a> PerfScriptReader<'a> {
    /// A reader cutting `interval`-long intervals, numbered from
    /// `first_index` and starting at `base`.
    pub fn new(
        opts: Options,
        interval: Duration,
        first_index: u64,
        base: Duration,
        emit: &'a mut dyn FnMut(Profile) -> Result<()>,
    ) -> Result<Self> {
        let step = interval.as_secs_f64();
        if step <= 0.0 {
            bail!("the interval must be positive");
        }
        Ok(PerfScriptReader {
            summary: Summary {
                event: opts.event_filter.clone(),
                ..Default::default()
            },
            opts,
            step,
            base,
            first_index,
            t0: None,
            current: empty(first_index, base, interval),
            pending: None,
            emit,
            line_no: 0,
        })
    }

    /// Reads one line (without its newline).
    pub fn line(&mut self, line: &str) -> Result<()> {
        self.line_no += 1;
        if line.trim().is_empty() {
            return self.finish_sample();
        }
        if line.starts_with('#') {
            return Ok(());
        }
        let indented = line.starts_with(char::is_whitespace);
        // perf pads the comm, so event lines can be indented too (and
        // follow each other with no blank line when there are no call
        // chains): an indented line is a frame unless it has a timestamp.
        if indented && self.pending.is_some() && !has_timestamp(line) {
            if let Some(p) = &mut self.pending {
                if !p.skip {
                    push_frame(p, line);
                }
            }
            return Ok(());
        }
        self.finish_sample()?;
        let Some(h) = parse_event_line(line) else {
            if indented {
                // Frame lines with no event before them (a cut file).
                return Ok(());
            }
            bail!(
                "line {}: not a perf script event line: {}",
                self.line_no,
                super::quote(line)
            );
        };
        let skip = match &self.summary.event {
            Some(ev) => ev != h.event,
            None => {
                self.summary.event = Some(h.event.to_string());
                false
            }
        };
        if skip {
            self.summary.other_events += 1;
            if !self.summary.other_event_names.iter().any(|e| e == h.event) {
                self.summary.other_event_names.push(h.event.to_string());
            }
        }
        let weight = match self.opts.weight {
            Weight::Samples => 1,
            Weight::Period => h.period.unwrap_or(1),
        };
        let mut p = Pending {
            comm: h.comm,
            pid: h.pid,
            time: h.time,
            weight,
            skip,
            user: Vec::new(),
            kernel: Vec::new(),
        };
        if let Some(frame) = h.inline_frame {
            if !skip {
                push_frame(&mut p, frame);
            }
        }
        self.pending = Some(p);
        Ok(())
    }

    /// Ends the input: the last sample and interval are handed over.
    pub fn finish(mut self) -> Result<Summary> {
        self.finish_sample()?;
        let last = std::mem::take(&mut self.current);
        if self.summary.samples > 0 || last.index > self.first_index {
            (self.emit)(last)?;
        }
        Ok(self.summary)
    }

    fn finish_sample(&mut self) -> Result<()> {
        let Some(p) = self.pending.take() else {
            return Ok(());
        };
        // A sample with no frames (an empty call chain, or only pseudo
        // frames) still counts, for its task alone, as stackcollapse-perf
        // counts it: dropping it would lose a sample perf took.
        if p.skip {
            return Ok(());
        }
        match p.time {
            Some(t) => {
                let t0 = *self.t0.get_or_insert(t);
                // perf script sorts by time; a sample from an interval
                // already written stays in the current one.
                let index = ((t - t0).max(0.0) / self.step) as u64 + self.first_index;
                if index - self.first_index > MAX_INTERVALS {
                    bail!(
                        "line {}: timestamp {t} is more than {MAX_INTERVALS} intervals after the first ({t0})",
                        self.line_no
                    );
                }
                while self.current.index < index {
                    let next = self.current.index + 1;
                    let start = self.base
                        + Duration::from_secs_f64(self.step * (next - self.first_index) as f64);
                    let done = std::mem::replace(
                        &mut self.current,
                        empty(next, start, Duration::from_secs_f64(self.step)),
                    );
                    (self.emit)(done)?;
                }
            }
            None => self.summary.untimed += 1,
        }
        let part = |v: Vec<Frame>| {
            if v.is_empty() {
                Stack::Absent
            } else {
                Stack::Frames(v)
            }
        };
        self.current.add(
            StackKey {
                comm: p.comm,
                pid: p.pid,
                user: part(p.user),
                kernel: part(p.kernel),
            },
            p.weight,
        );
        let l = &mut self.current.loss;
        l.taken = l.taken.checked_add(p.weight).with_context(|| {
            format!(
                "line {}: the interval's samples add up to more than {} (a count that can't be right)",
                self.line_no,
                u64::MAX
            )
        })?;
        l.counted = l.taken;
        self.summary.samples += 1;
        Ok(())
    }
}

/// The event and period of the first sample in `lines` that the options
/// import.
pub fn sniff(lines: &[String], opts: &Options) -> super::CaptureInfo {
    lines
        .iter()
        .filter(|l| !l.starts_with(char::is_whitespace) && !l.starts_with('#'))
        .filter_map(|l| parse_event_line(l))
        .find(|h| opts.event_filter.as_deref().is_none_or(|e| e == h.event))
        .map(|h| super::CaptureInfo {
            event: Some(h.event.to_string()),
            period: h.period,
        })
        .unwrap_or_default()
}

fn empty(index: u64, start: Duration, duration: Duration) -> Profile {
    Profile {
        index,
        start,
        duration,
        ..Default::default()
    }
}

/// Whether a token is a timestamp (`123.456789:`).
fn is_time(t: &str) -> bool {
    t.strip_suffix(':')
        .is_some_and(|v| v.contains('.') && v.parse::<f64>().is_ok())
}

/// Whether a line carries a timestamp: an event line, not a frame.
fn has_timestamp(line: &str) -> bool {
    line.split_whitespace().any(is_time)
}

/// An event line's parts.
#[derive(Debug, PartialEq)]
struct EventLine<'l> {
    comm: String,
    pid: u32,
    time: Option<f64>,
    period: Option<u64>,
    event: &'l str,
    /// `perf record` without `-g`: the one frame, after the event.
    inline_frame: Option<&'l str>,
}

/// `comm pid[/tid] [cpu] time: [period] event:[mods:] [frame]`. The comm may
/// contain spaces (and be `:-1`), so the line is read around the event.
fn parse_event_line(line: &str) -> Option<EventLine<'_>> {
    // Tokens with their byte offsets.
    let mut tokens: Vec<(usize, &str)> = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                tokens.push((s, &line[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        tokens.push((s, &line[s..]));
    }
    // The event: the first token after the pid that ends a name with ':'
    // and is not the timestamp.
    let time_at = tokens.iter().position(|(_, t)| is_time(t));
    let search_from = time_at.map_or(1, |i| i + 1);
    let ev_at = (search_from..tokens.len()).find(|&i| {
        let t = tokens[i].1;
        !is_time(t) && t.contains(':') && !t.starts_with(':') && i > 0
    })?;
    let (ev_off, ev_tok) = tokens[ev_at];
    let event = &ev_tok[..ev_tok.find(':')?];
    // What follows `event:mods:` on the line is a frame (no -g).
    let after = &line[ev_off + ev_tok.len()..];
    let inline_frame = Some(after.trim()).filter(|s| !s.is_empty());
    // Before the event: [time] or nothing, and maybe a period.
    let mut end = time_at.unwrap_or(ev_at);
    let period = match time_at {
        Some(t) if ev_at == t + 2 => tokens[t + 1].1.parse().ok(),
        _ => None,
    };
    if time_at.is_none() && ev_at >= 3 && tokens[ev_at - 1].1.parse::<u64>().is_ok() {
        // `comm pid period event:` (no time)
        end = ev_at - 1;
    }
    let time = time_at.and_then(|t| tokens[t].1.trim_end_matches(':').parse().ok());
    // [cpu]
    if end > 0 && tokens[end - 1].1.starts_with('[') && tokens[end - 1].1.ends_with(']') {
        end -= 1;
    }
    if end < 2 {
        return None;
    }
    let pid_tok = tokens[end - 1].1;
    let pid_part = pid_tok.split('/').next()?;
    let pid: i64 = pid_part.parse().ok()?;
    let comm_end = tokens[end - 1].0;
    let comm = line[..comm_end].trim().to_string();
    if comm.is_empty() {
        return None;
    }
    Some(EventLine {
        comm,
        // perf's "no such task" (-1) is shown as pid 0.
        pid: u32::try_from(pid).unwrap_or(0),
        time,
        period,
        event,
        inline_frame,
    })
}

/// Adds one frame line (`addr sym+off (dso)`) to the sample. Lines that are
/// not frames (`-F +srcline` adds `  file.c:12` lines) are skipped.
fn push_frame(p: &mut Pending, line: &str) {
    let line = line.trim();
    let (addr, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let Ok(addr) = u64::from_str_radix(addr, 16) else {
        return;
    };
    let rest = rest.trim();
    let (raw, dso) = split_dso(rest);
    let (raw, offset) = match raw.rfind("+0x") {
        Some(i) if raw[i + 3..].chars().all(|c| c.is_ascii_hexdigit()) && i + 3 < raw.len() => {
            (&raw[..i], u64::from_str_radix(&raw[i + 3..], 16).ok())
        }
        _ => (raw, None),
    };
    // stackcollapse-perf skips "(...)" pseudo-frames; C++'s anonymous
    // namespace is a real function, kept.
    if raw.starts_with('(') && !raw.starts_with("(anonymous namespace)") {
        return;
    }
    let dso_known = dso.filter(|d| !d.is_empty() && *d != "[unknown]");
    let kernel = match dso_known {
        Some(d) => is_kernel_dso(d),
        None => addr >= KERNEL_START,
    };
    let base = |d: &str| d.rsplit('/').next().unwrap_or(d).to_string();
    // An unknown symbol keeps its DSO as module: outputs draw it `[dso]`.
    let name = if raw.is_empty() || raw == "[unknown]" {
        "[unknown]".to_string()
    } else {
        tidy(raw)
    };
    let module = dso_known.map(|d| {
        if d.starts_with("[kernel") {
            "kernel".to_string()
        } else {
            base(d)
        }
    });
    let frame = Frame::new(FrameInfo {
        name: Symbol::from(name),
        module: module.map(Symbol::from),
        offset,
        addr: Some(addr),
        source: None,
        mapping: None,
    });
    if kernel {
        p.kernel.push(frame);
    } else {
        p.user.push(frame);
    }
}

/// `sym+0x1 (/lib/x.so)` -> (`sym+0x1`, `/lib/x.so`); the DSO is the last
/// parenthesized group, which may itself end in ` (deleted)`.
fn split_dso(rest: &str) -> (&str, Option<&str>) {
    if !rest.ends_with(')') {
        return (rest, None);
    }
    let mut depth = 0;
    for (i, c) in rest.char_indices().rev() {
        match c {
            ')' => depth += 1,
            '(' => {
                depth -= 1;
                if depth == 0 {
                    let dso = &rest[i + 1..rest.len() - 1];
                    let dso = dso.strip_suffix(" (deleted)").unwrap_or(dso);
                    return (rest[..i].trim_end(), Some(dso));
                }
            }
            _ => {}
        }
    }
    (rest, None)
}

fn is_kernel_dso(dso: &str) -> bool {
    (dso.starts_with('[') && dso != "[vdso]" && dso != "[vsyscall]" && !dso.starts_with("[jit"))
        || dso.ends_with("vmlinux")
        || dso.contains("/lib/modules/")
}

/// stackcollapse-perf's tidying: `;` would split a folded frame, and
/// argument lists (`f(int)`) are dropped, except Go's `.(*T)` receivers and
/// C++'s `(anonymous namespace)`.
fn tidy(func: &str) -> String {
    let func = func.replace(';', ":");
    let mut depth = 0i32;
    let mut prev = ' ';
    for (i, c) in func.char_indices() {
        match c {
            '<' | '{' | '[' => depth += 1,
            '>' | '}' | ']' | ')' => depth -= 1,
            '(' => {
                if depth == 0 && prev != '.' && !func[i..].starts_with("(anonymous namespace)") {
                    return func[..i].to_string();
                }
                depth += 1;
            }
            _ => {}
        }
        prev = c;
    }
    func
}

#[cfg(test)]
mod tests;
