//! Envoy replaces the filter's listener while requests wait for a key fetch: with the same plugin
//! under another configuration, with a listener without the plugin, or with no listener at all.
//! Listeners come from a file Envoy watches (LDS), as a control plane would push them.
//!
//! What the waiting client sees depends on Envoy's drain time. Connections accepted by a
//! replaced listener keep its filter chain, and with it the old plugin configuration, until
//! they close or the drain time ends. With Envoy's default (600 s) the key fetch finishes first,
//! so the old configuration answers the waiting request (`200` for a valid token, `401` for a
//! forged one) and closes the connection. With a drain time shorter than the fetch, Envoy closes
//! the connection when draining ends: the client sees the connection close without an answer,
//! nothing reaches the upstream, and the old configuration's callout is cancelled.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{self, Write};
use std::net::TcpStream;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::support::envoy::{upstream_clusters, upstream_listener, WasmFilter};
use crate::support::http::DEFAULT_HOST;
use crate::support::*;
use serde_json::{json, Value};

/// How long the key server takes to answer: longer than the short drain by a wide margin.
const DELAY: Duration = Duration::from_secs(4);
/// Envoy's default `--drain-time-s`.
const LONG_DRAIN: u32 = 600;
/// A drain that ends while the key fetch is still in flight.
const SHORT_DRAIN: u32 = 1;
/// The listener's name in every configuration.
const LISTENER: &str = "main";
/// Marks each test request, so the upstream's log shows which ones reached it.
const TAG: &str = "x-test-tag";
/// Claim header of the configuration in place when the requests start waiting.
const OLD_SUB: &str = "x-sub-old";
/// Claim header of the configuration that replaces it.
const NEW_SUB: &str = "x-sub-new";
const WAITING: &str = "wasmcustom.kserve_auth.requests.waiting";

/// What replaces the listener while a fetch is in flight.
#[derive(Debug, Clone, Copy)]
enum Replacement {
    /// The same plugin with another configuration (another claim header).
    OtherConfig,
    /// A listener with the router only.
    NoPlugin,
    /// Nothing.
    NoListener,
}

struct Rig {
    envoy: Envoy,
    jwks: JwksServer,
    upstream: EchoUpstream,
    key: TestKey,
    /// Same `kid`, another key: its tokens must never pass.
    forger: TestKey,
}

/// The default configuration with a patient callout and `sub` forwarded in `sub_header`.
fn config(jwks: &JwksServer, sub_header: &str) -> Value {
    let mut provider = remote_provider(jwks);
    provider["remote_jwks"]["http_uri"]["timeout"] = json!("10s");
    provider["claim_to_headers"] = json!([{"header_name": sub_header, "claim_name": "sub"}]);
    plugin_config(provider)
}

fn plugin_listener(config: &Value) -> Value {
    let filter = WasmFilter {
        module: crate::support::envoy::filter_wasm(),
        configuration: config.to_string(),
        hold_headers: true,
    };
    upstream_listener(LISTENER, vec![filter.http_filter()])
}

/// Envoy with the plugin (claim header [`OLD_SUB`]) and a key server that answers after
/// [`DELAY`].
fn start(drain_seconds: u32) -> Rig {
    let key = TestKey::es256("k1");
    let jwks = JwksServer::start(crate::support::jwks(&[&key]));
    jwks.set_delay(DELAY);
    let upstream = EchoUpstream::start();
    let drain = drain_seconds.to_string();
    let envoy = Envoy::start_with_listener_file(
        json!({"clusters": upstream_clusters(jwks.port(), upstream.port())}),
        &[plugin_listener(&config(&jwks, OLD_SUB))],
        1,
        &["--drain-time-s", &drain],
    );
    Rig {
        envoy,
        jwks,
        upstream,
        key,
        forger: TestKey::es256("k1"),
    }
}

impl Rig {
    fn valid_token(&self, sub: &str) -> String {
        self.key.sign(&good_claims(sub))
    }

    /// Sends a request with `token` on its own connection; the answer arrives on the handle.
    fn send(&self, token: &str, tag: &str) -> JoinHandle<io::Result<Response>> {
        let addr = self.envoy.listener_addr(LISTENER);
        let auth = format!("Bearer {token}");
        let tag = tag.to_string();
        std::thread::spawn(move || {
            crate::support::http::request(
                addr,
                "GET",
                PROTECTED_PATH,
                &[("authorization", &auth), (TAG, &tag)],
                None,
            )
        })
    }

