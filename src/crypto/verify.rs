//! One token, one provider, one key set and `now` → accepted, or one reason why not.

use ed25519_compact::{PublicKey as Ed25519PublicKey, Signature as Ed25519Signature};
use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use p256::elliptic_curve::point::AffineCoordinates as _;

use crate::config::{normal_token_type, Provider};
use crate::crypto::rsa::{self, Hash};
use crate::failure::Failure;
use crate::jose::token::{NumericDate, Token};
use crate::keys::jwks::{self, Alg, Key, KeyMaterial, KeySet};

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
    RSA_MODULUS_BITS.contains(&jwks::bit_length(n)) && rsa::PublicKey::acceptable(n, e)
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

/// The checks that need no key: algorithm allowed, `iss`, `aud`, `typ` and `azp` when the
/// provider restricts them, times, lifetime. They run first,
/// so a token that fails them never costs a signature check or a key refetch.
///
/// Times follow Envoy's jwt_authn: a token is expired only once `now > exp + skew`, so it is still
/// valid at exactly `exp + skew`. All arithmetic saturates.
pub fn check_claims(token: &Token<'_>, provider: &Provider, now: u64) -> Result<(), Failure> {
    if !provider.algorithms.contains(&token.header.alg) {
        return Err(Failure::AlgNotAllowed);
    }
    if !token
        .registered
        .iss
        .as_deref()
        .is_some_and(|iss| provider.accepts_issuer(iss))
    {
        return Err(Failure::IssuerNotConfigured);
    }
    if !token
        .registered
        .aud
        .iter()
        .any(|aud| provider.audiences.contains(aud))
    {
        return Err(Failure::AudienceNotAllowed);
    }
    if !provider.allowed_types.is_empty() {
        let typ = token.header.typ.as_deref().map(normal_token_type);
        if !typ.is_some_and(|typ| provider.allowed_types.contains(&typ)) {
            return Err(Failure::TypeNotAllowed);
        }
    }
    if !provider.allowed_authorized_parties.is_empty() {
        let azp = token.claims.get("azp").and_then(serde_json::Value::as_str);
        if !azp.is_some_and(|azp| provider.allowed_authorized_parties.iter().any(|p| p == azp)) {
            return Err(Failure::AuthorizedPartyNotAllowed);
        }
    }

    let skew = provider.clock_skew_seconds;
    let registered = &token.registered;
    // `now` is whole seconds: a fractional `exp` is compared by its floor and `nbf`/`iat` by
    // their ceiling, which is exact (see NumericDate).
    match registered.exp {
        None if provider.require_expiration => return Err(Failure::ExpirationMissing),
        Some(exp) if now > exp.floor().saturating_add(skew) => return Err(Failure::Expired),
        _ => {}
    }
    let latest_acceptable_start = now.saturating_add(skew);
    if registered
        .nbf
        .is_some_and(|nbf| nbf.ceil() > latest_acceptable_start)
    {
        return Err(Failure::NotYetValid);
    }
    if registered
        .iat
        .is_some_and(|iat| iat.ceil() > latest_acceptable_start)
    {
        return Err(Failure::IssuedInFuture);
    }
    if let (Some(max), Some(exp)) = (provider.max_lifetime_seconds, registered.exp) {
        let start = registered
            .iat
            .or(registered.nbf)
            .unwrap_or(NumericDate::whole(now));
        if exp.exceeds_after(start, max) {
            return Err(Failure::LifetimeTooLong);
        }
    }
    Ok(())
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
    use crate::config::KeySource;
    use crate::jose::token::parse;
    use crate::keys::jwks::parse_jwks;
    use crate::keys::jwks::test_support::*;

    const ISSUER: &str = "https://issuer.example";

    fn provider() -> Provider {
        Provider {
            name: "test".into(),
            issuer: ISSUER.into(),
            audiences: vec!["api".into(), "other".into()],
            algorithms: Alg::ALL.to_vec(),
            keys: KeySource::Local {
                jwks: String::new(),
            },
            token_sources: Vec::new(),
            forward: false,
            forward_payload_header: None,
            claim_to_headers: Vec::new(),
            clock_skew_seconds: 60,
            max_lifetime_seconds: None,
            require_expiration: true,
            jwt_cache_size: 10_000,
            allowed_types: Vec::new(),
            allowed_authorized_parties: Vec::new(),
            alternate_issuers: Vec::new(),
            identity: Default::default(),
        }
    }

    /// An unsigned token (dummy signature) with this header and payload; enough for claims.
    fn unsigned(header: &Value, payload: &Value) -> String {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        )
    }

    /// check_claims on an RS256 token with `payload`.
    fn claims(payload: Value, provider: &Provider, now: u64) -> Result<(), Failure> {
        let raw = unsigned(&json!({"alg": "RS256"}), &payload);
        check_claims(&parse(&raw).unwrap(), provider, now)
    }

    /// A payload that passes every check at `now` = 1000 with the default provider.
    fn good_payload() -> Value {
        json!({"iss": ISSUER, "aud": "api", "exp": 2000, "iat": 900, "nbf": 900})
    }

    fn with(mut payload: Value, name: &str, value: Value) -> Value {
        payload[name] = value;
        payload
    }

    fn without(mut payload: Value, name: &str) -> Value {
        payload.as_object_mut().unwrap().remove(name);
        payload
    }

    // A token meeting every claim check is accepted.
    #[test]
    fn claims_accepted() {
        assert_eq!(claims(good_payload(), &provider(), 1000), Ok(()));
    }

    // The token's alg must be one the provider allows.
    #[test]
    fn alg_must_be_allowed() {
        let provider = Provider {
            algorithms: vec![Alg::ES256],
            ..provider()
        };
        assert_eq!(
            claims(good_payload(), &provider, 1000),
            Err(Failure::AlgNotAllowed)
        );
    }

    // iss must equal the configured issuer exactly; a missing iss is wrong too.
    #[test]
    fn issuer_must_match_exactly() {
        for iss in [
            json!("https://issuer.example/"),
            json!("HTTPS://ISSUER.EXAMPLE"),
            json!("https://other.example"),
            json!(""),
        ] {
            assert_eq!(
                claims(with(good_payload(), "iss", iss.clone()), &provider(), 1000),
                Err(Failure::IssuerNotConfigured),
                "{iss}"
            );
        }
        assert_eq!(
            claims(without(good_payload(), "iss"), &provider(), 1000),
            Err(Failure::IssuerNotConfigured)
        );
    }

    // Every listed issuer spelling is accepted exactly; anything else is not.
    #[test]
    fn alternate_issuers_accepted() {
        let provider = Provider {
            alternate_issuers: vec!["issuer.example".into()],
            ..provider()
        };
        for iss in [ISSUER, "issuer.example"] {
            assert_eq!(
                claims(with(good_payload(), "iss", json!(iss)), &provider, 1000),
                Ok(()),
                "{iss}"
            );
        }
        for iss in [
            "ISSUER.EXAMPLE",
            "issuer.example/",
            "https://issuer.example/",
        ] {
            assert_eq!(
                claims(with(good_payload(), "iss", json!(iss)), &provider, 1000),
                Err(Failure::IssuerNotConfigured),
                "{iss}"
            );
        }
    }

    // aud must contain one of the provider's audiences; missing or empty aud is refused.
    #[test]
    fn audience_must_match() {
        for aud in [json!(["x", "other"]), json!("other"), json!(["api"])] {
            assert_eq!(
                claims(with(good_payload(), "aud", aud.clone()), &provider(), 1000),
                Ok(()),
                "{aud}"
            );
        }
        for aud in [json!("API"), json!(["x", "y"]), json!([]), json!("")] {
            assert_eq!(
                claims(with(good_payload(), "aud", aud.clone()), &provider(), 1000),
                Err(Failure::AudienceNotAllowed),
                "{aud}"
            );
        }
        assert_eq!(
            claims(without(good_payload(), "aud"), &provider(), 1000),
            Err(Failure::AudienceNotAllowed)
        );
    }

    // Checks run in order: alg, then iss, then aud, then times.
    #[test]
    fn check_order() {
        let everything_wrong = json!({"iss": "x", "aud": "x", "exp": 1});
        let only_es256 = Provider {
            algorithms: vec![Alg::ES256],
            ..provider()
        };
        assert_eq!(
            claims(everything_wrong.clone(), &only_es256, 1000),
            Err(Failure::AlgNotAllowed)
        );
        assert_eq!(
            claims(everything_wrong, &provider(), 1000),
            Err(Failure::IssuerNotConfigured)
        );
        assert_eq!(
            claims(
                json!({"iss": ISSUER, "aud": "x", "exp": 1}),
                &provider(),
                1000
            ),
            Err(Failure::AudienceNotAllowed)
        );
        // Expired wins over not-yet-valid and issued-in-future.
        let all_times_wrong =
            json!({"iss": ISSUER, "aud": "api", "exp": 1, "nbf": 5000, "iat": 5000});
        assert_eq!(
            claims(all_times_wrong, &provider(), 1000),
            Err(Failure::Expired)
        );
        let future = json!({"iss": ISSUER, "aud": "api", "exp": 9000, "nbf": 5000, "iat": 5000});
        assert_eq!(claims(future, &provider(), 1000), Err(Failure::NotYetValid));
    }

    /// check_claims on an RS256 token with header member `typ` (absent when `None`).
    fn with_typ(typ: Option<&str>, provider: &Provider) -> Result<(), Failure> {
        let header = match typ {
            Some(typ) => json!({"alg": "RS256", "typ": typ}),
            None => json!({"alg": "RS256"}),
        };
        check_claims(
            &parse(&unsigned(&header, &good_payload())).unwrap(),
            provider,
            1000,
        )
    }

    // allowed_types accepts the listed typ values in any case and with or without
    // `application/`; another typ, or none, is refused as invalid.
    #[test]
    fn typ_must_be_allowed() {
        let access_tokens = Provider {
            allowed_types: vec!["at+jwt".into()],
            ..provider()
        };
        for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
            assert_eq!(with_typ(Some(typ), &access_tokens), Ok(()), "{typ}");
        }
        for typ in [Some("JWT"), Some("id+jwt"), None] {
            assert_eq!(
                with_typ(typ, &access_tokens),
                Err(Failure::TypeNotAllowed),
                "{typ:?}"
            );
        }
        assert_eq!(with_typ(None, &provider()), Ok(()));
        assert_eq!(with_typ(Some("id+jwt"), &provider()), Ok(()));
    }

    // allowed_authorized_parties needs a string azp from the list; a missing or non-string azp
    // is refused.
    #[test]
    fn azp_must_be_allowed() {
        let kserve_clients = Provider {
            allowed_authorized_parties: vec!["fraud-svc".into(), "churn-svc".into()],
            ..provider()
        };
        let payload = |azp: Value| with(good_payload(), "azp", azp);
        assert_eq!(
            claims(payload(json!("churn-svc")), &kserve_clients, 1000),
            Ok(())
        );
        for azp in [
            json!("other"),
            json!("FRAUD-SVC"),
            json!(["fraud-svc"]),
            json!(1),
        ] {
            assert_eq!(
                claims(payload(azp.clone()), &kserve_clients, 1000),
                Err(Failure::AuthorizedPartyNotAllowed),
                "{azp}"
            );
        }
        assert_eq!(
            claims(good_payload(), &kserve_clients, 1000),
            Err(Failure::AuthorizedPartyNotAllowed)
        );
        assert_eq!(claims(payload(json!("other")), &provider(), 1000), Ok(()));
    }

    // exp is required when the provider says so, optional otherwise.
    #[test]
    fn expiration_required() {
        assert_eq!(
            claims(without(good_payload(), "exp"), &provider(), 1000),
            Err(Failure::ExpirationMissing)
        );
        let lenient = Provider {
            require_expiration: false,
            jwt_cache_size: 10_000,
            ..provider()
        };
        assert_eq!(
            claims(without(good_payload(), "exp"), &lenient, 1000),
            Ok(())
        );
    }

    // Expired iff now > exp + skew: valid at exp + skew - 1 and exp + skew, expired one later.
    #[test]
    fn exp_boundary() {
        let payload = with(good_payload(), "exp", json!(2000));
        assert_eq!(claims(payload.clone(), &provider(), 2059), Ok(()));
        assert_eq!(claims(payload.clone(), &provider(), 2060), Ok(()));
        assert_eq!(
            claims(payload.clone(), &provider(), 2061),
            Err(Failure::Expired)
        );
        let no_skew = Provider {
            clock_skew_seconds: 0,
            ..provider()
        };
        assert_eq!(claims(payload.clone(), &no_skew, 1999), Ok(()));
        assert_eq!(claims(payload.clone(), &no_skew, 2000), Ok(()));
        assert_eq!(claims(payload, &no_skew, 2001), Err(Failure::Expired));
    }

    // Fractional times are judged exactly against the whole-second clock: exp 2000.5 is valid at
    // 2000 + skew and expired one second later; nbf 1500.5 is valid only from 1501 - skew.
    #[test]
    fn fractional_time_boundaries() {
        let lenient = Provider {
            clock_skew_seconds: 0,
            ..provider()
        };
        let payload = with(good_payload(), "exp", json!(2000.5));
        assert_eq!(claims(payload.clone(), &lenient, 2000), Ok(()));
        assert_eq!(claims(payload, &lenient, 2001), Err(Failure::Expired));
        let payload = without(with(good_payload(), "nbf", json!(1500.5)), "iat");
        assert_eq!(
            claims(payload.clone(), &lenient, 1500),
            Err(Failure::NotYetValid)
        );
        assert_eq!(claims(payload, &lenient, 1501), Ok(()));
        let payload = without(with(good_payload(), "iat", json!(1500.25)), "nbf");
        assert_eq!(
            claims(payload.clone(), &lenient, 1500),
            Err(Failure::IssuedInFuture)
        );
        assert_eq!(claims(payload, &lenient, 1501), Ok(()));
    }

    // Not yet valid iff nbf > now + skew: refused at nbf - skew - 1, valid from nbf - skew.
    #[test]
    fn nbf_boundary() {
        let payload = without(with(good_payload(), "nbf", json!(1500)), "iat");
        assert_eq!(
            claims(payload.clone(), &provider(), 1439),
            Err(Failure::NotYetValid)
        );
        assert_eq!(claims(payload.clone(), &provider(), 1440), Ok(()));
        assert_eq!(claims(payload, &provider(), 1441), Ok(()));
    }

    // Issued in the future iff iat > now + skew: refused at iat - skew - 1, valid from iat - skew.
    #[test]
    fn iat_boundary() {
        let payload = without(with(good_payload(), "iat", json!(1500)), "nbf");
        assert_eq!(
            claims(payload.clone(), &provider(), 1439),
            Err(Failure::IssuedInFuture)
        );
        assert_eq!(claims(payload.clone(), &provider(), 1440), Ok(()));
        assert_eq!(claims(payload, &provider(), 1441), Ok(()));
    }

    // Lifetime exp - iat may equal the maximum but not exceed it.
    #[test]
    fn max_lifetime_boundary_with_iat() {
        let provider = Provider {
            max_lifetime_seconds: Some(3600),
            ..provider()
        };
        for (exp, expected) in [
            (900 + 3599, Ok(())),
            (900 + 3600, Ok(())),
            (900 + 3601, Err(Failure::LifetimeTooLong)),
        ] {
            let payload = with(good_payload(), "exp", json!(exp));
            assert_eq!(claims(payload, &provider, 1000), expected, "exp {exp}");
        }
    }

    // Without iat the lifetime starts at nbf; without either it starts now.
    #[test]
    fn max_lifetime_start() {
        let provider = Provider {
            max_lifetime_seconds: Some(3600),
            ..provider()
        };
        let from_nbf = without(good_payload(), "iat");
        assert_eq!(
            claims(with(from_nbf.clone(), "exp", json!(4500)), &provider, 1000),
            Ok(())
        );
        assert_eq!(
            claims(with(from_nbf, "exp", json!(4501)), &provider, 1000),
            Err(Failure::LifetimeTooLong)
        );
        let from_now = without(without(good_payload(), "iat"), "nbf");
        assert_eq!(
            claims(with(from_now.clone(), "exp", json!(4600)), &provider, 1000),
            Ok(())
        );
        assert_eq!(
            claims(with(from_now, "exp", json!(4601)), &provider, 1000),
            Err(Failure::LifetimeTooLong)
        );
        // iat takes precedence over nbf.
        let both = json!({"iss": ISSUER, "aud": "api", "iat": 500, "nbf": 1000, "exp": 4101});
        assert_eq!(claims(both, &provider, 1000), Err(Failure::LifetimeTooLong));
        // No lifetime limit without exp.
        let lenient = Provider {
            require_expiration: false,
            jwt_cache_size: 10_000,
            ..provider
        };
        assert_eq!(
            claims(without(good_payload(), "exp"), &lenient, 1000),
            Ok(())
        );
    }

    // Extreme values saturate instead of overflowing or panicking.
    #[test]
    fn extreme_times_do_not_overflow() {
        // The largest time a token may carry; skew and `now` go all the way to u64::MAX.
        let max = i64::MAX as u64;
        let huge_skew = Provider {
            clock_skew_seconds: u64::MAX,
            max_lifetime_seconds: Some(u64::MAX),
            ..provider()
        };
        let payload = json!({"iss": ISSUER, "aud": "api", "exp": max, "nbf": max, "iat": max});
        assert_eq!(claims(payload.clone(), &huge_skew, u64::MAX), Ok(()));
        assert_eq!(claims(payload.clone(), &huge_skew, 0), Ok(()));
        assert_eq!(claims(payload, &provider(), max), Ok(()));
        let limited = Provider {
            max_lifetime_seconds: Some(3600),
            ..provider()
        };
        let forever = json!({"iss": ISSUER, "aud": "api", "exp": max, "iat": 0});
        assert_eq!(claims(forever, &limited, 0), Err(Failure::LifetimeTooLong));
        let past = json!({"iss": ISSUER, "aud": "api", "exp": 0, "iat": max});
        assert_eq!(
            claims(past, &huge_skew, u64::MAX),
            Ok(()),
            "exp + skew saturates at u64::MAX, and now == u64::MAX is not after it"
        );
    }

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
