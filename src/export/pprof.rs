//! pprof: the gzipped protobuf of github.com/google/pprof's profile.proto,
//! read by `go tool pprof`, Pyroscope and Parca. Messages are declared here
//! with prost's derive (only the fields we write), so no protoc is needed.

use std::collections::HashMap;
use std::io::Write;

use anyhow::Result;
use flate2::write::GzEncoder;
use prost::Message;

use crate::output::folded::{MISSED_KERNEL, MISSED_USER};
use crate::profile::{Frame, FrameInfo, MappingInfo, Profile, Stack, StackKey, Symbol};
use crate::recording::Meta;
use std::sync::Arc;

/// profile.proto's `Profile` (the fields rs-profile fills).
#[allow(missing_docs)]
#[derive(Clone, PartialEq, Message)]
pub struct PprofProfile {
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub mapping: Vec<Mapping>,
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    pub period: i64,
}

/// profile.proto's `ValueType`.
#[allow(missing_docs)]
#[derive(Clone, PartialEq, Message)]
pub struct ValueType {
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

/// profile.proto's `Sample`.
#[allow(missing_docs)]
#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

/// profile.proto's `Label`.
#[allow(missing_docs)]
#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(int64, tag = "1")]
    pub key: i64,
    #[prost(int64, tag = "2")]
    pub str: i64,
    #[prost(int64, tag = "3")]
    pub num: i64,
    #[prost(int64, tag = "4")]
    pub num_unit: i64,
}

/// profile.proto's `Mapping`.
#[allow(missing_docs)]
#[derive(Clone, PartialEq, Message)]
pub struct Mapping {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub memory_start: u64,
    #[prost(uint64, tag = "3")]
    pub memory_limit: u64,
    #[prost(uint64, tag = "4")]
    pub file_offset: u64,
    #[prost(int64, tag = "5")]
    pub filename: i64,
    #[prost(int64, tag = "6")]
    pub build_id: i64,
    #[prost(bool, tag = "7")]
    pub has_functions: bool,
    #[prost(bool, tag = "8")]
    pub has_filenames: bool,
    #[prost(bool, tag = "9")]
    pub has_line_numbers: bool,
}

/// profile.proto's `Location`.
#[allow(missing_docs)]
#[derive(Clone, PartialEq, Message)]
pub struct Location {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub mapping_id: u64,
    #[prost(uint64, tag = "3")]
    pub address: u64,
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
}

/// profile.proto's `Line`.
#[allow(missing_docs)]
#[derive(Clone, PartialEq, Message)]
pub struct Line {
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    #[prost(int64, tag = "2")]
    pub line: i64,
}

/// profile.proto's `Function`.
#[allow(missing_docs)]
#[derive(Clone, PartialEq, Message)]
pub struct Function {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(int64, tag = "2")]
    pub name: i64,
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    #[prost(int64, tag = "4")]
    pub filename: i64,
}

/// How the pprof export is shaped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PprofOptions {
    /// Also push the process name as a root frame (a fake function), as
    /// folded output shows it; off by default: it is the `comm` label.
    pub comm_frame: bool,
    /// Label each sample with its interval's start (`interval_start`).
    pub interval_labels: bool,
}

/// A mapping being collected: a process mapping the symbolizer saw, or,
/// for frames without one (kernel, imports), one per module spanning the
/// addresses the samples touched.
enum MappingEntry {
    Real(Arc<MappingInfo>),
    Module { name: Symbol, lo: u64, hi: u64 },
}

#[derive(Default)]
struct Builder {
    profile: PprofProfile,
    strings: HashMap<String, i64>,
    functions: HashMap<(String, Option<Symbol>), u64>,
    locations: HashMap<Frame, u64>,
    /// Mapping id - 1 -> entry, and whether a location in it has a line.
    mappings: Vec<(MappingEntry, bool)>,
    real_ids: HashMap<Arc<MappingInfo>, u64>,
    module_ids: HashMap<Symbol, u64>,
}

