//! One key fetch for all the VMs of an Envoy: the choreography around [`KeyStore`], with the host
//! behind [`FetchHost`] (shared data and callouts), so that it runs, and is tested, without one.
//!
//! Per tick a VM (1) notes which leases it waited on were let go, reading leases before results,
//! because a fetcher publishes before it releases; (2) adopts every result another VM published;
//! (3) starts the fetches that are due, each under its source's lease, or waits for the VM that
//! holds the lease. The VM that fetches publishes its result and then releases the lease. A
//! configuration that goes away releases the leases of its fetches in flight, so its successor
//! does not wait for answers that will never come.

use std::collections::HashMap;

use crate::config::{HttpFetch, ProviderId};
use crate::keys::shared::{self, Channel, FetchRecord, SharedData, WriteError};
use crate::keys::store::{Fetch, KeyStore, Outcome, Response};

/// Slack beyond a fetch's own timeout before other VMs stop waiting for its result.
pub const LEASE_MARGIN_MS: u64 = 1_000;
/// Attempts at a compare-and-swap write before giving up for this tick.
const CAS_ATTEMPTS: usize = 3;

/// What the coordinator needs from the host: its shared data, and HTTP callouts.
pub trait FetchHost: SharedData {
    /// Starts an HTTP callout and returns its token; the answer comes back through
    /// [`FetchCoordinator::answer`].
    fn dispatch(&mut self, request: &HttpFetch) -> Result<u32, String>;
}

/// Whose fetch a result comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// This VM's own fetch.
    Own,
    /// Another VM's, adopted from shared data.
    Peer,
}

/// A provider's fetch that finished, here or in another VM: the caller logs it, counts it, clears
/// the provider's verified tokens when its keys changed, and re-decides the requests waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// The provider.
    pub provider: ProviderId,
    /// What the result did to its keys ([`Outcome::Updated`] or [`Outcome::Failed`]).
    pub outcome: Outcome,
    /// Whose fetch it was.
    pub origin: Origin,
    /// Whether the provider's key set changed (its verified tokens must be forgotten).
    pub keys_changed: bool,
}

/// Who fetches a key source now.
enum Lease {
    Acquired,
    HeldUntil(u64),
}

/// The fetches of one configuration in one VM.
#[derive(Debug, Default)]
pub struct FetchCoordinator {
    /// Shared-data channel of each provider's key source; `None` for inline keys.
    channels: Vec<Option<Channel>>,
    /// Fetches in flight, by callout token.
    pending: HashMap<u32, Fetch>,
}

impl FetchCoordinator {
    /// A coordinator for providers whose key sources use `channels` (by provider id).
    pub fn new(channels: Vec<Option<Channel>>) -> FetchCoordinator {
        FetchCoordinator {
            channels,
            pending: HashMap::new(),
        }
    }

