//! Signing keys per provider: a small state machine that decides when to fetch, remembers the last
//! good key set, and answers lookups. It never performs I/O: it *returns* the fetch to make, and
//! the caller feeds the response back.

use std::rc::Rc;

use crate::config::{Config, HttpFetch, KeySource, ProviderId};
use crate::crypto::key::KeySet;
use crate::jose::json::{self, StrictJsonError};
use crate::keys::jitter::RefreshJitter;
use crate::keys::jwks::{self, SkippedKey};
use crate::keys::shared::{FetchRecord, MAX_SEQUENCE};

/// Largest JWKS or discovery document accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// An unknown `kid` triggers at most one refetch per provider in this window.
pub const UNKNOWN_KID_REFETCH_INTERVAL_MS: u64 = 30_000;
/// First retry delay after a failed fetch; doubles per failure.
pub const FIRST_RETRY_MS: u64 = 1_000;
/// Longest retry delay after repeated failures.
pub const MAX_RETRY_MS: u64 = 30_000;
/// A fetch with no answer this long after its own timeout counts as failed.
const FETCH_GRACE_MS: u64 = 5_000;

/// What a request can learn about a provider's keys right now.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// Keys are usable. `may_refetch` says whether an unknown `kid` may still trigger a refetch.
    Ready { keys: &'a KeySet, may_refetch: bool },
    /// No usable keys yet, but a fetch is coming: the request should wait.
    Loading,
    /// No usable keys and the last fetch failed: answer 503, retry after this many seconds.
    Unavailable { retry_after_seconds: u64 },
}

/// Which document a fetch asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The OIDC discovery document.
    Discovery,
    /// The JWKS itself.
    Jwks,
}

/// A fetch the caller must dispatch, then answer with [`KeyStore::on_response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    /// Tells this fetch from earlier ones of the same provider, so a late answer to a fetch
    /// that was written off is not taken for the answer to its successor.
    pub id: u64,
    /// The provider whose keys are fetched.
    pub provider: ProviderId,
    /// Which document.
    pub stage: Stage,
    /// The HTTP request to make.
    pub request: HttpFetch,
}

/// The answer to a fetch, as the host delivered it.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    /// HTTP status; `None` when the callout failed (reset, timeout, no cluster).
    pub status: Option<u16>,
    /// Declared body size; bodies over [`MAX_DOCUMENT_BYTES`] are refused unread.
    pub body_size: usize,
    /// The body, when it was read.
    pub body: &'a [u8],
}

/// What a response did to the provider's key state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new key set is in use; the skipped keys are reported for logging.
    Updated {
        /// Usable keys in the new set.
        key_count: usize,
        /// Keys left out, with reasons.
        skipped: Vec<SkippedKey>,
    },
    /// The fetch failed; the last good keys, if any, stay in use.
    Failed {
        /// Why, for the log.
        reason: String,
    },
    /// Discovery succeeded; this JWKS fetch must be dispatched next.
    Next(Fetch),
    /// The response belongs to no pending fetch (it timed out and was written off); nothing
    /// changed.
    Ignored,
}

#[derive(Debug, Clone)]
enum Source {
    Remote {
        jwks: HttpFetch,
        cache_duration_ms: u64,
    },
    Discovery {
        discovery: HttpFetch,
        issuer: String,
        cache_duration_ms: u64,
    },
    Local,
}

#[derive(Debug, Clone)]
struct InFlight {
    id: u64,
    deadline_ms: u64,
    /// Another VM holds the fetch lease and this one waits for its published result.
    peer: bool,
}

/// Key state of one provider.
#[derive(Debug, Clone)]
pub struct ProviderKeys {
    source: Source,
    keys: Option<Rc<KeySet>>,
    /// Keys are dropped after this instant unless refreshed.
    keys_expire_at_ms: u64,
    /// When the next fetch is due; `None` while one is in flight or for local keys.
    next_fetch_at_ms: Option<u64>,
    in_flight: Option<InFlight>,
    /// Consecutive failed fetches, for backoff.
    failures: u32,
    /// Whether any fetch has finished (successfully or not) since start.
    attempted: bool,
    last_unknown_kid_refetch_ms: Option<u64>,
    /// JWKS location found by discovery, and until when it is trusted.
    discovered_jwks: Option<(HttpFetch, u64)>,
    /// Bumped whenever the key set changes; caches keyed on keys compare it.
    generation: u64,
    /// Id of the last fetch started.
    last_fetch_id: u64,
    /// Sequence number of the last shared fetch record applied or published.
    shared_sequence: u64,
    /// When, within the cache duration, a fetched key set is refreshed.
    jitter: RefreshJitter,
}

impl ProviderKeys {
    fn new(source: &KeySource, issuer: &str) -> Result<ProviderKeys, jwks::JwksError> {
        let (source, keys) = match source {
            KeySource::Remote {
                jwks,
                cache_duration_seconds,
            } => (
                Source::Remote {
                    jwks: jwks.clone(),
                    cache_duration_ms: cache_duration_seconds.saturating_mul(1000),
                },
                None,
            ),
            KeySource::Discovery {
                discovery,
                cache_duration_seconds,
            } => (
                Source::Discovery {
                    discovery: discovery.clone(),
                    issuer: issuer.to_string(),
                    cache_duration_ms: cache_duration_seconds.saturating_mul(1000),
                },
                None,
            ),
            KeySource::Local { jwks } => {
                let (set, _skipped) = jwks::parse_jwks(jwks.as_bytes())?;
                (Source::Local, Some(Rc::new(set)))
            }
        };
        let local = matches!(source, Source::Local);
        Ok(ProviderKeys {
            source,
            keys,
            keys_expire_at_ms: if local { u64::MAX } else { 0 },
            next_fetch_at_ms: if local { None } else { Some(0) },
            in_flight: None,
            failures: 0,
            attempted: local,
            last_unknown_kid_refetch_ms: None,
            discovered_jwks: None,
            generation: 0,
            last_fetch_id: 0,
            shared_sequence: 0,
            jitter: RefreshJitter::none(),
        })
    }

