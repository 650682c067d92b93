//! One token, one provider, one key set and `now` → accepted, or one reason why not.

use ed25519_compact::{PublicKey as Ed25519PublicKey, Signature as Ed25519Signature};
use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use p256::elliptic_curve::point::AffineCoordinates as _;

use crate::crypto::key::{bit_length, Key, KeyMaterial, KeySet};
use crate::crypto::rsa::{self, Hash};
use crate::failure::Failure;
use crate::jose::alg::Alg;
use crate::jose::token::Token;

/// Checks one signature with one key. The pure-Rust implementation is [`PureRustCrypto`]; the
/// filter may supply one backed by the host.
pub trait SignatureCheck {
    /// True when `token`'s signature over its signing input is valid for `key` with `alg`.
    /// The caller has already checked that `key` fits `alg`.
    fn check(&self, alg: Alg, key: &Key, token: &Token<'_>) -> bool;
}

/// Signature checks in pure Rust: [`crate::crypto::rsa`] and the `p256`, `p384` and `ed25519-compact`
/// crates over the token's signing input as received.
#[derive(Debug, Clone, Copy, Default)]
pub struct PureRustCrypto;

impl SignatureCheck for PureRustCrypto {
    fn check(&self, alg: Alg, key: &Key, token: &Token<'_>) -> bool {
        verify_signature(alg, key, token.signing_input.as_bytes(), &token.signature)
    }
}

/// RSA moduli outside this range are refused, as small keys are weak and large ones slow.
pub const RSA_MODULUS_BITS: std::ops::RangeInclusive<usize> = 2048..=4096;

/// True when `signature` is a valid `alg` signature of `message` by `key`. A key that does not fit
/// `alg`, or material that does not make a valid key, verifies nothing.
///
/// RSA signatures must be exactly as long as the modulus and smaller than it; PSS salts must be
/// as long as the hash. ECDSA signatures are `r || s` of the curve's exact size with both in
/// range; high `s` values are accepted, as by BoringSSL on the host path. Ed25519 refuses
/// small-order keys and non-canonical `s`.
pub fn verify_signature(alg: Alg, key: &Key, message: &[u8], signature: &[u8]) -> bool {
    match (&key.material, alg) {
        (KeyMaterial::Rsa { n, e }, _) => key
            .prepared_rsa
            .get_or_prepare(|| rsa_public_key(n, e))
            .is_some_and(|key| match alg {
                Alg::RS256 => key.verify_pkcs1v15(Hash::Sha256, message, signature),
                Alg::RS384 => key.verify_pkcs1v15(Hash::Sha384, message, signature),
                Alg::RS512 => key.verify_pkcs1v15(Hash::Sha512, message, signature),
                Alg::PS256 => key.verify_pss(Hash::Sha256, message, signature),
                Alg::PS384 => key.verify_pss(Hash::Sha384, message, signature),
                Alg::PS512 => key.verify_pss(Hash::Sha512, message, signature),
                Alg::ES256 | Alg::ES384 | Alg::EdDSA => false,
            }),
        (KeyMaterial::P256 { point }, Alg::ES256) => {
            let (Some(key), Ok(signature)) = (
                p256_public_key(point),
                p256::ecdsa::Signature::try_from(signature),
            ) else {
                return false;
            };
            key.verify_prehash(&hmac_sha256::Hash::hash(message), &signature)
                .is_ok()
        }
        (KeyMaterial::P384 { point }, Alg::ES384) => {
            let (Some(key), Ok(signature)) = (
                p384_public_key(point),
                p384::ecdsa::Signature::try_from(signature),
            ) else {
                return false;
            };
            key.verify_prehash(&hmac_sha512::sha384::Hash::hash(message), &signature)
                .is_ok()
        }
        (KeyMaterial::Ed25519 { public }, Alg::EdDSA) => {
            let (Some(key), Ok(signature)) = (
                ed25519_public_key(public),
                Ed25519Signature::from_slice(signature),
            ) else {
                return false;
            };
            key.verify(message, &signature).is_ok()
        }
        _ => false,
    }
}

/// The RSA public key with big-endian modulus `n` and exponent `e`, when it is one this filter
/// uses: a modulus in [`RSA_MODULUS_BITS`], odd, and the exponent 65537.
pub fn rsa_public_key(n: &[u8], e: &[u8]) -> Option<rsa::PublicKey> {
    // Checked first: preparing a key takes time quadratic in its length.
    if !rsa_key_usable(n, e) {
        return None;
    }
    rsa::PublicKey::new(n, e)
}

/// Whether [`rsa_public_key`] accepts `n` and `e`, found without preparing the key: what a key
/// set's loading checks, as most of its keys are then checked by the host.
pub fn rsa_key_usable(n: &[u8], e: &[u8]) -> bool {
    RSA_MODULUS_BITS.contains(&bit_length(n)) && rsa::PublicKey::acceptable(n, e)
}

/// The P-256 verifying key of an uncompressed SEC1 point (`04 || x || y`), when the point is on
/// the curve.
pub fn p256_public_key(point: &[u8]) -> Option<p256::ecdsa::VerifyingKey> {
    let (x, y) = uncompressed_coordinates::<32>(point)?;
    let point = p256::AffinePoint::from_coordinates(&x.into(), &y.into()).into_option()?;
    p256::ecdsa::VerifyingKey::from_affine(point).ok()
}

/// The P-384 verifying key of an uncompressed SEC1 point, when the point is on the curve.
pub fn p384_public_key(point: &[u8]) -> Option<p384::ecdsa::VerifyingKey> {
    let (x, y) = uncompressed_coordinates::<48>(point)?;
    let point = p384::AffinePoint::from_coordinates(&x.into(), &y.into()).into_option()?;
    p384::ecdsa::VerifyingKey::from_affine(point).ok()
}

/// `x` and `y` of `04 || x || y`. Keys only come uncompressed (jwks stores them so), and reading
/// just that form keeps point decompression (a square root) out of the build.
fn uncompressed_coordinates<const N: usize>(point: &[u8]) -> Option<([u8; N], [u8; N])> {
    let (&tag, coordinates) = point.split_first()?;
    let (x, y) = coordinates.split_first_chunk::<N>()?;
    (tag == 0x04).then_some(())?;
    Some((*x, <[u8; N]>::try_from(y).ok()?))
}

/// The Ed25519 public key of 32 bytes, when they encode a point of large order.
pub fn ed25519_public_key(public: &[u8]) -> Option<Ed25519PublicKey> {
    let key = Ed25519PublicKey::from_slice(public).ok()?;
    key.validate().ok()?;
    Some(key)
}

/// The most signature checks one token may cost. A token that names no `kid` (or a key set whose
/// keys name none) is tried against the fitting keys in key-set order, the first this many only,
/// so a forged token costs at most this many checks whatever the key set's size. Issuers that
/// publish more keys than this for one algorithm put `kid` in their tokens.
pub const MAX_SIGNATURE_CHECKS: usize = 4;

/// Selects the key by `kid` (or tries each fitting key when the token has none) and checks the
/// signature. [`Failure::UnknownKid`] tells the caller a key refetch may help.
///
/// The key type must fit the token's `alg` before any cryptography runs, so an ES256 token never
/// reaches an RSA key, nor an RS256 token an EC key.
pub fn check_signature(
    token: &Token<'_>,
    keys: &KeySet,
    crypto: &dyn SignatureCheck,
) -> Result<(), Failure> {
    let alg = token.header.alg;
    let candidates: Vec<&Key> = match &token.header.kid {
        Some(kid) => {
            // As in jwt_authn, a key without a `kid` may verify any token; a key with another
            // `kid` never does.
            let mut named = keys
                .keys
                .iter()
                .filter(|key| key.kid.as_deref() == Some(kid.as_str()))
                .peekable();
            let anonymous = keys
                .keys
                .iter()
                .filter(|key| key.kid.is_none() && key.fits(alg));
            if named.peek().is_none() && anonymous.clone().next().is_none() {
                return Err(Failure::UnknownKid);
            }
            named
                .filter(|key| key.fits(alg))
                .chain(anonymous)
                .take(MAX_SIGNATURE_CHECKS)
                .collect()
        }
        None => keys
            .keys
            .iter()
            .filter(|key| key.fits(alg))
            .take(MAX_SIGNATURE_CHECKS)
            .collect(),
    };
    if candidates.is_empty() {
        return Err(Failure::NoFittingKey);
    }
    if candidates.iter().any(|key| crypto.check(alg, key, token)) {
        Ok(())
    } else {
        Err(Failure::BadSignature)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::cell::RefCell;

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use jwt_simple::prelude::*;
    use serde_json::{json, Value};

    use super::*;
    use crate::jose::token::{parse, NumericDate};

    const ISSUER: &str = "https://issuer.example";
    use crate::keys::jwks::parse_jwks;
    use crate::keys::jwks::test_support::*;

    /// A SignatureCheck that records which keys it was asked about, then checks in pure Rust.
    #[derive(Default)]
    struct RecordingCrypto {
        checked: RefCell<Vec<Option<String>>>,
    }

    impl SignatureCheck for RecordingCrypto {
        fn check(&self, alg: Alg, key: &Key, token: &crate::jose::token::Token<'_>) -> bool {
            assert!(key.fits(alg), "a key that does not fit reached the crypto");
            self.checked.borrow_mut().push(key.kid.clone());
            PureRustCrypto.check(alg, key, token)
        }
    }

    fn key_set(jwks: Vec<Value>) -> KeySet {
        let (set, skipped) = parse_jwks(&crate::keys::jwks::test_support::jwks(jwks)).unwrap();
        assert!(skipped.is_empty(), "{skipped:?}");
        set
    }

    fn signature(raw: &str, keys: &KeySet) -> Result<(), Failure> {
        check_signature(&parse(raw).unwrap(), keys, &PureRustCrypto)
    }

    fn test_claims() -> JWTClaims<NoCustomClaims> {
        Claims::create(Duration::from_hours(1))
            .with_issuer(ISSUER)
            .with_audience("api")
    }

    fn rsa_pair<P>(from_pem: fn(&str) -> Result<P, jwt_simple::Error>, pem: &str) -> P {
        from_pem(pem).unwrap()
    }

    // RS256, RS384, RS512, PS256, PS384 and PS512 tokens verify with the matching RSA key.
    #[test]
    fn valid_rsa_signatures() {
        let keys = key_set(vec![rsa_jwk(RSA_A_PEM, json!({"kid": "a"}))]);
        let tokens = [
            rsa_pair(RS256KeyPair::from_pem, RSA_A_PEM)
                .with_key_id("a")
                .sign(test_claims())
                .unwrap(),
            rsa_pair(RS384KeyPair::from_pem, RSA_A_PEM)
                .with_key_id("a")
                .sign(test_claims())
                .unwrap(),
            rsa_pair(RS512KeyPair::from_pem, RSA_A_PEM)
                .with_key_id("a")
                .sign(test_claims())
                .unwrap(),
            rsa_pair(PS256KeyPair::from_pem, RSA_A_PEM)
                .with_key_id("a")
                .sign(test_claims())
                .unwrap(),
            rsa_pair(PS384KeyPair::from_pem, RSA_A_PEM)
                .with_key_id("a")
                .sign(test_claims())
                .unwrap(),
            rsa_pair(PS512KeyPair::from_pem, RSA_A_PEM)
                .with_key_id("a")
                .sign(test_claims())
                .unwrap(),
        ];
        for raw in &tokens {
            assert_eq!(
                signature(raw, &keys),
                Ok(()),
                "{}",
                parse(raw).unwrap().header.alg.name()
            );
        }
        let keys_3072 = key_set(vec![rsa_jwk(RSA_3072_PEM, json!({}))]);
        let raw = rsa_pair(RS256KeyPair::from_pem, RSA_3072_PEM)
            .sign(test_claims())
            .unwrap();
        assert_eq!(signature(&raw, &keys_3072), Ok(()));
    }

    // ES256, ES384 and EdDSA tokens verify with the matching key.
    #[test]
    fn valid_ec_and_eddsa_signatures() {
        let p256 = ES256KeyPair::generate().with_key_id("p256");
        let p384 = ES384KeyPair::generate().with_key_id("p384");
        let ed = Ed25519KeyPair::generate().with_key_id("ed");
        let keys = key_set(vec![
            p256_jwk(&p256, json!({"kid": "p256"})),
            p384_jwk(&p384, json!({"kid": "p384"})),
            ed25519_jwk(&ed, json!({"kid": "ed"})),
        ]);
        assert_eq!(signature(&p256.sign(test_claims()).unwrap(), &keys), Ok(()));
        assert_eq!(signature(&p384.sign(test_claims()).unwrap(), &keys), Ok(()));
        assert_eq!(signature(&ed.sign(test_claims()).unwrap(), &keys), Ok(()));
    }

    /// Replaces the payload segment of `raw`.
    fn with_payload_segment(raw: &str, payload_segment: &str) -> String {
        let parts: Vec<&str> = raw.split('.').collect();
        format!("{}.{}.{}", parts[0], payload_segment, parts[2])
    }

    // A token whose payload was changed after signing fails verification.
    #[test]
    fn tampered_payload_fails() {
        let pair = ES256KeyPair::generate();
        let keys = key_set(vec![p256_jwk(&pair, json!({}))]);
        let raw = pair.sign(test_claims().with_subject("alice")).unwrap();
        let payload = parse(&raw).unwrap().claims;
        let mut forged = Value::Object(payload);
        forged["sub"] = json!("mallory");
        let tampered = with_payload_segment(&raw, &URL_SAFE_NO_PAD.encode(forged.to_string()));
        assert_eq!(signature(&tampered, &keys), Err(Failure::BadSignature));
    }

    // The same claims encoded differently (whitespace, member order) fail: the signature covers
    // the raw received bytes, not the JSON they mean.
    #[test]
    fn equivalent_reencoded_payload_fails() {
        let pair = rsa_pair(RS256KeyPair::from_pem, RSA_A_PEM);
        let keys = key_set(vec![rsa_jwk(RSA_A_PEM, json!({}))]);
        let raw = pair.sign(test_claims()).unwrap();
        assert_eq!(signature(&raw, &keys), Ok(()));
        let original = parse(&raw).unwrap();
        let claims = Value::Object(original.claims.clone());
        let pretty = serde_json::to_string_pretty(&claims).unwrap();
        let spaced = with_payload_segment(&raw, &URL_SAFE_NO_PAD.encode(&pretty));
        assert_eq!(parse(&spaced).unwrap().claims, original.claims);
        assert_eq!(signature(&spaced, &keys), Err(Failure::BadSignature));
        let mut members: Vec<_> = original.claims.iter().collect();
        members.reverse();
        let reordered: String = format!(
            "{{{}}}",
            members
                .iter()
                .map(|(name, value)| format!("{}:{}", json!(name), value))
                .collect::<Vec<_>>()
                .join(",")
        );
        let reordered = with_payload_segment(&raw, &URL_SAFE_NO_PAD.encode(reordered));
        assert_eq!(parse(&reordered).unwrap().claims, original.claims);
        assert_eq!(signature(&reordered, &keys), Err(Failure::BadSignature));
    }

    // An ES256 token never reaches RSA keys, nor an RS256 token an EC key: no crypto runs.
    #[test]
    fn key_type_must_fit_before_crypto() {
        let rsa_keys = key_set(vec![
            rsa_jwk(RSA_A_PEM, json!({"kid": "a"})),
            rsa_jwk(RSA_B_PEM, json!({})),
        ]);
        let es256 = ES256KeyPair::generate().sign(test_claims()).unwrap();
        let crypto = RecordingCrypto::default();
        assert_eq!(
            check_signature(&parse(&es256).unwrap(), &rsa_keys, &crypto),
            Err(Failure::NoFittingKey)
        );
        let pair = ES256KeyPair::generate();
        let ec_keys = key_set(vec![p256_jwk(&pair, json!({"kid": "a"}))]);
        let rs256 = rsa_pair(RS256KeyPair::from_pem, RSA_A_PEM)
            .with_key_id("a")
            .sign(test_claims())
            .unwrap();
        assert_eq!(
            check_signature(&parse(&rs256).unwrap(), &ec_keys, &crypto),
            Err(Failure::NoFittingKey)
        );
        // ES384 does not fit a P-256 key either.
        let es384 = ES384KeyPair::generate().sign(test_claims()).unwrap();
        assert_eq!(
            check_signature(&parse(&es384).unwrap(), &ec_keys, &crypto),
            Err(Failure::NoFittingKey)
        );
        assert!(crypto.checked.borrow().is_empty());
    }

    // With a kid, only the keys carrying it are tried, and the right one verifies.
    #[test]
    fn kid_selects_the_key() {
        let p256 = ES256KeyPair::generate();
        let keys = key_set(vec![
            rsa_jwk(RSA_A_PEM, json!({"kid": "a"})),
            rsa_jwk(RSA_B_PEM, json!({"kid": "b"})),
            p256_jwk(&p256, json!({"kid": "c"})),
        ]);
        let signed_by_b = rsa_pair(RS256KeyPair::from_pem, RSA_B_PEM)
            .with_key_id("b")
            .sign(test_claims())
            .unwrap();
        let crypto = RecordingCrypto::default();
        assert_eq!(
            check_signature(&parse(&signed_by_b).unwrap(), &keys, &crypto),
            Ok(())
        );
        assert_eq!(*crypto.checked.borrow(), [Some("b".to_string())]);

        // Signed by a but claiming b: only b is tried, so it fails.
        let lying = rsa_pair(RS256KeyPair::from_pem, RSA_A_PEM)
            .with_key_id("b")
            .sign(test_claims())
            .unwrap();
        let crypto = RecordingCrypto::default();
        assert_eq!(
            check_signature(&parse(&lying).unwrap(), &keys, &crypto),
            Err(Failure::BadSignature)
        );
        assert_eq!(*crypto.checked.borrow(), [Some("b".to_string())]);
    }

    // A kid that is not in the set is UnknownKid (a refetch may help); a kid naming a key of
    // another type is NoFittingKey.
    #[test]
    fn unknown_kid_and_misfitting_kid() {
        let p256 = ES256KeyPair::generate();
        let keys = key_set(vec![
            rsa_jwk(RSA_A_PEM, json!({"kid": "a"})),
            p256_jwk(&p256, json!({"kid": "c"})),
        ]);
        let unknown = rsa_pair(RS256KeyPair::from_pem, RSA_B_PEM)
            .with_key_id("z")
            .sign(test_claims())
            .unwrap();
        assert_eq!(signature(&unknown, &keys), Err(Failure::UnknownKid));
        let misfit = rsa_pair(RS256KeyPair::from_pem, RSA_A_PEM)
            .with_key_id("c")
            .sign(test_claims())
            .unwrap();
        assert_eq!(signature(&misfit, &keys), Err(Failure::NoFittingKey));
        let empty = KeySet::default();
        assert_eq!(signature(&unknown, &empty), Err(Failure::UnknownKid));
    }

    // A key without a kid may verify a token with any kid (jwt_authn does the same); a key with
    // another kid never does.
    #[test]
    fn key_without_kid_verifies_token_with_kid() {
        let keys = key_set(vec![
            rsa_jwk(RSA_A_PEM, json!({"kid": "a"})),
            rsa_jwk(RSA_B_PEM, json!({})),
        ]);
        let by_b = rsa_pair(RS256KeyPair::from_pem, RSA_B_PEM)
            .with_key_id("z")
            .sign(test_claims())
            .unwrap();
        assert_eq!(signature(&by_b, &keys), Ok(()));
        let by_a_other_kid = rsa_pair(RS256KeyPair::from_pem, RSA_A_PEM)
            .with_key_id("z")
            .sign(test_claims())
            .unwrap();
        assert_eq!(
            signature(&by_a_other_kid, &keys),
            Err(Failure::BadSignature)
        );
    }

    // Several keys may share a kid; each of them is tried.
    #[test]
    fn shared_kid_tries_each_key() {
        let keys = key_set(vec![
            rsa_jwk(RSA_A_PEM, json!({"kid": "same"})),
            rsa_jwk(RSA_B_PEM, json!({"kid": "same"})),
        ]);
        let raw = rsa_pair(RS256KeyPair::from_pem, RSA_B_PEM)
            .with_key_id("same")
            .sign(test_claims())
            .unwrap();
        let crypto = RecordingCrypto::default();
        assert_eq!(
            check_signature(&parse(&raw).unwrap(), &keys, &crypto),
            Ok(())
        );
        assert_eq!(crypto.checked.borrow().len(), 2);
    }

    // Without a kid every fitting key is tried, and only fitting ones.
    #[test]
    fn kidless_token_tries_every_fitting_key() {
        let p256 = ES256KeyPair::generate();
        let keys = key_set(vec![
            p256_jwk(&p256, json!({"kid": "ec"})),
            rsa_jwk(RSA_A_PEM, json!({"kid": "a"})),
            rsa_jwk(RSA_B_PEM, json!({"kid": "b"})),
        ]);
        let raw = rsa_pair(RS256KeyPair::from_pem, RSA_B_PEM)
            .sign(test_claims())
            .unwrap();
        assert_eq!(parse(&raw).unwrap().header.kid, None);
        let crypto = RecordingCrypto::default();
        assert_eq!(
            check_signature(&parse(&raw).unwrap(), &keys, &crypto),
            Ok(())
        );
        assert_eq!(
            *crypto.checked.borrow(),
            [Some("a".to_string()), Some("b".to_string())]
        );

        let stranger = ES256KeyPair::generate().sign(test_claims()).unwrap();
        let crypto = RecordingCrypto::default();
        assert_eq!(
            check_signature(&parse(&stranger).unwrap(), &keys, &crypto),
            Err(Failure::BadSignature)
        );
        assert_eq!(*crypto.checked.borrow(), [Some("ec".to_string())]);
    }

    // A forged token costs at most MAX_SIGNATURE_CHECKS checks, with or without a kid, whatever
    // the number of keys that fit it: 21 fitting P-256 keys without kid, none of which signed it.
    #[test]
    fn signature_checks_per_token_are_bounded() {
        let many: Vec<Value> = (0..21)
            .map(|_| p256_jwk(&ES256KeyPair::generate(), json!({})))
            .collect();
        let keys = key_set(many);
        let forged_kidless = ES256KeyPair::generate().sign(test_claims()).unwrap();
        let forged_with_kid = ES256KeyPair::generate()
            .with_key_id("anything")
            .sign(test_claims())
            .unwrap();
        for forged in [forged_kidless, forged_with_kid] {
            let crypto = RecordingCrypto::default();
            assert_eq!(
                check_signature(&parse(&forged).unwrap(), &keys, &crypto),
                Err(Failure::BadSignature)
            );
            assert_eq!(crypto.checked.borrow().len(), MAX_SIGNATURE_CHECKS);
        }
    }

    // A JWK that pins alg only verifies tokens of that alg.
    #[test]
    fn jwk_alg_pinning() {
        let ps256 = rsa_pair(PS256KeyPair::from_pem, RSA_A_PEM)
            .sign(test_claims())
            .unwrap();
        let pinned_rs256 = key_set(vec![rsa_jwk(RSA_A_PEM, json!({"alg": "RS256"}))]);
        assert_eq!(signature(&ps256, &pinned_rs256), Err(Failure::NoFittingKey));
        let pinned_ps256 = key_set(vec![rsa_jwk(RSA_A_PEM, json!({"alg": "PS256"}))]);
        assert_eq!(signature(&ps256, &pinned_ps256), Ok(()));
        let unpinned = key_set(vec![rsa_jwk(RSA_A_PEM, json!({}))]);
        assert_eq!(signature(&ps256, &unpinned), Ok(()));
    }

    // A signature made with one RSA padding does not pass as the other.
    #[test]
    fn rs_and_ps_are_not_interchangeable() {
        let keys = key_set(vec![rsa_jwk(RSA_A_PEM, json!({}))]);
        let rs256 = rsa_pair(RS256KeyPair::from_pem, RSA_A_PEM)
            .sign(test_claims())
            .unwrap();
        let parts: Vec<&str> = rs256.split('.').collect();
        let ps_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"PS256","typ":"JWT"}"#);
        let relabelled = format!("{ps_header}.{}.{}", parts[1], parts[2]);
        assert_eq!(signature(&relabelled, &keys), Err(Failure::BadSignature));
    }

    #[derive(Serialize, Deserialize)]
    struct Times {
        exp: u64,
        nbf: u64,
        iat: u64,
    }

    // The signature check never refuses a token for its times: they belong to check_claims alone.
    #[test]
    fn signature_check_ignores_times() {
        let pair = ES256KeyPair::generate();
        let keys = key_set(vec![p256_jwk(&pair, json!({}))]);
        let max = i64::MAX as u64;
        for (exp, nbf, iat) in [(0, max, max), (1, 0, 0), (max, max, 0)] {
            let mut claims =
                Claims::with_custom_claims(Times { exp, nbf, iat }, Duration::from_secs(1));
            claims.expires_at = None;
            claims.invalid_before = None;
            claims.issued_at = None;
            let raw = pair.sign(claims).unwrap();
            let token = parse(&raw).unwrap();
            assert_eq!(token.registered.exp, Some(NumericDate::whole(exp)));
            assert_eq!(
                check_signature(&token, &keys, &PureRustCrypto),
                Ok(()),
                "{exp} {nbf} {iat}"
            );
        }
    }

    // A typ ending in +jwt passes token::parse and the signature check.
    #[test]
    fn at_jwt_type_verifies() {
        let pair = ES256KeyPair::generate();
        let keys = key_set(vec![p256_jwk(&pair, json!({}))]);
        let raw = pair
            .sign_with_options(
                test_claims(),
                &HeaderOptions {
                    signature_type: Some("at+jwt".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(parse(&raw).unwrap().header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(signature(&raw, &keys), Ok(()));
    }

    // PureRustCrypto refuses a key that does not fit the alg even if asked directly.
    #[test]
    fn pure_rust_crypto_refuses_misfit() {
        let pair = ES256KeyPair::generate();
        let keys = key_set(vec![p256_jwk(&pair, json!({}))]);
        let raw = pair.sign(test_claims()).unwrap();
        let token = parse(&raw).unwrap();
        assert!(PureRustCrypto.check(Alg::ES256, &keys.keys[0], &token));
        assert!(!PureRustCrypto.check(Alg::ES384, &keys.keys[0], &token));
        assert!(!PureRustCrypto.check(Alg::RS256, &keys.keys[0], &token));
    }

    // Writes the RSA test keys once; RSA key generation is too slow to repeat on every run.
    #[test]
    #[ignore = "writes tests/fixtures/keys/; run once by hand"]
    fn generate_rsa_fixture_keys() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bits) in [
            ("rsa-2048-a.pem", 2048),
            ("rsa-2048-b.pem", 2048),
            ("rsa-3072.pem", 3072),
        ] {
            let pem = RS256KeyPair::generate(bits).unwrap().to_pem().unwrap();
            std::fs::write(dir.join(name), pem).unwrap();
        }
    }
}
