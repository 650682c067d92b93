//! Gauges every VM reports into one host stat. Envoy runs one VM per worker thread and merges
//! wasm metrics of the same name into one stat, so a VM cannot set a gauge to its own value:
//! each reporter adds the difference to what it added before, and the stat holds the sum over
//! reporters. A reporter that stops withdraws what it added.

use crate::decision::token_cache::TokenCache;

/// Bytes in one page of wasm linear memory.
pub const WASM_PAGE_BYTES: u64 = 65_536;

/// What one reporter has added to a gauge so far.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reported {
    total: u64,
}

impl Reported {
    /// The change that makes this reporter's share `current`; `None` when it already is.
    pub fn update(&mut self, current: u64) -> Option<i64> {
        let delta = difference(current, self.total)?;
        self.total = current;
        Some(delta)
    }

    /// The change that takes this reporter's share out of the gauge.
    pub fn withdraw(&mut self) -> Option<i64> {
        self.update(0)
    }
}

/// `current - previous` as a gauge change, clamped to `i64`; `None` when zero.
fn difference(current: u64, previous: u64) -> Option<i64> {
    let delta = i128::from(current) - i128::from(previous);
    if delta == 0 {
        return None;
    }
    Some(i64::try_from(delta).unwrap_or(if delta > 0 { i64::MAX } else { i64::MIN }))
}

/// A gauge of the whole VM (its memory) that several root contexts of the VM may report:
/// whichever ticks moves it, and it is withdrawn when the last of them goes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VmReport {
    holders: usize,
    reported: Reported,
}

impl VmReport {
    /// A root context starts reporting.
    pub fn join(&mut self) {
        self.holders = self.holders.saturating_add(1);
    }

    /// The change that makes the VM's share `current`; `None` when it already is or when no
    /// root context reports (a late tick of one that left).
    pub fn update(&mut self, current: u64) -> Option<i64> {
        if self.holders == 0 {
            return None;
        }
        self.reported.update(current)
    }

    /// A root context stops reporting; when it was the last, the change that withdraws the VM's
    /// share.
    pub fn leave(&mut self) -> Option<i64> {
        self.holders = self.holders.saturating_sub(1);
        if self.holders == 0 {
            self.reported.withdraw()
        } else {
            None
        }
    }
}

/// Verified tokens remembered, over every provider's cache.
pub fn cache_entries(caches: &[TokenCache]) -> u64 {
    caches
        .iter()
        .map(|cache| u64::try_from(cache.len()).unwrap_or(u64::MAX))
        .fold(0, u64::saturating_add)
}

/// Bytes of linear memory for a size in wasm pages.
pub fn memory_bytes(pages: usize) -> u64 {
    u64::try_from(pages)
        .unwrap_or(u64::MAX)
        .saturating_mul(WASM_PAGE_BYTES)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::decision::token_cache::Entry;
    use serde_json::Map;
    use std::rc::Rc;

    /// The host stat: the sum of every change applied to it.
    fn apply(stat: &mut i64, change: Option<i64>) {
        *stat += change.unwrap_or(0);
    }

    #[test]
    fn reporters_add_up_to_the_sum_of_their_values() {
        // Two VMs moving one stat by differences leave it at the sum of their current values.
        let (mut a, mut b, mut stat) = (Reported::default(), Reported::default(), 0);
        apply(&mut stat, a.update(10));
        apply(&mut stat, b.update(5));
        apply(&mut stat, a.update(3));
        apply(&mut stat, b.update(8));
        assert_eq!(stat, 3 + 8);
        apply(&mut stat, a.withdraw());
        assert_eq!(stat, 8);
    }

    #[test]
    fn unchanged_value_reports_nothing() {
        // A tick with nothing new makes no host call.
        let mut r = Reported::default();
        assert_eq!(r.update(0), None);
        assert_eq!(r.update(7), Some(7));
        assert_eq!(r.update(7), None);
        assert_eq!(r.update(2), Some(-5));
        assert_eq!(r.withdraw(), Some(-2));
        assert_eq!(r.withdraw(), None);
    }

    #[test]
    fn huge_changes_clamp_instead_of_wrapping() {
        // A change beyond i64 saturates; it never flips sign.
        let mut r = Reported::default();
        assert_eq!(r.update(u64::MAX), Some(i64::MAX));
        assert_eq!(r.withdraw(), Some(i64::MIN));
    }

    #[test]
    fn vm_share_is_withdrawn_when_the_last_root_leaves() {
        // Two configurations on one VM report its memory once, and it goes with the last.
        let (mut vm, mut stat) = (VmReport::default(), 0);
        vm.join();
        vm.join();
        apply(&mut stat, vm.update(1000));
        apply(&mut stat, vm.update(1200));
        assert_eq!(stat, 1200);
        apply(&mut stat, vm.leave());
        assert_eq!(stat, 1200, "another root still reports");
        apply(&mut stat, vm.update(1300));
        apply(&mut stat, vm.leave());
        assert_eq!(stat, 0);
        assert_eq!(vm.update(5000), None, "a late tick after the last leave");
        assert_eq!(stat, 0);
    }

    #[test]
    fn cache_entries_sum_every_provider() {
        // The entries gauge counts the caches of all providers.
        let entry = || Entry {
            generation: 1,
            exp: None,
            nbf: None,
            header_segment: "h".into(),
            payload_segment: Rc::from("p"),
            claims: Rc::new(Map::new()),
            forwarded: Rc::default(),
        };
        let mut a = TokenCache::new(10);
        let mut b = TokenCache::new(10);
        let tag = |cache: &TokenCache, token: &str| cache.key(token).unwrap().tag;
        a.insert(tag(&a, "h.p.x"), entry());
        b.insert(tag(&b, "h.p.y"), entry());
        b.insert(tag(&b, "h.p.z"), entry());
        assert_eq!(cache_entries(&[a, b]), 3);
        assert_eq!(cache_entries(&[]), 0);
    }

    #[test]
    fn memory_is_pages_times_64_kib() {
        // wasm pages are 64 KiB.
        assert_eq!(memory_bytes(0), 0);
        assert_eq!(memory_bytes(17), 17 * 65_536);
        assert_eq!(memory_bytes(usize::MAX), u64::MAX);
    }
}
