//! Symbolized user frames of each address space, kept while they are
//! sampled.
//!
//! A frame is made once per (address space, address) and reused by every
//! later sample of it. The cache holds two generations: what was looked up
//! or used in the current generation (10 s of sampling, see
//! [`FrameCache::end_interval`]), and the generation before.
//! Aging drops the older one, so an address nobody sampled for a whole
//! generation goes (and is placed again, from the per-file symbol cache or
//! the perf map, if it comes back). A JIT service that keeps compiling
//! makes new addresses for as long as it runs: with a size bound only (a
//! million frames before), the cache grew for the whole of a 30-minute soak
//! and was most of its RSS growth; with generations it holds what two
//! generations sample.

use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::process::AspaceId;
use crate::profile::Frame;

/// An address as walked, and whether it is the leaf (a return address is
/// looked up one byte back).
pub type FrameAddr = (u64, bool);

type Frames = FxHashMap<AspaceId, FxHashMap<FrameAddr, Frame>>;

/// Sampling time a generation lasts.
const GENERATION: Duration = Duration::from_secs(10);

/// See the module's doc.
#[derive(Default)]
pub struct FrameCache {
    current: Frames,
    previous: Frames,
    /// Sampling time since the current generation began.
    age: Duration,
}

impl FrameCache {
    /// The frame of `key` in address space `id`, if cached.
    pub fn get(&self, id: AspaceId, key: &FrameAddr) -> Option<&Frame> {
        [&self.current, &self.previous]
            .into_iter()
            .find_map(|g| g.get(&id)?.get(key))
    }

    /// Whether `key` is cached; a frame of the older generation moves to
    /// the current one (it is in use).
    pub fn touch(&mut self, id: AspaceId, key: FrameAddr) -> bool {
        if self.current.get(&id).is_some_and(|m| m.contains_key(&key)) {
            return true;
        }
        let Some(frame) = self.previous.get_mut(&id).and_then(|m| m.remove(&key)) else {
            return false;
        };
        self.insert(id, key, frame);
        true
    }

    /// Caches a frame in the current generation.
    pub fn insert(&mut self, id: AspaceId, key: FrameAddr, frame: Frame) {
        self.current.entry(id).or_default().insert(key, frame);
    }

    /// Forgets one frame (a JIT address no perf map named yet).
    pub fn remove(&mut self, id: AspaceId, key: &FrameAddr) {
        for g in [&mut self.current, &mut self.previous] {
            if let Some(m) = g.get_mut(&id) {
                m.remove(key);
            }
        }
    }

    /// Keeps the address spaces `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(AspaceId) -> bool) {
        self.current.retain(|id, _| keep(*id));
        self.previous.retain(|id, _| keep(*id));
    }

    /// An interval of `length` was symbolized: once a generation's worth
    /// of sampling time has passed, a new one starts, and the frames not
    /// used in the last two go.
    pub fn end_interval(&mut self, length: Duration) {
        self.age += length;
        if self.age >= GENERATION {
            self.previous = std::mem::take(&mut self.current);
            self.age = Duration::ZERO;
        }
    }

    /// Frames held.
    pub fn len(&self) -> usize {
        [&self.current, &self.previous]
            .into_iter()
            .flat_map(|g| g.values())
            .map(FxHashMap::len)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(name: &str) -> Frame {
        Frame::from(name)
    }

    #[test]
    fn a_frame_in_use_survives_aging_and_an_idle_one_goes() {
        let id = AspaceId { pid: 7, aspace: 1 };
        let mut c = FrameCache::default();
        c.insert(id, (0x10, true), frame("hot"));
        c.insert(id, (0x20, false), frame("cold"));
        c.end_interval(GENERATION);
        // Both still there for a generation.
        assert_eq!(c.len(), 2);
        assert!(c.get(id, &(0x20, false)).is_some());
        // The hot one is used again; the cold one is not.
        assert!(c.touch(id, (0x10, true)));
        c.end_interval(GENERATION);
        assert_eq!(&**c.get(id, &(0x10, true)).unwrap(), "hot");
        assert!(c.get(id, &(0x20, false)).is_none());
        assert!(!c.touch(id, (0x20, false)));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn spaces_and_frames_can_be_dropped_from_both_generations() {
        let a = AspaceId { pid: 1, aspace: 1 };
        let b = AspaceId { pid: 2, aspace: 1 };
        let mut c = FrameCache::default();
        c.insert(a, (1, false), frame("a1"));
        c.end_interval(GENERATION);
        c.insert(a, (2, false), frame("a2"));
        c.insert(b, (1, false), frame("b1"));
        c.remove(a, &(1, false));
        assert!(c.get(a, &(1, false)).is_none());
        c.retain(|id| id != b);
        assert!(c.get(b, &(1, false)).is_none());
        assert_eq!(c.len(), 1);
        // A space's frames are its own.
        assert!(c.get(b, &(2, false)).is_none());
    }
}