    /// Waits until the plugin reports `count` paused streams.
    fn wait_until_waiting(&self, count: u64) {
        let parked = poll(Duration::from_secs(3), || {
            (self.envoy.gauge(WAITING) == Some(count)).then_some(())
        });
        assert!(
            parked.is_some(),
            "expected {count} waiting requests, gauge {:?}",
            self.envoy.gauge(WAITING)
        );
    }

    fn replace(&self, replacement: Replacement) {
        let listeners = match replacement {
            Replacement::OtherConfig => vec![plugin_listener(&config(&self.jwks, NEW_SUB))],
            Replacement::NoPlugin => vec![upstream_listener(LISTENER, vec![])],
            Replacement::NoListener => vec![],
        };
        self.envoy.set_listeners(&listeners);
    }

    /// Every request that reached the upstream from before the swap carried the valid token:
    /// none is tagged `forged`, and each one tagged `valid` has the valid token's `sub`.
    fn assert_only_valid_tokens_reached_upstream(&self) {
        for request in self.upstream.received() {
            match request.header(TAG) {
                Some("forged") => panic!("a forged token reached the upstream: {request:?}"),
                Some("valid") => {
                    let sub = request.header(OLD_SUB).or(request.header(NEW_SUB));
                    assert_eq!(sub, Some("alice"), "{request:?}");
                }
                _ => {}
            }
        }
    }

    /// The configuration now in place serves correctly.
    fn assert_replacement_serves(&self, replacement: Replacement) {
        match replacement {
            Replacement::OtherConfig => self.assert_new_config_serves(),
            Replacement::NoPlugin => {
                let response = self.envoy.get(PROTECTED_PATH, &[(TAG, "plain")]);
                let echo = Echo::from_response(&response);
                assert_eq!(echo.header(OLD_SUB), None, "the removed plugin still ran");
            }
            Replacement::NoListener => {
                assert!(
                    self.envoy.try_listener_addr(LISTENER).is_none(),
                    "the listener is still there"
                );
                assert!(
                    TcpStream::connect_timeout(&self.envoy.addr(), Duration::from_secs(2)).is_err(),
                    "the removed listener's port still accepts connections"
                );
                // A listener added afterwards serves with the plugin again.
                self.envoy
                    .set_listeners(&[plugin_listener(&config(&self.jwks, NEW_SUB))]);
                self.assert_new_config_serves();
            }
        }
    }

    /// The replacement configuration allows a valid token (with its own claim header, once its
    /// keys are in) and refuses a request without one.
    fn assert_new_config_serves(&self) {
        let addr = self.envoy.listener_addr(LISTENER);
        let auth = format!("Bearer {}", self.valid_token("bob"));
        let response = crate::support::http::get(addr, PROTECTED_PATH, &[("authorization", &auth)]);
        let echo = Echo::from_response(&response);
        assert_eq!(echo.header(NEW_SUB).as_deref(), Some("bob"));
        assert_eq!(echo.header(OLD_SUB), None);
        assert_missing(&crate::support::http::get(addr, PROTECTED_PATH, &[]));
    }

    /// Envoy is running and ready, and its log shows no VM failure.
    fn assert_healthy(&mut self) {
        assert!(self.envoy.is_running(), "Envoy exited");
        assert!(self.envoy.is_ready(), "admin /ready is not LIVE");
        let log = self.envoy.log();
        for sign in [
            "panicked",
            "Function: proxy_on",
            "Uncaught",
            "wasm vm failed",
            "Caught Segmentation",
            "Caught Abort",
            "Backtrace (use",
        ] {
            assert!(
                !log.to_lowercase().contains(&sign.to_lowercase()),
                "Envoy's log shows {sign:?}"
            );
        }
    }
}

/// How a waiting request ended.
#[derive(Debug)]
enum Ending {
    /// An HTTP answer.
    Answer(Response),
    /// The connection closed before any byte of an answer.
    Closed,
}

fn ending(result: io::Result<Response>) -> Ending {
    match result {
        Ok(response) => Ending::Answer(response),
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Ending::Closed,
        Err(error) => {
            panic!("the waiting request ended neither with an answer nor a close: {error}")
        }
    }
}

