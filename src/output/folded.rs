//! profile.py's folded format (`-f`): one line per stack,
//! `comm;user root..leaf;[-;]kernel root..leaf count`, the input of
//! flamegraph.pl and inferno. Also used to feed the flame-graph renderers.

use std::io::Write;

use super::{PrintedLines, StackFormat};
use crate::profile::{Profile, Stack, StackKey};

/// Placeholder for a lost user stack.
pub const MISSED_USER: &str = "[Missed User Stack]";
/// Placeholder for a lost kernel stack.
pub const MISSED_KERNEL: &str = "[Missed Kernel Stack]";
/// Suffix of kernel frames with `-a`.
pub const KERNEL_ANNOTATION: &str = "_[k]";

/// What a frame of a folded stack is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// The thread name, at the root.
    Comm,
    /// A user-space frame (or the missed-user-stack placeholder).
    User,
    /// The `-` between user and kernel frames (`-d`).
    Delimiter,
    /// A kernel frame (or the missed-kernel-stack placeholder).
    Kernel,
}

/// Visits the frames of one stack root first, as profile.py's folded output
/// orders them: comm, user root..leaf, `-` (with -d, when both stacks are
/// there), kernel root..leaf. Missed stacks appear as their placeholders.
pub fn for_each_frame(key: &StackKey, fmt: &StackFormat, mut f: impl FnMut(&str, FrameKind)) {
    for_each_part(key, fmt, |part, kind| match part {
        Part::Text(s) => f(s, kind),
        Part::Frame(frame) => f(&frame.display_name(), kind),
    });
}

/// One element of a folded stack, as [`for_each_part`] gives it.
#[derive(Debug, Clone, Copy)]
pub enum Part<'a> {
    /// The comm, the `-` delimiter or a missed-stack marker.
    Text(&'a str),
    /// A frame, not yet named: a caller that caches names by frame (the
    /// flame-graph namer) never formats it again.
    Frame(&'a crate::profile::Frame),
}

/// [`for_each_frame`], with frames given as themselves.
pub fn for_each_part(key: &StackKey, fmt: &StackFormat, mut f: impl FnMut(Part<'_>, FrameKind)) {
    f(Part::Text(&key.comm), FrameKind::Comm);
    if fmt.user_stacks {
        match &key.user {
            Stack::Missed => f(Part::Text(MISSED_USER), FrameKind::User),
            Stack::Frames(frames) => frames
                .iter()
                .rev()
                .for_each(|s| f(Part::Frame(s), FrameKind::User)),
            Stack::Absent => {}
        }
    }
    if fmt.kernel_stacks {
        let both = matches!(key.user, Stack::Frames(_)) && matches!(key.kernel, Stack::Frames(_));
        if fmt.delimited && both {
            f(Part::Text("-"), FrameKind::Delimiter);
        }
        match &key.kernel {
            Stack::Missed => f(Part::Text(MISSED_KERNEL), FrameKind::Kernel),
            Stack::Frames(frames) => frames
                .iter()
                .rev()
                .for_each(|s| f(Part::Frame(s), FrameKind::Kernel)),
            Stack::Absent => {}
        }
    }
}

/// The frames of one stack, root first, as they appear in a folded line
/// (without the count), joined by `;`.
pub fn folded_stack(key: &StackKey, fmt: &StackFormat) -> String {
    let mut line = String::with_capacity(128);
    for_each_frame(key, fmt, |name, kind| {
        if kind != FrameKind::Comm {
            line.push(';');
        }
        line.push_str(name);
        if kind == FrameKind::Kernel && fmt.annotations && name != MISSED_KERNEL {
            line.push_str(KERNEL_ANNOTATION);
        }
    });
    line
}

/// Adds a profile's stacks to `lines` as folded lines. Stacks that fold to
/// the same line (the same functions at other addresses, or other pids of
/// one comm) are one line, as flame-graph tools would merge them anyway.
pub fn add_lines(lines: &mut PrintedLines, profile: &Profile, fmt: &StackFormat) {
    for (key, n) in &profile.counts {
        let markers = u64::from(fmt.user_stacks && key.user == Stack::Missed)
            + u64::from(fmt.kernel_stacks && key.kernel == Stack::Missed);
        lines.add(folded_stack(key, fmt), *n, markers);
    }
}

/// Writes folded lines, by ascending count (ties by line); returns how many
/// `[Missed ... Stack]` markers were printed.
pub fn write_lines(out: &mut impl Write, lines: &PrintedLines) -> std::io::Result<u64> {
    lines.write(out, |n| format!(" {n}\n"))
}

/// Writes a profile in folded format (see [`add_lines`], [`write_lines`]).
pub fn write_folded(
    out: &mut impl Write,
    profile: &Profile,
    fmt: &StackFormat,
) -> std::io::Result<u64> {
    let mut lines = PrintedLines::default();
    add_lines(&mut lines, profile, fmt);
    write_lines(out, &lines)
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
