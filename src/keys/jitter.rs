//! When a fetched key set is refreshed: at 80% of its cache duration, spread by ±10% of it.
//!
//! Every sidecar of a rollout starts within seconds of the others and fetches its keys at once.
//! Refreshing all of them at exactly 80% would send the same burst to the identity provider every
//! cycle; a random point in 70–90% spreads the burst over a fifth of the cache duration, and every
//! refresh still lands before the keys expire. The source is SplitMix64, seeded per VM: this is
//! load spreading, not a secret.

/// The refresh schedule of one provider's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshJitter {
    /// The generator's state; `None` refreshes at exactly 80%.
    state: Option<u64>,
}

impl RefreshJitter {
    /// No spread: every refresh at exactly 80% of the cache duration.
    pub fn none() -> RefreshJitter {
        RefreshJitter { state: None }
    }

    /// A spread drawn from `seed`; two VMs with different seeds refresh at different times.
    pub fn seeded(seed: u64) -> RefreshJitter {
        RefreshJitter { state: Some(seed) }
    }

    /// Milliseconds after a key set is installed until it is refreshed.
    pub fn refresh_after_ms(&mut self, cache_duration_ms: u64) -> u64 {
        let base = cache_duration_ms - cache_duration_ms / 5;
        let Some(state) = &mut self.state else {
            return base;
        };
        let spread = cache_duration_ms / 10;
        let offset = split_mix(state) % (2 * spread + 1);
        base - spread + offset
    }
}

/// One step of SplitMix64.
fn split_mix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const CACHE_MS: u64 = 600_000;

    // Without a seed the refresh is at exactly 80%.
    #[test]
    fn unseeded_is_eighty_percent() {
        let mut jitter = RefreshJitter::none();
        assert_eq!(jitter.refresh_after_ms(CACHE_MS), 480_000);
        assert_eq!(jitter.refresh_after_ms(1000), 800);
    }

    // Seeded refreshes stay within 70–90%, cover that range evenly, and a seed replays exactly.
    #[test]
    fn seeded_refreshes_spread_over_seventy_to_ninety_percent() {
        let mut jitter = RefreshJitter::seeded(42);
        let draws: Vec<u64> = (0..10_000)
            .map(|_| jitter.refresh_after_ms(CACHE_MS))
            .collect();
        assert!(draws.iter().all(|ms| (420_000..=540_000).contains(ms)));
        // Four equal buckets over the range each get about a quarter of the draws.
        let mut buckets = [0usize; 4];
        for ms in &draws {
            buckets[((ms - 420_000) * 4 / 120_001) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|n| (2_200..=2_800).contains(n)),
            "{buckets:?}"
        );
        let mut replay = RefreshJitter::seeded(42);
        assert_eq!(replay.refresh_after_ms(CACHE_MS), draws[0]);
        let mut other = RefreshJitter::seeded(43);
        assert_ne!(other.refresh_after_ms(CACHE_MS), draws[0]);
    }

    // Many VMs started together (seeds from nearby clock readings) do not refresh together.
    #[test]
    fn a_rollout_is_spread() {
        let start_ns: u64 = 1_764_000_000_000_000_000;
        let mut per_second = std::collections::HashMap::new();
        for vm in 0..100 {
            let at = RefreshJitter::seeded(start_ns + vm * 1_000).refresh_after_ms(CACHE_MS);
            *per_second.entry(at / 1000).or_insert(0) += 1;
        }
        // Without the spread all 100 would fetch in the same second.
        let busiest = per_second.values().max().copied().unwrap_or(0);
        assert!(busiest <= 6, "{busiest} VMs refresh in one second");
        // The smallest cache duration still refreshes before it expires.
        assert!(RefreshJitter::seeded(7).refresh_after_ms(1000) < 1000);
    }
}
