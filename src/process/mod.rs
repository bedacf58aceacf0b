//! The process model: which binary each sampled address belonged to when
//! the sample was taken.
//!
//! The BPF program numbers address spaces (bpf/profile.h): a process that
//! execs, and every new process (which may reuse an old pid), gets a new
//! number, and each sample carries its process's number. An address space
//! is announced the first time it is sampled, and its executable mappings
//! are read then, on the sampling thread ([`query::MapsReader`]); while it
//! is the process's current one and the process lives (until the BPF exit
//! event says otherwise), a miss (a library loaded since, JIT code) reads
//! them again, at most once per interval. A process gone before its read
//! is named from the mappings its exit event tells
//! ([`kernel_maps::KernelMapping`]). So samples before and after an
//! exec, or of two processes that shared a pid, are looked up in their own
//! maps.
//!
//! What a lookup gives is a file identity (device and inode) and a file
//! offset: symbols are then a property of the file, shared by every process
//! that maps it (see [`crate::symbolizer`]). Address spaces unused for a
//! while are released, so a long run with process churn stays bounded.

pub mod announced;
pub mod executables;
pub mod kernel_maps;
pub mod maps;
pub mod query;
pub mod versions;

use std::path::PathBuf;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use self::maps::Mapping;

/// An address space: a process and which of its address spaces (0: the one
/// it had when profiling started).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AspaceId {
    /// The process id (tgid), as the profiler's pid namespace sees it.
    pub pid: u32,
    /// The address space's number.
    pub aspace: u32,
}

/// A file's identity, whatever path reaches it: its device and inode, and
/// which version of its content was mapped where the kernel says.
///
/// Device and inode alone name a file only while it exists: a file system
/// such as ext4 gives a deleted file's inode to the next file made, so a
/// program rebuilt in place (`gcc -o prog`, `cargo build`) comes back as
/// the same inode with other code, and symbols or unwind tables kept for
/// the old build would be used for the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId {
    /// Device (major, minor).
    pub dev: (u32, u32),
    /// Inode.
    pub inode: u64,
    /// The mapped content's ELF build id, short (see [`short_build_id`]);
    /// 0 when none is known (no build id, the maps read as text on a
    /// kernel before 6.11, or an identity taken from a path).
    pub version: u64,
}

impl FileId {
    /// The device and inode of an opened file, from its metadata (the
    /// version unknown: see [`FileId::same_inode`]).
    pub fn of(meta: &std::fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId {
            dev: (libc::major(meta.dev()), libc::minor(meta.dev())),
            inode: meta.ino(),
            version: 0,
        }
    }

    /// Whether both are the same device and inode (whatever the content).
    pub fn same_inode(&self, other: &FileId) -> bool {
        self.dev == other.dev && self.inode == other.inode
    }

    /// Whether the file at `path`, with metadata `meta`, is this one: the
    /// same device and inode, and (when the mapping's build is known) the
    /// same build; its build id is read only then.
    pub fn is_at(&self, path: &std::path::Path, meta: &std::fs::Metadata) -> bool {
        FileId::of(meta).same_inode(self)
            && (self.version == 0
                || self.holds(
                    blazesym::helper::read_elf_build_id(path)
                        .ok()
                        .flatten()
                        .as_deref(),
                ))
    }

    /// Whether `build_id`, read from a file reached by a path, is the
    /// content this identity's mapping was of (always, when its version is
    /// unknown).
    pub fn holds(&self, build_id: Option<&[u8]>) -> bool {
        self.version == 0 || build_id.map(short_build_id) == Some(self.version)
    }
}

/// An ELF build id in 8 bytes (its first 8, zero-padded; never 0): build
/// ids are hashes, so the first bytes tell builds apart.
pub fn short_build_id(id: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = id.len().min(8);
    b[..n].copy_from_slice(&id[..n]);
    u64::from_le_bytes(b).max(1)
}

/// Where a user address comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A file's code.
    File {
        /// Which file.
        file: FileId,
        /// The address's offset in the file.
        offset: u64,
        /// Its path as the process sees it.
        path: String,
        /// A path that reaches this very file while the process lives
        /// (`/proc/PID/map_files/...`), also when it was deleted, replaced
        /// or is in another mount namespace (a container).
        live_path: Option<PathBuf>,
        /// The mapping: first address, one past the last, file offset of
        /// the first.
        range: (u64, u64, u64),
    },
    /// Memory that is no file's: JIT code (named by a perf map while the
    /// process lives), the vDSO, the heap. `name` is the pseudo name
    /// (`[vdso]`) if it has one.
    Anon {
        /// `[vdso]`, or None (only executable mappings are read).
        name: Option<String>,
        /// The process lives and this is its current address space, so it
        /// can still be asked (its perf map, its vDSO).
        live: bool,
    },
    /// No mapping holds the address, or the address space was never read.
    Unmapped,
}

