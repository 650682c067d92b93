//! State one wasm VM (one Envoy worker) shares between its root context and its streams, and the
//! request handling both of them run.

use proxy_wasm::hostcalls;
use proxy_wasm::types::Action;
use std::cell::RefCell;
use std::rc::Rc;

use super::body::{BodyReadings, ModelLists};
use super::fetch_host::HostSharedData;
use super::host;
use super::host_crypto::HostCrypto;
use super::metrics::Metrics;

use crate::config::{Config, ProviderId};
use crate::decision::token_cache::TokenCache;
use crate::decision::waiting::WaitingStreams;
use crate::decision::{self, Allow, Decision, Denial, LocalReply, Now, Recipient};
use crate::failure::Failure;
use crate::keys::store::KeyStore;
use crate::request::Request;

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
    /// Paused streams, with the providers they wait for.
    pub waiting: WaitingStreams,
    /// Streams whose body is read for the model it names.
    pub bodies: BodyReadings,
    /// Streams whose answer is a model list to narrow.
    pub lists: ModelLists,
}

/// Shared handle: the root context and every stream context hold one.
pub type SharedWorker = Rc<RefCell<Worker>>;

/// The host clock, read once per request. `None` when the host cannot tell the time, in which
/// case nothing time-dependent can be judged.
pub fn now() -> Option<Now> {
    let nanos = host::time_nanos().ok()?;
    Some(Now {
        ms: nanos / 1_000_000,
    })
}

/// The current stream's request headers, as bytes made safe for the core. A header map the host
/// cannot hand over leaves the request without a path, which no rule matches: it is refused.
fn read_request() -> Request {
    match host::header_pairs(host::REQUEST_HEADERS) {
        Ok(pairs) => Request::from_header_pairs(pairs),
        Err(error) => {
            log::warn!("cannot read the request headers: {error}");
            Request::default()
        }
    }
}

/// The hex SHA-256 of the connection's client certificate, or `None` without one. A host that
/// cannot tell gives `None` too: a certificate-bound token is then refused, never accepted.
fn peer_certificate_sha256() -> Option<String> {
    match host::property(&["connection", "sha256_peer_certificate_digest"]) {
        Ok(digest) => digest.and_then(|bytes| String::from_utf8(bytes).ok()),
        Err(error) => {
            log::warn!("cannot read the client certificate digest: {error}");
            None
        }
    }
}

/// Decides on the request of the current (effective) stream context and applies the outcome.
/// `Continue` means the request may go upstream now; `Pause` that it was answered or parked.
pub fn handle_request(worker: &SharedWorker, context_id: u32) -> Action {
    let mut request = read_request();
    if worker.borrow().config.reads_peer_certificate {
        request.peer_certificate_sha256 = peer_certificate_sha256();
    }
    request.body_model = worker.borrow().bodies.model_of(context_id);
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
        decision::decide(
            config,
            &request,
            keys,
            tokens,
            crypto,
            &mut HostSharedData,
            now,
        )
    };
    match decision {
        Decision::Allow(allow) => {
            if let Err(failure) = rewrite_headers(&allow) {
                let recipient = Recipient::of(&worker.borrow().config, &request);
                let denial = decision::deny(failure, &recipient, 1);
                return respond(worker, &denial);
            }
            let mut state = worker.borrow_mut();
            state.bodies.let_through(context_id);
            if allow.narrow_model_list {
                state.lists.watch(context_id, request);
            }
            if allow.public {
                state.metrics.public();
            } else {
                state.metrics.allowed();
            }
            Action::Continue
        }
        Decision::Deny(denial) => {
            worker.borrow_mut().bodies.forget(context_id);
            respond(worker, &denial)
        }
        Decision::ReadBody {
            protocol,
            max_bytes,
        } => {
            log::debug!("request waits for its body to name the model");
            worker
                .borrow_mut()
                .bodies
                .start(context_id, protocol, max_bytes, now.ms);
            Action::Pause
        }
        Decision::Respond(reply) => {
            worker.borrow().metrics.metadata();
            send_reply(&reply)
        }
        Decision::Wait { providers } => {
            let mut state = worker.borrow_mut();
            let limit = state.config.max_waiting_requests;
            if state.waiting.park(context_id, providers.clone(), limit) {
                log::debug!("request waits for signing keys of providers {providers:?}");
                return Action::Pause;
            }
            let recipient = Recipient::of(&state.config, &request);
            drop(state);
            let denial = decision::deny(Failure::TooManyWaiting, &recipient, 1);
            respond(worker, &denial)
        }
    }
}

