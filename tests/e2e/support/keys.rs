//! Signing keys, their JWKS, and tokens with exactly the claims a test chooses.
//!
//! RSA keys come from PEM fixtures (generating them is slow); P-256, P-384 and Ed25519 keys are
//! generated on the spot. The token surgery at the end changes one part of a signed token and
//! keeps the rest, for forgeries.

use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::*;
use kserve_auth_filter::jose::alg::Alg;
use serde_json::{json, Map, Value};

/// Issuer of the default test provider.
pub const ISSUER: &str = "https://issuer.test";
/// Audience the default test provider accepts.
pub const AUDIENCE: &str = "kserve-client";

/// The private half of a key. jwt-simple's key pairs are not `Clone` and fix their `kid` when
/// built, so the key is kept as PEM text or bytes and each signature builds a fresh pair.
#[derive(Clone)]
enum Private {
    /// PKCS#8 PEM text, and the RSA algorithm (RS* or PS*) it signs with.
    Rsa(Alg, String),
    P256(Vec<u8>),
    P384(Vec<u8>),
    Ed25519(Vec<u8>),
}

/// A private key with its `kid`, able to sign tokens and publish itself as a JWK.
#[derive(Clone)]
pub struct TestKey {
    /// The key id put in the JWK and in the tokens' header; empty for none.
    pub kid: String,
    private: Private,
}

