//! State one wasm VM (one Envoy worker) shares between its root context and its streams, and the
//! request handling both of them run.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{Action, MapType};

use super::host_crypto::HostCrypto;
use super::metrics::Metrics;
use crate::config::{Config, ProviderId};
use crate::decision::{self, Allow, Decision, Denial, LocalReply, Now, Recipient};
use crate::failure::Failure;
use crate::keys::KeyStore;
use crate::request::Request;
use crate::token_cache::TokenCache;

/// Per-VM state behind one configuration.
pub struct Worker {
    /// The validated configuration.
    pub config: Config,
    /// Key state of every provider.
    pub keys: KeyStore,
    /// Verified tokens, one cache per provider.
    pub tokens: Vec<TokenCache>,
    /// Counters.
    pub metrics: Metrics,
    /// Signature checks, on the host or in pure Rust.
    pub crypto: HostCrypto,
    /// Paused streams by context id, with the providers they wait for.
    pub waiting: BTreeMap<u32, Vec<ProviderId>>,
}

/// Shared handle: the root context and every stream context hold one.
pub type SharedWorker = Rc<RefCell<Worker>>;

/// The host clock, read once per request. `None` when the host cannot tell the time, in which
/// case nothing time-dependent can be judged.
pub fn now() -> Option<Now> {
    let time = hostcalls::get_current_time().ok()?;
    let ms = time.duration_since(UNIX_EPOCH).ok()?.as_millis();
    Some(Now {
        ms: u64::try_from(ms).ok()?,
    })
}

fn read_request() -> Request {
    let headers = hostcalls::get_map(MapType::HttpRequestHeaders).unwrap_or_default();
    let mut request = Request::default();
    for (name, value) in &headers {
        match name.as_str() {
            ":method" => request.method.clone_from(value),
            ":path" => request.path.clone_from(value),
            ":authority" => request.authority.clone_from(value),
            _ => {}
        }
    }
    request.headers = headers;
    request
}

/// Decides on the request of the current (effective) stream context and applies the outcome.
/// `Continue` means the request may go upstream now; `Pause` that it was answered or parked.
pub fn handle_request(worker: &SharedWorker, context_id: u32) -> Action {
    let request = read_request();
    let Some(now) = now() else {
        log::error!("host clock unavailable; refusing request");
        let recipient = Recipient::of(&worker.borrow().config, &request);
        let denial = decision::deny(Failure::KeysUnavailable, &recipient, 1);
        return respond(worker, &denial);
    };
    let decision = {
        let mut state = worker.borrow_mut();
        let Worker {
            config,
            keys,
            tokens,
            crypto,
            ..
        } = &mut *state;
        decision::decide(config, &request, keys, tokens, crypto, now)
    };
    match decision {
        Decision::Allow(allow) => {
            if let Err(failure) = rewrite_headers(&allow) {
                let recipient = Recipient::of(&worker.borrow().config, &request);
                let denial = decision::deny(failure, &recipient, 1);
                return respond(worker, &denial);
            }
            let state = worker.borrow();
            if allow.public {
                state.metrics.public();
            } else {
                state.metrics.allowed();
            }
            Action::Continue
        }
        Decision::Deny(denial) => respond(worker, &denial),
        Decision::Respond(reply) => {
            worker.borrow().metrics.metadata();
            send_reply(&reply)
        }
        Decision::Wait { providers } => {
            let mut state = worker.borrow_mut();
            let already_waiting = state.waiting.contains_key(&context_id);
            if !already_waiting && state.waiting.len() >= state.config.max_waiting_requests {
                let recipient = Recipient::of(&state.config, &request);
                drop(state);
                let denial = decision::deny(Failure::TooManyWaiting, &recipient, 1);
                return respond(worker, &denial);
            }
            log::debug!("request waits for signing keys of providers {providers:?}");
            state.waiting.insert(context_id, providers);
            Action::Pause
        }
    }
}

/// Applies an allowed request's header changes. The decision holds only for the request it
/// judged: a managed header left in place or a path left unnormalized could let a forged
/// identity or an unjudged path through, so any refusal by the host refuses the request.
fn rewrite_headers(allow: &Allow) -> Result<(), Failure> {
    for name in &allow.remove_headers {
        if let Err(status) = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name) {
            log::warn!("request refused: cannot remove header {name}: {status:?}");
            return Err(Failure::HeaderRewriteFailed);
        }
    }
    for (name, value) in &allow.set_headers {
        if let Err(status) =
            hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value))
        {
            log::warn!("request refused: cannot set header {name}: {status:?}");
            return Err(Failure::HeaderRewriteFailed);
        }
    }
    Ok(())
}

fn respond(worker: &SharedWorker, denial: &Denial) -> Action {
    log::debug!(
        "request denied ({}): {}",
        denial.failure.metric_name(),
        denial.failure.description()
    );
    worker.borrow().metrics.denied(denial.failure);
    send(denial.status, &denial.headers, &denial.body)
}

fn send_reply(reply: &LocalReply) -> Action {
    send(reply.status, &reply.headers, &reply.body)
}

/// Sends a local response. A gRPC denial arrives as status 200 with `grpc-status` and
/// `grpc-message` among its headers and no body; Envoy keeps those headers as they are and
/// sends them as a trailers-only response.
fn send(status: u32, headers: &[(String, String)], body: &str) -> Action {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let body = (!body.is_empty()).then_some(body.as_bytes());
    if let Err(status) = hostcalls::send_http_response(status, headers, body) {
        log::warn!("cannot send local response: {status:?}");
    }
    Action::Pause
}

/// Re-decides every stream waiting for `provider`, in its own context, and resumes the ones
/// that may continue. Streams that ended meanwhile are skipped.
pub fn resume_waiting(worker: &SharedWorker, provider: ProviderId, root_context_id: u32) {
    let ready: Vec<u32> = {
        let mut state = worker.borrow_mut();
        let ids: Vec<u32> = state
            .waiting
            .iter()
            .filter(|(_, providers)| providers.contains(&provider))
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            state.waiting.remove(id);
        }
        ids
    };
    for context_id in ready {
        if hostcalls::set_effective_context(context_id).is_err() {
            log::debug!("stream {context_id} ended while waiting for keys");
            continue;
        }
        if let Action::Continue = handle_request(worker, context_id) {
            if let Err(status) = hostcalls::resume_http_request() {
                log::debug!("cannot resume stream {context_id}: {status:?}");
            }
        }
    }
    if let Err(status) = hostcalls::set_effective_context(root_context_id) {
        log::warn!("cannot restore root context: {status:?}");
    }
}

/// Answers a request that arrived while the plugin has no valid configuration: fail closed.
pub fn refuse_unconfigured() -> Action {
    log::error!("request refused: the plugin has no valid configuration");
    let recipient = Recipient {
        grpc: decision::is_grpc(&read_request()),
        ..Recipient::default()
    };
    let denial = decision::deny(Failure::KeysUnavailable, &recipient, 1);
    send(denial.status, &denial.headers, &denial.body)
}
