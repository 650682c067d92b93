//! Checks of the end-to-end harness itself, with a plain Envoy (no wasm filter), so a failure
//! here points at the harness or the environment rather than at the filter.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use crate::support::envoy::tail;
use crate::support::http;
use crate::support::jwks_server::{DISCOVERY_PATH, JWKS_PATH};
use crate::support::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::*;
use serde_json::json;

fn plain_envoy(upstream: &EchoUpstream) -> Envoy {
    Envoy::start(&EnvoyConfig::plain(9, upstream.port()))
}

fn refuses_connections(addr: std::net::SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err()
}

// A plain Envoy forwards to the echo upstream, which reports the request it saw, with every
// value of a repeated header as an array entry.
#[test]
fn plain_envoy_proxies_to_echo_upstream() {
    let upstream = EchoUpstream::start();
    let envoy = plain_envoy(&upstream);
    let response = envoy.get(
        "/v2/models/m/infer?x=1",
        &[("x-one", "a"), ("x-twice", "1"), ("x-twice", "2")],
    );
    let echo = Echo::from_response(&response);
    assert_eq!(echo.method, "GET");
    assert_eq!(echo.path, "/v2/models/m/infer?x=1");
    assert_eq!(echo.header("x-one").as_deref(), Some("a"));
    assert_eq!(echo.header_all("x-twice"), vec!["1", "2"]);
    assert_eq!(echo.header(":authority"), None);
    assert_eq!(echo.header("host").as_deref(), Some(http::DEFAULT_HOST));
    assert_eq!(upstream.count(), 1);
}

// Listeners from a watched file: a replacement written by rename takes effect while Envoy runs,
// keeps the port when the name and address stay, and an empty file removes every listener.
#[test]
fn listener_file_replaces_and_removes_listeners() {
    let upstream = EchoUpstream::start();
    let envoy = Envoy::start_with_listener_file(
        json!({"clusters": crate::support::envoy::upstream_clusters(9, upstream.port())}),
        &[crate::support::envoy::upstream_listener("main", vec![])],
        1,
        &[],
    );
    Echo::from_response(&envoy.get("/", &[]));
    envoy.set_listeners(&[crate::support::envoy::direct_response_listener(
        "main",
        vec![],
    )]);
    let addr = envoy.listener_addr("main");
    assert_eq!(
        addr,
        envoy.addr(),
        "the replaced listener moved to another port"
    );
    let direct = http::get(addr, "/", &[]);
    assert_eq!((direct.status, direct.text().as_str()), (200, "model"));
    envoy.set_listeners(&[]);
    assert_eq!(envoy.try_listener_addr("main"), None);
    assert!(refuses_connections(addr));
    assert_eq!(upstream.count(), 1);
}

// The listener normalizes paths (merged slashes, resolved dot segments) and rejects escaped
// slashes, as the filter's path rules assume.
#[test]
fn listener_normalizes_paths_and_rejects_escaped_slashes() {
    let upstream = EchoUpstream::start();
    let envoy = plain_envoy(&upstream);
    let merged = Echo::from_response(&envoy.get("//v2//health/../models/m", &[]));
    assert_eq!(merged.path, "/v2/models/m");
    let escaped = envoy.get("/v2/health%2F..%2Fmodels", &[]);
    assert_eq!(escaped.status, 400, "{}", escaped.text());
    assert_eq!(upstream.count(), 1);
}

// Envoy's log can be read while it runs (lines are not held in a buffer).
#[test]
fn envoy_log_is_readable_while_running() {
    let upstream = EchoUpstream::start();
    let envoy = plain_envoy(&upstream);
    let logged = poll(Duration::from_secs(5), || {
        envoy
            .log()
            .contains("starting main dispatch loop")
            .then_some(())
    });
    assert!(logged.is_some(), "{}", tail(&envoy.log(), 20));
}

// Admin stats are parsed as `name: value` counters.
#[test]
fn admin_counters_are_readable() {
    let upstream = EchoUpstream::start();
    let envoy = plain_envoy(&upstream);
    for _ in 0..3 {
        assert_eq!(envoy.get("/", &[]).status, 200);
    }
    let name = "cluster.kserve.upstream_rq_200";
    assert_eq!(
        envoy.wait_for_counter(name, 3, Duration::from_secs(5)),
        Some(3)
    );
    assert_eq!(envoy.counter("no.such.counter"), None);
    assert!(envoy.stats("cluster\\.kserve\\.").len() > 5);
}

