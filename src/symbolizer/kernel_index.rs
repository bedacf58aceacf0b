//! The boot's copy of the core kernel's symbols (see [`super::kernel_text`]),
//! indexed by address and named on demand from the file.
//!
//! Given a kallsyms list, blazesym holds every line's name as an allocation
//! of its own: 5.7 MB for this kernel's 116,000 core symbols, a tenth of a
//! busy 999 Hz run's RSS. This keeps 12 bytes a symbol (its address and
//! where its line starts) and reads a name from the file the first time an
//! address needs it (the symbolizer caches each kernel address's frame).
//! It names as blazesym does from a kallsyms list: every line with a
//! non-zero address counts, sorted by address (file order among equal
//! addresses), and an address takes the first symbol at the highest address
//! at or below it (with one quirk of blazesym's, kept: see [`KernelIndex::name`]).

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

use anyhow::{bail, Result};

/// Longest line read back for a name (kallsyms names are at most 512).
const MAX_LINE: usize = 640;

/// Symbols of a kallsyms-format file, by address.
pub struct KernelIndex {
    file: File,
    /// Symbol addresses, sorted.
    addrs: Vec<u64>,
    /// Where each symbol's line starts in the file.
    lines: Vec<u32>,
}

impl KernelIndex {
    /// Indexes `file` (lines `ADDRESS TYPE NAME`; others are skipped).
    pub fn read(mut file: File) -> Result<KernelIndex> {
        file.seek(SeekFrom::Start(0))?;
        let mut syms: Vec<(u64, u32)> = Vec::new();
        let mut reader = BufReader::new(&file);
        let mut line = Vec::new();
        let mut at = 0u64;
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)?;
            if n == 0 {
                break;
            }
            if let Some((addr, _)) = parse(&line) {
                let Ok(pos) = u32::try_from(at) else {
                    bail!("kernel symbol list over 4 GiB");
                };
                syms.push((addr, pos));
            }
            at += n as u64;
        }
        // Stable: file order among equal addresses.
        syms.sort_by_key(|s| s.0);
        Ok(KernelIndex {
            addrs: syms.iter().map(|s| s.0).collect(),
            lines: syms.iter().map(|s| s.1).collect(),
            file,
        })
    }

    /// The symbol holding `addr` and `addr`'s offset from it; None below
    /// the first symbol or if its line can't be read back.
    pub fn name(&self, addr: u64) -> Option<(String, u64)> {
        let i = self.addrs.partition_point(|a| *a <= addr);
        let last = i.checked_sub(1)?;
        let at = self.addrs[last];
        let mut first = self.addrs.partition_point(|a| *a < at);
        // blazesym's lookup (find_match_or_lower_bound_by_key) takes the
        // first of equal addresses, except past the end of a run that
        // starts the list: then the last. Kept, so that a run that turns
        // to /proc/kallsyms names these addresses the same.
        if first == 0 && at != addr {
            first = last;
        }
        let mut buf = [0u8; MAX_LINE];
        let n = self
            .file
            .read_at(&mut buf, u64::from(self.lines[first]))
            .ok()?;
        let line = &buf[..n];
        let line = &line[..line.iter().position(|b| *b == b'\n').unwrap_or(n)];
        let (found, name) = parse(line)?;
        (found == at).then(|| (name.to_string(), addr - at))
    }

    /// Symbols indexed.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.addrs.len()
    }
}

/// A line's address (non-zero) and name, as blazesym reads a kallsyms line.
fn parse(line: &[u8]) -> Option<(u64, &str)> {
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_ascii_whitespace();
    let addr = u64::from_str_radix(words.next()?, 16).ok()?;
    let _kind = words.next()?;
    let name = words.next()?;
    (addr != 0).then_some((addr, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn names_follow_blazesyms_rules() {
        let mut f = tempfile::tempfile().unwrap();
        write!(
            f,
            "# a header\n\
             0000000000000000 A fixed_percpu_data\n\
             ffffffff81000100 t later_in_file\n\
             ffffffff81000000 T _stext\n\
             ffffffff81000000 T _text\n\
             short line\n\
             ffffffff81000200 T last\n"
        )
        .unwrap();
        let k = KernelIndex::read(f).unwrap();
        assert_eq!(k.len(), 4);
        let name = |a| k.name(a);
        assert_eq!(name(0xffffffff80ffffff), None, "below the first");
        // Equal addresses: the first in the file; past them, when they
        // start the list, the last (as blazesym does).
        assert_eq!(name(0xffffffff81000000), Some(("_stext".into(), 0)));
        assert_eq!(name(0xffffffff810000ff), Some(("_text".into(), 0xff)));
        // Sorted by address, not by line.
        assert_eq!(name(0xffffffff81000101), Some(("later_in_file".into(), 1)));
        assert_eq!(name(0xffffffff81000300), Some(("last".into(), 0x100)));
        assert_eq!(name(0xffffffff81000200), Some(("last".into(), 0)));
    }
}
