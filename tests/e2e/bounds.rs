//! Resource bounds and hostile timing: what a flood, an oversize input or a client that gives
//! up mid-request does to the filter. Each bound is a test that fails if the bound goes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use crate::support::http::DEFAULT_HOST;
use crate::support::*;
use serde_json::json;

fn es256() -> TestKey {
    TestKey::es256("k1")
}

/// The default configuration, with a callout timeout long enough for a slow key server.
fn patient_config(server: &JwksServer) -> serde_json::Value {
    let mut provider = remote_provider(server);
    provider["remote_jwks"]["http_uri"]["timeout"] = json!("10s");
    plugin_config(provider)
}

// Requests waiting for the first key set are capped: the excess gets 503 at once instead of
// holding memory without bound.
#[test]
fn requests_beyond_the_waiting_cap_get_503() {
    let key = es256();
    let server = JwksServer::start(jwks(&[&key]));
    server.set_delay(Duration::from_secs(3));
    let mut config = patient_config(&server);
    config["max_waiting_requests"] = json!(2);
    let stack = Stack::start(server, &config);
    let token = key.sign(&good_claims("alice"));
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..5)
            .map(|i| {
                let token = &token;
                let stack = &stack;
                scope.spawn(move || {
                    // Stagger slightly so the two admitted requests are parked before the rest.
                    std::thread::sleep(Duration::from_millis(100 * i));
                    stack.get_with_token(PROTECTED_PATH, token)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                let response = h.join().unwrap();
                if response.status == 503 {
                    assert_eq!(
                        response.json()["error_description"],
                        "Too many requests are waiting for signing keys"
                    );
                    assert!(response.header("retry-after").is_some());
                }
                response.status
            })
            .collect()
    });
    let mut sorted = statuses.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![200, 200, 503, 503, 503], "{statuses:?}");
    // Request counters reach Envoy on the plugin's 100 ms tick.
    let refused = stack.envoy.wait_for_counter(
        "wasmcustom.kserve_auth.requests.denied.too_many_waiting",
        3,
        Duration::from_secs(5),
    );
    assert_eq!(refused, Some(3));
}

// A token over 8 KiB is refused before any decoding.
#[test]
fn oversize_token_is_refused() {
    let key = es256();
    let stack = Stack::with_keys(&[&key]);
    let padding = "x".repeat(9_000);
    let token = key.sign(&json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice",
        "exp": crate::support::keys::now() + 300, "pad": padding}));
    assert!(token.len() > 8 * 1024);
    assert_invalid_token(
        &stack.get_with_token(PROTECTED_PATH, &token),
        "Jwt is too long",
    );
}

// A JWKS over 256 KiB is a failed fetch: no keys, so 503, and the log says why.
#[test]
fn oversize_jwks_is_a_failed_fetch() {
    let key = es256();
    let mut document = json!({"keys": [key.jwk()]});
    document["padding"] = json!("x".repeat(300 * 1024));
    let server = JwksServer::start(document.to_string());
    let config = plugin_config(remote_provider(&server));
    let stack = Stack::start(server, &config);
    let failed = stack.envoy.wait_for_counter(
        &format!("wasmcustom.kserve_auth.jwks.{PROVIDER}.fetch_failure"),
        1,
        Duration::from_secs(10),
    );
    assert!(failed.is_some(), "the oversize JWKS was not refused");
    assert_keys_unavailable(&stack.get_with_token(PROTECTED_PATH, &key.sign(&good_claims("a"))));
    assert!(
        stack.envoy.log().contains("byte limit"),
        "log does not say why"
    );
}

// A JWKS with more than 100 keys is a failed fetch too.
#[test]
fn jwks_with_too_many_keys_is_a_failed_fetch() {
    let keys: Vec<TestKey> = (0..101).map(|i| TestKey::eddsa(&format!("k{i}"))).collect();
    let refs: Vec<&TestKey> = keys.iter().collect();
    let server = JwksServer::start(jwks(&refs));
    let config = plugin_config(remote_provider(&server));
    let stack = Stack::start(server, &config);
    let failed = stack.envoy.wait_for_counter(
        &format!("wasmcustom.kserve_auth.jwks.{PROVIDER}.fetch_failure"),
        1,
        Duration::from_secs(10),
    );
    assert!(failed.is_some(), "101 keys were accepted");
    assert_keys_unavailable(
        &stack.get_with_token(PROTECTED_PATH, &keys[0].sign(&good_claims("a"))),
    );
}

// Clients that hang up while their request waits for keys leave nothing behind: Envoy keeps
// running, no stream is resumed after it ended, and later requests pass once keys arrive.
#[test]
fn clients_hanging_up_while_waiting_for_keys_are_harmless() {
    let key = es256();
    let server = JwksServer::start(jwks(&[&key]));
    server.set_delay(Duration::from_secs(2));
    let config = patient_config(&server);
    let stack = Stack::start(server, &config);
    let token = key.sign(&good_claims("alice"));
    for _ in 0..5 {
        let mut stream = TcpStream::connect(stack.envoy.addr()).unwrap();
        write!(
            stream,
            "GET {PROTECTED_PATH} HTTP/1.1\r\nHost: {DEFAULT_HOST}\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        drop(stream);
    }
    let response = poll(Duration::from_secs(10), || {
        let r = stack.get_with_token(PROTECTED_PATH, &token);
        (r.status == 200).then_some(r)
    });
    assert!(
        response.is_some(),
        "requests never passed after the keys arrived"
    );
    assert_eq!(
        stack.upstream.count(),
        1,
        "a hung-up request reached the model server"
    );
    let log = stack.envoy.log();
    assert!(!log.contains("panicked"), "the VM panicked");
    assert!(!log.contains("Function: proxy_on"), "a VM callback failed");
}
