//! Opens one sampling perf event per profiled CPU (cpu-cycles, else
//! cpu-clock). The BPF program is
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
    /// One sample every N events (`-c`): cycles, or nanoseconds of CPU clock.
    Period(u64),
}

/// The event that drives sampling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleEvent {
    /// PERF_COUNT_HW_CPU_CYCLES: what upstream profile.py tries first.
    CpuCycles,
    /// PERF_COUNT_SW_CPU_CLOCK: the fallback where there is no PMU (VMs).
    CpuClock,
}

impl SampleEvent {
    /// perf's name for it.
    pub fn name(self) -> &'static str {
        match self {
            SampleEvent::CpuCycles => "cpu-cycles",
            SampleEvent::CpuClock => "cpu-clock",
        }
    }
}

/// Opens the sampling event on `cpu` for every task, as upstream profile.py
/// does: cpu-cycles where the hardware counts them, else cpu-clock. Returns
/// the fd and which event it is.
pub fn open_sampling_event(cpu: u32, rate: SampleRate) -> Result<(i32, SampleEvent)> {
    match open_event(cpu, rate, SampleEvent::CpuCycles) {
        Ok(fd) => Ok((fd, SampleEvent::CpuCycles)),
        // No PMU, or one that does not count cycles (ENOENT, EOPNOTSUPP,
        // ENODEV, EINVAL): fall back. Permission errors are the same for
        // both, so the fallback reports them.
        Err(_) => open_event(cpu, rate, SampleEvent::CpuClock)
            .map(|fd| (fd, SampleEvent::CpuClock))
            .map_err(|err| describe(err, cpu)),
    }
}

/// Opens `event` on `cpu`, or the OS error.
fn open_event(cpu: u32, rate: SampleRate, event: SampleEvent) -> io::Result<i32> {
    let (type_, config) = match event {
        SampleEvent::CpuCycles => (
            sys::bindings::PERF_TYPE_HARDWARE,
            sys::bindings::PERF_COUNT_HW_CPU_CYCLES as u64,
        ),
        SampleEvent::CpuClock => (
            sys::bindings::PERF_TYPE_SOFTWARE,
            sys::bindings::PERF_COUNT_SW_CPU_CLOCK as u64,
        ),
    };
    let mut attr = sys::bindings::perf_event_attr {
        type_,
        size: std::mem::size_of::<sys::bindings::perf_event_attr>() as u32,
        config,
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
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn describe(err: io::Error, cpu: u32) -> anyhow::Error {
    let hint = match err.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) => {
            "; run as root or grant CAP_PERFMON (see /proc/sys/kernel/perf_event_paranoid)"
        }
        Some(libc::EINVAL) => {
            "; the sampling frequency may exceed kernel.perf_event_max_sample_rate"
        }
        _ => "",
    };
    anyhow::anyhow!("failed to open a perf event on CPU {cpu}: {err}{hint}")
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
