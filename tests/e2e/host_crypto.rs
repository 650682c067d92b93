#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The two signature paths agree inside a real Envoy: the host's `verify_signature` (BoringSSL)
//! with `"host_crypto": true` and the plugin's pure-Rust code with `"host_crypto": false` give
//! every token of one corpus the same status, challenge and body, valid tokens 200 and invalid
//! ones 401.
//!
//! Needs `ENVOY_BIN` and `FILTER_WASM` (set by `make test`); without them it uses
//! `.venv/envoy/bin/envoy` and the release build of the plugin, and fails when those are missing.
//! Keys come from a `local_jwks`, so no key server is needed; routes answer directly, so no
//! upstream is needed either.
//!
//! `measure_verification_cost` (ignored; run with `-- --ignored --nocapture`) prints the median
//! request time on both paths for fresh tokens of each algorithm and for a public path.

use std::time::{Duration, Instant};

use crate::support::ecdsa::{ecdsa_der, hex, subtract, P256_ORDER, P384_ORDER};
use crate::support::envoy::{bootstrap_with_listeners, direct_response_listener, tail, WasmFilter};
use crate::support::http::{Client, Response};
use crate::support::keys::{
    good_claims, signature_bytes, with_altered_signature, with_header, with_payload,
    with_signature, TestKey, AUDIENCE, ISSUER,
};
use crate::support::raw_rsa::RawRsaKey;
use crate::support::Envoy;
use kserve_auth_filter::jose::alg::Alg;
use serde_json::{json, Value};

const RSA_A_PEM: &str = include_str!("../fixtures/keys/rsa-2048-a.pem");
const RSA_B_PEM: &str = include_str!("../fixtures/keys/rsa-2048-b.pem");
const RSA_3072_PEM: &str = include_str!("../fixtures/keys/rsa-3072.pem");

/// A protected path; every other path but [`PUBLIC_PATH`] is protected too.
const PATH: &str = "/v1/models/m:predict";
/// The path no rule protects: the plugin runs but checks no token.
const PUBLIC_PATH: &str = "/public";

/// What the plugin logs at start, followed by which signature path it uses.
const SIGNATURE_PATH_LINE: &str = "signature checks:";

// ---------------------------------------------------------------------------------------------
// Keys and tokens

/// Every signing key of the test. The JWKS publishes all but `rsa_b`.
struct Keys {
    rsa_a: TestKey,
    rsa_b: TestKey,
    rsa_3072: TestKey,
    p256: TestKey,
    p384: TestKey,
    ed25519: TestKey,
}

impl Keys {
    fn new() -> Keys {
        Keys {
            rsa_a: TestKey::rsa(Alg::RS256, RSA_A_PEM, "rsa-a"),
            rsa_b: TestKey::rsa(Alg::RS256, RSA_B_PEM, "rsa-b"),
            rsa_3072: TestKey::rsa(Alg::RS256, RSA_3072_PEM, "rsa-3072"),
            p256: TestKey::es256("ec256"),
            p384: TestKey::es384("ec384"),
            ed25519: TestKey::eddsa("ed"),
        }
    }

    /// The trusted keys: RSA "rsa-a" and "rsa-3072", P-256 "ec256", P-384 "ec384", Ed25519 "ed".
    /// No JWK names an `alg`, so "rsa-a" signs with every RSA algorithm.
    fn jwks(&self) -> String {
        let trusted = [
            &self.rsa_a,
            &self.rsa_3072,
            &self.p256,
            &self.p384,
            &self.ed25519,
        ];
        json!({"keys": trusted.map(TestKey::public_jwk)}).to_string()
    }
}

/// Claims every provider check accepts; `jti` makes each token distinct.
fn claims(jti: &str) -> Value {
    let mut claims = good_claims("alice");
    claims["jti"] = json!(jti);
    claims
}

/// One corpus entry: what it is, the token, and the status both paths must give.
struct Case {
    name: &'static str,
    token: String,
    status: u16,
}

