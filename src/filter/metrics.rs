//! Counters exposed through the host (Envoy shows them as `wasmcustom.kserve_auth.*`).

use std::collections::HashMap;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use crate::config::Config;
use crate::failure::Failure;

/// Metric ids defined for one configuration.
#[derive(Debug, Default)]
pub struct Metrics {
    allowed: Option<u32>,
    public: Option<u32>,
    metadata: Option<u32>,
    denied: HashMap<Failure, u32>,
    fetch_success: Vec<Option<u32>>,
    fetch_failure: Vec<Option<u32>>,
}

fn counter(name: &str) -> Option<u32> {
    match hostcalls::define_metric(MetricType::Counter, name) {
        Ok(id) => Some(id),
        Err(status) => {
            log::warn!("cannot define metric {name}: {status:?}");
            None
        }
    }
}

fn bump(id: Option<u32>) {
    if let Some(id) = id {
        if let Err(status) = hostcalls::increment_metric(id, 1) {
            log::debug!("cannot increment metric {id}: {status:?}");
        }
    }
}

impl Metrics {
    /// Defines every counter this configuration can move.
    pub fn define(config: &Config) -> Metrics {
        let per_provider = |suffix: &str| {
            config
                .providers
                .iter()
                .map(|p| counter(&format!("kserve_auth.jwks.{}.{suffix}", p.name)))
                .collect()
        };
        Metrics {
            allowed: counter("kserve_auth.requests.allowed"),
            public: counter("kserve_auth.requests.public"),
            metadata: counter("kserve_auth.requests.metadata"),
            denied: Failure::ALL
                .iter()
                .filter_map(|f| {
                    counter(&format!("kserve_auth.requests.denied.{}", f.metric_name()))
                        .map(|id| (*f, id))
                })
                .collect(),
            fetch_success: per_provider("fetch_success"),
            fetch_failure: per_provider("fetch_failure"),
        }
    }

    /// An authenticated request went upstream.
    pub fn allowed(&self) {
        bump(self.allowed);
    }

    /// A request on a public path went upstream.
    pub fn public(&self) {
        bump(self.public);
    }

    /// A request for the protected resource metadata was answered.
    pub fn metadata(&self) {
        bump(self.metadata);
    }

    /// A request was answered locally.
    pub fn denied(&self, failure: Failure) {
        bump(self.denied.get(&failure).copied());
    }

    /// A key fetch for `provider` finished.
    pub fn fetched(&self, provider: usize, success: bool) {
        let ids = if success {
            &self.fetch_success
        } else {
            &self.fetch_failure
        };
        bump(ids.get(provider).copied().flatten());
    }
}
