//! Compact storage for many short names that live as long as their owner:
//! a JIT's perf-map entries.
//!
//! A node service that keeps compiling writes a perf-map line per function
//! for as long as it runs, and every line whose code was not written over
//! stays named (it may still run). Held as one `Arc<str>` each, a name cost
//! ~100 bytes with its entry (allocation headers, rounding, the fat
//! pointer); here it is its bytes in a 64 KiB chunk and 8 bytes of
//! reference, and names whose entries went are reclaimed by compacting.

/// Bytes per chunk; a name never spans two (longer ones are cut at a
/// character boundary: perf-map lines are capped below this anyway).
const CHUNK: usize = 64 << 10;

/// Where one name is: its first byte's position over all chunks, and its
/// length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameRef {
    at: u32,
    len: u32,
}

/// Names appended into fixed-size chunks (no doubling: a chunk is
/// allocated at its full size once, so the slack is at most one chunk).
#[derive(Default)]
pub struct NameArena {
    chunks: Vec<Vec<u8>>,
}

impl NameArena {
    /// Stores `name`. None when the arena holds 4 GiB already.
    pub fn push(&mut self, name: &str) -> Option<NameRef> {
        let name = cut(name, CHUNK);
        let fits = self
            .chunks
            .last()
            .is_some_and(|c| c.capacity() - c.len() >= name.len());
        if !fits {
            if (self.chunks.len() + 1) * CHUNK > u32::MAX as usize {
                return None;
            }
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let index = self.chunks.len() - 1;
        let chunk = self.chunks.last_mut()?;
        let at = index * CHUNK + chunk.len();
        chunk.extend_from_slice(name.as_bytes());
        Some(NameRef {
            at: at as u32,
            len: name.len() as u32,
        })
    }

    /// The name `r` refers to ("" for a reference from another arena).
    pub fn get(&self, r: NameRef) -> &str {
        let (chunk, at) = (r.at as usize / CHUNK, r.at as usize % CHUNK);
        self.chunks
            .get(chunk)
            .and_then(|c| c.get(at..at + r.len as usize))
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    /// Bytes held in chunks.
    pub fn bytes(&self) -> usize {
        self.chunks.len() * CHUNK
    }

    /// When more than half of the arena is names nobody refers to, copies
    /// the names of `items` (`name` says where an item keeps its reference)
    /// into a new arena and points them there.
    pub fn compact<T>(&mut self, items: &mut [T], name: fn(&mut T) -> &mut NameRef) {
        if self.bytes() <= 2 * CHUNK {
            return;
        }
        let live: usize = items.iter_mut().map(|i| name(i).len as usize).sum();
        if self.bytes() < 2 * live {
            return;
        }
        let mut fresh = NameArena::default();
        for item in items {
            let r = name(item);
            let name = self.get(*r);
            // Cannot fail: the fresh arena holds less than this one.
            if let Some(n) = fresh.push(name) {
                *r = n;
            }
        }
        *self = fresh;
    }
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_back_across_chunks_and_after_compacting() {
        let mut a = NameArena::default();
        let mut refs: Vec<(NameRef, String)> = (0..20_000)
            .map(|i| {
                let s = format!("JS:*gen_{i} /srv/app.js:{i}:1");
                (a.push(&s).unwrap(), s)
            })
            .collect();
        assert!(a.chunks.len() > 5);
        for (r, s) in &refs {
            assert_eq!(a.get(*r), s);
        }
        // Keep one in ten: the arena shrinks and every kept name reads back.
        refs.retain(|(_, s)| s.ends_with("0:1"));
        let before = a.bytes();
        a.compact(&mut refs, |(r, _)| r);
        assert!(a.bytes() * 5 < before, "{} of {before}", a.bytes());
        for (r, s) in &refs {
            assert_eq!(a.get(*r), s);
        }
        // Mostly live: left as it is.
        let kept = a.bytes();
        a.compact(&mut refs, |(r, _)| r);
        assert_eq!(a.bytes(), kept);
    }

    #[test]
    fn a_name_longer_than_a_chunk_is_cut_at_a_character() {
        let mut a = NameArena::default();
        let long = "é".repeat(CHUNK);
        let r = a.push(&long).unwrap();
        assert!(a.get(r).len() <= CHUNK && a.get(r).len() >= CHUNK - 1);
        assert!(a.get(r).chars().all(|c| c == 'é'));
        let x = a.push("x").unwrap();
        assert_eq!(a.get(x), "x");
    }
}
