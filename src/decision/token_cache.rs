//! Tokens that passed every check, remembered so the next request with the same token skips the
//! signature check. Bounded; entries carry what the request path needs and are re-checked against
//! the clock on every hit.
//!
//! An entry is found by a 128-bit tag of the token's signature segment and keeps the token's
//! header and payload segments, which a hit must match byte for byte. The tag is two SipHash-1-3
//! values under secret 128-bit keys that never leave the VM, from std's `RandomState` (seeded from
//! the host's random source). std derives a process's successive keys from one another, so the two
//! halves are counted as one keyed pseudo-random function of 64 bits, not two independent ones: a
//! different signature with the same tag, under the same header and payload, can only be guessed,
//! one request per guess at about 2^-64 each. So a hit is the very token that was verified, and the cache
//! never holds the token itself: header and payload are readable by anyone who sees the token and
//! authenticate nothing without the signature, of which only the tag is kept. The tag replaced a
//! SHA-256 of the signature: software SHA-256 in V8 cost about 1.5 µs per RS256 hit, the tag a
//! fraction of that (docs/performance.md). Tagging the signature alone (342 characters for RS256,
//! 86 for ES256) rather than the whole token keeps it cheap too: provider tokens often carry a
//! kilobyte of claims.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::rc::Rc;

use serde_json::{Map, Value};

use super::upstream::Forwarded;
use crate::config::Config;

/// The keyed tag of a token's signature segment.
pub type Tag = [u64; 2];

/// Where a token is looked up and stored: the tag of its signature segment, and the signed part
/// (`header.payload`) an entry must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheKey<'a> {
    /// The keyed tag of the signature segment.
    pub tag: Tag,
    /// `header.payload` as received.
    pub signing_input: &'a str,
}

/// The secret keys of one cache's tags.
#[derive(Debug, Clone, Default)]
struct Tagger {
    first: RandomState,
    second: RandomState,
}

impl Tagger {
    fn tag(&self, signature: &str) -> Tag {
        [
            self.first.hash_one(signature.as_bytes()),
            self.second.hash_one(signature.as_bytes()),
        ]
    }
}

/// What a verified token left behind.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Key-set generation the signature was checked against.
    pub generation: u64,
    /// `exp` (its whole-second floor), re-checked on every hit.
    pub exp: Option<u64>,
    /// `nbf` (its whole-second ceiling), re-checked on every hit.
    pub nbf: Option<u64>,
    /// The header segment as received; with the payload segment, what a hit must match.
    pub header_segment: Box<str>,
    /// The payload segment as received; with the header segment, what a hit must match.
    pub payload_segment: Rc<str>,
    /// Every claim, for rules.
    pub claims: Rc<Map<String, Value>>,
    /// The headers and filter state the token sends on, ready to apply.
    pub forwarded: Rc<Forwarded>,
}

impl Entry {
    /// Whether `signing_input` is this entry's `header.payload`, byte for byte.
    fn signs(&self, signing_input: &str) -> bool {
        signing_input.len() == self.header_segment.len() + 1 + self.payload_segment.len()
            && signing_input.starts_with(&*self.header_segment)
            && signing_input.ends_with(&*self.payload_segment)
            && signing_input.as_bytes().get(self.header_segment.len()) == Some(&b'.')
    }
}

/// A bounded map from signature tag to [`Entry`] for one provider. When full, the oldest entry
/// goes first: simple, O(1), and a hot token that is evicted costs one signature check.
#[derive(Debug, Clone, Default)]
pub struct TokenCache {
    capacity: usize,
    tagger: Tagger,
    entries: HashMap<Tag, Entry>,
    order: VecDeque<Tag>,
}

impl TokenCache {
    /// An empty cache holding at most `capacity` entries; 0 keeps nothing.
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity,
            tagger: Tagger::default(),
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// One cache per provider of `config`, each holding that provider's `jwt_cache_size`.
    pub fn per_provider(config: &Config) -> Vec<TokenCache> {
        config
            .providers
            .iter()
            .map(|provider| TokenCache::new(provider.jwt_cache_size))
            .collect()
    }

