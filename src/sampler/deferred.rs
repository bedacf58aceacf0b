//! The samples the BPF program deferred (`deferred_stacks`): a process's
//! first samples, taken before its unwind tables were in the kernel, sent
//! whole (registers and the top of the user stack) so that user space walks
//! them once the tables are built (see [`crate::unwind::deferred`]).
//!
//! The sampler reads the ring buffer as records arrive (so it never fills
//! while an interval lasts) and keeps them by generation; a drain takes the
//! ones of the generation it drains, after the programs on it finished.

use crate::unwind::deferred::{DeferredStack, UserRegs};

/// Bytes of `struct deferred_stack`'s header (bpf/profile.h).
pub const HEADER_BYTES: usize = 80;

/// One deferred sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeferredSample {
    /// Its number among the run's deferred samples (the unwinder's walk of
    /// its stack is joined back by it).
    pub seq: u64,
    /// Process (thread group) id.
    pub tgid: u32,
    /// Which address space of the process.
    pub aspace: u32,
    /// The map generation (interval) the sample belongs to.
    pub generation: u32,
    /// As in the counts key: -errno, unless `kernel_stack_hash` is set.
    pub kernel_stack_id: i32,
    /// As in the counts key: the kernel stack's hash, or 0.
    pub kernel_stack_hash: u64,
    /// As in the counts key: the Python frames' hash, or 0.
    pub python_stack_hash: u64,
    /// Thread name.
    pub comm: String,
    /// The user registers.
    pub regs: UserRegs,
    /// The user stack from `regs.sp` up; None once handed to the unwinder
    /// ([`DeferredSample::take_stack`]).
    pub stack: Option<Vec<u8>>,
}

impl DeferredSample {
    /// What the unwinder needs to walk the user stack, if not taken yet.
    pub fn take_stack(&mut self) -> Option<DeferredStack> {
        Some(DeferredStack {
            seq: self.seq,
            tgid: self.tgid,
            aspace: self.aspace,
            regs: self.regs,
            stack: self.stack.take()?,
        })
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Parses one ring-buffer record; None if it is shorter than it says.
pub fn parse(b: &[u8]) -> Option<DeferredSample> {
    if b.len() < HEADER_BYTES {
        return None;
    }
    let len = u32_at(b, 72) as usize;
    let stack = b.get(HEADER_BYTES..HEADER_BYTES.checked_add(len)?)?;
    let comm: Vec<u8> = b[16..32].iter().copied().take_while(|c| *c != 0).collect();
    Some(DeferredSample {
        seq: 0,
        tgid: u32_at(b, 0),
        aspace: u32_at(b, 4),
        generation: u32_at(b, 8),
        kernel_stack_id: u32_at(b, 12) as i32,
        comm: String::from_utf8_lossy(&comm).into_owned(),
        kernel_stack_hash: u64_at(b, 32),
        python_stack_hash: u64_at(b, 40),
        regs: UserRegs {
            ip: u64_at(b, 48),
            sp: u64_at(b, 56),
            bp: u64_at(b, 64),
        },
        stack: Some(stack.to_vec()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::skel::types;

    #[test]
    fn the_header_matches_the_c_layout() {
        assert_eq!(
            std::mem::size_of::<types::deferred_stack>(),
            HEADER_BYTES + types::unwind_consts::UNWIND_DEFER_BYTES.0 as usize
        );
        // Every per-CPU array value is at most 32 KB.
        assert!(std::mem::size_of::<types::deferred_stack>() <= 32768);
    }

    #[test]
    fn parses_a_record_and_refuses_a_short_one() {
        let mut b = vec![0u8; HEADER_BYTES];
        b[0..4].copy_from_slice(&42u32.to_ne_bytes());
        b[4..8].copy_from_slice(&3u32.to_ne_bytes());
        b[8..12].copy_from_slice(&1u32.to_ne_bytes());
        b[12..16].copy_from_slice(&(-14i32).to_ne_bytes());
        b[16..20].copy_from_slice(b"xz\0\0");
        b[32..40].copy_from_slice(&5u64.to_ne_bytes());
        b[40..48].copy_from_slice(&6u64.to_ne_bytes());
        b[48..56].copy_from_slice(&0x1000u64.to_ne_bytes());
        b[56..64].copy_from_slice(&0x7ff0u64.to_ne_bytes());
        b[64..72].copy_from_slice(&7u64.to_ne_bytes());
        b[72..76].copy_from_slice(&16u32.to_ne_bytes());
        b.extend_from_slice(&[9u8; 16]);
        let s = parse(&b).unwrap();
        assert_eq!((s.tgid, s.aspace, s.generation), (42, 3, 1));
        assert_eq!((s.kernel_stack_id, s.kernel_stack_hash), (-14, 5));
        assert_eq!(s.python_stack_hash, 6);
        assert_eq!(s.comm, "xz");
        assert_eq!(
            s.regs,
            UserRegs {
                ip: 0x1000,
                sp: 0x7ff0,
                bp: 7
            }
        );
        assert_eq!(s.stack, Some(vec![9u8; 16]));
        assert_eq!(parse(&b[..HEADER_BYTES + 8]), None, "cut short");
        assert_eq!(parse(&b[..10]), None);
    }
}
