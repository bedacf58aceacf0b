//! speedscope's file format (https://www.speedscope.app/file-format-schema.json):
//! "sampled" profiles, one per interval or one merged, weighed in
//! nanoseconds of CPU time (samples x the sampling period), so speedscope
//! shows time, not counts. Frames carry their module as `file` where known.

use std::collections::HashMap;

use anyhow::Result;
use serde_json::{json, Value};

use crate::output::folded::{MISSED_KERNEL, MISSED_USER};
use crate::profile::{Profile, Stack, Symbol};
use crate::recording::Meta;

/// speedscope's schema URL, which it checks.
pub const SCHEMA: &str = "https://www.speedscope.app/file-format-schema.json";

/// Encodes the intervals as speedscope JSON.
pub fn encode(meta: &Meta, intervals: &[Profile], merge: bool) -> Result<Vec<u8>> {
    let period = u64::try_from(super::period_nanos(meta, intervals)).unwrap_or(1);
    let mut frames: Vec<Value> = Vec::new();
    // A frame: name, and its source file and line where known, else its
    // module as the file.
    let mut ids: HashMap<(Symbol, Option<Symbol>, Option<u32>), usize> = HashMap::new();
    let mut frame_id = |name: &Symbol, file: Option<Symbol>, line: Option<u32>| -> usize {
        let key = (name.clone(), file.clone(), line);
        if let Some(i) = ids.get(&key) {
            return *i;
        }
        frames.push(match (&file, line) {
            (Some(f), Some(l)) => json!({ "name": &**name, "file": &**f, "line": l }),
            (Some(f), None) => json!({ "name": &**name, "file": &**f }),
            _ => json!({ "name": &**name }),
        });
        ids.insert(key, frames.len() - 1);
        frames.len() - 1
    };
    // Merged: one profile whose samples come interval after interval, so
    // speedscope's Time Order view runs in run time (a program that ran
    // first is on the left); within an interval, stacks in sorted order.
    let groups: Vec<&[Profile]> = if merge {
        vec![intervals]
    } else {
        intervals.chunks(1).collect()
    };
    let mut profiles = Vec::new();
    // Each interval's profile starts where the one before ended, so the
    // per-interval file's profiles lie end to end on one axis of CPU time
    // (they all started at 0, every one at the run's start).
    let mut offset = 0u64;
    for group in groups {
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            continue;
        };
        let mut samples = Vec::new();
        let mut weights = Vec::new();
        let mut total = 0u64;
        for (key, n) in group.iter().flat_map(Profile::sorted) {
            // Root first: comm, user root..leaf, kernel root..leaf.
            let mut stack = vec![frame_id(&Symbol::from(key.comm.as_str()), None, None)];
            for (half, missed) in [(&key.user, MISSED_USER), (&key.kernel, MISSED_KERNEL)] {
                match half {
                    Stack::Frames(f) => stack.extend(f.iter().rev().map(|f| {
                        let name = Symbol::from(f.display_name());
                        let i = f.info();
                        match &i.source {
                            Some((file, line)) => frame_id(&name, Some(file.clone()), Some(*line)),
                            None => frame_id(&name, i.module.clone(), None),
                        }
                    })),
                    Stack::Missed => stack.push(frame_id(&Symbol::from(missed), None, None)),
                    Stack::Absent => {}
                }
            }
            let w = n.saturating_mul(period);
            total = total.saturating_add(w);
            samples.push(stack);
            weights.push(w);
        }
        let end = (last.start + last.duration).as_secs_f64();
        profiles.push(json!({
            "type": "sampled",
            "name": format!("{} {:.2}s-{:.2}s", meta.target, first.start.as_secs_f64(), end),
            "unit": "nanoseconds",
            "startValue": offset,
            "endValue": offset.saturating_add(total),
            "samples": samples,
            "weights": weights,
        }));
        offset = offset.saturating_add(total);
    }
    let doc = json!({
        "$schema": SCHEMA,
        "shared": { "frames": frames },
        "profiles": profiles,
        "name": format!("rs-profile: {}", meta.target),
        "activeProfileIndex": 0,
        "exporter": format!("rs-profile {}", env!("CARGO_PKG_VERSION")),
    });
    Ok(serde_json::to_vec(&doc)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::test_data::sample_profile;

    #[test]
    fn has_the_schema_required_fields() {
        let mut a = sample_profile();
        a.duration = std::time::Duration::from_secs(1);
        let mut b = a.clone();
        b.start = std::time::Duration::from_secs(1);
        let meta = Meta {
            frequency: Some(100),
            ..Default::default()
        };
        let bytes = encode(&meta, &[a.clone(), b], false).unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["$schema"], SCHEMA);
        let frames = v["shared"]["frames"].as_array().unwrap();
        assert!(frames.iter().all(|f| f["name"].is_string()));
        // Source file and line where known, else the module.
        assert!(frames
            .iter()
            .any(|f| f["name"] == "__read" && f["file"] == "sysdeps/read.c" && f["line"] == 26));
        assert!(frames
            .iter()
            .any(|f| f["name"] == "read_zero" && f["file"] == "kernel"));
        let profiles = v["profiles"].as_array().unwrap();
        assert_eq!(profiles.len(), 2);
        // End to end: the second starts where the first ended.
        assert_eq!(profiles[0]["startValue"], 0);
        assert_eq!(profiles[1]["startValue"], profiles[0]["endValue"]);
        for p in profiles {
            for field in [
                "type",
                "name",
                "unit",
                "startValue",
                "endValue",
                "samples",
                "weights",
            ] {
                assert!(!p[field].is_null(), "missing {field}");
            }
            let samples = p["samples"].as_array().unwrap();
            let weights = p["weights"].as_array().unwrap();
            assert_eq!(samples.len(), weights.len());
            let total: u64 = weights.iter().map(|w| w.as_u64().unwrap()).sum();
            assert_eq!(
                p["endValue"].as_u64().unwrap() - p["startValue"].as_u64().unwrap(),
                total
            );
            // Time: samples x 10 ms at 100 Hz.
            assert_eq!(p["unit"], "nanoseconds");
            assert_eq!(total, a.samples() * 10_000_000);
            for s in samples {
                for i in s.as_array().unwrap() {
                    assert!((i.as_u64().unwrap() as usize) < frames.len());
                }
            }
        }
        let merged: Value =
            serde_json::from_slice(&encode(&Meta::default(), &[a], true).unwrap()).unwrap();
        assert_eq!(merged["profiles"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn a_merged_profile_keeps_time_order() {
        use crate::profile::{Stack, StackKey};
        // "zz" runs first, "aa" after: alphabetical order would swap them.
        let phase = |comm: &str, start: u64| {
            let mut p = Profile {
                start: std::time::Duration::from_secs(start),
                duration: std::time::Duration::from_secs(1),
                ..Default::default()
            };
            p.add(
                StackKey {
                    comm: comm.into(),
                    pid: 1,
                    user: Stack::Absent,
                    kernel: Stack::Absent,
                },
                5,
            );
            p
        };
        let run = [phase("zz", 0), phase("zz", 1), phase("aa", 2)];
        let v: Value =
            serde_json::from_slice(&encode(&Meta::default(), &run, true).unwrap()).unwrap();
        let frames = v["shared"]["frames"].as_array().unwrap();
        let p = &v["profiles"][0];
        let comms: Vec<&str> = p["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                frames[s[0].as_u64().unwrap() as usize]["name"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(comms, ["zz", "zz", "aa"]);
        assert_eq!(p["name"], " 0.00s-3.00s");
    }
}
