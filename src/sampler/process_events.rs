//! The records of the `new_tgids` ring (bpf/profile.h's `struct
//! process_seen`): processes announced at their first sample, and exits
//! with the mappings the kernel told as they went.

use super::skel::types;
use crate::process::kernel_maps::{KernelMapping, MappingKind, VersionKey};
use crate::process::AspaceId;

/// What the BPF program tells of a process, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessEvent {
    /// An address space sampled for the first time (or whose maps changed):
    /// its mappings are to be read now, while it lives; before the others
    /// if `at_once` (they may not outlive its next moments: an executable
    /// not named yet, a forked child that may exec). `host_tgid` is its
    /// pid in the kernel's own namespace (see [`Sampler::is_current`]);
    /// `parent`, for a forked child that has not exec'd, the address space
    /// it was copied from.
    Sampled {
        id: AspaceId,
        at_once: bool,
        host_tgid: u32,
        parent: Option<AspaceId>,
    },
    /// A process that was announced exited, with its executable mappings
    /// as it exited (None where the kernel could not tell them): what is
    /// held for it can go once the samples already taken are symbolized.
    Exited(AspaceId, Option<Vec<KernelMapping>>),
}

/// bpf/profile.h's `PROCESS_EXITED` (`process_seen.refresh`).
const PROCESS_EXITED: u32 = 3;
/// bpf/profile.h's `ANNOUNCED_AT_ONCE` (a bit of `process_seen.refresh`).
const ANNOUNCED_AT_ONCE: u32 = 4;
/// bpf/profile.h's `MAPS_UNREAD` (`process_seen.count`).
const MAPS_UNREAD: u32 = u32::MAX;

/// bpf/profile.h's `struct version_key`, as BPF map key bytes.
pub(super) fn version_bytes(k: &VersionKey) -> Vec<u8> {
    let key = types::version_key {
        inode: k.inode,
        mtime_ns: k.mtime_ns,
        size: k.size,
        dev: k.dev,
        pad: 0,
    };
    // SAFETY: plain C struct of integers without padding bytes.
    unsafe { plain::as_bytes(&key) }.to_vec()
}

/// A record of the `new_tgids` ring: its header, then the mappings an
/// exit holds. None for a record too short for what it says.
pub(super) fn parse_process_event(data: &[u8]) -> Option<ProcessEvent> {
    let head_len = std::mem::size_of::<types::process_seen>();
    let mut seen = types::process_seen::default();
    plain::copy_from_bytes(&mut seen, data.get(..head_len)?).ok()?;
    let id = AspaceId {
        pid: seen.tgid,
        aspace: seen.aspace,
    };
    if seen.refresh != PROCESS_EXITED {
        // A refresh (maps changed) is handled as an announcement: the maps
        // are read again either way.
        return Some(ProcessEvent::Sampled {
            id,
            at_once: seen.refresh & ANNOUNCED_AT_ONCE != 0,
            host_tgid: seen.host_tgid,
            parent: (seen.parent_tgid != 0).then_some(AspaceId {
                pid: seen.parent_tgid,
                aspace: seen.parent_aspace,
            }),
        });
    }
    if seen.count == MAPS_UNREAD {
        return Some(ProcessEvent::Exited(id, None));
    }
    let size = std::mem::size_of::<types::process_mapping>();
    let body = data.get(head_len..head_len + seen.count as usize * size)?;
    let mut maps = Vec::with_capacity(seen.count as usize);
    for chunk in body.chunks_exact(size) {
        let mut m = types::process_mapping::default();
        plain::copy_from_bytes(&mut m, chunk).ok()?;
        maps.push(KernelMapping {
            start: m.start,
            end: m.end,
            offset: m.offset,
            dev: m.dev,
            inode: m.inode,
            mtime_ns: m.mtime_ns,
            size: m.size,
            kind: MappingKind::from_raw(m.kind)?,
        });
    }
    Some(ProcessEvent::Exited(id, Some(maps)))
}
