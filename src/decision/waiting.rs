//! Requests parked while their providers' keys load: which stream waits for which providers,
//! bounded, so that a flood of requests during an outage costs a bounded amount of memory.

use std::collections::BTreeMap;

use crate::config::ProviderId;

/// Paused streams by host context id, with the providers each waits for.
#[derive(Debug, Default)]
pub struct WaitingStreams {
    streams: BTreeMap<u32, Vec<ProviderId>>,
}

impl WaitingStreams {
    /// Parks stream `id` until one of `providers` has new keys. A stream already waiting is
    /// parked again (it was re-decided and still waits); a new one is refused (`false`) when
    /// `limit` streams wait already.
    pub fn park(&mut self, id: u32, providers: Vec<ProviderId>, limit: usize) -> bool {
        if !self.streams.contains_key(&id) && self.streams.len() >= limit {
            return false;
        }
        self.streams.insert(id, providers);
        true
    }

    /// Whether stream `id` is parked.
    pub fn contains(&self, id: u32) -> bool {
        self.streams.contains_key(&id)
    }

    /// Forgets a stream that ended, so it is never resumed.
    pub fn forget(&mut self, id: u32) {
        self.streams.remove(&id);
    }

    /// Takes every stream waiting for `provider`, in id order, to be decided again.
    pub fn take_waiting_for(&mut self, provider: ProviderId) -> Vec<u32> {
        let ready: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, providers)| providers.contains(&provider))
            .map(|(id, _)| *id)
            .collect();
        for id in &ready {
            self.streams.remove(id);
        }
        ready
    }

    /// How many streams wait.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether no stream waits.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    // Parking is bounded; a stream re-parked after a new decision does not count twice.
    #[test]
    fn parking_is_bounded() {
        let mut waiting = WaitingStreams::default();
        assert!(waiting.park(1, vec![0], 2));
        assert!(waiting.park(2, vec![1], 2));
        assert!(!waiting.park(3, vec![0], 2));
        assert!(waiting.park(1, vec![0, 1], 2));
        assert_eq!(waiting.len(), 2);
    }

    // Only the streams waiting for a provider are taken, once; ended streams are never taken.
    #[test]
    fn streams_are_taken_by_provider_once() {
        let mut waiting = WaitingStreams::default();
        waiting.park(1, vec![0], 10);
        waiting.park(2, vec![1], 10);
        waiting.park(3, vec![0, 1], 10);
        waiting.park(4, vec![0], 10);
        waiting.forget(4);
        assert_eq!(waiting.take_waiting_for(0), [1, 3]);
        assert_eq!(waiting.take_waiting_for(0), Vec::<u32>::new());
        assert_eq!(waiting.take_waiting_for(1), [2]);
        assert!(waiting.is_empty());
    }
}
