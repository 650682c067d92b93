//! What Envoy charges for the identity headers, without this filter: a proxy-wasm filter that
//! makes the host calls the filter's hot identity row makes and nothing else. It reads the
//! request header map and the clock; unless the path starts with `/public`, it removes
//! `Authorization` and sets `x-jwt-payload` (the token's payload segment, as the filter sends
//! it), `x-jwt-sub` and `x-jwt-roles` (constants of the bench tokens' lengths). No parsing, no
//! verification, no cache; a request without `Authorization` gets `401`, so the benchmark's
//! check that a filter is in place holds for it too. `make bench` runs it as two rows (`host_floor`, `host_identity`): their
//! difference is Envoy's own cost of the four header changes, the part of the identity row's gap
//! to its floor that no filter using the proxy-wasm ABI can avoid.
//!
//! Built for Envoy with `cargo build --release --target wasm32-wasip1 --example header_cost`.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(HeaderCost) });
}}

struct HeaderCost;

impl Context for HeaderCost {}

impl HttpContext for HeaderCost {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let headers = self.get_http_request_headers_bytes();
        // The filter reads the clock on every request, for its token times.
        let _now = self.get_current_time();
        let value = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_slice())
        };
        if value(":path").is_some_and(|path| path.starts_with(b"/public")) {
            return Action::Continue;
        }
        let Some(authorization) = value("authorization") else {
            self.send_http_response(401, vec![], None);
            return Action::Pause;
        };
        let payload = std::str::from_utf8(authorization)
            .ok()
            .and_then(|v| v.split('.').nth(1))
            .unwrap_or_default()
            .to_owned();
        self.set_http_request_header("authorization", None);
        self.set_http_request_header("x-jwt-payload", Some(&payload));
        self.set_http_request_header("x-jwt-sub", Some("bench-user-00042"));
        self.set_http_request_header("x-jwt-roles", Some("model-reader,fraud-predict"));
        Action::Continue
    }
}