impl Builder {
    fn string(&mut self, s: &str) -> i64 {
        if let Some(i) = self.strings.get(s) {
            return *i;
        }
        let i = self.profile.string_table.len() as i64;
        self.profile.string_table.push(s.to_string());
        self.strings.insert(s.to_string(), i);
        i
    }

    fn function(&mut self, name: &str, file: Option<&Symbol>) -> u64 {
        let key = (name.to_string(), file.cloned());
        if let Some(id) = self.functions.get(&key) {
            return *id;
        }
        let id = self.profile.function.len() as u64 + 1;
        let n = self.string(name);
        let filename = file.map_or(0, |f| self.string(f));
        self.profile.function.push(Function {
            id,
            name: n,
            system_name: n,
            filename,
        });
        self.functions.insert(key, id);
        id
    }

    fn mapping(&mut self, info: &FrameInfo) -> u64 {
        if let Some(m) = &info.mapping {
            if let Some(id) = self.real_ids.get(m) {
                return *id;
            }
            self.mappings.push((MappingEntry::Real(m.clone()), false));
            let id = self.mappings.len() as u64;
            self.real_ids.insert(m.clone(), id);
            return id;
        }
        // Every location has a mapping: Pyroscope's Normalize() indexes
        // mapping[mapping_id - 1] for each location, so id 0 (none) would
        // break it. Frames of no known module share an "[unknown]" one.
        let name = info
            .module
            .clone()
            .unwrap_or_else(|| Symbol::from("[unknown]"));
        let id = match self.module_ids.get(&name) {
            Some(id) => *id,
            None => {
                self.mappings.push((
                    MappingEntry::Module {
                        name: name.clone(),
                        lo: u64::MAX,
                        hi: 0,
                    },
                    false,
                ));
                let id = self.mappings.len() as u64;
                self.module_ids.insert(name, id);
                id
            }
        };
        if let (Some(a), (MappingEntry::Module { lo, hi, .. }, _)) =
            (info.addr, &mut self.mappings[id as usize - 1])
        {
            *lo = (*lo).min(a);
            *hi = (*hi).max(a);
        }
        id
    }

    /// One location per distinct frame (address, name, module): pprof
    /// locations are addresses, each with the function (and line) it is in.
    fn location(&mut self, frame: &Frame) -> u64 {
        if let Some(id) = self.locations.get(frame) {
            return *id;
        }
        let info = frame.info();
        let id = self.profile.location.len() as u64 + 1;
        let mapping_id = self.mapping(info);
        let file = info.source.as_ref().map(|(f, _)| f);
        let function_id = self.function(&frame.display_name(), file);
        if info.source.is_some() {
            self.mappings[mapping_id as usize - 1].1 = true;
        }
        self.profile.location.push(Location {
            id,
            mapping_id,
            address: info.addr.unwrap_or(0),
            line: vec![Line {
                function_id,
                line: info.source.as_ref().map_or(0, |(_, l)| i64::from(*l)),
            }],
        });
        self.locations.insert(frame.clone(), id);
        id
    }

