//! profile.py's folded format (`-f`): one line per stack,
//! `comm;user root..leaf;[-;]kernel root..leaf count`, the input of
//! flamegraph.pl and inferno. Also used to feed the flame-graph renderers.

use std::fmt::Write as _;
use std::io::Write;

use super::StackFormat;
use crate::profile::{Profile, Stack, StackKey};

/// Placeholder for a lost user stack.
pub const MISSED_USER: &str = "[Missed User Stack]";
/// Placeholder for a lost kernel stack.
pub const MISSED_KERNEL: &str = "[Missed Kernel Stack]";
/// Suffix of kernel frames with `-a`.
pub const KERNEL_ANNOTATION: &str = "_[k]";

/// The frames of one stack, root first, as they appear in a folded line
/// (without the count), joined by `;`.
pub fn folded_stack(key: &StackKey, fmt: &StackFormat) -> String {
    let mut line = String::with_capacity(128);
    line.push_str(&key.comm);
    if fmt.user_stacks {
        match &key.user {
            Stack::Missed => {
                line.push(';');
                line.push_str(MISSED_USER);
            }
            Stack::Frames(frames) => {
                for f in frames.iter().rev() {
                    line.push(';');
                    line.push_str(f);
                }
            }
            Stack::Absent => {}
        }
    }
    if fmt.kernel_stacks {
        let both = matches!(key.user, Stack::Frames(_)) && matches!(key.kernel, Stack::Frames(_));
        if fmt.delimited && both {
            line.push_str(";-");
        }
        match &key.kernel {
            Stack::Missed => {
                line.push(';');
                line.push_str(MISSED_KERNEL);
            }
            Stack::Frames(frames) => {
                for f in frames.iter().rev() {
                    line.push(';');
                    line.push_str(f);
                    if fmt.annotations {
                        line.push_str(KERNEL_ANNOTATION);
                    }
                }
            }
            Stack::Absent => {}
        }
    }
    line
}

/// Writes a profile in folded format, stacks by ascending count.
pub fn write_folded(
    out: &mut impl Write,
    profile: &Profile,
    fmt: &StackFormat,
) -> std::io::Result<()> {
    let mut buf = String::new();
    for (key, n) in profile.sorted() {
        buf.clear();
        buf.push_str(&folded_stack(key, fmt));
        let _ = writeln!(buf, " {n}");
        out.write_all(buf.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::test_data::sample_profile;

    #[test]
    fn golden_folded() {
        let p = sample_profile();
        for (name, fmt) in crate::output::test_data::formats() {
            let mut out = Vec::new();
            write_folded(&mut out, &p, &fmt).unwrap();
            crate::output::test_data::check_golden(&format!("folded{name}.txt"), &out);
        }
    }
}
