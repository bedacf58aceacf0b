//! Reads a process's executable mappings, the cheap way where the kernel
//! has it.
//!
//! A busy machine starts hundreds of processes a second, and each one that
//! is sampled has its mappings read while it lives. Reading
//! `/proc/PID/maps` as text makes the kernel format every mapping and build
//! every path (`d_path`): measured, a third of the profiler's CPU under
//! process churn. Since Linux 6.11 the same file answers the
//! `PROCMAP_QUERY` ioctl: "the next executable mapping at or after this
//! address", in binary, with its path only when asked. Samples only land in
//! executable code, so only those mappings are asked for, and a path only
//! for a file (device, inode) this reader has not named before. Older
//! kernels get the text, parsed and filtered the same way.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use super::kernel_maps::{KernelMapping, MappingKind, VersionKey};
use super::maps::{self, Mapping};
use super::{AspaceId, FileId};

/// `struct procmap_query` (include/uapi/linux/fs.h).
#[repr(C)]
#[derive(Default)]
struct ProcmapQuery {
    size: u64,
    query_flags: u64,
    query_addr: u64,
    vma_start: u64,
    vma_end: u64,
    vma_flags: u64,
    vma_page_size: u64,
    vma_offset: u64,
    inode: u64,
    dev_major: u32,
    dev_minor: u32,
    vma_name_size: u32,
    build_id_size: u32,
    vma_name_addr: u64,
    build_id_addr: u64,
}

/// `_IOWR('f', 17, struct procmap_query)`.
const PROCMAP_QUERY: libc::c_ulong = 0xC000_0000
    | ((std::mem::size_of::<ProcmapQuery>() as libc::c_ulong) << 16)
    | ((b'f' as libc::c_ulong) << 8)
    | 17;
const QUERY_VMA_EXECUTABLE: u64 = 0x04;
const QUERY_COVERING_OR_NEXT_VMA: u64 = 0x10;

/// Longest path asked for (the kernel's PATH_MAX).
const NAME_MAX: usize = 4096;
/// Room for a build id (the kernel's BUILD_ID_SIZE_MAX is 20; a smaller
/// buffer than the id fails the query).
const BUILD_ID_ROOM: usize = 64;
/// Names remembered at most; past it the table starts again.
const NAMES_HELD: usize = 4096;
/// Announced address spaces remembered at most (their exits were lost,
/// past it: the table starts again).
const ANNOUNCED_HELD: usize = 8192;
/// Mappings asked for at most per process (a runaway loop's bound).
const MAPPINGS_MAX: usize = 65536;

/// Reads executable mappings, remembering each file's path.
pub struct MapsReader {
    /// Whether the kernel answers PROCMAP_QUERY (None: not tried yet).
    query: Option<bool>,
    names: HashMap<FileId, (String, bool)>,
    /// Each file version live processes mapped, by what an exit tells of
    /// it.
    versions: HashMap<VersionKey, Described>,
    /// The path each inode (kernel device, inode) was last named by.
    paths: HashMap<(u32, u64), String>,
    /// What the read of each live announced address space found.
    announced: HashMap<AspaceId, Option<Arc<Vec<Mapping>>>>,
    /// Versions learnt since the sampler was last told, and whether all it
    /// was told before was forgotten first (see [`MapsReader::take_learnt`]).
    learnt: Vec<VersionKey>,
    forgotten: bool,
    buf: Vec<u8>,
    build_id: [u8; BUILD_ID_ROOM],
    stats: MapsStats,
}

/// What a live process's maps said of one file version: the identity and
/// path users see, and the build id.
#[derive(Debug, Clone)]
struct Described {
    dev: (u32, u32),
    inode: u64,
    build_id: u64,
    path: String,
    deleted: bool,
}

/// How address spaces got their mappings (`--stats`).
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

impl Default for MapsReader {
    fn default() -> Self {
        MapsReader {
            query: None,
            names: HashMap::new(),
            versions: HashMap::new(),
            announced: HashMap::new(),
            paths: HashMap::new(),
            learnt: Vec::new(),
            forgotten: false,
            buf: vec![0; NAME_MAX],
            build_id: [0; BUILD_ID_ROOM],
            stats: MapsStats::default(),
        }
    }
}

impl MapsReader {
    /// A reader that has named no file yet.
    pub fn new() -> MapsReader {
        MapsReader::default()
    }

