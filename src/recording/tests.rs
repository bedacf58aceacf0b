//! Round trips, damage and fuzzing of the recording format.

use std::time::Duration;

use proptest::prelude::*;

use super::reader::parse;
use super::{Meta, RecordWriter};
use crate::output::test_data::sample_profile;
use crate::profile::Profile;
use crate::safe_file::Target;

fn intervals() -> Vec<Profile> {
    (0..3u64)
        .map(|i| {
            let mut p = sample_profile();
            p.index = i;
            p.start = Duration::from_millis(500 * i);
            p.duration = Duration::from_millis(500);
            p.loss.taken = p.samples() + i;
            p.loss.counted = p.samples();
            p.loss.lost_hash_full = i;
            p
        })
        .collect()
}

fn recording_bytes() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.rsprof");
    let meta = Meta {
        target: "PID 7".into(),
        frequency: Some(49),
        ..Default::default()
    };
    let mut w = RecordWriter::create(&Target::resolve(&path, false).unwrap(), &meta).unwrap();
    for p in intervals() {
        w.write_interval(&p).unwrap();
    }
    std::fs::read(&path).unwrap()
}

#[test]
fn round_trip() {
    let rec = parse(&recording_bytes()).unwrap();
    assert_eq!(rec.meta.target, "PID 7");
    assert_eq!(rec.meta.frequency, Some(49));
    assert!(rec.damage.is_none());
    assert_eq!(rec.intervals, intervals());
}

#[test]
fn refuses_to_overwrite_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.rsprof");
    std::fs::write(&path, b"keep").unwrap();
    assert!(Target::resolve(&path, false).is_err());
    // A file that appears after the check is not replaced either.
    let stale = Target::File {
        dir: crate::safe_file::SafeDir::open(dir.path(), false).unwrap(),
        name: "r.rsprof".into(),
        replace: false,
    };
    assert!(RecordWriter::create(&stale, &Meta::default()).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), b"keep");
    RecordWriter::create(&Target::resolve(&path, true).unwrap(), &Meta::default()).unwrap();
    assert_ne!(std::fs::read(&path).unwrap(), b"keep");
}

#[test]
fn truncation_keeps_every_whole_interval() {
    let bytes = recording_bytes();
    let full = parse(&bytes).unwrap().intervals.len();
    let mut last = 0;
    for cut in 0..bytes.len() {
        match parse(&bytes[..cut]) {
            Ok(rec) => {
                assert!(
                    rec.intervals.len() >= last,
                    "fewer intervals at a later cut"
                );
                assert!(rec.intervals.len() < full);
                last = rec.intervals.len();
                assert_eq!(rec.intervals[..], intervals()[..rec.intervals.len()]);
                if cut > 12 && rec.intervals.len() < full {
                    // Damage is reported, unless the cut fell between records.
                    let between = parse(&bytes[..cut]).unwrap().damage.is_none();
                    assert!(between || rec.damage.as_ref().unwrap().contains("offset"));
                }
            }
            Err(e) => assert!(last == 0, "error after intervals were readable: {e}"),
        }
    }
}

