//! The answers to model-list requests the filter narrows: held whole until they end, then
//! replaced by the list of models the caller may use.

use proxy_wasm::types::Action;

use super::host;
use super::worker::{now, SharedWorker, Worker};
use crate::decision::model_list::{self, Judge, EMPTY_LIST};
use crate::keys::shared::SharedData;
use crate::request::Request;

/// The answer's headers: only a successful answer is a list to narrow; its length changes.
pub fn on_response_headers(worker: &SharedWorker, context_id: u32) -> Action {
    if !worker.borrow().lists.contains(context_id) {
        return Action::Continue;
    }
    let status = host::header_pairs(host::RESPONSE_HEADERS)
        .ok()
        .and_then(|pairs| {
            pairs
                .into_iter()
                .find(|(name, _)| name == b":status")
                .map(|(_, value)| value)
        });
    if status.as_deref() != Some(b"200") {
        worker.borrow_mut().lists.forget(context_id);
        return Action::Continue;
    }
    if let Err(error) = host::remove_response_header("content-length") {
        log::warn!("cannot remove the model list's content-length: {error}");
    }
    Action::Continue
}

/// A piece of the answer: held until the end, then narrowed. A list larger than
/// `max_body_bytes`, or one that is not an OpenAI model list, becomes an empty list.
pub fn on_response_body(
    worker: &SharedWorker,
    context_id: u32,
    body_size: usize,
    end_of_stream: bool,
) -> Action {
    if !worker.borrow().lists.contains(context_id) {
        return Action::Continue;
    }
    if !end_of_stream {
        return Action::Pause;
    }
    let Some(request) = worker.borrow_mut().lists.forget(context_id) else {
        return Action::Continue;
    };
    let limit = usize::try_from(worker.borrow().config.body.max_body_bytes).unwrap_or(usize::MAX);
    let narrowed = if body_size > limit {
        log::warn!("model list of {body_size} bytes is larger than max_body_bytes; sent empty");
        None
    } else {
        match (host::buffer(host::RESPONSE_BODY, body_size), now()) {
            (Ok(body), Some(now)) => narrow(worker, &request, &body, now),
            (Err(error), _) => {
                log::warn!("cannot read the model list: {error}; sent empty");
                None
            }
            (_, None) => None,
        }
    };
    let body = narrowed.unwrap_or_else(|| EMPTY_LIST.to_owned());
    if let Err(error) = host::set_buffer(host::RESPONSE_BODY, 0, body_size, body.as_bytes()) {
        log::warn!("cannot replace the model list ({error}); the answer is reset");
        if let Err(status) = host::close_request() {
            log::warn!("cannot reset the request: {status}");
        }
    }
    Action::Continue
}

fn narrow(
    worker: &SharedWorker,
    request: &Request,
    body: &[u8],
    now: crate::decision::Now,
) -> Option<String> {
    let mut state = worker.borrow_mut();
    let Worker {
        config,
        keys,
        tokens,
        crypto,
        ..
    } = &mut *state;
    let mut shared = super::fetch_host::HostSharedData;
    let mut judge = Judge {
        config,
        keys,
        tokens,
        crypto,
        shared: &mut shared as &mut dyn SharedData,
        now,
    };
    let narrowed = model_list::narrow(&mut judge, request, body);
    if narrowed.is_none() {
        log::warn!("the model server's model list is neither an OpenAI nor a V1 list; sent empty");
    }
    narrowed
}
