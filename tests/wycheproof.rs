#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Project Wycheproof's JOSE vectors (tests/fixtures/wycheproof/) against the filter's token
//! parsing, JWKS loading and signature check.
//!
//! Every Wycheproof JWS vector signs a payload that is not a JSON object ("foo", "123400", raw
//! bytes, nothing). A JWT's payload is a claims set, so `token::parse` refuses all of them, and
//! the full pipeline alone would only show that. Each vector therefore runs through two views:
//!
//! * `pipeline`: exactly what the filter does: `jwks::parse_jwks`, `token::parse`,
//!   `verify::check_signature` with `PureRustCrypto`. Claims are not JWT claims here, so
//!   `check_claims` is skipped.
//! * `signature`: the same, as if the payload were a claims set: when `token::parse` refuses only
//!   the payload, header and signature are parsed by `token::parse` from the same header and
//!   signature segments around a `{}` payload, the token's raw text is put back, and the key
//!   selection of `check_signature` runs with the pure-Rust signature check, which must agree with
//!   jwt-simple's verdict on the signature every time (see [`SignatureOnly`]).
//!
//! Each view must reject every vector marked invalid and accept every vector marked valid, except
//! the deliberate differences listed below by tcId with their reason; the counts are asserted so
//! the test cannot pass vacuously.

#[path = "e2e/support/reference.rs"]
mod reference;

use std::collections::BTreeMap;

use kserve_auth_filter::crypto::key::Key;
use kserve_auth_filter::crypto::verify::{check_signature, PureRustCrypto, SignatureCheck};
use kserve_auth_filter::failure::Failure;
use kserve_auth_filter::jose::alg::Alg;
use kserve_auth_filter::jose::token::{self, decode_base64url, Token};
use kserve_auth_filter::keys::jwks::parse_jwks;
use serde_json::{json, Value};

const JWS_VECTORS: &str = include_str!("fixtures/wycheproof/json_web_signature_test.json");
const JWK_VECTORS: &str = include_str!("fixtures/wycheproof/json_web_key_test.json");

/// Valid vectors whose payload is not a JSON object: a JWT filter must refuse them, so the
/// pipeline view rejects them (the signature view still checks their signatures).
const PAYLOAD_NOT_CLAIMS: &str = "the payload is not a JSON claims set (RFC 7519 §7.2)";

// Reasons for deliberate differences.
const HMAC: &str = "HMAC: symmetric keys and algorithms are never accepted";
const EMPTY_PAYLOAD: &str =
    "an empty payload segment is BadFormat: a JWT always carries a claims set";
const ALG_PINNED: &str =
    "RFC 7520 figure 20: a PS384 token checked with a JWK pinned to alg PS256; the filter \
     honours the JWK's alg";
const ES512: &str = "ES512 on P-521 is not supported";
const ROCA: &str = "ROCA-weak moduli are not fingerprinted (2049-bit key, exponent 65537); \
                    Envoy's jwt_authn does not detect them either";

