//! The root context: configuration, the key-fetch timer, and key-fetch callouts. What to fetch
//! and when, and how VMs share fetches, is the core's [`FetchCoordinator`]; this context feeds it
//! the host's clock, timer and callout answers, and applies what it settles.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use super::fetch_host::{HostFetch, HostSharedData};
use super::host;
use super::host_crypto::HostCrypto;
use super::http::Http;
use super::metrics::{Gauges, Metrics};
use super::worker::{self, SharedWorker, Worker};
use crate::config::Config;
use crate::decision::replay;
use crate::decision::token_cache::TokenCache;
use crate::gauges;
use crate::keys::coordinator::{FetchCoordinator, Origin, Settled};
use crate::keys::shared;
use crate::keys::store::{KeyStore, Outcome, Response, MAX_DOCUMENT_BYTES};

/// How often the timer checks for due key fetches. Short, because the first fetch of a new
/// configuration and unknown-`kid` refetches start on the next tick while requests wait.
const TICK: Duration = Duration::from_millis(100);

/// The plugin's root context, one per VM.
pub struct Root {
    context_id: u32,
    worker: Option<SharedWorker>,
    /// Key fetches of the current configuration.
    fetches: FetchCoordinator,
    /// Gauges this root context reports on every tick; `None` until configured.
    gauges: Option<Gauges>,
}

impl Root {
    /// A root context with no configuration yet.
    pub fn new(context_id: u32) -> Root {
        Root {
            context_id,
            worker: None,
            fetches: FetchCoordinator::default(),
            gauges: None,
        }
    }

    fn configure(&mut self) -> Result<(SharedWorker, FetchCoordinator), String> {
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
        let mut keys = KeyStore::new(&config).map_err(|err| {
            let name = config
                .providers
                .get(err.provider)
                .map_or("?", |p| p.name.as_str());
            format!(
                "invalid configuration: providers.{name}.local_jwks.inline_string: {}",
                err.error
            )
        })?;
        // VMs started together read different clocks (nanoseconds) and so refresh at different
        // times; the configuration digest tells apart plugins configured in the same instant.
        let now_ns = host::time_nanos().unwrap_or(0);
        let digest_bits = digest
            .iter()
            .take(8)
            .fold(0u64, |bits, byte| bits << 8 | u64::from(*byte));
        keys.spread_refreshes(now_ns ^ digest_bits ^ u64::from(self.context_id));
        let metrics = Metrics::define(&config);
        let tokens = TokenCache::per_provider(&config);
        let crypto = HostCrypto::detect(config.host_crypto);
        if config.providers.iter().any(|p| p.binding.dpop.is_some()) {
            replay::prepare(&mut HostSharedData);
        }
        let worker = Rc::new(RefCell::new(Worker {
            config,
            keys,
            tokens,
            metrics,
            crypto,
            waiting: Default::default(),
            bodies: Default::default(),
            lists: Default::default(),
        }));
        Ok((worker, FetchCoordinator::new(channels)))
    }

    /// Adopts what other VMs published and starts the fetches that are due.
    fn on_timer(&mut self) {
        let (Some(worker), Some(now)) = (self.worker.clone(), worker::now()) else {
            return;
        };
        let settled = {
            let mut state = worker.borrow_mut();
            self.fetches.tick(&mut HostFetch, &mut state.keys, now.ms)
        };
        self.settle(&worker, settled);
        worker::refuse_stalled_bodies(&worker, now.ms, self.context_id);
    }

    /// Hands the request counters of this configuration to the host.
    fn flush_counters(&self) {
        if let Some(worker) = &self.worker {
            if let Ok(state) = worker.try_borrow() {
                state.metrics.flush();
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

    /// Applies finished fetches: forgets the verified tokens of a provider whose keys changed (no
    /// token verified against a removed key is accepted again), counts and logs the fetch, and
    /// re-decides the requests that waited for it.
    fn settle(&self, worker: &SharedWorker, settled: Vec<Settled>) {
        for Settled {
            provider,
            outcome,
            origin,
            keys_changed,
        } in settled
        {
            let name = {
                let mut state = worker.borrow_mut();
                if keys_changed {
                    if let Some(cache) = state.tokens.get_mut(provider) {
                        cache.clear();
                    }
                }
                if origin == Origin::Own {
                    state
                        .metrics
                        .fetched(provider, matches!(outcome, Outcome::Updated { .. }));
                }
                state
                    .config
                    .providers
                    .get(provider)
                    .map(|p| p.name.clone())
                    .unwrap_or_default()
            };
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
                (Outcome::Next(_) | Outcome::Ignored, _) => continue,
            }
            worker::resume_waiting(worker, provider, self.context_id);
        }
    }
}

impl Context for Root {
    /// The configuration is being removed: its callouts will never answer, so the leases they
    /// hold are freed for the VMs (or the next configuration) waiting on the same key source.
    fn on_done(&mut self) -> bool {
        self.flush_counters();
        let in_flight = self.fetches.release_all(&mut HostFetch);
        if in_flight > 0 {
            log::debug!(
                "configuration removed with {in_flight} key fetches in flight; their leases are \
                 released"
            );
        }
        true
    }

    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let (Some(worker), Some(now)) = (self.worker.clone(), worker::now()) else {
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
        let settled = {
            let mut state = worker.borrow_mut();
            self.fetches
                .answer(&mut HostFetch, &mut state.keys, token_id, response, now.ms)
        };
        self.settle(&worker, settled);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        host::follow_host_log_level();
        match self.configure() {
            Ok((worker, fetches)) => {
                self.worker = Some(worker);
                self.fetches = fetches;
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
        self.flush_counters();
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
