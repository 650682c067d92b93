//! Several Envoy workers share one key fetch: each runs its own wasm VM, and without sharing each
//! would fetch every JWKS itself (envoy#13708). Their gauges add up into one stat per name.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::json;

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

// Every VM adds its own values to the gauges Envoy shows as one stat: distinct tokens spread
// over the workers add up to one cache-entries figure, and the memory gauge counts every VM.
#[test]
fn gauges_add_up_over_workers() {
    let key = TestKey::es256("k1");
    let stack = four_worker_stack(&[&key], "600s");
    let tokens: Vec<String> = (0..40)
        .map(|i| key.sign(&good_claims(&format!("user-{i}"))))
        .collect();
    for token in &tokens {
        all_pass(&stack, token, 1);
    }
    let workers_used = stack
        .envoy
        .stats(r"^listener\.127\.0\.0\.1_[0-9]+\.worker_[0-9]+\.downstream_cx_total$")
        .values()
        .filter(|&&count| count > 0)
        .count();
    assert!(
        workers_used >= 2,
        "the kernel put every connection on one worker"
    );
    let entries = poll(Duration::from_secs(2), || {
        let value = stack
            .envoy
            .gauge("wasmcustom.kserve_auth.token_cache.entries");
        (value == Some(40)).then_some(())
    });
    assert!(entries.is_some(), "{:?}", stack.envoy.stats("wasmcustom"));
    // Each of the five VMs (four workers and the main thread) has at least the module's initial
    // memory; one VM's figure alone would be far below five times that.
    let memory = stack
        .envoy
        .gauge("wasmcustom.kserve_auth.vm.memory_bytes")
        .unwrap_or(0);
    let floor = u64::from(WORKERS + 1) * initial_memory_pages() * 65_536;
    assert!(memory >= floor, "memory_bytes {memory} < {floor}");
    assert_eq!(memory % 65_536, 0, "not whole wasm pages: {memory}");
}

// Paused streams show in the waiting gauge while keys load, summed over the workers, and leave it
// when they resume.
#[test]
fn waiting_gauge_counts_paused_streams() {
    let key = TestKey::es256("k1");
    let server = JwksServer::start(jwks(&[&key]));
    server.set_delay(Duration::from_secs(3));
    let mut provider = remote_provider(&server);
    provider["remote_jwks"]["http_uri"]["timeout"] = json!("10s");
    let upstream = EchoUpstream::start();
    let mut envoy_config =
        EnvoyConfig::with_filter(&plugin_config(provider), server.port(), upstream.port());
    envoy_config.concurrency = WORKERS;
    let stack = Stack {
        envoy: Envoy::start(&envoy_config),
        jwks: server,
        upstream,
    };
    let token = key.sign(&good_claims("alice"));
    let waiting = "wasmcustom.kserve_auth.requests.waiting";
    std::thread::scope(|scope| {
        let requests: Vec<_> = (0..3)
            .map(|_| scope.spawn(|| stack.get_with_token(PROTECTED_PATH, &token)))
            .collect();
        let parked = poll(Duration::from_millis(2500), || {
            (stack.envoy.gauge(waiting) == Some(3)).then_some(())
        });
        assert!(parked.is_some(), "gauge: {:?}", stack.envoy.gauge(waiting));
        for request in requests {
            assert_eq!(request.join().unwrap().status, 200);
        }
    });
    let drained = poll(Duration::from_secs(2), || {
        (stack.envoy.gauge(waiting) == Some(0)).then_some(())
    });
    assert!(drained.is_some(), "gauge: {:?}", stack.envoy.gauge(waiting));
}

/// The initial size, in pages, of the filter module's linear memory (its memory section).
fn initial_memory_pages() -> u64 {
    let module = std::fs::read(crate::support::envoy::filter_wasm()).unwrap();
    let leb = |bytes: &[u8], at: &mut usize| {
        let (mut value, mut shift) = (0u64, 0);
        loop {
            let byte = bytes[*at];
            *at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return value;
            }
            shift += 7;
        }
    };
    let mut at = 8;
    while at < module.len() {
        let id = module[at];
        at += 1;
        let size = leb(&module, &mut at) as usize;
        if id == 5 {
            let mut inner = at;
            assert_eq!(leb(&module, &mut inner), 1, "one memory");
            inner += 1; // limits flags
            return leb(&module, &mut inner);
        }
        at += size;
    }
    panic!("no memory section in the filter module");
}