/// Decides on a request's headers. A request that must name its model in a body it does not have
/// (the headers end the stream) is refused at once: no body callback would come.
pub fn handle_headers(worker: &SharedWorker, context_id: u32, end_of_stream: bool) -> Action {
    let action = handle_request(worker, context_id);
    if end_of_stream && worker.borrow().bodies.is_reading(context_id) {
        worker.borrow_mut().bodies.forget(context_id);
        return refuse_now(worker, Failure::BodyModelMissing);
    }
    action
}

/// Reads the next piece of a request body the filter holds for the model it names, and decides
/// once the model is known. `body_size` is what Envoy has buffered (all of it while the request is
/// held, the new piece once it was let through).
pub fn handle_body(
    worker: &SharedWorker,
    context_id: u32,
    body_size: usize,
    end_of_stream: bool,
) -> Action {
    let mut state = worker.borrow_mut();
    let parked = state.waiting.contains(context_id);
    let Some(reading) = state.bodies.get_mut(context_id) else {
        // A request parked for its signing keys keeps its body until it is decided.
        return if parked {
            Action::Pause
        } else {
            Action::Continue
        };
    };
    reading.got_body = true;
    let start = if reading.held <= body_size {
        reading.held
    } else {
        0
    };
    let piece = match host::buffer_range(host::REQUEST_BODY, start, body_size - start) {
        Ok(piece) => piece,
        Err(error) => {
            log::warn!("request refused: cannot read the request body: {error}");
            state.bodies.forget(context_id);
            drop(state);
            return refuse_now(worker, Failure::BodyNotDelivered);
        }
    };
    let fed = reading.scanner.feed(&piece);
    reading.held = body_size;
    if reading.decided {
        // Let through already: the rest is read only for a second model, which the model server's
        // parser would take instead of the first. Nothing can be answered any more; the request
        // is reset, so the model server never gets it whole.
        if let Err(error) = fed {
            state.bodies.forget(context_id);
            if decision::body_failure(error) == Failure::BodyModelRepeated {
                log::warn!("request reset: its body names a second model after the first");
                if let Err(status) = host::close_request() {
                    log::warn!("cannot reset the request: {status}");
                }
                return Action::Pause;
            }
        }
        reading_done(&mut state, context_id, end_of_stream);
        return Action::Continue;
    }
    if let Err(error) = fed {
        state.bodies.forget(context_id);
        drop(state);
        return refuse_now(worker, decision::body_failure(error));
    }
    if reading.scanner.model().is_some() {
        if parked {
            return Action::Pause;
        }
        drop(state);
        return handle_request(worker, context_id);
    }
    if end_of_stream {
        let failure = match reading.scanner.finish() {
            Ok(_) => Failure::BodyModelMissing,
            Err(error) => decision::body_failure(error),
        };
        state.bodies.forget(context_id);
        drop(state);
        return refuse_now(worker, failure);
    }
    Action::Pause
}

/// How long a request may be held for a body callback that does not come. Envoy calls the filter
/// with the body of a request it holds only when the filter's configuration says
/// `allow_on_headers_stop_iteration: true` (Envoy 1.35 and later); without it, such a request
/// would wait for ever.
const BODY_WAIT_MS: u64 = 10_000;

