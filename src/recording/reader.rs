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

/// Reads a recording. A foreign file, an unknown version or a damaged
/// header is an error; damage after the metadata is reported in
/// [`Recording::damage`] with every whole interval before it kept.
pub fn read_recording(path: &Path) -> Result<Recording> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&data).with_context(|| format!("{} is not a usable recording", path.display()))
}

/// Parses a recording held in memory (see [`read_recording`]).
pub fn parse(data: &[u8]) -> Result<Recording> {
    if data.len() < 12 || &data[..8] != MAGIC {
        bail!("not an rs-profile recording (bad magic)");
    }
    let version = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes"));
    if !(VERSION_NAMES_ONLY..=VERSION).contains(&version) {
        bail!(
            "recording version {version}; this build reads versions {VERSION_NAMES_ONLY} to {VERSION}"
        );
    }
    let mut pos = 12;
    let mut strings_seen = 0;
    let mut next_record =
        |data: &[u8], pos: &mut usize| next_record(data, pos, version, &mut strings_seen);
    let meta = match next_record(data, &mut pos) {
        Some(Ok(Record::Meta(meta))) => meta,
        Some(Ok(_)) => bail!("the first record at offset 12 is not the run's metadata"),
        Some(Err(e)) => bail!("{e}"),
        None => bail!("the file ends before the run's metadata"),
    };
    let mut tables = Tables::default();
    let mut intervals = Vec::new();
    let mut damage = None;
    loop {
        let at = pos;
        match next_record(data, &mut pos) {
            None => break,
            Some(Ok(Record::Interval(rec))) => match profile(rec, &mut tables) {
                Ok(p) => intervals.push(p),
                Err(e) => {
                    damage = Some(format!("{e} at offset {at} (interval {})", intervals.len()));
                    break;
                }
            },
            Some(Ok(Record::Meta(_))) => {
                damage = Some(format!(
                    "a second metadata record at offset {at} (interval {})",
                    intervals.len()
                ));
                break;
            }
            Some(Err(e)) => {
                damage = Some(format!("{e} at offset {at} (interval {})", intervals.len()));
                break;
            }
        }
    }
    Ok(Recording {
        meta,
        whole_intervals: intervals.len(),
        intervals,
        damage,
    })
}

/// The record at `*pos`, advancing past it; None at a clean end of file.
/// Version 1 records are converted: each string is also a frame (a name).
fn next_record(
    data: &[u8],
    pos: &mut usize,
    version: u32,
    strings_seen: &mut u32,
) -> Option<Result<Record>> {
    let rest = &data[*pos..];
    if rest.is_empty() {
        return None;
    }
    Some((|| {
        if rest.len() < 8 {
            bail!("truncated record header");
        }
        let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        if len > MAX_RECORD {
            bail!("corrupt record length {len}");
        }
        let Some(payload) = rest.get(8..8 + len) else {
            bail!("truncated record ({} of {len} bytes)", rest.len() - 8);
        };
        if crc32fast::hash(payload) != crc {
            bail!("corrupt record (checksum mismatch)");
        }
        let mut raw = Vec::new();
        DeflateDecoder::new(payload)
            .take(MAX_RECORD as u64 + 1)
            .read_to_end(&mut raw)
            .context("corrupt record (bad compression)")?;
        if raw.len() > MAX_RECORD {
            bail!("corrupt record (too large)");
        }
        let bad = "corrupt record (bad encoding)";
        let rec = match version {
            VERSION_NAMES_ONLY => upgrade(postcard::from_bytes(&raw).context(bad)?, strings_seen),
            VERSION_NO_MAPPINGS => upgrade_v2(postcard::from_bytes(&raw).context(bad)?),
            _ => postcard::from_bytes(&raw).context(bad)?,
        };
        *pos += 8 + len;
        Ok(rec)
    })())
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
