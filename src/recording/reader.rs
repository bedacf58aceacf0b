//! Reads a recording back into profiles.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use flate2::read::DeflateDecoder;

use super::{
    FrameRec, IntervalRec, Meta, Record, RecordV1, RecordV2, StackRec, MAGIC, MAX_RECORD, VERSION,
    VERSION_NAMES_ONLY, VERSION_NO_MAPPINGS,
};
use crate::profile::{Frame, FrameInfo, LossReport, MappingInfo, Profile, Stack, StackKey, Symbol};

/// A recording read back: what was whole, and where reading stopped early.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    /// The run's metadata.
    pub meta: Meta,
    /// Every whole interval, in order.
    pub intervals: Vec<Profile>,
    /// How many whole intervals the file held (stays when `intervals` is
    /// filtered or moved out).
    pub whole_intervals: usize,
    /// Why reading stopped before the end of the file, if it did: the
    /// offset and the interval it broke at. The intervals before it are good.
    pub damage: Option<String>,
}

/// Reads a whole recording into memory. A foreign file, an unknown version
/// or a damaged header is an error; damage after the metadata is reported in
/// [`Recording::damage`] with every whole interval before it kept. For long
/// recordings, [`RecordingReader`] reads one interval at a time instead.
pub fn read_recording(path: &Path) -> Result<Recording> {
    collect(RecordingReader::open(path)?)
}

/// Parses a recording held in memory (see [`read_recording`]).
pub fn parse(data: &[u8]) -> Result<Recording> {
    collect(RecordingReader::new(data)?)
}

fn collect<R: Read>(mut r: RecordingReader<R>) -> Result<Recording> {
    let mut intervals = Vec::new();
    while let Some(p) = r.next_interval() {
        intervals.push(p);
    }
    Ok(Recording {
        meta: r.meta.clone(),
        whole_intervals: intervals.len(),
        intervals,
        damage: r.damage.take(),
    })
}

/// Reads a recording one interval at a time, so memory stays bounded by
/// one interval (and the string, mapping and frame tables) whatever the
/// file's length.
pub struct RecordingReader<R> {
    input: R,
    version: u32,
    strings_seen: u32,
    tables: Tables,
    /// Offset of the next record.
    pos: u64,
    /// Whole intervals read so far.
    read: usize,
    /// Index of the last interval read: indices only go up.
    last_index: Option<u64>,
    /// The run's metadata.
    pub meta: Meta,
    /// Why reading stopped before the end, once it did.
    pub damage: Option<String>,
    done: bool,
}

impl RecordingReader<std::io::BufReader<std::fs::File>> {
    /// Opens a recording file and reads its header and metadata.
    pub fn open(path: &Path) -> Result<Self> {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        RecordingReader::new(std::io::BufReader::with_capacity(1 << 16, file))
            .with_context(|| format!("{} is not a usable recording", path.display()))
    }
}

impl<R: Read> RecordingReader<R> {
    /// Reads the header and metadata from `input`.
    pub fn new(mut input: R) -> Result<Self> {
        let mut head = [0u8; 12];
        let got = read_up_to(&mut input, &mut head).context("cannot read the header")?;
        if got < 12 || &head[..8] != MAGIC {
            bail!("not an rs-profile recording (bad magic)");
        }
        let version = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
        if !(VERSION_NAMES_ONLY..=VERSION).contains(&version) {
            bail!(
                "recording version {version}; this build reads versions {VERSION_NAMES_ONLY} to {VERSION}"
            );
        }
        let mut r = RecordingReader {
            input,
            version,
            strings_seen: 0,
            tables: Tables::default(),
            pos: 12,
            read: 0,
            last_index: None,
            meta: Meta::default(),
            damage: None,
            done: false,
        };
        r.meta = match r.next_record() {
            Some(Ok(Record::Meta(meta))) => meta,
            Some(Ok(_)) => bail!("the first record at offset 12 is not the run's metadata"),
            Some(Err(e)) => bail!("{e}"),
            None => bail!("the file ends before the run's metadata"),
        };
        Ok(r)
    }

