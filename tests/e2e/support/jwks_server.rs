//! A key server: serves a replaceable JWKS at [`JWKS_PATH`] (or a path the test chooses) and an
//! OIDC discovery document at [`DISCOVERY_PATH`], counts requests per path, and can answer 503
//! or stop listening.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::http::ReceivedRequest;
use super::server::{HttpServer, Reply};

/// Where the JWKS is served unless [`JwksServer::set_jwks_path`] says otherwise.
pub const JWKS_PATH: &str = "/jwks";
/// Where the OIDC discovery document is served.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

#[derive(Default)]
struct State {
    jwks: String,
    unavailable: bool,
    delay: Duration,
    discovery_issuer: Option<String>,
    base_url: String,
    jwks_path: String,
    counts: HashMap<String, usize>,
    answered_at: Vec<(String, Instant)>,
}

/// The JWKS (and discovery) server a provider fetches keys from.
pub struct JwksServer {
    server: HttpServer,
    state: Arc<Mutex<State>>,
}

impl JwksServer {
    /// A server already listening and serving `jwks`.
    pub fn start(jwks: impl Into<String>) -> JwksServer {
        let mut server = JwksServer::reserve(jwks);
        server.listen();
        server
    }

    /// A server whose port is chosen now but which does not listen until [`JwksServer::listen`]
    /// (a key server that is down when Envoy starts).
    pub fn reserve(jwks: impl Into<String>) -> JwksServer {
        let state = Arc::new(Mutex::new(State {
            jwks: jwks.into(),
            jwks_path: JWKS_PATH.to_string(),
            ..State::default()
        }));
        let shared = Arc::clone(&state);
        let handler = move |request: &ReceivedRequest| answer(&shared, request);
        let server = HttpServer::reserve(Arc::new(handler), false);
        let jwks_server = JwksServer { server, state };
        jwks_server.lock().base_url = jwks_server.base_url();
        jwks_server
    }

    /// Starts accepting connections on the reserved port.
    pub fn listen(&mut self) {
        self.server.start();
    }

    /// Closes the port: connections are refused until [`JwksServer::listen`].
    pub fn stop_listening(&mut self) {
        self.server.stop();
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.server.addr().port()
    }

    /// `http://127.0.0.1:<port>`: the issuer when discovery is used.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The URL of the JWKS.
    pub fn jwks_url(&self) -> String {
        format!("{}{}", self.base_url(), self.lock().jwks_path)
    }

    /// Serve the JWKS at `path` instead of [`JWKS_PATH`].
    pub fn set_jwks_path(&self, path: &str) {
        self.lock().jwks_path = path.to_string();
    }

    /// Replaces the JWKS served from now on.
    pub fn set_jwks(&self, jwks: impl Into<String>) {
        self.lock().jwks = jwks.into();
    }

    /// Answer every request with 503 (`true`) or normally (`false`).
    pub fn set_unavailable(&self, unavailable: bool) {
        self.lock().unavailable = unavailable;
    }

    /// Delay every answer by this long.
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// Serve a discovery document whose `issuer` is `issuer` and whose `jwks_uri` is this
    /// server's JWKS URL. Without this call the discovery path answers 404.
    pub fn serve_discovery(&self, issuer: impl Into<String>) {
        self.lock().discovery_issuer = Some(issuer.into());
    }

    /// How many requests arrived for `path` (answered or not).
    pub fn count(&self, path: &str) -> usize {
        self.lock().counts.get(path).copied().unwrap_or(0)
    }

    /// How many JWKS requests arrived.
    pub fn jwks_fetches(&self) -> usize {
        let path = self.lock().jwks_path.clone();
        self.count(&path)
    }

    /// JWKS fetches once they have stopped changing for 300 ms (startup fetches, retries and
    /// refetches all done).
    pub fn settled_jwks_fetches(&self) -> usize {
        let mut last = self.jwks_fetches();
        super::poll(Duration::from_secs(5), || {
            std::thread::sleep(Duration::from_millis(300));
            let now = self.jwks_fetches();
            let stable = now == last;
            last = now;
            stable.then_some(now)
        })
        .expect("key fetches never settled")
    }

    /// When the first answer for `path` was about to be written, if any.
    pub fn first_answer_at(&self, path: &str) -> Option<Instant> {
        self.lock()
            .answered_at
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, at)| *at)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn answer(state: &Mutex<State>, request: &ReceivedRequest) -> Reply {
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    let path = request
        .path
        .split('?')
        .next()
        .unwrap_or_default()
        .to_string();
    *state.counts.entry(path.clone()).or_insert(0) += 1;
    let mut reply = if state.unavailable {
        Reply::json(503, r#"{"error":"unavailable"}"#)
    } else if path == state.jwks_path {
        Reply::json(200, state.jwks.clone())
    } else if path == DISCOVERY_PATH {
        match &state.discovery_issuer {
            Some(issuer) => {
                let doc = serde_json::json!({
                    "issuer": issuer,
                    "jwks_uri": format!("{}{}", state.base_url, state.jwks_path),
                    "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                });
                Reply::json(200, doc.to_string())
            }
            None => Reply::json(404, r#"{"error":"not_found"}"#),
        }
    } else {
        Reply::json(404, r#"{"error":"not_found"}"#)
    };
    reply.delay = state.delay;
    // Recorded after the delay is known: the answer is written at about now + delay.
    let answered_at = Instant::now() + state.delay;
    state.answered_at.push((path, answered_at));
    reply
}