/// Parks a valid and a forged request behind the key fetch, swaps the listener for
/// `replacement`, lets the fetch complete, and returns how both requests ended.
fn swap_while_waiting(rig: &Rig, replacement: Replacement) -> (Ending, Ending) {
    let valid = rig.send(&rig.valid_token("alice"), "valid");
    let forged = rig.send(&rig.forger.sign(&good_claims("mallory")), "forged");
    rig.wait_until_waiting(2);
    rig.replace(replacement);
    let valid = ending(valid.join().unwrap());
    let forged = ending(forged.join().unwrap());
    // The fetch the old configuration started completes (or was cancelled) by now.
    let fetched = poll(DELAY + Duration::from_secs(3), || {
        rig.jwks
            .first_answer_at(crate::support::jwks_server::JWKS_PATH)
            .filter(|at| *at <= Instant::now())
    });
    assert!(fetched.is_some(), "the key server never answered");
    (valid, forged)
}

/// With the default drain, the old configuration answers the waiting requests once its keys
/// arrive: `200` through to the upstream for the valid token, `401` for the forged one, each
/// with `connection: close` because the listener is draining.
fn assert_answered_by_old_config(valid: &Ending, forged: &Ending) {
    let Ending::Answer(valid) = valid else {
        panic!("the valid request got no answer: {valid:?}");
    };
    let echo = Echo::from_response(valid);
    assert_eq!(echo.header(OLD_SUB).as_deref(), Some("alice"));
    assert_eq!(valid.header("connection"), Some("close"));
    let Ending::Answer(forged) = forged else {
        panic!("the forged request got no answer: {forged:?}");
    };
    assert_invalid_token(forged, "Jwt verification fails");
}

fn long_drain(replacement: Replacement) {
    let mut rig = start(LONG_DRAIN);
    let (valid, forged) = swap_while_waiting(&rig, replacement);
    assert_answered_by_old_config(&valid, &forged);
    rig.assert_only_valid_tokens_reached_upstream();
    rig.assert_replacement_serves(replacement);
    // Configurations never share key records (docs/hardening.md, "Shared data"): the new one
    // fetches its own keys, once.
    if let Replacement::OtherConfig = replacement {
        assert_eq!(
            rig.jwks.jwks_fetches(),
            2,
            "the new configuration did not fetch exactly once"
        );
    }
    rig.assert_healthy();
}

fn short_drain(replacement: Replacement) {
    let mut rig = start(SHORT_DRAIN);
    let (valid, forged) = swap_while_waiting(&rig, replacement);
    assert!(matches!(valid, Ending::Closed), "{valid:?}");
    assert!(matches!(forged, Ending::Closed), "{forged:?}");
    assert_eq!(
        rig.upstream.count(),
        0,
        "a closed request reached the upstream"
    );
    rig.assert_replacement_serves(replacement);
    rig.assert_only_valid_tokens_reached_upstream();
    rig.assert_healthy();
}

// Same plugin, new configuration, default drain: the old configuration answers the waiting
// requests, and the new one serves at once with the keys the old one fetched (one fetch).
#[test]
fn new_plugin_config_while_fetch_in_flight_old_config_answers() {
    long_drain(Replacement::OtherConfig);
}

// Plugin removed from the listener, default drain: the waiting requests are still judged by the
// plugin; new requests pass through the plain listener.
#[test]
fn plugin_removed_while_fetch_in_flight_old_config_answers() {
    long_drain(Replacement::NoPlugin);
}

// Listener removed, default drain: the waiting requests are answered; the port is closed, and a
// listener added later serves with the plugin.
#[test]
fn listener_removed_while_fetch_in_flight_old_config_answers() {
    long_drain(Replacement::NoListener);
}

// Same plugin, new configuration, drain shorter than the fetch: the waiting connections close
// without an answer and the new configuration serves.
#[test]
fn new_plugin_config_after_short_drain_closes_waiting_requests() {
    short_drain(Replacement::OtherConfig);
}

// Plugin removed, drain shorter than the fetch: the waiting connections close, the VM goes away
// with its pending callout, and the plain listener serves.
#[test]
fn plugin_removed_after_short_drain_closes_waiting_requests() {
    short_drain(Replacement::NoPlugin);
}

// Listener removed, drain shorter than the fetch: the waiting connections close; a listener
// added later serves with the plugin.
#[test]
fn listener_removed_after_short_drain_closes_waiting_requests() {
    short_drain(Replacement::NoListener);
}

