//! Signing keys, their JWKS, and tokens with exactly the claims a test chooses.
//!
//! RSA keys come from `tests/fixtures/e2e/keys/*.pem` (generating them is slow); P-256 and
//! Ed25519 keys are generated on the spot.

use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::*;
use serde_json::{json, Map, Value};

/// Issuer of the default test provider.
pub const ISSUER: &str = "https://issuer.test";
/// Audience the default test provider accepts.
pub const AUDIENCE: &str = "kserve-client";

enum Signer {
    Rs256(RS256KeyPair),
    Ps256(PS256KeyPair),
    Es256(ES256KeyPair),
    EdDsa(Ed25519KeyPair),
}

/// A private key with its `kid`, able to sign tokens and publish itself as a JWK.
pub struct TestKey {
    /// The key id put in the JWK and in the tokens' header.
    pub kid: String,
    signer: Signer,
}

fn rsa_fixture_pem(fixture: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/e2e/keys")
        .join(format!("{fixture}.pem"));
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

impl TestKey {
    /// An RS256 key from the fixture `tests/fixtures/e2e/keys/<fixture>.pem`.
    pub fn rs256(fixture: &str, kid: &str) -> TestKey {
        let pair = RS256KeyPair::from_pem(&rsa_fixture_pem(fixture)).expect("RSA fixture");
        TestKey {
            kid: kid.to_string(),
            signer: Signer::Rs256(pair.with_key_id(kid)),
        }
    }

    /// A PS256 key from an RSA fixture.
    pub fn ps256(fixture: &str, kid: &str) -> TestKey {
        let pair = PS256KeyPair::from_pem(&rsa_fixture_pem(fixture)).expect("RSA fixture");
        TestKey {
            kid: kid.to_string(),
            signer: Signer::Ps256(pair.with_key_id(kid)),
        }
    }

    /// A fresh ES256 (P-256) key.
    pub fn es256(kid: &str) -> TestKey {
        TestKey {
            kid: kid.to_string(),
            signer: Signer::Es256(ES256KeyPair::generate().with_key_id(kid)),
        }
    }

    /// A fresh EdDSA (Ed25519) key.
    pub fn eddsa(kid: &str) -> TestKey {
        TestKey {
            kid: kid.to_string(),
            signer: Signer::EdDsa(Ed25519KeyPair::generate().with_key_id(kid)),
        }
    }

    /// The JWS `alg` this key signs with.
    pub fn alg(&self) -> &'static str {
        match self.signer {
            Signer::Rs256(_) => "RS256",
            Signer::Ps256(_) => "PS256",
            Signer::Es256(_) => "ES256",
            Signer::EdDsa(_) => "EdDSA",
        }
    }

    /// The public JWK (`kid`, `use: sig`, `alg`, and the key material in base64url).
    pub fn jwk(&self) -> Value {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let mut jwk = match &self.signer {
            Signer::Rs256(pair) => {
                let c = pair.public_key().to_components();
                json!({"kty": "RSA", "n": b64(&c.n), "e": b64(&c.e)})
            }
            Signer::Ps256(pair) => {
                let c = pair.public_key().to_components();
                json!({"kty": "RSA", "n": b64(&c.n), "e": b64(&c.e)})
            }
            Signer::Es256(pair) => {
                let point = pair.public_key().public_key().to_bytes_uncompressed();
                // SEC1 uncompressed: 0x04 || x (32 bytes) || y (32 bytes).
                assert_eq!(point.len(), 65, "P-256 uncompressed point");
                json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])})
            }
            Signer::EdDsa(pair) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&pair.public_key().to_bytes())})
            }
        };
        jwk["kid"] = json!(self.kid);
        jwk["use"] = json!("sig");
        jwk["alg"] = json!(self.alg());
        jwk
    }

    /// A token whose payload is exactly `claims` (a JSON object), signed by this key, with
    /// header `{"alg": ..., "typ": "JWT", "kid": ...}`.
    pub fn sign(&self, claims: &Value) -> String {
        let claims = exact_claims(claims.as_object().expect("claims must be a JSON object"));
        match &self.signer {
            Signer::Rs256(pair) => pair.sign(claims),
            Signer::Ps256(pair) => pair.sign(claims),
            Signer::Es256(pair) => pair.sign(claims),
            Signer::EdDsa(pair) => pair.sign(claims),
        }
        .expect("sign token")
    }

    /// The RSA public key as PEM text (what a key-confusion attacker uses as an HMAC secret).
    pub fn rsa_public_pem(&self) -> String {
        match &self.signer {
            Signer::Rs256(pair) => pair.public_key().to_pem(),
            Signer::Ps256(pair) => pair.public_key().to_pem(),
            _ => panic!("{} is not an RSA key", self.alg()),
        }
        .expect("public key PEM")
    }
}

/// A JWKS document holding these keys.
pub fn jwks(keys: &[&TestKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}).to_string()
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Claims the default provider accepts: its issuer and audience, `sub`, issued now, valid
/// for five minutes.
pub fn good_claims(sub: &str) -> Value {
    let now = now();
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 300})
}

/// A token from arbitrary header and payload JSON and a raw signature segment; nothing is
/// signed (for `alg: none` and other forgeries).
pub fn forged_token(header: &Value, claims: &Value, signature_segment: &str) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        signature_segment
    )
}

/// jwt-simple claims whose payload is exactly `claims`: every registered field left empty, so
/// nothing is added to or reordered in the map as given.
pub fn exact_claims(claims: &Map<String, Value>) -> JWTClaims<Map<String, Value>> {
    JWTClaims {
        issued_at: None,
        expires_at: None,
        invalid_before: None,
        issuer: None,
        subject: None,
        audiences: None,
        jwt_id: None,
        nonce: None,
        custom: claims.clone(),
    }
}

/// An HS256 token with `kid`, MACed with `secret`.
pub fn hs256_token(secret: &[u8], kid: &str, claims: &Value) -> String {
    let claims = exact_claims(claims.as_object().expect("claims object"));
    HS256Key::from_bytes(secret)
        .with_key_id(kid)
        .authenticate(claims)
        .expect("HS256 token")
}

/// The payload segment of a compact token, as sent.
pub fn payload_segment(token: &str) -> &str {
    token
        .split('.')
        .nth(1)
        .expect("token has a payload segment")
}

/// The signature segment of a compact token, as sent.
pub fn signature_segment(token: &str) -> &str {
    token
        .split('.')
        .nth(2)
        .expect("token has a signature segment")
}

/// The decoded header of a compact token.
pub fn header_json(token: &str) -> Value {
    let segment = token.split('.').next().expect("header segment");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).expect("base64url header"))
        .expect("header JSON")
}
