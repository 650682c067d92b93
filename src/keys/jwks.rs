//! JWK and JWKS JSON into usable public keys. Unusable keys are skipped with a reason; they do not
//! spoil the rest of the set.
//!
//! A key is only kept when the pure-Rust verifier accepts it too, so a key that loads here can
//! verify on the pure-Rust path as well as on the host.

use serde_json::{Map, Value};

use crate::crypto::host_wire;
use crate::crypto::key::{bit_length, Key, KeyMaterial, KeySet};
use crate::crypto::rsa::PreparedKey;
use crate::crypto::verify::{self, RSA_MODULUS_BITS};
use crate::jose::alg::Alg;
use crate::jose::json;
use crate::jose::token::decode_base64url;

/// A JWK left out of the set, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    /// Position in the `keys` array.
    pub index: usize,
    /// `kid`, when it had one.
    pub kid: Option<String>,
    /// Why it was left out, e.g. "RSA modulus is 1024 bits; 2048 to 4096 required".
    pub reason: String,
}

/// Why a JWKS document could not be used at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksError {
    /// What is wrong, e.g. "no usable key (3 skipped)".
    pub message: String,
}

impl std::fmt::Display for JwksError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// JWKS documents larger than this are refused before parsing.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// JWKS documents with more entries than this are refused: a provider needs a handful of keys, and
/// every key is a candidate for kid-less tokens.
pub const MAX_KEYS: usize = 100;

/// JWK members that only a private key has (RFC 7518 §6.2.2, §6.3.2, §6.4.1). A JWKS that
/// publishes them leaked a secret; such a key is not trusted.
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

/// Longest `kid` quoted in an error message; the full value stays in [`SkippedKey::kid`].
const MAX_KID_IN_MESSAGE: usize = 64;

/// Parses a JWKS document. A set with no usable key is an error.
pub fn parse_jwks(body: &[u8]) -> Result<(KeySet, Vec<SkippedKey>), JwksError> {
    if body.len() > MAX_JWKS_BYTES {
        return Err(jwks_error(format!(
            "JWKS is {} bytes; at most {MAX_JWKS_BYTES} accepted",
            body.len()
        )));
    }
    let document = json::parse_strict(body)
        .map_err(|error| jwks_error(format!("JWKS is not valid JSON: {error}")))?;
    let Value::Object(document) = document else {
        return Err(jwks_error("JWKS is not a JSON object".into()));
    };
    let Some(Value::Array(entries)) = document.get("keys") else {
        return Err(jwks_error("JWKS has no \"keys\" array".into()));
    };
    if entries.len() > MAX_KEYS {
        return Err(jwks_error(format!(
            "too many keys: {}; at most {MAX_KEYS} accepted",
            entries.len()
        )));
    }

    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        match parse_jwk(entry) {
            Ok(key) => keys.push(key),
            Err(reason) => skipped.push(SkippedKey {
                index,
                kid: entry.get("kid").and_then(Value::as_str).map(str::to_owned),
                reason,
            }),
        }
    }
    if keys.is_empty() {
        return Err(jwks_error(no_usable_key_message(&skipped)));
    }
    Ok((KeySet { keys }, skipped))
}

fn jwks_error(message: String) -> JwksError {
    JwksError { message }
}

fn no_usable_key_message(skipped: &[SkippedKey]) -> String {
    if skipped.is_empty() {
        return "no usable key (the key set is empty)".into();
    }
    let reasons: Vec<String> = skipped
        .iter()
        .map(|key| match &key.kid {
            Some(kid) => format!("key {} (kid {:?}): {}", key.index, shorten(kid), key.reason),
            None => format!("key {}: {}", key.index, key.reason),
        })
        .collect();
    format!(
        "no usable key ({} skipped: {})",
        skipped.len(),
        reasons.join("; ")
    )
}

fn shorten(text: &str) -> &str {
    match text.char_indices().nth(MAX_KID_IN_MESSAGE) {
        Some((end, _)) => text.get(..end).unwrap_or(text),
        None => text,
    }
}