// The keep-alive client sends request after request over one connection to Envoy.
#[test]
fn keep_alive_client_reuses_its_connection() {
    let upstream = EchoUpstream::start();
    let envoy = plain_envoy(&upstream);
    let mut client = http::Client::new(envoy.addr());
    for _ in 0..3 {
        assert_eq!(client.get("/", &[]).status, 200);
    }
    assert_eq!(
        envoy.wait_for_counter(
            "http.ingress.downstream_rq_total",
            3,
            Duration::from_secs(5)
        ),
        Some(3)
    );
    assert_eq!(envoy.counter("http.ingress.downstream_cx_total"), Some(1));
}

// When the server has closed an idle connection, the keep-alive client sends the request again
// on a new one instead of failing.
#[test]
fn keep_alive_client_reconnects_after_an_idle_close() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Answers one request per connection, then closes it without saying so beforehand.
    let server = std::thread::spawn(move || {
        for _ in 0..2 {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let request = http::read_request(&mut reader).unwrap().unwrap();
            let body = request.path.into_bytes();
            http::write_response(reader.get_mut(), 200, &[], &body, false).unwrap();
        }
    });
    let mut client = http::Client::new(addr);
    assert_eq!(client.get("/first", &[]).text(), "/first");
    // Let the server's close arrive, so the next request meets a closed connection.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(client.get("/second", &[]).text(), "/second");
    server.join().unwrap();
}

// Two Envoys start side by side (own ports, no shared hot-restart state) and dropping one
// kills it: its listener stops accepting.
#[test]
fn envoys_run_in_parallel_and_stop_on_drop() {
    let upstream = EchoUpstream::start();
    let first = plain_envoy(&upstream);
    let second = plain_envoy(&upstream);
    assert_ne!(first.addr(), second.addr());
    assert_ne!(first.admin_addr(), second.admin_addr());
    assert_eq!(first.get("/", &[]).status, 200);
    assert_eq!(second.get("/", &[]).status, 200);
    let addr = first.addr();
    drop(first);
    assert!(refuses_connections(addr));
    assert_eq!(second.get("/", &[]).status, 200);
}

// A test that panics still stops its Envoy (Drop runs while unwinding).
#[test]
fn envoy_is_stopped_when_a_test_panics() {
    let upstream = EchoUpstream::start();
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let envoy = plain_envoy(&upstream);
        tx.send((envoy.addr(), envoy.dir().to_path_buf())).unwrap();
        panic!("deliberate");
    }));
    assert!(result.is_err());
    let (addr, dir) = rx.recv().unwrap();
    assert!(refuses_connections(addr));
    // Kept for debugging after a panic; this panic was deliberate.
    std::fs::remove_dir_all(dir).unwrap();
}

// Envoy exiting at start (an unloadable module here) is reported with its exit status and log.
#[test]
fn start_failure_is_reported_with_the_log() {
    let missing = std::env::temp_dir().join("kserve-e2e-no-such-module.wasm");
    let config = EnvoyConfig {
        filter: Some(crate::support::envoy::WasmFilter {
            module: missing,
            configuration: "{}".into(),
            hold_headers: true,
        }),
        ..EnvoyConfig::plain(9, 9)
    };
    let failure = Envoy::try_start(&config)
        .err()
        .expect("Envoy must not start");
    let status = failure.status.expect("Envoy exited by itself");
    assert!(!status.success());
    assert!(
        failure.log.contains("kserve-e2e-no-such-module.wasm"),
        "{}",
        tail(&failure.log, 20)
    );
}

