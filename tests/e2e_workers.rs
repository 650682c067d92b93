//! Several Envoy workers share one key fetch: each runs its own wasm VM, and without sharing each
//! would fetch every JWKS itself (envoy#13708).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

const WORKERS: u32 = 4;

/// Envoy with four workers in front of a key server publishing `keys`. The server answers after
/// 400 ms, so every VM's timer fires while the first fetch is still in flight: without the lease
/// each VM would fetch too.
fn four_worker_stack(keys: &[&TestKey], cache_duration: &str) -> Stack {
    let server = JwksServer::start(jwks(keys));
    server.set_delay(Duration::from_millis(400));
    let mut provider = remote_provider(&server);
    provider["remote_jwks"]["cache_duration"] = json!(cache_duration);
    let config = plugin_config(provider);
    let upstream = EchoUpstream::start();
    let mut envoy_config = EnvoyConfig::with_filter(&config, server.port(), upstream.port());
    envoy_config.concurrency = WORKERS;
    let envoy = Envoy::start(&envoy_config);
    Stack {
        envoy,
        jwks: server,
        upstream,
    }
}

/// Sends `token` on `count` fresh connections, which the kernel spreads over the workers, and
/// asserts every one passes.
fn all_pass(stack: &Stack, token: &str, count: usize) {
    for i in 0..count {
        let response = stack.get_with_token(PROTECTED_PATH, token);
        assert_eq!(response.status, 200, "request {i}: {}", response.text());
    }
}

// Four workers (five VMs with the main thread's) fetch the JWKS once at start, and every worker
// serves with those keys.
#[test]
fn four_workers_fetch_the_jwks_once() {
    let key = TestKey::es256("k1");
    let stack = four_worker_stack(&[&key], "600s");
    all_pass(&stack, &key.sign(&good_claims("alice")), 24);
    assert_eq!(stack.jwks.settled_jwks_fetches(), 1);
    let loaded = stack
        .envoy
        .counter(&format!(
            "wasmcustom.kserve_auth.jwks.{PROVIDER}.fetch_success"
        ))
        .unwrap_or(0);
    assert_eq!(loaded, 1, "one VM fetched; the others adopted its result");
}

// The refresh before expiry is shared too: one fetch per cache_duration, not one per worker.
#[test]
fn four_workers_refresh_the_jwks_once_per_cache_duration() {
    let key = TestKey::es256("k1");
    let stack = four_worker_stack(&[&key], "4s");
    let started = Instant::now();
    let token = key.sign(&good_claims("alice"));
    all_pass(&stack, &token, 8);
    // The refresh is due at 80% of 4 s; by 3.9 s it has happened exactly once.
    let refreshed = poll(Duration::from_secs(10), || {
        (stack.jwks.jwks_fetches() >= 2).then_some(())
    });
    assert!(refreshed.is_some(), "no refresh happened");
    std::thread::sleep(Duration::from_millis(3_900).saturating_sub(started.elapsed()));
    assert_eq!(stack.jwks.jwks_fetches(), 2);
    all_pass(&stack, &token, 8);
}

// A rotated key seen by several workers costs one refetch for the whole Envoy, and every worker
// accepts the new key afterwards.
#[test]
fn unknown_kid_refetch_is_shared_by_all_workers() {
    let old = TestKey::es256("k1");
    let new = TestKey::es256("k2");
    let stack = four_worker_stack(&[&old], "600s");
    all_pass(&stack, &old.sign(&good_claims("alice")), 8);
    let before = stack.jwks.settled_jwks_fetches();
    stack.jwks.set_jwks(jwks(&[&old, &new]));
    all_pass(&stack, &new.sign(&good_claims("bob")), 24);
    assert_eq!(stack.jwks.settled_jwks_fetches(), before + 1);
}