    /// Fetches in flight.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn channel(&self, provider: ProviderId) -> Option<&Channel> {
        self.channels.get(provider)?.as_ref()
    }

    /// Adopts what other VMs published and starts the fetches due at `now_ms`.
    pub fn tick(
        &mut self,
        host: &mut dyn FetchHost,
        keys: &mut KeyStore,
        now_ms: u64,
    ) -> Vec<Settled> {
        // Leases are read before results: a fetcher publishes before it releases, so a lease
        // seen free here is never followed by a result missed below.
        let released: Vec<ProviderId> = keys
            .waiting_for_peer()
            .into_iter()
            .filter(|&provider| {
                self.channel(provider)
                    .is_some_and(|channel| lease_free(host, channel, now_ms))
            })
            .collect();
        let mut settled = Vec::new();
        for (provider, channel) in self.channels.iter().enumerate() {
            let Some(record) = channel
                .as_ref()
                .and_then(|channel| read(host, channel, now_ms))
            else {
                continue;
            };
            let before = keys.generation(provider);
            if let Some(outcome) = keys.adopt(provider, &record, now_ms) {
                settled.push(Settled {
                    provider,
                    outcome,
                    origin: Origin::Peer,
                    keys_changed: keys.generation(provider) != before,
                });
            }
        }
        for provider in released {
            keys.peer_released(provider, now_ms);
        }
        for fetch in keys.due_fetches(now_ms) {
            let lease = match self.channel(fetch.provider) {
                None => Lease::Acquired,
                Some(channel) => acquire(host, channel, now_ms, lease_deadline(&fetch, now_ms)),
            };
            match lease {
                Lease::Acquired => settled.extend(self.dispatch(host, keys, fetch, now_ms)),
                Lease::HeldUntil(until) => keys.wait_for_peer(&fetch, until),
            }
        }
        settled
    }

    /// Handles the answer to callout `token` (unknown tokens, such as those of a configuration
    /// that was replaced, are ignored).
    pub fn answer(
        &mut self,
        host: &mut dyn FetchHost,
        keys: &mut KeyStore,
        token: u32,
        response: Response<'_>,
        now_ms: u64,
    ) -> Vec<Settled> {
        match self.pending.remove(&token) {
            Some(fetch) => self.finish(host, keys, &fetch, response, now_ms),
            None => Vec::new(),
        }
    }

    /// The configuration is going away: its callouts will never be answered, so the leases they
    /// hold are freed for the VMs (or the configuration) waiting on the same key source.
    /// Returns how many fetches were in flight.
    pub fn release_all(&mut self, host: &mut dyn FetchHost) -> usize {
        let in_flight = self.pending.len();
        let pending = std::mem::take(&mut self.pending);
        for fetch in pending.values() {
            if let Some(channel) = self.channel(fetch.provider) {
                release(host, channel);
            }
        }
        in_flight
    }

    fn dispatch(
        &mut self,
        host: &mut dyn FetchHost,
        keys: &mut KeyStore,
        fetch: Fetch,
        now_ms: u64,
    ) -> Vec<Settled> {
        match host.dispatch(&fetch.request) {
            Ok(token) => {
                self.pending.insert(token, fetch);
                Vec::new()
            }
            // The host refused the callout (no such cluster): a fetch without an answer.
            Err(_) => {
                let failed = Response {
                    status: None,
                    body_size: 0,
                    body: &[],
                };
                self.finish(host, keys, &fetch, failed, now_ms)
            }
        }
    }

    /// Applies this VM's own fetch result and publishes it for the others.
    fn finish(
        &mut self,
        host: &mut dyn FetchHost,
        keys: &mut KeyStore,
        fetch: &Fetch,
        response: Response<'_>,
        now_ms: u64,
    ) -> Vec<Settled> {
        let provider = fetch.provider;
        let before = keys.generation(provider);
        let outcome = keys.on_response(fetch, response, now_ms);
        let result = match &outcome {
            Outcome::Next(next) => {
                if let Some(channel) = self.channel(provider) {
                    extend(host, channel, lease_deadline(next, now_ms));
                }
                let next = next.clone();
                return self.dispatch(host, keys, next, now_ms);
            }
            Outcome::Ignored => return Vec::new(),
            Outcome::Updated { .. } => Ok(response.body.to_vec()),
            Outcome::Failed { reason } => Err(reason.clone()),
        };
        if let Some(channel) = self.channel(provider) {
            publish(host, channel, now_ms, |last| {
                keys.record(provider, last, result.clone(), now_ms)
            });
            release(host, channel);
        }
        vec![Settled {
            provider,
            outcome,
            origin: Origin::Own,
            keys_changed: keys.generation(provider) != before,
        }]
    }
}

/// How long other VMs wait for this VM's fetch before trying themselves.
fn lease_deadline(fetch: &Fetch, now_ms: u64) -> u64 {
    now_ms
        .saturating_add(fetch.request.timeout_ms)
        .saturating_add(LEASE_MARGIN_MS)
}

