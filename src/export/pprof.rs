//! pprof: the gzipped protobuf of github.com/google/pprof's profile.proto,
//! read by `go tool pprof`, Pyroscope and Parca. Messages are declared here
//! with prost's derive (only the fields we write), so no protoc is needed.

use std::collections::HashMap;
use std::io::Write;

use anyhow::Result;
use flate2::write::GzEncoder;
use prost::Message;

use crate::output::folded::{for_each_frame, FrameKind};
use crate::output::StackFormat;
use crate::profile::Profile;
use crate::recording::Meta;

/// profile.proto's `Profile` (the fields rs-profile fills).
#[allow(missing_docs)]
#[derive(Clone, PartialEq, Message)]
pub struct PprofProfile {
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
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

/// profile.proto's `Location`.
#[allow(missing_docs)]
#[derive(Clone, PartialEq, Message)]
pub struct Location {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
}

/// profile.proto's `Line`.
#[allow(missing_docs)]
#[derive(Clone, PartialEq, Message)]
pub struct Line {
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
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
}

#[derive(Default)]
struct Builder {
    profile: PprofProfile,
    strings: HashMap<String, i64>,
    functions: HashMap<String, u64>,
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

    /// One function and one location per name: we keep names, not addresses.
    fn location(&mut self, name: &str) -> u64 {
        if let Some(id) = self.functions.get(name) {
            return *id;
        }
        let id = self.functions.len() as u64 + 1;
        let n = self.string(name);
        self.profile.function.push(Function {
            id,
            name: n,
            system_name: n,
        });
        self.profile.location.push(Location {
            id,
            line: vec![Line { function_id: id }],
        });
        self.functions.insert(name.to_string(), id);
        id
    }
}

/// Encodes the intervals as one gzipped pprof profile. Each sample carries
/// its interval's start as a label, so a time range can still be told apart.
pub fn encode(meta: &Meta, intervals: &[Profile]) -> Result<Vec<u8>> {
    let mut b = Builder::default();
    b.string("");
    let samples = b.string("samples");
    let count = b.string("count");
    let cpu = b.string("cpu");
    let nanos = b.string("nanoseconds");
    let (k_comm, k_pid, k_start) = (
        b.string("comm"),
        b.string("pid"),
        b.string("interval_start"),
    );
    let period = match (meta.frequency, meta.period) {
        (Some(hz), _) if hz > 0 => 1_000_000_000 / hz as i64,
        (_, Some(n)) => n as i64,
        _ => 0,
    };
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
    b.profile.period = period;
    let fmt = StackFormat::default();
    for p in intervals {
        for (key, n) in p.sorted() {
            let mut names: Vec<String> = Vec::new();
            for_each_frame(key, &fmt, |name, kind| {
                if kind != FrameKind::Delimiter {
                    names.push(name.to_string());
                }
            });
            // pprof lists locations leaf first.
            let location_id = names.iter().rev().map(|n| b.location(n)).collect();
            let comm = b.string(&key.comm);
            b.profile.sample.push(Sample {
                location_id,
                value: vec![n as i64, n as i64 * period],
                label: vec![
                    Label {
                        key: k_comm,
                        str: comm,
                        num: 0,
                        num_unit: 0,
                    },
                    Label {
                        key: k_pid,
                        str: 0,
                        num: key.pid as i64,
                        num_unit: 0,
                    },
                    Label {
                        key: k_start,
                        str: 0,
                        num: p.start.as_nanos() as i64,
                        num_unit: nanos,
                    },
                ],
            });
        }
    }
    if let (Some(first), Some(last)) = (intervals.first(), intervals.last()) {
        b.profile.time_nanos = meta.started_unix_ns as i64 + first.start.as_nanos() as i64;
        b.profile.duration_nanos = (last.start + last.duration)
            .saturating_sub(first.start)
            .as_nanos() as i64;
    }
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&b.profile.encode_to_vec())?;
    Ok(gz.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::test_data::sample_profile;
    use std::io::Read;

    #[test]
    fn decodes_back_with_the_right_stacks() {
        let p = sample_profile();
        let meta = Meta {
            frequency: Some(49),
            ..Default::default()
        };
        let gz = encode(&meta, std::slice::from_ref(&p)).unwrap();
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut raw)
            .unwrap();
        let d = PprofProfile::decode(&raw[..]).unwrap();
        assert_eq!(d.string_table[0], "");
        assert_eq!(d.period, 1_000_000_000 / 49);
        let total: i64 = d.sample.iter().map(|s| s.value[0]).sum();
        assert_eq!(total as u64, p.samples());
        // The 70-sample stack: leaf read_zero first, comm dd last.
        let s = d.sample.iter().find(|s| s.value[0] == 70).unwrap();
        let name = |loc: u64| {
            let f = &d.function[(loc - 1) as usize];
            d.string_table[f.name as usize].clone()
        };
        let names: Vec<String> = s.location_id.iter().map(|l| name(*l)).collect();
        assert_eq!(names.first().unwrap(), "read_zero");
        assert_eq!(names.last().unwrap(), "dd");
        assert!(names.contains(&"__read".to_string()));
        assert_eq!(s.value[1], 70 * (1_000_000_000 / 49));
    }
}