    /// The mappings, in id order, the main one first: pprof tools take the
    /// first mapping for the profiled binary (`go tool pprof` prints it as
    /// `File:`). That is the file mapping in the most samples' stacks (the
    /// executable, whose main is under everything it runs), else the first.
    fn finish_mappings(&mut self) {
        let mut in_samples = vec![0u64; self.mappings.len()];
        for s in &self.profile.sample {
            let mut seen: Vec<u64> = s
                .location_id
                .iter()
                .map(|l| self.profile.location[*l as usize - 1].mapping_id)
                .collect();
            seen.sort_unstable();
            seen.dedup();
            for m in seen {
                in_samples[m as usize - 1] += s.value[0].max(0) as u64;
            }
        }
        let main = (0..self.mappings.len())
            .filter(|i| matches!(self.mappings[*i].0, MappingEntry::Real(_)))
            .max_by_key(|i| (in_samples[*i], std::cmp::Reverse(*i)));
        if let Some(main) = main.filter(|m| *m > 0) {
            self.mappings.swap(0, main);
            let (a, b) = (1u64, main as u64 + 1);
            for l in &mut self.profile.location {
                if l.mapping_id == a {
                    l.mapping_id = b;
                } else if l.mapping_id == b {
                    l.mapping_id = a;
                }
            }
        }
        let entries = std::mem::take(&mut self.mappings);
        for (i, (entry, lines)) in entries.into_iter().enumerate() {
            let m = match entry {
                MappingEntry::Real(m) => Mapping {
                    id: i as u64 + 1,
                    memory_start: m.start,
                    memory_limit: m.end,
                    file_offset: m.file_offset,
                    filename: self.string(&m.path),
                    build_id: m.build_id.as_ref().map_or(0, |b| self.string(b)),
                    has_functions: true,
                    has_filenames: lines,
                    has_line_numbers: lines,
                },
                MappingEntry::Module { name, lo, hi } => {
                    let (memory_start, memory_limit) = if lo <= hi {
                        (lo, hi.saturating_add(1))
                    } else {
                        (0, 0)
                    };
                    Mapping {
                        id: i as u64 + 1,
                        memory_start,
                        memory_limit,
                        file_offset: 0,
                        filename: self.string(&name),
                        build_id: 0,
                        has_functions: true,
                        has_filenames: lines,
                        has_line_numbers: lines,
                    }
                }
            };
            self.profile.mapping.push(m);
        }
    }
}

/// A sample's frames leaf first, as pprof lists them: kernel leaf..root,
/// then user leaf..root (missed stacks as their placeholders), then the
/// comm if asked.
fn leaf_first(key: &StackKey, comm_frame: bool) -> Vec<Frame> {
    let mut v = Vec::new();
    let mut half = |s: &Stack, missed: &str| match s {
        Stack::Frames(f) => v.extend(f.iter().cloned()),
        Stack::Missed => v.push(Frame::from(missed)),
        Stack::Absent => {}
    };
    half(&key.kernel, MISSED_KERNEL);
    half(&key.user, MISSED_USER);
    if comm_frame {
        v.push(Frame::from(key.comm.as_str()));
    }
    v
}

/// Builds one gzipped pprof profile from intervals added one at a time,
/// labelled the way Pyroscope and Parca keep labels (string values):
/// `comm`, `thread` (the thread's name, which is what comm is), `pid` and
/// `interval_start` (seconds from the start of the run). It holds what the
/// profile will hold (locations, functions, samples), not the intervals.
pub struct Encoder {
    b: Builder,
    meta: Meta,
    opts: PprofOptions,
    keys: [i64; 4],
    /// First start and last end of the intervals added.
    span: Option<(std::time::Duration, std::time::Duration)>,
    /// Time covered and samples, for the period when the run's rate is
    /// unknown (imports).
    covered_nanos: u128,
    samples: u64,
}

impl Encoder {
    /// An empty profile for the run `meta` describes.
    pub fn new(meta: &Meta, opts: PprofOptions) -> Encoder {
        let mut b = Builder::default();
        b.string("");
        let samples = b.string("samples");
        let count = b.string("count");
        let cpu = b.string("cpu");
        let nanos = b.string("nanoseconds");
        let keys = [
            b.string("comm"),
            b.string("thread"),
            b.string("pid"),
            b.string("interval_start"),
        ];
        b.profile.sample_type = vec![
            ValueType {
                r#type: samples,
                unit: count,
            },
            ValueType {
                r#type: cpu,
                unit: nanos,
            },
        ];
        b.profile.period_type = Some(ValueType {
            r#type: cpu,
            unit: nanos,
        });
        Encoder {
            b,
            meta: meta.clone(),
            opts,
            keys,
            span: None,
            covered_nanos: 0,
            samples: 0,
        }
    }