/// Tries to take the fetch lease of `channel` until `deadline_ms`. When shared data fails, this
/// VM fetches on its own: an extra fetch beats requests that never get keys.
fn acquire(host: &mut dyn FetchHost, channel: &Channel, now_ms: u64, deadline_ms: u64) -> Lease {
    for _ in 0..CAS_ATTEMPTS {
        let Ok((value, cas)) = host.shared_get(&channel.lease_key) else {
            return Lease::Acquired;
        };
        let held_until = value
            .as_deref()
            .map_or(0, |value| shared::decode_lease(value, now_ms));
        if held_until > now_ms {
            return Lease::HeldUntil(held_until);
        }
        match host.shared_set(&channel.lease_key, &shared::encode_lease(deadline_ms), cas) {
            // Another VM changed the lease between our read and write: read it again.
            Err(WriteError::CasMismatch) => continue,
            Ok(()) | Err(WriteError::Refused(_)) => return Lease::Acquired,
        }
    }
    Lease::HeldUntil(deadline_ms)
}

/// Whether nobody holds the lease of `channel` at `now_ms`: released or lapsed. `false` when
/// shared data cannot be read, so a waiting VM keeps waiting until its own deadline.
fn lease_free(host: &dyn FetchHost, channel: &Channel, now_ms: u64) -> bool {
    match host.shared_get(&channel.lease_key) {
        Ok((value, _)) => {
            value
                .as_deref()
                .map_or(0, |value| shared::decode_lease(value, now_ms))
                <= now_ms
        }
        Err(_) => false,
    }
}

/// Extends a lease this VM holds (a discovery fetch is followed by the JWKS fetch).
fn extend(host: &mut dyn FetchHost, channel: &Channel, deadline_ms: u64) {
    let _ = host.shared_set(&channel.lease_key, &shared::encode_lease(deadline_ms), None);
}

/// Frees a lease so the next due fetch, by any VM, can start at once.
fn release(host: &mut dyn FetchHost, channel: &Channel) {
    let _ = host.shared_set(&channel.lease_key, &shared::encode_lease(0), None);
}

/// The last result published on `channel` that reads as this configuration's own record.
fn read(host: &dyn FetchHost, channel: &Channel, now_ms: u64) -> Option<FetchRecord> {
    let (value, _) = host.shared_get(&channel.result_key).ok()?;
    FetchRecord::decode(&value?, channel, now_ms)
}