fn corpus(keys: &Keys) -> Vec<Case> {
    let rsa_a = |alg| keys.rsa_a.with_alg(alg);
    let rs256 = keys.rsa_a.sign(&claims("rs256"));
    let ps256 = rsa_a(Alg::PS256).sign(&claims("ps256"));
    let es256 = keys.p256.sign(&claims("es256"));
    let es384 = keys.p384.sign(&claims("es384"));
    let p256_order = hex(P256_ORDER);
    let p384_order = hex(P384_ORDER);
    let es256_sig = signature_bytes(&es256);
    let es384_sig = signature_bytes(&es384);
    let high_s_256 = [&es256_sig[..32], &subtract(&p256_order, &es256_sig[32..])].concat();
    let high_s_384 = [&es384_sig[..48], &subtract(&p384_order, &es384_sig[48..])].concat();
    let high_r = [&[0xff; 32], &es256_sig[32..]].concat();
    let modulus = RawRsaKey::from_pkcs8_pem(RSA_A_PEM).n;
    let forged_payload =
        json!({"iss": ISSUER, "aud": AUDIENCE, "exp": 4_000_000_000u64, "sub": "x"}).to_string();

    let valid = [
        ("RS256", rs256.clone()),
        ("RS384", rsa_a(Alg::RS384).sign(&claims("rs384"))),
        ("RS512", rsa_a(Alg::RS512).sign(&claims("rs512"))),
        (
            "RS256 with a 3072-bit key",
            keys.rsa_3072.sign(&claims("rs256-3072")),
        ),
        (
            "RS256 without kid",
            keys.rsa_3072.without_kid().sign(&claims("rs256-nokid")),
        ),
        ("ES256", es256.clone()),
        ("ES384", es384.clone()),
        (
            "ES256 without kid",
            keys.p256.without_kid().sign(&claims("es256-nokid")),
        ),
        (
            "ES256 with s replaced by n - s (the other valid s)",
            with_signature(&es256, &high_s_256),
        ),
        (
            "ES384 with s replaced by n - s (the other valid s)",
            with_signature(&es384, &high_s_384),
        ),
        ("PS256 (pure Rust on both paths)", ps256.clone()),
        (
            "PS512 (pure Rust on both paths)",
            rsa_a(Alg::PS512).sign(&claims("ps512")),
        ),
        (
            "EdDSA (pure Rust on both paths)",
            keys.ed25519.sign(&claims("eddsa")),
        ),
    ];
    let invalid = [
        (
            "RS256 signature with one bit flipped",
            with_altered_signature(&rs256, |s| s[100] ^= 0x10),
        ),
        (
            "RS256 signature truncated by one byte",
            with_altered_signature(&rs256, |s| {
                s.pop();
            }),
        ),
        (
            "RS256 signature with a leading zero byte added",
            with_altered_signature(&rs256, |s| s.insert(0, 0)),
        ),
        (
            "RS256 signature all zero",
            with_altered_signature(&rs256, |s| s.fill(0)),
        ),
        (
            "RS256 signature equal to the modulus",
            with_signature(&rs256, &modulus),
        ),
        (
            "RS256 signed by a key not in the set",
            keys.rsa_b.with_kid("rsa-a").sign(&claims("other-key")),
        ),
        (
            "RS256 signed by a key not in the set, no kid",
            keys.rsa_b.without_kid().sign(&claims("other-key-nokid")),
        ),
        (
            "RS256 payload changed after signing",
            with_payload(&rs256, &forged_payload),
        ),
        (
            "PS256 token relabelled RS256",
            with_header(&ps256, r#"{"alg":"RS256","kid":"rsa-a","typ":"JWT"}"#),
        ),
        (
            "RS384 token whose signature is RS256",
            with_header(&rs256, r#"{"alg":"RS384","kid":"rsa-a","typ":"JWT"}"#),
        ),
        (
            "ES256 signature with one bit flipped",
            with_altered_signature(&es256, |s| s[40] ^= 0x01),
        ),
        (
            "ES256 signature of 63 bytes",
            with_altered_signature(&es256, |s| {
                s.pop();
            }),
        ),
        (
            "ES256 signature of 65 bytes",
            with_altered_signature(&es256, |s| s.push(0)),
        ),
        (
            "ES256 signature with r = 0",
            with_altered_signature(&es256, |s| s[..32].fill(0)),
        ),
        (
            "ES256 signature with s = 0",
            with_altered_signature(&es256, |s| s[32..].fill(0)),
        ),
        (
            "ES256 signature with r = n",
            with_altered_signature(&es256, |s| s[..32].copy_from_slice(&p256_order)),
        ),
        (
            "ES256 signature with s = n",
            with_altered_signature(&es256, |s| s[32..].copy_from_slice(&p256_order)),
        ),
        (
            "ES256 signature with r = 2^256 - 1",
            with_signature(&es256, &high_r),
        ),
        (
            "ES256 signature swapped (s || r)",
            with_altered_signature(&es256, |s| s.rotate_left(32)),
        ),
        (
            "ES256 signature in DER form",
            with_signature(&es256, &ecdsa_der(&es256_sig)),
        ),
        (
            "ES384 signature with one bit flipped",
            with_altered_signature(&es384, |s| s[90] ^= 0x80),
        ),
        (
            "ES384 signature of 95 bytes",
            with_altered_signature(&es384, |s| {
                s.pop();
            }),
        ),
        (
            "ES384 signature with s = 0",
            with_altered_signature(&es384, |s| s[48..].fill(0)),
        ),
        (
            "ES384 signature with r = n",
            with_altered_signature(&es384, |s| s[..48].copy_from_slice(&p384_order)),
        ),
        (
            "ES384 token whose kid names the P-256 key",
            keys.p384.with_kid("ec256").sign(&claims("es384-p256-kid")),
        ),
        (
            "ES256 token whose kid names the P-384 key",
            keys.p256.with_kid("ec384").sign(&claims("es256-p384-kid")),
        ),
        (
            "ES256 token whose kid names an RSA key",
            keys.p256.with_kid("rsa-a").sign(&claims("es256-rsa-kid")),
        ),
        (
            "ES256 token signed by a key not in the set",
            TestKey::es256("ec256").sign(&claims("es256-other")),
        ),
        (
            "ES256 signature on a token claiming ES384",
            with_header(&es256, r#"{"alg":"ES384","kid":"ec384","typ":"JWT"}"#),
        ),
        (
            "PS256 signature with one bit flipped",
            with_altered_signature(&ps256, |s| s[7] ^= 0x04),
        ),
        (
            "EdDSA signature with one bit flipped",
            with_altered_signature(&keys.ed25519.sign(&claims("eddsa-bad")), |s| s[3] ^= 0x02),
        ),
    ];
    let case = |status| {
        move |(name, token)| Case {
            name,
            token,
            status,
        }
    };
    valid
        .into_iter()
        .map(case(200))
        .chain(invalid.into_iter().map(case(401)))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Envoy

/// Envoy with the plugin (keys from `jwks`, [`PUBLIC_PATH`] open, everything else protected) in
/// front of a route that answers 200 directly, once the plugin has said which signature path it
/// uses; returns that statement too ("signature checks: …").
fn start(jwks: &str, host_crypto: bool) -> (Envoy, String) {
    let plugin = json!({
        "providers": {"test": {
            "issuer": ISSUER,
            "audiences": [AUDIENCE],
            "local_jwks": {"inline_string": jwks},
        }},
        "rules": [
            {"match": {"prefix": PUBLIC_PATH}},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "test"}},
        ],
        "host_crypto": host_crypto,
    });
    let bootstrap = bootstrap_with_listeners(vec![direct_response_listener(
        "main",
        vec![WasmFilter::new(&plugin).http_filter()],
    )]);
    let envoy = Envoy::start_bootstrap("bootstrap.json", &bootstrap.to_string(), 1, "info");
    let line = envoy
        .wait_for_log(SIGNATURE_PATH_LINE, Duration::from_secs(30))
        .unwrap_or_else(|| {
            panic!(
                "the plugin did not say which signature path it uses; log tail:\n{}",
                tail(&envoy.log(), 30)
            )
        });
    let statement = line[line.find(SIGNATURE_PATH_LINE).unwrap()..].to_string();
    (envoy, statement)
}

/// `GET path` with the token, if any, as a bearer token.
fn get(client: &mut Client, path: &str, token: Option<&str>) -> Response {
    let authorization = token.map(|token| format!("Bearer {token}"));
    let headers: Vec<(&str, &str)> = authorization
        .iter()
        .map(|value| ("authorization", value.as_str()))
        .collect();
    client.get(path, &headers)
}

// ---------------------------------------------------------------------------------------------
// Tests

// Both paths give every corpus token the same status, challenge and body; valid ones 200,
// invalid ones 401; the log says which path each Envoy used.
#[test]
fn host_and_pure_rust_paths_agree() {
    let keys = Keys::new();
    let jwks = keys.jwks();
    let cases = corpus(&keys);
    let (host, host_path) = start(&jwks, true);
    let (pure, pure_path) = start(&jwks, false);

    assert!(
        host_path.starts_with("signature checks: host verify_signature"),
        "{host_path}"
    );
    assert_eq!(
        pure_path,
        "signature checks: pure Rust (host_crypto is false)"
    );

    eprintln!("host_crypto true:  {host_path}");
    eprintln!("host_crypto false: {pure_path}");

    let answer = |client: &mut Client, token: &str| {
        let response = get(client, PATH, Some(token));
        let challenge = response.header("www-authenticate").map(str::to_string);
        (response.status, challenge, response.text())
    };
    let mut host_client = Client::new(host.addr());
    let mut pure_client = Client::new(pure.addr());
    let mut failures = Vec::new();
    for case in &cases {
        let on_host = answer(&mut host_client, &case.token);
        let on_pure = answer(&mut pure_client, &case.token);
        if on_host != on_pure || on_host.0 != case.status {
            failures.push(format!(
                "{}: expected {}, host path {:?}, pure-Rust path {:?}",
                case.name, case.status, on_host, on_pure
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The host path really ran on the host: no call failed over to pure Rust. Envoy's log is
    // unbuffered and the plugin logs before it answers, so every line is there by now.
    assert!(
        !host.log().contains("verify_signature failed ("),
        "a host call failed:\n{}",
        host.log()
    );
    let valid = cases.iter().filter(|case| case.status == 200).count();
    assert!(valid >= 10 && cases.len() - valid >= 25, "corpus too small");
}

/// Times one request per token on one keep-alive connection.
fn request_times(client: &mut Client, path: &str, tokens: &[Option<String>]) -> Vec<Duration> {
    tokens
        .iter()
        .map(|token| {
            let started = Instant::now();
            let response = get(client, path, token.as_deref());
            let elapsed = started.elapsed();
            assert_eq!(response.status, 200, "{}", response.text());
            elapsed
        })
        .collect()
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

// Prints the median request time per algorithm on both paths, with a fresh token per request
// (nothing is cached), and for a public path, which runs the plugin but checks no token. Both
// Envoys run at once and are measured in alternating batches, so load from elsewhere on the
// machine hits both alike.
#[test]
#[ignore = "measurement; run with -- --ignored --nocapture"]
fn measure_verification_cost() {
    const REQUESTS: usize = 200;
    const BATCH: usize = 20;
    let keys = Keys::new();
    let jwks = keys.jwks();
    let signers = [
        ("RS256", keys.rsa_a.clone()),
        ("RS256/3072", keys.rsa_3072.clone()),
        ("RS512", keys.rsa_a.with_alg(Alg::RS512)),
        ("ES256", keys.p256.clone()),
        ("ES384", keys.p384.clone()),
        ("PS256", keys.rsa_a.with_alg(Alg::PS256)),
        ("EdDSA", keys.ed25519.clone()),
    ];
    let mut workloads: Vec<(&str, &str, Vec<Option<String>>)> =
        vec![("public", PUBLIC_PATH, vec![None; REQUESTS + BATCH])];
    for (name, key) in &signers {
        // BATCH more than measured: the warm-up gets tokens of its own, so no measured request
        // is answered from the token cache.
        let tokens = (0..REQUESTS + BATCH)
            .map(|i| Some(key.sign(&claims(&format!("{name}-{i}")))))
            .collect();
        workloads.push((name, PATH, tokens));
    }

    let envoys = [start(&jwks, true), start(&jwks, false)];
    let mut clients: Vec<Client> = envoys
        .iter()
        .map(|(envoy, _)| Client::new(envoy.addr()))
        .collect();
    // Warm-up: V8 tiers up hot functions after some calls.
    for (_, path, tokens) in &workloads {
        for client in &mut clients {
            request_times(client, path, &tokens[REQUESTS..]);
        }
    }
    let mut rows = Vec::new();
    for (name, path, tokens) in &workloads {
        let mut times = [Vec::new(), Vec::new()];
        for (round, batch) in tokens[..REQUESTS].chunks(BATCH).enumerate() {
            // Alternate which Envoy goes first, so neither always follows the other.
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for index in order {
                times[index].extend(request_times(&mut clients[index], path, batch));
            }
        }
        let [host, pure] = times;
        rows.push((*name, median(host), median(pure)));
    }
    println!("median time per request, {REQUESTS} requests each, a fresh token per request:");
    println!("  host_crypto true:  {}", envoys[0].1);
    println!("  host_crypto false: {}", envoys[1].1);
    println!("  workload     host_crypto=true (over public)   host_crypto=false (over public)");
    let (host_floor, pure_floor) = (rows[0].1, rows[0].2);
    for (name, host, pure) in rows {
        println!(
            "  {name:<11} {:>8.1} µs ({:>7.1} µs)    {:>8.1} µs ({:>7.1} µs)",
            host.as_secs_f64() * 1e6,
            (host.as_secs_f64() - host_floor.as_secs_f64()) * 1e6,
            pure.as_secs_f64() * 1e6,
            (pure.as_secs_f64() - pure_floor.as_secs_f64()) * 1e6,
        );
    }
}