fn rsa_fixture_pem(fixture: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/e2e/keys")
        .join(format!("{fixture}.pem"));
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn is_rsa(alg: Alg) -> bool {
    matches!(
        alg,
        Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512
    )
}

impl TestKey {
    /// An RS256 key from the fixture `tests/fixtures/e2e/keys/<fixture>.pem`.
    pub fn rs256(fixture: &str, kid: &str) -> TestKey {
        TestKey::rsa(Alg::RS256, &rsa_fixture_pem(fixture), kid)
    }

    /// A PS256 key from an RSA fixture.
    pub fn ps256(fixture: &str, kid: &str) -> TestKey {
        TestKey::rsa(Alg::PS256, &rsa_fixture_pem(fixture), kid)
    }

    /// An RSA key from PKCS#8 PEM text, signing with `alg` (RS256 to PS512).
    pub fn rsa(alg: Alg, pem: &str, kid: &str) -> TestKey {
        assert!(is_rsa(alg), "{} is not an RSA algorithm", alg.name());
        RS256KeyPair::from_pem(pem).expect("RSA private key PEM");
        TestKey {
            kid: kid.to_string(),
            private: Private::Rsa(alg, pem.to_string()),
        }
    }

    /// A fresh ES256 (P-256) key.
    pub fn es256(kid: &str) -> TestKey {
        TestKey {
            kid: kid.to_string(),
            private: Private::P256(ES256KeyPair::generate().to_bytes()),
        }
    }

    /// A fresh ES384 (P-384) key.
    pub fn es384(kid: &str) -> TestKey {
        TestKey {
            kid: kid.to_string(),
            private: Private::P384(ES384KeyPair::generate().to_bytes()),
        }
    }

    /// A fresh EdDSA (Ed25519) key.
    pub fn eddsa(kid: &str) -> TestKey {
        TestKey {
            kid: kid.to_string(),
            private: Private::Ed25519(Ed25519KeyPair::generate().to_bytes()),
        }
    }

    /// The same private key under another `kid`.
    pub fn with_kid(&self, kid: &str) -> TestKey {
        TestKey {
            kid: kid.to_string(),
            private: self.private.clone(),
        }
    }

    /// The same private key with no `kid`, in its tokens or its JWK.
    pub fn without_kid(&self) -> TestKey {
        self.with_kid("")
    }

    /// The same RSA key signing with another RSA algorithm.
    pub fn with_alg(&self, alg: Alg) -> TestKey {
        match &self.private {
            Private::Rsa(_, pem) => TestKey::rsa(alg, pem, &self.kid),
            _ => panic!("only an RSA key signs with more than one algorithm"),
        }
    }

    /// The JWS `alg` this key signs with.
    pub fn alg(&self) -> &'static str {
        match &self.private {
            Private::Rsa(alg, _) => alg.name(),
            Private::P256(_) => "ES256",
            Private::P384(_) => "ES384",
            Private::Ed25519(_) => "EdDSA",
        }
    }

    /// The public JWK with `kid` (unless empty) and the key material in base64url only: no
    /// `use`, and no `alg`, so every algorithm of the key's type may use it.
    pub fn public_jwk(&self) -> Value {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        // SEC1 uncompressed: 0x04 || x || y, both of the curve's size.
        let ec = |crv: &str, point: Vec<u8>| {
            let size = (point.len() - 1) / 2;
            json!({"kty": "EC", "crv": crv, "x": b64(&point[1..=size]), "y": b64(&point[size + 1..])})
        };
        let mut jwk = match &self.private {
            Private::Rsa(_, pem) => {
                let c = RS256KeyPair::from_pem(pem)
                    .expect("RSA key")
                    .public_key()
                    .to_components();
                json!({"kty": "RSA", "n": b64(&c.n), "e": b64(&c.e)})
            }
            Private::P256(bytes) => ec(
                "P-256",
                ES256KeyPair::from_bytes(bytes)
                    .expect("P-256 key")
                    .public_key()
                    .public_key()
                    .to_bytes_uncompressed(),
            ),
            Private::P384(bytes) => ec(
                "P-384",
                ES384KeyPair::from_bytes(bytes)
                    .expect("P-384 key")
                    .public_key()
                    .public_key()
                    .to_bytes_uncompressed(),
            ),
            Private::Ed25519(bytes) => {
                let pair = Ed25519KeyPair::from_bytes(bytes).expect("Ed25519 key");
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&pair.public_key().to_bytes())})
            }
        };
        if !self.kid.is_empty() {
            jwk["kid"] = json!(self.kid);
        }
        jwk
    }

    /// The public JWK (`kid`, `use: sig`, `alg`, and the key material in base64url).
    pub fn jwk(&self) -> Value {
        let mut jwk = self.public_jwk();
        jwk["use"] = json!("sig");
        jwk["alg"] = json!(self.alg());
        jwk
    }

    /// A token whose payload is exactly `claims` (a JSON object), signed by this key, with
    /// header `{"alg": ..., "typ": "JWT", "kid": ...}` (no `kid` when it is empty).
    pub fn sign(&self, claims: &Value) -> String {
        let claims = exact_claims(claims.as_object().expect("claims must be a JSON object"));
        macro_rules! signed {
            ($pair:expr) => {{
                let pair = $pair;
                if self.kid.is_empty() {
                    pair
                } else {
                    pair.with_key_id(&self.kid)
                }
                .sign(claims)
            }};
        }
        match &self.private {
            Private::Rsa(Alg::RS256, pem) => signed!(RS256KeyPair::from_pem(pem).expect("RSA")),
            Private::Rsa(Alg::RS384, pem) => signed!(RS384KeyPair::from_pem(pem).expect("RSA")),
            Private::Rsa(Alg::RS512, pem) => signed!(RS512KeyPair::from_pem(pem).expect("RSA")),
            Private::Rsa(Alg::PS256, pem) => signed!(PS256KeyPair::from_pem(pem).expect("RSA")),
            Private::Rsa(Alg::PS384, pem) => signed!(PS384KeyPair::from_pem(pem).expect("RSA")),
            Private::Rsa(Alg::PS512, pem) => signed!(PS512KeyPair::from_pem(pem).expect("RSA")),
            Private::Rsa(alg, _) => panic!("{} is not an RSA algorithm", alg.name()),
            Private::P256(bytes) => signed!(ES256KeyPair::from_bytes(bytes).expect("P-256")),
            Private::P384(bytes) => signed!(ES384KeyPair::from_bytes(bytes).expect("P-384")),
            Private::Ed25519(bytes) => signed!(Ed25519KeyPair::from_bytes(bytes).expect("Ed25519")),
        }
        .expect("sign token")
    }

    /// A JWS over exactly this header and these claims (both serialized as given), signed by
    /// this key with its algorithm (RS256 for RSA keys): for DPoP proofs, whose header carries a
    /// `jwk` jwt-simple cannot add.
    pub fn sign_jws(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = match &self.private {
            Private::Rsa(Alg::RS256, pem) => {
                super::raw_rsa::RawRsaKey::from_pkcs8_pem(pem).sign_rs256(input.as_bytes())
            }
            Private::P256(bytes) => {
                use p256::ecdsa::signature::Signer;
                let key = p256::ecdsa::SigningKey::from_slice(bytes).expect("P-256 scalar");
                let signature: p256::ecdsa::Signature = key.sign(input.as_bytes());
                signature.to_bytes().to_vec()
            }
            Private::Ed25519(bytes) => ed25519_compact::KeyPair::from_slice(bytes)
                .expect("Ed25519 key")
                .sk
                .sign(input.as_bytes(), None)
                .to_vec(),
            _ => panic!(
                "sign_jws supports RS256, ES256 and EdDSA keys, not {}",
                self.alg()
            ),
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// The RSA public key as PEM text (what a key-confusion attacker uses as an HMAC secret).
    pub fn rsa_public_pem(&self) -> String {
        match &self.private {
            Private::Rsa(_, pem) => RS256KeyPair::from_pem(pem)
                .expect("RSA key")
                .public_key()
                .to_pem()
                .expect("public key PEM"),
            _ => panic!("{} is not an RSA key", self.alg()),
        }
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

fn segments(token: &str) -> [&str; 3] {
    let mut parts = token.split('.');
    let mut next = || parts.next().expect("a compact token has three segments");
    [next(), next(), next()]
}

/// The decoded signature of a compact token.
pub fn signature_bytes(token: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(segments(token)[2])
        .expect("base64url signature")
}

/// The token with its signature segment replaced by the encoding of `signature`.
pub fn with_signature(token: &str, signature: &[u8]) -> String {
    let [header, payload, _] = segments(token);
    format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// The token with its signature bytes changed by `change`.
pub fn with_altered_signature(token: &str, change: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut signature = signature_bytes(token);
    change(&mut signature);
    with_signature(token, &signature)
}

/// The token with its header replaced by `header` (JSON text); the old signature is kept.
pub fn with_header(token: &str, header: &str) -> String {
    let [_, payload, signature] = segments(token);
    format!("{}.{payload}.{signature}", URL_SAFE_NO_PAD.encode(header))
}

/// The token with its payload replaced by `payload` (JSON text); the old signature is kept.
pub fn with_payload(token: &str, payload: &str) -> String {
    let [header, _, signature] = segments(token);
    format!("{header}.{}.{signature}", URL_SAFE_NO_PAD.encode(payload))
}
