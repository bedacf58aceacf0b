//! `perf script` output of a `perf record -g` capture: one block per sample,
//! a header line (`comm pid [cpu] timestamp: period event:`) then one line per
//! frame, leaf first (`addr symbol+off (dso)`). Samples are cut into
//! intervals by timestamp.

use std::time::Duration;

use anyhow::{bail, Result};

use crate::profile::{Frame, FrameInfo, Profile, Stack, StackKey, Symbol};

/// x86-64 kernel addresses start here: frames at or above it are kernel frames.
const KERNEL_START: u64 = 0xffff_8000_0000_0000;

/// Parses `perf script` text into intervals of `interval`.
pub fn parse(text: &str, interval: Duration) -> Result<Vec<Profile>> {
    let step = interval.as_secs_f64();
    if step <= 0.0 {
        bail!("the interval must be positive");
    }
    let mut out: Vec<Profile> = Vec::new();
    let mut t0 = None;
    let mut lines = text.lines().enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((comm, pid, time)) = header(line) else {
            bail!("line {}: not a sample header: {line:?}", n + 1);
        };
        let mut user = Vec::new();
        let mut kernel = Vec::new();
        while let Some((_, frame)) = lines.peek() {
            if frame.trim().is_empty() || !frame.starts_with(char::is_whitespace) {
                break;
            }
            let (addr, sym) = frame_line(frame);
            if addr >= KERNEL_START {
                kernel.push(sym);
            } else {
                user.push(sym);
            }
            lines.next();
        }
        let t0 = *t0.get_or_insert(time);
        let index = ((time - t0).max(0.0) / step) as usize;
        while out.len() <= index {
            let i = out.len() as u64;
            out.push(Profile {
                index: i,
                start: Duration::from_secs_f64(step * i as f64),
                duration: interval,
                ..Default::default()
            });
        }
        let part = |v: Vec<Frame>| {
            if v.is_empty() {
                Stack::Absent
            } else {
                Stack::Frames(v)
            }
        };
        let p = &mut out[index];
        p.add(
            StackKey {
                comm,
                pid,
                user: part(user),
                kernel: part(kernel),
            },
            1,
        );
        p.loss.taken += 1;
        p.loss.counted += 1;
    }
    if out.is_empty() {
        bail!("no samples found");
    }
    Ok(out)
}

/// `comm pid[/tid] [cpu] 1234.567890: ...` -> (comm, pid, seconds). The comm
/// may contain spaces, so the line is read from the timestamp backwards.
fn header(line: &str) -> Option<(String, u32, f64)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let ti = words.iter().position(|w| {
        w.ends_with(':')
            && w[..w.len() - 1].contains('.')
            && w[..w.len() - 1].parse::<f64>().is_ok()
    })?;
    let time: f64 = words[ti].trim_end_matches(':').parse().ok()?;
    let mut i = ti;
    if i > 0 && words[i - 1].starts_with('[') && words[i - 1].ends_with(']') {
        i -= 1;
    }
    if i == 0 {
        return None;
    }
    let pid: u32 = words[i - 1].split('/').next()?.parse().ok()?;
    let comm = words[..i - 1].join(" ");
    Some((comm, pid, time))
}

/// `\t    ffffffff81000000 do_syscall_64+0x56 ([kernel.kallsyms])` ->
/// (address, frame with its name, offset and module).
fn frame_line(line: &str) -> (u64, Frame) {
    let line = line.trim();
    let (addr, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let addr = u64::from_str_radix(addr, 16).unwrap_or(0);
    let rest = rest.trim();
    let (sym, dso) = match rest.rfind(" (") {
        Some(i) if rest.ends_with(')') => (&rest[..i], Some(&rest[i + 2..rest.len() - 1])),
        _ => (rest, None),
    };
    let (sym, offset) = match sym.rfind("+0x") {
        Some(i) => (&sym[..i], u64::from_str_radix(&sym[i + 3..], 16).ok()),
        None => (sym, None),
    };
    let sym = if sym.is_empty() { "[unknown]" } else { sym };
    let module = dso.filter(|d| *d != "[unknown]").map(|d| {
        if d == "[kernel.kallsyms]" {
            Symbol::from("kernel")
        } else {
            Symbol::from(d.rsplit('/').next().unwrap_or(d))
        }
    });
    let frame = Frame::new(FrameInfo {
        name: Symbol::from(sym),
        module,
        offset,
        addr: Some(addr),
    });
    (addr, frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "\
workload 4242 [001] 100.000100:   10101010 cpu-clock:ppp: 
\t    55d1c0001139 alpha+0x19 (/tmp/workload)
\t    55d1c00011f0 driver+0x40 (/tmp/workload)
\t    55d1c0001050 main+0x20 (/tmp/workload)

my worker 4243/4250 [000] 100.600000:   10101010 cpu-clock:ppp: 
\tffffffff8a0c1234 do_syscall_64+0x56 ([kernel.kallsyms])
\t    7f0000001000 [unknown] ([unknown])

workload 4242 [001] 101.200000:   10101010 cpu-clock:ppp: 
\t    55d1c0001180 beta+0x9 (/tmp/workload)
";

    #[test]
    fn parses_samples_into_intervals() {
        let ps = parse(SCRIPT, Duration::from_millis(500)).unwrap();
        assert_eq!(ps.len(), 3);
        assert_eq!(ps[0].samples(), 1);
        assert_eq!(ps[1].samples(), 1);
        assert_eq!(ps[2].samples(), 1);
        let (k, _) = ps[0].counts.iter().next().unwrap();
        assert_eq!(k.comm, "workload");
        assert_eq!(k.pid, 4242);
        assert_eq!(k.user.names(), ["alpha", "driver", "main"]);
        let Stack::Frames(f) = &k.user else { panic!() };
        assert_eq!(f[0].info().module.as_deref(), Some("workload"));
        assert_eq!(f[0].info().offset, Some(0x19));
        assert_eq!(f[0].info().addr, Some(0x55d1c0001139));
        let (k, _) = ps[1].counts.iter().next().unwrap();
        assert_eq!(k.comm, "my worker");
        assert_eq!(k.pid, 4243);
        assert_eq!(k.kernel.names(), ["do_syscall_64"]);
        assert_eq!(k.user.names(), ["[unknown]"]);
        assert_eq!(ps[2].start, Duration::from_secs(1));
    }

    #[test]
    fn rejects_other_text() {
        assert!(parse("hello\n\tworld", Duration::from_secs(1)).is_err());
        assert!(parse("", Duration::from_secs(1)).is_err());
    }
}
