//! Imports other tools' profiles as interval profiles, so they reach the same
//! outputs as a live run: `perf script` text (cut into intervals by
//! timestamp) and folded files (one interval each).

pub mod folded;
pub mod perf_script;

use std::path::Path;

use anyhow::{Context, Result};

use crate::profile::Profile;

/// Whether text looks like `perf script` output (indented frame lines)
/// rather than folded lines.
pub fn is_perf_script(text: &str) -> bool {
    text.lines()
        .take(200)
        .any(|l| l.starts_with('\t') || (l.starts_with("  ") && !l.trim().is_empty()))
}

/// Reads every input in order into consecutive intervals.
pub fn import_files(
    inputs: &[impl AsRef<Path>],
    interval: std::time::Duration,
) -> Result<Vec<Profile>> {
    let mut out: Vec<Profile> = Vec::new();
    for input in inputs {
        let path = input.as_ref();
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let text = String::from_utf8_lossy(&bytes);
        let start = out.last().map(|p| p.start + p.duration).unwrap_or_default();
        let mut profiles = if is_perf_script(&text) {
            perf_script::parse(&text, interval)
                .with_context(|| format!("{}: not usable perf script output", path.display()))?
        } else {
            vec![folded::parse(&text, interval)
                .with_context(|| format!("{}: not usable folded input", path.display()))?]
        };
        for p in &mut profiles {
            p.index += out.len() as u64;
            p.start += start;
        }
        out.extend(profiles);
    }
    Ok(out)
}
