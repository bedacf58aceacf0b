//! Unwind tables cached on disk, so that a run finds the tables an earlier
//! run built and loads them in milliseconds instead of evaluating every
//! FDE again (a C++ compiler's 1M rows take seconds).
//!
//! One file per executable file version, named by its identity (device,
//! inode, size, modification and change times): a file rebuilt or
//! replaced has another name, so a stale table is never used; the identity
//! is also stored inside and checked, with a CRC of the rows, before use. A
//! damaged entry is removed and the table built again. The folder (default
//! `/var/cache/rs-profile`) is opened through [`crate::safe_file::SafeDir`]
//! (refused if another user can change it: its tables steer the walker),
//! entries are written whole under their name, and the oldest are removed
//! once the folder holds more than its size bound. A folder that can't be
//! used costs one warning; the run goes on building tables in memory.

use std::fs::Metadata;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};

use super::table::{Kind, Row, UnwindTable};
use crate::safe_file::{SafeDir, TempFile};

/// The cache folder when none is given.
pub const DEFAULT_DIR: &str = "/var/cache/rs-profile";
/// Bytes the folder may hold before the oldest entries go.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// Bumped whenever what a table holds changes (5: Go's stack switches and
/// signal returns), so tables an older version built are built again.
const MAGIC: &[u8; 8] = b"RSUNWT5\0";

/// Whether `bytes` are a table in another version's format.
fn is_older_format(bytes: &[u8]) -> bool {
    bytes.len() >= MAGIC.len() && bytes[..6] == MAGIC[..6] && bytes[..8] != MAGIC[..]
}
const HEADER: usize = 8 + 40 + 1 + 4 + 4;

/// What identifies one version of an executable file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileVersion {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl FileVersion {
    /// The version of an open file.
    pub fn of(meta: &Metadata) -> FileVersion {
        FileVersion {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        }
    }

    fn bytes(&self) -> [u8; 40] {
        let mut b = [0u8; 40];
        b[0..8].copy_from_slice(&self.dev.to_le_bytes());
        b[8..16].copy_from_slice(&self.ino.to_le_bytes());
        b[16..24].copy_from_slice(&self.size.to_le_bytes());
        b[24..32].copy_from_slice(&self.mtime_ns.to_le_bytes());
        b[32..40].copy_from_slice(&self.ctime_ns.to_le_bytes());
        b
    }

    fn name(&self) -> String {
        format!(
            "{:x}-{:x}-{:x}-{:x}-{:x}.unwind",
            self.dev, self.ino, self.size, self.mtime_ns, self.ctime_ns
        )
    }
}

/// What the cache did over a run, for `--stats`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheStats {
    /// Tables read from the cache.
    pub hits: u64,
    /// Tables built and written to it.
    pub stored: u64,
    /// Entries found damaged (removed).
    pub damaged: u64,
}

/// Opens the cache folder (created if missing) that the unwind tables and
/// the boot's copy of the kernel's symbols share. A folder that can't be
/// used prints one warning, and the run keeps both in memory.
pub fn open_dir(dir: &Path) -> Option<Arc<SafeDir>> {
    match SafeDir::open(dir, true).and_then(|d| d.check_writable().map(|()| d)) {
        Ok(d) => Some(d),
        Err(e) => {
            eprintln!(
                "profile: warning: cache off: {e:#} (unwind tables are built and kernel symbols read in memory; --no-cache silences this)"
            );
            None
        }
    }
}

/// The table cache (or none: `--no-cache`, or a folder that can't be used).
pub struct TableCache {
    dir: Option<Arc<SafeDir>>,
    max_bytes: u64,
    stats: Mutex<CacheStats>,
    warned: AtomicBool,
    /// Bytes the folder holds, as last listed plus what this run stored
    /// since (None: not listed yet). Listing the folder at every store
    /// cost a stat per entry: under a build loop that stores a table a
    /// second, the unwinder's biggest cost.
    used: Mutex<Option<u64>>,
}

impl TableCache {
    /// No cache.
    pub fn disabled() -> TableCache {
        TableCache {
            dir: None,
            max_bytes: 0,
            stats: Mutex::default(),
            warned: AtomicBool::new(true),
            used: Mutex::default(),
        }
    }

    /// The cache in `dir` (created if missing; see [`open_dir`]).
    pub fn open(dir: &Path, max_bytes: u64) -> TableCache {
        TableCache::in_dir(open_dir(dir), max_bytes)
    }

    /// The cache in a folder opened already (None: disabled).
    pub fn in_dir(dir: Option<Arc<SafeDir>>, max_bytes: u64) -> TableCache {
        match dir {
            Some(d) => TableCache {
                dir: Some(d),
                max_bytes,
                stats: Mutex::default(),
                warned: AtomicBool::new(false),
                used: Mutex::default(),
            },
            None => TableCache::disabled(),
        }
    }

