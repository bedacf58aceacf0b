//! The live page's history: the intervals its timeline, heat map, past
//! frames and ranges are made from.
//!
//! Only the newest frames stay in memory. Older ones are written, compactly
//! (see [`FlameTree::encode`]), to a temporary file nobody else can open
//! (unlinked from the start), and read back when a page asks for them: a
//! whole-system interval on a busy machine holds ~280 KB of tree, so a
//! history kept in memory was tens of megabytes of a long run's RSS, and
//! grew for its first minutes. `--history` and `--history-mb` bound what is
//! kept (the file's bytes count, and what is in memory); the space of
//! intervals that fall out of the history is handed back to the file
//! system (a hole is punched where they were).

use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use prost::encoding::{decode_varint, encode_varint};

use super::FeedFrame;
use crate::output::frames::tree::FlameTree;
use crate::output::frames::Frame;

/// Frames kept in memory, newest first: the one clients stream and the one
/// before (what a page that just connected asks for).
const IN_MEMORY: usize = 2;

/// See the module's doc.
pub(crate) struct History {
    max_len: usize,
    max_bytes: u64,
    entries: VecDeque<Entry>,
    /// Bytes the entries hold, in memory or in the file.
    held: u64,
    /// Where older frames go; None: kept in memory (no temporary file could
    /// be made, or writing one failed).
    spill: Option<Spill>,
}

struct Entry {
    index: u64,
    /// What `history.json` says of it.
    summary: serde_json::Value,
    kept: Located,
    bytes: u64,
}

struct Spill {
    file: Arc<File>,
    /// Where the next frame goes (the file only grows; what falls out of
    /// the history becomes a hole).
    end: u64,
}

/// Where a frame of the history is: in memory, or in `file` at `at`, `len`
/// bytes, with `shell`, the frame without its trees. Found under the lock
/// and read after it (a read from the file never holds up the processing
/// thread's next push).
#[derive(Clone)]
pub(crate) enum Located {
    Memory(Arc<FeedFrame>),
    File {
        file: Arc<File>,
        shell: Arc<FeedFrame>,
        at: u64,
        len: usize,
    },
}

impl Located {
    /// The frame; None if its bytes could not be read back whole (its
    /// interval fell out of the history meanwhile).
    pub fn load(self) -> Option<Arc<FeedFrame>> {
        match self {
            Located::Memory(f) => Some(f),
            Located::File {
                file,
                shell,
                at,
                len,
            } => {
                let mut bytes = vec![0; len];
                file.read_exact_at(&mut bytes, at).ok()?;
                decode(&bytes, &shell).map(Arc::new)
            }
        }
    }
}

impl History {
    /// A history of at most `max_len` intervals and `max_bytes` bytes.
    pub fn new(max_len: usize, max_bytes: u64) -> History {
        // Unnamed from the start (O_TMPFILE where the file system has it):
        // no path another user could race for or read. In $TMPDIR if set,
        // else /var/tmp: /tmp is often a tmpfs, whose files are memory.
        let dir = match std::env::var_os("TMPDIR") {
            Some(_) => std::env::temp_dir(),
            None => std::path::PathBuf::from("/var/tmp"),
        };
        let spill = tempfile::tempfile_in(&dir)
            .or_else(|_| tempfile::tempfile())
            .map(|file| Spill {
                file: Arc::new(file),
                end: 0,
            })
            .map_err(|e| {
                eprintln!(
                    "profile: warning: the live page keeps its history in memory (no temporary file: {e})"
                )
            })
            .ok();
        History {
            max_len: max_len.max(1),
            max_bytes,
            entries: VecDeque::new(),
            held: 0,
            spill,
        }
    }

    /// Adds the newest frame, moves older ones to the file, and drops the
    /// oldest while more than the bounds are kept (the newest always stays).
    pub fn push(&mut self, frame: Arc<FeedFrame>) {
        let bytes = frame.bytes();
        self.held += bytes;
        self.entries.push_back(Entry {
            index: frame.index,
            summary: frame.summary(),
            kept: Located::Memory(frame),
            bytes,
        });
        let older = self.entries.len().saturating_sub(IN_MEMORY);
        for i in (0..older).rev() {
            if !matches!(self.entries[i].kept, Located::Memory(_)) {
                break;
            }
            self.spill_entry(i);
        }
        while self.entries.len() > 1
            && (self.entries.len() > self.max_len || self.held > self.max_bytes)
        {
            if let Some(old) = self.entries.pop_front() {
                self.held = self.held.saturating_sub(old.bytes);
                if let Located::File { file, at, len, .. } = &old.kept {
                    punch_hole(file, *at, *len);
                }
            }
        }
    }