    /// A reader that always reads the text (what older kernels give).
    #[cfg(test)]
    fn text_only() -> MapsReader {
        MapsReader {
            query: Some(false),
            ..MapsReader::default()
        }
    }

    /// The executable mappings of `pid`, sorted; None if it can't be read
    /// (the process is gone, or not ours to read).
    pub fn read(&mut self, pid: u32) -> Option<Vec<Mapping>> {
        self.stats.read += 1;
        let read = self.read_maps(pid);
        if read.as_ref().is_none_or(|m| m.is_empty()) {
            self.stats.gone += 1;
        }
        read
    }

    fn read_maps(&mut self, pid: u32) -> Option<Vec<Mapping>> {
        let mut file = File::open(format!("/proc/{pid}/maps")).ok()?;
        if self.query != Some(false) {
            match self.query_all(pid, &file) {
                Ok(maps) => {
                    self.query = Some(true);
                    return Some(maps);
                }
                // Not this kernel's: text from now on.
                Err(e) if self.query.is_none() && is_unsupported(&e) => self.query = Some(false),
                Err(_) => return None,
            }
        }
        let mut text = String::new();
        file.read_to_string(&mut text).ok()?;
        // The vsyscall page is no VMA (the query never gives it): left out
        // here too, so both ways agree. Only very old static binaries run
        // code there.
        Some(
            maps::parse(&text)
                .into_iter()
                .filter(|m| m.exec && m.path.as_deref() != Some("[vsyscall]"))
                .collect(),
        )
    }

    /// How address spaces got their mappings so far.
    pub fn stats(&self) -> MapsStats {
        self.stats
    }

