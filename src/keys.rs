//! Signing keys per provider: a small state machine that decides when to fetch, remembers the last
//! good key set, and answers lookups. It never performs I/O: it *returns* the fetch to make, and
//! the caller feeds the response back.

use std::rc::Rc;

use crate::config::{Config, HttpFetch, KeySource, ProviderId};
use crate::jwks::{self, KeySet, SkippedKey};

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
    stage: Stage,
    deadline_ms: u64,
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

    fn request_refetch(&mut self, now_ms: u64) -> bool {
        if !self.may_refetch(now_ms) {
            return false;
        }
        self.last_unknown_kid_refetch_ms = Some(now_ms);
        if self.in_flight.is_none() {
            self.next_fetch_at_ms = Some(now_ms);
        }
        true
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
        self.in_flight = Some(InFlight {
            stage,
            deadline_ms: now_ms
                .saturating_add(request.timeout_ms)
                .saturating_add(FETCH_GRACE_MS),
        });
        Fetch {
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

    fn on_response(
        &mut self,
        provider: ProviderId,
        stage: Stage,
        response: Response<'_>,
        now_ms: u64,
    ) -> Outcome {
        if self.in_flight.as_ref().is_none_or(|f| f.stage != stage) {
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
        match stage {
            Stage::Discovery => match self.read_discovery(body, now_ms) {
                Ok(jwks) => Outcome::Next(self.start(provider, Stage::Jwks, jwks, now_ms)),
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

    fn install(&mut self, set: KeySet, now_ms: u64) {
        let cache_ms = self.cache_duration_ms();
        if self.keys.as_deref() != Some(&set) {
            self.generation = self.generation.wrapping_add(1);
        }
        self.keys = Some(Rc::new(set));
        self.attempted = true;
        self.failures = 0;
        self.keys_expire_at_ms = now_ms.saturating_add(cache_ms);
        // Refresh at 80% of the cache duration so a slow or failing refresh has time to retry
        // before the keys expire.
        self.next_fetch_at_ms = Some(now_ms.saturating_add(cache_ms - cache_ms / 5));
    }

    fn read_discovery(&mut self, body: &[u8], now_ms: u64) -> Result<HttpFetch, String> {
        let Source::Discovery {
            discovery, issuer, ..
        } = &self.source
        else {
            return Err("discovery response for a provider without discovery".into());
        };
        let document: serde_json::Value = serde_json::from_slice(body)
            .map_err(|err| format!("discovery document is not JSON: {err}"))?;
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
        let (authority, path) = crate::uri::split_http_uri(uri)
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
            Some(keys) => keys.on_response(fetch.provider, fetch.stage, response, now_ms),
            None => Outcome::Ignored,
        }
    }

    /// Changes whenever the provider's key set changes.
    pub fn generation(&self, provider: ProviderId) -> u64 {
        self.providers
            .get(provider)
            .map_or(0, |keys| keys.generation)
    }
}
