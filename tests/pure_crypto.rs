#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The pure-Rust signature check (`verify::verify_signature`: the `rsa`, `p256`, `p384` and
//! `ed25519-compact` crates over the signing input) against jwt-simple's whole-token
//! verification, which the filter used before and which is built on the same crates: the same
//! verdict on valid tokens of every algorithm and on their signatures altered at the edges, and
//! the key policy, one decision at a time.

#[allow(dead_code)]
#[path = "e2e/support/ecdsa.rs"]
mod ecdsa;
#[allow(dead_code)]
#[path = "e2e/support/raw_rsa.rs"]
mod raw_rsa;
#[path = "e2e/support/reference.rs"]
mod reference;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ecdsa::{hex, subtract, P256_ORDER, P384_ORDER};
use jwt_simple::prelude::*;
use kserve_auth_filter::crypto::key::{Key, KeyMaterial};
use kserve_auth_filter::crypto::verify::{
    ed25519_public_key, p256_public_key, p384_public_key, rsa_key_usable, rsa_public_key,
    verify_signature,
};
use kserve_auth_filter::jose::alg::Alg;
use raw_rsa::RawRsaKey;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _};

const RSA_A_PEM: &str = include_str!("fixtures/keys/rsa-2048-a.pem");
const RSA_3072_PEM: &str = include_str!("fixtures/keys/rsa-3072.pem");
const RSA_WEAK_PEM: &str = include_str!("fixtures/keys/rsa-1024-weak.pem");

/// Order of the Ed25519 group (ℓ), big-endian hex.
const ED25519_ORDER: &str = "1000000000000000000000000000000014def9dea2f79cd65812631a5cf5d3ed";

fn key(material: KeyMaterial) -> Key {
    Key {
        kid: None,
        alg: None,
        material,
        spki_der: None,
        prepared_rsa: Default::default(),
    }
}

fn rsa_key(pem: &str) -> (Key, Vec<u8>) {
    let components = RS256KeyPair::from_pem(pem)
        .unwrap()
        .public_key()
        .to_components();
    let n = components.n.clone();
    (
        key(KeyMaterial::Rsa {
            n: components.n,
            e: components.e,
        }),
        n,
    )
}

fn claims() -> JWTClaims<NoCustomClaims> {
    Claims::create(Duration::from_hours(1))
        .with_issuer("https://issuer.example")
        .with_audience("api")
}

