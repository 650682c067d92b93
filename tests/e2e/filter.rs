//! The filter in a real Envoy: every answer a client or the model server can observe.
//!
//! Each test starts its own key server, echo upstream and Envoy (ports chosen at run time), so
//! tests run in parallel. Requests use `Host: kserve.test`, hence `realm="kserve.test"`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use crate::support::jwks_server::{DISCOVERY_PATH, JWKS_PATH};
use crate::support::keys::{forged_token, hs256_token, now, payload_segment, signature_segment};
use crate::support::*;
use serde_json::{json, Value};

/// The filter retries a failed key fetch with a backoff starting at 1 s; 25 s covers the
/// retries due while the key server comes up, with margin for a loaded machine.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(25);

fn rsa_key() -> TestKey {
    TestKey::rs256("rsa-a", "key-a")
}

/// A stack whose key server publishes the RS256 test key.
fn rsa_stack() -> (Stack, TestKey) {
    let key = rsa_key();
    let stack = Stack::with_keys(&[&key]);
    (stack, key)
}

/// Panics if `secret` shows up in Envoy's log.
fn assert_not_logged(stack: &Stack, secret: &str) {
    let log = stack.envoy.log();
    // The check means something only if the plugin's own lines are in the log.
    assert!(
        log.contains("wasm log kserve_auth"),
        "no plugin lines in Envoy's log:\n{}",
        crate::support::envoy::tail(&log, 20)
    );
    assert!(!log.contains(secret), "Envoy's log contains token material");
}

fn assert_accepted(key: &TestKey) {
    let stack = Stack::with_keys(&[key]);
    let token = key.sign(&good_claims("alice"));
    let echo = Echo::from_response(&stack.get_with_token(PROTECTED_PATH, &token));
    assert_eq!(echo.header(SUB_HEADER).as_deref(), Some("alice"));
}

// A protected path without any token: 401 with a bare challenge; nothing reaches upstream.
#[test]
fn no_token_is_401_missing() {
    let (stack, _) = rsa_stack();
    assert_missing(&stack.get(PROTECTED_PATH, &[]));
    assert_eq!(stack.upstream.count(), 0);
}

// The plugin logs at Envoy's level for the wasm component, re-read on every tick: at info a
// refusal leaves no debug line; raised to debug through the admin interface, refusals log one.
#[test]
fn log_level_follows_envoy() {
    let key = rsa_key();
    let jwks = JwksServer::start(crate::support::jwks(&[&key]));
    let upstream = EchoUpstream::start();
    let mut config = EnvoyConfig::with_filter(
        &plugin_config(remote_provider(&jwks)),
        jwks.port(),
        upstream.port(),
    );
    config.wasm_log_level = "info";
    let stack = Stack {
        envoy: Envoy::start(&config),
        jwks,
        upstream,
    };
    const DENIED: &str = "request denied (";
    assert_missing(&stack.get(PROTECTED_PATH, &[]));
    assert!(!stack.envoy.log().contains(DENIED));
    let raised = crate::support::http::request(
        stack.envoy.admin_addr(),
        "POST",
        "/logging?wasm=debug",
        &[],
        None,
    )
    .unwrap();
    assert_eq!(raised.status, 200);
    let logged = poll(Duration::from_secs(10), || {
        assert_missing(&stack.get(PROTECTED_PATH, &[]));
        stack.envoy.log().contains(DENIED).then_some(())
    });
    assert!(logged.is_some(), "no debug line after raising the level");
}

// A valid RS256 token reaches upstream with the payload and sub headers set and the
// Authorization header removed; the token is neither echoed nor logged.
#[test]
fn valid_rs256_token_reaches_upstream_without_authorization() {
    let (stack, key) = rsa_stack();
    let token = key.sign(&good_claims("alice"));
    let response = stack.get_with_token(PROTECTED_PATH, &token);
    let echo = Echo::from_response(&response);
    assert_eq!(echo.path, PROTECTED_PATH);
    assert_eq!(echo.header("authorization"), None);
    assert_eq!(
        echo.header(PAYLOAD_HEADER).as_deref(),
        Some(payload_segment(&token))
    );
    assert_eq!(echo.header(SUB_HEADER).as_deref(), Some("alice"));
    // The echo body legitimately contains the payload segment, never the signature.
    assert!(!response.visible_text().contains(signature_segment(&token)));
    assert_not_logged(&stack, &token);
    assert_not_logged(&stack, signature_segment(&token));
}

