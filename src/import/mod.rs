//! Imports other tools' profiles as interval profiles, so they reach the same
//! outputs as a live run: `perf script` text (cut into intervals by
//! timestamp) and folded files (one interval each). Inputs are read line by
//! line and each interval is handed on as soon as it is complete, so memory
//! stays bounded by one interval whatever the input's length. `-` is
//! standard input.

pub mod folded;
pub mod perf_script;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use self::perf_script::{Options, PerfScriptReader, Summary};
use crate::profile::Profile;

/// Longest line read by default (`--max-line-bytes`): far beyond any
/// real stack, so only damage or the wrong file reaches it.
pub const DEFAULT_MAX_LINE: usize = 1 << 20;

/// At most this many characters of an input line are quoted in an error.
const QUOTE_CHARS: usize = 80;

/// A piece of input for an error message: at most [`QUOTE_CHARS`]
/// characters, debug-quoted, with how much was left out.
pub fn quote(s: &str) -> String {
    match s.char_indices().nth(QUOTE_CHARS) {
        Some((i, _)) => format!("{:?}... ({} bytes)", &s[..i], s.len()),
        None => format!("{s:?}"),
    }
}

/// Lines looked at to tell `perf script` text from folded lines.
const SNIFF_LINES: usize = 200;

/// Whether lines look like `perf script` output (indented frame lines, or
/// an event line with a timestamp) rather than folded lines.
pub fn is_perf_script(lines: &[String]) -> bool {
    lines.iter().any(|l| {
        l.starts_with('\t')
            || (l.starts_with("  ") && !l.trim().is_empty())
            || l.split_whitespace().any(|w| {
                w.strip_suffix(':')
                    .is_some_and(|t| t.contains('.') && t.parse::<f64>().is_ok())
            })
    })
}

/// What importing every input saw: intervals and samples handed on, and
/// what perf script inputs left out.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// Intervals handed on.
    pub intervals: u64,
    /// Samples (or periods, with `--weight period`) handed on.
    pub samples: u64,
    /// One line per input worth a message (left-out events, no timestamps).
    pub notes: Vec<String>,
}

/// What the first input says about how it was sampled, known before its
/// first interval.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureInfo {
    /// The event imported (perf script).
    pub event: Option<String>,
    /// Its sample period (perf script's period field: nanoseconds for
    /// cpu-clock, events otherwise).
    pub period: Option<u64>,
}

/// Where imported intervals go.
pub trait ImportSink {
    /// Called once, before the first interval.
    fn begin(&mut self, info: &CaptureInfo) -> Result<()>;
    /// Called with each interval as soon as it is complete, in order.
    fn interval(&mut self, p: Profile) -> Result<()>;
}

/// Reads every input in order into consecutive intervals, handing each to
/// `sink` as soon as it is complete.
pub fn import_inputs(
    inputs: &[impl AsRef<Path>],
    interval: Duration,
    opts: &Options,
    sink_out: &mut dyn ImportSink,
) -> Result<ImportReport> {
    import_inputs_capped(inputs, interval, opts, DEFAULT_MAX_LINE, sink_out)
}

/// [`import_inputs`] with lines longer than `max_line` bytes refused.
pub fn import_inputs_capped(
    inputs: &[impl AsRef<Path>],
    interval: Duration,
    opts: &Options,
    max_line: usize,
    sink_out: &mut dyn ImportSink,
) -> Result<ImportReport> {
    let mut report = ImportReport::default();
    let mut begun = false;
    let mut next_start = Duration::ZERO;
    for input in inputs {
        let path = input.as_ref();
        let name = if path.as_os_str() == "-" {
            "standard input".to_string()
        } else {
            path.display().to_string()
        };
        let reader: Box<dyn Read> = if path.as_os_str() == "-" {
            Box::new(std::io::stdin())
        } else {
            Box::new(std::fs::File::open(path).with_context(|| format!("cannot read {name}"))?)
        };
        let mut lines = LossyLines::new(BufReader::with_capacity(1 << 16, reader), max_line);
        let read_err = || format!("cannot read {name}");
        let mut head = Vec::new();
        while head.len() < SNIFF_LINES {
            match lines.next_line().with_context(read_err)? {
                Some(l) => head.push(l),
                None => break,
            }
        }
        if !begun {
            begun = true;
            let info = if is_perf_script(&head) {
                perf_script::sniff(&head, opts)
            } else {
                CaptureInfo::default()
            };
            sink_out.begin(&info)?;
        }
        let first_index = report.intervals;
        // What this input handed on.
        let (mut intervals, mut samples, mut end) = (0u64, 0u64, next_start);
        let mut sink = |p: Profile| -> Result<()> {
            intervals += 1;
            samples = samples.saturating_add(p.samples());
            end = p.start + p.duration;
            sink_out.interval(p)
        };
        if is_perf_script(&head) {
            let what = || format!("{name}: not usable perf script output");
            let mut r =
                PerfScriptReader::new(opts.clone(), interval, first_index, next_start, &mut sink)?;
            for l in &head {
                r.line(l).with_context(what)?;
            }
            while let Some(l) = lines.next_line().with_context(read_err)? {
                r.line(&l).with_context(what)?;
            }
            let summary = r.finish().with_context(what)?;
            note(&mut report.notes, &name, &summary);
        } else {
            let what = || format!("{name}: not usable folded input");
            let mut p = Profile {
                index: first_index,
                start: next_start,
                duration: interval,
                ..Default::default()
            };
            let mut n = 0u64;
            for l in &head {
                n += 1;
                folded::add_line(&mut p, l, n).with_context(what)?;
            }
            while let Some(l) = lines.next_line().with_context(read_err)? {
                n += 1;
                folded::add_line(&mut p, &l, n).with_context(what)?;
            }
            if !p.counts.is_empty() {
                sink(p)?;
            }
        }
        if intervals == 0 {
            bail!("{name}: no samples found");
        }
        report.intervals += intervals;
        report.samples = report.samples.saturating_add(samples);
        next_start = end;
    }
    Ok(report)
}