/// The deliberate differences: (tcId, reason), for each file and view.
const JWS_PIPELINE_DIFFERENCES: &[(u64, &str)] = &[
    (18, PAYLOAD_NOT_CLAIMS),
    (33, PAYLOAD_NOT_CLAIMS),
    (259, PAYLOAD_NOT_CLAIMS),
    (260, PAYLOAD_NOT_CLAIMS),
    (261, PAYLOAD_NOT_CLAIMS),
    (262, PAYLOAD_NOT_CLAIMS),
    (263, PAYLOAD_NOT_CLAIMS),
    (264, PAYLOAD_NOT_CLAIMS),
    (265, PAYLOAD_NOT_CLAIMS),
    (266, PAYLOAD_NOT_CLAIMS),
    (267, PAYLOAD_NOT_CLAIMS),
    (268, PAYLOAD_NOT_CLAIMS),
    (269, PAYLOAD_NOT_CLAIMS),
    (270, PAYLOAD_NOT_CLAIMS),
    (271, PAYLOAD_NOT_CLAIMS),
    (272, PAYLOAD_NOT_CLAIMS),
    (273, PAYLOAD_NOT_CLAIMS),
    (274, PAYLOAD_NOT_CLAIMS),
    (275, PAYLOAD_NOT_CLAIMS),
    (287, PAYLOAD_NOT_CLAIMS),
    (288, PAYLOAD_NOT_CLAIMS),
    (320, PAYLOAD_NOT_CLAIMS),
    (321, PAYLOAD_NOT_CLAIMS),
    (322, PAYLOAD_NOT_CLAIMS),
    (323, PAYLOAD_NOT_CLAIMS),
    (325, PAYLOAD_NOT_CLAIMS),
    (326, PAYLOAD_NOT_CLAIMS),
    (327, PAYLOAD_NOT_CLAIMS),
    (328, PAYLOAD_NOT_CLAIMS),
    (345, PAYLOAD_NOT_CLAIMS),
    (346, PAYLOAD_NOT_CLAIMS),
    (347, PAYLOAD_NOT_CLAIMS),
    (349, PAYLOAD_NOT_CLAIMS),
    (350, PAYLOAD_NOT_CLAIMS),
    (351, PAYLOAD_NOT_CLAIMS),
    (378, PAYLOAD_NOT_CLAIMS),
];
const JWS_SIGNATURE_DIFFERENCES: &[(u64, &str)] = &[
    (259, EMPTY_PAYLOAD),
    (264, EMPTY_PAYLOAD),
    (268, EMPTY_PAYLOAD),
    (272, EMPTY_PAYLOAD),
    (320, EMPTY_PAYLOAD),
    (325, EMPTY_PAYLOAD),
    (346, ALG_PINNED),
    (347, ES512),
    (350, ALG_PINNED),
    (351, ES512),
];
const JWK_PIPELINE_DIFFERENCES: &[(u64, &str)] = &[
    (2, HMAC),
    (5, PAYLOAD_NOT_CLAIMS),
    (13, HMAC),
    (14, HMAC),
    (15, HMAC),
];
const JWK_SIGNATURE_DIFFERENCES: &[(u64, &str)] =
    &[(2, HMAC), (7, ROCA), (13, HMAC), (14, HMAC), (15, HMAC)];

/// JWK vectors whose key set must be refused as a whole by `parse_jwks`: every key in it is
/// unusable (symmetric, wrong use, too small, exponent 1, unsupported or mismatched alg or curve,
/// point off the curve, wrong kty).
const JWK_SETS_REFUSED: &[u64] = &[
    2, 3, 4, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26,
];

/// The pure-Rust signature check, which must reach jwt-simple's verdict on every vector: jwt-simple
/// is asked through its whole-token verification, and counts as accepting when it verified the
/// signature and only then refused the payload as claims.
struct SignatureOnly;

impl SignatureCheck for SignatureOnly {
    fn check(&self, alg: Alg, key: &Key, token: &Token<'_>) -> bool {
        let verdict = PureRustCrypto.check(alg, key, token);
        assert_eq!(
            verdict,
            reference::signature_accepted(alg, key, token.raw),
            "pure-Rust and jwt-simple disagree on {} with key {:?}",
            alg.name(),
            key.kid
        );
        verdict
    }
}

/// One test vector with the key set it is checked against.
struct Vector {
    tc_id: u64,
    comment: String,
    valid: bool,
    /// The compact token, or `None` for the JSON serialization.
    jws: Option<String>,
    /// The JWKS document the token is checked with.
    jwks: Vec<u8>,
}

/// What happened to one vector in one view.
type Outcome = Result<(), String>;

fn failure_name(failure: Failure) -> String {
    failure.metric_name().to_string()
}

/// The filter's own path: keys, token, key selection and signature.
fn pipeline(vector: &Vector) -> Outcome {
    let jws = vector.jws.as_deref().ok_or("JSON serialization")?;
    let (keys, _) = parse_jwks(&vector.jwks).map_err(|error| error.message)?;
    let token = token::parse(jws).map_err(failure_name)?;
    check_signature(&token, &keys, &PureRustCrypto).map_err(failure_name)
}

/// The filter's path, as if the payload were a claims set.
fn signature(vector: &Vector) -> Outcome {
    let jws = vector.jws.as_deref().ok_or("JSON serialization")?;
    let (keys, _) = parse_jwks(&vector.jwks).map_err(|error| error.message)?;
    match token::parse(jws) {
        Ok(token) => check_signature(&token, &keys, &SignatureOnly).map_err(failure_name),
        Err(Failure::BadPayloadJson) => {
            let segments: Vec<&str> = jws.split('.').collect();
            let [header, payload, signature] = segments[..] else {
                panic!("BadPayloadJson implies three segments");
            };
            decode_base64url(payload).ok_or("payload is not base64url")?;
            let stand_in = format!("{header}.e30.{signature}");
            let mut token = token::parse(&stand_in).map_err(failure_name)?;
            token.raw = jws;
            token.signing_input = &jws[..header.len() + 1 + payload.len()];
            token.payload_segment = payload;
            check_signature(&token, &keys, &SignatureOnly).map_err(failure_name)
        }
        Err(failure) => Err(failure_name(failure)),
    }
}

