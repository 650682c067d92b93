//! The root context: configuration, the key-fetch timer, and key-fetch callouts.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use super::host;
use super::host_crypto::HostCrypto;
use super::http::Http;
use super::metrics::{Gauges, Metrics};
use super::shared_data::{self, Lease};
use super::worker::{self, SharedWorker, Worker};
use crate::config::{Config, ProviderId};
use crate::decision::token_cache::TokenCache;
use crate::gauges;
use crate::keys::shared::{self, Channel};
use crate::keys::store::{Fetch, KeyStore, Outcome, Response, MAX_DOCUMENT_BYTES};

/// How often the timer checks for due key fetches. Short, because the first fetch of a new
/// configuration and unknown-`kid` refetches start on the next tick while requests wait.
const TICK: Duration = Duration::from_millis(100);
/// Slack beyond a fetch's own timeout before other VMs stop waiting for its result.
const LEASE_MARGIN_MS: u64 = 1_000;

/// The plugin's root context, one per VM.
pub struct Root {
    context_id: u32,
    worker: Option<SharedWorker>,
    /// Shared-data channel of each provider's key source; `None` for inline keys.
    channels: Vec<Option<Channel>>,
    /// Key fetches in flight, by callout token.
    pending: HashMap<u32, Fetch>,
    /// Gauges this root context reports on every tick; `None` until configured.
    gauges: Option<Gauges>,
}

impl Root {
    /// A root context with no configuration yet.
    pub fn new(context_id: u32) -> Root {
        Root {
            context_id,
            worker: None,
            channels: Vec::new(),
            pending: HashMap::new(),
            gauges: None,
        }
    }

    fn configure(&mut self) -> Result<SharedWorker, String> {
        let bytes = host::buffer(host::PLUGIN_CONFIGURATION, usize::MAX)
            .map_err(|error| format!("cannot read plugin configuration: {error}"))?;
        let config = Config::from_json(&bytes).map_err(|err| err.to_string())?;
        // Every VM of this configuration reads the same bytes, so they agree on the channels;
        // another configuration, or another plugin, never shares them.
        let digest = hmac_sha256::Hash::hash(&bytes);
        let channels = config
            .providers
            .iter()
            .map(|provider| shared::channel(&digest, &provider.keys))
            .collect();
        let keys = KeyStore::new(&config).map_err(|err| {
            let name = config
                .providers
                .get(err.provider)
                .map_or("?", |p| p.name.as_str());
            format!(
                "invalid configuration: providers.{name}.local_jwks.inline_string: {}",
                err.error
            )
        })?;
        let metrics = Metrics::define(&config);
        let tokens = config
            .providers
            .iter()
            .map(|p| TokenCache::new(p.jwt_cache_size))
            .collect();
        let crypto = HostCrypto::detect(config.host_crypto);
        self.channels = channels;
        Ok(Rc::new(RefCell::new(Worker {
            config,
            keys,
            tokens,
            metrics,
            crypto,
            waiting: Default::default(),
        })))
    }

    /// Applies results other VMs published, then starts the fetches that are due: under the
    /// source's lease, or, when another VM holds it, by waiting for that VM's result.
    fn on_timer(&mut self) {
        let (Some(worker), Some(now)) = (self.worker.clone(), worker::now()) else {
            return;
        };
        // Leases are read before results: a fetcher publishes before it releases, so a lease
        // seen free here is never followed by a result missed below.
        let released: Vec<ProviderId> = worker
            .borrow()
            .keys
            .waiting_for_peer()
            .into_iter()
            .filter(|&provider| {
                self.channel(provider)
                    .is_some_and(|channel| shared_data::lease_free(channel, now.ms))
            })
            .collect();
        for (provider, channel) in self.channels.iter().enumerate() {
            let Some(record) = channel
                .as_ref()
                .and_then(|channel| shared_data::read(channel, now.ms))
            else {
                continue;
            };
            let outcome = update_keys(&worker, provider, |keys| {
                keys.adopt(provider, &record, now.ms)
            });
            if let Some(outcome) = outcome {
                self.settle(&worker, provider, outcome, Origin::Peer);
            }
        }
        for provider in released {
            if worker.borrow_mut().keys.peer_released(provider, now.ms) {
                log::debug!("provider {provider}: the key fetch lease was released; fetching");
            }
        }
        let due = worker.borrow_mut().keys.due_fetches(now.ms);
        for fetch in due {
            match self.channel(fetch.provider) {
                None => self.dispatch(&worker, fetch),
                Some(channel) => {
                    let deadline = lease_deadline(&fetch, now.ms);
                    match shared_data::acquire(channel, now.ms, deadline) {
                        Lease::Acquired => self.dispatch(&worker, fetch),
                        Lease::HeldUntil(until) => {
                            worker.borrow_mut().keys.wait_for_peer(&fetch, until);
                        }
                    }
                }
            }
        }
    }