/// Publishes a fetch result. `make` builds the record from the sequence currently published, so
/// concurrent publishers never reuse a number.
fn publish(
    host: &mut dyn FetchHost,
    channel: &Channel,
    now_ms: u64,
    mut make: impl FnMut(u64) -> Option<FetchRecord>,
) {
    for _ in 0..CAS_ATTEMPTS {
        let Ok((value, cas)) = host.shared_get(&channel.result_key) else {
            return;
        };
        let last = value
            .as_deref()
            .and_then(|value| FetchRecord::decode(value, channel, now_ms))
            .map_or(0, |record| record.sequence);
        let Some(record) = make(last) else {
            return;
        };
        match host.shared_set(&channel.result_key, &record.encode(channel), cas) {
            Err(WriteError::CasMismatch) => continue,
            Ok(()) | Err(WriteError::Refused(_)) => return,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jwt_simple::prelude::Ed25519KeyPair;

    use super::*;
    use crate::config::Config;
    use crate::keys::shared::MemorySharedData;
    use crate::keys::store::Lookup;

    const T0: u64 = 1_700_000_000_000;
    /// The provider's callout timeout (2 s) plus the lease margin.
    const LEASE_MS: u64 = 2_000 + LEASE_MARGIN_MS;

    /// One VM's view of the host: the shared space, and the callouts it started.
    struct FakeHost {
        /// This VM's view of one Envoy's shared data.
        shared: MemorySharedData,
        dispatched: Vec<(u32, HttpFetch)>,
        next_token: u32,
        /// Callouts the host refuses (a cluster that does not exist).
        refuse_dispatch: bool,
    }

    impl FakeHost {
        fn on(shared: &MemorySharedData) -> FakeHost {
            FakeHost {
                shared: shared.clone_view(),
                dispatched: Vec::new(),
                next_token: 1,
                refuse_dispatch: false,
            }
        }

        fn last_token(&self) -> u32 {
            self.dispatched.last().expect("a callout was dispatched").0
        }
    }

    impl SharedData for FakeHost {
        fn shared_get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String> {
            self.shared.shared_get(key)
        }

        fn shared_set(
            &mut self,
            key: &str,
            value: &[u8],
            cas: Option<u32>,
        ) -> Result<(), WriteError> {
            self.shared.shared_set(key, value, cas)
        }
    }

    impl FetchHost for FakeHost {
        fn dispatch(&mut self, request: &HttpFetch) -> Result<u32, String> {
            if self.refuse_dispatch {
                return Err("no such cluster".into());
            }
            let token = self.next_token;
            self.next_token += 1;
            self.dispatched.push((token, request.clone()));
            Ok(token)
        }
    }

    /// One VM of one configuration: its host view, key store and coordinator.
    struct Vm {
        host: FakeHost,
        keys: KeyStore,
        coordinator: FetchCoordinator,
    }

    const CONFIG: &str = r#"{"providers": {"idp": {"issuer": "https://idp.test",
        "audiences": ["kserve"], "remote_jwks": {"http_uri": {"uri": "http://idp.test/jwks",
        "cluster": "idp", "timeout": "2s"}, "cache_duration": "600s"}}},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}]}"#;

    impl Vm {
        fn start(shared: &MemorySharedData) -> Vm {
            let config = Config::from_json(CONFIG.as_bytes()).unwrap();
            let digest = hmac_sha256::Hash::hash(CONFIG.as_bytes());
            let channels = config
                .providers
                .iter()
                .map(|provider| shared::channel(&digest, &provider.keys))
                .collect();
            Vm {
                host: FakeHost::on(shared),
                keys: KeyStore::new(&config).unwrap(),
                coordinator: FetchCoordinator::new(channels),
            }
        }

        fn tick(&mut self, now_ms: u64) -> Vec<Settled> {
            self.coordinator
                .tick(&mut self.host, &mut self.keys, now_ms)
        }

        fn answer(&mut self, body: &str, now_ms: u64) -> Vec<Settled> {
            let token = self.host.last_token();
            let response = Response {
                status: Some(200),
                body_size: body.len(),
                body: body.as_bytes(),
            };
            self.coordinator
                .answer(&mut self.host, &mut self.keys, token, response, now_ms)
        }

        fn ready(&self, now_ms: u64) -> bool {
            matches!(self.keys.lookup(0, now_ms), Lookup::Ready { .. })
        }
    }

    fn jwks() -> String {
        let public = Ed25519KeyPair::generate().public_key().to_bytes();
        serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1",
            "x": URL_SAFE_NO_PAD.encode(public)}]})
        .to_string()
    }

    fn two_vms() -> (Vm, Vm) {
        let shared = MemorySharedData::default();
        (Vm::start(&shared), Vm::start(&shared))
    }

    // Two VMs due to fetch on the same tick: one takes the lease and fetches, the other waits for
    // it; the waiting VM adopts the published keys without fetching itself.
    #[test]
    fn two_vms_racing_for_a_lease_fetch_once() {
        let (mut a, mut b) = two_vms();
        assert!(a.tick(T0).is_empty());
        assert!(b.tick(T0).is_empty());
        assert_eq!(a.host.dispatched.len() + b.host.dispatched.len(), 1);
        assert_eq!(
            a.host.dispatched.len(),
            1,
            "the first to tick takes the lease"
        );
        let settled = a.answer(&jwks(), T0 + 100);
        assert_eq!(settled.len(), 1);
        assert_eq!(settled[0].origin, Origin::Own);
        assert!(settled[0].keys_changed);
        assert!(matches!(
            settled[0].outcome,
            Outcome::Updated { key_count: 1, .. }
        ));
        let adopted = b.tick(T0 + 200);
        assert_eq!(adopted.len(), 1);
        assert_eq!(adopted[0].origin, Origin::Peer);
        assert!(adopted[0].keys_changed);
        assert!(a.ready(T0 + 200) && b.ready(T0 + 200));
        assert!(b.host.dispatched.is_empty(), "the waiting VM never fetched");
        // Adopted once: the same record changes nothing on the next tick.
        assert!(b.tick(T0 + 300).is_empty());
    }

    // The VM holding the lease never answers (its callout hangs): once the lease lapses, the
    // waiting VM fetches itself.
    #[test]
    fn a_lapsed_lease_lets_another_vm_fetch() {
        let (mut a, mut b) = two_vms();
        a.tick(T0);
        b.tick(T0);
        assert!(b.host.dispatched.is_empty());
        b.tick(T0 + LEASE_MS - 1);
        assert!(
            b.host.dispatched.is_empty(),
            "the lease holds until its deadline"
        );
        b.tick(T0 + LEASE_MS);
        assert_eq!(b.host.dispatched.len(), 1, "the lapsed lease is taken over");
        b.answer(&jwks(), T0 + LEASE_MS + 50);
        assert!(b.ready(T0 + LEASE_MS + 50));
    }

    // A configuration removed with its fetch in flight releases the lease: the VM waiting on it
    // fetches at the next tick instead of waiting for the lease to lapse, and a late answer to
    // the removed configuration's callout changes nothing.
    #[test]
    fn a_configuration_removed_mid_fetch_frees_its_lease() {
        let (mut a, mut b) = two_vms();
        a.tick(T0);
        b.tick(T0);
        assert_eq!(a.coordinator.pending(), 1);
        assert_eq!(a.coordinator.release_all(&mut a.host), 1);
        assert_eq!(a.coordinator.pending(), 0);
        b.tick(T0 + 100);
        assert_eq!(
            b.host.dispatched.len(),
            1,
            "fetched long before the lease would lapse"
        );
        let token = a.host.last_token();
        let late = a.coordinator.answer(
            &mut a.host,
            &mut a.keys,
            token,
            Response {
                status: Some(200),
                body_size: 2,
                body: b"{}",
            },
            T0 + 150,
        );
        assert!(late.is_empty());
    }

    // A fetch that fails is published too: the waiting VM learns of the failure (its requests get
    // 503 with Retry-After at once) instead of waiting for the lease to lapse.
    #[test]
    fn a_published_failure_is_adopted() {
        let (mut a, mut b) = two_vms();
        a.tick(T0);
        b.tick(T0);
        let token = a.host.last_token();
        let failed = Response {
            status: Some(503),
            body_size: 0,
            body: &[],
        };
        let settled = a
            .coordinator
            .answer(&mut a.host, &mut a.keys, token, failed, T0 + 100);
        assert!(matches!(settled[0].outcome, Outcome::Failed { .. }));
        assert!(!settled[0].keys_changed);
        let adopted = b.tick(T0 + 200);
        assert_eq!(adopted.len(), 1);
        assert!(matches!(adopted[0].outcome, Outcome::Failed { .. }));
        assert!(matches!(
            b.keys.lookup(0, T0 + 200),
            Lookup::Unavailable { .. }
        ));
    }

    // A callout the host refuses is a failed fetch at once, and its lease is released.
    #[test]
    fn a_refused_callout_is_a_failed_fetch() {
        let (mut a, mut b) = two_vms();
        a.host.refuse_dispatch = true;
        let settled = a.tick(T0);
        assert_eq!(settled.len(), 1);
        assert!(matches!(settled[0].outcome, Outcome::Failed { .. }));
        assert_eq!(a.coordinator.pending(), 0);
        b.tick(T0 + 1);
        assert!(matches!(
            b.keys.lookup(0, T0 + 1),
            Lookup::Unavailable { .. }
        ));
    }

    // A configuration whose keys are inline never touches shared data or the network.
    #[test]
    fn inline_keys_need_no_coordination() {
        let json = format!(
            r#"{{"providers": {{"idp": {{"issuer": "https://idp.test", "audiences": ["k"],
                "local_jwks": {{"inline_string": {}}}}}}},
                "rules": [{{"match": {{"prefix": "/"}}, "requires": {{"provider_name": "idp"}}}}]}}"#,
            serde_json::Value::String(jwks())
        );
        let config = Config::from_json(json.as_bytes()).unwrap();
        let shared = MemorySharedData::default();
        let mut host = FakeHost::on(&shared);
        let mut keys = KeyStore::new(&config).unwrap();
        let mut coordinator = FetchCoordinator::new(vec![None]);
        assert!(coordinator.tick(&mut host, &mut keys, T0).is_empty());
        assert!(host.dispatched.is_empty());
        assert!(shared.is_empty());
    }
}
