//! `/proc/PID/maps`, parsed: which file (device, inode, path) and which file
//! offset each range of a process's address space comes from.

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// File offset of `start`.
    pub offset: u64,
    /// Device (major, minor) of the file; (0, 0) for anonymous memory.
    pub dev: (u32, u32),
    /// Inode of the file; 0 for anonymous memory.
    pub inode: u64,
    /// The path as the process sees it (`/usr/lib/libc.so.6`), a pseudo
    /// name (`[vdso]`, `[heap]`), or None for anonymous memory. A file
    /// deleted or replaced since it was mapped keeps its old path here,
    /// without the kernel's ` (deleted)` suffix (see `deleted`).
    pub path: Option<String>,
    /// The file was deleted (or replaced) after it was mapped.
    pub deleted: bool,
    /// Mapped executable.
    pub exec: bool,
    /// The mapped file's ELF build id as the kernel read it, short (see
    /// [`super::short_build_id`]); 0 when none is known.
    pub build_id: u64,
}

impl Mapping {
    /// Whether the mapping is a file's (not anonymous memory or a pseudo
    /// mapping such as `[vdso]`).
    pub fn is_file(&self) -> bool {
        self.inode != 0 && self.path.as_deref().is_some_and(|p| p.starts_with('/'))
    }

    /// The file name the mapping is known by (`libc.so.6`), or the pseudo
    /// name (`[vdso]`).
    pub fn name(&self) -> Option<&str> {
        let p = self.path.as_deref()?;
        Some(p.rsplit('/').next().unwrap_or(p))
    }

    /// The file offset `addr` corresponds to.
    pub fn file_offset(&self, addr: u64) -> u64 {
        addr - self.start + self.offset
    }

    /// The mapped file's identity (device, inode and build id).
    pub fn file_id(&self) -> super::FileId {
        super::FileId {
            dev: self.dev,
            inode: self.inode,
            version: self.build_id,
        }
    }

    /// `/proc/PID/map_files/START-END`: the very file mapped, also when it
    /// was deleted or replaced, or lives in another mount namespace.
    pub fn map_files(&self, pid: u32) -> std::path::PathBuf {
        format!("/proc/{pid}/map_files/{:x}-{:x}", self.start, self.end).into()
    }
}

/// Parses `/proc/PID/maps` text, sorted by start address. Lines that don't
/// parse are skipped: the kernel's format is fixed, so they can only be a
/// cut read.
pub fn parse(text: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = text.lines().filter_map(parse_line).collect();
    out.sort_by_key(|m| m.start);
    out
}

/// `7f1c2a000000-7f1c2a022000 r-xp 00001000 fd:01 1234   /usr/lib/libc.so.6`
fn parse_line(line: &str) -> Option<Mapping> {
    let mut fields = line.splitn(6, ' ');
    let (start, end) = fields.next()?.split_once('-')?;
    let perms = fields.next()?;
    let offset = fields.next()?;
    let (major, minor) = fields.next()?.split_once(':')?;
    let inode = fields.next()?;
    let path = fields.next().map(str::trim).filter(|p| !p.is_empty());
    let (path, deleted) = match path {
        Some(p) => match p.strip_suffix(" (deleted)") {
            Some(p) => (Some(p.to_string()), true),
            None => (Some(p.to_string()), false),
        },
        None => (None, false),
    };
    let hex = |s: &str| u64::from_str_radix(s, 16).ok();
    let m = Mapping {
        start: hex(start)?,
        end: hex(end)?,
        offset: hex(offset)?,
        dev: (
            u32::from_str_radix(major, 16).ok()?,
            u32::from_str_radix(minor, 16).ok()?,
        ),
        inode: inode.parse().ok()?,
        path,
        deleted,
        exec: perms.as_bytes().get(2) == Some(&b'x'),
        // The text does not say.
        build_id: 0,
    };
    (m.start < m.end).then_some(m)
}

/// The mapping holding `addr`, in mappings sorted by start.
pub fn find(maps: &[Mapping], addr: u64) -> Option<&Mapping> {
    let i = maps.partition_point(|m| m.start <= addr);
    maps[..i].last().filter(|m| addr < m.end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAPS: &str = "\
5598a0000000-5598a0001000 r--p 00000000 fd:01 131 /usr/bin/xz
5598a0001000-5598a0010000 r-xp 00001000 fd:01 131 /usr/bin/xz
7f0000000000-7f0000100000 r-xp 00028000 fd:01 262 /usr/lib/x86_64-linux-gnu/liblzma.so.5.4.1
7f0000200000-7f0000300000 rw-p 00000000 00:00 0 
7f0000400000-7f0000401000 r-xp 00002000 00:2a 77 /tmp/my lib.so (deleted)
7ffc00000000-7ffc00002000 r-xp 00000000 00:00 0                          [vdso]
";

    #[test]
    fn parses_and_finds() {
        let m = parse(MAPS);
        assert_eq!(m.len(), 6);
        let xz = find(&m, 0x5598a0001234).unwrap();
        assert_eq!(xz.path.as_deref(), Some("/usr/bin/xz"));
        assert!(xz.exec && xz.is_file());
        assert_eq!(xz.file_offset(0x5598a0001234), 0x1234);
        let lz = find(&m, 0x7f0000000010).unwrap();
        assert_eq!(lz.name(), Some("liblzma.so.5.4.1"));
        assert_eq!(lz.file_offset(0x7f0000000010), 0x28010);
        assert_eq!(lz.dev, (0xfd, 1));
        let del = find(&m, 0x7f0000400000).unwrap();
        assert_eq!(del.path.as_deref(), Some("/tmp/my lib.so"));
        assert!(del.deleted);
        let anon = find(&m, 0x7f0000200000).unwrap();
        assert!(!anon.is_file() && anon.path.is_none());
        let vdso = find(&m, 0x7ffc00000010).unwrap();
        assert_eq!(vdso.name(), Some("[vdso]"));
        assert!(!vdso.is_file());
        assert!(find(&m, 0x1000).is_none());
        assert!(find(&m, 0x5598a0010000).is_none());
    }

    proptest! {
        #[test]
        fn any_text_parses_without_panic(text in "[ -~\n]{0,300}") {
            let m = parse(&text);
            for w in m.windows(2) {
                prop_assert!(w[0].start <= w[1].start);
            }
            let _ = find(&m, 0x1234);
        }
    }
}