// A configuration removed while its key fetch is in flight frees the fetch lease, so the next
// configuration on the same key source fetches at once instead of waiting out the lease (the
// 10 s fetch timeout plus 1 s) and answering 503 meanwhile.
#[test]
fn removed_config_releases_its_fetch_lease() {
    let rig = start(SHORT_DRAIN);
    let (valid, _) = swap_while_waiting(&rig, Replacement::OtherConfig);
    assert!(matches!(valid, Ending::Closed), "{valid:?}");
    let asked = Instant::now();
    let response = rig
        .send(&rig.valid_token("bob"), "new")
        .join()
        .unwrap()
        .expect("answer from the new configuration");
    let echo = Echo::from_response(&response);
    assert_eq!(echo.header(NEW_SUB).as_deref(), Some("bob"));
    assert!(
        asked.elapsed() < DELAY + Duration::from_secs(3),
        "the new configuration waited {:?} for keys",
        asked.elapsed()
    );
    assert_eq!(
        rig.jwks.jwks_fetches(),
        2,
        "old configuration's fetch, then the new one's"
    );
}

// A client that hangs up while its request waits, at the moment the listener is replaced: the
// fetch then completes into a configuration whose stream is gone. Nothing reaches the upstream,
// the waiting gauge returns to 0 and the new configuration serves.
#[test]
fn client_reset_during_swap_while_waiting() {
    let mut rig = start(LONG_DRAIN);
    let mut stream = TcpStream::connect(rig.envoy.addr()).unwrap();
    write!(
        stream,
        "GET {PROTECTED_PATH} HTTP/1.1\r\nHost: {DEFAULT_HOST}\r\nAuthorization: Bearer {}\r\n{TAG}: reset\r\n\r\n",
        rig.valid_token("alice")
    )
    .unwrap();
    rig.wait_until_waiting(1);
    std::thread::scope(|scope| {
        scope.spawn(|| rig.replace(Replacement::OtherConfig));
        std::thread::sleep(Duration::from_millis(20));
        drop(stream);
    });
    let fetched = rig.envoy.wait_for_counter(
        &format!("wasmcustom.kserve_auth.jwks.{PROVIDER}.fetch_success"),
        1,
        DELAY + Duration::from_secs(3),
    );
    assert_eq!(fetched, Some(1));
    let drained = poll(Duration::from_secs(2), || {
        (rig.envoy.gauge(WAITING) == Some(0)).then_some(())
    });
    assert!(
        drained.is_some(),
        "waiting gauge {:?}",
        rig.envoy.gauge(WAITING)
    );
    assert_eq!(
        rig.upstream.count(),
        0,
        "the reset request reached the upstream"
    );
    rig.assert_new_config_serves();
    rig.assert_healthy();
}

// The gauges of a configuration that goes away leave the sums: the old configuration's cached
// tokens are withdrawn when its listener has drained, while the VM, still used by the new
// configuration, keeps reporting its memory.
#[test]
fn removed_config_withdraws_its_gauges() {
    let key = TestKey::es256("k1");
    let local = |sub_header: &str| {
        let mut provider = json!({
            "issuer": ISSUER,
            "audiences": [AUDIENCE],
            "local_jwks": {"inline_string": crate::support::jwks(&[&key])},
        });
        provider["claim_to_headers"] = json!([{"header_name": sub_header, "claim_name": "sub"}]);
        plugin_listener(&plugin_config(provider))
    };
    let upstream = EchoUpstream::start();
    let envoy = Envoy::start_with_listener_file(
        json!({"clusters": upstream_clusters(9, upstream.port())}),
        &[local(OLD_SUB)],
        1,
        &["--drain-time-s", &SHORT_DRAIN.to_string()],
    );
    let entries = "wasmcustom.kserve_auth.token_cache.entries";
    let memory = "wasmcustom.kserve_auth.vm.memory_bytes";
    let send = |sub: &str| {
        let auth = format!("Bearer {}", key.sign(&good_claims(sub)));
        let addr = envoy.listener_addr(LISTENER);
        let response = crate::support::http::get(addr, PROTECTED_PATH, &[("authorization", &auth)]);
        assert_eq!(response.status, 200, "{}", response.text());
    };
    let gauge_becomes = |name: &str, value: u64| {
        poll(Duration::from_secs(5), || {
            (envoy.gauge(name) == Some(value)).then_some(())
        })
        .is_some()
    };
    for sub in ["a", "b", "c"] {
        send(sub);
    }
    assert!(gauge_becomes(entries, 3), "{:?}", envoy.gauge(entries));
    let memory_before = envoy.gauge(memory).unwrap_or(0);
    envoy.set_listeners(&[local(NEW_SUB)]);
    assert!(gauge_becomes(entries, 0), "{:?}", envoy.gauge(entries));
    send("d");
    assert!(gauge_becomes(entries, 1), "{:?}", envoy.gauge(entries));
    assert!(envoy.gauge(memory).unwrap_or(0) >= memory_before);
}
