//! Writes a recording, one interval at a time.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result};
use flate2::write::DeflateEncoder;

use super::{
    FrameRec, IntervalRec, LossRec, MappingRec, Meta, Record, SampleRec, StackRec, MAGIC, VERSION,
};
use crate::output::Output;
use crate::profile::{Frame, MappingInfo, Profile, Stack};
use crate::safe_file::{create_streaming, StreamSink, Target};

/// Strings and frames an interval uses for the first time.
#[derive(Default)]
struct New {
    strings: Vec<String>,
    mappings: Vec<MappingRec>,
    frames: Vec<FrameRec>,
}

/// An [`Output`] that appends every interval to a recording file.
pub struct RecordWriter {
    sink: Box<dyn StreamSink>,
    target: Target,
    ids: HashMap<String, u32>,
    mappings: HashMap<Arc<MappingInfo>, u32>,
    frames: HashMap<Frame, u32>,
}

impl RecordWriter {
    /// Creates the recording at `target` (see [`Target::resolve`]: created
    /// exclusively, or streamed into a special file) and writes the header
    /// and the run's metadata.
    pub fn create(target: &Target, meta: &Meta) -> Result<RecordWriter> {
        let sink = create_streaming(target)
            .with_context(|| format!("cannot create the recording {}", target.display()))?;
        Self::with_sink(sink, target, meta)
    }

    /// A recording that gets its name only when [`RecordWriter::close`]
    /// succeeds (see [`crate::safe_file::create_staged`]).
    pub fn create_staged(target: &Target, meta: &Meta) -> Result<RecordWriter> {
        let sink = crate::safe_file::create_staged(target)
            .with_context(|| format!("cannot create the recording {}", target.display()))?;
        Self::with_sink(sink, target, meta)
    }

    fn with_sink(sink: Box<dyn StreamSink>, target: &Target, meta: &Meta) -> Result<RecordWriter> {
        let mut w = RecordWriter {
            sink,
            target: target.clone(),
            ids: HashMap::new(),
            mappings: HashMap::new(),
            frames: HashMap::new(),
        };
        let mut head = MAGIC.to_vec();
        head.extend_from_slice(&VERSION.to_le_bytes());
        w.write_synced(&head)?;
        w.append(&Record::Meta(meta.clone()))?;
        Ok(w)
    }

    fn intern(&mut self, name: &str, new: &mut Vec<String>) -> u32 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = self.ids.len() as u32;
        self.ids.insert(name.to_string(), id);
        new.push(name.to_string());
        id
    }

    fn frame(&mut self, frame: &Frame, new: &mut New) -> u32 {
        if let Some(id) = self.frames.get(frame) {
            return *id;
        }
        let info = frame.info();
        let rec = FrameRec {
            name: self.intern(&info.name, &mut new.strings),
            module: info
                .module
                .as_ref()
                .map(|m| self.intern(m, &mut new.strings)),
            offset: info.offset,
            addr: info.addr,
            source: info
                .source
                .as_ref()
                .map(|(file, line)| (self.intern(file, &mut new.strings), *line)),
            mapping: info.mapping.as_ref().map(|m| self.mapping(m, new)),
        };
        let id = self.frames.len() as u32;
        self.frames.insert(frame.clone(), id);
        new.frames.push(rec);
        id
    }

    fn mapping(&mut self, m: &Arc<MappingInfo>, new: &mut New) -> u32 {
        if let Some(id) = self.mappings.get(m) {
            return *id;
        }
        let rec = MappingRec {
            path: self.intern(&m.path, &mut new.strings),
            start: m.start,
            end: m.end,
            file_offset: m.file_offset,
            build_id: m
                .build_id
                .as_ref()
                .map(|b| self.intern(b, &mut new.strings)),
        };
        let id = self.mappings.len() as u32;
        self.mappings.insert(m.clone(), id);
        new.mappings.push(rec);
        id
    }

    fn stack(&mut self, stack: &Stack, new: &mut New) -> StackRec {
        match stack {
            Stack::Absent => StackRec::Absent,
            Stack::Missed => StackRec::Missed,
            Stack::Frames(f) => StackRec::Frames(f.iter().map(|s| self.frame(s, new)).collect()),
        }
    }

    /// Appends one interval, flushed and synced before returning.
    pub fn write_interval(&mut self, p: &Profile) -> Result<()> {
        let mut new = New::default();
        let mut samples = Vec::with_capacity(p.counts.len());
        for (key, count) in p.sorted() {
            let comm = self.intern(&key.comm, &mut new.strings);
            let user = self.stack(&key.user, &mut new);
            let kernel = self.stack(&key.kernel, &mut new);
            samples.push(SampleRec {
                comm,
                pid: key.pid,
                user,
                kernel,
                count,
            });
        }
        let l = &p.loss;
        let rec = IntervalRec {
            index: p.index,
            start_ns: p.start.as_nanos() as u64,
            duration_ns: p.duration.as_nanos() as u64,
            new_strings: new.strings,
            new_mappings: new.mappings,
            new_frames: new.frames,
            samples,
            loss: LossRec {
                taken: l.taken,
                counted: l.counted,
                lost_hash_full: l.lost_hash_full,
                lost_in_flight: l.lost_in_flight,
                missing_stacks: l.missing_stacks,
                missed_stack_samples: l.missed_stack_samples,
                stack_collision: l.stack_collision,
            },
        };
        self.append(&Record::Interval(rec))
    }

    fn append(&mut self, rec: &Record) -> Result<()> {
        let raw = postcard::to_stdvec(rec).context("failed to encode a record")?;
        let mut enc = DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&raw)?;
        let payload = enc.finish()?;
        let mut buf = Vec::with_capacity(payload.len() + 8);
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        buf.extend_from_slice(&payload);
        // One write per record, then to disk: a crash leaves whole records
        // and at most one partial one at the end.
        self.write_synced(&buf)
    }

    /// Ends the recording: synced, and still ours under its name.
    pub fn close(&mut self) -> Result<()> {
        self.sink
            .finish()
            .with_context(|| format!("the recording {}", self.target.display()))
    }

    fn write_synced(&mut self, bytes: &[u8]) -> Result<()> {
        self.sink
            .write_all(bytes)
            .and_then(|()| self.sink.sync())
            .with_context(|| format!("failed to write {}", self.target.display()))
    }
}

impl Output for RecordWriter {
    fn name(&self) -> String {
        format!("the recording {}", self.target.display())
    }

    fn interval(&mut self, profile: &Profile) -> Result<()> {
        self.write_interval(profile)
    }

    fn finish(&mut self, _loss: &crate::profile::LossReport) -> Result<()> {
        self.close()
    }
}
