//! Least-recently-used cache of prompt embeddings, so a repeated prompt (or the shared empty
//! negative prompt) skips the text encoder.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use crate::stages::EncodedPrompt;

/// `(prompt, allow_empty)`: the two fields of an encode request.
pub type PromptKey = (String, bool);

/// The cache the job runners share. A plain mutex rather than an actor: every critical section is
/// a map lookup or insert with no `.await` inside, so a lock is cheaper than a message round trip.
#[derive(Debug)]
pub struct PromptCache {
    lru: Mutex<Lru<PromptKey, Arc<EncodedPrompt>>>,
}

impl PromptCache {
    /// `capacity` 0 stores nothing.
    pub fn new(capacity: usize) -> Self {
        Self {
            lru: Mutex::new(Lru::new(capacity)),
        }
    }

    pub fn get(&self, key: &PromptKey) -> Option<Arc<EncodedPrompt>> {
        self.lock().get(key)
    }

    pub fn insert(&self, key: PromptKey, value: Arc<EncodedPrompt>) {
        self.lock().insert(key, value);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru<PromptKey, Arc<EncodedPrompt>>> {
        // A panic while holding the lock cannot leave the map half-updated in a way that matters
        // for a cache: keep serving from it.
        self.lru
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A bounded map evicting the entry used longest ago; `ticks` orders entries by last use.
#[derive(Debug)]
pub struct Lru<K, V> {
    capacity: usize,
    clock: u64,
    entries: HashMap<K, (V, u64)>,
    ticks: BTreeMap<u64, K>,
}

impl<K: Clone + Eq + Hash, V: Clone> Lru<K, V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            clock: 0,
            entries: HashMap::new(),
            ticks: BTreeMap::new(),
        }
    }

    pub fn get(&mut self, key: &K) -> Option<V> {
        self.clock += 1;
        let (value, tick) = self.entries.get_mut(key)?;
        self.ticks.remove(tick);
        *tick = self.clock;
        self.ticks.insert(self.clock, key.clone());
        Some(value.clone())
    }

    pub fn insert(&mut self, key: K, value: V) {
        if self.capacity == 0 {
            return;
        }
        self.clock += 1;
        if let Some((_, old)) = self.entries.insert(key.clone(), (value, self.clock)) {
            self.ticks.remove(&old);
        }
        self.ticks.insert(self.clock, key);
        while self.entries.len() > self.capacity {
            let Some((_, oldest)) = self.ticks.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used() {
        let mut lru = Lru::new(2);
        lru.insert("a", 1);
        lru.insert("b", 2);
        assert_eq!(lru.get(&"a"), Some(1));
        lru.insert("c", 3);
        assert_eq!(lru.get(&"b"), None, "b was used longest ago");
        assert_eq!(lru.get(&"a"), Some(1));
        assert_eq!(lru.get(&"c"), Some(3));
        lru.insert("c", 4);
        assert_eq!(lru.get(&"c"), Some(4));
        assert_eq!(lru.get(&"a"), Some(1));
        let mut off = Lru::new(0);
        off.insert("a", 1);
        assert_eq!(off.get(&"a"), None);
    }
}