// The key server serves and replaces the JWKS, counts requests per path, answers 503 on
// demand, and can stop and listen again on the same port.
#[test]
fn jwks_server_switches_and_counts() {
    let mut server = JwksServer::start(r#"{"keys":[]}"#);
    let addr = server.addr();
    let first = http::get(addr, JWKS_PATH, &[]);
    assert_eq!(first.status, 200);
    assert_eq!(first.json(), json!({"keys": []}));
    server.set_jwks(r#"{"keys":[{"kid":"x"}]}"#);
    assert_eq!(
        http::get(addr, JWKS_PATH, &[]).json()["keys"][0]["kid"],
        "x"
    );
    server.set_unavailable(true);
    assert_eq!(http::get(addr, JWKS_PATH, &[]).status, 503);
    server.set_unavailable(false);
    assert_eq!(server.jwks_fetches(), 3);
    assert_eq!(http::get(addr, "/other", &[]).status, 404);
    assert_eq!(server.count("/other"), 1);

    server.stop_listening();
    assert!(refuses_connections(addr));
    server.listen();
    assert_eq!(server.addr(), addr);
    assert_eq!(http::get(addr, JWKS_PATH, &[]).status, 200);
    assert_eq!(server.jwks_fetches(), 4);
}

// A reserved key server refuses connections until it starts, then serves on that port.
#[test]
fn jwks_server_can_start_late() {
    let mut server = JwksServer::reserve(r#"{"keys":[]}"#);
    assert!(refuses_connections(server.addr()));
    server.listen();
    assert_eq!(http::get(server.addr(), JWKS_PATH, &[]).status, 200);
}

// The discovery document names the issuer it was given and points at the server's own JWKS.
#[test]
fn jwks_server_serves_discovery() {
    let server = JwksServer::start(r#"{"keys":[]}"#);
    assert_eq!(http::get(server.addr(), DISCOVERY_PATH, &[]).status, 404);
    server.serve_discovery(server.base_url());
    let doc = http::get(server.addr(), DISCOVERY_PATH, &[]).json();
    assert_eq!(doc["issuer"], json!(server.base_url()));
    assert_eq!(doc["jwks_uri"], json!(server.jwks_url()));
    assert_eq!(server.count(DISCOVERY_PATH), 2);
}

// Answers can be delayed, and the time of the first answer is recorded.
#[test]
fn jwks_server_delays_answers() {
    let server = JwksServer::start(r#"{"keys":[]}"#);
    server.set_delay(Duration::from_millis(300));
    let before = std::time::Instant::now();
    assert_eq!(http::get(server.addr(), JWKS_PATH, &[]).status, 200);
    assert!(before.elapsed() >= Duration::from_millis(300));
    assert!(server.first_answer_at(JWKS_PATH).unwrap() >= before);
}

// Plain Envoy reaches the key server through cluster `jwks` the way the filter's callouts do:
// a route to that cluster answers with the JWKS.
#[test]
fn jwks_cluster_points_at_the_key_server() {
    let server = JwksServer::start(r#"{"keys":[]}"#);
    let config = EnvoyConfig::plain(server.port(), server.port());
    let envoy = Envoy::start(&config);
    assert_eq!(envoy.get(JWKS_PATH, &[]).json(), json!({"keys": []}));
    assert_eq!(server.jwks_fetches(), 1);
}

fn b64(segment: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(segment).unwrap()
}

// Each key's published JWK verifies the tokens it signs (checked with jwt-simple rebuilt from
// the JWK members), and the payload is exactly the claims given.
#[test]
fn jwks_of_test_keys_verify_their_tokens() {
    let claims = good_claims("alice");
    let rs = TestKey::rs256("rsa-a", "rs");
    let ps = TestKey::ps256("rsa-b", "ps");
    let es = TestKey::es256("es");
    let ed = TestKey::eddsa("ed");
    let set: serde_json::Value = serde_json::from_str(&jwks(&[&rs, &ps, &es, &ed])).unwrap();
    let jwk = |kid: &str| {
        set["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .unwrap()
            .clone()
    };
    let m = |jwk: &serde_json::Value, name: &str| b64(jwk[name].as_str().unwrap());
    let opts = VerificationOptions::default;

    let token = rs.sign(&claims);
    assert_eq!(crate::support::keys::header_json(&token)["alg"], "RS256");
    assert_eq!(crate::support::keys::header_json(&token)["kid"], "rs");
    let j = jwk("rs");
    RS256PublicKey::from_components(&m(&j, "n"), &m(&j, "e"))
        .unwrap()
        .verify_token::<NoCustomClaims>(&token, Some(opts()))
        .unwrap();

    let token = ps.sign(&claims);
    let j = jwk("ps");
    PS256PublicKey::from_components(&m(&j, "n"), &m(&j, "e"))
        .unwrap()
        .verify_token::<NoCustomClaims>(&token, Some(opts()))
        .unwrap();

    let token = es.sign(&claims);
    let j = jwk("es");
    let mut point = vec![4u8];
    point.extend(m(&j, "x"));
    point.extend(m(&j, "y"));
    ES256PublicKey::from_bytes(&point)
        .unwrap()
        .verify_token::<NoCustomClaims>(&token, Some(opts()))
        .unwrap();

    let token = ed.sign(&claims);
    let j = jwk("ed");
    assert_eq!(j["kty"], "OKP");
    Ed25519PublicKey::from_bytes(&m(&j, "x"))
        .unwrap()
        .verify_token::<NoCustomClaims>(&token, Some(opts()))
        .unwrap();

    let payload: serde_json::Value =
        serde_json::from_slice(&b64(crate::support::keys::payload_segment(&token))).unwrap();
    assert_eq!(payload, claims);
}
