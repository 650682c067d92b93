//! Fixed material the fuzz targets share: one key of each supported type, a provider and a
//! configuration that use them, and a fixed clock.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::*;
use serde_json::json;

/// The clock every target uses, so a run is reproducible.
pub const NOW_SECONDS: u64 = 1_700_000_000;

const RSA_PEM: &str = include_str!("../../tests/fixtures/keys/rsa-2048-a.pem");

/// A JWKS with an RSA, a P-256, a P-384 and an Ed25519 key (kids `rsa`, `p256`, `p384`, `ed`).
pub fn jwks() -> String {
    let rsa = RS256KeyPair::from_pem(RSA_PEM).expect("fixture key");
    let components = rsa.public_key().to_components();
    let p256 = ES256KeyPair::generate()
        .public_key()
        .public_key()
        .to_bytes_uncompressed();
    let p384 = ES384KeyPair::generate()
        .public_key()
        .public_key()
        .to_bytes_uncompressed();
    let ed = Ed25519KeyPair::generate().public_key().to_bytes();
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    json!({"keys": [
        {"kty": "RSA", "kid": "rsa", "n": b64(&components.n), "e": b64(&components.e)},
        {"kty": "EC", "kid": "p256", "crv": "P-256", "x": b64(&p256[1..33]), "y": b64(&p256[33..])},
        {"kty": "EC", "kid": "p384", "crv": "P-384", "x": b64(&p384[1..49]), "y": b64(&p384[49..])},
        {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": b64(&ed)},
    ]})
    .to_string()
}

/// A configuration with one provider on those keys: a public health path, models protected.
pub fn config_json() -> String {
    json!({
        "providers": {"idp": {
            "issuer": "https://idp.test",
            "audiences": ["kserve"],
            "local_jwks": {"inline_string": jwks()},
            "from_params": ["access_token"],
            "from_headers": [{"name": "authorization", "value_prefix": "Bearer "},
                             {"name": "x-token"}],
            "forward_payload_header": "x-jwt-payload",
            "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"},
                                 {"header_name": "x-roles", "claim_name": "realm_access.roles"}]
        }},
        "rules": [
            {"match": {"prefix": "/v2/health"}},
            {"match": {"path": "/optional"}, "requires": {"allow_missing": {}}},
            {"match": {"model": "fraud-*", "methods": ["POST"]}, "requires": {"provider_name": "idp"},
             "require_claims": [{"claim": "realm_access.roles", "has": "fraud"},
                                {"claim": "scope", "has_word": "predict"}]},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}
        ],
        "bypass_cors_preflight": true,
        "protected_resource_metadata": {"resource": "https://models.test"}
    })
    .to_string()
}
