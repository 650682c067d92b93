//! Differential test against Envoy's native `jwt_authn`: one Envoy, two listeners, the same
//! provider (issuer, audience, inline JWKS, 60 s clock skew, `forward: false`) behind the filter
//! on one and behind `envoy.filters.http.jwt_authn` on the other. Every token of a generated
//! corpus (valid tokens of every algorithm and each mutation class: signature, header, claims,
//! times, encoding, size, keys) must get the same verdict from both, except the deliberate
//! differences in [`DIFFERENCES`], which are asserted as such: if either side changes, this
//! test fails. The differences are documented in `docs/differences-from-jwt_authn.md`. The same
//! corpus also checks that `kserve-auth explain` gives each token the status the filter in
//! Envoy gave it.
//!
//! Needs `ENVOY_BIN` and `FILTER_WASM` (set by `make test`); without them it uses
//! `.venv/envoy/bin/envoy` and the release build of the plugin (and `KSERVE_AUTH_BIN`, else the
//! release build of `kserve-auth`). `KSERVE_DIFF_DUMP=1` (with
//! `--nocapture`) prints both answers for every token.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::ecdsa::{ecdsa_der, hex, subtract, P256_ORDER, P384_ORDER};
use kserve_auth_filter::jose::alg::Alg;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::cli::kserve_auth_bin;
use crate::support::demo::Scratch;
use crate::support::envoy::{bootstrap_with_listeners, direct_response_listener, WasmFilter};
use crate::support::http;
use crate::support::keys::{
    now, signature_bytes, with_altered_signature, with_header, with_payload, with_signature,
};
use crate::support::raw_rsa::RawRsaKey;
use crate::support::Envoy;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jwt_simple::prelude::*;
use serde_json::{json, Map, Value};

const RSA_A_PEM: &str = include_str!("../fixtures/keys/rsa-2048-a.pem");
const RSA_B_PEM: &str = include_str!("../fixtures/keys/rsa-2048-b.pem");
const RSA_3072_PEM: &str = include_str!("../fixtures/keys/rsa-3072.pem");
const RSA_WEAK_PEM: &str = include_str!("../fixtures/keys/rsa-1024-weak.pem");
/// Not in the key set: signs forgeries under trusted `kid`s.
const RSA_IMPOSTOR_PEM: &str = include_str!("../fixtures/e2e/keys/rsa-c.pem");

const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "kserve";
const PROVIDER: &str = "test";
const PATH: &str = "/v1/models/m:predict";

/// What a listener did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Allow,
    Deny,
}
use Verdict::{Allow, Deny};

/// A deliberate difference: every variant of corpus case `id` gets `ours` from the filter and
/// `theirs` from jwt_authn, for `reason`.
struct Difference {
    id: &'static str,
    ours: Verdict,
    theirs: Verdict,
    reason: &'static str,
}

const fn differs(
    id: &'static str,
    ours: Verdict,
    theirs: Verdict,
    reason: &'static str,
) -> Difference {
    Difference {
        id,
        ours,
        theirs,
        reason,
    }
}

/// Every case on which the filter and jwt_authn disagree, on purpose.
const DIFFERENCES: &[Difference] = &[
    differs(
        "sig/ecdsa-one-extra-byte",
        Deny,
        Allow,
        "an ES256/ES384 signature is exactly 64/96 bytes (RFC 7518 §3.4); jwt_authn also accepts it with one extra trailing byte (not two), so one token has several accepted spellings",
    ),
    differs(
        "header/typ-not-string",
        Deny,
        Allow,
        "typ must be JWT or a media type ending in +jwt (RFC 8725 §3.11), so that other JOSE objects are not taken for access tokens",
    ),
    differs(
        "header/typ-other",
        Deny,
        Allow,
        "typ must be JWT or a media type ending in +jwt (RFC 8725 §3.11), so that other JOSE objects are not taken for access tokens",
    ),
    differs(
        "header/crit",
        Deny,
        Allow,
        "the filter understands no JWS extension, and RFC 7515 §4.1.11 requires refusing a token whose crit names one it does not understand; jwt_authn ignores crit",
    ),
    differs(
        "header/crit-empty",
        Deny,
        Allow,
        "RFC 7515 §4.1.11 forbids an empty crit list; a token that breaks the rule is refused, not repaired",
    ),
    differs(
        "header/b64-false",
        Deny,
        Allow,
        "b64: false (RFC 7797) changes what the signature covers; only the default encoding is accepted, jwt_authn ignores the member",
    ),
    differs(
        "header/jwk-embedded",
        Deny,
        Allow,
        "a jwk header member that is a JSON object is refused: keys never come from the token, and jwt-simple (which checks PS256/384/512 and EdDSA) cannot read such a header, so both signature paths refuse it alike",
    ),
    differs(
        "header/cty-nested",
        Deny,
        Allow,
        "cty: JWT announces a nested token whose inner claims are the ones that count; the filter does not unwrap nested tokens, so it refuses rather than authorize on the outer claims",
    ),
    differs(
        "claims/exp-missing",
        Deny,
        Allow,
        "require_expiration defaults to true: a token without exp would be valid forever (jwt_authn's require_expiration defaults to false)",
    ),
    differs(
        "claims/exp-zero",
        Deny,
        Allow,
        "exp: 0 is 1970-01-01, long expired; jwt_authn accepts it like a missing exp",
    ),
    differs(
        "claims/iat-future-beyond-skew",
        Deny,
        Allow,
        "a token issued more than the clock skew in the future comes from a broken issuer clock or was minted ahead of use; jwt_authn does not check iat",
    ),
    differs(
        "encoding/padding",
        Deny,
        Allow,
        "JWS segments are base64url without padding (RFC 7515 §2); only the canonical encoding is accepted, so one token has one spelling",
    ),
    differs(
        "encoding/empty-segment",
        Deny,
        Allow,
        "the compact serialization has exactly two dots; jwt_authn skips empty segments when it splits the token",
    ),
    differs(
        "size/over-8-KiB",
        Deny,
        Allow,
        "tokens over 8 KiB are refused before any decoding, bounding the work an unauthenticated request can cause",
    ),
    differs(
        "keys/weak-rsa-1024",
        Deny,
        Allow,
        "RSA keys under 2048 bits are skipped when the key set loads (NIST SP 800-131A); jwt_authn uses them",
    ),
    differs(
        "keys/use-enc",
        Deny,
        Allow,
        "a key published with use: enc is for encryption only (RFC 7517 §4.2) and is skipped; jwt_authn verifies with it",
    ),
    differs(
        "encoding/comma-list-element",
        Allow,
        Deny,
        "Envoy joins repeated Authorization headers with commas, so the filter reads the header as a list (RFC 9110 §5.6.1): `Bearer <jwt>, x` is the token and another element; jwt_authn takes `<jwt>, x` for the token",
    ),
    differs(
        "keys/no-kid-key-after-ed25519-key",
        Allow,
        Deny,
        "for a token without kid the filter tries every key that fits its alg; jwt_authn gives up at an Ed25519 key listed before the right one ('Jwt ED25519 signature is wrong length')",
    ),
];