/// `raw` with its signature segment replaced by `signature`.
fn with_signature(raw: &str, signature: &[u8]) -> String {
    let (input, _) = raw.rsplit_once('.').unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// The pure-Rust verdict on the compact token `raw`.
fn pure(alg: Alg, key: &Key, raw: &str) -> bool {
    let (input, signature) = raw.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    verify_signature(alg, key, input.as_bytes(), &signature)
}

/// `a + b` for big-endian numbers; the result is one byte longer when the sum carries out.
fn add(a: &[u8], b: &[u8]) -> Vec<u8> {
    let length = a.len().max(b.len());
    let digit = |x: &[u8], i: usize| -> u16 {
        x.len()
            .checked_sub(1 + i)
            .map_or(0, |index| u16::from(x[index]))
    };
    let mut out = Vec::with_capacity(length + 1);
    let mut carry = 0u16;
    for i in 0..length {
        let sum = digit(a, i) + digit(b, i) + carry;
        out.push(sum as u8);
        carry = sum >> 8;
    }
    if carry > 0 {
        out.push(carry as u8);
    }
    out.reverse();
    out
}

/// `value` left-padded with zeros to `length` bytes.
fn padded(value: &[u8], length: usize) -> Vec<u8> {
    let mut out = vec![0; length - value.len()];
    out.extend_from_slice(value);
    out
}

/// A token and whether its signature must verify.
struct Case {
    name: String,
    raw: String,
    valid: bool,
}

/// A valid token and alterations of its signature or signed text that every verifier refuses.
fn common_cases(raw: &str) -> Vec<Case> {
    let (input, segment) = raw.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(segment).unwrap();
    let mut cases = vec![Case {
        name: "valid".into(),
        raw: raw.to_string(),
        valid: true,
    }];
    let mut altered = |name: &str, bytes: Vec<u8>| {
        cases.push(Case {
            name: name.into(),
            raw: with_signature(raw, &bytes),
            valid: false,
        })
    };
    let mut first_flipped = signature.clone();
    first_flipped[0] ^= 0x01;
    altered("first byte flipped", first_flipped);
    let mut last_flipped = signature.clone();
    *last_flipped.last_mut().unwrap() ^= 0x80;
    altered("last byte flipped", last_flipped);
    altered("first byte dropped", signature[1..].to_vec());
    altered(
        "last byte dropped",
        signature[..signature.len() - 1].to_vec(),
    );
    altered("zero byte prepended", [&[0][..], &signature].concat());
    altered("zero byte appended", [&signature[..], &[0]].concat());
    altered("all zeros", vec![0; signature.len()]);
    altered("empty", Vec::new());
    let (header, _) = input.split_once('.').unwrap();
    let other_payload = URL_SAFE_NO_PAD.encode(r#"{"iss":"https://issuer.example","sub":"x"}"#);
    cases.push(Case {
        name: "other payload".into(),
        raw: format!("{header}.{other_payload}.{segment}"),
        valid: false,
    });
    cases
}

/// RSA signatures that are not smaller than the modulus `n`.
fn rsa_cases(raw: &str, n: &[u8]) -> Vec<Case> {
    let (_, segment) = raw.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(segment).unwrap();
    [
        ("modulus itself", n.to_vec()),
        ("signature plus modulus", add(&signature, n)),
        ("modulus plus one", add(n, &[1])),
    ]
    .into_iter()
    .map(|(name, bytes)| Case {
        name: name.into(),
        raw: with_signature(raw, &bytes),
        valid: false,
    })
    .collect()
}

/// ECDSA `r || s` at the edges of the group order: the high-`s` twin of a valid signature is
/// accepted (BoringSSL on the host path accepts it too); `r` or `s` of zero or of the order is not.
fn ecdsa_cases(raw: &str, order_hex: &str) -> Vec<Case> {
    let (_, segment) = raw.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(segment).unwrap();
    let order = hex(order_hex);
    let size = order.len();
    let (r, s) = signature.split_at(size);
    let zero = vec![0; size];
    [
        ("high s", [r, &subtract(&order, s)].concat(), true),
        ("r = order", [&order[..], s].concat(), false),
        ("s = order", [r, &order[..]].concat(), false),
        ("r = 0", [&zero[..], s].concat(), false),
        ("s = 0", [r, &zero[..]].concat(), false),
        ("r + order", [&add(r, &order)[..], s].concat(), false),
    ]
    .into_iter()
    .map(|(name, bytes, valid)| Case {
        name: name.into(),
        raw: with_signature(raw, &bytes),
        valid,
    })
    .collect()
}

/// Ed25519 `R || S` with `S` not reduced (`S + ℓ`), which RFC 8032 refuses.
fn ed25519_cases(raw: &str) -> Vec<Case> {
    let (_, segment) = raw.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(segment).unwrap();
    let (r, s) = signature.split_at(32);
    // S is little-endian.
    let s_big_endian: Vec<u8> = s.iter().rev().copied().collect();
    let mut unreduced = padded(&add(&s_big_endian, &hex(ED25519_ORDER)), 32);
    unreduced.reverse();
    vec![Case {
        name: "S + order".into(),
        raw: with_signature(raw, &[r, &unreduced[..]].concat()),
        valid: false,
    }]
}

/// Asserts each case: the pure-Rust verdict is the expected one and jwt-simple's.
fn check(alg: Alg, key: &Key, cases: &[Case]) -> usize {
    for case in cases {
        let verdict = pure(alg, key, &case.raw);
        assert_eq!(verdict, case.valid, "{} {}", alg.name(), case.name);
        assert_eq!(
            verdict,
            reference::signature_accepted(alg, key, &case.raw),
            "{} {}: jwt-simple disagrees",
            alg.name(),
            case.name
        );
    }
    cases.len()
}

// RS256/384/512 and PS256/384/512 with 2048- and 3072-bit keys: valid signatures verify, altered
// ones (wrong length, bits flipped, not below the modulus, other text) do not, as in jwt-simple.
#[test]
fn rsa_verdicts_match_jwt_simple() {
    let mut checked = 0;
    for pem in [RSA_A_PEM, RSA_3072_PEM] {
        let (key, n) = rsa_key(pem);
        let tokens = [
            (
                Alg::RS256,
                RS256KeyPair::from_pem(pem).unwrap().sign(claims()),
            ),
            (
                Alg::RS384,
                RS384KeyPair::from_pem(pem).unwrap().sign(claims()),
            ),
            (
                Alg::RS512,
                RS512KeyPair::from_pem(pem).unwrap().sign(claims()),
            ),
            (
                Alg::PS256,
                PS256KeyPair::from_pem(pem).unwrap().sign(claims()),
            ),
            (
                Alg::PS384,
                PS384KeyPair::from_pem(pem).unwrap().sign(claims()),
            ),
            (
                Alg::PS512,
                PS512KeyPair::from_pem(pem).unwrap().sign(claims()),
            ),
        ];
        for (alg, raw) in tokens {
            let raw = raw.unwrap();
            checked += check(alg, &key, &common_cases(&raw));
            checked += check(alg, &key, &rsa_cases(&raw, &n));
        }
    }
    assert_eq!(checked, 2 * 6 * 13);
}

// ES256 and ES384: valid and high-s signatures verify, wrong lengths and out-of-range scalars do
// not, as in jwt-simple.
#[test]
fn ecdsa_verdicts_match_jwt_simple() {
    for _ in 0..4 {
        let p256 = ES256KeyPair::generate();
        let key256 = key(KeyMaterial::P256 {
            point: p256.public_key().public_key().to_bytes_uncompressed(),
        });
        let raw = p256.sign(claims()).unwrap();
        check(Alg::ES256, &key256, &common_cases(&raw));
        check(Alg::ES256, &key256, &ecdsa_cases(&raw, P256_ORDER));

        let p384 = ES384KeyPair::generate();
        let key384 = key(KeyMaterial::P384 {
            point: p384.public_key().public_key().to_bytes_uncompressed(),
        });
        let raw = p384.sign(claims()).unwrap();
        check(Alg::ES384, &key384, &common_cases(&raw));
        check(Alg::ES384, &key384, &ecdsa_cases(&raw, P384_ORDER));
    }
}

// EdDSA: valid signatures verify; altered ones and an unreduced S do not, as in jwt-simple.
#[test]
fn eddsa_verdicts_match_jwt_simple() {
    for _ in 0..4 {
        let pair = Ed25519KeyPair::generate();
        let key = key(KeyMaterial::Ed25519 {
            public: pair.public_key().to_bytes(),
        });
        let raw = pair.sign(claims()).unwrap();
        check(Alg::EdDSA, &key, &common_cases(&raw));
        check(Alg::EdDSA, &key, &ed25519_cases(&raw));
    }
}

// A key never verifies another algorithm's signature, even when asked directly.
#[test]
fn key_type_must_fit_alg() {
    let (rsa, _) = rsa_key(RSA_A_PEM);
    let rs256 = RS256KeyPair::from_pem(RSA_A_PEM)
        .unwrap()
        .sign(claims())
        .unwrap();
    assert!(pure(Alg::RS256, &rsa, &rs256));
    for alg in [Alg::ES256, Alg::ES384, Alg::EdDSA] {
        assert!(!pure(alg, &rsa, &rs256), "{}", alg.name());
    }
    let p256 = ES256KeyPair::generate();
    let ec = key(KeyMaterial::P256 {
        point: p256.public_key().public_key().to_bytes_uncompressed(),
    });
    let es256 = p256.sign(claims()).unwrap();
    assert!(pure(Alg::ES256, &ec, &es256));
    for alg in [Alg::ES384, Alg::RS256, Alg::PS256, Alg::EdDSA] {
        assert!(!pure(alg, &ec, &es256), "{}", alg.name());
    }
}

/// An odd modulus of exactly `bits` bits.
fn modulus_of_bits(bits: usize) -> Vec<u8> {
    let mut n = vec![0xff; bits.div_ceil(8)];
    n[0] = 0xff >> (n.len() * 8 - bits);
    n
}

// RSA keys: moduli of 2048 to 4096 bits, odd, exponent 65537; nothing else, as in jwt-simple.
// The check a key set's loading makes without preparing the key gives the same answer.
#[test]
fn rsa_key_policy() {
    let accepted = |n: &[u8], e: &[u8]| {
        let usable = rsa_key_usable(n, e);
        assert_eq!(
            usable,
            rsa_public_key(n, e).is_some(),
            "{} bits",
            n.len() * 8
        );
        usable
    };
    let e = [1, 0, 1];
    for bits in [2048, 3072, 4096] {
        let n = modulus_of_bits(bits);
        assert!(accepted(&n, &e), "{bits}");
        assert!(RS256PublicKey::from_components(&n, &e).is_ok(), "{bits}");
    }
    for bits in [1024, 2047, 4097] {
        let n = modulus_of_bits(bits);
        assert!(!accepted(&n, &e), "{bits}");
        assert!(RS256PublicKey::from_components(&n, &e).is_err(), "{bits}");
    }
    let mut even = modulus_of_bits(2048);
    *even.last_mut().unwrap() = 0xfe;
    assert!(!accepted(&even, &e));
    assert!(RS256PublicKey::from_components(&even, &e).is_err());
    for exponent in [&[3][..], &[1, 0, 0, 1], &[1, 0, 3]] {
        let n = modulus_of_bits(2048);
        assert!(!accepted(&n, exponent), "{exponent:?}");
        assert!(RS256PublicKey::from_components(&n, exponent).is_err());
    }
}

// A genuine RS256 signature by a 1024-bit key is refused: small keys never verify, even when
// the check is asked directly.
#[test]
fn small_rsa_key_never_verifies() {
    let weak = RawRsaKey::from_pkcs8_pem(RSA_WEAK_PEM);
    assert_eq!(weak.bits(), 1024);
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#);
    let payload = URL_SAFE_NO_PAD.encode(r#"{"iss":"https://issuer.example"}"#);
    let input = format!("{header}.{payload}");
    let signature = weak.sign_rs256(input.as_bytes());
    let key = key(KeyMaterial::Rsa {
        n: weak.n.clone(),
        e: weak.e.clone(),
    });
    assert!(!verify_signature(
        Alg::RS256,
        &key,
        input.as_bytes(),
        &signature
    ));
    let raw = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&signature));
    assert!(reference::verify(Alg::RS256, &key, &raw).is_err());
}

// PSS salts must be exactly as long as the hash (RFC 7518 §3.5): other lengths are refused, as
// in jwt-simple.
#[test]
fn pss_salt_must_match_hash_length() {
    let private = rsa::RsaPrivateKey::from_pkcs8_pem(RSA_A_PEM).unwrap();
    let (key, _) = rsa_key(RSA_A_PEM);
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"PS256"}"#);
    let payload = URL_SAFE_NO_PAD.encode(r#"{"iss":"https://issuer.example"}"#);
    let input = format!("{header}.{payload}");
    for (salt, valid) in [(32, true), (0, false), (20, false), (64, false)] {
        let signer =
            rsa::pss::SigningKey::<rsa::sha2::Sha256>::new_with_salt_len(private.clone(), salt);
        let signature = signer
            .sign_with_rng(&mut rsa::rand_core::OsRng, input.as_bytes())
            .to_vec();
        assert_eq!(
            verify_signature(Alg::PS256, &key, input.as_bytes(), &signature),
            valid,
            "salt {salt}"
        );
        let raw = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&signature));
        assert_eq!(
            reference::verify(Alg::PS256, &key, &raw).is_ok(),
            valid,
            "salt {salt}"
        );
    }
}