// A valid PS256 token is accepted.
#[test]
fn valid_ps256_token_is_accepted() {
    assert_accepted(&TestKey::ps256("rsa-b", "key-ps"));
}

// A valid ES256 token is accepted.
#[test]
fn valid_es256_token_is_accepted() {
    assert_accepted(&TestKey::es256("key-es"));
}

// A valid EdDSA (Ed25519) token is accepted.
#[test]
fn valid_eddsa_token_is_accepted() {
    assert_accepted(&TestKey::eddsa("key-ed"));
}

// A token whose exp passed ten minutes ago: 401 "Jwt is expired".
#[test]
fn expired_token_is_rejected() {
    let (stack, key) = rsa_stack();
    let now = now();
    let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice",
                        "iat": now - 1200, "exp": now - 600});
    let token = key.sign(&claims);
    let response = stack.get_with_token(PROTECTED_PATH, &token);
    assert_invalid_token(&response, "Jwt is expired");
    assert!(!response.visible_text().contains(&token));
    assert_eq!(stack.upstream.count(), 0);
}

// A token whose nbf is ten minutes ahead: 401 "Jwt not yet valid".
#[test]
fn not_yet_valid_token_is_rejected() {
    let (stack, key) = rsa_stack();
    let now = now();
    let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice",
                        "iat": now, "nbf": now + 600, "exp": now + 900});
    let response = stack.get_with_token(PROTECTED_PATH, &key.sign(&claims));
    assert_invalid_token(&response, "Jwt not yet valid");
    assert_eq!(stack.upstream.count(), 0);
}

// A token from an issuer no provider has: 401 "Jwt issuer is not configured".
#[test]
fn wrong_issuer_is_rejected() {
    let (stack, key) = rsa_stack();
    let mut claims = good_claims("alice");
    claims["iss"] = json!("https://other-issuer.test");
    let response = stack.get_with_token(PROTECTED_PATH, &key.sign(&claims));
    assert_invalid_token(&response, "Jwt issuer is not configured");
    assert_eq!(stack.upstream.count(), 0);
}

// A token for another audience: 401 "Audiences in Jwt are not allowed".
#[test]
fn wrong_audience_is_rejected() {
    let (stack, key) = rsa_stack();
    let mut claims = good_claims("alice");
    claims["aud"] = json!(["other-client"]);
    let response = stack.get_with_token(PROTECTED_PATH, &key.sign(&claims));
    assert_invalid_token(&response, "Audiences in Jwt are not allowed");
    assert_eq!(stack.upstream.count(), 0);
}

// An unsigned token (alg none, empty signature, published kid): 401 "Jwt algorithm is not
// allowed".
#[test]
fn alg_none_is_rejected() {
    let (stack, key) = rsa_stack();
    let header = json!({"alg": "none", "typ": "JWT", "kid": key.kid});
    let token = forged_token(&header, &good_claims("alice"), "");
    let response = stack.get_with_token(PROTECTED_PATH, &token);
    assert_invalid_token(&response, "Jwt algorithm is not allowed");
    assert_eq!(stack.upstream.count(), 0);
}

// Key confusion: HS256 MACed with the RSA public key's PEM as the secret, naming the RSA key's
// kid: 401 "Jwt algorithm is not allowed".
#[test]
fn hs256_with_rsa_public_key_is_rejected() {
    let (stack, key) = rsa_stack();
    let pem = key.rsa_public_pem();
    let token = hs256_token(pem.as_bytes(), &key.kid, &good_claims("alice"));
    let response = stack.get_with_token(PROTECTED_PATH, &token);
    assert_invalid_token(&response, "Jwt algorithm is not allowed");
    assert_eq!(stack.upstream.count(), 0);
}

// A token signed by another key under the published kid: 401 "Jwt verification fails", and
// the forged token is not logged.
#[test]
fn signature_by_another_key_is_rejected() {
    let (stack, key) = rsa_stack();
    let impostor = TestKey::rs256("rsa-c", &key.kid);
    let token = impostor.sign(&good_claims("alice"));
    let response = stack.get_with_token(PROTECTED_PATH, &token);
    assert_invalid_token(&response, "Jwt verification fails");
    assert!(!response.visible_text().contains(&token));
    assert_not_logged(&stack, &token);
    assert_eq!(stack.upstream.count(), 0);
}