/// Cases jwt_authn denies with a status other than 401 (the filter always uses 401 or 400).
const JWT_AUTHN_STATUS: &[(&str, u16)] = &[
    ("claims/aud-wrong", 403),
    ("claims/aud-array-without-match", 403),
    ("claims/aud-empty-array", 403),
    ("claims/aud-missing", 403),
];

/// Cases the filter denies with 400 `invalid_request` (the request, not the token, is malformed).
const OUR_400: &[&str] = &["encoding/empty-token"];

// ---------------------------------------------------------------------------------------------
// Keys

/// Signature algorithms both sides support: all of the filter's.
const ALL_ALGS: [Alg; 9] = Alg::ALL;

/// The `kid` of the trusted key that signs `alg`.
fn kid_for(alg: Alg) -> &'static str {
    match alg {
        Alg::ES256 => "ec256",
        Alg::ES384 => "ec384",
        Alg::EdDSA => "ed",
        _ => "rsa-a",
    }
}

/// Private halves of the published keys, and impostors of each type.
struct Keys {
    p256: Vec<u8>,
    p384: Vec<u8>,
    ed25519: Vec<u8>,
    p256_impostor: Vec<u8>,
    p384_impostor: Vec<u8>,
    ed25519_impostor: Vec<u8>,
    /// `rsa-a` again, for signatures over hand-written header and payload text.
    raw_rsa_a: RawRsaKey,
    raw_weak: RawRsaKey,
}

