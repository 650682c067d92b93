//! The streams whose body the filter reads: requests for the model they name (the scanner of
//! each, and how much of Envoy's buffered body it has read), and answers that are model lists to
//! narrow.
//!
//! While the filter holds a stream (its callbacks answer `Pause`), Envoy buffers the body and each
//! callback sees all of it from the start, so only the bytes after those already read are
//! fetched. Once the request is let through, Envoy passes each later piece on its own.

use std::collections::HashMap;

use crate::request::body::{BodyProtocol, BodyScanner};
use crate::request::Request;

/// One stream's body reading.
pub struct BodyReading {
    /// The model scanner.
    pub scanner: BodyScanner,
    /// Bytes at the start of Envoy's buffer already read.
    pub held: usize,
    /// The request was let through: later pieces are read only for a second model.
    pub decided: bool,
    /// When the headers were held for the body (milliseconds since the epoch).
    pub started_ms: u64,
    /// A body callback has come.
    pub got_body: bool,
}

/// Every stream whose body is being read, by context id.
#[derive(Default)]
pub struct BodyReadings {
    streams: HashMap<u32, BodyReading>,
}

impl BodyReadings {
    /// Starts reading stream `id`'s body.
    pub fn start(&mut self, id: u32, protocol: BodyProtocol, max_bytes: u64, now_ms: u64) {
        self.streams.insert(
            id,
            BodyReading {
                scanner: BodyScanner::new(protocol, max_bytes),
                held: 0,
                decided: false,
                started_ms: now_ms,
                got_body: false,
            },
        );
    }

    /// The streams held longer than `limit_ms` without a single body callback, forgotten.
    pub fn take_stalled(&mut self, now_ms: u64, limit_ms: u64) -> Vec<u32> {
        let stalled: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, reading)| {
                !reading.got_body && now_ms.saturating_sub(reading.started_ms) > limit_ms
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &stalled {
            self.streams.remove(id);
        }
        stalled
    }

    /// Whether stream `id`'s body is being read.
    pub fn is_reading(&self, id: u32) -> bool {
        self.streams.contains_key(&id)
    }

    /// Stream `id`'s reading.
    pub fn get_mut(&mut self, id: u32) -> Option<&mut BodyReading> {
        self.streams.get_mut(&id)
    }

    /// The model stream `id`'s body named, once read.
    pub fn model_of(&self, id: u32) -> Option<String> {
        self.streams
            .get(&id)
            .and_then(|reading| reading.scanner.model())
            .map(str::to_owned)
    }

    /// Stream `id` was let through: Envoy passes its buffer on, and later pieces come alone.
    pub fn let_through(&mut self, id: u32) {
        if let Some(reading) = self.streams.get_mut(&id) {
            reading.decided = true;
            reading.held = 0;
        }
    }

    /// Stops reading stream `id`'s body.
    pub fn forget(&mut self, id: u32) {
        self.streams.remove(&id);
    }
}

/// The streams whose answer is a model list to narrow, with the request it answers.
#[derive(Default)]
pub struct ModelLists {
    streams: HashMap<u32, Request>,
}

impl ModelLists {
    /// Narrow stream `id`'s answer for `request`.
    pub fn watch(&mut self, id: u32, request: Request) {
        self.streams.insert(id, request);
    }

    /// Whether stream `id`'s answer is narrowed.
    pub fn contains(&self, id: u32) -> bool {
        self.streams.contains_key(&id)
    }

    /// Stops narrowing stream `id`'s answer.
    pub fn forget(&mut self, id: u32) -> Option<Request> {
        self.streams.remove(&id)
    }
}