    /// Moves the gauges to this root context's cached tokens and paused streams and to the VM's
    /// linear memory.
    fn report_gauges(&mut self) {
        let (Some(worker), Some(gauges)) = (&self.worker, &mut self.gauges) else {
            return;
        };
        let (entries, waiting) = {
            let state = worker.borrow();
            let waiting = u64::try_from(state.waiting.len()).unwrap_or(u64::MAX);
            (gauges::cache_entries(&state.tokens), waiting)
        };
        let memory = gauges::memory_bytes(core::arch::wasm32::memory_size(0));
        gauges.report(entries, waiting, memory);
    }

    fn channel(&self, provider: ProviderId) -> Option<&Channel> {
        self.channels.get(provider)?.as_ref()
    }

    fn dispatch(&mut self, worker: &SharedWorker, fetch: Fetch) {
        let request = &fetch.request;
        let headers = vec![
            (":method", "GET"),
            (":path", request.path.as_str()),
            (":authority", request.authority.as_str()),
            ("accept", "application/json"),
        ];
        match hostcalls::dispatch_http_call(
            &request.cluster,
            headers,
            None,
            vec![],
            Duration::from_millis(request.timeout_ms),
        ) {
            Ok(token) => {
                self.pending.insert(token, fetch);
            }
            Err(status) => {
                log::warn!(
                    "cannot fetch keys through cluster {:?}: {status:?}",
                    request.cluster
                );
                let failed = Response {
                    status: None,
                    body_size: 0,
                    body: &[],
                };
                self.finish(worker, &fetch, failed);
            }
        }
    }

    /// Handles the answer to this VM's own fetch, and publishes its result for the others.
    fn finish(&mut self, worker: &SharedWorker, fetch: &Fetch, response: Response<'_>) {
        let Some(now) = worker::now() else {
            return;
        };
        let provider = fetch.provider;
        let outcome = update_keys(worker, provider, |keys| {
            keys.on_response(fetch, response, now.ms)
        });
        let result = match &outcome {
            Outcome::Next(next) => {
                if let Some(channel) = self.channel(provider) {
                    shared_data::extend(channel, lease_deadline(next, now.ms));
                }
                let next = next.clone();
                self.dispatch(worker, next);
                return;
            }
            Outcome::Ignored => return,
            Outcome::Updated { .. } => Ok(response.body.to_vec()),
            Outcome::Failed { reason } => Err(reason.clone()),
        };
        if let Some(channel) = self.channel(provider) {
            shared_data::publish(channel, now.ms, |last| {
                worker
                    .borrow_mut()
                    .keys
                    .record(provider, last, result.clone(), now.ms)
            });
            shared_data::release(channel);
        }
        worker
            .borrow()
            .metrics
            .fetched(provider, matches!(outcome, Outcome::Updated { .. }));
        self.settle(worker, provider, outcome, Origin::Own);
    }