/// Which private key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signer {
    /// The trusted key for the algorithm.
    Trusted,
    /// A key of the same type that is not in the key set.
    Impostor,
    /// `rsa-3072`, published with `"alg": "RS256"`.
    Pinned,
    /// `rsa-2048-b`, published with `"use": "enc"`.
    Encryption,
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Keys {
    fn new() -> Keys {
        Keys {
            p256: ES256KeyPair::generate().to_bytes(),
            p384: ES384KeyPair::generate().to_bytes(),
            ed25519: Ed25519KeyPair::generate().to_bytes(),
            p256_impostor: ES256KeyPair::generate().to_bytes(),
            p384_impostor: ES384KeyPair::generate().to_bytes(),
            ed25519_impostor: Ed25519KeyPair::generate().to_bytes(),
            raw_rsa_a: RawRsaKey::from_pkcs8_pem(RSA_A_PEM),
            raw_weak: RawRsaKey::from_pkcs8_pem(RSA_WEAK_PEM),
        }
    }

    /// The JWKS both listeners trust, in this order: `rsa-a` (no `alg`), the 1024-bit
    /// `rsa-weak`, `rsa-enc` (`use: enc`), `ec256`, `ec384`, `ed`, and `rsa-rs256` (3072 bits,
    /// `alg` RS256) after the Ed25519 key.
    fn jwks(&self) -> String {
        let rsa = |pem: &str, kid: &str| {
            let mut jwk = RawRsaKey::from_pkcs8_pem(pem).public_jwk();
            jwk["kid"] = json!(kid);
            jwk
        };
        let ec = |point: Vec<u8>, crv: &str, kid: &str| {
            let size = (point.len() - 1) / 2;
            json!({"kty": "EC", "crv": crv, "kid": kid,
                   "x": b64(&point[1..=size]), "y": b64(&point[size + 1..])})
        };
        let mut pinned = rsa(RSA_3072_PEM, "rsa-rs256");
        pinned["alg"] = json!("RS256");
        pinned["use"] = json!("sig");
        let mut enc = rsa(RSA_B_PEM, "rsa-enc");
        enc["use"] = json!("enc");
        let mut weak = self.raw_weak.public_jwk();
        weak["kid"] = json!("rsa-weak");
        json!({"keys": [
            rsa(RSA_A_PEM, "rsa-a"),
            weak,
            enc,
            ec(ES256KeyPair::from_bytes(&self.p256).unwrap().public_key().public_key().to_bytes_uncompressed(), "P-256", "ec256"),
            ec(ES384KeyPair::from_bytes(&self.p384).unwrap().public_key().public_key().to_bytes_uncompressed(), "P-384", "ec384"),
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed",
             "x": b64(Ed25519KeyPair::from_bytes(&self.ed25519).unwrap().public_key().to_bytes())},
            pinned,
        ]})
        .to_string()
    }

    /// A token over exactly `claims`, signed by jwt-simple; header `{"alg", "typ", "kid"?, "cty"?}`.
    fn sign(
        &self,
        alg: Alg,
        signer: Signer,
        kid: Option<&str>,
        claims: &Map<String, Value>,
        options: &HeaderOptions,
    ) -> String {
        let claims = crate::support::keys::exact_claims(claims);
        let rsa_pem = match signer {
            Signer::Trusted => RSA_A_PEM,
            Signer::Impostor => RSA_IMPOSTOR_PEM,
            Signer::Pinned => RSA_3072_PEM,
            Signer::Encryption => RSA_B_PEM,
        };
        let impostor = signer == Signer::Impostor;
        macro_rules! with_kid {
            ($pair:expr) => {{
                let pair = $pair;
                match kid {
                    Some(kid) => pair.with_key_id(kid),
                    None => pair,
                }
                .sign_with_options(claims, options)
                .unwrap()
            }};
        }
        match alg {
            Alg::RS256 => with_kid!(RS256KeyPair::from_pem(rsa_pem).unwrap()),
            Alg::RS384 => with_kid!(RS384KeyPair::from_pem(rsa_pem).unwrap()),
            Alg::RS512 => with_kid!(RS512KeyPair::from_pem(rsa_pem).unwrap()),
            Alg::PS256 => with_kid!(PS256KeyPair::from_pem(rsa_pem).unwrap()),
            Alg::PS384 => with_kid!(PS384KeyPair::from_pem(rsa_pem).unwrap()),
            Alg::PS512 => with_kid!(PS512KeyPair::from_pem(rsa_pem).unwrap()),
            Alg::ES256 => with_kid!(ES256KeyPair::from_bytes(if impostor {
                &self.p256_impostor
            } else {
                &self.p256
            })
            .unwrap()),
            Alg::ES384 => with_kid!(ES384KeyPair::from_bytes(if impostor {
                &self.p384_impostor
            } else {
                &self.p384
            })
            .unwrap()),
            Alg::EdDSA => with_kid!(Ed25519KeyPair::from_bytes(if impostor {
                &self.ed25519_impostor
            } else {
                &self.ed25519
            })
            .unwrap()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Token surgery

fn segments(token: &str) -> Vec<&str> {
    token.split('.').collect()
}

/// An RS256 token signed by `key` over the given segment texts exactly as given.
fn raw_signed(key: &RawRsaKey, header_segment: &str, payload_segment: &str) -> String {
    let input = format!("{header_segment}.{payload_segment}");
    format!("{input}.{}", b64(key.sign_rs256(input.as_bytes())))
}

/// Claims both sides accept: issuer, audience, issued now, valid five minutes, unique `jti`.
fn good_claims(now: i64, jti: &str) -> Map<String, Value> {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300, "jti": jti})
        .as_object()
        .unwrap()
        .clone()
}

/// `good_claims` serialized by hand, for raw-signed tokens (`extra` is spliced before `}`).
fn good_payload_text(now: i64, jti: &str, extra: &str) -> String {
    format!(
        r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","sub":"alice","iat":{now},"exp":{},"jti":"{jti}"{extra}}}"#,
        now + 300
    )
}

// ---------------------------------------------------------------------------------------------
// Corpus

/// One token of the corpus. `id` names the mutation (the key of [`DIFFERENCES`]); `variant`
/// tells apart the algorithms the same mutation is applied to.
struct Case {
    id: &'static str,
    variant: String,
    /// The `Authorization` header value.
    authorization: String,
}

impl Case {
    fn name(&self) -> String {
        if self.variant.is_empty() {
            self.id.to_string()
        } else {
            format!("{} [{}]", self.id, self.variant)
        }
    }
}

struct Corpus {
    cases: Vec<Case>,
}

impl Corpus {
    fn add(&mut self, id: &'static str, variant: impl Into<String>, token: String) {
        self.cases.push(Case {
            id,
            variant: variant.into(),
            authorization: format!("Bearer {token}"),
        });
    }

    fn add_header(&mut self, id: &'static str, authorization: String) {
        self.cases.push(Case {
            id,
            variant: String::new(),
            authorization,
        });
    }
}

fn corpus(keys: &Keys) -> Vec<Case> {
    let now = now();
    let mut corpus = Corpus { cases: Vec::new() };
    let mut serial = 0u32;
    let mut jti = || {
        serial += 1;
        format!("t{serial}")
    };
    let plain = HeaderOptions::default();
    let sign = |alg: Alg, jti: String| {
        keys.sign(
            alg,
            Signer::Trusted,
            Some(kid_for(alg)),
            &good_claims(now, &jti),
            &plain,
        )
    };

    // --- valid tokens of every algorithm, with and without kid
    for alg in ALL_ALGS {
        corpus.add("valid", alg.name(), sign(alg, jti()));
        let token = keys.sign(
            alg,
            Signer::Trusted,
            None,
            &good_claims(now, &jti()),
            &plain,
        );
        corpus.add("valid/no-kid", alg.name(), token);
    }
    corpus.add(
        "valid/3072-bit-key-pinned-to-RS256",
        "",
        keys.sign(
            Alg::RS256,
            Signer::Pinned,
            Some("rsa-rs256"),
            &good_claims(now, &jti()),
            &plain,
        ),
    );
    corpus.add(
        "valid/extra-claims",
        "",
        keys.sign(
            Alg::ES256,
            Signer::Trusted,
            Some("ec256"),
            &{
                let mut claims = good_claims(now, &jti());
                claims.insert("realm_access".into(), json!({"roles": ["a", "b"]}));
                claims.insert("scope".into(), json!("openid profile"));
                claims.insert("n".into(), json!(1.5));
                claims
            },
            &plain,
        ),
    );
    corpus.add(
        "valid/raw-signer-standard-header",
        "",
        raw_signed(
            &keys.raw_rsa_a,
            &b64(r#"{"alg":"RS256","typ":"JWT","kid":"rsa-a"}"#),
            &b64(good_payload_text(now, &jti(), "")),
        ),
    );

    // --- signature mutations, for every algorithm
    for alg in ALL_ALGS {
        let v = alg.name();
        let token = sign(alg, jti());
        corpus.add(
            "sig/first-bit-flipped",
            v,
            with_altered_signature(&token, |s| s[0] ^= 0x01),
        );
        corpus.add(
            "sig/last-bit-flipped",
            v,
            with_altered_signature(&token, |s| *s.last_mut().unwrap() ^= 0x80),
        );
        corpus.add(
            "sig/truncated",
            v,
            with_altered_signature(&token, |s| {
                s.pop();
            }),
        );
        let extended = if matches!(alg, Alg::ES256 | Alg::ES384) {
            "sig/ecdsa-one-extra-byte"
        } else {
            "sig/extended"
        };
        corpus.add(extended, v, with_altered_signature(&token, |s| s.push(0)));
        corpus.add(
            "sig/all-zero",
            v,
            with_altered_signature(&token, |s| s.fill(0)),
        );
        corpus.add("sig/empty", v, with_signature(&token, &[]));
        let impostor = keys.sign(
            alg,
            Signer::Impostor,
            Some(kid_for(alg)),
            &good_claims(now, &jti()),
            &plain,
        );
        corpus.add("sig/other-key", v, impostor);
        let other = sign(alg, jti());
        corpus.add(
            "sig/from-other-token",
            v,
            with_signature(&token, &signature_bytes(&other)),
        );
        corpus.add(
            "sig/payload-changed",
            v,
            with_payload(&token, &good_payload_text(now, "changed", "")),
        );
    }
    for alg in [Alg::ES256, Alg::ES384] {
        let v = alg.name();
        let token = sign(alg, jti());
        let half = signature_bytes(&token).len() / 2;
        corpus.add(
            "sig/ecdsa-r-zero",
            v,
            with_altered_signature(&token, |s| s[..half].fill(0)),
        );
        corpus.add(
            "sig/ecdsa-s-zero",
            v,
            with_altered_signature(&token, |s| s[half..].fill(0)),
        );
        corpus.add(
            "sig/ecdsa-swapped",
            v,
            with_altered_signature(&token, |s| s.rotate_left(half)),
        );
        corpus.add(
            "sig/ecdsa-one-extra-byte",
            format!("{v}, 0xff"),
            with_altered_signature(&token, |s| s.push(0xff)),
        );
        corpus.add(
            "sig/ecdsa-two-extra-bytes",
            v,
            with_altered_signature(&token, |s| s.extend([0xff, 0xff])),
        );
        corpus.add(
            "sig/ecdsa-der",
            v,
            with_signature(&token, &ecdsa_der(&signature_bytes(&token))),
        );
        let order = if alg == Alg::ES256 {
            P256_ORDER
        } else {
            P384_ORDER
        };
        corpus.add(
            "valid/ecdsa-high-s",
            v,
            with_altered_signature(&token, |s| {
                let high = subtract(&hex(order), &s[half..]);
                s[half..].copy_from_slice(&high);
            }),
        );
    }
    {
        let rs256 = sign(Alg::RS256, jti());
        corpus.add(
            "sig/relabelled",
            "RS256 as RS384",
            with_header(&rs256, r#"{"alg":"RS384","typ":"JWT","kid":"rsa-a"}"#),
        );
        let ps256 = sign(Alg::PS256, jti());
        corpus.add(
            "sig/relabelled",
            "PS256 as RS256",
            with_header(&ps256, r#"{"alg":"RS256","typ":"JWT","kid":"rsa-a"}"#),
        );
        let es256 = sign(Alg::ES256, jti());
        corpus.add(
            "sig/relabelled",
            "ES256 as ES384",
            with_header(&es256, r#"{"alg":"ES384","typ":"JWT","kid":"ec384"}"#),
        );
    }

    // --- header mutations
    {
        let rs256 = sign(Alg::RS256, jti());
        let payload = segments(&rs256)[1].to_string();
        let sig = segments(&rs256)[2].to_string();
        let forged =
            |header: &str, signature: &str| format!("{}.{payload}.{signature}", b64(header));
        corpus.add(
            "header/alg-none",
            "empty signature",
            forged(r#"{"alg":"none","typ":"JWT"}"#, ""),
        );
        corpus.add(
            "header/alg-none",
            "RS256 signature kept",
            forged(r#"{"alg":"none","typ":"JWT","kid":"rsa-a"}"#, &sig),
        );
        corpus.add(
            "header/alg-none",
            "None",
            forged(r#"{"alg":"None","typ":"JWT"}"#, ""),
        );
        corpus.add(
            "header/alg-missing",
            "",
            forged(r#"{"typ":"JWT","kid":"rsa-a"}"#, &sig),
        );
        corpus.add(
            "header/alg-not-string",
            "",
            forged(r#"{"alg":256,"typ":"JWT","kid":"rsa-a"}"#, &sig),
        );
        corpus.add(
            "header/alg-unknown",
            "XY256",
            forged(r#"{"alg":"XY256","kid":"rsa-a"}"#, &sig),
        );
        corpus.add(
            "header/alg-unknown",
            "rs256",
            forged(r#"{"alg":"rs256","kid":"rsa-a"}"#, &sig),
        );
        corpus.add(
            "header/alg-unknown",
            "ES512",
            forged(r#"{"alg":"ES512","kid":"ec256"}"#, &sig),
        );
        corpus.add(
            "header/alg-unknown",
            "empty",
            forged(r#"{"alg":"","kid":"rsa-a"}"#, &sig),
        );

        // HMAC with the RSA public key as the secret (key confusion), with and without kid.
        let rsa_public_pem = RS256KeyPair::from_pem(RSA_A_PEM)
            .unwrap()
            .public_key()
            .to_pem()
            .unwrap();
        let rsa_public_der = RS256KeyPair::from_pem(RSA_A_PEM)
            .unwrap()
            .public_key()
            .to_der()
            .unwrap();
        let hs = |secret: &[u8], kid: Option<&str>| {
            let key = HS256Key::from_bytes(secret);
            let key = match kid {
                Some(kid) => key.with_key_id(kid),
                None => key,
            };
            key.authenticate(crate::support::keys::exact_claims(&good_claims(now, "hs")))
                .unwrap()
        };
        corpus.add(
            "header/alg-hs256-rsa-key-as-secret",
            "PEM, kid",
            hs(rsa_public_pem.as_bytes(), Some("rsa-a")),
        );
        corpus.add(
            "header/alg-hs256-rsa-key-as-secret",
            "PEM, no kid",
            hs(rsa_public_pem.as_bytes(), None),
        );
        corpus.add(
            "header/alg-hs256-rsa-key-as-secret",
            "DER, kid",
            hs(&rsa_public_der, Some("rsa-a")),
        );
        corpus.add(
            "header/alg-hs256-rsa-key-as-secret",
            "n, kid",
            hs(&keys.raw_rsa_a.n, Some("rsa-a")),
        );

        // alg that does not fit the key type.
        let es256 = sign(Alg::ES256, jti());
        corpus.add(
            "header/alg-key-type-mismatch",
            "ES256 signature, RS256 header, RSA kid",
            with_header(&es256, r#"{"alg":"RS256","typ":"JWT","kid":"rsa-a"}"#),
        );
        corpus.add(
            "header/alg-key-type-mismatch",
            "RS256 signature, ES256 header, RSA kid",
            with_header(&rs256, r#"{"alg":"ES256","typ":"JWT","kid":"rsa-a"}"#),
        );
        let eddsa = sign(Alg::EdDSA, jti());
        corpus.add(
            "header/alg-key-type-mismatch",
            "EdDSA signature, ES256 header, Ed25519 kid",
            with_header(&eddsa, r#"{"alg":"ES256","typ":"JWT","kid":"ed"}"#),
        );
        corpus.add(
            "header/alg-key-type-mismatch",
            "RS384 by the key pinned to RS256",
            keys.sign(
                Alg::RS384,
                Signer::Pinned,
                Some("rsa-rs256"),
                &good_claims(now, &jti()),
                &plain,
            ),
        );
        corpus.add(
            "header/alg-key-type-mismatch",
            "PS256 by the key pinned to RS256",
            keys.sign(
                Alg::PS256,
                Signer::Pinned,
                Some("rsa-rs256"),
                &good_claims(now, &jti()),
                &plain,
            ),
        );

        // kid
        corpus.add(
            "header/kid-unknown",
            "RS256",
            keys.sign(
                Alg::RS256,
                Signer::Trusted,
                Some("nope"),
                &good_claims(now, &jti()),
                &plain,
            ),
        );
        corpus.add(
            "header/kid-unknown",
            "ES256",
            keys.sign(
                Alg::ES256,
                Signer::Trusted,
                Some("nope"),
                &good_claims(now, &jti()),
                &plain,
            ),
        );
        corpus.add(
            "header/kid-other-key-type",
            "RS256 naming ec256",
            keys.sign(
                Alg::RS256,
                Signer::Trusted,
                Some("ec256"),
                &good_claims(now, &jti()),
                &plain,
            ),
        );
        corpus.add(
            "header/kid-other-key-type",
            "ES256 naming rsa-a",
            keys.sign(
                Alg::ES256,
                Signer::Trusted,
                Some("rsa-a"),
                &good_claims(now, &jti()),
                &plain,
            ),
        );
        corpus.add(
            "header/kid-other-key-type",
            "ES256 naming ec384",
            keys.sign(
                Alg::ES256,
                Signer::Trusted,
                Some("ec384"),
                &good_claims(now, &jti()),
                &plain,
            ),
        );
        corpus.add(
            "header/kid-other-key-type",
            "EdDSA naming ec256",
            keys.sign(
                Alg::EdDSA,
                Signer::Trusted,
                Some("ec256"),
                &good_claims(now, &jti()),
                &plain,
            ),
        );
        corpus.add(
            "header/kid-other-key-type",
            "RS256 naming ed",
            keys.sign(
                Alg::RS256,
                Signer::Trusted,
                Some("ed"),
                &good_claims(now, &jti()),
                &plain,
            ),
        );

        // Signed headers of hand-written text.
        let payload_text = good_payload_text(now, &jti(), "");
        let raw = |header: &str| raw_signed(&keys.raw_rsa_a, &b64(header), &b64(&payload_text));
        corpus.add(
            "header/kid-not-string",
            "",
            raw(r#"{"alg":"RS256","kid":7}"#),
        );
        corpus.add(
            "header/typ-absent",
            "",
            raw(r#"{"alg":"RS256","kid":"rsa-a"}"#),
        );
        corpus.add(
            "header/typ-not-string",
            "",
            raw(r#"{"alg":"RS256","typ":1,"kid":"rsa-a"}"#),
        );
        corpus.add(
            "header/extra-member",
            "",
            raw(r#"{"alg":"RS256","kid":"rsa-a","x-custom":{"a":[1,2]}}"#),
        );
        corpus.add(
            "header/crit",
            "exp",
            raw(r#"{"alg":"RS256","kid":"rsa-a","crit":["exp"],"exp":1}"#),
        );
        corpus.add(
            "header/crit",
            "unknown extension",
            raw(r#"{"alg":"RS256","kid":"rsa-a","crit":["urn:x"],"urn:x":true}"#),
        );
        corpus.add(
            "header/crit-empty",
            "",
            raw(r#"{"alg":"RS256","kid":"rsa-a","crit":[]}"#),
        );
        corpus.add(
            "header/b64-false",
            "",
            raw(r#"{"alg":"RS256","kid":"rsa-a","b64":false,"crit":["b64"]}"#),
        );
        corpus.add(
            "header/jku",
            "",
            raw(r#"{"alg":"RS256","kid":"rsa-a","jku":"https://attacker.test/jwks"}"#),
        );
        corpus.add(
            "header/x5u",
            "",
            raw(r#"{"alg":"RS256","kid":"rsa-a","x5u":"https://attacker.test/cert"}"#),
        );
        let mut own_jwk = keys.raw_rsa_a.public_jwk();
        own_jwk["kid"] = json!("rsa-a");
        corpus.add(
            "header/jwk-embedded",
            "the trusted key itself",
            raw(&json!({"alg": "RS256", "kid": "rsa-a", "jwk": own_jwk}).to_string()),
        );
        let impostor = RawRsaKey::from_pkcs8_pem(RSA_IMPOSTOR_PEM);
        for (variant, kid) in [
            ("impostor key, trusted kid", Some("rsa-a")),
            ("impostor key, no kid", None),
        ] {
            let mut header = json!({"alg": "RS256", "jwk": impostor.public_jwk()});
            if let Some(kid) = kid {
                header["kid"] = json!(kid);
            }
            corpus.add(
                "header/jwk-embedded-forgery",
                variant,
                raw_signed(&impostor, &b64(header.to_string()), &b64(&payload_text)),
            );
        }
        corpus.add(
            "header/jwk-string",
            "",
            raw(r#"{"alg":"RS256","kid":"rsa-a","jwk":"not a key"}"#),
        );
        corpus.add(
            "header/x5c",
            "",
            raw(r#"{"alg":"RS256","kid":"rsa-a","x5c":["MIIBIjANBgkq"]}"#),
        );
        corpus.add(
            "header/jku-forgery",
            "",
            raw_signed(
                &impostor,
                &b64(r#"{"alg":"RS256","jku":"https://attacker.test/jwks"}"#),
                &b64(&payload_text),
            ),
        );
        corpus.add(
            "header/duplicate-member",
            "same value",
            raw(r#"{"alg":"RS256","alg":"RS256","kid":"rsa-a"}"#),
        );
        corpus.add(
            "header/duplicate-member",
            "kid, last one trusted",
            raw(r#"{"alg":"RS256","kid":"nope","kid":"rsa-a"}"#),
        );
        corpus.add(
            "header/duplicate-member",
            "alg none first",
            raw(r#"{"alg":"none","alg":"RS256","kid":"rsa-a"}"#),
        );
        corpus.add("header/not-object", "array", raw(r#"["RS256"]"#));
        corpus.add("header/not-object", "string", raw(r#""RS256""#));
        corpus.add(
            "header/json-whitespace",
            "",
            raw("{ \"alg\" : \"RS256\" ,\n \"kid\" : \"rsa-a\" }"),
        );
        corpus.add(
            "header/json-escapes",
            "",
            raw(r#"{"\u0061lg":"RS\u0032\u00356","kid":"rsa-a"}"#),
        );

        // typ and cty
        for (id, typ) in [
            ("header/typ-jwt", "JWT"),
            ("header/typ-jwt", "jwt"),
            ("header/typ-jwt", "at+jwt"),
            ("header/typ-jwt", "application/at+jwt"),
            ("header/typ-other", "JOSE"),
            ("header/typ-other", "JOSE+JSON"),
            ("header/typ-other", "JWS"),
            ("header/typ-other", ""),
            ("header/typ-other", "application/json"),
        ] {
            let options = HeaderOptions {
                content_type: None,
                signature_type: Some(typ.to_string()),
            };
            corpus.add(
                id,
                typ,
                keys.sign(
                    Alg::ES256,
                    Signer::Trusted,
                    Some("ec256"),
                    &good_claims(now, &jti()),
                    &options,
                ),
            );
        }
        for cty in ["JWT", "jwt"] {
            let options = HeaderOptions {
                content_type: Some(cty.to_string()),
                signature_type: None,
            };
            corpus.add(
                "header/cty-nested",
                cty,
                keys.sign(
                    Alg::ES256,
                    Signer::Trusted,
                    Some("ec256"),
                    &good_claims(now, &jti()),
                    &options,
                ),
            );
        }
        let options = HeaderOptions {
            content_type: Some("application/example".to_string()),
            signature_type: None,
        };
        corpus.add(
            "header/cty-other",
            "",
            keys.sign(
                Alg::ES256,
                Signer::Trusted,
                Some("ec256"),
                &good_claims(now, &jti()),
                &options,
            ),
        );
    }

    // --- claims and times, for one algorithm of each family
    type Change = Box<dyn Fn(&mut Map<String, Value>)>;
    let set = |name: &'static str, value: Value| -> Change {
        Box::new(move |claims: &mut Map<String, Value>| {
            claims.insert(name.to_string(), value.clone());
        })
    };
    let remove = |name: &'static str| -> Change {
        Box::new(move |claims: &mut Map<String, Value>| {
            claims.remove(name);
        })
    };
    let claim_cases: Vec<(&'static str, Change)> = vec![
        ("claims/iss-wrong", set("iss", json!("https://other.test"))),
        (
            "claims/iss-trailing-slash",
            set("iss", json!("https://issuer.test/")),
        ),
        ("claims/iss-case", set("iss", json!("https://ISSUER.test"))),
        ("claims/iss-missing", remove("iss")),
        (
            "claims/iss-not-string",
            set("iss", json!(["https://issuer.test"])),
        ),
        ("claims/aud-wrong", set("aud", json!("other"))),
        (
            "claims/aud-array-with-match",
            set("aud", json!(["other", AUDIENCE])),
        ),
        (
            "claims/aud-array-without-match",
            set("aud", json!(["other", "more"])),
        ),
        ("claims/aud-empty-array", set("aud", json!([]))),
        ("claims/aud-number", set("aud", json!(42))),
        (
            "claims/aud-array-with-number",
            set("aud", json!([AUDIENCE, 42])),
        ),
        ("claims/aud-missing", remove("aud")),
        ("claims/sub-not-string", set("sub", json!(42))),
        ("claims/exp-missing", remove("exp")),
        ("claims/exp-past-beyond-skew", set("exp", json!(now - 120))),
        ("claims/exp-past-within-skew", set("exp", json!(now - 30))),
        ("claims/exp-zero", set("exp", json!(0))),
        ("claims/exp-negative", set("exp", json!(-1))),
        ("claims/exp-float", set("exp", json!(now as f64 + 300.5))),
        (
            "claims/exp-string",
            set("exp", json!((now + 300).to_string())),
        ),
        ("claims/exp-null", set("exp", Value::Null)),
        ("claims/exp-beyond-i64", set("exp", json!(u64::MAX))),
        ("claims/exp-max-i64", set("exp", json!(i64::MAX))),
        (
            "claims/exp-float-integral",
            set("exp", json!((now + 300) as f64)),
        ),
        (
            "claims/nbf-future-beyond-skew",
            set("nbf", json!(now + 120)),
        ),
        ("claims/nbf-future-within-skew", set("nbf", json!(now + 30))),
        ("claims/nbf-past", set("nbf", json!(now - 30))),
        ("claims/nbf-negative", set("nbf", json!(-1))),
        ("claims/nbf-string", set("nbf", json!(now.to_string()))),
        (
            "claims/iat-future-beyond-skew",
            set("iat", json!(now + 120)),
        ),
        ("claims/iat-future-within-skew", set("iat", json!(now + 30))),
        ("claims/iat-missing", remove("iat")),
        ("claims/iat-negative", set("iat", json!(-1))),
        ("claims/iat-float", set("iat", json!(now as f64 + 0.5))),
        ("claims/iat-string", set("iat", json!(now.to_string()))),
    ];
    for alg in [Alg::RS256, Alg::ES256, Alg::EdDSA] {
        for (id, change) in &claim_cases {
            let mut claims = good_claims(now, &jti());
            change(&mut claims);
            corpus.add(
                id,
                alg.name(),
                keys.sign(alg, Signer::Trusted, Some(kid_for(alg)), &claims, &plain),
            );
        }
    }

    // --- encoding: signatures are computed over the segments exactly as sent, so only the
    // parsing of the text differs from a valid token.
    {
        let header_json = r#"{"alg":"RS256","typ":"JWT","kid":"rsa-a"}"#;
        let h = b64(header_json);
        let payload_text = good_payload_text(now, &jti(), "");
        let p = b64(&payload_text);
        let rsa = &keys.raw_rsa_a;
        let padded = |text: &str| STANDARD.encode(text).replace('+', "-").replace('/', "_");
        corpus.add(
            "encoding/padding",
            "header",
            raw_signed(rsa, &padded(r#"{"alg":"RS256","kid":"rsa-a"}"#), &p),
        );
        let payload_needing_padding = good_payload_text(now, &jti(), r#","x":"a""#);
        assert!(padded(&payload_needing_padding).ends_with('='));
        corpus.add(
            "encoding/padding",
            "payload",
            raw_signed(rsa, &h, &padded(&payload_needing_padding)),
        );
        let valid = raw_signed(rsa, &h, &p);
        let sig = segments(&valid)[2].to_string();
        corpus.add(
            "encoding/padding",
            "signature",
            format!("{h}.{p}.{sig}{}", "=".repeat((4 - sig.len() % 4) % 4)),
        );
        // Bytes 0xfb 0xff encode as "-_" in base64url and "+/" in standard base64.
        let payload_with_high_bytes =
            good_payload_text(now, &jti(), ",\"x\":\"\u{fbff}\u{fbff}\u{fbff}\"");
        let url = b64(&payload_with_high_bytes);
        let standard = STANDARD
            .encode(&payload_with_high_bytes)
            .trim_end_matches('=')
            .to_string();
        assert_ne!(
            url, standard,
            "the payload must need '+' or '/' in standard base64"
        );
        corpus.add(
            "encoding/standard-base64",
            "payload",
            raw_signed(rsa, &h, &standard),
        );
        corpus.add(
            "encoding/standard-base64",
            "payload, base64url control",
            raw_signed(rsa, &h, &url),
        );
        let sig_standard = STANDARD
            .encode(signature_bytes(&valid))
            .trim_end_matches('=')
            .to_string();
        if sig_standard != sig {
            corpus.add(
                "encoding/standard-base64",
                "signature",
                format!("{h}.{p}.{sig_standard}"),
            );
        }
        corpus.add(
            "encoding/whitespace",
            "inside the token",
            format!("{h}. {p}.{sig}"),
        );
        corpus.add(
            "encoding/whitespace",
            "tab inside the token",
            format!("{h}.{p}\t.{sig}"),
        );
        corpus.add_header("encoding/whitespace-around", format!("Bearer   {valid}  "));
        corpus.add(
            "encoding/whitespace-in-json",
            "",
            raw_signed(
                rsa,
                &b64("{ \"alg\": \"RS256\",\n\t\"kid\": \"rsa-a\" }\n"),
                &b64(format!(" {payload_text} ")),
            ),
        );
        corpus.add("encoding/segments", "two", format!("{h}.{p}"));
        corpus.add("encoding/segments", "four", format!("{valid}.{sig}"));
        corpus.add(
            "encoding/empty-segment",
            "trailing dot",
            format!("{valid}."),
        );
        corpus.add("encoding/empty-segment", "leading dot", format!(".{valid}"));
        corpus.add(
            "encoding/empty-segment",
            "doubled dot",
            format!("{h}..{p}.{sig}"),
        );
        corpus.add(
            "encoding/segments",
            "five (JWE shape)",
            format!("{h}.{p}.{sig}.{p}.{sig}"),
        );
        corpus.add(
            "encoding/segments",
            "empty payload",
            raw_signed(rsa, &h, ""),
        );
        corpus.add("encoding/segments", "dots only", "..".to_string());
        corpus.add(
            "encoding/non-json",
            "header",
            raw_signed(rsa, &b64("not json"), &p),
        );
        corpus.add(
            "encoding/non-json",
            "payload",
            raw_signed(rsa, &h, &b64("not json")),
        );
        corpus.add(
            "encoding/non-json",
            "payload array",
            raw_signed(rsa, &h, &b64("[1,2]")),
        );
        corpus.add(
            "encoding/non-json",
            "payload not UTF-8",
            raw_signed(rsa, &h, &b64(b"{\"iss\":\"\xff\xfe\"}")),
        );
        corpus.add(
            "encoding/non-base64",
            "payload",
            raw_signed(rsa, &h, "eyJ!!!"),
        );
        corpus.add("encoding/non-base64", "signature", format!("{h}.{p}.%%%"));
        corpus.add(
            "encoding/duplicate-claim",
            "iss, trusted value last",
            raw_signed(
                rsa,
                &h,
                &b64(good_payload_text(now, &jti(), "").replacen(
                    "{",
                    r#"{"iss":"https://attacker.test","#,
                    1,
                )),
            ),
        );
        corpus.add(
            "encoding/duplicate-claim",
            "exp, future value last",
            raw_signed(
                rsa,
                &h,
                &b64(good_payload_text(now, &jti(), "").replacen(
                    "{",
                    &format!(r#"{{"exp":{},"#, now - 3600),
                    1,
                )),
            ),
        );
        corpus.add(
            "encoding/duplicate-claim",
            "exp, past value last",
            raw_signed(
                rsa,
                &h,
                &b64(good_payload_text(
                    now,
                    &jti(),
                    &format!(r#","exp":{}"#, now - 3600),
                )),
            ),
        );
        corpus.add(
            "encoding/duplicate-claim",
            "same value",
            raw_signed(
                rsa,
                &h,
                &b64(good_payload_text(now, &jti(), r#","sub":"alice""#)),
            ),
        );
        corpus.add(
            "encoding/trailing-garbage",
            "after the payload JSON",
            raw_signed(rsa, &h, &b64(format!("{payload_text}xyz"))),
        );
        corpus.add(
            "encoding/trailing-garbage",
            "second JSON object",
            raw_signed(rsa, &h, &b64(format!("{payload_text}{{}}"))),
        );
        corpus.add(
            "encoding/trailing-garbage",
            "after the header JSON",
            raw_signed(rsa, &b64(format!("{header_json}]")), &p),
        );
        corpus.add(
            "encoding/trailing-garbage",
            "after the token: !!",
            format!("{valid}!!"),
        );
        corpus.add(
            "encoding/comma-list-element",
            "after the token: , x",
            format!("{valid}, x"),
        );
        corpus.add(
            "encoding/trailing-garbage",
            "after the token: space x",
            format!("{valid} x"),
        );
        corpus.add(
            "encoding/trailing-garbage",
            "after the signature: base64url",
            format!("{valid}AA"),
        );
        corpus.add_header("encoding/empty-token", "Bearer ".to_string());
        corpus.add_header("encoding/empty-token", "Bearer".to_string());
    }

    // --- size
    {
        // A token of exactly `length` bytes (EdDSA: fast, fixed-size signatures). A base64url
        // segment cannot be 4k + 1 characters long, so when growing the filler claim skips
        // `length`, the header without `kid` shifts the total by one.
        let sized = |length: usize, jti: String| -> String {
            for kid in [Some("ed"), None] {
                let mut filler = length.saturating_sub(400) * 3 / 4;
                loop {
                    let mut claims = good_claims(now, &jti);
                    claims.insert("filler".into(), json!("x".repeat(filler)));
                    let token = keys.sign(Alg::EdDSA, Signer::Trusted, kid, &claims, &plain);
                    if token.len() == length {
                        return token;
                    }
                    if token.len() > length {
                        break;
                    }
                    filler += 1;
                }
            }
            panic!("no token of {length} bytes");
        };
        corpus.add("size/at-8-KiB", "8192 bytes", sized(8192, jti()));
        corpus.add("size/over-8-KiB", "8193 bytes", sized(8193, jti()));
        corpus.add("size/over-8-KiB", "16 KiB", sized(16 * 1024, jti()));
    }

    // --- keys
    {
        let payload = b64(good_payload_text(now, &jti(), ""));
        assert_eq!(keys.raw_weak.bits(), 1024);
        corpus.add(
            "keys/weak-rsa-1024",
            "kid",
            raw_signed(
                &keys.raw_weak,
                &b64(r#"{"alg":"RS256","typ":"JWT","kid":"rsa-weak"}"#),
                &payload,
            ),
        );
        corpus.add(
            "keys/weak-rsa-1024",
            "no kid",
            raw_signed(
                &keys.raw_weak,
                &b64(r#"{"alg":"RS256","typ":"JWT"}"#),
                &payload,
            ),
        );
        corpus.add(
            "keys/use-enc",
            "kid",
            keys.sign(
                Alg::RS256,
                Signer::Encryption,
                Some("rsa-enc"),
                &good_claims(now, &jti()),
                &plain,
            ),
        );
        corpus.add(
            "keys/use-enc",
            "no kid",
            keys.sign(
                Alg::RS256,
                Signer::Encryption,
                None,
                &good_claims(now, &jti()),
                &plain,
            ),
        );
        corpus.add(
            "keys/no-kid-key-after-ed25519-key",
            "",
            keys.sign(
                Alg::RS256,
                Signer::Pinned,
                None,
                &good_claims(now, &jti()),
                &plain,
            ),
        );
        corpus.add(
            "keys/use-enc",
            "PS256, kid",
            keys.sign(
                Alg::PS256,
                Signer::Encryption,
                Some("rsa-enc"),
                &good_claims(now, &jti()),
                &plain,
            ),
        );
    }

    corpus.cases
}

// ---------------------------------------------------------------------------------------------
// Envoy with two listeners

const OURS: &str = "filter";
const THEIRS: &str = "jwt_authn";

/// The providers and rules both filters get.
fn shared_configuration(jwks: &str) -> Value {
    json!({
        "providers": {PROVIDER: {
            "issuer": ISSUER,
            "audiences": [AUDIENCE],
            "local_jwks": {"inline_string": jwks},
            "forward": false,
            "clock_skew_seconds": 60,
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": PROVIDER}}],
    })
}

fn start_envoy(jwks: &str) -> Envoy {
    let configuration = shared_configuration(jwks);
    let (providers, rules) = (&configuration["providers"], &configuration["rules"]);
    let ours = WasmFilter::new(&configuration);
    let jwt_authn = json!({
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": providers,
            "rules": rules,
        },
    });
    let bootstrap = bootstrap_with_listeners(vec![
        direct_response_listener(OURS, vec![ours.http_filter()]),
        direct_response_listener(THEIRS, vec![jwt_authn]),
    ]);
    Envoy::start_bootstrap("bootstrap.json", &bootstrap.to_string(), 1, "info")
}

/// Status and a short description of one answer.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    body: String,
}

impl Answer {
    fn verdict(&self) -> Verdict {
        if (200..300).contains(&self.status) {
            Allow
        } else {
            Deny
        }
    }
}

fn ask(addr: SocketAddr, authorization: &str) -> Answer {
    let response = http::get(addr, PATH, &[("authorization", authorization)]);
    let body = response.text();
    let body = match serde_json::from_str::<Value>(&body) {
        Ok(json) => json["error_description"]
            .as_str()
            .unwrap_or(&body)
            .to_string(),
        Err(_) => body,
    };
    Answer {
        status: response.status,
        body,
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

// The raw RS256 signer produces exactly jwt-simple's (deterministic) PKCS#1 v1.5 signature, so
// hand-written tokens are signed correctly.
#[test]
fn raw_rs256_signer_matches_jwt_simple() {
    let keys = Keys::new();
    let token = keys.sign(
        Alg::RS256,
        Signer::Trusted,
        Some("rsa-a"),
        &good_claims(now(), "raw"),
        &HeaderOptions::default(),
    );
    let s = segments(&token);
    assert_eq!(raw_signed(&keys.raw_rsa_a, s[0], s[1]), token);
}

// Every corpus token gets the same verdict from the filter and from jwt_authn, except the
// listed deliberate differences, which get exactly the listed verdicts; denials are 401 (400
// for a malformed request) from the filter and 401 from jwt_authn unless listed otherwise.
#[test]
fn same_verdicts_as_jwt_authn() {
    let keys = Keys::new();
    let cases = corpus(&keys);
    assert!(cases.len() >= 150, "corpus too small: {}", cases.len());
    let envoy = start_envoy(&keys.jwks());
    let ours_addr = envoy.listener_addr(OURS);
    let theirs_addr = envoy.listener_addr(THEIRS);

    let differences: BTreeMap<&str, &Difference> = DIFFERENCES.iter().map(|d| (d.id, d)).collect();
    assert_eq!(
        differences.len(),
        DIFFERENCES.len(),
        "a difference is listed twice"
    );
    let mut used = BTreeMap::new();
    let mut failures = Vec::new();
    let mut same = 0;
    let mut deliberate = 0;
    for case in &cases {
        let ours = ask(ours_addr, &case.authorization);
        let theirs = ask(theirs_addr, &case.authorization);
        let name = case.name();
        let seen = format!(
            "{name}: filter {} {:?}, jwt_authn {} {:?}",
            ours.status, ours.body, theirs.status, theirs.body
        );
        if std::env::var_os("KSERVE_DIFF_DUMP").is_some() {
            eprintln!("case: {seen}");
        }
        match differences.get(case.id) {
            Some(difference) => {
                *used.entry(case.id).or_insert(0) += 1;
                if (ours.verdict(), theirs.verdict()) != (difference.ours, difference.theirs) {
                    failures.push(format!(
                        "deliberate difference no longer holds (expected filter {:?}, jwt_authn {:?}): {seen}",
                        difference.ours, difference.theirs
                    ));
                } else {
                    deliberate += 1;
                    eprintln!("deliberate: {seen} ({})", difference.reason);
                }
            }
            None if ours.verdict() == theirs.verdict() => same += 1,
            None => failures.push(format!("verdicts differ: {seen}")),
        }
        // Agreement alone could be both sides failing alike: valid tokens must pass and
        // tampered signatures must not.
        if case.id.starts_with("valid") && (ours.verdict(), theirs.verdict()) != (Allow, Allow) {
            failures.push(format!("a valid token is refused: {seen}"));
        }
        if case.id.starts_with("sig/")
            && !differences.contains_key(case.id)
            && ours.verdict() == Allow
        {
            failures.push(format!("a bad signature is accepted: {seen}"));
        }
        if ours.verdict() == Deny {
            let expected = if OUR_400.contains(&case.id) { 400 } else { 401 };
            if ours.status != expected {
                failures.push(format!("filter denial is not {expected}: {seen}"));
            }
        }
        if theirs.verdict() == Deny {
            let expected = JWT_AUTHN_STATUS
                .iter()
                .find(|(id, _)| *id == case.id)
                .map_or(401, |(_, status)| *status);
            if theirs.status != expected {
                failures.push(format!("jwt_authn denial is not {expected}: {seen}"));
            }
        }
    }
    for difference in DIFFERENCES {
        if !used.contains_key(difference.id) {
            failures.push(format!(
                "listed difference matches no case: {}",
                difference.id
            ));
        }
    }
    eprintln!(
        "differential: {} tokens, {same} same verdict, {deliberate} deliberate differences ({} kinds)",
        cases.len(),
        DIFFERENCES.len()
    );
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The status `kserve-auth explain` gives for a request to [`PATH`] with this `Authorization`
/// value, judged at `at` (seconds since the epoch).
fn explain_status(config: &Path, authorization: &str, at: i64) -> u16 {
    let mut child = Command::new(kserve_auth_bin())
        .args(["explain", "--json", "--token", "-", "--method", "GET"])
        .arg("--config")
        .arg(config)
        .args(["--url", &format!("http://localhost{PATH}")])
        .args(["--header", "authorization: $TOKEN", "--at", &at.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kserve-auth");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(authorization.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "kserve-auth explain failed: {}{}",
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    let explanation: Value = serde_json::from_str(&stdout).unwrap();
    explanation["answer"]["status"].as_u64().unwrap() as u16
}

// `kserve-auth explain` judges as the filter in Envoy does: for every token of the corpus
// (valid tokens, signatures, headers, claims, times, encodings, sizes, keys), its status equals
// the status Envoy with the filter returned.
#[test]
fn explain_agrees_with_the_filter_in_envoy() {
    let keys = Keys::new();
    let cases = corpus(&keys);
    let jwks = keys.jwks();
    let envoy = start_envoy(&jwks);
    let ours_addr = envoy.listener_addr(OURS);
    let scratch = Scratch::new("explain");
    let config = scratch.path().join("plugin.json");
    std::fs::write(&config, shared_configuration(&jwks).to_string()).unwrap();

    let mut statuses = BTreeMap::new();
    let mut failures = Vec::new();
    for case in &cases {
        let at = now();
        let envoy_status = ask(ours_addr, &case.authorization).status;
        let explained = explain_status(&config, &case.authorization, at);
        *statuses.entry(envoy_status).or_insert(0) += 1;
        if explained != envoy_status {
            failures.push(format!(
                "{}: Envoy {envoy_status}, explain {explained}",
                case.name()
            ));
        }
    }
    eprintln!(
        "explain: {} corpus tokens, Envoy's statuses {statuses:?}, {} disagree",
        cases.len(),
        failures.len()
    );
    // Agreement must cover passes and refusals alike.
    assert!(statuses.get(&200).is_some_and(|n| *n >= 5), "{statuses:?}");
    assert!(statuses.get(&401).is_some_and(|n| *n >= 50), "{statuses:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