/// Reads the vectors of one file. Groups with a public key are checked against it; groups with
/// only a private key are symmetric (HMAC) and, when `include_symmetric`, checked against the
/// private key set as published.
fn load(file: &str, include_symmetric: bool) -> (Vec<Vector>, usize) {
    let document: Value = serde_json::from_str(file).unwrap();
    let mut vectors = Vec::new();
    let mut symmetric_skipped = 0;
    for group in document["testGroups"].as_array().unwrap() {
        let (key, symmetric) = match (group.get("public"), group.get("private")) {
            (Some(public), _) => (public.clone(), false),
            (None, Some(private)) => (private.clone(), true),
            (None, None) => panic!("group without key: {group}"),
        };
        if symmetric {
            let keys = key.get("keys").and_then(Value::as_array).cloned();
            // Only symmetric keys lack a public form; a mixed set may add public keys.
            let symmetric_or_public = keys
                .unwrap_or_else(|| vec![key.clone()])
                .iter()
                .all(|jwk| jwk["kty"] == "oct" || jwk.get("d").is_none());
            assert!(symmetric_or_public, "unexpected private-only group: {key}");
        }
        let jwks = if key.get("keys").is_some() {
            key
        } else {
            json!({ "keys": [key] })
        };
        for test in group["tests"].as_array().unwrap() {
            if symmetric && !include_symmetric {
                symmetric_skipped += 1;
                continue;
            }
            vectors.push(Vector {
                tc_id: test["tcId"].as_u64().unwrap(),
                comment: test["comment"].as_str().unwrap().to_string(),
                valid: match test["result"].as_str().unwrap() {
                    "valid" => true,
                    "invalid" => false,
                    other => panic!("unexpected result {other}"),
                },
                jws: test["jws"].as_str().map(str::to_owned),
                jwks: serde_json::to_vec(&jwks).unwrap(),
            });
        }
    }
    (vectors, symmetric_skipped)
}

/// Tallies of one view over one file.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    valid_accepted: usize,
    invalid_rejected: usize,
    deliberate_differences: usize,
    /// Rejection reasons of the invalid vectors, for the report.
    reasons: BTreeMap<String, usize>,
}

