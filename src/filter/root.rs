//! The root context: configuration, the key-fetch timer, and key-fetch callouts.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, MapType};

use super::host_crypto::HostCrypto;
use super::http::Http;
use super::metrics::Metrics;
use super::worker::{self, SharedWorker, Worker};
use crate::config::Config;
use crate::keys::{Fetch, KeyStore, Outcome, Response, MAX_DOCUMENT_BYTES};

/// How often the timer checks for due key fetches. Short, because the first fetch of a new
/// configuration and unknown-`kid` refetches start on the next tick while requests wait.
const TICK: Duration = Duration::from_millis(100);

/// The plugin's root context, one per VM.
pub struct Root {
    context_id: u32,
    worker: Option<SharedWorker>,
    /// Key fetches in flight, by callout token.
    pending: HashMap<u32, Fetch>,
}

impl Root {
    /// A root context with no configuration yet.
    pub fn new(context_id: u32) -> Root {
        Root {
            context_id,
            worker: None,
            pending: HashMap::new(),
        }
    }

    fn configure(&mut self) -> Result<SharedWorker, String> {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .map_err(|status| format!("cannot read plugin configuration: {status:?}"))?
            .unwrap_or_default();
        let config = Config::from_json(&bytes).map_err(|err| err.to_string())?;
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
        let crypto = HostCrypto::detect(config.host_crypto);
        Ok(Rc::new(RefCell::new(Worker {
            config,
            keys,
            metrics,
            crypto,
            waiting: Default::default(),
        })))
    }

    fn dispatch_due(&mut self) {
        let (Some(worker), Some(now)) = (self.worker.clone(), worker::now()) else {
            return;
        };
        let due = worker.borrow_mut().keys.due_fetches(now.ms);
        for fetch in due {
            self.dispatch(&worker, fetch);
        }
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

    fn finish(&mut self, worker: &SharedWorker, fetch: &Fetch, response: Response<'_>) {
        let Some(now) = worker::now() else {
            return;
        };
        let outcome = worker
            .borrow_mut()
            .keys
            .on_response(fetch, response, now.ms);
        let name = worker
            .borrow()
            .config
            .providers
            .get(fetch.provider)
            .map(|p| p.name.clone())
            .unwrap_or_default();
        match outcome {
            Outcome::Updated { key_count, skipped } => {
                log::info!("provider {name}: {key_count} signing keys loaded");
                for key in skipped {
                    log::warn!(
                        "provider {name}: key #{} (kid {:?}) skipped: {}",
                        key.index,
                        key.kid.as_deref().unwrap_or("none"),
                        key.reason
                    );
                }
                worker.borrow().metrics.fetched(fetch.provider, true);
            }
            Outcome::Failed { reason } => {
                log::warn!(
                    "provider {name}: key fetch from {}{} failed: {reason}",
                    fetch.request.authority,
                    fetch.request.path
                );
                worker.borrow().metrics.fetched(fetch.provider, false);
            }
            Outcome::Next(next) => {
                self.dispatch(worker, next);
                return;
            }
            Outcome::Ignored => return,
        }
        worker::resume_waiting(worker, fetch.provider, self.context_id);
    }
}

impl Context for Root {
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
        let status = if num_headers == 0 {
            None
        } else {
            hostcalls::get_map(MapType::HttpCallResponseHeaders)
                .unwrap_or_default()
                .into_iter()
                .find(|(name, _)| name == ":status")
                .and_then(|(_, value)| value.parse::<u16>().ok())
        };
        let body = if body_size <= MAX_DOCUMENT_BYTES {
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                .ok()
                .flatten()
                .unwrap_or_default()
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
        match self.configure() {
            Ok(worker) => {
                self.worker = Some(worker);
                self.pending.clear();
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
        self.dispatch_due();
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