/// Refuses (503) the requests held for a body that has not come within [`BODY_WAIT_MS`], and
/// says what to fix.
pub fn refuse_stalled_bodies(worker: &SharedWorker, now_ms: u64, root_context_id: u32) {
    let stalled = worker
        .borrow_mut()
        .bodies
        .take_stalled(now_ms, BODY_WAIT_MS);
    if stalled.is_empty() {
        return;
    }
    for context_id in stalled {
        if hostcalls::set_effective_context(context_id).is_err() {
            continue;
        }
        log::warn!(
            "request refused: its body never reached the filter within {} s; a request whose \
             model is named in its body needs allow_on_headers_stop_iteration: true in the wasm \
             filter's configuration (Envoy 1.35 and later)",
            BODY_WAIT_MS / 1000
        );
        refuse_now(worker, Failure::BodyNotDelivered);
    }
    if let Err(status) = hostcalls::set_effective_context(root_context_id) {
        log::warn!("cannot restore root context: {status:?}");
    }
}

/// Stops reading a let-through stream's body at its end.
fn reading_done(state: &mut Worker, context_id: u32, end_of_stream: bool) {
    if end_of_stream {
        state.bodies.forget(context_id);
    }
}

/// Refuses the current request for `failure`, answered as its content type wants.
fn refuse_now(worker: &SharedWorker, failure: Failure) -> Action {
    let request = read_request();
    let recipient = Recipient::of(&worker.borrow().config, &request);
    let denial = decision::deny(failure, &recipient, 1);
    respond(worker, &denial)
}

/// Applies an allowed request's header changes and filter state. The decision holds only for the request it
/// judged: a managed header left in place or a path left unnormalized could let a forged
/// identity or an unjudged path through, so any refusal by the host refuses the request.
fn rewrite_headers(allow: &Allow) -> Result<(), Failure> {
    for name in &allow.remove_headers {
        if let Err(error) = host::remove_request_header(name) {
            log::warn!("request refused: cannot remove header {name}: {error}");
            return Err(Failure::HeaderRewriteFailed);
        }
    }
    for (name, value) in &allow.set_headers {
        if let Err(error) = host::replace_request_header(name, value) {
            log::warn!("request refused: cannot set header {name}: {error}");
            return Err(Failure::HeaderRewriteFailed);
        }
    }
    // An RBAC rule or an access log reading the identity must never see it missing on a request
    // that went through: refuse rather than forward without it.
    for (property, value) in &allow.filter_state {
        if let Err(error) = host::set_filter_state(property, value) {
            log::warn!("request refused: cannot set filter state wasm.{property}: {error}");
            return Err(Failure::HeaderRewriteFailed);
        }
    }
    Ok(())
}

fn respond(worker: &SharedWorker, denial: &Denial) -> Action {
    log::debug!(
        "request denied ({}): {}{}{}",
        denial.failure.metric_name(),
        denial.failure.description(),
        if denial.detail.is_some() { ": " } else { "" },
        denial.detail.as_deref().unwrap_or_default()
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
    if let Err(error) = host::send_local_response(status, headers, body.as_bytes()) {
        log::warn!("cannot send local response: {error}");
    }
    Action::Pause
}

/// Re-decides every stream waiting for `provider`, in its own context, and resumes the ones
/// that may continue. Streams that ended meanwhile are skipped.
pub fn resume_waiting(worker: &SharedWorker, provider: ProviderId, root_context_id: u32) {
    let ready = worker.borrow_mut().waiting.take_waiting_for(provider);
    for context_id in ready {
        if hostcalls::set_effective_context(context_id).is_err() {
            log::debug!("stream {context_id} ended while waiting for keys");
            continue;
        }
        if let Action::Continue = handle_request(worker, context_id) {
            if let Err(error) = host::resume_request() {
                log::debug!("cannot resume stream {context_id}: {error}");
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
