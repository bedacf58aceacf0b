//! The sampling thread's view of each process announced: its maps, read
//! at once or late, or named from what its exit told, or its parent's.
//!
//! An announced address space is read from `/proc/PID/maps`
//! ([`MapsReader`]) while it lives, and what was read is kept until its
//! exit: the exit's own mappings (bpf/mappings.bpf.h) replace it if they
//! are more (it was gone before its read, or read while the dynamic
//! linker was still mapping), named from the file versions live reads met
//! ([`FileVersions`]); a forked child whose read came too late (it exec'd
//! or exited) is given its parent's, which the fork copied.

use std::collections::HashMap;
use std::sync::Arc;

use super::kernel_maps::{KernelMapping, MappingKind, VersionKey};
use super::maps::Mapping;
use super::query::MapsReader;
use super::versions::FileVersions;
use super::AspaceId;

/// Announced address spaces remembered at most (their exits were lost,
/// past it: the table starts again).
const ANNOUNCED_HELD: usize = 8192;

/// How announced address spaces got their mappings (`--stats`).
#[derive(Debug, Clone, Copy, Default)]
pub struct MapsStats {
    /// Reads of `/proc/PID/maps`.
    pub read: u64,
    /// Reads that found the process gone.
    pub gone: u64,
    /// Reads not made: the process's exit had told its mappings already.
    pub skipped: u64,
    /// Address spaces an exec replaced before their maps were read (or
    /// while): not read, or the read dropped.
    pub replaced: u64,
    /// Forked children given their parent's mappings.
    pub inherited: u64,
    /// Processes named from the mappings their exit told.
    pub from_exits: u64,
    /// File mappings of exits left without a path: no live process had
    /// mapped that version of the file.
    pub unnamed: u64,
}

/// The maps of the address spaces announced and alive.
#[derive(Default)]
pub struct ProcessMaps {
    reader: MapsReader,
    versions: FileVersions,
    /// What the read of each live announced address space found.
    announced: HashMap<AspaceId, Option<Arc<Vec<Mapping>>>>,
    stats: MapsStats,
}

impl ProcessMaps {
    /// How address spaces got their mappings so far.
    pub fn stats(&self) -> MapsStats {
        self.stats
    }

    /// The executable mappings of an address space just announced (see
    /// [`MapsReader::read`]), kept until it exits (for its exit, and for
    /// the children it forks). Files named for the first time have their
    /// versions learnt.
    pub fn read_announced(&mut self, id: AspaceId) -> Option<Arc<Vec<Mapping>>> {
        self.stats.read += 1;
        let maps = self.reader.read(id.pid);
        if self.reader.names_forgotten() {
            self.versions.forget();
        }
        if let Some(maps) = &maps {
            for i in self.reader.first_named().to_vec() {
                // Both start again together: a version is learnt when
                // its file is first named.
                if self.versions.is_full() {
                    self.reader.forget_names();
                    self.reader.names_forgotten();
                    self.versions.forget();
                }
                self.versions.learn(id.pid, &maps[i]);
            }
        }
        if maps.as_ref().is_none_or(|m| m.is_empty()) {
            self.stats.gone += 1;
        }
        let maps = maps.map(Arc::new);
        self.keep(id, maps.clone());
        maps
    }

    fn keep(&mut self, id: AspaceId, maps: Option<Arc<Vec<Mapping>>>) {
        if self.announced.len() >= ANNOUNCED_HELD {
            self.announced.clear();
        }
        self.announced.insert(id, maps);
    }

    /// An announced address space not read: its exit, told already,
    /// names it (see [`ProcessMaps::exited`]).
    pub fn skip_read(&mut self, id: AspaceId) {
        self.stats.skipped += 1;
        self.keep(id, None);
    }

    /// An announced address space whose maps were not read, or not kept:
    /// an exec replaced it before (or while) they were read.
    pub fn replaced(&mut self, id: AspaceId) {
        self.stats.replaced += 1;
        self.keep(id, None);
    }

