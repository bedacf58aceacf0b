//! A cache that forgets what was not used for a whole generation.
//!
//! Addresses are sampled from a working set that drifts: a long run on a
//! busy machine meets ever more distinct kernel and library addresses (each
//! instruction a leaf can stop at is one), while what is sampled in any
//! minute stays about the same. A cache bounded by size only grew for the
//! whole of a 30-minute soak; two generations hold what was used in the
//! last one or two, and an address that comes back after that is looked up
//! again.

use std::borrow::Borrow;
use std::hash::Hash;

use rustc_hash::FxHashMap;

/// Entries used in the current generation, and in the one before.
pub struct Generations<K, V> {
    current: FxHashMap<K, V>,
    previous: FxHashMap<K, V>,
}

impl<K, V> Default for Generations<K, V> {
    fn default() -> Self {
        Generations {
            current: FxHashMap::default(),
            previous: FxHashMap::default(),
        }
    }
}

impl<K: Hash + Eq, V> Generations<K, V> {
    /// The value of `key`, if held (either generation).
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.current.get(key).or_else(|| self.previous.get(key))
    }

    /// Whether `key` is held; one of the older generation moves to the
    /// current one (it is in use).
    pub fn touch(&mut self, key: K) -> bool {
        if self.current.contains_key(&key) {
            return true;
        }
        match self.previous.remove(&key) {
            Some(v) => {
                self.current.insert(key, v);
                true
            }
            None => false,
        }
    }

    /// Holds `value` in the current generation (moved there if the older
    /// one held `key`).
    pub fn insert(&mut self, key: K, value: V) {
        self.previous.remove(&key);
        self.current.insert(key, value);
    }

    /// Forgets `key` in both generations.
    pub fn remove(&mut self, key: &K) {
        self.current.remove(key);
        self.previous.remove(key);
    }

    /// A new generation begins: what was not used in the last two goes.
    pub fn age(&mut self) {
        self.previous = std::mem::take(&mut self.current);
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.current.clear();
        self.previous.clear();
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_used_survives_aging_and_what_is_not_goes_after_two() {
        let mut g: Generations<u64, &str> = Generations::default();
        g.insert(1, "hot");
        g.insert(2, "cold");
        g.insert(2, "cold again");
        g.age();
        // Both held for a generation.
        assert_eq!(g.len(), 2);
        assert_eq!(g.get(&2), Some(&"cold again"));
        assert!(g.touch(1));
        g.age();
        assert_eq!(g.get(&1), Some(&"hot"));
        assert_eq!(g.get(&2), None);
        assert!(!g.touch(2));
        assert_eq!(g.len(), 1);
        // Inserting what the older generation holds moves it, not copies it.
        g.insert(1, "hot");
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn entries_go_from_both_generations() {
        let mut g: Generations<u64, u64> = Generations::default();
        g.insert(1, 10);
        g.age();
        g.insert(2, 20);
        g.insert(3, 30);
        g.remove(&1);
        assert_eq!(g.get(&1), None);
        assert_eq!((g.get(&2), g.get(&3), g.len()), (Some(&20), Some(&30), 2));
        g.clear();
        assert!(g.is_empty());
    }
}
