//! Writes a recording, one interval at a time.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use flate2::write::DeflateEncoder;

use super::{IntervalRec, LossRec, Meta, Record, SampleRec, StackRec, MAGIC, VERSION};
use crate::output::Output;
use crate::profile::{Profile, Stack};

/// An [`Output`] that appends every interval to a recording file.
pub struct RecordWriter {
    file: File,
    path: PathBuf,
    ids: HashMap<String, u32>,
}

impl RecordWriter {
    /// Creates (or, with `overwrite`, truncates) the file and writes the
    /// header and the run's metadata.
    pub fn create(path: &Path, meta: &Meta, overwrite: bool) -> Result<RecordWriter> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true);
        if overwrite {
            opts.create(true).truncate(true);
        } else {
            opts.create_new(true);
        }
        let mut file = opts
            .open(path)
            .with_context(|| format!("cannot create the recording {}", path.display()))?;
        let mut head = MAGIC.to_vec();
        head.extend_from_slice(&VERSION.to_le_bytes());
        file.write_all(&head)
            .with_context(|| format!("failed to write {}", path.display()))?;
        let mut w = RecordWriter {
            file,
            path: path.to_path_buf(),
            ids: HashMap::new(),
        };
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

    fn stack(&mut self, stack: &Stack, new: &mut Vec<String>) -> StackRec {
        match stack {
            Stack::Absent => StackRec::Absent,
            Stack::Missed => StackRec::Missed,
            Stack::Frames(f) => StackRec::Frames(f.iter().map(|s| self.intern(s, new)).collect()),
        }
    }

    /// Appends one interval, flushed and synced before returning.
    pub fn write_interval(&mut self, p: &Profile) -> Result<()> {
        let mut new = Vec::new();
        let mut samples = Vec::with_capacity(p.counts.len());
        for (key, count) in p.sorted() {
            let comm = self.intern(&key.comm, &mut new);
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
            new_strings: new,
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
        self.file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data())
            .with_context(|| format!("failed to write {}", self.path.display()))
    }
}

impl Output for RecordWriter {
    fn interval(&mut self, profile: &Profile) -> Result<()> {
        self.write_interval(profile)
    }
}
