//! Executable mappings as the kernel told them when their process exited
//! (bpf/mappings.bpf.h).
//!
//! They say where each mapping was and which version of which file held
//! its pages (the inode, its modification time and size), but not the
//! path, the build id or the identity users see (an overlay's device and
//! inode): [`super::query::MapsReader::resolve`] takes those from what a
//! live process's maps said of the same version.

/// What a mapping is (bpf/profile.h's `enum mapping_kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MappingKind {
    /// Anonymous memory (JIT code).
    Anon,
    /// A file's pages.
    File,
    /// The vDSO.
    Vdso,
    /// Another special mapping with a name (`[uprobes]`).
    Named,
}

impl MappingKind {
    /// The kind a BPF `kind` field says; None for a value it never writes.
    pub fn from_raw(kind: u32) -> Option<MappingKind> {
        Some(match kind {
            0 => MappingKind::Anon,
            1 => MappingKind::File,
            2 => MappingKind::Vdso,
            3 => MappingKind::Named,
            _ => return None,
        })
    }
}

/// One executable mapping, as the kernel held it at the sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelMapping {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// File offset of `start` (0 for anything but a file).
    pub offset: u64,
    /// The kernel's dev_t of the inode holding the pages (major << 20 |
    /// minor).
    pub dev: u32,
    /// That inode.
    pub inode: u64,
    /// Its modification time, in ns since the epoch.
    pub mtime_ns: u64,
    /// Its size in bytes.
    pub size: u64,
    /// What the mapping is.
    pub kind: MappingKind,
}

/// One version of one file: the same key is the same content, as far as
/// the kernel can tell without reading it (a rewrite in place changes the
/// modification time or the size, a rebuild the inode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VersionKey {
    /// Device (the kernel's dev_t).
    pub dev: u32,
    /// Inode.
    pub inode: u64,
    /// Modification time (ns).
    pub mtime_ns: u64,
    /// Size.
    pub size: u64,
}

impl KernelMapping {
    /// The device as (major, minor), as /proc/PID/maps prints it.
    pub fn dev_pair(&self) -> (u32, u32) {
        (self.dev >> 20, self.dev & 0xf_ffff)
    }

    /// The file version the mapping's pages are of.
    pub fn version(&self) -> VersionKey {
        VersionKey {
            dev: self.dev,
            inode: self.inode,
            mtime_ns: self.mtime_ns,
            size: self.size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_splits_as_the_kernel_encodes_it() {
        let m = KernelMapping {
            start: 0,
            end: 4096,
            offset: 0,
            dev: (259 << 20) | 3,
            inode: 7,
            mtime_ns: 1,
            size: 2,
            kind: MappingKind::File,
        };
        assert_eq!(m.dev_pair(), (259, 3));
        assert_eq!(MappingKind::from_raw(2), Some(MappingKind::Vdso));
        assert_eq!(MappingKind::from_raw(9), None);
    }
}
