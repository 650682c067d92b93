//! One HTTP stream: hands the request headers, and a body the filter reads, to the worker, and
//! forgets the stream when it ends.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::model_list;
use super::worker::{self, SharedWorker};

/// The stream context Envoy creates per request.
pub struct Http {
    /// Host context id, the key under which a paused stream waits.
    pub context_id: u32,
    /// The worker's shared state; `None` when the plugin has no valid configuration, in which
    /// case every request is refused.
    pub worker: Option<SharedWorker>,
}

impl Context for Http {
    fn on_done(&mut self) -> bool {
        self.forget();
        true
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        match &self.worker {
            Some(worker) => worker::handle_headers(worker, self.context_id, end_of_stream),
            None => worker::refuse_unconfigured(),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match &self.worker {
            Some(worker) => worker::handle_body(worker, self.context_id, body_size, end_of_stream),
            None => Action::Pause,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match &self.worker {
            Some(worker) => model_list::on_response_headers(worker, self.context_id),
            None => Action::Continue,
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        match &self.worker {
            Some(worker) => {
                model_list::on_response_body(worker, self.context_id, body_size, end_of_stream)
            }
            None => Action::Continue,
        }
    }
}

impl Http {
    /// Drops the stream from the waiting list and the body readings, so it is never resumed
    /// after it ended.
    fn forget(&self) {
        if let Some(Ok(mut state)) = self.worker.as_ref().map(|w| w.try_borrow_mut()) {
            state.waiting.forget(self.context_id);
            state.bodies.forget(self.context_id);
            state.lists.forget(self.context_id);
        }
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        self.forget();
    }
}
