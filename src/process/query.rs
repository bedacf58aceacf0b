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

use super::maps::{self, Mapping};
use super::FileId;

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
pub const NAMES_HELD: usize = 4096;
/// Mappings asked for at most per process (a runaway loop's bound).
const MAPPINGS_MAX: usize = 65536;

/// Reads executable mappings, remembering each file's path.
pub struct MapsReader {
    /// Whether the kernel answers PROCMAP_QUERY (None: not tried yet).
    query: Option<bool>,
    names: HashMap<FileId, (String, bool)>,
    /// Which mappings of the last read named their file for the first
    /// time (indexes into it).
    first_named: Vec<usize>,
    /// The names were forgotten (the table started again) since the last
    /// [`MapsReader::names_forgotten`].
    forgotten: bool,
    buf: Vec<u8>,
    build_id: [u8; BUILD_ID_ROOM],
}

impl Default for MapsReader {
    fn default() -> Self {
        MapsReader {
            query: None,
            names: HashMap::new(),
            first_named: Vec::new(),
            forgotten: false,
            buf: vec![0; NAME_MAX],
            build_id: [0; BUILD_ID_ROOM],
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
        self.first_named.clear();
        let mut file = File::open(format!("/proc/{pid}/maps")).ok()?;
        if self.query != Some(false) {
            match self.query_all(&file) {
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

    /// Which file mappings of the last read named their file for the
    /// first time (indexes into it); none for the text of older kernels.
    pub fn first_named(&self) -> &[usize] {
        &self.first_named
    }

    /// Forgets every name (the table starts again).
    pub fn forget_names(&mut self) {
        self.names.clear();
        self.forgotten = true;
    }

    /// Whether the names were forgotten since the last call.
    pub fn names_forgotten(&mut self) -> bool {
        std::mem::take(&mut self.forgotten)
    }

    fn query_all(&mut self, file: &File) -> std::io::Result<Vec<Mapping>> {
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
                                self.forget_names();
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
                self.first_named.push(out.len());
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

    #[test]
    fn a_process_that_is_gone_reads_as_none() {
        assert!(MapsReader::new().read(u32::MAX - 3).is_none());
    }
}