    /// What the cache did.
    pub fn stats(&self) -> CacheStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached table of `version`, if there is a whole one.
    pub fn get(&self, version: &FileVersion) -> Option<UnwindTable> {
        let dir = self.dir.as_ref()?;
        let name = version.name();
        let f = dir.open_regular(&name).ok()?;
        let len = f.metadata().ok()?.len();
        // Read through a small buffer: the file's bytes and the rows made
        // of them are never both in memory (a big table is tens of MB).
        let mut reader = std::io::BufReader::with_capacity(64 << 10, f);
        let mut header = Vec::with_capacity(HEADER);
        let read = reader
            .by_ref()
            .take(HEADER as u64)
            .read_to_end(&mut header)
            .map_err(anyhow::Error::from);
        match read.and_then(|_| decode(&header, len, &mut reader, version)) {
            Ok(t) => {
                self.stats.lock().unwrap_or_else(|e| e.into_inner()).hits += 1;
                Some(t)
            }
            Err(_) => {
                let _ = dir.remove(&name);
                // A table an older version wrote is replaced, not damaged.
                if !is_older_format(&header) {
                    self.stats.lock().unwrap_or_else(|e| e.into_inner()).damaged += 1;
                }
                None
            }
        }
    }

    /// Stores `table` for `version` (best effort: a failure warns once and
    /// turns nothing off but this entry).
    pub fn put(&self, version: &FileVersion, table: &UnwindTable) {
        let Some(dir) = &self.dir else { return };
        let bytes = encode(table, version);
        let result = (|| -> Result<()> {
            let tmp = TempFile::new(dir, &version.name())?;
            let mut w = std::io::BufWriter::new(tmp.file());
            w.write_all(&bytes)?;
            w.flush()?;
            drop(w);
            // Another run may have stored it meanwhile: that is fine.
            match tmp.persist(false, false) {
                Err(e) if format!("{e:#}").contains("appeared") => Ok(()),
                other => other,
            }
        })();
        match result {
            Ok(()) => {
                self.stats.lock().unwrap_or_else(|e| e.into_inner()).stored += 1;
                let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
                match used.as_mut() {
                    Some(u) if *u + bytes.len() as u64 <= self.max_bytes => {
                        *u += bytes.len() as u64
                    }
                    _ => *used = Some(self.trim(dir)),
                }
            }
            Err(e) => {
                if !self.warned.swap(true, Ordering::SeqCst) {
                    eprintln!("profile: warning: unwind table cache: {e:#}");
                }
            }
        }
    }

    /// Removes the oldest entries, once the folder holds more than the
    /// bound, until it holds three quarters of it; returns what it holds
    /// then. The headroom makes the next stores cheap: trimming to the
    /// bound itself listed and stat'ed the whole folder (8,700 entries
    /// here) again at every store of a full cache.
    fn trim(&self, dir: &SafeDir) -> u64 {
        let Ok(names) = dir.names() else { return 0 };
        let mut entries: Vec<((i64, i64), u64, String)> = names
            .into_iter()
            .filter(|n| n.ends_with(".unwind"))
            .filter_map(|n| {
                let st = dir.stat(&n).ok()??;
                Some(((st.st_mtime, st.st_mtime_nsec), st.st_size as u64, n))
            })
            .collect();
        let mut total: u64 = entries.iter().map(|e| e.1).sum();
        if total <= self.max_bytes {
            return total;
        }
        entries.sort();
        let low = self.max_bytes / 4 * 3;
        for (_, size, name) in entries {
            if total <= low {
                break;
            }
            if dir.remove(&name).is_ok() {
                total -= size;
            }
        }
        total
    }
}

fn encode(table: &UnwindTable, version: &FileVersion) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + table.rows.len() * 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&version.bytes());
    out.push(match table.source {
        ".eh_frame" => 1,
        ".debug_frame" => 2,
        _ => 0,
    });
    out.extend_from_slice(&(table.rows.len() as u32).to_le_bytes());
    let mut rows = Vec::with_capacity(table.rows.len() * 8);
    for r in &table.rows {
        rows.extend_from_slice(&r.pc.to_le_bytes());
        rows.extend_from_slice(&r.cfa_offset.to_le_bytes());
        rows.push(r.kind as u8);
        rows.push(r.rbp_offset8 as u8);
    }
    out.extend_from_slice(&crc32fast::hash(&rows).to_le_bytes());
    out.extend_from_slice(&rows);
    out
}