/// Reads another process's memory (`process_vm_readv`): all of `buf`, or
/// false. One read path for the deferred walker's code bytes and the Python
/// code objects.
pub fn read_memory(pid: u32, addr: u64, buf: &mut [u8]) -> bool {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `local` covers exactly `buf`; the kernel checks `remote`.
    let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    n == buf.len() as isize
}

/// Whether a process still has its address space: it exists and is not a
/// zombie (state `Z`) or dead (`X`).
pub fn has_mappings(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

/// Intervals an address space is kept after it was last sampled.
const KEEP_INTERVALS: u64 = 30;

struct Space {
    /// Shared with the unwinder (one read per announcement).
    maps: Arc<Vec<Mapping>>,
    /// Interval it was last looked up in.
    last_used: u64,
    /// Interval its maps were last read in.
    read_in: Option<u64>,
}

/// Every address space sampled recently, and each process's current one.
#[derive(Default)]
pub struct ProcessModel {
    spaces: FxHashMap<AspaceId, Space>,
    current: FxHashMap<u32, u32>,
    interval: u64,
    /// Address spaces whose process exited (the BPF exit event), with the
    /// interval it was told in: their `/proc` entries are gone, or another
    /// process's.
    exited: FxHashMap<AspaceId, u64>,
    reader: query::MapsReader,
}

impl ProcessModel {
    /// An empty model.
    pub fn new() -> ProcessModel {
        ProcessModel::default()
    }

    /// An address space sampled for the first time, with its executable
    /// mappings as read when it was announced (None if the process was gone
    /// already).
    pub fn seen(&mut self, id: AspaceId, maps: Option<Arc<Vec<Mapping>>>) {
        let cur = self.current.entry(id.pid).or_insert(id.aspace);
        if id.aspace >= *cur {
            *cur = id.aspace;
        }
        let read_in = maps.as_ref().map(|_| self.interval);
        let maps = maps.unwrap_or_default();
        let space = self.spaces.entry(id).or_insert(Space {
            maps: Arc::default(),
            last_used: self.interval,
            read_in: None,
        });
        if !maps.is_empty() {
            space.maps = maps;
            space.read_in = read_in;
        }
    }

    /// A process exited: its maps stay (its samples are still to be
    /// symbolized) but are never read again, and go once no interval can
    /// hold its samples (see [`ProcessModel::end_interval`]).
    pub fn exited(&mut self, id: AspaceId) {
        self.exited.entry(id).or_insert(self.interval);
    }

    /// Whether `id` is its process's current address space and the process
    /// still runs: only then do `/proc/PID/*` describe it.
    fn live(&self, id: AspaceId) -> bool {
        self.current.get(&id.pid).is_none_or(|c| *c == id.aspace) && !self.exited.contains_key(&id)
    }

    /// Where `addr` of `id` comes from.
    pub fn place(&mut self, id: AspaceId, addr: u64) -> Place {
        let interval = self.interval;
        let found = self.lookup(id, addr);
        if found.is_none() && self.live(id) {
            // Not read yet, or a library mapped (dlopen) since: read again,
            // at most once per interval.
            let fresh = self
                .spaces
                .get(&id)
                .is_none_or(|s| s.read_in != Some(interval));
            if fresh {
                let maps = self.reader.read(id.pid);
                self.seen(id, maps.map(Arc::new));
                if let Some(s) = self.spaces.get_mut(&id) {
                    s.read_in = Some(interval);
                }
            }
        }
        let live = self.live(id);
        let Some(space) = self.spaces.get_mut(&id) else {
            return Place::Unmapped;
        };
        space.last_used = interval;
        let Some(m) = maps::find(&space.maps, addr) else {
            return Place::Unmapped;
        };
        if !m.is_file() {
            return Place::Anon {
                name: m.path.clone(),
                live,
            };
        }
        Place::File {
            file: m.file_id(),
            offset: m.file_offset(addr),
            path: m.path.clone().unwrap_or_default(),
            live_path: live.then(|| m.map_files(id.pid)),
            range: (m.start, m.end, m.offset),
        }
    }

    fn lookup(&self, id: AspaceId, addr: u64) -> Option<&Mapping> {
        maps::find(&self.spaces.get(&id)?.maps, addr)
    }

    /// Ends an interval: address spaces not sampled for a while (their
    /// process exec'd, or exited unseen) are released, and those of
    /// processes that exited as soon as no interval can hold their samples.
    ///
    /// An exit told before interval `j` is symbolized was polled at `j`'s
    /// cut at the latest, and the process may have been sampled between
    /// that cut's drain and its exit: its samples are in `j + 1` at the
    /// latest. Under process churn (hundreds of short processes a second)
    /// keeping each for 30 intervals held tens of thousands of them, with
    /// their frames: the profiler's memory grew for 30 s before it levelled.
    pub fn end_interval(&mut self) {
        let ended = self.interval;
        self.interval += 1;
        let now = self.interval;
        let exited = &self.exited;
        self.spaces.retain(|id, s| {
            let done = exited.get(id).is_some_and(|&told| ended > told);
            !done && now.saturating_sub(s.last_used) <= KEEP_INTERVALS
        });
        let spaces = &self.spaces;
        // The exit is remembered a while longer than the space: a sample
        // that came later anyway is then left unnamed, never named from
        // /proc of a process that reused the pid.
        self.exited.retain(|id, told| {
            spaces.contains_key(id) || now.saturating_sub(*told) <= KEEP_INTERVALS
        });
        self.current.retain(|pid, aspace| {
            spaces.contains_key(&AspaceId {
                pid: *pid,
                aspace: *aspace,
            })
        });
    }

    /// Whether `id` is still held (sampled recently).
    pub fn holds(&self, id: AspaceId) -> bool {
        self.spaces.contains_key(&id)
    }

    /// Address spaces held.
    pub fn len(&self) -> usize {
        self.spaces.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.spaces.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const A: &str = "\
5598a0000000-5598a0010000 r-xp 00001000 fd:01 131 /usr/bin/xz
";
    const B: &str = "\
5598a0000000-5598a0010000 r-xp 00000000 fd:01 999 /usr/bin/gzip
";

    #[test]
    fn a_file_identity_tells_builds_of_one_inode_apart() {
        let build = |version| FileId {
            dev: (254, 0),
            inode: 7,
            version,
        };
        let (a, b) = (short_build_id(&[0xaa; 20]), short_build_id(&[0xbb; 20]));
        assert_ne!(a, b);
        assert_ne!(build(a), build(b));
        assert!(build(a).same_inode(&build(b)));
        assert!(build(a).holds(Some(&[0xaa; 20])));
        assert!(!build(a).holds(Some(&[0xbb; 20])));
        assert!(!build(a).holds(None));
        // Unknown version: any content will do.
        assert!(build(0).holds(None) && build(0).holds(Some(&[0xbb; 20])));
        // Short or zero ids still make a version.
        assert_eq!(short_build_id(&[1, 2]), 0x0201);
        assert_eq!(short_build_id(&[0; 20]), 1);
    }

    #[test]
    fn each_address_space_keeps_its_own_maps() {
        let mut m = ProcessModel::new();
        // A pid that does not exist: nothing is read from /proc.
        let pid = u32::MAX - 7;
        let before = AspaceId { pid, aspace: 0 };
        let after = AspaceId { pid, aspace: 5 };
        m.seen(before, Some(Arc::new(maps::parse(A))));
        m.seen(after, Some(Arc::new(maps::parse(B))));
        let name = |p: Place| match p {
            Place::File { path, offset, .. } => (path, offset),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            name(m.place(before, 0x5598a0000010)),
            ("/usr/bin/xz".into(), 0x1010)
        );
        assert_eq!(
            name(m.place(after, 0x5598a0000010)),
            ("/usr/bin/gzip".into(), 0x10)
        );
        assert_eq!(m.place(after, 0x10), Place::Unmapped);
        assert_eq!(
            m.place(AspaceId { pid, aspace: 9 }, 0x5598a0000010),
            Place::Unmapped
        );
    }

    #[test]
    fn zombies_have_no_mappings() {
        assert!(has_mappings(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        // Not reaped yet: a zombie once it has exited.
        let pid = child.id();
        let t = std::time::Instant::now();
        while has_mappings(pid) && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        assert!(!has_mappings(pid));
        child.wait().unwrap();
        assert!(!has_mappings(pid));
    }

    #[test]
    fn unused_spaces_are_released() {
        let mut m = ProcessModel::new();
        let id = |pid| AspaceId { pid, aspace: 0 };
        for pid in 0..100 {
            m.seen(id(u32::MAX - pid), Some(Arc::new(maps::parse(A))));
        }
        for _ in 0..KEEP_INTERVALS {
            m.place(id(u32::MAX), 0x5598a0000010);
            m.end_interval();
        }
        m.end_interval();
        assert_eq!(m.len(), 1, "only the one still sampled stays");
    }

    #[test]
    fn an_exited_space_goes_once_no_interval_can_hold_its_samples() {
        let mut m = ProcessModel::new();
        let id = AspaceId {
            pid: u32::MAX - 1,
            aspace: 3,
        };
        m.seen(id, Some(Arc::new(maps::parse(A))));
        m.end_interval();
        // Told before interval 1: it may still be sampled in 1 and 2.
        m.exited(id);
        assert!(m.holds(id));
        m.end_interval();
        assert!(m.holds(id), "interval 2 may hold its last samples");
        assert!(matches!(m.place(id, 0x5598a0000010), Place::File { .. }));
        m.end_interval();
        assert!(!m.holds(id), "released after interval 2");
        assert!(m.is_empty());
        // Sampled later anyway: not read again from /proc (where another
        // process may have its pid by now).
        assert_eq!(m.place(id, 0x5598a0000010), Place::Unmapped);
        assert!(m.is_empty());
    }
}
