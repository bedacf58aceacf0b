//! speedscope's file format (https://www.speedscope.app/file-format-schema.json):
//! "sampled" profiles, one per interval or one merged.

use std::collections::HashMap;

use anyhow::Result;
use serde_json::{json, Value};

use crate::output::folded::{for_each_frame, FrameKind};
use crate::output::StackFormat;
use crate::profile::Profile;
use crate::recording::Meta;

/// speedscope's schema URL, which it checks.
pub const SCHEMA: &str = "https://www.speedscope.app/file-format-schema.json";

/// Encodes the intervals as speedscope JSON.
pub fn encode(meta: &Meta, intervals: &[Profile], merge: bool) -> Result<Vec<u8>> {
    let mut frames: Vec<Value> = Vec::new();
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut frame_id = |name: &str| -> usize {
        if let Some(i) = ids.get(name) {
            return *i;
        }
        frames.push(json!({ "name": name }));
        ids.insert(name.to_string(), frames.len() - 1);
        frames.len() - 1
    };
    let merged;
    let groups: Vec<&Profile> = if merge {
        let mut total = Profile::default();
        intervals.iter().for_each(|p| total.merge(p));
        merged = total;
        vec![&merged]
    } else {
        intervals.iter().collect()
    };
    let fmt = StackFormat::default();
    let mut profiles = Vec::new();
    for p in groups {
        let mut samples = Vec::new();
        let mut weights = Vec::new();
        for (key, n) in p.sorted() {
            let mut stack = Vec::new();
            for_each_frame(key, &fmt, |name, kind| {
                if kind != FrameKind::Delimiter {
                    stack.push(frame_id(name));
                }
            });
            samples.push(stack);
            weights.push(n);
        }
        let end = (p.start + p.duration).as_secs_f64();
        profiles.push(json!({
            "type": "sampled",
            "name": format!("{} {:.2}s-{:.2}s", meta.target, p.start.as_secs_f64(), end),
            "unit": "none",
            "startValue": 0,
            "endValue": p.samples(),
            "samples": samples,
            "weights": weights,
        }));
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
        let bytes = encode(&Meta::default(), &[a.clone(), b], false).unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["$schema"], SCHEMA);
        let frames = v["shared"]["frames"].as_array().unwrap();
        assert!(frames.iter().all(|f| f["name"].is_string()));
        let profiles = v["profiles"].as_array().unwrap();
        assert_eq!(profiles.len(), 2);
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
            assert_eq!(p["endValue"].as_u64().unwrap(), total);
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
}
