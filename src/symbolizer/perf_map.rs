//! JIT perf maps (`/tmp/perf-PID.map`: node `--perf-basic-prof`, python
//! 3.12 `-X perf`, the JVM with perf-map-agent), read incrementally.
//!
//! A JIT appends thousands of lines a second to its map while it lives and
//! never rewrites them, so each map is read from where the last read
//! stopped: only the appended lines are parsed, into a sorted index kept per
//! process. The file is opened, read and closed at each refresh (at most
//! once per interval, and only when a sampled address needs it): nothing
//! stays open or mapped. It is read whole again only when it was replaced
//! (another inode: the pid was reused) or shrank.
//!
//! The map is opened through the process's own root (`/proc/PID/root`, so
//! a container's `/tmp` is the one read, with its own pid), never through a
//! link, and only when the process's user (or root) owns it: a process
//! cannot make us read another file's lines as its symbols.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;

use rustc_hash::FxHashMap;

use super::name_arena::{NameArena, NameRef};
use crate::process::AspaceId;

/// Entries kept per map at most (a 1.6 MB map holds ~20,000): a process
/// that writes more is named from its first ones.
const MAX_ENTRIES: usize = 2_000_000;
/// Bytes read per refresh at most; the rest waits for the next one.
const MAX_READ: u64 = 64 << 20;
/// Longest line kept (a name can be long, not this long).
const MAX_LINE: usize = 64 << 10;

/// One JIT function, as held (24 bytes; its name in the map's arena).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// First address.
    start: u64,
    /// One past the last.
    end: u64,
    /// Its name as the JIT wrote it.
    name: NameRef,
}

/// The JIT function found for an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitFunction<'a> {
    /// Its name as the JIT wrote it.
    pub name: &'a str,
}

/// One process's map.
#[derive(Default)]
struct PerfMap {
    /// Identity (device, inode) of the file read so far.
    file: Option<(u64, u64)>,
    /// Bytes consumed: up to the last whole line.
    offset: u64,
    /// The first `settled` are sorted by start and overlap nothing; the
    /// rest were read since, in the file's order.
    entries: Vec<Entry>,
    settled: usize,
    /// The entries' names.
    names: NameArena,
    /// The interval it was last refreshed in.
    refreshed: Option<u64>,
}

/// What reading perf maps has cost, for `--stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PerfMapStats {
    /// Refreshes that read something.
    pub reads: u64,
    /// Bytes read in all.
    pub bytes: u64,
    /// Maps read whole again (replaced or shrunk).
    pub rereads: u64,
}

/// Every sampled process's perf map, per address space: a process that
/// execs (or a new process that got an old pid) starts afresh.
#[derive(Default)]
pub struct PerfMaps {
    maps: FxHashMap<AspaceId, PerfMap>,
    stats: PerfMapStats,
    /// Where maps are looked for; `None`: through `/proc/PID/root/tmp`.
    root: Option<PathBuf>,
}

impl PerfMaps {
    /// Perf maps read through each process's root.
    pub fn new() -> PerfMaps {
        PerfMaps::default()
    }

    /// Perf maps read from `dir` (`perf-PID.map` files), for tests.
    #[cfg(test)]
    fn in_dir(dir: &std::path::Path) -> PerfMaps {
        PerfMaps {
            root: Some(dir.to_path_buf()),
            ..PerfMaps::default()
        }
    }

    /// What reading maps has cost.
    pub fn stats(&self) -> PerfMapStats {
        self.stats
    }

    /// Entries held over all maps.
    pub fn entries(&self) -> usize {
        self.maps.values().map(|m| m.entries.len()).sum()
    }

    /// Bytes the maps' entries and names take.
    pub fn bytes(&self) -> usize {
        self.maps
            .values()
            .map(|m| m.entries.capacity() * std::mem::size_of::<Entry>() + m.names.bytes())
            .sum()
    }

    /// The JIT function holding `addr` in `pid`'s map, read up to what the
    /// process has written by now (refreshed at most once per `interval`).
    pub fn lookup(
        &mut self,
        id: AspaceId,
        addr: u64,
        interval: u64,
    ) -> Option<(JitFunction<'_>, u64)> {
        let map = self.maps.entry(id).or_default();
        if map.refreshed != Some(interval) {
            map.refreshed = Some(interval);
            let ids = match self.root {
                Some(_) => Ids::default(),
                None => ids_of(id.pid),
            };
            let path = path_for(self.root.as_deref(), id.pid, &ids);
            refresh(map, &ids, path, &mut self.stats);
        }
        if map.settled < map.entries.len() {
            settle(&mut map.entries, map.settled);
            map.settled = map.entries.len();
            map.names.compact(&mut map.entries, |e| &mut e.name);
        }
        // Settled entries do not overlap: only the last to start at or
        // below `addr` can hold it.
        let i = map.entries.partition_point(|e| e.start <= addr);
        let e = map.entries[..i].last().filter(|e| addr < e.end)?;
        let found = JitFunction {
            name: map.names.get(e.name),
        };
        Some((found, addr - e.start))
    }