    /// Adds an interval's samples.
    pub fn add(&mut self, p: &Profile) {
        let b = &mut self.b;
        let start = b.string(&format!("{:.3}", p.start.as_secs_f64()));
        for (key, n) in p.sorted() {
            let location_id = leaf_first(key, self.opts.comm_frame)
                .iter()
                .map(|f| b.location(f))
                .collect();
            let comm = b.string(&key.comm);
            let pid = b.string(&key.pid.to_string());
            let labels = if self.opts.interval_labels { 4 } else { 3 };
            let label = [comm, comm, pid, start][..labels]
                .iter()
                .zip(self.keys)
                .map(|(&str, key)| Label {
                    key,
                    str,
                    num: 0,
                    num_unit: 0,
                })
                .collect();
            // The time value is filled in at the end, once the period is
            // known for certain.
            b.profile.sample.push(Sample {
                location_id,
                value: vec![n as i64, 0],
                label,
            });
        }
        let end = p.start + p.duration;
        self.span = Some(match self.span {
            Some((s, e)) => (s.min(p.start), e.max(end)),
            None => (p.start, end),
        });
        self.covered_nanos += p.duration.as_nanos();
        self.samples = self.samples.saturating_add(p.samples());
    }

    /// The gzipped profile.
    pub fn finish(mut self) -> Result<Vec<u8>> {
        let period = super::rate_period(&self.meta)
            .unwrap_or_else(|| super::fallback_period(self.covered_nanos, self.samples));
        let b = &mut self.b;
        b.profile.period = period;
        for s in &mut b.profile.sample {
            s.value[1] = s.value[0].saturating_mul(period);
        }
        b.finish_mappings();
        let (start, end) = self.span.unwrap_or_default();
        // Wall time of the first interval; unknown for imports, where the
        // time of the export stands in (pprof consumers expect one).
        b.profile.time_nanos = if self.meta.started_unix_ns > 0 {
            self.meta.started_unix_ns as i64 + start.as_nanos() as i64
        } else {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i64)
        };
        b.profile.duration_nanos = end.saturating_sub(start).as_nanos() as i64;
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&b.profile.encode_to_vec())?;
        Ok(gz.finish()?)
    }
}