    /// The executable mappings of an address space just announced (see
    /// [`MapsReader::read`]), kept until it exits (for its exit, and for
    /// the children it forks).
    pub fn read_announced(&mut self, id: AspaceId) -> Option<Arc<Vec<Mapping>>> {
        let maps = self.read(id.pid).map(Arc::new);
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
    /// names it (see [`MapsReader::exited`]).
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

    /// Names the mappings the kernel told as a process exited. A file
    /// version a live process mapped before (its inode, modification time
    /// and size; see [`MapsReader::read`]) takes the path, identity and
    /// build id learnt then; so does one found at the path an earlier
    /// version of the same inode had (a program rebuilt where its inode is
    /// reused: the path holds that very version now). Another keeps only
    /// its device and inode (the process is gone: nothing can be asked of
    /// it).
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
                    MappingKind::File => match self.version(k) {
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

    /// What is known of the file version `k`'s pages are of.
    fn version(&mut self, k: &KernelMapping) -> Option<Described> {
        let key = k.version();
        if let Some(d) = self.versions.get(&key) {
            return Some(d.clone());
        }
        let path = self.paths.get(&(key.dev, key.inode))?.clone();
        let (found, meta) = version_at(std::path::Path::new(&path))?;
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

    /// Forgets every name and version (the tables start again). Both go
    /// together: a version is learnt when its file is first named.
    fn forget(&mut self) {
        self.names.clear();
        self.versions.clear();
        self.paths.clear();
        self.learnt.clear();
        self.forgotten = true;
    }

    /// The file versions learnt since the last call, for the sampler (see
    /// bpf/mappings.bpf.h's `known_versions`), and whether everything told
    /// before is to be forgotten first: the sampler must never hold a
    /// version this reader could not name.
    pub fn take_learnt(&mut self) -> (bool, Vec<VersionKey>) {
        (
            std::mem::take(&mut self.forgotten),
            std::mem::take(&mut self.learnt),
        )
    }

    /// Remembers a file version a live process maps by what the kernel
    /// tells of it at an exit (device, inode, modification time, size):
    /// one `stat` of the very file mapped, once per file.
    fn learn_version(&mut self, pid: u32, m: &Mapping) {
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

    fn remember(&mut self, key: VersionKey, d: Described) {
        if self.versions.len() >= NAMES_HELD {
            self.forget();
        }
        if !d.deleted {
            self.paths.insert((key.dev, key.inode), d.path.clone());
        }
        self.learnt.push(key);
        self.versions.insert(key, d);
    }

    fn query_all(&mut self, pid: u32, file: &File) -> std::io::Result<Vec<Mapping>> {
        let mut out = Vec::new();
        let mut addr = 0u64;
        while out.len() < MAPPINGS_MAX {
            let Some(q) = self.ask(file, addr, false)? else {
                break;
            };
            // The build id tells a program rebuilt in place (same inode)
            // from the build before it.
            let size = (q.build_id_size as usize).min(BUILD_ID_ROOM);
            let build_id = if q.inode != 0 && size > 0 {
                super::short_build_id(&self.build_id[..size])
            } else {
                0
            };
            let file_id = FileId {
                dev: (q.dev_major, q.dev_minor),
                inode: q.inode,
                version: build_id,
            };
            let known = (q.inode != 0)
                .then(|| self.names.get(&file_id).cloned())
                .flatten();
            let learnt = known.is_none();
            let (path, deleted) = match known {
                Some((p, d)) => (Some(p), d),
                None => {
                    // Ask again, with the name: a file not seen before, or
                    // memory that may have a pseudo name (`[vdso]`).
                    let name = self
                        .ask(file, q.vma_start, true)?
                        .and_then(|named| self.name(&named));
                    let (path, deleted) = match name.map(split_deleted) {
                        Some((p, d)) => (Some(p), d),
                        None => (None, false),
                    };
                    if q.inode != 0 {
                        if let Some(p) = &path {
                            if self.names.len() >= NAMES_HELD {
                                self.forget();
                            }
                            self.names.insert(file_id, (p.clone(), deleted));
                        }
                    }
                    (path, deleted)
                }
            };
            let m = Mapping {
                start: q.vma_start,
                end: q.vma_end,
                offset: q.vma_offset,
                dev: file_id.dev,
                inode: q.inode,
                path,
                deleted,
                exec: true,
                build_id,
            };
            if learnt && m.is_file() {
                self.learn_version(pid, &m);
            }
            out.push(m);
            addr = q.vma_end;
        }
        Ok(out)
    }

    /// One query: the executable mapping covering `addr` or the next one
    /// (None: no more), with its name in `self.buf` if `name`, else its
    /// file's build id in `self.build_id` (the kernel reads it from the
    /// page cache; size 0 if it has none or could not).
    fn ask(&mut self, file: &File, addr: u64, name: bool) -> std::io::Result<Option<ProcmapQuery>> {
        let mut q = ProcmapQuery {
            size: std::mem::size_of::<ProcmapQuery>() as u64,
            query_flags: QUERY_VMA_EXECUTABLE | QUERY_COVERING_OR_NEXT_VMA,
            query_addr: addr,
            ..ProcmapQuery::default()
        };
        if name {
            q.vma_name_size = self.buf.len() as u32;
            q.vma_name_addr = self.buf.as_mut_ptr() as u64;
        } else {
            q.build_id_size = BUILD_ID_ROOM as u32;
            q.build_id_addr = self.build_id.as_mut_ptr() as u64;
        }
        // SAFETY: `q` is a properly sized procmap_query; the buffer it
        // points at (`self.buf` or `self.build_id`) is alive and as long as
        // it says.
        let rc =
            unsafe { libc::ioctl(file.as_raw_fd(), PROCMAP_QUERY, &mut q as *mut ProcmapQuery) };
        if rc == 0 {
            if !name {
                q.vma_name_size = 0;
            }
            return Ok(Some(q));
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ENOENT) {
            return Ok(None);
        }
        Err(err)
    }

    /// The name a query with a name returned, if the mapping has one (the
    /// kernel then says its size, NUL included, and leaves the buffer as it
    /// was otherwise).
    fn name(&self, q: &ProcmapQuery) -> Option<String> {
        let size = (q.vma_name_size as usize).min(self.buf.len());
        let text = &self.buf[..size];
        let end = text.iter().position(|b| *b == 0).unwrap_or(size);
        (end > 0).then(|| String::from_utf8_lossy(&text[..end]).into_owned())
    }
}

/// The version of the file at `path` as the kernel keys it (see
/// bpf/profile.h's `struct version_key`), and its metadata.
fn version_at(path: &std::path::Path) -> Option<(VersionKey, std::fs::Metadata)> {
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

/// A mapping's name without the kernel's ` (deleted)` suffix, and whether
/// it had it.
fn split_deleted(name: String) -> (String, bool) {
    match name.strip_suffix(" (deleted)") {
        Some(p) => (p.to_string(), true),
        None => (name, false),
    }
}

/// Whether an ioctl error means the kernel does not know the request.
fn is_unsupported(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOTTY) | Some(libc::EINVAL) | Some(libc::EOPNOTSUPP)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_and_the_text_agree() {
        let pid = std::process::id();
        let mut q = MapsReader::new();
        let by_query = q.read(pid).unwrap();
        let by_text = MapsReader::text_only().read(pid).unwrap();
        assert!(by_query.len() >= 3, "{by_query:?}");
        // The query also says each file's build id (the text does not).
        assert!(
            by_query
                .iter()
                .filter(|m| m.is_file())
                .all(|m| m.build_id != 0),
            "{by_query:?}"
        );
        let without_ids = |maps: Vec<Mapping>| -> Vec<Mapping> {
            maps.into_iter()
                .map(|m| Mapping { build_id: 0, ..m })
                .collect()
        };
        assert_eq!(without_ids(by_query.clone()), by_text);
        assert_eq!(q.query, Some(true), "this kernel answers PROCMAP_QUERY");
        // The second read names every file from what the first learnt,
        // and still agrees.
        assert_eq!(q.read(pid).unwrap(), by_query);
        assert!(by_query.iter().any(|m| m.name() == Some("[vdso]")));
        assert!(by_query.iter().all(|m| m.exec));
    }

    #[test]
    fn anonymous_code_has_no_name() {
        // JIT code: an anonymous executable mapping after named ones.
        // SAFETY: a fresh private anonymous mapping, unmapped below.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(page, libc::MAP_FAILED);
        let maps = MapsReader::new().read(std::process::id()).unwrap();
        let m = maps::find(&maps, page as u64).expect("the page is read");
        // SAFETY: mapped above, not used since.
        unsafe { libc::munmap(page, 4096) };
        assert_eq!((m.path.as_deref(), m.inode), (None, 0), "{m:?}");
    }

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
        let mut reader = MapsReader::new();
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
        let mut reader = MapsReader::new();
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
        // Forgotten: the sampler is told to forget too, and an exit can
        // no longer be named from them.
        let told = told(pid, &live);
        reader.forget();
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
    fn a_version_rebuilt_at_a_known_path_is_named_from_the_file_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prog");
        std::fs::copy("/bin/true", &path).unwrap();
        let (now, meta) = version_at(&path).unwrap();
        let mut reader = MapsReader::new();
        // An earlier build of the same inode was named at that path.
        let old = VersionKey {
            mtime_ns: now.mtime_ns - 1,
            ..now
        };
        let path_text = path.to_str().unwrap().to_string();
        reader.remember(
            old,
            Described {
                dev: (1, 2),
                inode: now.inode,
                build_id: 7,
                path: path_text.clone(),
                deleted: false,
            },
        );
        let mapping = |key: VersionKey| KernelMapping {
            start: 0x1000,
            end: 0x2000,
            offset: 0,
            dev: key.dev,
            inode: key.inode,
            mtime_ns: key.mtime_ns,
            size: key.size,
            kind: MappingKind::File,
        };
        let gone = AspaceId {
            pid: u32::MAX - 3,
            aspace: 1,
        };
        reader.skip_read(gone);
        let named = reader.exited(gone, Some(&[mapping(now)])).unwrap();
        let want_id = blazesym::helper::read_elf_build_id(&path)
            .unwrap()
            .map_or(0, |id| super::super::short_build_id(&id));
        assert_eq!(named[0].path.as_deref(), Some(path_text.as_str()));
        assert_eq!(named[0].build_id, want_id);
        assert_eq!(named[0].inode, meta.ino());
        assert!(reader.take_learnt().1.contains(&now));
        // A version the path does not hold (another size) stays unnamed.
        let other = VersionKey {
            size: now.size + 1,
            ..now
        };
        let gone = AspaceId { aspace: 2, ..gone };
        reader.skip_read(gone);
        let named = reader.exited(gone, Some(&[mapping(other)])).unwrap();
        assert_eq!(named[0].path, None);
    }

    #[test]
    fn a_forked_child_inherits_what_its_parent_read() {
        let mut reader = MapsReader::new();
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

    #[test]
    fn a_process_that_is_gone_reads_as_none() {
        assert!(MapsReader::new().read(u32::MAX - 3).is_none());
    }
}