    /// Whether a perf map was found for `id` (read at least once).
    pub fn found(&self, id: AspaceId) -> bool {
        self.maps.get(&id).is_some_and(|m| m.file.is_some())
    }

    /// Forgets the maps of address spaces no longer sampled.
    pub fn retain(&mut self, mut keep: impl FnMut(AspaceId) -> bool) {
        self.maps.retain(|id, _| keep(*id));
    }
}

/// Where `pid`'s map is: in `root` (tests), or in the process's own /tmp.
fn path_for(root: Option<&std::path::Path>, pid: u32, ids: &Ids) -> PathBuf {
    match root {
        Some(dir) => dir.join(format!("perf-{pid}.map")),
        None => {
            let ns_pid = ids.ns_pid.unwrap_or(pid);
            PathBuf::from(format!("/proc/{pid}/root/tmp/perf-{ns_pid}.map"))
        }
    }
}

/// What `/proc/PID/status` says of the process, read once per refresh.
#[derive(Default)]
struct Ids {
    /// Its pid in its own pid namespace (the last of `NSpid:`): the number
    /// in its perf map's name.
    ns_pid: Option<u32>,
    /// Its real uid.
    uid: Option<u32>,
}

fn ids_of(pid: u32) -> Ids {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Ids::default();
    };
    let field = |key: &str, last: bool| -> Option<u32> {
        let mut words = status
            .lines()
            .find_map(|l| l.strip_prefix(key))?
            .split_whitespace();
        let w = if last { words.last() } else { words.next() };
        w?.parse().ok()
    };
    Ids {
        ns_pid: field("NSpid:", true),
        uid: field("Uid:", false),
    }
}

/// Reads what was appended since the last refresh (or the whole file if
/// it was replaced or shrank).
fn refresh(map: &mut PerfMap, ids: &Ids, path: PathBuf, stats: &mut PerfMapStats) {
    let Ok(mut f) = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
    else {
        return;
    };
    let Ok(meta) = f.metadata() else { return };
    if !meta.file_type().is_file() {
        return;
    }
    let owner_ok = meta.uid() == 0 || ids.uid.is_none_or(|u| u == meta.uid());
    if !owner_ok {
        return;
    }
    let id = (meta.dev(), meta.ino());
    if map.file != Some(id) || meta.len() < map.offset {
        if map.file.is_some() {
            stats.rereads += 1;
        }
        *map = PerfMap {
            file: Some(id),
            refreshed: map.refreshed,
            ..PerfMap::default()
        };
    }
    if meta.len() == map.offset || map.entries.len() >= MAX_ENTRIES {
        return;
    }
    if f.seek(SeekFrom::Start(map.offset)).is_err() {
        return;
    }
    let mut buf = Vec::new();
    if f.take(MAX_READ).read_to_end(&mut buf).is_err() {
        return;
    }
    // Only whole lines: a line cut mid-write is read next time.
    let Some(last_nl) = buf.iter().rposition(|b| *b == b'\n') else {
        return;
    };
    stats.reads += 1;
    stats.bytes += last_nl as u64 + 1;
    map.offset += last_nl as u64 + 1;
    // A name written twice in one read is stored once.
    let mut names: FxHashMap<&[u8], NameRef> = FxHashMap::default();
    for line in buf[..last_nl].split(|b| *b == b'\n') {
        if map.entries.len() >= MAX_ENTRIES {
            break;
        }
        if line.len() > MAX_LINE {
            continue;
        }
        if let Some((start, size, name)) = parse_line(line) {
            let end = start.saturating_add(size);
            let name = match names.get(name) {
                Some(r) => *r,
                None => {
                    let Some(r) = map.names.push(&String::from_utf8_lossy(name)) else {
                        break;
                    };
                    names.insert(name, r);
                    r
                }
            };
            map.entries.push(Entry { start, end, name });
        }
    }
}