    /// Writes entry `i`'s trees to the file (if there is one).
    fn spill_entry(&mut self, i: usize) {
        let Some(spill) = &mut self.spill else { return };
        let entry = &mut self.entries[i];
        let Located::Memory(frame) = &entry.kept else {
            return;
        };
        let bytes = encode(frame);
        if let Err(e) = spill.file.write_all_at(&bytes, spill.end) {
            eprintln!(
                "profile: warning: the live page keeps its history in memory from now on (writing its temporary file: {e})"
            );
            self.spill = None;
            return;
        }
        let shell = Arc::new(frame.shell());
        self.held = self.held - entry.bytes + bytes.len() as u64;
        entry.bytes = bytes.len() as u64;
        entry.kept = Located::File {
            file: spill.file.clone(),
            shell,
            at: spill.end,
            len: bytes.len(),
        };
        spill.end += bytes.len() as u64;
    }

    /// The summaries of the kept intervals, oldest first.
    pub fn summaries(&self) -> Vec<serde_json::Value> {
        self.entries.iter().map(|e| e.summary.clone()).collect()
    }

    /// Interval `index`, if kept.
    pub fn locate(&self, index: u64) -> Option<Located> {
        self.locate_range(index, index).pop()
    }

    /// The kept intervals `first..=last`, oldest first.
    pub fn locate_range(&self, first: u64, last: u64) -> Vec<Located> {
        self.entries
            .iter()
            .filter(|e| (first..=last).contains(&e.index))
            .map(|e| e.kept.clone())
            .collect()
    }

    /// Intervals kept and the bytes they hold (memory and file).
    #[cfg(test)]
    fn held(&self) -> (usize, u64) {
        (self.entries.len(), self.held)
    }
}

