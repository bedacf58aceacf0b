//! Opens one CPU-clock perf event per profiled CPU. The BPF program is
//! attached to each; the event's fd is handed over raw because the perf link
//! takes ownership of it (closing it ourselves would double-close).

use std::fs;
use std::io;

use anyhow::{bail, Context, Result};
use perf_event_open_sys as sys;

/// How often the perf event fires: profile.py's `-F` or `-c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleRate {
    /// Samples per second per CPU (`-F`).
    Frequency(u64),
    /// One sample every N CPU-clock events (nanoseconds) (`-c`).
    Period(u64),
}

/// Opens a CPU-clock sampling event on `cpu` for every task and returns its fd.
pub fn open_cpu_clock(cpu: u32, rate: SampleRate) -> Result<i32> {
    let mut attr = sys::bindings::perf_event_attr {
        type_: sys::bindings::PERF_TYPE_SOFTWARE,
        size: std::mem::size_of::<sys::bindings::perf_event_attr>() as u32,
        config: sys::bindings::PERF_COUNT_SW_CPU_CLOCK as u64,
        ..Default::default()
    };
    match rate {
        SampleRate::Frequency(hz) => {
            attr.set_freq(1);
            attr.__bindgen_anon_1.sample_freq = hz;
        }
        SampleRate::Period(n) => attr.__bindgen_anon_1.sample_period = n,
    }
    // SAFETY: attr is a valid, fully initialised perf_event_attr.
    let fd = unsafe {
        sys::perf_event_open(
            &mut attr,
            -1,
            cpu as i32,
            -1,
            sys::bindings::PERF_FLAG_FD_CLOEXEC as _,
        )
    };
    if fd < 0 {
        let err = io::Error::last_os_error();
        let hint = match err.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) => {
                "; run as root or grant CAP_PERFMON (see /proc/sys/kernel/perf_event_paranoid)"
            }
            Some(libc::EINVAL) => {
                "; the sampling frequency may exceed kernel.perf_event_max_sample_rate"
            }
            _ => "",
        };
        bail!("failed to open a CPU-clock perf event on CPU {cpu}: {err}{hint}");
    }
    Ok(fd)
}

/// The online CPUs, from /sys/devices/system/cpu/online (e.g. "0-3,5").
pub fn online_cpus() -> Result<Vec<u32>> {
    const PATH: &str = "/sys/devices/system/cpu/online";
    let text = fs::read_to_string(PATH).with_context(|| format!("failed to read {PATH}"))?;
    parse_cpu_list(text.trim()).with_context(|| format!("failed to parse {PATH}: {text:?}"))
}

/// Parses the kernel's CPU list syntax: comma-separated numbers and ranges.
pub fn parse_cpu_list(text: &str) -> Result<Vec<u32>> {
    let mut cpus = Vec::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse()?, b.parse()?);
                if b < a {
                    bail!("range {part} runs backwards");
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse()?),
        }
    }
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0").unwrap(), vec![0]);
        assert_eq!(
            parse_cpu_list("0-3,6,8-9").unwrap(),
            vec![0, 1, 2, 3, 6, 8, 9]
        );
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("x").is_err());
    }
}
