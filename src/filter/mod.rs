//! The proxy-wasm glue: the only module that talks to the host. It reads what the core needs,
//! calls it, and turns its outcomes into host actions.

mod host;
mod host_crypto;
mod http;
mod metrics;
mod root;
mod shared_data;
mod worker;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|context_id| Box::new(root::Root::new(context_id)));
}}

/// Sets the `log` crate's level to the host's, so a record the host would discard is neither
/// formatted nor sent across the ABI: a refused request otherwise pays for a debug line nobody
/// reads. Called at configure time and on every tick, so a level changed through Envoy's admin
/// interface takes effect within one.
pub(crate) fn follow_host_log_level() {
    if let Ok(level) = host::log_level() {
        log::set_max_level(level);
    }
}