    /// The next whole interval; None at the end of the file or at damage
    /// (then [`RecordingReader::damage`] says what and where).
    pub fn next_interval(&mut self) -> Option<Profile> {
        if self.done {
            return None;
        }
        let at = self.pos;
        let problem = match self.next_record() {
            None => None,
            Some(Ok(Record::Interval(rec)))
                if self.last_index.is_some_and(|last| rec.index <= last) =>
            {
                // A record written twice (or spliced from elsewhere) would
                // otherwise be counted twice.
                Some(format!(
                    "interval {} comes after interval {} (indices must go up: a repeated or misplaced record)",
                    rec.index,
                    self.last_index.unwrap_or_default()
                ))
            }
            Some(Ok(Record::Interval(rec))) => {
                let index = rec.index;
                match profile(rec, &mut self.tables) {
                    Ok(p) => {
                        self.read += 1;
                        self.last_index = Some(index);
                        return Some(p);
                    }
                    Err(e) => Some(format!("{e}")),
                }
            }
            Some(Ok(Record::Meta(_))) => Some("a second metadata record".to_string()),
            Some(Err(e)) => Some(format!("{e}")),
        };
        self.done = true;
        self.damage = problem.map(|e| format!("{e} at offset {at} (interval {})", self.read));
        None
    }

    /// Whole intervals read so far.
    pub fn intervals_read(&self) -> usize {
        self.read
    }