// A token without exp (expiration required by default): 401 "Jwt has no exp claim".
#[test]
fn token_without_exp_is_rejected() {
    let (stack, key) = rsa_stack();
    let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now()});
    let response = stack.get_with_token(PROTECTED_PATH, &key.sign(&claims));
    assert_invalid_token(&response, "Jwt has no exp claim");
    assert_eq!(stack.upstream.count(), 0);
}

// Key rotation: a token with a new kid makes the filter refetch once and is accepted without
// a restart; a second unknown kid right after is refused WITHOUT another fetch (one
// unknown-kid refetch per provider per 30 s).
#[test]
fn rotated_key_is_fetched_once_and_second_unknown_kid_is_rate_limited() {
    let old = rsa_key();
    let new = TestKey::es256("key-new");
    let unpublished = TestKey::eddsa("key-unpublished");
    let stack = Stack::with_keys(&[&old]);
    let first = stack.get_with_token(PROTECTED_PATH, &old.sign(&good_claims("alice")));
    assert_eq!(first.status, 200, "{}", first.text());
    let before = stack.jwks.settled_jwks_fetches();

    stack.jwks.set_jwks(jwks(&[&old, &new]));
    let rotated = stack.get_with_token(PROTECTED_PATH, &new.sign(&good_claims("bob")));
    let echo = Echo::from_response(&rotated);
    assert_eq!(echo.header(SUB_HEADER).as_deref(), Some("bob"));
    assert_eq!(stack.jwks.jwks_fetches(), before + 1);

    let unknown = stack.get_with_token(PROTECTED_PATH, &unpublished.sign(&good_claims("eve")));
    assert_invalid_token(&unknown, "Jwt kid is not in the issuer's key set");
    assert_eq!(stack.jwks.settled_jwks_fetches(), before + 1);
    // The old key still works after the rotation.
    let again = stack.get_with_token(PROTECTED_PATH, &old.sign(&good_claims("alice")));
    assert_eq!(again.status, 200, "{}", again.text());
}

// Key server down at start: protected requests get 503 (keys unavailable); once it listens,
// the filter's retries load the keys and requests pass, without restarting Envoy.
#[test]
fn key_server_down_at_start_then_up() {
    let key = rsa_key();
    let server = JwksServer::reserve(jwks(&[&key]));
    let config = plugin_config(remote_provider(&server));
    let mut stack = Stack::start(server, &config);
    let token = key.sign(&good_claims("alice"));

    assert_keys_unavailable(&stack.get_with_token(PROTECTED_PATH, &token));
    assert_eq!(stack.upstream.count(), 0);

    stack.jwks.listen();
    let started = Instant::now();
    let mut statuses = Vec::new();
    let passed = poll(RECOVERY_TIMEOUT, || {
        let response = stack.get_with_token(PROTECTED_PATH, &token);
        statuses.push(response.status);
        if response.status == 503 {
            assert_keys_unavailable(&response);
        }
        (response.status == 200).then_some(response)
    });
    let passed = passed.unwrap_or_else(|| {
        panic!(
            "no 200 within {RECOVERY_TIMEOUT:?} after the key server came up; statuses {statuses:?}"
        )
    });
    assert!(
        statuses.iter().all(|s| *s == 503 || *s == 200),
        "only 503 then 200 expected: {statuses:?}"
    );
    assert_eq!(
        Echo::from_response(&passed).header(SUB_HEADER).as_deref(),
        Some("alice")
    );
    assert!(stack.jwks.jwks_fetches() >= 1);
    eprintln!(
        "keys loaded {:?} after the key server came up",
        started.elapsed()
    );
}

// A key server that answers 503 gives no keys: requests get 503 (not 401), and the fetch
// failure is counted.
#[test]
fn key_server_errors_mean_keys_unavailable() {
    let key = rsa_key();
    let server = JwksServer::start(jwks(&[&key]));
    server.set_unavailable(true);
    let config = plugin_config(remote_provider(&server));
    let stack = Stack::start(server, &config);
    let response = stack.get_with_token(PROTECTED_PATH, &key.sign(&good_claims("alice")));
    assert_keys_unavailable(&response);
    assert!(stack.jwks.jwks_fetches() >= 1);
    let failures = stack.envoy.wait_for_counter(
        "wasmcustom.kserve_auth.jwks.test.fetch_failure",
        1,
        Duration::from_secs(5),
    );
    assert!(failures >= Some(1), "fetch_failure counter: {failures:?}");
}