/// Encodes the intervals as one gzipped pprof profile (see [`Encoder`]).
pub fn encode(meta: &Meta, intervals: &[Profile], opts: PprofOptions) -> Result<Vec<u8>> {
    let mut e = Encoder::new(meta, opts);
    intervals.iter().for_each(|p| e.add(p));
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::test_data::sample_profile;
    use std::io::Read;

    fn decode(gz: &[u8]) -> PprofProfile {
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut raw)
            .unwrap();
        PprofProfile::decode(&raw[..]).unwrap()
    }

    #[test]
    fn decodes_back_with_the_right_stacks() {
        let mut p = sample_profile();
        p.duration = std::time::Duration::from_secs(2);
        let meta = Meta {
            frequency: Some(49),
            started_unix_ns: 1_700_000_000_000_000_000,
            ..Default::default()
        };
        let d = decode(&encode(&meta, std::slice::from_ref(&p), PprofOptions::default()).unwrap());
        assert_eq!(d.string_table[0], "");
        assert_eq!(d.period, 1_000_000_000 / 49);
        assert_eq!(d.time_nanos, 1_700_000_000_000_000_000);
        assert_eq!(d.duration_nanos, 2_000_000_000);
        let total: i64 = d.sample.iter().map(|s| s.value[0]).sum();
        assert_eq!(total as u64, p.samples());
        let s = d.sample.iter().find(|s| s.value[0] == 70).unwrap();
        let str = |i: i64| d.string_table[i as usize].clone();
        let loc = |id: u64| &d.location[(id - 1) as usize];
        let name = |id: u64| str(d.function[(loc(id).line[0].function_id - 1) as usize].name);
        let names: Vec<String> = s.location_id.iter().map(|l| name(*l)).collect();
        // Leaf first; no fake "dd" function at the root.
        assert_eq!(names.first().unwrap(), "read_zero");
        assert_eq!(names.last().unwrap(), "__read");
        assert!(!names.contains(&"dd".to_string()));
        assert_eq!(s.value[1], 70 * (1_000_000_000 / 49));
        // The libc frame: its real mapping (path, range, offset, build id)
        // and its source line.
        let libc = s
            .location_id
            .iter()
            .map(|l| loc(*l))
            .find(|l| name(l.id) == "__read")
            .unwrap();
        let m = &d.mapping[(libc.mapping_id - 1) as usize];
        assert_eq!(str(m.filename), "/usr/lib/x86_64-linux-gnu/libc.so.6");
        assert_eq!(str(m.build_id), "c1a8f2");
        assert_eq!((m.memory_start, m.file_offset), (0x7f00_0000_0000, 0x28000));
        assert!(m.has_line_numbers);
        assert_eq!(libc.line[0].line, 26);
        let f = &d.function[(libc.line[0].function_id - 1) as usize];
        assert_eq!(str(f.filename), "sysdeps/read.c");
        // Addresses and mappings.
        let leaf = loc(s.location_id[0]);
        assert!(leaf.address >= 0xffff_ffff_8100_0000);
        let m = &d.mapping[(leaf.mapping_id - 1) as usize];
        assert_eq!(str(m.filename), "kernel");
        assert!(m.memory_start <= leaf.address && leaf.address < m.memory_limit);
        // Mappings by id, one for every location (Pyroscope's Normalize()
        // indexes mapping[mapping_id - 1]).
        for (i, m) in d.mapping.iter().enumerate() {
            assert_eq!(m.id, i as u64 + 1);
        }
        assert!(d
            .location
            .iter()
            .all(|l| l.mapping_id >= 1 && l.mapping_id <= d.mapping.len() as u64));
        // The main mapping first (what `go tool pprof` calls the File):
        // the file in most samples' stacks, not the kernel.
        assert_eq!(
            str(d.mapping[0].filename),
            "/usr/lib/x86_64-linux-gnu/libc.so.6"
        );
        // String labels only: Pyroscope drops numeric ones.
        let labels: Vec<(String, String)> = s
            .label
            .iter()
            .map(|l| {
                assert_eq!(l.num, 0);
                (str(l.key), str(l.str))
            })
            .collect();
        assert_eq!(
            labels,
            [
                ("comm".into(), "dd".into()),
                ("thread".into(), "dd".into()),
                ("pid".into(), "28401".into()),
            ]
        );
        // The interval label only on request.
        let opts = PprofOptions {
            interval_labels: true,
            ..Default::default()
        };
        let d = decode(&encode(&meta, std::slice::from_ref(&p), opts).unwrap());
        let s = &d.sample[0];
        assert_eq!(d.string_table[s.label[3].key as usize], "interval_start");
    }

    #[test]
    fn comm_frame_on_request_and_a_period_for_imports() {
        let p = sample_profile();
        let d = decode(
            &encode(
                &Meta::default(),
                std::slice::from_ref(&p),
                PprofOptions {
                    comm_frame: true,
                    interval_labels: true,
                },
            )
            .unwrap(),
        );
        // No rate in the metadata: the period is the time spread over samples.
        assert!(d.period > 0);
        assert!(d.time_nanos > 0);
        let s = d.sample.iter().find(|s| s.value[0] == 70).unwrap();
        let last = &d.location[(*s.location_id.last().unwrap() - 1) as usize];
        let f = &d.function[(last.line[0].function_id - 1) as usize];
        assert_eq!(d.string_table[f.name as usize], "dd");
    }
}