    /// Logs a finished fetch and re-decides the requests that waited for it.
    fn settle(
        &self,
        worker: &SharedWorker,
        provider: ProviderId,
        outcome: Outcome,
        origin: Origin,
    ) {
        let name = worker
            .borrow()
            .config
            .providers
            .get(provider)
            .map(|p| p.name.clone())
            .unwrap_or_default();
        match (outcome, origin) {
            (Outcome::Updated { key_count, .. }, Origin::Peer) => {
                log::debug!(
                    "provider {name}: {key_count} signing keys adopted from another worker"
                );
            }
            (Outcome::Updated { key_count, skipped }, Origin::Own) => {
                log::info!("provider {name}: {key_count} signing keys loaded");
                for key in skipped {
                    log::warn!(
                        "provider {name}: key #{} (kid {:?}) skipped: {}",
                        key.index,
                        key.kid.as_deref().unwrap_or("none"),
                        key.reason
                    );
                }
            }
            (Outcome::Failed { reason }, Origin::Peer) => {
                log::debug!("provider {name}: another worker's key fetch failed: {reason}");
            }
            (Outcome::Failed { reason }, Origin::Own) => {
                log::warn!("provider {name}: key fetch failed: {reason}");
            }
            (Outcome::Next(_) | Outcome::Ignored, _) => return,
        }
        worker::resume_waiting(worker, provider, self.context_id);
    }
}

/// Whose fetch a result comes from.
#[derive(Clone, Copy)]
enum Origin {
    Own,
    Peer,
}

/// How long other VMs wait for this VM's fetch before trying themselves.
fn lease_deadline(fetch: &Fetch, now_ms: u64) -> u64 {
    now_ms
        .saturating_add(fetch.request.timeout_ms)
        .saturating_add(LEASE_MARGIN_MS)
}

/// Runs `change` on the key store and drops the provider's cached tokens if its key set changed,
/// so no token verified against a removed key is accepted again.
fn update_keys<R>(
    worker: &SharedWorker,
    provider: ProviderId,
    change: impl FnOnce(&mut KeyStore) -> R,
) -> R {
    let mut state = worker.borrow_mut();
    let before = state.keys.generation(provider);
    let result = change(&mut state.keys);
    if state.keys.generation(provider) != before {
        if let Some(cache) = state.tokens.get_mut(provider) {
            cache.clear();
        }
    }
    result
}

impl Context for Root {
    /// The configuration is being removed: its callouts will never answer, so the leases they
    /// hold are freed for the VMs (or the next configuration) waiting on the same key source.
    fn on_done(&mut self) -> bool {
        for fetch in self.pending.values() {
            if let Some(channel) = self.channel(fetch.provider) {
                shared_data::release(channel);
            }
        }
        if !self.pending.is_empty() {
            log::debug!(
                "configuration removed with {} key fetches in flight; their leases are released",
                self.pending.len()
            );
        }
        self.pending.clear();
        true
    }

    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let (Some(fetch), Some(worker)) = (self.pending.remove(&token_id), self.worker.clone())
        else {
            return;
        };
        // Any byte may come back from a key server or a proxy on the way: headers and body are
        // read as bytes, and only `:status` is looked at.
        let status = if num_headers == 0 {
            None
        } else {
            host::header_pairs(host::CALLOUT_RESPONSE_HEADERS)
                .unwrap_or_default()
                .into_iter()
                .find(|(name, _)| name == b":status")
                .and_then(|(_, value)| std::str::from_utf8(&value).ok()?.parse::<u16>().ok())
        };
        let body = if body_size <= MAX_DOCUMENT_BYTES {
            host::buffer(host::CALLOUT_RESPONSE_BODY, body_size).unwrap_or_default()
        } else {
            Vec::new()
        };
        let response = Response {
            status,
            body_size,
            body: &body,
        };
        self.finish(&worker, &fetch, response);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        host::follow_host_log_level();
        match self.configure() {
            Ok(worker) => {
                self.worker = Some(worker);
                self.pending.clear();
                if self.gauges.is_none() {
                    self.gauges = Some(Gauges::define());
                }
                if let Err(status) = hostcalls::set_tick_period(TICK) {
                    log::error!("cannot start the key refresh timer: {status:?}");
                    return false;
                }
                true
            }
            Err(message) => {
                log::error!("{message}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        host::follow_host_log_level();
        self.on_timer();
        self.report_gauges();
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            context_id,
            worker: self.worker.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