    /// The mappings of a forked child that has not exec'd, and whose own
    /// could not be read (it exec'd or exited since its sample): its
    /// parent's, which the fork copied, if the parent's were read.
    pub fn inherit(&mut self, child: AspaceId, parent: AspaceId) -> Option<Arc<Vec<Mapping>>> {
        let maps = self.announced.get(&parent).cloned().flatten()?;
        self.stats.inherited += 1;
        self.keep(child, Some(maps.clone()));
        Some(maps)
    }

    /// An announced address space exited, its kernel telling its mappings
    /// as it went (`told`): these, named, if they are more than its read
    /// found (it was gone before it could be read, or read while its
    /// libraries were still being mapped), else None.
    pub fn exited(
        &mut self,
        id: AspaceId,
        told: Option<&[KernelMapping]>,
    ) -> Option<Arc<Vec<Mapping>>> {
        let read = self.announced.remove(&id).flatten().map_or(0, |m| m.len());
        let told = told?;
        (told.len() > read).then(|| Arc::new(self.resolve(told)))
    }

    /// Names the mappings the kernel told as a process exited, from the
    /// file versions met (see [`FileVersions::name`]); one never met keeps
    /// only its device and inode (the process is gone: nothing can be
    /// asked of it).
    fn resolve(&mut self, told: &[KernelMapping]) -> Vec<Mapping> {
        self.stats.from_exits += 1;
        told.iter()
            .map(|k| {
                let mut m = Mapping {
                    start: k.start,
                    end: k.end,
                    offset: k.offset,
                    dev: (0, 0),
                    inode: 0,
                    path: None,
                    deleted: false,
                    exec: true,
                    build_id: 0,
                };
                match k.kind {
                    MappingKind::Anon | MappingKind::Named => {}
                    MappingKind::Vdso => m.path = Some("[vdso]".into()),
                    MappingKind::File => match self.versions.name(k) {
                        Some(d) => {
                            m.dev = d.dev;
                            m.inode = d.inode;
                            m.path = Some(d.path);
                            m.deleted = d.deleted;
                            m.build_id = d.build_id;
                        }
                        // Its frames keep no name rather than another
                        // file's.
                        None => {
                            self.stats.unnamed += 1;
                            m.dev = k.dev_pair();
                            m.inode = k.inode;
                        }
                    },
                }
                m
            })
            .collect()
    }

