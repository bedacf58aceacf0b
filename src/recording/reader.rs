//! Reads a recording back into profiles.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use flate2::read::DeflateDecoder;

use super::{IntervalRec, Meta, Record, StackRec, MAGIC, MAX_RECORD, VERSION};
use crate::profile::{LossReport, Profile, Stack, StackKey, Symbol};

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
    if version != VERSION {
        bail!("recording version {version}; this build reads version {VERSION}");
    }
    let mut pos = 12;
    let meta = match next_record(data, &mut pos) {
        Some(Ok(Record::Meta(meta))) => meta,
        Some(Ok(_)) => bail!("the first record at offset 12 is not the run's metadata"),
        Some(Err(e)) => bail!("{e}"),
        None => bail!("the file ends before the run's metadata"),
    };
    let mut names: Vec<Symbol> = Vec::new();
    let mut intervals = Vec::new();
    let mut damage = None;
    loop {
        let at = pos;
        match next_record(data, &mut pos) {
            None => break,
            Some(Ok(Record::Interval(rec))) => match profile(rec, &mut names) {
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
fn next_record(data: &[u8], pos: &mut usize) -> Option<Result<Record>> {
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
        let rec = postcard::from_bytes(&raw).context("corrupt record (bad encoding)")?;
        *pos += 8 + len;
        Ok(rec)
    })())
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

fn profile(rec: IntervalRec, names: &mut Vec<Symbol>) -> Result<Profile> {
    check_counts(&rec)?;
    names.extend(rec.new_strings.into_iter().map(Symbol::from));
    let name = |id: u32, names: &[Symbol]| -> Result<Symbol> {
        names
            .get(id as usize)
            .cloned()
            .with_context(|| format!("corrupt record (unknown name {id})"))
    };
    let stack = |s: StackRec, names: &[Symbol]| -> Result<Stack> {
        Ok(match s {
            StackRec::Absent => Stack::Absent,
            StackRec::Missed => Stack::Missed,
            StackRec::Frames(ids) => Stack::Frames(
                ids.into_iter()
                    .map(|id| name(id, names))
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
        let comm: Arc<str> = name(s.comm, names)?;
        p.add(
            StackKey {
                comm: comm.to_string(),
                pid: s.pid,
                user: stack(s.user, names)?,
                kernel: stack(s.kernel, names)?,
            },
            s.count,
        );
    }
    Ok(p)
}