/// A frame's trees (and diff colours), checked by a CRC.
fn encode(frame: &FeedFrame) -> Vec<u8> {
    let mut out = vec![0; 4];
    encode_varint(frame.index, &mut out);
    frame.frame.tree.encode(&mut out);
    match &frame.own {
        Some(own) => {
            out.push(1);
            own.encode(&mut out);
        }
        None => out.push(0),
    }
    match &frame.frame.deltas {
        Some(d) => {
            out.push(1);
            encode_varint(d.len() as u64, &mut out);
            for (k, v) in d.iter() {
                out.extend_from_slice(&k.to_le_bytes());
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        None => out.push(0),
    }
    let crc = crc32fast::hash(&out[4..]);
    out[..4].copy_from_slice(&crc.to_le_bytes());
    out
}

/// The frame `encode` wrote, around `shell`'s other fields; None if the
/// bytes are not one whole frame of that interval.
fn decode(bytes: &[u8], shell: &FeedFrame) -> Option<FeedFrame> {
    let (crc, body) = bytes.split_first_chunk::<4>()?;
    if u32::from_le_bytes(*crc) != crc32fast::hash(body) {
        return None;
    }
    let mut buf = body;
    if decode_varint(&mut buf).ok()? != shell.index {
        return None;
    }
    let tree = FlameTree::decode(&mut buf)?;
    let flag = |buf: &mut &[u8]| -> Option<bool> {
        let (f, rest) = buf.split_first()?;
        *buf = rest;
        Some(*f == 1)
    };
    let own = if flag(&mut buf)? {
        Some(Arc::new(FlameTree::decode(&mut buf)?))
    } else {
        None
    };
    let deltas = if flag(&mut buf)? {
        let n = decode_varint(&mut buf).ok()?;
        if n > buf.len() as u64 / 12 {
            return None;
        }
        let mut d = crate::output::frames::arrange::PrefixMap::default();
        for _ in 0..n {
            let (k, rest) = buf.split_first_chunk::<8>()?;
            let (v, rest) = rest.split_first_chunk::<4>()?;
            d.insert(u64::from_le_bytes(*k), f32::from_le_bytes(*v));
            buf = rest;
        }
        Some(Arc::new(d))
    } else {
        None
    };
    buf.is_empty().then(|| FeedFrame {
        index: shell.index,
        last: shell.last,
        frame: Frame {
            tree: Arc::new(tree),
            deltas,
            fit: shell.frame.fit,
            info: shell.frame.info.clone(),
            comm_slots: shell.frame.comm_slots.clone(),
        },
        own,
        top: shell.top.clone(),
    })
}

/// Hands the space of `len` bytes at `at` back to the file system (best
/// effort: a file system without holes keeps them until the run ends).
fn punch_hole(file: &File, at: u64, len: usize) {
    let (Ok(at), Ok(len)) = (libc::off_t::try_from(at), libc::off_t::try_from(len)) else {
        return;
    };
    // SAFETY: fallocate on an open file; the range is one the history
    // wrote and no longer refers to.
    unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            at,
            len,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::frames::layout::FrameInfo;

    fn frame(index: u64, lines: &[&str]) -> Arc<FeedFrame> {
        let lines: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        let info = FrameInfo {
            number: index,
            title: format!("interval {index}"),
            ..FrameInfo::default()
        };
        let mut f = Frame::from_lines(&lines, Default::default(), info);
        f.deltas = Some(Arc::new([(7u64, 1.5f32), (9, -2.0)].into_iter().collect()));
        let mut f = FeedFrame::new(index, index, f);
        f.own = Some(Arc::new(FlameTree::from_folded(&lines[..1])));
        Arc::new(f)
    }

    #[test]
    fn older_frames_read_back_from_the_file_as_they_were() {
        let mut h = History::new(100, 1 << 30);
        assert!(h.spill.is_some());
        for i in 0..5 {
            h.push(frame(i, &[&format!("p;f{i} 3"), "p;g 2", "q;h 1"]));
        }
        // The two newest in memory, the rest in the file.
        let kinds: Vec<bool> = h
            .entries
            .iter()
            .map(|e| matches!(e.kept, Located::Memory(_)))
            .collect();
        assert_eq!(kinds, [false, false, false, true, true]);
        for i in 0..5 {
            let f = h.locate(i).unwrap().load().unwrap();
            let want = frame(i, &[&format!("p;f{i} 3"), "p;g 2", "q;h 1"]);
            assert_eq!(f.index, i);
            assert_eq!(f.frame.tree.folded_lines(), want.frame.tree.folded_lines());
            assert_eq!(f.own_tree().folded_lines(), want.own_tree().folded_lines());
            assert_eq!(f.frame.info.title, format!("interval {i}"));
            assert_eq!(f.frame.deltas.as_ref().unwrap().get(&9), Some(&-2.0));
            assert_eq!(f.top, want.top);
        }
        assert_eq!(h.locate_range(1, 3).len(), 3);
        assert!(h.locate(5).is_none());
        assert_eq!(h.summaries().len(), 5);
    }

    #[test]
    fn the_bounds_hold_and_what_falls_out_cannot_be_read() {
        let mut h = History::new(3, 1 << 30);
        for i in 0..10 {
            h.push(frame(i, &["p;f 1"]));
        }
        assert_eq!(h.held().0, 3);
        assert!(h.locate(6).is_none());
        // A byte bound of one frame keeps the newest only.
        let mut h = History::new(100, 1);
        let gone = {
            h.push(frame(0, &["p;f 1"]));
            h.push(frame(1, &["p;f 1"]));
            h.push(frame(2, &["p;f 1"]));
            h.locate(2).unwrap()
        };
        assert_eq!(h.held().0, 1);
        assert_eq!(gone.load().unwrap().index, 2);
    }

    #[test]
    fn without_a_file_frames_stay_in_memory_within_the_bounds() {
        let mut h = History::new(3, 1 << 30);
        h.spill = None;
        for i in 0..6 {
            h.push(frame(i, &["p;f 1"]));
        }
        assert_eq!(h.held().0, 3);
        assert!(h
            .entries
            .iter()
            .all(|e| matches!(e.kept, Located::Memory(_))));
        assert_eq!(h.locate(3).unwrap().load().unwrap().index, 3);
    }

    proptest::proptest! {
        /// Whatever the file holds where a frame should be (a hole, another
        /// run's bytes, a flipped bit), reading it never panics, and a
        /// frame changed anywhere is refused.
        #[test]
        fn any_bytes_read_without_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            flip in 0usize..4096,
        ) {
            let f = frame(4, &["p;f 3", "p;g;h 2"]);
            let shell = f.shell();
            let _ = decode(&bytes, &shell);
            let _ = FlameTree::decode(&mut &bytes[..]);
            let mut good = encode(&f);
            let at = flip % good.len();
            good[at] ^= 0x20;
            proptest::prop_assert!(decode(&good, &shell).is_none());
        }
    }

    #[test]
    fn damaged_or_foreign_bytes_are_refused() {
        let f = frame(4, &["p;f 3", "p;g 2"]);
        let shell = f.shell();
        let bytes = encode(&f);
        assert!(decode(&bytes, &shell).is_some());
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(decode(&bad, &shell).is_none(), "CRC");
        // A hole (zeros) where the frame was.
        assert!(decode(&vec![0; bytes.len()], &shell).is_none());
        // Another interval's bytes.
        assert!(decode(&encode(&frame(5, &["p;f 3"])), &shell).is_none());
    }
}