    /// The file versions learnt since the last call, for the sampler (see
    /// bpf/mappings.bpf.h's `known_versions`), and whether everything told
    /// before is to be forgotten first.
    pub fn take_learnt(&mut self) -> (bool, Vec<VersionKey>) {
        self.versions.take_learnt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the exit tracepoint would tell of `maps` (the file fields from
    /// a `stat` of each mapped file).
    fn told(pid: u32, maps: &[Mapping]) -> Vec<KernelMapping> {
        use std::os::unix::fs::MetadataExt;
        maps.iter()
            .map(|m| {
                let mut k = KernelMapping {
                    start: m.start,
                    end: m.end,
                    offset: 0,
                    dev: 0,
                    inode: 0,
                    mtime_ns: 0,
                    size: 0,
                    kind: MappingKind::Anon,
                };
                if m.name() == Some("[vdso]") {
                    k.kind = MappingKind::Vdso;
                } else if m.is_file() {
                    let meta = std::fs::metadata(m.map_files(pid)).unwrap();
                    k.kind = MappingKind::File;
                    k.offset = m.offset;
                    k.dev = (libc::major(meta.dev()) << 20) | libc::minor(meta.dev());
                    k.inode = meta.ino();
                    k.mtime_ns = meta.mtime() as u64 * 1_000_000_000 + meta.mtime_nsec() as u64;
                    k.size = meta.size();
                }
                k
            })
            .collect()
    }

    #[test]
    fn an_exit_names_what_the_read_missed_from_versions_seen_alive() {
        let pid = std::process::id();
        let me = AspaceId { pid, aspace: 1 };
        let mut reader = ProcessMaps::default();
        let live = (*reader.read_announced(me).unwrap()).clone();
        let told = told(pid, &live);
        // Read whole: the exit adds nothing.
        assert_eq!(reader.exited(me, Some(&told)), None);
        // Gone before its read: the exit's mappings, named as the live
        // read named them.
        let gone = AspaceId {
            pid: u32::MAX - 3,
            aspace: 7,
        };
        assert_eq!(reader.read_announced(gone), None);
        assert_eq!(reader.exited(gone, Some(&told)).as_deref(), Some(&live));
        assert_eq!(reader.stats().from_exits, 1);
        // A version no live process showed (rewritten since: another
        // mtime) keeps its identity, not a name.
        let gone = AspaceId { aspace: 8, ..gone };
        assert_eq!(reader.read_announced(gone), None);
        let mut rewritten = told.clone();
        let i = rewritten
            .iter()
            .position(|k| k.kind == MappingKind::File)
            .unwrap();
        rewritten[i].mtime_ns += 1;
        let named = reader.exited(gone, Some(&rewritten)).unwrap();
        assert_eq!(named[i].path, None, "{:?}", named[i]);
        assert_eq!(named[i].inode, live[i].inode);
        assert!(!named[i].is_file());
        assert_eq!(reader.stats().unnamed, 1);
        // An exit that could tell nothing changes nothing.
        assert_eq!(reader.exited(me, None), None);
    }

    #[test]
    fn the_sampler_is_told_each_version_learnt_and_what_is_forgotten() {
        use std::os::unix::fs::MetadataExt;
        let pid = std::process::id();
        let mut reader = ProcessMaps::default();
        let live = reader.read_announced(AspaceId { pid, aspace: 1 }).unwrap();
        let (forget, learnt) = reader.take_learnt();
        assert!(!forget);
        // Our own executable among them, keyed as BPF keys it.
        let exe = std::fs::metadata("/proc/self/exe").unwrap();
        let key = VersionKey {
            dev: (libc::major(exe.dev()) << 20) | libc::minor(exe.dev()),
            inode: exe.ino(),
            mtime_ns: exe.mtime() as u64 * 1_000_000_000 + exe.mtime_nsec() as u64,
            size: exe.size(),
        };
        assert!(learnt.contains(&key), "{key:?} not in {learnt:?}");
        assert_eq!(
            learnt.len(),
            live.iter().filter(|m| m.is_file()).count(),
            "one per file"
        );
        // Told once.
        reader.read_announced(AspaceId { pid, aspace: 2 });
        assert_eq!(reader.take_learnt(), (false, vec![]));
        // The names forgotten (their table full): the versions go with
        // them, the sampler is told to forget too, and an exit can no
        // longer be named from them.
        let told = told(pid, &live);
        reader.reader.forget_names();
        reader.read_announced(AspaceId { pid, aspace: 3 });
        let (forget, relearnt) = reader.take_learnt();
        assert!(forget);
        assert_eq!(relearnt.len(), learnt.len(), "learnt again on this read");
        reader.versions.forget();
        assert_eq!(reader.take_learnt(), (true, vec![]));
        let gone = AspaceId {
            pid: u32::MAX - 3,
            aspace: 9,
        };
        reader.skip_read(gone);
        let named = reader.exited(gone, Some(&told)).unwrap();
        assert!(named.iter().all(|m| !m.is_file()), "{named:?}");
    }

    #[test]
    fn a_forked_child_inherits_what_its_parent_read() {
        let mut reader = ProcessMaps::default();
        let parent = AspaceId {
            pid: std::process::id(),
            aspace: 3,
        };
        let child = AspaceId {
            pid: u32::MAX - 3,
            aspace: 4,
        };
        // Never read: nothing to inherit.
        assert_eq!(reader.inherit(child, parent), None);
        let read = reader.read_announced(parent).unwrap();
        let got = reader.inherit(child, parent).unwrap();
        assert!(Arc::ptr_eq(&read, &got));
        assert_eq!(reader.stats().inherited, 1);
        // What the child holds counts at its exit: an exit telling no
        // more than the fork copied changes nothing.
        let told = told(parent.pid, &read);
        assert_eq!(reader.exited(child, Some(&told)), None);
    }
}