/// A table from its header, the file's length and the reader of the rows
/// after the header: the rows are checked (count against the length, CRC,
/// order) as they are read.
fn decode(
    header: &[u8],
    file_len: u64,
    rows: &mut impl Read,
    version: &FileVersion,
) -> Result<UnwindTable> {
    if header.len() < HEADER || &header[..8] != MAGIC {
        bail!("not a table");
    }
    if header[8..48] != version.bytes() {
        bail!("another file's table");
    }
    let source = match header[48] {
        1 => ".eh_frame",
        2 => ".debug_frame",
        _ => "",
    };
    let n = u32::from_le_bytes(header[49..53].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[53..57].try_into().expect("4 bytes"));
    // The count is checked against the length before anything is sized by it.
    if file_len != (HEADER + n * 8) as u64 {
        bail!("damaged: the length does not match the row count");
    }
    let mut out = Vec::with_capacity(n);
    let mut hasher = crc32fast::Hasher::new();
    let mut chunk = [0u8; 8 * 1024];
    let mut left = n * 8;
    while left > 0 {
        let want = left.min(chunk.len());
        rows.read_exact(&mut chunk[..want])
            .context("damaged: fewer rows than the header says")?;
        hasher.update(&chunk[..want]);
        for r in chunk[..want].chunks_exact(8) {
            let kind = Kind::from_u8(r[6]).context("bad row kind")?;
            let row = Row {
                pc: u32::from_le_bytes(r[0..4].try_into().expect("4 bytes")),
                cfa_offset: i16::from_le_bytes(r[4..6].try_into().expect("2 bytes")),
                kind,
                rbp_offset8: r[7] as i8,
            };
            if out.last().is_some_and(|last: &Row| last.pc >= row.pc) {
                bail!("rows out of order");
            }
            out.push(row);
        }
        left -= want;
    }
    if hasher.finalize() != crc {
        bail!("damaged");
    }
    Ok(UnwindTable { rows: out, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn table() -> UnwindTable {
        let exe = std::env::current_exe().unwrap();
        super::super::table::build(&exe).unwrap()
    }

    fn version_of(p: &Path) -> FileVersion {
        FileVersion::of(&std::fs::metadata(p).unwrap())
    }

    #[test]
    fn a_stored_table_reads_back_and_a_changed_file_misses() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TableCache::open(dir.path(), DEFAULT_MAX_BYTES);
        let exe = std::env::current_exe().unwrap();
        let v = version_of(&exe);
        assert!(cache.get(&v).is_none());
        let t = table();
        assert!(!t.rows.is_empty());
        cache.put(&v, &t);
        assert_eq!(cache.get(&v), Some(t.clone()));
        // Another version of the file (rebuilt: new mtime) misses.
        let stale = FileVersion {
            mtime_ns: v.mtime_ns + 1,
            ..v
        };
        assert!(cache.get(&stale).is_none());
        // An entry renamed to another file's name is refused on its key.
        std::fs::copy(dir.path().join(v.name()), dir.path().join(stale.name())).unwrap();
        assert!(cache.get(&stale).is_none());
        let s = cache.stats();
        assert_eq!((s.hits, s.stored, s.damaged), (1, 1, 1));
    }

    #[test]
    fn a_damaged_entry_is_removed_and_missed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = TableCache::open(dir.path(), DEFAULT_MAX_BYTES);
        let v = version_of(&std::env::current_exe().unwrap());
        cache.put(&v, &table());
        let path = dir.path().join(v.name());
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert!(cache.get(&v).is_none());
        assert!(!path.exists(), "removed");
        // Cut short.
        cache.put(&v, &table());
        std::fs::write(&path, &std::fs::read(&path).unwrap()[..100]).unwrap();
        assert!(cache.get(&v).is_none());
        assert_eq!(cache.stats().damaged, 2);
        // A row count of 4 G (32 GB of rows) is refused before anything is
        // sized by it, and so is a byte too many.
        cache.put(&v, &table());
        let mut huge = std::fs::read(&path).unwrap();
        huge[49..53].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&path, &huge).unwrap();
        assert!(cache.get(&v).is_none());
        cache.put(&v, &table());
        let mut longer = std::fs::read(&path).unwrap();
        longer.push(0);
        std::fs::write(&path, &longer).unwrap();
        assert!(cache.get(&v).is_none());
        assert_eq!(cache.stats().damaged, 4);
        // An older version's table: replaced, not counted as damaged.
        cache.put(&v, &table());
        let mut old = std::fs::read(&path).unwrap();
        old[6] = b'1';
        std::fs::write(&path, &old).unwrap();
        assert!(cache.get(&v).is_none());
        assert!(!path.exists(), "removed");
        assert_eq!(cache.stats().damaged, 4);
    }

    #[test]
    fn a_full_cache_drops_its_oldest_entries() {
        let dir = tempfile::tempdir().unwrap();
        let t = table();
        let one = encode(&t, &version_of(&std::env::current_exe().unwrap())).len() as u64;
        let cache = TableCache::open(dir.path(), one * 2 + one / 2);
        let base = version_of(&std::env::current_exe().unwrap());
        for i in 0..5 {
            let v = FileVersion {
                ino: base.ino + i,
                ..base
            };
            cache.put(&v, &t);
        }
        // Over the bound at the third store: trimmed to three quarters of
        // it (one entry), then one more stored; over again at the fifth.
        let left = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(left, 1, "bounded, with headroom");
    }

    #[test]
    fn an_unusable_folder_turns_the_cache_off() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        // Others can write it: refused (its tables steer the walker).
        let cache = TableCache::open(&open, DEFAULT_MAX_BYTES);
        let v = version_of(&std::env::current_exe().unwrap());
        cache.put(&v, &table());
        assert!(cache.get(&v).is_none());
        assert_eq!(std::fs::read_dir(&open).unwrap().count(), 0);
        // A file where the folder should be.
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(TableCache::open(&file, DEFAULT_MAX_BYTES).get(&v).is_none());
    }
}