/// Takes the entries read since the last call (`entries[settled..]`, in the
/// file's order) into the settled ones (sorted, none overlapping): an entry
/// that a later one overlaps is dropped, since a JIT writes code over code
/// that is gone (a node service reuses its code space after each
/// collection: 41% of its entries after 18 minutes). A JIT that keeps
/// compiling then holds its live code's entries, not its whole history.
fn settle(entries: &mut Vec<Entry>, settled: usize) {
    let fresh = entries.split_off(settled);
    // The fresh entries from the latest back: each is dropped if one after
    // it overlaps it; `claimed` is the union of those after it.
    let mut claimed: std::collections::BTreeMap<u64, u64> = Default::default();
    let mut kept = Vec::with_capacity(fresh.len());
    for e in fresh.into_iter().rev() {
        if e.end <= e.start {
            continue;
        }
        let overlaps = claimed
            .range(..e.end)
            .next_back()
            .is_some_and(|(_, end)| *end > e.start);
        let (mut start, mut end) = (e.start, e.end);
        // Merge every claimed range that touches this one.
        while let Some((&s, &t)) = claimed.range(..=end).next_back() {
            if t < start {
                break;
            }
            start = start.min(s);
            end = end.max(t);
            claimed.remove(&s);
        }
        claimed.insert(start, end);
        if !overlaps {
            kept.push(e);
        }
    }
    kept.sort_unstable_by_key(|e| e.start);
    // Settled entries under any fresh one are gone too.
    entries.retain(|e| {
        claimed
            .range(..e.end)
            .next_back()
            .is_none_or(|(_, end)| *end <= e.start)
    });
    let old = std::mem::replace(entries, Vec::with_capacity(entries.len() + kept.len()));
    let mut old = old.into_iter().peekable();
    let mut new = kept.into_iter().peekable();
    loop {
        let take_old = match (old.peek(), new.peek()) {
            (Some(a), Some(b)) => a.start <= b.start,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let e = if take_old { old.next() } else { new.next() };
        entries.extend(e);
    }
}

/// `START SIZE name` (hex, hex, the rest of the line), as perf reads it.
fn parse_line(line: &[u8]) -> Option<(u64, u64, &[u8])> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut it = line.splitn(3, |b| *b == b' ');
    let hex = |s: &[u8]| {
        let s = std::str::from_utf8(s).ok()?;
        let s = s.strip_prefix("0x").unwrap_or(s);
        u64::from_str_radix(s, 16).ok()
    };
    let start = hex(it.next()?)?;
    let size = hex(it.next()?)?;
    let name = it.next()?;
    if name.is_empty() || size == 0 {
        return None;
    }
    Some((start, size, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn name(m: &mut PerfMaps, pid: u32, addr: u64, interval: u64) -> Option<String> {
        m.lookup(AspaceId { pid, aspace: 0 }, addr, interval)
            .map(|(f, _)| f.name.to_string())
    }

    #[test]
    fn appended_lines_are_read_and_only_they() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("perf-7.map");
        let mut f = File::create(&path).unwrap();
        writeln!(f, "1000 100 LazyCompile:~a /app.js:1").unwrap();
        let mut m = PerfMaps::in_dir(dir.path());
        assert_eq!(
            name(&mut m, 7, 0x1010, 0).as_deref(),
            Some("LazyCompile:~a /app.js:1")
        );
        assert_eq!(name(&mut m, 7, 0x2010, 0), None);
        // Appended later, with a line cut mid-write.
        write!(f, "2000 80 b\n3000 1").unwrap();
        f.flush().unwrap();
        assert_eq!(name(&mut m, 7, 0x2010, 0), None, "once per interval");
        assert_eq!(name(&mut m, 7, 0x2010, 1).as_deref(), Some("b"));
        assert_eq!(name(&mut m, 7, 0x3000, 1), None, "the cut line waits");
        writeln!(f, "0 c").unwrap();
        f.flush().unwrap();
        assert_eq!(name(&mut m, 7, 0x3000, 2).as_deref(), Some("c"));
        let s = m.stats();
        assert_eq!(s.reads, 3);
        let total = std::fs::metadata(&path).unwrap().len();
        assert_eq!(s.bytes, total, "each byte read once");
        // Offsets into a function.
        let id = AspaceId { pid: 7, aspace: 0 };
        assert_eq!(m.lookup(id, 0x1011, 2).map(|(_, off)| off), Some(0x11));
    }

    #[test]
    fn a_replaced_or_truncated_map_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("perf-8.map");
        std::fs::write(&path, "1000 100 old\n").unwrap();
        let mut m = PerfMaps::in_dir(dir.path());
        assert_eq!(name(&mut m, 8, 0x1000, 0).as_deref(), Some("old"));
        // Replaced by another file.
        let new = dir.path().join("new");
        std::fs::write(&new, "1000 100 new\n").unwrap();
        std::fs::rename(&new, &path).unwrap();
        assert_eq!(name(&mut m, 8, 0x1000, 1).as_deref(), Some("new"));
        // Truncated in place and rewritten shorter.
        std::fs::write(&path, "5000 10 x\n").unwrap();
        assert_eq!(name(&mut m, 8, 0x1000, 2), None);
        assert_eq!(name(&mut m, 8, 0x5000, 2).as_deref(), Some("x"));
        assert_eq!(m.stats().rereads, 2);
        // The pid reused by a new process (another address space): its
        // own map, read from the start.
        let reused = AspaceId { pid: 8, aspace: 3 };
        assert_eq!(
            m.lookup(reused, 0x5000, 2)
                .map(|(f, _)| f.name.to_string())
                .as_deref(),
            Some("x")
        );
    }

    #[test]
    fn later_entries_win_and_order_does_not_matter() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("perf-9.map"),
            "3000 100 c\n1000 100 a\n1000 100 a2\nzz bad\n2000 0 empty\n",
        )
        .unwrap();
        let mut m = PerfMaps::in_dir(dir.path());
        assert_eq!(name(&mut m, 9, 0x1050, 0).as_deref(), Some("a2"));
        assert_eq!(name(&mut m, 9, 0x3000, 0).as_deref(), Some("c"));
        assert_eq!(name(&mut m, 9, 0x2000, 0), None);
        // `a` is under `a2`, `empty` covers nothing.
        assert_eq!(m.entries(), 2);
        m.retain(|_| false);
        assert_eq!(m.entries(), 0);
    }

    #[test]
    fn code_written_over_drops_what_was_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("perf-11.map");
        let mut f = File::create(&path).unwrap();
        writeln!(f, "1000 100 a\n1100 100 b\n1200 100 c\n5000 100 far").unwrap();
        let mut m = PerfMaps::in_dir(dir.path());
        assert_eq!(name(&mut m, 11, 0x1010, 0).as_deref(), Some("a"));
        // A collection later, new code straddles a and b; c stays.
        writeln!(f, "1080 100 d").unwrap();
        f.flush().unwrap();
        assert_eq!(name(&mut m, 11, 0x1090, 1).as_deref(), Some("d"));
        assert_eq!(name(&mut m, 11, 0x1010, 1), None, "a's code is gone");
        assert_eq!(name(&mut m, 11, 0x1190, 1), None, "b's code is gone");
        assert_eq!(name(&mut m, 11, 0x1250, 1).as_deref(), Some("c"));
        assert_eq!(name(&mut m, 11, 0x5000, 1).as_deref(), Some("far"));
        assert_eq!(m.entries(), 3);
        // Within one read: of e1 and e2 at one place the later stays, and
        // one under two later ones goes.
        writeln!(
            f,
            "8000 40 e1\n8000 40 e2\n7ff0 100 f\n9000 10 g\n9008 10 h"
        )
        .unwrap();
        f.flush().unwrap();
        assert_eq!(name(&mut m, 11, 0x8000, 2).as_deref(), Some("f"));
        assert_eq!(name(&mut m, 11, 0x9009, 2).as_deref(), Some("h"));
        assert_eq!(name(&mut m, 11, 0x9001, 2), None);
        assert_eq!(m.entries(), 5, "d, c, far, f, h");
    }

    proptest::proptest! {
        /// Settling in any number of steps keeps exactly the entries no
        /// later entry overlaps, sorted (an empty entry covers nothing).
        #[test]
        fn settling_keeps_what_nothing_later_covers(
            raw in proptest::collection::vec((0u64..64, 0u64..12), 0..40),
            cuts in proptest::collection::vec(0usize..40, 0..4),
        ) {
            let mut arena = NameArena::default();
            let all: Vec<Entry> = raw
                .iter()
                .enumerate()
                .map(|(i, (s, n))| Entry { start: *s, end: s + n, name: arena.push(&i.to_string()).unwrap() })
                .collect();
            let alive: Vec<&Entry> = all
                .iter()
                .enumerate()
                .filter(|(i, e)| {
                    e.end > e.start
                        && !all[i + 1..]
                            .iter()
                            .any(|l| l.end > l.start && l.start < e.end && e.start < l.end)
                })
                .map(|(_, e)| e)
                .collect();
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|c| *c < all.len()).collect();
            cuts.sort_unstable();
            cuts.push(all.len());
            let mut entries = Vec::new();
            let mut settled = 0;
            let mut from = 0;
            for c in cuts {
                entries.extend(all[from..c].iter().cloned());
                from = c;
                settle(&mut entries, settled);
                settled = entries.len();
            }
            let mut want: Vec<Entry> = alive.into_iter().cloned().collect();
            want.sort_by_key(|e| e.start);
            proptest::prop_assert_eq!(entries, want);
        }
    }

    #[test]
    fn links_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "1000 100 secret\n").unwrap();
        std::os::unix::fs::symlink(&secret, dir.path().join("perf-10.map")).unwrap();
        let mut m = PerfMaps::in_dir(dir.path());
        assert_eq!(name(&mut m, 10, 0x1000, 0), None);
    }
}
