//! The proxy-wasm glue: the only module that talks to the host. It reads what the core needs,
//! calls it, and turns its outcomes into host actions.

mod body;
mod fetch_host;
mod host;
mod host_crypto;
mod http;
mod metrics;
mod model_list;
mod root;
mod worker;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|context_id| Box::new(root::Root::new(context_id)));
}}
