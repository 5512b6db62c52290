//! [`BoundedMap`]: the detectors' per-key state (an address, an account, a principal) in a fixed
//! capacity, so a flood of distinct keys costs bounded memory. A new key beyond the capacity
//! evicts the least recently seen one; keys idle past a retention are forgotten.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// Per-key state with a fixed capacity: a new key beyond it evicts the least recently seen
/// one, and keys idle past a retention are forgotten.
#[derive(Debug)]
pub(super) struct BoundedMap<K, V> {
    entries: HashMap<K, Slot<V>>,
    /// Keys by when they were last seen (a sequence number: event time may step back).
    recency: BTreeMap<u64, K>,
    next_sequence: u64,
    capacity: usize,
}

#[derive(Debug)]
struct Slot<V> {
    value: V,
    sequence: u64,
    last_seen: u64,
}

impl<K: Hash + Eq + Clone, V> BoundedMap<K, V> {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            recency: BTreeMap::new(),
            next_sequence: 0,
            capacity: capacity.max(1),
        }
    }

    /// The state of `key`, made by `new` if absent; marks it the most recently seen.
    pub(super) fn touch(&mut self, key: K, now: u64, new: impl FnOnce() -> V) -> &mut V {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        if self.entries.len() >= self.capacity
            && !self.entries.contains_key(&key)
            && let Some((_, oldest)) = self.recency.pop_first()
        {
            self.entries.remove(&oldest);
        }
        match self.entries.entry(key) {
            Entry::Occupied(occupied) => {
                let slot = occupied.into_mut();
                if let Some(key) = self.recency.remove(&slot.sequence) {
                    self.recency.insert(sequence, key);
                }
                slot.sequence = sequence;
                slot.last_seen = now;
                &mut slot.value
            }
            Entry::Vacant(vacant) => {
                self.recency.insert(sequence, vacant.key().clone());
                &mut vacant
                    .insert(Slot {
                        value: new(),
                        sequence,
                        last_seen: now,
                    })
                    .value
            }
        }
    }

    /// Forgets the keys last seen before `cutoff`.
    pub(super) fn forget_seen_before(&mut self, cutoff: u64) {
        while let Some((_, key)) = self.recency.first_key_value() {
            match self.entries.get(key) {
                Some(slot) if slot.last_seen >= cutoff => break,
                _ => {
                    if let Some((_, key)) = self.recency.pop_first() {
                        self.entries.remove(&key);
                    }
                }
            }
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_seen_key_makes_room() {
        let mut map = BoundedMap::new(2);
        *map.touch("a", 1, || 0) += 1;
        *map.touch("b", 2, || 0) += 1;
        *map.touch("a", 3, || 0) += 1; // "a" is now the most recent.
        *map.touch("c", 4, || 0) += 1; // evicts "b".
        assert_eq!(map.len(), 2);
        assert_eq!(*map.touch("a", 5, || 0), 2, "a kept its state");
        assert_eq!(
            *map.touch("b", 6, || 0),
            0,
            "b was evicted and starts afresh"
        );
    }
}