/// Runs one view over `vectors`, panicking on any disagreement with Wycheproof that is not a
/// listed difference, and on any listed difference that did not happen.
fn run(
    name: &str,
    vectors: &[Vector],
    view: fn(&Vector) -> Outcome,
    differences: &[(u64, &str)],
) -> Tally {
    let differences: BTreeMap<u64, &str> = differences.iter().copied().collect();
    let mut tally = Tally::default();
    let mut mismatches = Vec::new();
    for vector in vectors {
        let outcome = view(vector);
        let agrees = outcome.is_ok() == vector.valid;
        match (agrees, differences.get(&vector.tc_id)) {
            (true, None) if vector.valid => tally.valid_accepted += 1,
            (true, None) => {
                tally.invalid_rejected += 1;
                // Key set messages name the skipped keys; count them under their first words.
                let reason = outcome.err().unwrap_or_default();
                let reason = reason.split(" (").next().unwrap_or_default().to_string();
                *tally.reasons.entry(reason).or_default() += 1;
            }
            (false, Some(_)) => tally.deliberate_differences += 1,
            (false, None) => mismatches.push(format!(
                "tcId {} ({}, {}): {:?}",
                vector.tc_id,
                vector.comment,
                if vector.valid { "valid" } else { "invalid" },
                outcome
            )),
            (true, Some(reason)) => mismatches.push(format!(
                "tcId {} is listed as a difference ({reason}) but agrees with Wycheproof",
                vector.tc_id
            )),
        }
    }
    assert!(
        mismatches.is_empty(),
        "{name}: {} disagreements:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    println!("{name}: {tally:?}");
    tally
}

fn reasons(counts: &[(&str, usize)]) -> BTreeMap<String, usize> {
    counts
        .iter()
        .map(|(reason, count)| (reason.to_string(), *count))
        .collect()
}

// JWS vectors, filter pipeline: every invalid vector is rejected; the valid ones all have
// non-claims payloads and are the listed differences.
#[test]
fn jws_vectors_pipeline() {
    let (vectors, symmetric) = load(JWS_VECTORS, false);
    assert_eq!(vectors.len() + symmetric, 401);
    assert_eq!(symmetric, 40, "HMAC vectors are out of scope");
    let tally = run("JWS pipeline", &vectors, pipeline, JWS_PIPELINE_DIFFERENCES);
    assert_eq!(tally.valid_accepted, 0);
    assert_eq!(tally.deliberate_differences, 36);
    assert_eq!(tally.invalid_rejected, 325);
    assert_eq!(
        tally.reasons,
        reasons(&[
            ("bad_payload_json", 299),
            ("bad_format", 16),
            ("alg_not_allowed", 5),
            ("no usable key", 4),
            ("bad_header_json", 1),
        ])
    );
}

// JWS vectors, signature view: every invalid vector is rejected, every valid one accepted,
// except the listed differences.
#[test]
fn jws_vectors_signature() {
    let (vectors, _) = load(JWS_VECTORS, false);
    let tally = run(
        "JWS signature",
        &vectors,
        signature,
        JWS_SIGNATURE_DIFFERENCES,
    );
    assert_eq!(tally.valid_accepted, 26);
    assert_eq!(tally.deliberate_differences, 10);
    assert_eq!(tally.invalid_rejected, 325);
    // Most invalid vectors reach the cryptography and fail there, not in parsing.
    assert_eq!(
        tally.reasons,
        reasons(&[
            ("bad_signature", 290),
            ("bad_format", 16),
            ("alg_not_allowed", 5),
            ("no_fitting_key", 5),
            ("no usable key", 4),
            ("bad_signature_encoding", 2),
            ("unknown_kid", 2),
            ("bad_header_json", 1),
        ])
    );
}

// JWK vectors, filter pipeline: symmetric key sets are refused and invalid keys skipped.
#[test]
fn jwk_vectors_pipeline() {
    let (vectors, _) = load(JWK_VECTORS, true);
    assert_eq!(vectors.len(), 26);
    let tally = run("JWK pipeline", &vectors, pipeline, JWK_PIPELINE_DIFFERENCES);
    assert_eq!(tally.valid_accepted, 0);
    assert_eq!(tally.deliberate_differences, 5);
    assert_eq!(tally.invalid_rejected, 21);
    assert_eq!(
        tally.reasons,
        reasons(&[
            ("no usable key", 19),
            ("alg_not_allowed", 1),
            ("bad_payload_json", 1),
        ])
    );
}

// JWK vectors, signature view: the one valid asymmetric vector verifies; invalid key sets are
// refused except the listed difference.
#[test]
fn jwk_vectors_signature() {
    let (vectors, _) = load(JWK_VECTORS, true);
    let tally = run(
        "JWK signature",
        &vectors,
        signature,
        JWK_SIGNATURE_DIFFERENCES,
    );
    assert_eq!(tally.valid_accepted, 1);
    assert_eq!(tally.deliberate_differences, 5);
    assert_eq!(tally.invalid_rejected, 20);
    assert_eq!(
        tally.reasons,
        reasons(&[("no usable key", 19), ("alg_not_allowed", 1)])
    );
}

// Key sets holding only unusable keys are refused as a whole; the mixed set keeps its EC key.
#[test]
fn jwk_key_sets() {
    let (vectors, _) = load(JWK_VECTORS, true);
    let refused: Vec<u64> = vectors
        .iter()
        .filter(|vector| parse_jwks(&vector.jwks).is_err())
        .map(|vector| vector.tc_id)
        .collect();
    assert_eq!(refused, JWK_SETS_REFUSED);
    let mixed = vectors.iter().find(|vector| vector.tc_id == 1).unwrap();
    let (keys, skipped) = parse_jwks(&mixed.jwks).unwrap();
    assert_eq!(keys.keys.len(), 1);
    assert_eq!(keys.keys[0].kid.as_deref(), Some("kid-ec-sign"));
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].reason, "symmetric keys are never accepted");
}