// A request that arrives while the first key fetch is still in flight waits for the keys and
// is then allowed (200, not 503): the key server answered only after the request was sent.
#[test]
fn request_before_first_keys_waits_and_passes() {
    let key = rsa_key();
    let server = JwksServer::start(jwks(&[&key]));
    // Long enough that Envoy is ready well before the keys arrive, even on a loaded machine;
    // the callout timeout is raised above it.
    server.set_delay(Duration::from_millis(2000));
    let mut provider = remote_provider(&server);
    provider["remote_jwks"]["http_uri"]["timeout"] = json!("5s");
    let stack = Stack::start(server, &plugin_config(provider));
    let token = key.sign(&good_claims("alice"));
    let sent = Instant::now();
    let response = stack.get_with_token(PROTECTED_PATH, &token);
    let keys_at = stack
        .jwks
        .first_answer_at(JWKS_PATH)
        .expect("the filter fetched keys");
    assert!(
        keys_at > sent,
        "the keys were already loaded when the request was sent; the test proves nothing"
    );
    assert_eq!(
        Echo::from_response(&response).header(SUB_HEADER).as_deref(),
        Some("alice")
    );
}

// Client-sent x-jwt-payload / x-jwt-sub never reach upstream: replaced on an authenticated
// request, removed on a public one.
#[test]
fn forged_identity_headers_are_stripped() {
    let (stack, key) = rsa_stack();
    let token = key.sign(&good_claims("alice"));
    let authorization = format!("Bearer {token}");
    let forged = [
        (PAYLOAD_HEADER, "eyJzdWIiOiJtYWxsb3J5In0"),
        (SUB_HEADER, "mallory"),
        ("X-Jwt-Sub", "mallory2"),
    ];
    let mut headers = vec![("authorization", authorization.as_str())];
    headers.extend(forged);
    let protected = Echo::from_response(&stack.get(PROTECTED_PATH, &headers));
    assert_eq!(protected.header_all(SUB_HEADER), vec!["alice"]);
    assert_eq!(
        protected.header_all(PAYLOAD_HEADER),
        vec![payload_segment(&token)]
    );

    let public = Echo::from_response(&stack.get(PUBLIC_PATH, &forged));
    assert_eq!(public.header_all(SUB_HEADER), Vec::<String>::new());
    assert_eq!(public.header_all(PAYLOAD_HEADER), Vec::<String>::new());
}

// The public health path needs no token.
#[test]
fn public_health_path_without_token_is_200() {
    let (stack, _) = rsa_stack();
    let echo = Echo::from_response(&stack.get(PUBLIC_PATH, &[]));
    assert_eq!(echo.path, PUBLIC_PATH);
    assert_eq!(stack.upstream.count(), 1);
}

// With `forward: true` the Authorization header goes upstream unchanged.
#[test]
fn forward_true_keeps_authorization() {
    let key = rsa_key();
    let server = JwksServer::start(jwks(&[&key]));
    let mut provider = remote_provider(&server);
    provider["forward"] = json!(true);
    let stack = Stack::start(server, &plugin_config(provider));
    let token = key.sign(&good_claims("alice"));
    let echo = Echo::from_response(&stack.get_with_token(PROTECTED_PATH, &token));
    let expected = format!("Bearer {token}");
    assert_eq!(
        echo.header("authorization").as_deref(),
        Some(expected.as_str())
    );
}

// OIDC discovery: the filter reads jwks_uri from the issuer's discovery document and verifies
// with the keys found there.
#[test]
fn oidc_discovery_finds_the_jwks() {
    let key = TestKey::es256("key-disco");
    let server = JwksServer::start(jwks(&[&key]));
    server.serve_discovery(server.base_url());
    let issuer = server.base_url();
    let config = plugin_config(discovery_provider(&server));
    let stack = Stack::start(server, &config);
    let mut claims = good_claims("alice");
    claims["iss"] = json!(issuer);
    let echo = Echo::from_response(&stack.get_with_token(PROTECTED_PATH, &key.sign(&claims)));
    assert_eq!(echo.header(SUB_HEADER).as_deref(), Some("alice"));
    assert!(stack.jwks.count(DISCOVERY_PATH) >= 1);
    assert!(stack.jwks.jwks_fetches() >= 1);
}

