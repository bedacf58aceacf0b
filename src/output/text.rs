//! profile.py's default multi-line output: the header printed when sampling
//! starts, the report at the end, and its warnings on stderr.

use std::fmt::Write as _;
use std::io::Write;

use super::folded::{KERNEL_ANNOTATION, MISSED_KERNEL, MISSED_USER};
use super::{PrintedLines, StackFormat};
use crate::profile::{Frame, LossReport, Profile, Stack, StackKey};

/// What the header line describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `49 Hertz` or `every 1000 events`.
    pub rate: String,
    /// `all threads`, `PID [12, 34]` or `TID [5]`.
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

/// How the multi-line output names frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TextStyle {
    /// `-A`: each frame's address before it (`0x%016x` user, `0x%-16x`
    /// kernel, as upstream prints them).
    pub addresses: bool,
    /// `--bcc-0.26`: names only, and `-a` annotates kernel frames, as bcc
    /// 0.26 printed them. Otherwise frames are `sym+0xoff [module]`, as
    /// upstream's newest profile.py prints them.
    pub names_only: bool,
}

/// Adds a profile's stacks to `lines` as multi-line records (without their
/// count). Stacks that print the same lines are one record (with offsets
/// shown, the same function at two addresses prints differently).
pub fn add_records(
    lines: &mut PrintedLines,
    profile: &Profile,
    fmt: &StackFormat,
    style: TextStyle,
) {
    for (key, n) in &profile.counts {
        let (text, markers) = record(key, fmt, style);
        lines.add(text, *n, markers);
    }
}

/// Writes records, by ascending count, each with its count line and a blank
/// line; returns how many `[Missed ... Stack]` markers were printed.
pub fn write_records(out: &mut impl Write, lines: &PrintedLines) -> std::io::Result<u64> {
    lines.write(out, |n| format!("        {n}\n\n"))
}

/// Writes a profile in the multi-line format (see [`add_records`],
/// [`write_records`]).
pub fn write_text(
    out: &mut impl Write,
    profile: &Profile,
    fmt: &StackFormat,
    style: TextStyle,
) -> std::io::Result<u64> {
    let mut lines = PrintedLines::default();
    add_records(&mut lines, profile, fmt, style);
    write_records(out, &lines)
}

/// One record's lines, without its count, and its number of markers.
fn record(key: &StackKey, fmt: &StackFormat, style: TextStyle) -> (String, u64) {
    let mut buf = String::new();
    let mut markers = 0;
    if fmt.kernel_stacks {
        match &key.kernel {
            Stack::Missed => {
                markers += 1;
                line(&mut buf, MISSED_KERNEL, "");
            }
            Stack::Frames(frames) => {
                for f in frames {
                    frame_line(&mut buf, f, true, fmt, style);
                }
            }
            Stack::Absent => {}
        }
    }
    if fmt.user_stacks {
        let both = matches!(key.user, Stack::Frames(_)) && matches!(key.kernel, Stack::Frames(_));
        if fmt.delimited && both && fmt.kernel_stacks {
            line(&mut buf, "--", "");
        }
        match &key.user {
            Stack::Missed => {
                markers += 1;
                line(&mut buf, MISSED_USER, "");
            }
            Stack::Frames(frames) => {
                for f in frames {
                    frame_line(&mut buf, f, false, fmt, style);
                }
            }
            Stack::Absent => {}
        }
    }
    let _ = writeln!(buf, "    {:<16} {} ({})", "-", key.comm, key.pid);
    (buf, markers)
}

/// `    sym+0xoff [module]`, or with `-A` the address first.
fn frame_line(buf: &mut String, f: &Frame, kernel: bool, fmt: &StackFormat, style: TextStyle) {
    if style.names_only {
        let suffix = if kernel && fmt.annotations {
            KERNEL_ANNOTATION
        } else {
            ""
        };
        return line(buf, f, suffix);
    }
    buf.push_str("    ");
    let info = f.info();
    if style.addresses {
        let addr = info.addr.unwrap_or(0);
        if kernel {
            let _ = write!(buf, "0x{addr:<16x} ");
        } else {
            let _ = write!(buf, "0x{addr:016x} ");
        }
    }
    buf.push_str(&info.name);
    if let Some(off) = info.offset {
        let _ = write!(buf, "+0x{off:x}");
    }
    if let Some(m) = &info.module {
        let _ = write!(buf, " [{m}]");
    }
    buf.push('\n');
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
        let styles = [
            ("", TextStyle::default()),
            (
                "_-A",
                TextStyle {
                    addresses: true,
                    names_only: false,
                },
            ),
            (
                "_bcc-0.26",
                TextStyle {
                    addresses: false,
                    names_only: true,
                },
            ),
        ];
        for (style_name, style) in styles {
            for (name, fmt) in formats() {
                let mut out = Vec::new();
                write_text(&mut out, &p, &fmt, style).unwrap();
                check_golden(&format!("text{style_name}{name}.txt"), &out);
            }
        }
    }

    #[test]
    fn same_lines_merge_other_offsets_do_not() {
        let at = |off: u64| {
            Stack::Frames(vec![Frame::new(crate::profile::FrameInfo {
                name: "burn".into(),
                module: Some("wl".into()),
                offset: Some(off),
                addr: Some(0x1000 + off),
                source: None,
                mapping: None,
            })])
        };
        let key = |user| StackKey {
            comm: "wl".into(),
            pid: 7,
            user,
            kernel: Stack::Absent,
        };
        let mut p = Profile::default();
        p.add(key(at(0x30)), 2);
        p.add(key(at(0x39)), 1);
        let fmt = StackFormat {
            kernel_stacks: false,
            ..Default::default()
        };
        let text = |style| {
            let mut out = Vec::new();
            write_text(&mut out, &p, &fmt, style).unwrap();
            String::from_utf8(out).unwrap()
        };
        let t = text(TextStyle::default());
        assert_eq!(t.matches("burn+0x").count(), 2, "{t}");
        assert!(t.contains("    burn+0x30 [wl]\n"), "{t}");
        let t = text(TextStyle {
            addresses: true,
            names_only: false,
        });
        assert!(t.contains("    0x0000000000001030 burn+0x30 [wl]\n"), "{t}");
        // Names only: both print "burn", so one record of 3.
        let t = text(TextStyle {
            addresses: false,
            names_only: true,
        });
        assert_eq!(t, "    burn\n    -                wl (7)\n        3\n\n");
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
        h.threads = "PID [12, 34]".into();
        assert_eq!(
            h.line(),
            "Sampling at every 1000 events of PID [12, 34] by user + kernel stack on CPU#1... Hit Ctrl-C to end."
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
