//! The stand-in model server: answers 200 with what it received, so tests can see exactly which
//! headers got past the filter.
//!
//! Body: `{"method": "...", "path": "...", "headers": {"name": ["value", ...]}}`. Header names
//! are lower-cased; every name maps to an ARRAY of its values in arrival order, so a header
//! sent twice is visible as two entries instead of a joined string.

use std::sync::{Arc, Mutex};

use super::http::{ReceivedRequest, Response};
use super::server::{HttpServer, Reply};

/// What the upstream received, parsed back from an echo response body.
#[derive(Debug, Clone)]
pub struct Echo {
    /// Method seen upstream.
    pub method: String,
    /// Path seen upstream.
    pub path: String,
    /// Headers seen upstream: lower-case name, values in order.
    pub headers: Vec<(String, Vec<String>)>,
}

impl Echo {
    /// Parses the echo body of a response that reached the upstream.
    pub fn from_response(response: &Response) -> Echo {
        assert_eq!(
            response.status,
            200,
            "expected the upstream's echo, got {} {:?}",
            response.status,
            response.text()
        );
        let json = response.json();
        let headers = json["headers"]
            .as_object()
            .unwrap_or_else(|| panic!("echo body has no headers object: {json}"))
            .iter()
            .map(|(name, values)| {
                let values = values
                    .as_array()
                    .unwrap_or_else(|| panic!("echo header {name} is not an array: {json}"))
                    .iter()
                    .map(|v| v.as_str().unwrap_or_default().to_string())
                    .collect();
                (name.clone(), values)
            })
            .collect();
        Echo {
            method: json["method"].as_str().unwrap_or_default().to_string(),
            path: json["path"].as_str().unwrap_or_default().to_string(),
            headers,
        }
    }

    /// Every value the upstream saw for `name`.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// The single value the upstream saw for `name`; panics if it was sent more than once.
    pub fn header(&self, name: &str) -> Option<String> {
        let values = self.header_all(name);
        assert!(
            values.len() <= 1,
            "upstream saw {name} {} times: {values:?}",
            values.len()
        );
        values.into_iter().next()
    }
}

/// The upstream cluster's only endpoint.
pub struct EchoUpstream {
    server: HttpServer,
    received: Arc<Mutex<Vec<ReceivedRequest>>>,
}

impl EchoUpstream {
    /// Starts listening on a free port (keep-alive connections).
    pub fn start() -> EchoUpstream {
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        let handler = move |request: &ReceivedRequest| {
            log.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(request.clone());
            Reply::json(200, echo_body(request))
        };
        EchoUpstream {
            server: HttpServer::start_new(Arc::new(handler), true),
            received,
        }
    }

    /// The upstream's port.
    pub fn port(&self) -> u16 {
        self.server.addr().port()
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<ReceivedRequest> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many requests reached the upstream.
    pub fn count(&self) -> usize {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

fn echo_body(request: &ReceivedRequest) -> String {
    let mut headers = serde_json::Map::new();
    for (name, value) in &request.headers {
        let entry = headers
            .entry(name.clone())
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let serde_json::Value::Array(values) = entry {
            values.push(serde_json::Value::String(value.clone()));
        }
    }
    let digest: String = hmac_sha256::Hash::hash(&request.body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    serde_json::json!({
        "method": request.method,
        "path": request.path,
        "headers": headers,
        "body_bytes": request.body.len(),
        "body_sha256": digest,
    })
    .to_string()
}
