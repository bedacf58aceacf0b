//! What live processes' maps said of each file version, kept to name the
//! mappings an exit tells (see [`super::kernel_maps`]).
//!
//! The kernel tells an exiting process's mappings by the inode holding
//! their pages, its modification time and size (a [`VersionKey`]); a live
//! read of `/proc/PID/maps` gave the path, the identity users see and the
//! build id of the same files. One `stat` of the very file mapped
//! (`/proc/PID/map_files/...`) when a file is first named joins the two.
//! The versions learnt are also told to the BPF program (`known_versions`
//! in bpf/mappings.bpf.h): a process of a named executable need not be
//! read at once.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::kernel_maps::{KernelMapping, VersionKey};
use super::maps::Mapping;
use super::query::NAMES_HELD;

/// What a live process's maps said of one file version: the identity and
/// path users see, and the build id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// Device (major, minor) as users see it.
    pub dev: (u32, u32),
    /// Inode as users see it.
    pub inode: u64,
    /// Short build id (see [`super::short_build_id`]); 0 if unknown.
    pub build_id: u64,
    /// Its path.
    pub path: String,
    /// Deleted (or replaced) after it was mapped.
    pub deleted: bool,
}

/// File versions met, bounded: past [`NAMES_HELD`] the table starts again.
#[derive(Default)]
pub struct FileVersions {
    versions: HashMap<VersionKey, Described>,
    /// The path each inode (kernel device, inode) was last named by.
    paths: HashMap<(u32, u64), String>,
    /// Learnt since the last [`FileVersions::take_learnt`] ...
    learnt: Vec<VersionKey>,
    /// ... and whether all before was forgotten first.
    forgotten: bool,
}

impl FileVersions {
    /// Whether the table is full (the next version starts it again).
    pub fn is_full(&self) -> bool {
        self.versions.len() >= NAMES_HELD
    }

    /// Learns the version of `m`, a file mapping of live process `pid`
    /// just named.
    pub fn learn(&mut self, pid: u32, m: &Mapping) {
        let Some((key, _)) = version_at(&m.map_files(pid)) else {
            return;
        };
        self.remember(
            key,
            Described {
                dev: m.dev,
                inode: m.inode,
                build_id: m.build_id,
                path: m.path.clone().unwrap_or_default(),
                deleted: m.deleted,
            },
        );
    }

    /// What is known of the file version `k`'s pages are of: learnt from a
    /// live process, or found at the path an earlier version of the same
    /// inode had (a program rebuilt where its inode is reused) when the
    /// file there is this very version (inode, modification time, size),
    /// its build id then read from it.
    pub fn name(&mut self, k: &KernelMapping) -> Option<Described> {
        let key = k.version();
        if let Some(d) = self.versions.get(&key) {
            return Some(d.clone());
        }
        let path = self.paths.get(&(key.dev, key.inode))?.clone();
        let (found, meta) = version_at(Path::new(&path))?;
        if found != key {
            return None;
        }
        let build_id = blazesym::helper::read_elf_build_id(&path)
            .ok()
            .flatten()
            .map_or(0, |id| super::short_build_id(&id));
        let d = Described {
            dev: (libc::major(meta.dev()), libc::minor(meta.dev())),
            inode: meta.ino(),
            build_id,
            path,
            deleted: false,
        };
        self.remember(key, d.clone());
        Some(d)
    }

    fn remember(&mut self, key: VersionKey, d: Described) {
        if self.is_full() {
            self.forget();
        }
        if !d.deleted {
            self.paths.insert((key.dev, key.inode), d.path.clone());
        }
        self.learnt.push(key);
        self.versions.insert(key, d);
    }

    /// Forgets every version (the table starts again).
    pub fn forget(&mut self) {
        self.versions.clear();
        self.paths.clear();
        self.learnt.clear();
        self.forgotten = true;
    }

    /// The versions learnt since the last call, for the sampler, and
    /// whether everything told before is to be forgotten first: the
    /// sampler must never hold a version this table could not name.
    pub fn take_learnt(&mut self) -> (bool, Vec<VersionKey>) {
        (
            std::mem::take(&mut self.forgotten),
            std::mem::take(&mut self.learnt),
        )
    }
}

/// The version of the file at `path` as the kernel keys it (see
/// bpf/profile.h's `struct version_key`), and its metadata.
pub fn version_at(path: &Path) -> Option<(VersionKey, std::fs::Metadata)> {
    let meta = std::fs::metadata(path).ok()?;
    let key = VersionKey {
        dev: (libc::major(meta.dev()) << 20) | (libc::minor(meta.dev()) & 0xf_ffff),
        inode: meta.ino(),
        mtime_ns: (meta.mtime() as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(meta.mtime_nsec() as u64),
        size: meta.size(),
    };
    Some((key, meta))
}

#[cfg(test)]
mod tests {
    use super::super::kernel_maps::MappingKind;
    use super::*;

    fn file_mapping(key: VersionKey) -> KernelMapping {
        KernelMapping {
            start: 0x1000,
            end: 0x2000,
            offset: 0,
            dev: key.dev,
            inode: key.inode,
            mtime_ns: key.mtime_ns,
            size: key.size,
            kind: MappingKind::File,
        }
    }

    #[test]
    fn a_version_rebuilt_at_a_known_path_is_named_from_the_file_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prog");
        std::fs::copy("/bin/true", &path).unwrap();
        let (now, meta) = version_at(&path).unwrap();
        let mut versions = FileVersions::default();
        // An earlier build of the same inode was named at that path.
        let old = VersionKey {
            mtime_ns: now.mtime_ns - 1,
            ..now
        };
        let path_text = path.to_str().unwrap().to_string();
        versions.remember(
            old,
            Described {
                dev: (1, 2),
                inode: now.inode,
                build_id: 7,
                path: path_text.clone(),
                deleted: false,
            },
        );
        let named = versions.name(&file_mapping(now)).unwrap();
        let want_id = blazesym::helper::read_elf_build_id(&path)
            .unwrap()
            .map_or(0, |id| super::super::short_build_id(&id));
        assert_eq!(named.path, path_text);
        assert_eq!(named.build_id, want_id);
        assert_eq!(named.inode, meta.ino());
        assert!(versions.take_learnt().1.contains(&now));
        // A version the path does not hold (another size) stays unnamed.
        let other = VersionKey {
            size: now.size + 1,
            ..now
        };
        assert_eq!(versions.name(&file_mapping(other)), None);
    }

    #[test]
    fn forgetting_is_told_and_names_nothing_after() {
        let pid = std::process::id();
        let exe = super::super::query::MapsReader::new()
            .read(pid)
            .unwrap()
            .into_iter()
            .find(|m| m.is_file())
            .unwrap();
        let mut versions = FileVersions::default();
        versions.learn(pid, &exe);
        let (forget, learnt) = versions.take_learnt();
        assert!(!forget);
        assert_eq!(learnt.len(), 1);
        let told = file_mapping(learnt[0]);
        assert_eq!(
            versions.name(&told).unwrap().path,
            exe.path.clone().unwrap()
        );
        // Told once.
        assert_eq!(versions.take_learnt(), (false, vec![]));
        versions.forget();
        assert_eq!(versions.take_learnt(), (true, vec![]));
        // Its path is forgotten too: nothing to look at.
        assert_eq!(versions.name(&told), None);
    }
}
