//! Folded files (`comm;frame;...;leaf count`, as flamegraph.pl reads): one
//! interval each. The first frame is the comm; frames with profile.py's
//! `_[k]` annotation are kernel frames; `-` delimiters are dropped.

use std::time::Duration;

use anyhow::{bail, Result};

use crate::output::folded::KERNEL_ANNOTATION;
use crate::profile::{Frame, Profile, Stack, StackKey};

/// Parses folded text as one interval of length `duration`.
pub fn parse(text: &str, duration: Duration) -> Result<Profile> {
    let mut p = Profile {
        duration,
        ..Default::default()
    };
    for (i, line) in text.lines().enumerate() {
        add_line(&mut p, line, i as u64 + 1)?;
    }
    Ok(p)
}

/// Adds one folded line (`comm;frame;...;leaf count`) to `p`: its counts,
/// and as many samples taken and counted. Blank lines are skipped.
pub fn add_line(p: &mut Profile, line: &str, line_no: u64) -> Result<()> {
    let line = line.trim_end();
    if line.is_empty() {
        return Ok(());
    }
    let Some((stack, count)) = line.rsplit_once(' ') else {
        bail!("line {line_no}: no count: {}", super::quote(line));
    };
    let Ok(count) = count.parse::<u64>() else {
        bail!("line {line_no}: bad count {}", super::quote(count));
    };
    let Some(taken) = p.loss.taken.checked_add(count) else {
        bail!(
            "line {line_no}: the counts add up to more than {} (a count that can't be right)",
            u64::MAX
        );
    };
    let mut frames = stack.split(';');
    let comm = frames.next().unwrap_or_default().to_string();
    let (mut user, mut kernel) = (Vec::new(), Vec::new());
    for f in frames.filter(|f| *f != "-" && !f.is_empty()) {
        match f.strip_suffix(KERNEL_ANNOTATION) {
            Some(k) => kernel.push(Frame::from(k)),
            None => user.push(Frame::from(f)),
        }
    }
    user.reverse();
    kernel.reverse();
    let part = |v: Vec<Frame>| {
        if v.is_empty() {
            Stack::Absent
        } else {
            Stack::Frames(v)
        }
    };
    p.add(
        StackKey {
            comm,
            pid: 0,
            user: part(user),
            kernel: part(kernel),
        },
        count,
    );
    p.loss.taken = taken;
    p.loss.counted = taken;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_profile_py_folded() {
        let p = parse(
            "dd;__read;-;entry_SYSCALL_64_after_hwframe_[k];read_zero_[k] 70\ndd;__read 3\n\n",
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(p.samples(), 73);
        let key = p.counts.keys().find(|k| k.kernel != Stack::Absent).unwrap();
        assert_eq!(key.comm, "dd");
        assert_eq!(
            key.kernel,
            Stack::Frames(vec![
                Frame::from("read_zero"),
                Frame::from("entry_SYSCALL_64_after_hwframe")
            ])
        );
        assert!(parse("no count here", Duration::ZERO).is_err());
        let over = format!("a;b {}\na;c 2\n", u64::MAX);
        let err = parse(&over, Duration::ZERO).unwrap_err().to_string();
        assert!(err.starts_with("line 2: the counts add up"), "{err}");
        let long = format!("a;{} x", "f".repeat(10_000));
        let err = parse(&long, Duration::ZERO).unwrap_err().to_string();
        assert!(err.len() < 120, "{err}");
        assert!(parse("a;b x", Duration::ZERO).is_err());
    }
}