    /// The cache key of a compact token; `None` when it has no signature segment to tag, which
    /// parsing refuses anyway.
    pub fn key<'t>(&self, token: &'t str) -> Option<CacheKey<'t>> {
        let (signing_input, signature) = token.rsplit_once('.')?;
        Some(CacheKey {
            tag: self.tagger.tag(signature),
            signing_input,
        })
    }

    /// Whether the cache keeps anything at all (`jwt_cache_size` above 0); when it does not,
    /// callers skip computing keys.
    pub fn is_enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The entry for the token `key` describes if it was verified against key-set `generation`
    /// and is still inside its validity window at `now` (seconds) with `skew`. Stale entries are
    /// dropped; an entry whose signed part differs is left alone (it belongs to another token).
    pub fn get(
        &mut self,
        key: &CacheKey<'_>,
        generation: u64,
        now: u64,
        skew: u64,
    ) -> Option<&Entry> {
        let tag = &key.tag;
        let entry = self.entries.get(tag)?;
        if !entry.signs(key.signing_input) {
            return None;
        }
        let expired = entry.exp.is_some_and(|exp| now > exp.saturating_add(skew));
        let early = entry.nbf.is_some_and(|nbf| nbf > now.saturating_add(skew));
        if entry.generation != generation || expired || early {
            self.entries.remove(tag);
            return None;
        }
        self.entries.get(tag)
    }

    /// Remembers a verified token.
    pub fn insert(&mut self, tag: Tag, entry: Entry) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.insert(tag, entry).is_some() {
            return;
        }
        self.order.push_back(tag);
        if self.entries.len() == self.capacity {
            self.reserve_for_churn();
        }
        // `order` may still list tags already dropped by `get`; skip those while evicting.
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
            self.order.retain(|tag| entries.contains_key(tag));
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

    fn entry_for(token: &str, generation: u64, exp: Option<u64>, nbf: Option<u64>) -> Entry {
        let mut segments = token.split('.');
        Entry {
            generation,
            exp,
            nbf,
            header_segment: segments.next().unwrap().into(),
            payload_segment: Rc::from(segments.next().unwrap()),
            claims: Rc::new(Map::new()),
            forwarded: Rc::default(),
        }
    }

    fn key<'t>(cache: &TokenCache, token: &'t str) -> CacheKey<'t> {
        cache.key(token).unwrap()
    }

    fn insert(cache: &mut TokenCache, token: &str, generation: u64, exp: Option<u64>) {
        let tag = key(cache, token).tag;
        cache.insert(tag, entry_for(token, generation, exp, None));
    }

    #[test]
    fn key_is_a_keyed_tag_of_the_signature_segment() {
        // Only the signature is tagged, and only its tag is kept; the same signature tags alike in
        // one cache, and differently under another cache's secret keys.
        let (one, other) = (TokenCache::new(1), TokenCache::new(1));
        let found = key(&one, "header.payload.abc");
        assert_eq!(found.signing_input, "header.payload");
        assert_eq!(found.tag, key(&one, "other.claims.abc").tag);
        assert_ne!(found.tag, key(&one, "header.payload.abd").tag);
        assert_ne!(found.tag, key(&other, "header.payload.abc").tag);
        assert_ne!(found.tag[0], found.tag[1], "two keys");
    }

    #[test]
    fn token_without_a_dot_has_no_key() {
        // Nothing to tag; parsing refuses such a token anyway.
        assert!(TokenCache::new(1).key("opaque-token").is_none());
    }

    #[test]
    fn hit_requires_the_same_header_and_payload() {
        // A token that reuses a cached token's signature with another header or payload is a
        // miss, and does not evict the verified entry.
        let mut cache = TokenCache::new(10);
        insert(&mut cache, "h.p.sig", 1, None);
        for forged in [
            "h.q.sig",
            "g.p.sig",
            "h.p.p.sig",
            "hp.sig",
            "h.px.sig",
            "xh.p.sig",
            "h.p.x.sig",
        ] {
            assert!(
                cache.get(&key(&cache, forged), 1, NOW, 0).is_none(),
                "{forged}"
            );
        }
        assert!(cache.get(&key(&cache, "h.p.sig"), 1, NOW, 0).is_some());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn other_signature_is_a_miss() {
        // Same header and payload under another signature: not the verified token.
        let mut cache = TokenCache::new(10);
        insert(&mut cache, "h.p.sig", 1, None);
        assert!(cache.get(&key(&cache, "h.p.sig2"), 1, NOW, 0).is_none());
    }

    #[test]
    fn hit_is_rechecked_against_exp_with_skew() {
        // Valid up to exp + skew inclusive, as the uncached check; gone one second later.
        let mut cache = TokenCache::new(10);
        insert(&mut cache, "h.p.t", 1, Some(NOW));
        assert!(cache.get(&key(&cache, "h.p.t"), 1, NOW + 60, 60).is_some());
        assert!(cache.get(&key(&cache, "h.p.t"), 1, NOW + 61, 60).is_none());
        assert!(
            cache.get(&key(&cache, "h.p.t"), 1, NOW, 60).is_none(),
            "dropped on expiry"
        );
    }

    #[test]
    fn hit_is_rechecked_against_nbf() {
        // A cached entry is never valid before its nbf minus skew.
        let mut cache = TokenCache::new(10);
        let tag = key(&cache, "h.p.t").tag;
        cache.insert(tag, entry_for("h.p.t", 1, None, Some(NOW + 61)));
        assert!(cache.get(&key(&cache, "h.p.t"), 1, NOW, 60).is_none());
    }

    #[test]
    fn entry_from_another_key_generation_is_a_miss() {
        // Tokens verified against keys that changed must be verified again.
        let mut cache = TokenCache::new(10);
        insert(&mut cache, "h.p.t", 1, None);
        assert!(cache.get(&key(&cache, "h.p.t"), 2, NOW, 60).is_none());
        assert!(cache.is_empty());
    }

    #[test]
    fn size_is_bounded_and_the_oldest_goes_first() {
        // The bound holds however many distinct tokens arrive.
        let mut cache = TokenCache::new(3);
        for i in 0..1000 {
            insert(&mut cache, &format!("h.p.t{i}"), 1, None);
            assert!(cache.len() <= 3);
        }
        assert!(cache.get(&key(&cache, "h.p.t996"), 1, NOW, 0).is_none());
        assert!(cache.get(&key(&cache, "h.p.t997"), 1, NOW, 0).is_some());
        assert!(cache.get(&key(&cache, "h.p.t999"), 1, NOW, 0).is_some());
    }

    #[test]
    fn eviction_order_stays_bounded_when_entries_expire() {
        // Entries dropped on lookup do not leave the eviction queue growing.
        let mut cache = TokenCache::new(2);
        for i in 0..100 {
            let token = format!("h.p.t{i}");
            insert(&mut cache, &token, 1, Some(NOW));
            assert!(cache.get(&key(&cache, &token), 1, NOW + 10, 0).is_none());
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
            insert(&mut cache, &format!("h.p.t{i}"), 1, None);
        }
        // The table's capacity dips while deleted slots wait to be cleared; it never rises.
        let (table, queue) = (cache.entries.capacity(), cache.order.capacity());
        for i in capacity..30 * capacity {
            insert(&mut cache, &format!("h.p.t{i}"), 1, None);
            assert!(cache.entries.capacity() <= table, "table grew at token {i}");
            assert_eq!(cache.order.capacity(), queue, "queue grew at token {i}");
        }
        assert_eq!(cache.len(), capacity);
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        // jwt_cache_size 0 turns the cache off, and callers can tell.
        let mut cache = TokenCache::new(0);
        assert!(!cache.is_enabled());
        insert(&mut cache, "h.p.t", 1, None);
        assert!(cache.is_empty());
        assert!(TokenCache::new(1).is_enabled());
    }

    #[test]
    fn clear_forgets_everything() {
        // Used when a provider's key set changes.
        let mut cache = TokenCache::new(10);
        insert(&mut cache, "h.p.t", 1, None);
        cache.clear();
        assert!(cache.get(&key(&cache, "h.p.t"), 1, NOW, 0).is_none());
    }
}
