//! This profiler's own BPF programs as kernel symbols, named as
//! `/proc/kallsyms` names them (`bpf_prog_<tag>_<name>`).
//!
//! Under a churn of processes, samples land in the exec, fork and exit
//! tracepoint programs this profiler attaches. Named from here, those
//! addresses keep a run on the boot's copy of the core kernel's symbols
//! (see `symbolizer::kernel_text`) instead of turning it to the whole of
//! `/proc/kallsyms`, which costs ~45 ms to read and ~10 MB to hold.

use std::os::fd::{AsRawFd, BorrowedFd};

use libbpf_rs::libbpf_sys;

/// A kernel symbol: `[start, start + len)` is named `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelSymbol {
    /// First address.
    pub start: u64,
    /// Bytes of code.
    pub len: u64,
    /// The name `/proc/kallsyms` gives it.
    pub name: String,
}

/// The kernel's name for a BPF program of one function: its tag in hex and
/// its function's name (the kernel prefers the name in the program's BTF,
/// which is the C function's; without BTF it takes the 15-byte object
/// name, equal to it when it is that short).
pub fn kallsyms_name(tag: [u8; 8], name: &str) -> Option<String> {
    if name.is_empty() || name.len() > 15 {
        return None;
    }
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("bpf_prog_{hex}_{name}"))
}

/// The code of each of `progs` that the kernel holds as one function (a
/// program with subprograms has a symbol per function, named from BTF:
/// left to `/proc/kallsyms`), with its kallsyms name. Programs whose JIT
/// addresses are hidden (`kptr_restrict`) are left out.
pub fn of_programs<'a>(
    progs: impl Iterator<Item = (&'a str, BorrowedFd<'a>)>,
) -> Vec<KernelSymbol> {
    let mut out = Vec::new();
    for (name, fd) in progs {
        let mut ksym = 0u64;
        let mut len = 0u32;
        let mut info = libbpf_sys::bpf_prog_info {
            nr_jited_ksyms: 1,
            jited_ksyms: &mut ksym as *mut u64 as u64,
            nr_jited_func_lens: 1,
            jited_func_lens: &mut len as *mut u32 as u64,
            ..Default::default()
        };
        let mut size = std::mem::size_of_val(&info) as u32;
        // SAFETY: `info` is a bpf_prog_info of `size` bytes; the kernel
        // writes at most one address and one length, into `ksym` and
        // `len`, which outlive the call.
        let rc =
            unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut size) };
        if rc != 0 || info.nr_jited_ksyms != 1 || ksym == 0 || len == 0 {
            continue;
        }
        if let Some(name) = kallsyms_name(info.tag, name) {
            out.push(KernelSymbol {
                start: ksym,
                len: u64::from(len),
                name,
            });
        }
    }
    out.sort_by_key(|s| s.start);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_kernels() {
        assert_eq!(
            kallsyms_name([0xb7, 0xaf, 0x60, 0x71, 0x03, 0xb2, 0xe4, 0x2f], "on_fork").as_deref(),
            Some("bpf_prog_b7af607103b2e42f_on_fork")
        );
        // Longer names may be the BTF name or the object name cut short:
        // not guessed.
        assert_eq!(kallsyms_name([0; 8], "a_very_long_program_name"), None);
        assert_eq!(kallsyms_name([0; 8], ""), None);
    }
}