    fn lookup(&self, now_ms: u64) -> Lookup<'_> {
        if let Some(keys) = self.keys.as_deref() {
            if now_ms < self.keys_expire_at_ms {
                return Lookup::Ready {
                    keys,
                    may_refetch: self.may_refetch(now_ms),
                };
            }
        }
        if self.in_flight.is_some() || !self.attempted || self.failures == 0 {
            return Lookup::Loading;
        }
        let wait_ms = self
            .next_fetch_at_ms
            .map_or(FIRST_RETRY_MS, |at| at.saturating_sub(now_ms));
        Lookup::Unavailable {
            retry_after_seconds: wait_ms.div_ceil(1000).max(1),
        }
    }

    fn may_refetch(&self, now_ms: u64) -> bool {
        !matches!(self.source, Source::Local)
            && self
                .last_unknown_kid_refetch_ms
                .is_none_or(|last| now_ms.saturating_sub(last) >= UNKNOWN_KID_REFETCH_INTERVAL_MS)
    }

    fn failing_retry_after(&self, now_ms: u64) -> Option<u64> {
        (self.failures > 0).then(|| {
            self.next_fetch_at_ms
                .map_or(FIRST_RETRY_MS, |at| at.saturating_sub(now_ms))
                .div_ceil(1000)
                .max(1)
        })
    }

    fn request_refetch(&mut self, now_ms: u64) -> bool {
        if self.may_refetch(now_ms) {
            self.last_unknown_kid_refetch_ms = Some(now_ms);
            if self.in_flight.is_none() {
                self.next_fetch_at_ms = Some(now_ms);
            }
            return true;
        }
        // The refetch budget is spent, but a fetch already on its way (the one the first such
        // request started, a refresh, another worker's) brings the newest keys: wait for it. A
        // rotated key's first tokens arrive in a burst, and all of them must wait, not only the
        // first.
        self.in_flight.is_some() || self.next_fetch_at_ms.is_some_and(|at| at <= now_ms)
    }

    fn due_fetch(&mut self, provider: ProviderId, now_ms: u64) -> Option<Fetch> {
        if let Some(in_flight) = &self.in_flight {
            if now_ms < in_flight.deadline_ms {
                return None;
            }
            // The host never answered: treat it as a failure so waiting requests are released.
            self.in_flight = None;
            self.fail(now_ms);
        }
        if self.next_fetch_at_ms.is_none_or(|at| now_ms < at) {
            return None;
        }
        let (stage, request) = match &self.source {
            Source::Local => return None,
            Source::Remote { jwks, .. } => (Stage::Jwks, jwks.clone()),
            Source::Discovery { discovery, .. } => match &self.discovered_jwks {
                Some((jwks, valid_until)) if now_ms < *valid_until => (Stage::Jwks, jwks.clone()),
                _ => (Stage::Discovery, discovery.clone()),
            },
        };
        Some(self.start(provider, stage, request, now_ms))
    }

    fn start(
        &mut self,
        provider: ProviderId,
        stage: Stage,
        request: HttpFetch,
        now_ms: u64,
    ) -> Fetch {
        self.next_fetch_at_ms = None;
        self.last_fetch_id = self.last_fetch_id.wrapping_add(1);
        self.in_flight = Some(InFlight {
            id: self.last_fetch_id,
            deadline_ms: now_ms
                .saturating_add(request.timeout_ms)
                .saturating_add(FETCH_GRACE_MS),
            peer: false,
        });
        Fetch {
            id: self.last_fetch_id,
            provider,
            stage,
            request,
        }
    }

    fn cache_duration_ms(&self) -> u64 {
        match &self.source {
            Source::Remote {
                cache_duration_ms, ..
            }
            | Source::Discovery {
                cache_duration_ms, ..
            } => *cache_duration_ms,
            Source::Local => u64::MAX,
        }
    }

    fn fail(&mut self, now_ms: u64) {
        self.attempted = true;
        self.failures = self.failures.saturating_add(1);
        let backoff = FIRST_RETRY_MS
            .saturating_mul(1u64 << self.failures.saturating_sub(1).min(20))
            .min(MAX_RETRY_MS);
        self.next_fetch_at_ms = Some(now_ms.saturating_add(backoff));
        // A JWKS location that keeps failing may be stale: rediscover it next time.
        if self.failures > 1 {
            self.discovered_jwks = None;
        }
    }

    fn on_response(&mut self, fetch: &Fetch, response: Response<'_>, now_ms: u64) -> Outcome {
        if self.in_flight.as_ref().is_none_or(|f| f.id != fetch.id) {
            return Outcome::Ignored;
        }
        self.in_flight = None;
        let body = match check_response(response) {
            Ok(body) => body,
            Err(reason) => {
                self.fail(now_ms);
                return Outcome::Failed { reason };
            }
        };
        match fetch.stage {
            Stage::Discovery => match self.read_discovery(body, now_ms) {
                Ok(jwks) => Outcome::Next(self.start(fetch.provider, Stage::Jwks, jwks, now_ms)),
                Err(reason) => {
                    self.fail(now_ms);
                    Outcome::Failed { reason }
                }
            },
            Stage::Jwks => match jwks::parse_jwks(body) {
                Ok((set, skipped)) => {
                    let key_count = set.keys.len();
                    self.install(set, now_ms);
                    Outcome::Updated { key_count, skipped }
                }
                Err(err) => {
                    self.fail(now_ms);
                    Outcome::Failed {
                        reason: format!("JWKS rejected: {err}"),
                    }
                }
            },
        }
    }

    fn wait_for_peer(&mut self, fetch: &Fetch, lease_deadline_ms: u64) {
        if self.in_flight.as_ref().is_some_and(|f| f.id == fetch.id) {
            self.in_flight = Some(InFlight {
                id: fetch.id,
                deadline_ms: lease_deadline_ms.saturating_add(FETCH_GRACE_MS),
                peer: true,
            });
        }
    }

    fn waits_for_peer(&self) -> bool {
        self.in_flight.as_ref().is_some_and(|f| f.peer)
    }

    fn peer_released(&mut self, now_ms: u64) -> bool {
        if !self.waits_for_peer() {
            return false;
        }
        self.in_flight = None;
        self.next_fetch_at_ms = Some(now_ms);
        true
    }

    fn adopt(&mut self, record: &FetchRecord, now_ms: u64) -> Option<Outcome> {
        if record.sequence <= self.shared_sequence {
            return None;
        }
        self.shared_sequence = record.sequence;
        // A failure from long ago (a VM started after it) says nothing about the key server now.
        let stale = record.fetched_at_ms.saturating_add(MAX_RETRY_MS) < now_ms;
        if record.result.is_err() && stale {
            return None;
        }
        self.last_unknown_kid_refetch_ms = self
            .last_unknown_kid_refetch_ms
            .max(Some(record.unknown_kid_refetch_ms).filter(|ms| *ms > 0));
        // A peer's result answers whatever this VM was waiting for.
        self.in_flight = None;
        let outcome = match &record.result {
            Ok(body) => match jwks::parse_jwks(body) {
                Ok((set, skipped)) => {
                    let key_count = set.keys.len();
                    self.install(set, record.fetched_at_ms.min(now_ms));
                    Outcome::Updated { key_count, skipped }
                }
                Err(err) => {
                    self.fail(now_ms);
                    Outcome::Failed {
                        reason: format!("JWKS rejected: {err}"),
                    }
                }
            },
            Err(reason) => {
                self.fail(now_ms);
                Outcome::Failed {
                    reason: reason.clone(),
                }
            }
        };
        Some(outcome)
    }

    fn install(&mut self, set: KeySet, now_ms: u64) {
        let cache_ms = self.cache_duration_ms();
        if self.keys.as_deref() != Some(&set) {
            self.generation = self.generation.wrapping_add(1);
        }
        self.keys = Some(Rc::new(set));
        self.attempted = true;
        self.failures = 0;
        self.keys_expire_at_ms = now_ms.saturating_add(cache_ms);
        // Refresh at 70–90% of the cache duration: a slow or failing refresh has time to retry
        // before the keys expire, and VMs started together do not refresh together.
        self.next_fetch_at_ms = Some(now_ms.saturating_add(self.jitter.refresh_after_ms(cache_ms)));
    }

    fn read_discovery(&mut self, body: &[u8], now_ms: u64) -> Result<HttpFetch, String> {
        let Source::Discovery {
            discovery, issuer, ..
        } = &self.source
        else {
            return Err("discovery response for a provider without discovery".into());
        };
        let document = json::parse_strict(body).map_err(|err| match err {
            StrictJsonError::Syntax(message) => {
                format!("discovery document is not JSON: {message}")
            }
            StrictJsonError::DuplicateName(name) => {
                format!("discovery document names member {name:?} twice")
            }
        })?;
        let advertised = document.get("issuer").and_then(|v| v.as_str());
        if advertised != Some(issuer.as_str()) {
            return Err(format!(
                "discovery document's issuer {:?} is not the configured issuer {issuer:?}",
                advertised.unwrap_or("(missing)")
            ));
        }
        let uri = document
            .get("jwks_uri")
            .and_then(|v| v.as_str())
            .ok_or("discovery document has no jwks_uri string")?;
        let (authority, path) = crate::config::uri::split_http_uri(uri)
            .map_err(|err| format!("discovery document's jwks_uri is unusable: {err}"))?;
        let jwks = HttpFetch {
            cluster: discovery.cluster.clone(),
            authority,
            path,
            timeout_ms: discovery.timeout_ms,
        };
        let valid_until = now_ms.saturating_add(self.cache_duration_ms());
        self.discovered_jwks = Some((jwks.clone(), valid_until));
        Ok(jwks)
    }
}

