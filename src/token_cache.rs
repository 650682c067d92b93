//! Tokens that passed every check, remembered so the next request with the same token skips the
//! signature check. Keyed by the token's SHA-256, never the token itself; bounded; entries carry
//! what the request path needs and are re-checked against the clock on every hit.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use serde_json::{Map, Value};

/// SHA-256 of a token.
pub type Digest = [u8; 32];

/// Hashes a token for use as a cache key.
pub fn digest(token: &str) -> Digest {
    hmac_sha256::Hash::hash(token.as_bytes())
}

/// What a verified token left behind.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Key-set generation the signature was checked against.
    pub generation: u64,
    /// `exp`, re-checked on every hit.
    pub exp: Option<u64>,
    /// `nbf`, re-checked on every hit.
    pub nbf: Option<u64>,
    /// The payload segment as received, for `forward_payload_header`.
    pub payload_segment: Rc<str>,
    /// Every claim, for headers and rules.
    pub claims: Rc<Map<String, Value>>,
}

/// A bounded map from token digest to [`Entry`] for one provider. When full, the oldest entry
/// goes first: simple, O(1), and a hot token that is evicted costs one signature check.
#[derive(Debug, Clone, Default)]
pub struct TokenCache {
    capacity: usize,
    entries: HashMap<Digest, Entry>,
    order: VecDeque<Digest>,
}

impl TokenCache {
    /// An empty cache holding at most `capacity` entries; 0 keeps nothing.
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The entry for `digest` if it was verified against key-set `generation` and is still
    /// inside its validity window at `now` (seconds) with `skew`. Stale entries are dropped.
    pub fn get(&mut self, digest: &Digest, generation: u64, now: u64, skew: u64) -> Option<&Entry> {
        let entry = self.entries.get(digest)?;
        let expired = entry.exp.is_some_and(|exp| now > exp.saturating_add(skew));
        let early = entry.nbf.is_some_and(|nbf| nbf > now.saturating_add(skew));
        if entry.generation != generation || expired || early {
            self.entries.remove(digest);
            return None;
        }
        self.entries.get(digest)
    }

    /// Remembers a verified token.
    pub fn insert(&mut self, digest: Digest, entry: Entry) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.insert(digest, entry).is_some() {
            return;
        }
        self.order.push_back(digest);
        if self.entries.len() == self.capacity {
            self.reserve_for_churn();
        }
        // `order` may still list digests already dropped by `get`; skip those while evicting.
        while self.entries.len() > self.capacity {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
        // Keep `order` from growing without bound when `get` drops many entries.
        if self.order.len() > self.capacity.saturating_mul(2) {
            let entries = &self.entries;
            self.order.retain(|d| entries.contains_key(d));
        }
    }

    /// Makes room for twice the capacity once the cache is full. From then on every insert
    /// evicts, and evictions leave deleted slots in the hash table; with the table at most half
    /// full, they are cleared in place, whereas a table sized for the capacity alone doubles at
    /// some later eviction. Growing when the cache fills makes its footprint final at that
    /// point. The eviction queue holds up to twice the capacity before it is compacted. Without
    /// the memory, the cache works as before.
    fn reserve_for_churn(&mut self) {
        let room = self.capacity.saturating_mul(2).saturating_add(1);
        let _ = self
            .entries
            .try_reserve(room.saturating_sub(self.entries.len()));
        let _ = self
            .order
            .try_reserve(room.saturating_sub(self.order.len()));
    }

    /// Forgets everything; used when the provider's key set changes.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    /// How many tokens are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn entry(generation: u64, exp: Option<u64>, nbf: Option<u64>) -> Entry {
        Entry {
            generation,
            exp,
            nbf,
            payload_segment: Rc::from("payload"),
            claims: Rc::new(Map::new()),
        }
    }

    #[test]
    fn key_is_the_sha256_of_the_token() {
        // FIPS 180-2 test vector: the cache never keeps the token text itself.
        let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let hex: String = digest("abc").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
    }

    #[test]
    fn hit_is_rechecked_against_exp_with_skew() {
        // Valid up to exp + skew inclusive, as the uncached check; gone one second later.
        let mut cache = TokenCache::new(10);
        cache.insert(digest("t"), entry(1, Some(NOW), None));
        assert!(cache.get(&digest("t"), 1, NOW + 60, 60).is_some());
        assert!(cache.get(&digest("t"), 1, NOW + 61, 60).is_none());
        assert!(
            cache.get(&digest("t"), 1, NOW, 60).is_none(),
            "dropped on expiry"
        );
    }

    #[test]
    fn hit_is_rechecked_against_nbf() {
        // A cached entry is never valid before its nbf minus skew.
        let mut cache = TokenCache::new(10);
        cache.insert(digest("t"), entry(1, None, Some(NOW + 61)));
        assert!(cache.get(&digest("t"), 1, NOW, 60).is_none());
    }

    #[test]
    fn entry_from_another_key_generation_is_a_miss() {
        // Tokens verified against keys that changed must be verified again.
        let mut cache = TokenCache::new(10);
        cache.insert(digest("t"), entry(1, None, None));
        assert!(cache.get(&digest("t"), 2, NOW, 60).is_none());
        assert!(cache.is_empty());
    }

    #[test]
    fn size_is_bounded_and_the_oldest_goes_first() {
        // The bound holds however many distinct tokens arrive.
        let mut cache = TokenCache::new(3);
        for i in 0..1000 {
            cache.insert(digest(&format!("t{i}")), entry(1, None, None));
            assert!(cache.len() <= 3);
        }
        assert!(cache.get(&digest("t996"), 1, NOW, 0).is_none());
        assert!(cache.get(&digest("t997"), 1, NOW, 0).is_some());
        assert!(cache.get(&digest("t999"), 1, NOW, 0).is_some());
    }

    #[test]
    fn eviction_order_stays_bounded_when_entries_expire() {
        // Entries dropped on lookup do not leave the eviction queue growing.
        let mut cache = TokenCache::new(2);
        for i in 0..100 {
            let d = digest(&format!("t{i}"));
            cache.insert(d, entry(1, Some(NOW), None));
            assert!(cache.get(&d, 1, NOW + 10, 0).is_none());
        }
        assert!(cache.order.len() <= 4);
    }

    #[test]
    fn allocation_stops_growing_once_the_cache_is_full() {
        // However many distinct tokens replace each other afterwards, neither the table nor the
        // eviction queue reallocates after the cache first fills.
        let capacity = 1000;
        let mut cache = TokenCache::new(capacity);
        for i in 0..capacity {
            cache.insert(digest(&format!("t{i}")), entry(1, None, None));
        }
        // The table's capacity dips while deleted slots wait to be cleared; it never rises.
        let (table, queue) = (cache.entries.capacity(), cache.order.capacity());
        for i in capacity..30 * capacity {
            cache.insert(digest(&format!("t{i}")), entry(1, None, None));
            assert!(cache.entries.capacity() <= table, "table grew at token {i}");
            assert_eq!(cache.order.capacity(), queue, "queue grew at token {i}");
        }
        assert_eq!(cache.len(), capacity);
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        // jwt_cache_size 0 turns the cache off.
        let mut cache = TokenCache::new(0);
        cache.insert(digest("t"), entry(1, None, None));
        assert!(cache.is_empty());
    }

    #[test]
    fn clear_forgets_everything() {
        // Used when a provider's key set changes.
        let mut cache = TokenCache::new(10);
        cache.insert(digest("t"), entry(1, None, None));
        cache.clear();
        assert!(cache.get(&digest("t"), 1, NOW, 0).is_none());
    }
}
