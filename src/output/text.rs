//! profile.py's default multi-line output: the header printed when sampling
//! starts, the report at the end, and its warnings on stderr.

use std::io::Write;

use super::folded::{KERNEL_ANNOTATION, MISSED_KERNEL, MISSED_USER};
use super::StackFormat;
use crate::profile::{LossReport, Profile, Stack};

/// What the header line describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `49 Hertz` or `every 1000 events`.
    pub rate: String,
    /// `all threads`, `PID 12,34` or `TID 5`.
    pub threads: String,
    /// `user + kernel`, `user` or `kernel`.
    pub stacks: String,
    /// `-C`.
    pub cpu: Option<u32>,
    /// Seconds, when a duration was given.
    pub duration: Option<u64>,
}

impl Header {
    /// The line profile.py prints before sampling starts.
    pub fn line(&self) -> String {
        let mut s = format!(
            "Sampling at {} of {} by {} stack",
            self.rate, self.threads, self.stacks
        );
        if let Some(cpu) = self.cpu {
            s.push_str(&format!(" on CPU#{cpu}"));
        }
        match self.duration {
            Some(secs) => s.push_str(&format!(" for {secs} secs.")),
            None => s.push_str("... Hit Ctrl-C to end."),
        }
        s
    }
}

/// Writes a profile in the multi-line format, stacks by ascending count.
pub fn write_text(
    out: &mut impl Write,
    profile: &Profile,
    fmt: &StackFormat,
) -> std::io::Result<()> {
    let mut buf = String::new();
    for (key, n) in profile.sorted() {
        buf.clear();
        if fmt.kernel_stacks {
            match &key.kernel {
                Stack::Missed => line(&mut buf, MISSED_KERNEL, ""),
                Stack::Frames(frames) => {
                    let suffix = if fmt.annotations {
                        KERNEL_ANNOTATION
                    } else {
                        ""
                    };
                    for f in frames {
                        line(&mut buf, f, suffix);
                    }
                }
                Stack::Absent => {}
            }
        }
        if fmt.user_stacks {
            let both =
                matches!(key.user, Stack::Frames(_)) && matches!(key.kernel, Stack::Frames(_));
            if fmt.delimited && both {
                line(&mut buf, "--", "");
            }
            match &key.user {
                Stack::Missed => line(&mut buf, MISSED_USER, ""),
                Stack::Frames(frames) => {
                    for f in frames {
                        line(&mut buf, f, "");
                    }
                }
                Stack::Absent => {}
            }
        }
        buf.push_str(&format!("    {:<16} {} ({})\n", "-", key.comm, key.pid));
        buf.push_str(&format!("        {n}\n\n"));
        out.write_all(buf.as_bytes())?;
    }
    Ok(())
}

fn line(buf: &mut String, frame: &str, suffix: &str) {
    buf.push_str("    ");
    buf.push_str(frame);
    buf.push_str(suffix);
    buf.push('\n');
}

/// Prints profile.py's warnings for what could not be shown, on stderr.
pub fn print_warnings(loss: &LossReport) {
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    for w in super::warnings(loss) {
        let _ = writeln!(err, "{w}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::test_data::{check_golden, formats, sample_profile};

    #[test]
    fn golden_text() {
        let p = sample_profile();
        for (name, fmt) in formats() {
            let mut out = Vec::new();
            write_text(&mut out, &p, &fmt).unwrap();
            check_golden(&format!("text{name}.txt"), &out);
        }
    }

    #[test]
    fn header_variants() {
        let mut h = Header {
            rate: "49 Hertz".into(),
            threads: "all threads".into(),
            stacks: "user + kernel".into(),
            cpu: None,
            duration: Some(2),
        };
        assert_eq!(
            h.line(),
            "Sampling at 49 Hertz of all threads by user + kernel stack for 2 secs."
        );
        h.duration = None;
        h.cpu = Some(1);
        h.rate = "every 1000 events".into();
        h.threads = "PID 12,34".into();
        assert_eq!(
            h.line(),
            "Sampling at every 1000 events of PID 12,34 by user + kernel stack on CPU#1... Hit Ctrl-C to end."
        );
    }

    #[test]
    fn warnings_follow_profile_py() {
        let loss = LossReport {
            missing_stacks: 6,
            stack_collision: true,
            ..Default::default()
        };
        assert_eq!(
            crate::output::warnings(&loss),
            vec!["WARNING: 6 stack traces could not be displayed. Consider increasing --stack-storage-size."]
        );
        let loss = LossReport {
            missing_stacks: 2,
            taken: 10,
            lost_hash_full: 3,
            ..Default::default()
        };
        let w = crate::output::warnings(&loss);
        assert_eq!(w[0], "WARNING: 2 stack traces could not be displayed.");
        assert_eq!(
            w[1],
            "WARNING: hash table full. Consider increasing --hash-storage-size."
        );
    }
}
