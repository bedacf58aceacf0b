//! Symbolized user frames of each address space, kept while they are
//! sampled.
//!
//! A frame is made once per (address space, address) and reused by every
//! later sample of it. Each space's frames are held in two
//! [`Generations`]: an address nobody sampled for a whole generation goes
//! (and is placed again, from the per-file symbol cache or the perf map, if
//! it comes back). A JIT service that keeps compiling makes new addresses
//! for as long as it runs: with a size bound only (a million frames
//! before), the cache grew for the whole of a 30-minute soak and was most
//! of its RSS growth.

use rustc_hash::FxHashMap;

use super::generations::Generations;
use crate::process::AspaceId;
use crate::profile::Frame;

/// An address as walked, and whether it is the leaf (a return address is
/// looked up one byte back).
pub type FrameAddr = (u64, bool);

/// See the module's doc.
#[derive(Default)]
pub struct FrameCache {
    spaces: FxHashMap<AspaceId, Generations<FrameAddr, Frame>>,
}

impl FrameCache {
    /// The frame of `key` in address space `id`, if cached.
    pub fn get(&self, id: AspaceId, key: &FrameAddr) -> Option<&Frame> {
        self.spaces.get(&id)?.get(key)
    }

    /// Whether `key` is cached; a frame of the older generation moves to
    /// the current one (it is in use).
    pub fn touch(&mut self, id: AspaceId, key: FrameAddr) -> bool {
        self.spaces.get_mut(&id).is_some_and(|g| g.touch(key))
    }

    /// Caches a frame in the current generation.
    pub fn insert(&mut self, id: AspaceId, key: FrameAddr, frame: Frame) {
        self.spaces.entry(id).or_default().insert(key, frame);
    }

    /// Forgets one frame (a JIT address no perf map named yet).
    pub fn remove(&mut self, id: AspaceId, key: &FrameAddr) {
        if let Some(g) = self.spaces.get_mut(&id) {
            g.remove(key);
        }
    }

    /// Keeps the address spaces `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(AspaceId) -> bool) {
        self.spaces.retain(|id, _| keep(*id));
    }

    /// A new generation begins: the frames not used in the last two go,
    /// and with them the spaces left with none.
    pub fn age(&mut self) {
        self.spaces.retain(|_, g| {
            g.age();
            !g.is_empty()
        });
    }

    /// Frames held.
    pub fn len(&self) -> usize {
        self.spaces.values().map(Generations::len).sum()
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
        c.age();
        // Both still there for a generation.
        assert_eq!(c.len(), 2);
        assert!(c.get(id, &(0x20, false)).is_some());
        // The hot one is used again; the cold one is not.
        assert!(c.touch(id, (0x10, true)));
        c.age();
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
        c.age();
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