/// One JWK into a usable key, or the reason it cannot be used.
pub fn parse_jwk(entry: &Value) -> Result<Key, String> {
    let Value::Object(jwk) = entry else {
        return Err("not a JSON object".into());
    };
    let kid = match jwk.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err("kid is not a string".into()),
    };
    let kty = match jwk.get("kty") {
        None => return Err("kty is missing".into()),
        Some(Value::String(kty)) => kty.as_str(),
        Some(_) => return Err("kty is not a string".into()),
    };
    if kty == "oct" {
        return Err("symmetric keys are never accepted".into());
    }
    if !matches!(kty, "RSA" | "EC" | "OKP") {
        return Err(format!("kty {kty:?} is not supported"));
    }
    match jwk.get("use") {
        None => {}
        Some(Value::String(key_use)) if key_use == "sig" => {}
        Some(Value::String(key_use)) => {
            return Err(format!(
                "use is {key_use:?}; only \"sig\" keys verify tokens"
            ))
        }
        Some(_) => return Err("use is not a string".into()),
    }
    if let Some(key_ops) = jwk.get("key_ops") {
        let allows_verify = key_ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")));
        if !allows_verify {
            return Err("key_ops does not include \"verify\"".into());
        }
    }
    if PRIVATE_MEMBERS.iter().any(|name| jwk.contains_key(*name)) {
        return Err("contains private key material".into());
    }
    let alg = match jwk.get("alg") {
        None => None,
        Some(Value::String(name)) => match Alg::from_name(name) {
            Some(alg) => Some(alg),
            None => {
                return Err(format!(
                    "alg {name:?} is not a supported signature algorithm"
                ))
            }
        },
        Some(_) => return Err("alg is not a string".into()),
    };

    let material = match kty {
        "RSA" => rsa_material(jwk)?,
        "EC" => ec_material(jwk)?,
        _ => okp_material(jwk)?,
    };
    let key = Key {
        kid,
        alg: None,
        spki_der: host_wire::spki_der(&material),
        prepared_rsa: PreparedKey::default(),
        material,
    };
    if let Some(alg) = alg {
        if !key.fits(alg) {
            return Err(format!(
                "alg {} does not fit {}",
                alg.name(),
                describe(&key.material)
            ));
        }
    }
    Ok(Key { alg, ..key })
}

fn describe(material: &KeyMaterial) -> &'static str {
    match material {
        KeyMaterial::Rsa { .. } => "an RSA key",
        KeyMaterial::P256 { .. } => "a P-256 key",
        KeyMaterial::P384 { .. } => "a P-384 key",
        KeyMaterial::Ed25519 { .. } => "an Ed25519 key",
    }
}