fn check_response(response: Response<'_>) -> Result<&[u8], String> {
    match response.status {
        None => return Err("no response (connection failure, reset or timeout)".into()),
        Some(200) => {}
        Some(status) => return Err(format!("HTTP status {status}")),
    }
    if response.body_size > MAX_DOCUMENT_BYTES || response.body.len() > MAX_DOCUMENT_BYTES {
        return Err(format!(
            "document of {} bytes exceeds the {MAX_DOCUMENT_BYTES}-byte limit",
            response.body_size.max(response.body.len())
        ));
    }
    Ok(response.body)
}

/// Key state of every provider of one configuration, indexed by [`ProviderId`].
#[derive(Debug, Clone)]
pub struct KeyStore {
    providers: Vec<ProviderKeys>,
}

/// A provider whose inline keys cannot be used, for the configuration error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalKeysError {
    /// The provider's index.
    pub provider: ProviderId,
    /// Why the inline JWKS is unusable.
    pub error: jwks::JwksError,
}

impl KeyStore {
    /// Initial state for every provider: remote ones due for a fetch now, local ones ready.
    pub fn new(config: &Config) -> Result<KeyStore, LocalKeysError> {
        let providers = config
            .providers
            .iter()
            .enumerate()
            .map(|(id, provider)| {
                ProviderKeys::new(&provider.keys, &provider.issuer).map_err(|error| {
                    LocalKeysError {
                        provider: id,
                        error,
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(KeyStore { providers })
    }

    /// Spreads this VM's refreshes (see [`RefreshJitter`]); each provider draws from its own
    /// sequence of `seed`.
    pub fn spread_refreshes(&mut self, seed: u64) {
        for (index, keys) in self.providers.iter_mut().enumerate() {
            keys.jitter = RefreshJitter::seeded(seed ^ (index as u64).rotate_left(32));
        }
    }

    /// The provider's keys as a request sees them at `now_ms`.
    pub fn lookup(&self, provider: ProviderId, now_ms: u64) -> Lookup<'_> {
        match self.providers.get(provider) {
            Some(keys) => keys.lookup(now_ms),
            None => Lookup::Unavailable {
                retry_after_seconds: 1,
            },
        }
    }

    /// Asks for a refetch because a token named an unknown `kid`. True when the caller should
    /// wait for it; false when the rate limit says the `kid` is simply unknown.
    pub fn request_refetch(&mut self, provider: ProviderId, now_ms: u64) -> bool {
        self.providers
            .get_mut(provider)
            .is_some_and(|keys| keys.request_refetch(now_ms))
    }

    /// While the provider's last fetch failed: the seconds until the next attempt, for
    /// `Retry-After`. A `kid` the last good key set lacks cannot be judged then: it may be a
    /// rotated key the failed fetch would have brought.
    pub fn failing_retry_after(&self, provider: ProviderId, now_ms: u64) -> Option<u64> {
        self.providers
            .get(provider)
            .and_then(|keys| keys.failing_retry_after(now_ms))
    }

    /// Every fetch due at `now_ms`; each is marked in flight.
    pub fn due_fetches(&mut self, now_ms: u64) -> Vec<Fetch> {
        self.providers
            .iter_mut()
            .enumerate()
            .filter_map(|(id, keys)| keys.due_fetch(id, now_ms))
            .collect()
    }

    /// Feeds a fetch's response back. A dispatch the host refused is reported as a response
    /// without status.
    pub fn on_response(&mut self, fetch: &Fetch, response: Response<'_>, now_ms: u64) -> Outcome {
        match self.providers.get_mut(fetch.provider) {
            Some(keys) => keys.on_response(fetch, response, now_ms),
            None => Outcome::Ignored,
        }
    }

    /// Changes whenever the provider's key set changes.
    pub fn generation(&self, provider: ProviderId) -> u64 {
        self.providers
            .get(provider)
            .map_or(0, |keys| keys.generation)
    }

    /// Another VM holds the fetch lease until `lease_deadline_ms`: wait for its published
    /// result instead of fetching. If none comes by then, the fetch counts as failed.
    pub fn wait_for_peer(&mut self, fetch: &Fetch, lease_deadline_ms: u64) {
        if let Some(keys) = self.providers.get_mut(fetch.provider) {
            keys.wait_for_peer(fetch, lease_deadline_ms);
        }
    }

    /// Providers waiting for another VM's fetch (see [`KeyStore::wait_for_peer`]).
    pub fn waiting_for_peer(&self) -> Vec<ProviderId> {
        self.providers
            .iter()
            .enumerate()
            .filter(|(_, keys)| keys.waits_for_peer())
            .map(|(id, _)| id)
            .collect()
    }

    /// The lease this VM waited on was let go with no result published (the VM or configuration
    /// that held it went away) or has lapsed: the fetch is due now, instead of failing once the
    /// lease would have ended. `false` when the provider was not waiting for a peer.
    pub fn peer_released(&mut self, provider: ProviderId, now_ms: u64) -> bool {
        self.providers
            .get_mut(provider)
            .is_some_and(|keys| keys.peer_released(now_ms))
    }

    /// Applies a fetch result another VM published. `None` when it was already applied.
    pub fn adopt(
        &mut self,
        provider: ProviderId,
        record: &FetchRecord,
        now_ms: u64,
    ) -> Option<Outcome> {
        self.providers.get_mut(provider)?.adopt(record, now_ms)
    }

    /// The record to publish after this VM's own fetch finished with `result`, numbered after
    /// `last_published` (the sequence currently in shared data, 0 when none).
    pub fn record(
        &mut self,
        provider: ProviderId,
        last_published: u64,
        result: Result<Vec<u8>, String>,
        now_ms: u64,
    ) -> Option<FetchRecord> {
        let keys = self.providers.get_mut(provider)?;
        // Never saturates: records past MAX_SEQUENCE read as absent, so none is published.
        let sequence = last_published
            .max(keys.shared_sequence)
            .checked_add(1)
            .filter(|sequence| *sequence <= MAX_SEQUENCE)?;
        keys.shared_sequence = sequence;
        Some(FetchRecord {
            sequence,
            fetched_at_ms: now_ms,
            unknown_kid_refetch_ms: keys.last_unknown_kid_refetch_ms.unwrap_or(0),
            result,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::config::{Provider, Rule};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jwt_simple::prelude::Ed25519KeyPair;

    const CACHE_S: u64 = 600;
    const T0: u64 = 1_700_000_000_000;

    fn fetch(path: &str) -> HttpFetch {
        HttpFetch {
            cluster: "idp".into(),
            authority: "idp.test".into(),
            path: path.into(),
            timeout_ms: 2_000,
        }
    }

    fn config_with(keys: KeySource) -> Config {
        Config {
            providers: vec![Provider {
                name: "idp".into(),
                issuer: "https://idp.test".into(),
                audiences: vec!["aud".into()],
                algorithms: crate::jose::alg::Alg::ALL.to_vec(),
                keys,
                token_sources: vec![],
                forward: false,
                forward_payload_header: None,
                claim_to_headers: vec![],
                clock_skew_seconds: 60,
                max_lifetime_seconds: None,
                require_expiration: true,
                jwt_cache_size: 10_000,
                allowed_types: vec![],
                allowed_authorized_parties: vec![],
                alternate_issuers: vec![],
                identity: Default::default(),
                filter_state: None,
                binding: Default::default(),
            }],
            rules: Vec::<Rule>::new(),
            host_index: Default::default(),
            managed_headers: vec![],
            managed_header_prefixes: vec![],
            max_waiting_requests: 10,
            host_crypto: true,
            bypass_cors_preflight: false,
            protected_resource: None,
            challenge: Default::default(),
            body: Default::default(),
            has_model_rules: false,
            reads_peer_certificate: false,
        }
    }

    fn remote() -> KeyStore {
        KeyStore::new(&config_with(KeySource::Remote {
            jwks: fetch("/jwks"),
            cache_duration_seconds: CACHE_S,
        }))
        .unwrap()
    }

    fn jwks(kid: &str) -> String {
        let public = Ed25519KeyPair::generate().public_key().to_bytes();
        serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(public)}]})
        .to_string()
    }

    fn ok(body: &str) -> Response<'_> {
        Response {
            status: Some(200),
            body_size: body.len(),
            body: body.as_bytes(),
        }
    }

    const REFUSED: Response<'static> = Response {
        status: None,
        body_size: 0,
        body: &[],
    };

    fn only_fetch(store: &mut KeyStore, now: u64) -> Fetch {
        let mut due = store.due_fetches(now);
        assert_eq!(due.len(), 1, "expected exactly one fetch at {now}");
        due.remove(0)
    }

    fn load(store: &mut KeyStore, now: u64, body: &str) {
        let f = only_fetch(store, now);
        let outcome = store.on_response(&f, ok(body), now);
        assert!(matches!(outcome, Outcome::Updated { .. }), "{outcome:?}");
    }

    fn is_ready(store: &KeyStore, now: u64) -> bool {
        matches!(store.lookup(0, now), Lookup::Ready { .. })
    }

    #[test]
    fn remote_keys_load_at_start_and_requests_wait_meanwhile() {
        // Before the first answer a request must wait, not fail.
        let mut store = remote();
        assert!(matches!(store.lookup(0, T0), Lookup::Loading));
        let f = only_fetch(&mut store, T0);
        assert_eq!(f.request, fetch("/jwks"));
        assert!(store.due_fetches(T0).is_empty(), "one fetch at a time");
        assert!(matches!(store.lookup(0, T0), Lookup::Loading));
        store.on_response(&f, ok(&jwks("a")), T0);
        assert!(is_ready(&store, T0));
    }

    #[test]
    fn refresh_is_due_at_eighty_percent_of_cache_duration() {
        // Refreshing before expiry leaves time to retry a failed refresh.
        let mut store = remote();
        load(&mut store, T0, &jwks("a"));
        let refresh_at = T0 + CACHE_S * 1000 * 4 / 5;
        assert!(store.due_fetches(refresh_at - 1).is_empty());
        assert_eq!(store.due_fetches(refresh_at).len(), 1);
    }

    #[test]
    fn failed_first_fetch_gives_unavailable_and_backs_off_exponentially() {
        // 503 with Retry-After, and retries at 1 s, 2 s, 4 s ... capped at 30 s.
        let mut store = remote();
        let mut now = T0;
        let mut expected_delay = FIRST_RETRY_MS;
        for _ in 0..8 {
            let f = only_fetch(&mut store, now);
            assert!(matches!(
                store.on_response(&f, REFUSED, now),
                Outcome::Failed { .. }
            ));
            match store.lookup(0, now) {
                Lookup::Unavailable {
                    retry_after_seconds,
                } => assert_eq!(retry_after_seconds, expected_delay / 1000),
                other => panic!("expected Unavailable, got {other:?}"),
            }
            assert!(store.due_fetches(now + expected_delay - 1).is_empty());
            now += expected_delay;
            expected_delay = (expected_delay * 2).min(MAX_RETRY_MS);
        }
        assert_eq!(expected_delay, MAX_RETRY_MS);
    }

    #[test]
    fn spread_refreshes_fall_between_seventy_and_ninety_percent() {
        // With a seed the refresh moves off 80% and stays within 70-90%, before expiry.
        let mut store = remote();
        store.spread_refreshes(0x5eed);
        load(&mut store, T0, &jwks("a"));
        let cache_ms = CACHE_S * 1000;
        let due = (T0..T0 + cache_ms)
            .step_by(100)
            .find(|at| !store.clone().due_fetches(*at).is_empty())
            .unwrap();
        assert!(
            (T0 + cache_ms * 7 / 10..=T0 + cache_ms * 9 / 10).contains(&due),
            "{due}"
        );
        let mut unseeded = remote();
        load(&mut unseeded, T0, &jwks("a"));
        assert!(unseeded
            .clone()
            .due_fetches(T0 + cache_ms * 4 / 5 - 1)
            .is_empty());
        assert_eq!(unseeded.due_fetches(T0 + cache_ms * 4 / 5).len(), 1);
    }

    #[test]
    fn failed_refresh_keeps_last_good_keys_until_they_expire() {
        // An IdP outage shorter than the cache duration is invisible to clients.
        let mut store = remote();
        load(&mut store, T0, &jwks("a"));
        let refresh_at = T0 + CACHE_S * 1000 * 4 / 5;
        let f = only_fetch(&mut store, refresh_at);
        store.on_response(&f, REFUSED, refresh_at);
        let expiry = T0 + CACHE_S * 1000;
        assert!(is_ready(&store, expiry - 1));
        assert!(matches!(
            store.lookup(0, expiry),
            Lookup::Unavailable { .. } | Lookup::Loading
        ));
    }

    #[test]
    fn expired_keys_with_a_refresh_in_flight_make_requests_wait() {
        // After expiry, a pending refresh is worth waiting for.
        let mut store = remote();
        load(&mut store, T0, &jwks("a"));
        let expiry = T0 + CACHE_S * 1000;
        let f = only_fetch(&mut store, expiry);
        assert!(matches!(store.lookup(0, expiry), Lookup::Loading));
        store.on_response(&f, ok(&jwks("b")), expiry);
        assert!(is_ready(&store, expiry));
    }

    #[test]
    fn unknown_kid_refetch_is_rate_limited_to_one_per_thirty_seconds() {
        // A flood of random kids costs the IdP one fetch per 30 s, not one per request.
        let mut store = remote();
        load(&mut store, T0, &jwks("a"));
        let t1 = T0 + 5_000;
        assert!(matches!(
            store.lookup(0, t1),
            Lookup::Ready {
                may_refetch: true,
                ..
            }
        ));
        assert!(store.request_refetch(0, t1));
        let f = only_fetch(&mut store, t1);
        store.on_response(&f, ok(&jwks("b")), t1);
        assert!(matches!(
            store.lookup(0, t1),
            Lookup::Ready {
                may_refetch: false,
                ..
            }
        ));
        let just_before = t1 + UNKNOWN_KID_REFETCH_INTERVAL_MS - 1;
        assert!(!store.request_refetch(0, just_before));
        assert!(store.due_fetches(just_before).is_empty());
        assert!(store.request_refetch(0, t1 + UNKNOWN_KID_REFETCH_INTERVAL_MS));
    }

    #[test]
    fn every_request_with_the_new_kid_waits_for_the_refetch_on_its_way() {
        // A key rotation: the first token with the new kid starts a refetch; the next ones,
        // arriving before it is answered, wait for that fetch instead of being refused; once it
        // is answered, the budget is spent and an unknown kid is refused at once.
        let mut store = remote();
        load(&mut store, T0, &jwks("a"));
        let t1 = T0 + 5_000;
        assert!(store.request_refetch(0, t1));
        assert!(
            store.request_refetch(0, t1),
            "the refetch is due, not yet dispatched"
        );
        let f = only_fetch(&mut store, t1);
        assert!(
            store.request_refetch(0, t1 + 20),
            "the refetch is in flight"
        );
        assert!(store.due_fetches(t1 + 20).is_empty(), "no second fetch");
        store.on_response(&f, ok(&jwks("b")), t1 + 40);
        assert!(!store.request_refetch(0, t1 + 41));
    }

    #[test]
    fn unknown_kid_during_a_fetch_waits_for_it_without_a_second_fetch() {
        // Joining the fetch already in flight is enough.
        let mut store = remote();
        load(&mut store, T0, &jwks("a"));
        let refresh_at = T0 + CACHE_S * 1000 * 4 / 5;
        let f = only_fetch(&mut store, refresh_at);
        assert!(store.request_refetch(0, refresh_at));
        assert!(store.due_fetches(refresh_at).is_empty());
        store.on_response(&f, ok(&jwks("b")), refresh_at);
        assert!(!store.request_refetch(0, refresh_at));
    }

    #[test]
    fn a_fetch_the_host_never_answers_counts_as_failed() {
        // Waiting requests must not hang on a lost callout.
        let mut store = remote();
        let f = only_fetch(&mut store, T0);
        let deadline = T0 + f.request.timeout_ms + FETCH_GRACE_MS;
        assert!(store.due_fetches(deadline - 1).is_empty());
        assert!(store.due_fetches(deadline).is_empty(), "backoff first");
        assert!(matches!(
            store.lookup(0, deadline),
            Lookup::Unavailable { .. }
        ));
        assert_eq!(store.due_fetches(deadline + FIRST_RETRY_MS).len(), 1);
        // The late answer to the written-off fetch changes nothing, even with a successor pending.
        assert_eq!(
            store.on_response(&f, ok(&jwks("a")), deadline),
            Outcome::Ignored
        );
        assert!(matches!(
            store.lookup(0, deadline + FIRST_RETRY_MS),
            Lookup::Loading
        ));
    }

    #[test]
    fn non_200_and_oversize_answers_are_failures() {
        // Only a 200 with a bounded body is a key set.
        let mut store = remote();
        let f = only_fetch(&mut store, T0);
        let outcome = store.on_response(
            &f,
            Response {
                status: Some(500),
                body_size: 2,
                body: b"{}",
            },
            T0,
        );
        assert!(matches!(&outcome, Outcome::Failed { reason } if reason.contains("500")));
        let now = T0 + FIRST_RETRY_MS;
        let f = only_fetch(&mut store, now);
        let outcome = store.on_response(
            &f,
            Response {
                status: Some(200),
                body_size: MAX_DOCUMENT_BYTES + 1,
                body: &[],
            },
            now,
        );
        assert!(matches!(&outcome, Outcome::Failed { reason } if reason.contains("limit")));
    }

    #[test]
    fn a_set_without_usable_keys_is_a_failed_fetch() {
        // Garbage from the key server must not replace good keys.
        let mut store = remote();
        load(&mut store, T0, &jwks("a"));
        let refresh_at = T0 + CACHE_S * 1000 * 4 / 5;
        let f = only_fetch(&mut store, refresh_at);
        let outcome = store.on_response(&f, ok(r#"{"keys": []}"#), refresh_at);
        assert!(matches!(outcome, Outcome::Failed { .. }));
        assert!(is_ready(&store, refresh_at));
    }

    #[test]
    fn generation_changes_only_when_the_key_set_changes() {
        // Caches of verified tokens are dropped on a real change, not on every refresh.
        let mut store = remote();
        let body = jwks("a");
        load(&mut store, T0, &body);
        let first = store.generation(0);
        let refresh_at = T0 + CACHE_S * 1000 * 4 / 5;
        load(&mut store, refresh_at, &body);
        assert_eq!(store.generation(0), first);
        let later = refresh_at + CACHE_S * 1000;
        load(&mut store, later, &jwks("b"));
        assert_ne!(store.generation(0), first);
    }

    fn discovery() -> KeyStore {
        KeyStore::new(&config_with(KeySource::Discovery {
            discovery: fetch("/.well-known/openid-configuration"),
            cache_duration_seconds: CACHE_S,
        }))
        .unwrap()
    }

    #[test]
    fn discovery_finds_the_jwks_and_fetches_it_through_the_same_cluster() {
        // The jwks_uri of the document decides authority and path; the cluster stays ours.
        let mut store = discovery();
        let f = only_fetch(&mut store, T0);
        assert_eq!(f.stage, Stage::Discovery);
        let document = serde_json::json!({"issuer": "https://idp.test",
            "jwks_uri": "https://keys.idp.test:8443/certs?v=2"})
        .to_string();
        let Outcome::Next(next) = store.on_response(&f, ok(&document), T0) else {
            panic!("discovery must lead to a JWKS fetch");
        };
        assert_eq!(next.stage, Stage::Jwks);
        assert_eq!(next.request.cluster, "idp");
        assert_eq!(next.request.authority, "keys.idp.test:8443");
        assert_eq!(next.request.path, "/certs?v=2");
        assert!(matches!(store.lookup(0, T0), Lookup::Loading));
        store.on_response(&next, ok(&jwks("a")), T0);
        assert!(is_ready(&store, T0));
        // The unknown-kid refetch goes straight to the known JWKS location.
        assert!(store.request_refetch(0, T0 + 1));
        assert_eq!(only_fetch(&mut store, T0 + 1).stage, Stage::Jwks);
    }

    #[test]
    fn discovery_document_for_another_issuer_is_refused() {
        // OpenID Connect Discovery §4.3: the issuer must match exactly.
        let mut store = discovery();
        let f = only_fetch(&mut store, T0);
        let document = serde_json::json!({"issuer": "https://evil.test",
            "jwks_uri": "https://evil.test/certs"})
        .to_string();
        let outcome = store.on_response(&f, ok(&document), T0);
        assert!(matches!(&outcome, Outcome::Failed { reason } if reason.contains("issuer")));
        let f = only_fetch(&mut store, T0 + FIRST_RETRY_MS);
        let outcome = store.on_response(&f, ok(r#"{"issuer": "https://idp.test"}"#), T0);
        assert!(matches!(&outcome, Outcome::Failed { reason } if reason.contains("jwks_uri")));
    }

    #[test]
    fn local_keys_are_ready_at_once_and_never_fetched() {
        // Inline keys need no callout and cannot be refetched.
        let mut store = KeyStore::new(&config_with(KeySource::Local { jwks: jwks("a") })).unwrap();
        assert!(matches!(
            store.lookup(0, T0),
            Lookup::Ready {
                may_refetch: false,
                ..
            }
        ));
        assert!(store.due_fetches(T0).is_empty());
        assert!(!store.request_refetch(0, T0));
    }

    #[test]
    fn unusable_local_keys_are_a_configuration_error() {
        // Caught at configure time, not at the first request.
        let err = KeyStore::new(&config_with(KeySource::Local {
            jwks: r#"{"keys": []}"#.into(),
        }))
        .unwrap_err();
        assert_eq!(err.provider, 0);
    }

    fn published(sequence: u64, at: u64, result: Result<Vec<u8>, String>) -> FetchRecord {
        FetchRecord {
            sequence,
            fetched_at_ms: at,
            unknown_kid_refetch_ms: 0,
            result,
        }
    }

    #[test]
    fn a_vm_waiting_for_a_peer_adopts_its_keys_without_fetching() {
        // With N workers the key server sees one fetch, not N.
        let mut store = remote();
        let f = only_fetch(&mut store, T0);
        store.wait_for_peer(&f, T0 + 3_000);
        assert!(matches!(store.lookup(0, T0 + 1_000), Lookup::Loading));
        let record = published(1, T0 + 500, Ok(jwks("a").into_bytes()));
        let outcome = store.adopt(0, &record, T0 + 600);
        assert!(matches!(
            outcome,
            Some(Outcome::Updated { key_count: 1, .. })
        ));
        assert!(is_ready(&store, T0 + 600));
        assert_eq!(store.adopt(0, &record, T0 + 700), None, "adopted once");
        // Expiry and refresh are counted from the peer's fetch, not from adoption.
        let refresh_at = T0 + 500 + CACHE_S * 1000 * 4 / 5;
        assert!(store.due_fetches(refresh_at - 1).is_empty());
        assert_eq!(store.due_fetches(refresh_at).len(), 1);
    }

    #[test]
    fn a_peer_that_never_publishes_is_written_off_after_its_lease() {
        // A crashed fetcher cannot leave other VMs waiting forever.
        let mut store = remote();
        let f = only_fetch(&mut store, T0);
        store.wait_for_peer(&f, T0 + 3_000);
        assert!(store
            .due_fetches(T0 + 3_000 + FETCH_GRACE_MS - 1)
            .is_empty());
        assert!(store.due_fetches(T0 + 3_000 + FETCH_GRACE_MS).is_empty());
        assert!(matches!(
            store.lookup(0, T0 + 3_000 + FETCH_GRACE_MS),
            Lookup::Unavailable { .. }
        ));
    }

    #[test]
    fn a_released_lease_makes_the_fetch_due_at_once() {
        // A configuration removed mid-fetch frees its lease; the waiting VM fetches itself
        // instead of waiting out the lease, and no failure is counted.
        let mut store = remote();
        let f = only_fetch(&mut store, T0);
        store.wait_for_peer(&f, T0 + 11_000);
        assert_eq!(store.waiting_for_peer(), vec![0]);
        assert!(store.peer_released(0, T0 + 1_000));
        assert!(store.waiting_for_peer().is_empty());
        assert!(matches!(store.lookup(0, T0 + 1_000), Lookup::Loading));
        let again = only_fetch(&mut store, T0 + 1_000);
        assert_ne!(again.id, f.id);
        assert!(
            !store.peer_released(0, T0 + 1_100),
            "its own fetch is not a peer's"
        );
        assert!(matches!(
            store.on_response(&again, ok(&jwks("a")), T0 + 1_200),
            Outcome::Updated { .. }
        ));
        assert!(is_ready(&store, T0 + 1_200));
    }

    #[test]
    fn release_after_adoption_changes_nothing() {
        // A result adopted first ends the wait; the freed lease then starts no fetch.
        let mut store = remote();
        let f = only_fetch(&mut store, T0);
        store.wait_for_peer(&f, T0 + 3_000);
        store.adopt(
            0,
            &published(1, T0 + 500, Ok(jwks("a").into_bytes())),
            T0 + 600,
        );
        assert!(!store.peer_released(0, T0 + 600));
        assert!(store.due_fetches(T0 + 600).is_empty());
    }

    #[test]
    fn a_peers_unknown_kid_refetch_counts_against_the_limit_here() {
        // The 30-second limit holds per Envoy, not per worker.
        let mut store = remote();
        load(&mut store, T0, &jwks("a"));
        let mut record = published(5, T0 + 1_000, Ok(jwks("b").into_bytes()));
        record.unknown_kid_refetch_ms = T0 + 900;
        store.adopt(0, &record, T0 + 1_000);
        assert!(!store.request_refetch(0, T0 + 1_000));
        assert!(store.request_refetch(0, T0 + 900 + UNKNOWN_KID_REFETCH_INTERVAL_MS));
    }

    #[test]
    fn a_recent_peer_failure_is_adopted_and_an_old_one_ignored() {
        // Waiting requests learn of the failure; a VM started later is not misled by history.
        let mut store = remote();
        let f = only_fetch(&mut store, T0);
        store.wait_for_peer(&f, T0 + 3_000);
        let failure = published(1, T0 + 100, Err("HTTP status 503".into()));
        assert!(matches!(
            store.adopt(0, &failure, T0 + 200),
            Some(Outcome::Failed { .. })
        ));
        assert!(matches!(
            store.lookup(0, T0 + 200),
            Lookup::Unavailable { .. }
        ));

        let mut fresh = remote();
        let old = published(1, T0 - MAX_RETRY_MS - 1, Err("HTTP status 503".into()));
        assert_eq!(fresh.adopt(0, &old, T0), None);
        assert!(matches!(fresh.lookup(0, T0), Lookup::Loading));
    }

    #[test]
    fn published_records_are_numbered_after_everything_seen() {
        // Concurrent publishers never reuse a sequence number, so every result is adopted.
        let mut store = remote();
        store.adopt(0, &published(4, T0, Ok(jwks("a").into_bytes())), T0);
        let record = store.record(0, 2, Ok(Vec::new()), T0).unwrap();
        assert_eq!(record.sequence, 5);
        let record = store.record(0, 9, Err("x".into()), T0).unwrap();
        assert_eq!(record.sequence, 10);
        assert_eq!(record.fetched_at_ms, T0);
    }
}
