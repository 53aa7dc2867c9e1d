//! How the replacement state finds a key's slot: hashing for keys of any
//! kind, an array for keys that are already small integers.
//!
//! The replacement state keeps its entries in a slab and orders them by
//! slot number, so the only thing that depends on the kind of key is this
//! key-to-slot map. The server's file identities need a hash map; the
//! cluster simulator numbers its objects `0..n`, where an array lookup is
//! cheaper than hashing and costs 4 bytes per object.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

/// A map from held keys to their slots in the replacement state.
pub trait KeyIndex<K> {
    /// The slot of `key`, or `None` when it is not held.
    fn slot(&self, key: &K) -> Option<u32>;
    /// Records that `key` is held in `slot` (it was not held before).
    fn insert(&mut self, key: K, slot: u32);
    /// Forgets `key` and returns its slot, or `None` when it was not held.
    fn remove(&mut self, key: &K) -> Option<u32>;
}

impl<K: Hash + Eq, S: BuildHasher> KeyIndex<K> for HashMap<K, u32, S> {
    fn slot(&self, key: &K) -> Option<u32> {
        self.get(key).copied()
    }

    fn insert(&mut self, key: K, slot: u32) {
        HashMap::insert(self, key, slot);
    }

    fn remove(&mut self, key: &K) -> Option<u32> {
        HashMap::remove(self, key)
    }
}

const NO_SLOT: u32 = u32::MAX;

/// Keys that are dense indices `0..n`: one array cell per possible key.
/// A key at or past `n` is not held until admitted, which grows the array.
#[derive(Debug, Clone, Default)]
pub struct DenseIndex {
    slots: Vec<u32>,
}

impl DenseIndex {
    /// An index sized for keys `0..keys`, so admitting them never grows it.
    pub fn new(keys: usize) -> Self {
        DenseIndex {
            slots: vec![NO_SLOT; keys],
        }
    }
}

impl KeyIndex<u32> for DenseIndex {
    fn slot(&self, key: &u32) -> Option<u32> {
        match self.slots.get(*key as usize) {
            Some(&slot) if slot != NO_SLOT => Some(slot),
            _ => None,
        }
    }

    fn insert(&mut self, key: u32, slot: u32) {
        let at = key as usize;
        if at >= self.slots.len() {
            self.slots.resize(at + 1, NO_SLOT);
        }
        self.slots[at] = slot;
    }

    fn remove(&mut self, key: &u32) -> Option<u32> {
        let cell = self.slots.get_mut(*key as usize)?;
        let slot = std::mem::replace(cell, NO_SLOT);
        (slot != NO_SLOT).then_some(slot)
    }
}