// EC points must be on their curve and Ed25519 keys of large order, as in jwt-simple. EC points
// are read in the uncompressed form only, the one jwks stores.
#[test]
fn ec_and_ed25519_key_policy() {
    let p256 = ES256KeyPair::generate()
        .public_key()
        .public_key()
        .to_bytes_uncompressed();
    assert!(p256_public_key(&p256).is_some());
    let mut off_curve = p256.clone();
    off_curve[64] ^= 1;
    assert!(p256_public_key(&off_curve).is_none());
    assert!(ES256PublicKey::from_bytes(&off_curve).is_err());
    let compressed = [&[0x02 | (p256[64] & 1)][..], &p256[1..33]].concat();
    assert!(ES256PublicKey::from_bytes(&compressed).is_ok());
    assert!(p256_public_key(&compressed).is_none());
    for tag in [0x00, 0x02, 0x03, 0x05, 0x06, 0x07] {
        let mut retagged = p256.clone();
        retagged[0] = tag;
        assert!(p256_public_key(&retagged).is_none(), "{tag}");
    }
    assert!(p256_public_key(&p256[1..]).is_none());
    assert!(p256_public_key(&[&p256[..], &[0]].concat()).is_none());
    assert!(p384_public_key(&p256).is_none());
    let p384 = ES384KeyPair::generate()
        .public_key()
        .public_key()
        .to_bytes_uncompressed();
    assert!(p384_public_key(&p384).is_some());
    let mut off_curve = p384.clone();
    off_curve[96] ^= 1;
    assert!(p384_public_key(&off_curve).is_none());
    assert!(ES384PublicKey::from_bytes(&off_curve).is_err());

    let ed = Ed25519KeyPair::generate().public_key().to_bytes();
    assert!(ed25519_public_key(&ed).is_some());
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert!(ed25519_public_key(&identity).is_none());
    assert!(Ed25519PublicKey::from_bytes(&identity).is_err());
    assert!(ed25519_public_key(&ed[..31]).is_none());
}