/// The messages an input's summary is worth.
fn note(notes: &mut Vec<String>, name: &str, s: &Summary) {
    if s.other_events > 0 {
        notes.push(format!(
            "{name}: imported {} events only (the first in the file; --event-filter picks another); left out {} samples of {}",
            s.event.as_deref().unwrap_or("?"),
            s.other_events,
            s.other_event_names.join(", ")
        ));
    }
    if s.untimed > 0 {
        notes.push(format!(
            "{name}: {} samples have no timestamp (perf script -F without time); they are all in one interval",
            s.untimed
        ));
    }
}

/// Lines of a reader, with invalid UTF-8 replaced (perf prints symbol names
/// as the binaries spell them), and one buffer reused for every line. A
/// line longer than the cap is an error, read no further: memory stays
/// bounded whatever the input (`/dev/zero` has no newline).
struct LossyLines<R> {
    inner: R,
    buf: Vec<u8>,
    max: usize,
    line_no: u64,
}

impl<R: BufRead> LossyLines<R> {
    fn new(inner: R, max: usize) -> Self {
        LossyLines {
            inner,
            buf: Vec::new(),
            max,
            line_no: 0,
        }
    }

    fn next_line(&mut self) -> Result<Option<String>> {
        self.buf.clear();
        self.line_no += 1;
        let limit = self.max as u64 + 1;
        let n = (&mut self.inner)
            .take(limit)
            .read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(None);
        }
        if self.buf.last() != Some(&b'\n') && self.buf.len() > self.max {
            bail!(
                "line {} is longer than {} bytes (--max-line-bytes): not a profile, or damaged",
                self.line_no,
                self.max
            );
        }
        while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
            self.buf.pop();
        }
        if self.buf.capacity() > 4 * DEFAULT_MAX_LINE.min(self.max).max(1 << 16) {
            // One huge line must not keep its buffer for the rest.
            self.buf.shrink_to(1 << 16);
        }
        Ok(Some(String::from_utf8_lossy(&self.buf).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_refused_without_reading_them_whole() {
        let zeros = std::io::repeat(0).take(50 << 20);
        let mut lines = LossyLines::new(BufReader::new(zeros), 1 << 20);
        let err = lines.next_line().unwrap_err().to_string();
        assert!(
            err.starts_with("line 1 is longer than 1048576 bytes"),
            "{err}"
        );
        assert!(lines.buf.capacity() < 4 << 20);
        let mut ok = LossyLines::new(BufReader::new(&b"a 1\nb 2"[..]), 8);
        assert_eq!(ok.next_line().unwrap().as_deref(), Some("a 1"));
        assert_eq!(ok.next_line().unwrap().as_deref(), Some("b 2"));
        assert_eq!(ok.next_line().unwrap(), None);
    }

    struct Count(u64);
    impl ImportSink for Count {
        fn begin(&mut self, _: &CaptureInfo) -> Result<()> {
            Ok(())
        }
        fn interval(&mut self, p: Profile) -> Result<()> {
            self.0 += p.samples();
            Ok(())
        }
    }

    /// Lines of folded-ish text: frames, NULs, huge or bad counts, and now
    /// and then a line far longer than the cap.
    fn line() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            "[a-z;\\x00 ]{0,40} [0-9]{1,25}",
            "[^\\n]{0,60}",
            (1usize..3).prop_map(|n| "x".repeat(n * 5000)),
            Just(format!("a;b {}", u64::MAX)),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        #[test]
        fn any_input_is_imported_or_refused_in_one_short_line(
            lines in proptest::collection::vec(line(), 0..30)
        ) {
            let dir = tempfile::tempdir().unwrap();
            let f = dir.path().join("in");
            std::fs::write(&f, lines.join("\n")).unwrap();
            let mut sink = Count(0);
            let r = import_inputs_capped(
                &[&f],
                Duration::from_secs(1),
                &Options::default(),
                4096,
                &mut sink,
            );
            if let Err(e) = r {
                let msg = format!("{e:#}");
                proptest::prop_assert!(!msg.contains('\n'), "{}", msg);
                proptest::prop_assert!(msg.len() < 400, "{} bytes", msg.len());
            }
        }
    }

    #[test]
    fn quotes_are_short() {
        assert_eq!(quote("abc"), "\"abc\"");
        let q = quote(&"x".repeat(30 << 20));
        assert!(q.len() < 120, "{q}");
        assert!(q.ends_with("(31457280 bytes)"), "{q}");
    }
}
