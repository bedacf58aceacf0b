//! First-fit allocation of ranges in a fixed space of numbered slots: the
//! unwind tables' rows, and the processes' mapping slots. Ranges given back
//! are coalesced with their neighbours and reused before the space grows.

/// A space of `capacity` slots handed out as ranges.
#[derive(Debug)]
pub struct Ranges {
    /// Free ranges (start, len) below `next`, sorted by start.
    free: Vec<(u32, u32)>,
    /// First slot never handed out (or given back at the top).
    next: u32,
    capacity: u32,
}

impl Ranges {
    /// A space of `capacity` slots, all free.
    pub fn new(capacity: u32) -> Ranges {
        Ranges {
            free: Vec::new(),
            next: 0,
            capacity,
        }
    }

    /// Slots in use.
    pub fn used(&self) -> u64 {
        u64::from(self.next) - self.free.iter().map(|(_, n)| u64::from(*n)).sum::<u64>()
    }

    /// A range of `n` slots, or None when the space has no room.
    pub fn alloc(&mut self, n: u32) -> Option<u32> {
        if n == 0 {
            return Some(0);
        }
        if let Some(i) = self.free.iter().position(|(_, len)| *len >= n) {
            let (start, len) = self.free[i];
            if len == n {
                self.free.remove(i);
            } else {
                self.free[i] = (start + n, len - n);
            }
            return Some(start);
        }
        let start = self.next;
        let end = start.checked_add(n)?;
        if end > self.capacity {
            return None;
        }
        self.next = end;
        Some(start)
    }

    /// Gives a range back.
    pub fn release(&mut self, start: u32, n: u32) {
        if n == 0 {
            return;
        }
        let i = self.free.partition_point(|(s, _)| *s < start);
        self.free.insert(i, (start, n));
        if i + 1 < self.free.len() && self.free[i].0 + self.free[i].1 == self.free[i + 1].0 {
            self.free[i].1 += self.free[i + 1].1;
            self.free.remove(i + 1);
        }
        if i > 0 && self.free[i - 1].0 + self.free[i - 1].1 == self.free[i].0 {
            self.free[i - 1].1 += self.free[i].1;
            self.free.remove(i);
        }
        // A free range at the top goes back to the bump pointer.
        if let Some(&(s, len)) = self.free.last() {
            if s + len == self.next {
                self.next = s;
                self.free.pop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_ranges_are_reused_and_coalesced() {
        let mut s = Ranges::new(1 << 17);
        let a = s.alloc(100).unwrap();
        let b = s.alloc(50).unwrap();
        let c = s.alloc(10).unwrap();
        assert_eq!((a, b, c), (0, 100, 150));
        s.release(a, 100);
        s.release(b, 50);
        assert_eq!(s.alloc(120), Some(0), "coalesced hole reused");
        s.release(c, 10);
        assert_eq!(s.used(), 120);
        assert_eq!(s.alloc(1 << 17), None, "over capacity");
    }

    #[test]
    fn a_range_given_back_at_the_top_lowers_the_bump_pointer() {
        let mut s = Ranges::new(10);
        let a = s.alloc(4).unwrap();
        let b = s.alloc(6).unwrap();
        assert_eq!(s.alloc(1), None, "full");
        s.release(b, 6);
        s.release(a, 4);
        assert_eq!(s.used(), 0);
        assert_eq!(s.alloc(10), Some(0), "the whole space again");
    }
}