#[test]
fn foreign_files_are_refused() {
    for bad in [
        &b""[..],
        b"hello world, not a recording",
        b"RSPROF\n\0\x09\0\0\0",
    ] {
        assert!(parse(bad).is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn flipped_bytes_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let mut bytes = recording_bytes();
        let n = bytes.len();
        for (at, x) in flips {
            bytes[at % n] ^= x | 1;
        }
        // Any answer but a panic; intervals that survive are whole.
        if let Ok(rec) = parse(&bytes) {
            prop_assert!(rec.intervals.len() <= 3);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = b"RSPROF\n\0\x01\0\0\0".to_vec();
        bytes.extend(tail);
        let _ = parse(&bytes);
    }
}

#[test]
fn impossible_counts_are_damage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.rsprof");
    let mut w =
        RecordWriter::create(&Target::resolve(&path, false).unwrap(), &Meta::default()).unwrap();
    let good = intervals().remove(0);
    w.write_interval(&good).unwrap();
    // Two counts of 2^63: their sum wraps to 0 unless checked.
    let mut bad = sample_profile();
    bad.index = 1;
    bad.counts.clear();
    for (i, key) in sample_profile().counts.into_keys().take(2).enumerate() {
        bad.counts.insert(key, (1 << 63) + i as u64);
    }
    bad.loss.taken = 5;
    bad.loss.counted = 5;
    w.write_interval(&bad).unwrap();
    let rec = parse(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(rec.intervals.len(), 1);
    let damage = rec.damage.unwrap();
    assert!(damage.contains("impossible counts"), "{damage}");

    // Losses above what was taken.
    let mut bad = good.clone();
    bad.loss.lost_hash_full = u64::MAX;
    let mut w =
        RecordWriter::create(&Target::resolve(&path, true).unwrap(), &Meta::default()).unwrap();
    w.write_interval(&bad).unwrap();
    let rec = parse(&std::fs::read(&path).unwrap()).unwrap();
    assert!(rec.intervals.is_empty());
    assert!(rec.damage.unwrap().contains("impossible counts"));
}

/// One record framed as the writer frames it.
fn framed<T: serde::Serialize>(rec: &T) -> Vec<u8> {
    use std::io::Write;
    let raw = postcard::to_stdvec(rec).unwrap();
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&raw).unwrap();
    let payload = enc.finish().unwrap();
    let mut buf = (payload.len() as u32).to_le_bytes().to_vec();
    buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    buf.extend_from_slice(&payload);
    buf
}

#[test]
fn version_1_files_still_read() {
    use super::{IntervalRecV1, LossRec, RecordV1, SampleRec, StackRec, MAGIC};
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend(framed(&RecordV1::Meta(Meta {
        target: "PID 7".into(),
        ..Default::default()
    })));
    let interval = |index: u64, new: &[&str], stack: Vec<u32>| {
        RecordV1::Interval(IntervalRecV1 {
            index,
            start_ns: index * 1_000_000_000,
            duration_ns: 1_000_000_000,
            new_strings: new.iter().map(|s| s.to_string()).collect(),
            samples: vec![SampleRec {
                comm: 0,
                pid: 7,
                user: StackRec::Frames(stack),
                kernel: StackRec::Absent,
                count: 3,
            }],
            loss: LossRec {
                taken: 3,
                counted: 3,
                ..Default::default()
            },
        })
    };
    // Strings: 0 comm, 1 leaf, 2 main; then 3 other leaf.
    bytes.extend(framed(&interval(0, &["wl", "burn", "main"], vec![1, 2])));
    bytes.extend(framed(&interval(1, &["spin"], vec![3, 2])));
    let rec = parse(&bytes).unwrap();
    assert!(rec.damage.is_none(), "{:?}", rec.damage);
    assert_eq!(rec.meta.target, "PID 7");
    let names: Vec<Vec<String>> = rec
        .intervals
        .iter()
        .map(|p| {
            let (k, _) = p.counts.iter().next().unwrap();
            assert_eq!(k.comm, "wl");
            k.user.names().iter().map(|s| s.to_string()).collect()
        })
        .collect();
    assert_eq!(names, vec![vec!["burn", "main"], vec!["spin", "main"]]);
}

#[test]
fn frames_keep_module_offset_and_address() {
    use crate::profile::{Frame, FrameInfo, Stack, StackKey};
    let frame = Frame::new(FrameInfo {
        name: "burn".into(),
        module: Some("wl".into()),
        offset: Some(0x30),
        addr: Some(0x5555_0000_1130),
        source: None,
        mapping: None,
    });
    let mut p = Profile {
        duration: Duration::from_secs(1),
        ..Default::default()
    };
    p.add(
        StackKey {
            comm: "wl".into(),
            pid: 1,
            user: Stack::Frames(vec![frame.clone(), Frame::from("main")]),
            kernel: Stack::Absent,
        },
        2,
    );
    p.loss.taken = 2;
    p.loss.counted = 2;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.rsprof");
    let mut w =
        RecordWriter::create(&Target::resolve(&path, false).unwrap(), &Meta::default()).unwrap();
    w.write_interval(&p).unwrap();
    // The second interval reuses every frame (written once, by id).
    let mut q = p.clone();
    q.index = 1;
    w.write_interval(&q).unwrap();
    let rec = parse(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(rec.intervals, vec![p, q]);
}

#[test]
fn version_2_files_still_read() {
    use super::{FrameRecV2, IntervalRecV2, LossRec, RecordV2, SampleRec, StackRec, MAGIC};
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&2u32.to_le_bytes());
    bytes.extend(framed(&RecordV2::Meta(Meta::default())));
    bytes.extend(framed(&RecordV2::Interval(IntervalRecV2 {
        index: 0,
        start_ns: 0,
        duration_ns: 1_000_000_000,
        // Strings: 0 comm, 1 burn, 2 wl.
        new_strings: vec!["wl".into(), "burn".into(), "wl".into()],
        new_frames: vec![FrameRecV2 {
            name: 1,
            module: Some(2),
            offset: Some(0x30),
            addr: Some(0x1130),
        }],
        samples: vec![SampleRec {
            comm: 0,
            pid: 7,
            user: StackRec::Frames(vec![0]),
            kernel: StackRec::Absent,
            count: 4,
        }],
        loss: LossRec {
            taken: 4,
            counted: 4,
            ..Default::default()
        },
    })));
    let rec = parse(&bytes).unwrap();
    assert!(rec.damage.is_none(), "{:?}", rec.damage);
    let (k, n) = rec.intervals[0].counts.iter().next().unwrap();
    assert_eq!(*n, 4);
    let crate::profile::Stack::Frames(f) = &k.user else {
        panic!()
    };
    let i = f[0].info();
    assert_eq!(
        (&*i.name, i.module.as_deref(), i.offset),
        ("burn", Some("wl"), Some(0x30))
    );
    assert!(i.source.is_none() && i.mapping.is_none());
}
