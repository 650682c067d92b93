//! jwt-simple's whole-token verification, the reference the pure-Rust signature check
//! (`verify::verify_signature`) is compared with.

use jwt_simple::prelude::{
    Duration, ECDSAP256PublicKeyLike as _, ECDSAP384PublicKeyLike as _, ES256PublicKey,
    ES384PublicKey, Ed25519PublicKey, EdDSAPublicKeyLike as _, NoCustomClaims, PS256PublicKey,
    PS384PublicKey, PS512PublicKey, RS256PublicKey, RS384PublicKey, RS512PublicKey,
    RSAPublicKeyLike as _, UnixTimeStamp, VerificationOptions,
};
use jwt_simple::JWTError;
use kserve_auth_filter::crypto::key::{Key, KeyMaterial};
use kserve_auth_filter::jose::alg::Alg;

/// jwt-simple's `verify_token` of the compact token `raw` with `key` as `alg`. Its claim checks
/// are neutralised (times, issuer, audience and the like belong to `token_policy::check_claims`), so an
/// error comes from the header, the key, the signature or the claims' JSON.
pub fn verify(alg: Alg, key: &Key, raw: &str) -> Result<(), jwt_simple::Error> {
    let options = Some(neutral_options());
    match (&key.material, alg) {
        (KeyMaterial::Rsa { n, e }, Alg::RS256) => {
            RS256PublicKey::from_components(n, e)?.verify_token::<NoCustomClaims>(raw, options)?;
        }
        (KeyMaterial::Rsa { n, e }, Alg::RS384) => {
            RS384PublicKey::from_components(n, e)?.verify_token::<NoCustomClaims>(raw, options)?;
        }
        (KeyMaterial::Rsa { n, e }, Alg::RS512) => {
            RS512PublicKey::from_components(n, e)?.verify_token::<NoCustomClaims>(raw, options)?;
        }
        (KeyMaterial::Rsa { n, e }, Alg::PS256) => {
            PS256PublicKey::from_components(n, e)?.verify_token::<NoCustomClaims>(raw, options)?;
        }
        (KeyMaterial::Rsa { n, e }, Alg::PS384) => {
            PS384PublicKey::from_components(n, e)?.verify_token::<NoCustomClaims>(raw, options)?;
        }
        (KeyMaterial::Rsa { n, e }, Alg::PS512) => {
            PS512PublicKey::from_components(n, e)?.verify_token::<NoCustomClaims>(raw, options)?;
        }
        (KeyMaterial::P256 { point }, Alg::ES256) => {
            ES256PublicKey::from_bytes(point)?.verify_token::<NoCustomClaims>(raw, options)?;
        }
        (KeyMaterial::P384 { point }, Alg::ES384) => {
            ES384PublicKey::from_bytes(point)?.verify_token::<NoCustomClaims>(raw, options)?;
        }
        (KeyMaterial::Ed25519 { public }, Alg::EdDSA) => {
            Ed25519PublicKey::from_bytes(public)?.verify_token::<NoCustomClaims>(raw, options)?;
        }
        _ => return Err(JWTError::AlgorithmMismatch.into()),
    }
    Ok(())
}

/// Whether jwt-simple accepted the signature of `raw`, even when it then refused the payload as
/// claims.
///
/// jwt-simple verifies in this order: header JSON, header checks, signature decoding, signature,
/// claims base64, claims JSON, claims checks (neutralised). Only header and claims parsing fail
/// with a `serde_json::Error`; so once the header is known to parse, a `serde_json::Error` means
/// the signature was verified and the claims were refused.
pub fn signature_accepted(alg: Alg, key: &Key, raw: &str) -> bool {
    match verify(alg, key, raw) {
        Ok(()) => true,
        Err(error) => {
            jwt_simple::token::Token::decode_metadata(raw).is_ok()
                && error.downcast_ref::<serde_json::Error>().is_some()
        }
    }
}

/// Options under which jwt-simple checks the signature and nothing else a test could trip over:
/// no required claims, `now` fixed at 0 with no tolerance (so `exp` never fails and the clock is
/// never read), future tokens accepted.
fn neutral_options() -> VerificationOptions {
    VerificationOptions {
        reject_before: None,
        accept_future: true,
        required_subject: None,
        required_key_id: None,
        required_signature_type: None,
        required_content_type: None,
        required_nonce: None,
        allowed_issuers: None,
        allowed_audiences: None,
        time_tolerance: Some(Duration::from_secs(0)),
        artificial_time: Some(UnixTimeStamp::from_secs(0)),
        max_validity: None,
        max_token_length: Some(kserve_auth_filter::jose::token::MAX_TOKEN_BYTES),
        max_header_length: Some(kserve_auth_filter::jose::token::MAX_TOKEN_BYTES),
    }
}