/// A required base64url member, decoded.
fn bytes_member(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    match jwk.get(name) {
        None => Err(format!("{name} is missing")),
        Some(Value::String(text)) => {
            decode_base64url(text).ok_or_else(|| format!("{name} is not base64url"))
        }
        Some(_) => Err(format!("{name} is not a string")),
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> Vec<u8> {
    let first = bytes
        .iter()
        .position(|&byte| byte != 0)
        .unwrap_or(bytes.len());
    bytes.get(first..).unwrap_or_default().to_vec()
}

fn rsa_material(jwk: &Map<String, Value>) -> Result<KeyMaterial, String> {
    // RFC 7518 forbids leading zeros, but some issuers add one to keep the integer "positive".
    let n = strip_leading_zeros(&bytes_member(jwk, "n")?);
    let e = strip_leading_zeros(&bytes_member(jwk, "e")?);
    let bits = bit_length(&n);
    if !RSA_MODULUS_BITS.contains(&bits) {
        return Err(format!(
            "RSA modulus is {bits} bits; {} to {} required",
            RSA_MODULUS_BITS.start(),
            RSA_MODULUS_BITS.end()
        ));
    }
    if e != [1, 0, 1] {
        return Err("RSA exponent is not 65537, the only exponent accepted".into());
    }
    if !verify::rsa_key_usable(&n, &e) {
        return Err("RSA key is not valid (even modulus)".into());
    }
    Ok(KeyMaterial::Rsa { n, e })
}

fn ec_material(jwk: &Map<String, Value>) -> Result<KeyMaterial, String> {
    let crv = match jwk.get("crv") {
        None => return Err("crv is missing".into()),
        Some(Value::String(crv)) => crv.as_str(),
        Some(_) => return Err("crv is not a string".into()),
    };
    let size = match crv {
        "P-256" => 32,
        "P-384" => 48,
        _ => return Err(format!("curve {crv:?} is not supported")),
    };
    let x = bytes_member(jwk, "x")?;
    let y = bytes_member(jwk, "y")?;
    if x.len() != size || y.len() != size {
        return Err(format!("x and y must be {size} bytes each for {crv}"));
    }
    let mut point = Vec::with_capacity(1 + 2 * size);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    // Constructing the verifying key checks that the point is on the curve.
    if size == 32 {
        verify::p256_public_key(&point).ok_or("point is not on P-256")?;
        Ok(KeyMaterial::P256 { point })
    } else {
        verify::p384_public_key(&point).ok_or("point is not on P-384")?;
        Ok(KeyMaterial::P384 { point })
    }
}

fn okp_material(jwk: &Map<String, Value>) -> Result<KeyMaterial, String> {
    match jwk.get("crv") {
        None => return Err("crv is missing".into()),
        Some(Value::String(crv)) if crv == "Ed25519" => {}
        Some(Value::String(crv)) => return Err(format!("curve {crv:?} is not supported")),
        Some(_) => return Err("crv is not a string".into()),
    }
    let public = bytes_member(jwk, "x")?;
    if public.len() != 32 {
        return Err("x must be 32 bytes for Ed25519".into());
    }
    // Small-order (weak) keys are refused.
    verify::ed25519_public_key(&public).ok_or("not a valid Ed25519 public key")?;
    Ok(KeyMaterial::Ed25519 { public })
}

/// Key material and JWKs for tests, shared with the verify tests.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub(crate) mod test_support {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use jwt_simple::prelude::*;
    use serde_json::{json, Value};

    /// The first 2048-bit RSA test key.
    pub(crate) const RSA_A_PEM: &str = include_str!("../../tests/fixtures/keys/rsa-2048-a.pem");
    /// The second 2048-bit RSA test key.
    pub(crate) const RSA_B_PEM: &str = include_str!("../../tests/fixtures/keys/rsa-2048-b.pem");
    /// A 3072-bit RSA test key.
    pub(crate) const RSA_3072_PEM: &str = include_str!("../../tests/fixtures/keys/rsa-3072.pem");

    pub(crate) fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Adds the members of `extra` (an object) to `jwk`.
    fn merge(mut jwk: Value, extra: Value) -> Value {
        if let (Some(jwk), Value::Object(extra)) = (jwk.as_object_mut(), extra) {
            jwk.extend(extra);
        }
        jwk
    }

    /// The public JWK of an RSA key given as PEM, plus `extra` members.
    pub(crate) fn rsa_jwk(pem: &str, extra: Value) -> Value {
        let components = RS256KeyPair::from_pem(pem)
            .unwrap()
            .public_key()
            .to_components();
        merge(
            json!({"kty": "RSA", "n": b64(&components.n), "e": b64(&components.e)}),
            extra,
        )
    }

    /// The public JWK of a P-256 key pair, plus `extra` members.
    pub(crate) fn p256_jwk(pair: &ES256KeyPair, extra: Value) -> Value {
        let point = pair.public_key().public_key().to_bytes_uncompressed();
        merge(
            json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])}),
            extra,
        )
    }

    /// The public JWK of a P-384 key pair, plus `extra` members.
    pub(crate) fn p384_jwk(pair: &ES384KeyPair, extra: Value) -> Value {
        let point = pair.public_key().public_key().to_bytes_uncompressed();
        merge(
            json!({"kty": "EC", "crv": "P-384", "x": b64(&point[1..49]), "y": b64(&point[49..])}),
            extra,
        )
    }

    /// The public JWK of an Ed25519 key pair, plus `extra` members.
    pub(crate) fn ed25519_jwk(pair: &Ed25519KeyPair, extra: Value) -> Value {
        let public = pair.public_key().to_bytes();
        merge(
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&public)}),
            extra,
        )
    }

    /// A JWKS document holding `keys`.
    pub(crate) fn jwks(keys: Vec<Value>) -> Vec<u8> {
        serde_json::to_vec(&json!({ "keys": keys })).unwrap()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::test_support::*;
    use super::*;
    use jwt_simple::prelude::{ES256KeyPair, ES384KeyPair, Ed25519KeyPair, RS256KeyPair};
    use serde_json::json;

    /// Why `jwk` is skipped, from a set that also holds a usable key.
    fn skip_reason(jwk: Value) -> String {
        let good = p256_jwk(&ES256KeyPair::generate(), json!({}));
        let (set, skipped) = parse_jwks(&jwks(vec![jwk, good])).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(skipped.len(), 1, "the first key should be skipped");
        assert_eq!(skipped[0].index, 0);
        skipped[0].reason.clone()
    }

    fn single_key(jwk: Value) -> Key {
        let (set, skipped) = parse_jwks(&jwks(vec![jwk])).unwrap();
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(set.keys.len(), 1);
        set.keys.into_iter().next().unwrap()
    }

    /// An RSA JWK with this modulus and exponent 65537.
    fn rsa_with_modulus(n: &[u8]) -> Value {
        json!({"kty": "RSA", "n": b64(n), "e": "AQAB"})
    }

    /// An odd modulus of exactly `bits` bits (not a real RSA modulus; only sizes are checked).
    fn modulus_of_bits(bits: usize) -> Vec<u8> {
        let mut n = vec![0xffu8; bits.div_ceil(8)];
        let top_bits = bits % 8;
        if top_bits != 0 {
            n[0] = (1u8 << top_bits) - 1;
        }
        n
    }

    // Every supported key type loads, keeping kid, alg and the exact key bytes.
    #[test]
    fn loads_every_key_type() {
        let p256 = ES256KeyPair::generate();
        let p384 = ES384KeyPair::generate();
        let ed = Ed25519KeyPair::generate();
        let body = jwks(vec![
            rsa_jwk(
                RSA_A_PEM,
                json!({"kid": "rsa", "alg": "RS256", "use": "sig"}),
            ),
            rsa_jwk(
                RSA_3072_PEM,
                json!({"kid": "rsa3072", "key_ops": ["verify"]}),
            ),
            p256_jwk(&p256, json!({"kid": "p256", "alg": "ES256"})),
            p384_jwk(&p384, json!({"kid": "p384"})),
            ed25519_jwk(&ed, json!({"kid": "ed", "alg": "EdDSA"})),
        ]);
        let (set, skipped) = parse_jwks(&body).unwrap();
        assert!(skipped.is_empty(), "{skipped:?}");
        let kids: Vec<_> = set.keys.iter().map(|k| k.kid.as_deref().unwrap()).collect();
        assert_eq!(kids, ["rsa", "rsa3072", "p256", "p384", "ed"]);
        let algs: Vec<_> = set.keys.iter().map(|k| k.alg).collect();
        assert_eq!(
            algs,
            [
                Some(Alg::RS256),
                None,
                Some(Alg::ES256),
                None,
                Some(Alg::EdDSA)
            ]
        );
        let components = jwt_simple::prelude::RS256KeyPair::from_pem(RSA_A_PEM)
            .unwrap()
            .public_key()
            .to_components();
        assert_eq!(
            set.keys[0].material,
            KeyMaterial::Rsa {
                n: components.n,
                e: vec![1, 0, 1]
            }
        );
        use jwt_simple::prelude::ECDSAP256PublicKeyLike as _;
        use jwt_simple::prelude::ECDSAP384PublicKeyLike as _;
        assert_eq!(
            set.keys[2].material,
            KeyMaterial::P256 {
                point: p256.public_key().public_key().to_bytes_uncompressed()
            }
        );
        assert_eq!(
            set.keys[3].material,
            KeyMaterial::P384 {
                point: p384.public_key().public_key().to_bytes_uncompressed()
            }
        );
        assert_eq!(
            set.keys[4].material,
            KeyMaterial::Ed25519 {
                public: ed.public_key().to_bytes()
            }
        );
    }

    // Unusable keys are skipped with index, kid and reason; the usable ones still load.
    #[test]
    fn skipped_keys_do_not_spoil_the_set() {
        let body = jwks(vec![
            json!({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}),
            p256_jwk(&ES256KeyPair::generate(), json!({"kid": "good"})),
            json!("not a key"),
        ]);
        let (set, skipped) = parse_jwks(&body).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.keys[0].kid.as_deref(), Some("good"));
        assert_eq!(
            skipped,
            vec![
                SkippedKey {
                    index: 0,
                    kid: Some("hmac".into()),
                    reason: "symmetric keys are never accepted".into(),
                },
                SkippedKey {
                    index: 2,
                    kid: None,
                    reason: "not a JSON object".into(),
                },
            ]
        );
    }

    // A set without any usable key is an error listing every reason.
    #[test]
    fn no_usable_key() {
        let body = jwks(vec![
            json!({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}),
            json!({"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"}),
        ]);
        assert_eq!(
            parse_jwks(&body).unwrap_err().message,
            "no usable key (2 skipped: key 0 (kid \"hmac\"): symmetric keys are never accepted; \
             key 1: curve \"secp256k1\" is not supported)"
        );
        assert_eq!(
            parse_jwks(br#"{"keys":[]}"#).unwrap_err().message,
            "no usable key (the key set is empty)"
        );
    }

    // A very long kid is shortened in the message but kept whole in the skipped list.
    #[test]
    fn long_kid_is_shortened_in_messages() {
        let kid = "k".repeat(1000);
        let hmac = json!({"kty": "oct", "kid": kid});
        let error = parse_jwks(&jwks(vec![hmac.clone()])).unwrap_err();
        assert!(error.message.contains(&format!("\"{}\"", "k".repeat(64))));
        assert!(!error.message.contains(&"k".repeat(65)));
        let good = p256_jwk(&ES256KeyPair::generate(), json!({}));
        let (_, skipped) = parse_jwks(&jwks(vec![hmac, good])).unwrap();
        assert_eq!(skipped[0].kid.as_deref(), Some(kid.as_str()));
    }

    // The document must be a JSON object with a keys array, without repeated names.
    #[test]
    fn document_shape() {
        let cases: [(&[u8], &str); 6] = [
            (b"not json", "JWKS is not valid JSON"),
            (b"[]", "JWKS is not a JSON object"),
            (b"{}", "JWKS has no \"keys\" array"),
            (br#"{"keys":{}}"#, "JWKS has no \"keys\" array"),
            (br#"{"keys":[],"keys":[]}"#, "JWKS is not valid JSON"),
            (
                br#"{"keys":[{"kty":"RSA","kty":"EC"}]}"#,
                "JWKS is not valid JSON",
            ),
        ];
        for (body, expected) in cases {
            let message = parse_jwks(body).unwrap_err().message;
            assert!(message.starts_with(expected), "{message}");
        }
    }

    // Bodies over 256 KiB are refused by length, before parsing.
    #[test]
    fn body_size_limit() {
        let big = vec![b' '; MAX_JWKS_BYTES + 1];
        assert_eq!(
            parse_jwks(&big).unwrap_err().message,
            format!(
                "JWKS is {} bytes; at most 262144 accepted",
                MAX_JWKS_BYTES + 1
            )
        );
        let mut padded = jwks(vec![p256_jwk(&ES256KeyPair::generate(), json!({}))]);
        padded.resize(MAX_JWKS_BYTES, b' ');
        assert!(parse_jwks(&padded).is_ok());
    }

    // 100 keys are accepted; 101 are refused as a whole.
    #[test]
    fn key_count_limit() {
        let key = p256_jwk(&ES256KeyPair::generate(), json!({}));
        let (set, _) = parse_jwks(&jwks(vec![key.clone(); MAX_KEYS])).unwrap();
        assert_eq!(set.keys.len(), MAX_KEYS);
        assert_eq!(
            parse_jwks(&jwks(vec![key; MAX_KEYS + 1]))
                .unwrap_err()
                .message,
            "too many keys: 101; at most 100 accepted"
        );
    }

    // Generic JWK members are checked: kid, kty, use, key_ops, private material, alg.
    #[test]
    fn generic_member_checks() {
        let p256 = ES256KeyPair::generate();
        let ec = |extra| p256_jwk(&p256, extra);
        let cases = [
            (
                json!({"kty": "oct", "k": "AA"}),
                "symmetric keys are never accepted",
            ),
            (json!({"n": "AA", "e": "AQAB"}), "kty is missing"),
            (json!({"kty": 1}), "kty is not a string"),
            (
                json!({"kty": "RSA-PSS"}),
                "kty \"RSA-PSS\" is not supported",
            ),
            (ec(json!({"kid": 7})), "kid is not a string"),
            (
                ec(json!({"use": "enc"})),
                "use is \"enc\"; only \"sig\" keys verify tokens",
            ),
            (ec(json!({"use": ["sig"]})), "use is not a string"),
            (
                ec(json!({"key_ops": ["sign"]})),
                "key_ops does not include \"verify\"",
            ),
            (
                ec(json!({"key_ops": "verify"})),
                "key_ops does not include \"verify\"",
            ),
            (
                ec(json!({"key_ops": []})),
                "key_ops does not include \"verify\"",
            ),
            (
                ec(json!({"alg": "HS256"})),
                "alg \"HS256\" is not a supported signature algorithm",
            ),
            (
                ec(json!({"alg": "ES512"})),
                "alg \"ES512\" is not a supported signature algorithm",
            ),
            (ec(json!({"alg": 1})), "alg is not a string"),
            (
                ec(json!({"alg": "ES384"})),
                "alg ES384 does not fit a P-256 key",
            ),
            (
                ec(json!({"alg": "RS256"})),
                "alg RS256 does not fit a P-256 key",
            ),
            (
                rsa_jwk(RSA_A_PEM, json!({"alg": "ES256"})),
                "alg ES256 does not fit an RSA key",
            ),
            (
                ed25519_jwk(&Ed25519KeyPair::generate(), json!({"alg": "ES256"})),
                "alg ES256 does not fit an Ed25519 key",
            ),
        ];
        for (jwk, expected) in cases {
            assert_eq!(skip_reason(jwk.clone()), expected, "{jwk}");
        }
        assert_eq!(
            single_key(ec(json!({"key_ops": ["sign", "verify"]}))).alg,
            None
        );
    }

    // A key that publishes any private member is not trusted.
    #[test]
    fn private_material_is_refused() {
        for member in PRIVATE_MEMBERS {
            let mut jwk = rsa_jwk(RSA_A_PEM, json!({}));
            jwk[member] = json!("AQAB");
            assert_eq!(
                skip_reason(jwk),
                "contains private key material",
                "{member}"
            );
        }
    }

    // RSA moduli from 2048 to 4096 bits load; one bit outside either end is skipped.
    #[test]
    fn rsa_modulus_size() {
        for bits in [2048, 2049, 4096] {
            let key = single_key(rsa_with_modulus(&modulus_of_bits(bits)));
            assert!(matches!(key.material, KeyMaterial::Rsa { .. }), "{bits}");
        }
        for bits in [1024, 2047, 4097, 8192] {
            assert_eq!(
                skip_reason(rsa_with_modulus(&modulus_of_bits(bits))),
                format!("RSA modulus is {bits} bits; 2048 to 4096 required")
            );
        }
    }

    // Leading zero bytes of n and e are stripped, and do not count towards the size.
    #[test]
    fn rsa_leading_zeros_are_stripped() {
        let mut n = vec![0, 0];
        n.extend(modulus_of_bits(2048));
        let mut jwk = rsa_with_modulus(&n);
        jwk["e"] = json!(b64(&[0, 1, 0, 1]));
        let key = single_key(jwk);
        assert_eq!(
            key.material,
            KeyMaterial::Rsa {
                n: modulus_of_bits(2048),
                e: vec![1, 0, 1]
            }
        );
        let mut short = vec![0];
        short.extend(modulus_of_bits(2040));
        assert_eq!(
            skip_reason(rsa_with_modulus(&short)),
            "RSA modulus is 2040 bits; 2048 to 4096 required"
        );
    }

    // Exponents other than 65537 are skipped, with the reason.
    #[test]
    fn rsa_exponent() {
        for e in ["AQ", "Aw", "AQAA", "AQAC", ""] {
            let mut jwk = rsa_jwk(RSA_A_PEM, json!({}));
            jwk["e"] = json!(e);
            assert_eq!(
                skip_reason(jwk),
                "RSA exponent is not 65537, the only exponent accepted",
                "{e}"
            );
        }
    }

    // Missing or badly encoded RSA members are skipped, and so is a modulus that cannot be RSA.
    #[test]
    fn rsa_member_problems() {
        let good = rsa_jwk(RSA_A_PEM, json!({}));
        let mut no_n = good.clone();
        no_n.as_object_mut().unwrap().remove("n");
        assert_eq!(skip_reason(no_n), "n is missing");
        let mut padded = good.clone();
        padded["e"] = json!("AQAB==");
        assert_eq!(skip_reason(padded), "e is not base64url");
        // All-ones bytes encode as '_' in base64url and '/' in standard base64.
        let ones = rsa_with_modulus(&modulus_of_bits(2048));
        let mut standard = ones.clone();
        standard["n"] = json!(ones["n"].as_str().unwrap().replace('_', "/"));
        assert_ne!(standard["n"], ones["n"]);
        assert_eq!(skip_reason(standard), "n is not base64url");
        let mut numeric = good.clone();
        numeric["n"] = json!(12345);
        assert_eq!(skip_reason(numeric), "n is not a string");
        // An even modulus cannot be RSA.
        let mut even = modulus_of_bits(2048);
        *even.last_mut().unwrap() = 0xfe;
        assert!(skip_reason(rsa_with_modulus(&even)).starts_with("RSA key is not valid"));
    }

    // EC keys: only P-256 and P-384, exact coordinate sizes, points on the curve.
    #[test]
    fn ec_checks() {
        let p256 = ES256KeyPair::generate();
        let good = p256_jwk(&p256, json!({}));
        let with = |name: &str, value: Value| {
            let mut jwk = good.clone();
            jwk[name] = value;
            jwk
        };
        assert_eq!(
            skip_reason(with("crv", json!("secp256k1"))),
            "curve \"secp256k1\" is not supported"
        );
        assert_eq!(
            skip_reason(with("crv", json!("P-521"))),
            "curve \"P-521\" is not supported"
        );
        assert_eq!(skip_reason(with("crv", json!(256))), "crv is not a string");
        let mut no_crv = good.clone();
        no_crv.as_object_mut().unwrap().remove("crv");
        assert_eq!(skip_reason(no_crv), "crv is missing");
        let mut no_y = good.clone();
        no_y.as_object_mut().unwrap().remove("y");
        assert_eq!(skip_reason(no_y), "y is missing");
        // A P-256 point labelled P-384 has the wrong coordinate size.
        assert_eq!(
            skip_reason(with("crv", json!("P-384"))),
            "x and y must be 48 bytes each for P-384"
        );
        let mut x = decode_base64url(good["x"].as_str().unwrap()).unwrap();
        x.insert(0, 0);
        assert_eq!(
            skip_reason(with("x", json!(b64(&x)))),
            "x and y must be 32 bytes each for P-256"
        );
        // Flipping a bit of y moves the point off the curve.
        let mut y = decode_base64url(good["y"].as_str().unwrap()).unwrap();
        y[31] ^= 1;
        assert_eq!(
            skip_reason(with("y", json!(b64(&y)))),
            "point is not on P-256"
        );
        let p384 = p384_jwk(&ES384KeyPair::generate(), json!({}));
        let mut y = decode_base64url(p384["y"].as_str().unwrap()).unwrap();
        y[47] ^= 1;
        let mut off = p384.clone();
        off["y"] = json!(b64(&y));
        assert_eq!(skip_reason(off), "point is not on P-384");
    }

    // Loaded RSA and EC keys carry their DER SubjectPublicKeyInfo; Ed25519 keys have none.
    #[test]
    fn keys_carry_their_spki() {
        let rsa = single_key(rsa_jwk(RSA_A_PEM, json!({})));
        let expected = RS256KeyPair::from_pem(RSA_A_PEM)
            .unwrap()
            .public_key()
            .to_der()
            .unwrap();
        assert_eq!(rsa.spki_der, Some(expected));
        let p256 = ES256KeyPair::generate();
        let key = single_key(p256_jwk(&p256, json!({})));
        assert_eq!(key.spki_der, Some(p256.public_key().to_der().unwrap()));
        let p384 = ES384KeyPair::generate();
        let key = single_key(p384_jwk(&p384, json!({})));
        assert_eq!(key.spki_der, Some(p384.public_key().to_der().unwrap()));
        let ed = single_key(ed25519_jwk(&Ed25519KeyPair::generate(), json!({})));
        assert_eq!(ed.spki_der, None);
    }

    // OKP keys: only Ed25519 with a 32-byte, not small-order, public key.
    #[test]
    fn okp_checks() {
        let good = ed25519_jwk(&Ed25519KeyPair::generate(), json!({}));
        for crv in ["X25519", "Ed448"] {
            let mut jwk = good.clone();
            jwk["crv"] = json!(crv);
            assert_eq!(skip_reason(jwk), format!("curve {crv:?} is not supported"));
        }
        let mut short = good.clone();
        short["x"] = json!(b64(&[7; 31]));
        assert_eq!(skip_reason(short), "x must be 32 bytes for Ed25519");
        // The identity point has small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut weak = good.clone();
        weak["x"] = json!(b64(&identity));
        assert_eq!(skip_reason(weak), "not a valid Ed25519 public key");
    }
}