/// Starts Envoy with a configuration the filter must refuse and returns its log.
fn refused_config_log(config: &Value) -> String {
    let failure = start_envoy_expecting_failure(config);
    // Envoy 1.40 with a fail-closed plugin whose on_configure fails: exit status 1 at start.
    let status = failure.status.expect("Envoy exited by itself");
    assert_eq!(status.code(), Some(1), "{}", failure.log);
    assert!(
        failure
            .log
            .contains("Unable to create Wasm plugin kserve_auth"),
        "{}",
        failure.log
    );
    failure.log
}

fn assert_logged_line(log: &str, needle: &str) {
    assert!(
        log.lines()
            .any(|l| l.contains("wasm log kserve_auth") && l.contains(needle)),
        "no plugin log line names {needle:?}:\n{log}"
    );
}

fn base_config() -> Value {
    let server = JwksServer::reserve(r#"{"keys":[]}"#);
    plugin_config(remote_provider(&server))
}

// An empty audiences list is refused: Envoy does not start, and the log names the field.
#[test]
fn empty_audiences_config_is_refused() {
    let mut config = base_config();
    config["providers"]["test"]["audiences"] = json!([]);
    assert_logged_line(&refused_config_log(&config), "providers.test.audiences");
}

// An unknown provider field is refused with its full path.
#[test]
fn unknown_field_config_is_refused() {
    let mut config = base_config();
    config["providers"]["test"]["bogus_option"] = json!(true);
    assert_logged_line(&refused_config_log(&config), "providers.test.bogus_option");
}

// A rule requiring an undefined provider is refused with the rule's field.
#[test]
fn undefined_provider_config_is_refused() {
    let mut config = base_config();
    config["rules"][1]["requires"]["provider_name"] = json!("nobody");
    assert_logged_line(
        &refused_config_log(&config),
        "rules[1].requires.provider_name",
    );
}

// Tokens never appear in responses or in Envoy's log (plugin log at debug), whatever the
// outcome.
#[test]
fn tokens_are_never_echoed_or_logged() {
    let (stack, key) = rsa_stack();
    let stranger = TestKey::es256("key-stranger");
    let now = now();
    let tokens = [
        key.sign(&good_claims("alice")),
        key.sign(&json!({"iss": ISSUER, "aud": AUDIENCE, "iat": now - 900, "exp": now - 600})),
        TestKey::rs256("rsa-c", &key.kid).sign(&good_claims("alice")),
        stranger.sign(&good_claims("alice")),
        format!("{}x", key.sign(&good_claims("alice"))),
        "not-a-jwt".to_string(),
    ];
    for token in &tokens {
        let response = stack.get_with_token(PROTECTED_PATH, token);
        assert!([200, 401].contains(&response.status), "{}", response.text());
        if response.status == 401 {
            assert!(!response.visible_text().contains(token.as_str()));
        }
    }
    for token in &tokens {
        assert_not_logged(&stack, token);
        if let Some(signature) = token.split('.').nth(2) {
            assert_not_logged(&stack, signature);
        }
    }
}

// The custom counters move: allowed, public, denied.<reason>, and the provider's
// fetch_success (Envoy shows them under `wasmcustom.`).
#[test]
fn metrics_count_outcomes() {
    let (stack, key) = rsa_stack();
    let now = now();
    assert_eq!(stack.get(PUBLIC_PATH, &[]).status, 200);
    assert_eq!(stack.get(PROTECTED_PATH, &[]).status, 401);
    let valid = stack.get_with_token(PROTECTED_PATH, &key.sign(&good_claims("alice")));
    assert_eq!(valid.status, 200);
    let expired = json!({"iss": ISSUER, "aud": AUDIENCE, "iat": now - 900, "exp": now - 600});
    let expired = stack.get_with_token(PROTECTED_PATH, &key.sign(&expired));
    assert_eq!(expired.status, 401);

    let counter = |name: &str| {
        let full = format!("wasmcustom.kserve_auth.{name}");
        stack
            .envoy
            .wait_for_counter(&full, 1, Duration::from_secs(5))
            .unwrap_or_else(|| {
                panic!(
                    "no counter {full}; wasmcustom stats: {:?}",
                    stack.envoy.stats("wasmcustom")
                )
            })
    };
    assert_eq!(counter("requests.allowed"), 1);
    assert_eq!(counter("requests.public"), 1);
    assert_eq!(counter("requests.denied.missing"), 1);
    assert_eq!(counter("requests.denied.expired"), 1);
    assert!(counter("jwks.test.fetch_success") >= 1);
    assert_eq!(
        stack
            .envoy
            .counter("wasmcustom.kserve_auth.jwks.test.fetch_failure"),
        Some(0)
    );
}