    /// The next record; None at a clean end of file. Older versions'
    /// records are converted to the current form.
    fn next_record(&mut self) -> Option<Result<Record>> {
        let mut header = [0u8; 8];
        let got = match read_up_to(&mut self.input, &mut header) {
            Ok(0) => return None,
            Ok(n) => n,
            Err(e) => return Some(Err(anyhow::Error::new(e).context("cannot read the file"))),
        };
        Some((|| {
            if got < 8 {
                bail!("truncated record header");
            }
            let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
            let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
            if len > MAX_RECORD {
                bail!("corrupt record length {len}");
            }
            // Grown as bytes arrive: a corrupt length in a short file costs
            // what the file holds, not the length it claims.
            let mut payload = Vec::new();
            let got = (&mut self.input)
                .take(len as u64)
                .read_to_end(&mut payload)
                .context("cannot read the file")?;
            if got < len {
                bail!("truncated record ({got} of {len} bytes)");
            }
            if crc32fast::hash(&payload) != crc {
                bail!("corrupt record (checksum mismatch)");
            }
            let mut raw = Vec::new();
            DeflateDecoder::new(&payload[..])
                .take(MAX_RECORD as u64 + 1)
                .read_to_end(&mut raw)
                .context("corrupt record (bad compression)")?;
            if raw.len() > MAX_RECORD {
                bail!("corrupt record (too large)");
            }
            let bad = "corrupt record (bad encoding)";
            let rec = match self.version {
                VERSION_NAMES_ONLY => upgrade(
                    postcard::from_bytes(&raw).context(bad)?,
                    &mut self.strings_seen,
                ),
                VERSION_NO_MAPPINGS => upgrade_v2(postcard::from_bytes(&raw).context(bad)?),
                _ => postcard::from_bytes(&raw).context(bad)?,
            };
            self.pos += 8 + len as u64;
            Ok(rec)
        })())
    }
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// A version 2 record as a current one: frames without source or mapping.
fn upgrade_v2(old: RecordV2) -> Record {
    match old {
        RecordV2::Meta(m) => Record::Meta(m),
        RecordV2::Interval(r) => Record::Interval(IntervalRec {
            index: r.index,
            start_ns: r.start_ns,
            duration_ns: r.duration_ns,
            new_strings: r.new_strings,
            new_mappings: Vec::new(),
            new_frames: r
                .new_frames
                .into_iter()
                .map(|f| FrameRec {
                    name: f.name,
                    module: f.module,
                    offset: f.offset,
                    addr: f.addr,
                    source: None,
                    mapping: None,
                })
                .collect(),
            samples: r.samples,
            loss: r.loss,
        }),
    }
}

/// A version 1 record as a current one: string N is also frame N.
fn upgrade(old: RecordV1, strings_seen: &mut u32) -> Record {
    match old {
        RecordV1::Meta(m) => Record::Meta(m),
        RecordV1::Interval(r) => {
            let first = *strings_seen;
            *strings_seen = first.saturating_add(r.new_strings.len() as u32);
            Record::Interval(IntervalRec {
                index: r.index,
                start_ns: r.start_ns,
                duration_ns: r.duration_ns,
                new_mappings: Vec::new(),
                new_frames: (first..*strings_seen)
                    .map(|name| FrameRec {
                        name,
                        module: None,
                        offset: None,
                        addr: None,
                        source: None,
                        mapping: None,
                    })
                    .collect(),
                new_strings: r.new_strings,
                samples: r.samples,
                loss: r.loss,
            })
        }
    }
}

/// The string, mapping and frame tables, growing as intervals are read.
#[derive(Default)]
struct Tables {
    strings: Vec<Symbol>,
    mappings: Vec<Arc<MappingInfo>>,
    frames: Vec<Frame>,
}

/// An interval's counts must add up the way a run writes them: no sum
/// overflows, and no more samples are counted or lost than were taken.
/// Anything else is damage, reported like a bad checksum.
fn check_counts(rec: &IntervalRec) -> Result<()> {
    let l = &rec.loss;
    let sum = rec
        .samples
        .iter()
        .try_fold(0u64, |sum, s| sum.checked_add(s.count));
    let lost = l.lost_hash_full.checked_add(l.lost_in_flight);
    let fits = match (sum, lost) {
        (Some(sum), Some(lost)) => {
            sum <= l.counted
                && l.counted.checked_add(lost).is_some_and(|t| t <= l.taken)
                && l.missed_stack_samples <= l.counted
        }
        _ => false,
    };
    if !fits {
        bail!(
            "corrupt record (impossible counts: {} taken, {} counted, {} + {} lost)",
            l.taken,
            l.counted,
            l.lost_hash_full,
            l.lost_in_flight
        );
    }
    Ok(())
}

fn profile(rec: IntervalRec, t: &mut Tables) -> Result<Profile> {
    check_counts(&rec)?;
    t.strings
        .extend(rec.new_strings.into_iter().map(Symbol::from));
    let string = |id: u32, t: &Tables| -> Result<Symbol> {
        t.strings
            .get(id as usize)
            .cloned()
            .with_context(|| format!("corrupt record (unknown string {id})"))
    };
    for m in rec.new_mappings {
        let mapping = MappingInfo {
            path: string(m.path, t)?,
            start: m.start,
            end: m.end,
            file_offset: m.file_offset,
            build_id: m.build_id.map(|b| string(b, t)).transpose()?,
        };
        t.mappings.push(Arc::new(mapping));
    }
    for f in rec.new_frames {
        let frame = Frame::new(FrameInfo {
            name: string(f.name, t)?,
            module: f.module.map(|m| string(m, t)).transpose()?,
            offset: f.offset,
            addr: f.addr,
            source: f
                .source
                .map(|(file, line)| string(file, t).map(|f| (f, line)))
                .transpose()?,
            mapping: f
                .mapping
                .map(|id| {
                    t.mappings
                        .get(id as usize)
                        .cloned()
                        .with_context(|| format!("corrupt record (unknown mapping {id})"))
                })
                .transpose()?,
        });
        t.frames.push(frame);
    }
    let stack = |s: StackRec, t: &Tables| -> Result<Stack> {
        Ok(match s {
            StackRec::Absent => Stack::Absent,
            StackRec::Missed => Stack::Missed,
            StackRec::Frames(ids) => Stack::Frames(
                ids.into_iter()
                    .map(|id| {
                        t.frames
                            .get(id as usize)
                            .cloned()
                            .with_context(|| format!("corrupt record (unknown frame {id})"))
                    })
                    .collect::<Result<_>>()?,
            ),
        })
    };
    let mut p = Profile {
        index: rec.index,
        start: Duration::from_nanos(rec.start_ns),
        duration: Duration::from_nanos(rec.duration_ns),
        loss: LossReport {
            taken: rec.loss.taken,
            counted: rec.loss.counted,
            lost_hash_full: rec.loss.lost_hash_full,
            lost_in_flight: rec.loss.lost_in_flight,
            missing_stacks: rec.loss.missing_stacks,
            missed_stack_samples: rec.loss.missed_stack_samples,
            stack_collision: rec.loss.stack_collision,
            // Not recorded: it describes the live run, printed by --stats.
            unwind: Default::default(),
        },
        ..Default::default()
    };
    for s in rec.samples {
        let comm = string(s.comm, t)?;
        p.add(
            StackKey {
                comm: comm.to_string(),
                pid: s.pid,
                user: stack(s.user, t)?,
                kernel: stack(s.kernel, t)?,
            },
            s.count,
        );
    }
    Ok(p)
}
