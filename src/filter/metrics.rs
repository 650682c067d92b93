//! Counters and gauges exposed through the host (Envoy shows them as `wasmcustom.kserve_auth.*`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use crate::config::Config;
use crate::failure::Failure;
use crate::gauges::{Reported, VmReport};

/// Metric ids defined for one configuration.
///
/// Request counters are counted in the VM and handed to the host on the 100 ms tick
/// ([`Metrics::flush`]), not per request: the host call per request cost more than anything else
/// a counter does, and Envoy's stats are read seconds apart.
#[derive(Debug, Default)]
pub struct Metrics {
    allowed: Counter,
    public: Counter,
    metadata: Counter,
    denied: HashMap<Failure, Counter>,
    fetch_success: Vec<Counter>,
    fetch_failure: Vec<Counter>,
}

/// One host counter and what this VM counted since the last flush.
#[derive(Debug, Default)]
struct Counter {
    id: Option<u32>,
    pending: Cell<i64>,
}

impl Counter {
    fn bump(&self) {
        self.pending.set(self.pending.get().saturating_add(1));
    }

    fn flush(&self) {
        let pending = self.pending.replace(0);
        if pending != 0 {
            add(self.id, Some(pending));
        }
    }
}

fn counter(name: &str) -> Counter {
    Counter {
        id: define(MetricType::Counter, name),
        pending: Cell::new(0),
    }
}

fn define(kind: MetricType, name: &str) -> Option<u32> {
    match hostcalls::define_metric(kind, name) {
        Ok(id) => Some(id),
        Err(status) => {
            log::warn!("cannot define metric {name}: {status:?}");
            None
        }
    }
}

fn add(id: Option<u32>, change: Option<i64>) {
    if let (Some(id), Some(change)) = (id, change) {
        if let Err(status) = hostcalls::increment_metric(id, change) {
            log::debug!("cannot move metric {id}: {status:?}");
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
                .map(|f| {
                    let name = format!("kserve_auth.requests.denied.{}", f.metric_name());
                    (*f, counter(&name))
                })
                .collect(),
            fetch_success: per_provider("fetch_success"),
            fetch_failure: per_provider("fetch_failure"),
        }
    }

    /// An authenticated request went upstream.
    pub fn allowed(&self) {
        self.allowed.bump();
    }

    /// A request on a public path went upstream.
    pub fn public(&self) {
        self.public.bump();
    }

    /// A request for the protected resource metadata was answered.
    pub fn metadata(&self) {
        self.metadata.bump();
    }

    /// A request was answered locally.
    pub fn denied(&self, failure: Failure) {
        if let Some(counter) = self.denied.get(&failure) {
            counter.bump();
        }
    }

    /// A key fetch for `provider` finished.
    pub fn fetched(&self, provider: usize, success: bool) {
        let counters = if success {
            &self.fetch_success
        } else {
            &self.fetch_failure
        };
        // Fetches are rare: counted at once, so a failing key server shows without delay.
        if let Some(counter) = counters.get(provider) {
            counter.bump();
            counter.flush();
        }
    }

    /// Hands every count since the last flush to the host.
    pub fn flush(&self) {
        let fixed = [&self.allowed, &self.public, &self.metadata];
        fixed
            .into_iter()
            .chain(self.denied.values())
            .chain(&self.fetch_success)
            .chain(&self.fetch_failure)
            .for_each(Counter::flush);
    }
}

thread_local! {
    /// What this VM added to the memory gauge; shared by every root context of the VM.
    static VM_MEMORY: RefCell<VmReport> = RefCell::new(VmReport::default());
}

fn with_vm_memory(f: impl FnOnce(&mut VmReport) -> Option<i64>) -> Option<i64> {
    VM_MEMORY
        .try_with(|vm| vm.try_borrow_mut().ok().and_then(|mut vm| f(&mut vm)))
        .ok()
        .flatten()
}

/// One root context's gauges. Every VM adds its own values to stats shared by all VMs, so each
/// gauge moves by the difference to what this reporter added before, and is taken back out when
/// the root context goes.
#[derive(Debug)]
pub struct Gauges {
    memory: Option<u32>,
    entries: Option<u32>,
    waiting: Option<u32>,
    entries_reported: Reported,
    waiting_reported: Reported,
}

impl Gauges {
    /// Defines the gauges and counts this root context among the VM's memory reporters.
    pub fn define() -> Gauges {
        with_vm_memory(|vm| {
            vm.join();
            None
        });
        Gauges {
            memory: define(MetricType::Gauge, "kserve_auth.vm.memory_bytes"),
            entries: define(MetricType::Gauge, "kserve_auth.token_cache.entries"),
            waiting: define(MetricType::Gauge, "kserve_auth.requests.waiting"),
            entries_reported: Reported::default(),
            waiting_reported: Reported::default(),
        }
    }

    /// Reports this root context's cached tokens and paused streams, and the VM's memory.
    pub fn report(&mut self, cache_entries: u64, waiting: u64, memory_bytes: u64) {
        add(self.entries, self.entries_reported.update(cache_entries));
        add(self.waiting, self.waiting_reported.update(waiting));
        let change = with_vm_memory(|vm| vm.update(memory_bytes));
        add(self.memory, change);
    }
}

impl Drop for Gauges {
    fn drop(&mut self) {
        add(self.entries, self.entries_reported.withdraw());
        add(self.waiting, self.waiting_reported.withdraw());
        let change = with_vm_memory(VmReport::leave);
        add(self.memory, change);
    }
}
