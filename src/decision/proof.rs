//! DPoP proofs (RFC 9449): the signed statement, made fresh by the client for each request, that it
//! holds the private key its access token is bound to.
//!
//! A proof is a JWT whose header carries the client's public key (`jwk`) and whose claims name the
//! request (`htm`, `htu`), its time (`iat`), a unique id (`jti`) and the access token (`ath`).
//! Only for proofs is an embedded key trusted, and only to check the proof itself: the token's
//! `cnf.jkt` must then name that key by its RFC 7638 thumbprint, which ties the proof to the
//! token.

use serde_json::Value;

use crate::crypto::verify::SignatureCheck;
use crate::failure::Failure;
use crate::jose::alg::Alg;
use crate::jose::thumbprint::{access_token_hash, key_thumbprint};
use crate::jose::token::{self, NumericDate};
use crate::keys::jwks::parse_jwk;
use crate::policy::token_policy::normal_token_type;
use crate::request::path;

/// The longest `jti` accepted; RFC 9449 asks for enough randomness, not for length.
const MAX_JTI_BYTES: usize = 256;

/// What a provider accepts in a proof.
#[derive(Debug, Clone, Copy)]
pub struct ProofRules<'a> {
    /// Algorithms a proof may be signed with (all asymmetric).
    pub algorithms: &'a [Alg],
    /// How old a proof's `iat` may be, in seconds.
    pub max_age_seconds: u64,
    /// Allowed clock difference either way, in seconds.
    pub clock_skew_seconds: u64,
}

/// The request a proof must be about.
#[derive(Debug, Clone, Copy)]
pub struct ProofTarget<'a> {
    /// The request's method.
    pub method: &'a str,
    /// The request's URL without query and fragment: scheme, authority and normalized path (as
    /// [`path::normalize`] gives it for upstream).
    pub url: &'a str,
    /// The access token presented with the proof.
    pub access_token: &'a str,
}

/// A proof that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedProof {
    /// RFC 7638 thumbprint of the proof's key, for the token's `cnf.jkt`.
    pub key_thumbprint: String,
    /// The proof's `jti`, for replay detection.
    pub jti: String,
    /// The proof's `iat` (whole seconds).
    pub issued_at: u64,
}

/// Checks `proof` for `target` at `now` (seconds). Cheap checks come first, so a proof that fails
/// them costs no signature check; the signature is checked with the embedded key only.
pub fn check(
    proof: &str,
    target: &ProofTarget<'_>,
    rules: &ProofRules<'_>,
    now: u64,
    crypto: &dyn SignatureCheck,
) -> Result<CheckedProof, Failure> {
    let parsed = token::parse_proof(proof).map_err(|failure| match failure {
        Failure::AlgNotAllowed => Failure::DpopProofAlgorithm,
        _ => Failure::DpopProofMalformed,
    })?;
    if parsed
        .header
        .typ
        .as_deref()
        .map(normal_token_type)
        .as_deref()
        != Some("dpop+jwt")
    {
        return Err(Failure::DpopProofType);
    }
    let alg = parsed.header.alg;
    if !rules.algorithms.contains(&alg) {
        return Err(Failure::DpopProofAlgorithm);
    }
    let claim = |name: &str| parsed.claims.get(name).and_then(Value::as_str);
    if claim("htm") != Some(target.method) {
        return Err(Failure::DpopProofMethod);
    }
    if !claim("htu").is_some_and(|htu| same_url(htu, target.url)) {
        return Err(Failure::DpopProofUrl);
    }
    let issued_at = parsed.registered.iat.ok_or(Failure::DpopProofIssuedAt)?;
    if !fresh(issued_at, now, rules) {
        return Err(Failure::DpopProofIssuedAt);
    }
    if claim("ath") != Some(access_token_hash(target.access_token).as_str()) {
        return Err(Failure::DpopProofTokenHash);
    }
    let jti = claim("jti")
        .filter(|jti| !jti.is_empty() && jti.len() <= MAX_JTI_BYTES)
        .ok_or(Failure::DpopProofId)?;
    let jwk = parsed.header.jwk.as_ref().ok_or(Failure::DpopProofKey)?;
    let key = parse_jwk(jwk).map_err(|_| Failure::DpopProofKey)?;
    if !key.fits(alg) {
        return Err(Failure::DpopProofKey);
    }
    let jwk_members = jwk.as_object().ok_or(Failure::DpopProofKey)?;
    let key_thumbprint = key_thumbprint(jwk_members).map_err(|_| Failure::DpopProofKey)?;
    if !crypto.check(alg, &key, &parsed) {
        return Err(Failure::DpopProofSignature);
    }
    Ok(CheckedProof {
        key_thumbprint,
        jti: jti.to_owned(),
        issued_at: issued_at.floor(),
    })
}

/// `iat` no older than the window and no later than now, each give or take the skew.
fn fresh(issued_at: NumericDate, now: u64, rules: &ProofRules<'_>) -> bool {
    let oldest = now.saturating_sub(
        rules
            .max_age_seconds
            .saturating_add(rules.clock_skew_seconds),
    );
    let latest = now.saturating_add(rules.clock_skew_seconds);
    issued_at.floor() >= oldest && issued_at.ceil() <= latest
}

/// Whether a proof's `htu` names `expected` (scheme, authority and normalized path, no query or
/// fragment): scheme and host compared without case and with their default port left out, the
/// path after the same normalization the request's path went through (RFC 9449 §4.3 asks for
/// RFC 3986 §6.2.2 and §6.2.3 normalization). An `htu` with a query or fragment is refused: RFC
/// 9449 defines it without them.
fn same_url(htu: &str, expected: &str) -> bool {
    if htu.contains(['?', '#']) {
        return false;
    }
    match (url_parts(htu), url_parts(expected)) {
        (Some((scheme, authority, path)), Some((want_scheme, want_authority, want_path))) => {
            scheme.eq_ignore_ascii_case(want_scheme)
                && authority.eq_ignore_ascii_case(want_authority)
                && path::normalize(path).is_ok_and(|normal| normal.upstream == want_path)
        }
        _ => false,
    }
}

/// Scheme, authority without its default port, and path (`/` when empty).
fn url_parts(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (rest.get(..slash)?, rest.get(slash..)?),
        None => (rest, "/"),
    };
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        ":443"
    } else if scheme.eq_ignore_ascii_case("http") {
        ":80"
    } else {
        return None;
    };
    let authority = authority.strip_suffix(default_port).unwrap_or(authority);
    (!authority.is_empty()).then_some((scheme, authority, path))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::super::fixture::{jws as proof, pair as key_pair, public_jwk};
    use super::*;
    use crate::crypto::verify::PureRustCrypto;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use ed25519_compact::KeyPair;
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;
    const TOKEN: &str = "eyJ.access.token";
    const URL: &str = "https://models.example.com/v1/models/fraud:predict";
    const RULES: ProofRules<'static> = ProofRules {
        algorithms: &[Alg::EdDSA, Alg::ES256],
        max_age_seconds: 60,
        clock_skew_seconds: 5,
    };

    fn claims() -> Value {
        json!({"htm": "POST", "htu": URL, "iat": NOW, "jti": "e1j3V_bKic8-LAEB",
               "ath": access_token_hash(TOKEN)})
    }

    fn good_header(pair: &KeyPair) -> Value {
        json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": public_jwk(pair)})
    }

    fn target() -> ProofTarget<'static> {
        ProofTarget {
            method: "POST",
            url: URL,
            access_token: TOKEN,
        }
    }

    fn checked(proof: &str) -> Result<CheckedProof, Failure> {
        check(proof, &target(), &RULES, NOW, &PureRustCrypto)
    }

    // A good proof passes and names its key by thumbprint, its jti and its time.
    #[test]
    fn a_good_proof() {
        let pair = key_pair(1);
        let result = checked(&proof(&good_header(&pair), &claims(), &pair)).unwrap();
        let jwk = public_jwk(&pair);
        assert_eq!(
            result.key_thumbprint,
            key_thumbprint(jwk.as_object().unwrap()).unwrap()
        );
        assert_eq!(result.jti, "e1j3V_bKic8-LAEB");
        assert_eq!(result.issued_at, NOW);
    }

    // Each claim that does not fit the request gets its own refusal.
    #[test]
    fn claims_must_fit_the_request() {
        let pair = key_pair(2);
        let with = |change: Value| {
            let mut claims = claims();
            for (name, value) in change.as_object().unwrap() {
                if value.is_null() {
                    claims.as_object_mut().unwrap().remove(name);
                } else {
                    claims[name] = value.clone();
                }
            }
            checked(&proof(&good_header(&pair), &claims, &pair))
        };
        assert_eq!(with(json!({"htm": "GET"})), Err(Failure::DpopProofMethod));
        assert_eq!(with(json!({"htm": null})), Err(Failure::DpopProofMethod));
        assert_eq!(
            with(json!({"htu": "https://models.example.com/v1/models/churn:predict"})),
            Err(Failure::DpopProofUrl)
        );
        assert_eq!(
            with(json!({"htu": format!("{URL}?x=1")})),
            Err(Failure::DpopProofUrl)
        );
        assert_eq!(
            with(json!({"htu": format!("{URL}#f")})),
            Err(Failure::DpopProofUrl)
        );
        assert_eq!(
            with(json!({"iat": NOW - 66})),
            Err(Failure::DpopProofIssuedAt)
        );
        assert_eq!(
            with(json!({"iat": NOW + 6})),
            Err(Failure::DpopProofIssuedAt)
        );
        assert_eq!(with(json!({"iat": null})), Err(Failure::DpopProofIssuedAt));
        assert_eq!(
            with(json!({"ath": access_token_hash("another.access.token")})),
            Err(Failure::DpopProofTokenHash)
        );
        assert_eq!(with(json!({"ath": null})), Err(Failure::DpopProofTokenHash));
        assert_eq!(with(json!({"jti": null})), Err(Failure::DpopProofId));
        assert_eq!(with(json!({"jti": ""})), Err(Failure::DpopProofId));
        assert_eq!(
            with(json!({"jti": "j".repeat(257)})),
            Err(Failure::DpopProofId)
        );
    }

    // The window's edges are exact: 60 s old plus 5 s skew passes, one second more does not.
    #[test]
    fn issued_at_window_edges() {
        let pair = key_pair(3);
        let at = |iat: u64| {
            let mut claims = claims();
            claims["iat"] = json!(iat);
            checked(&proof(&good_header(&pair), &claims, &pair))
        };
        assert!(at(NOW - 65).is_ok());
        assert_eq!(at(NOW - 66), Err(Failure::DpopProofIssuedAt));
        assert!(at(NOW + 5).is_ok());
        assert_eq!(at(NOW + 6), Err(Failure::DpopProofIssuedAt));
    }

    // htu: scheme and host without case, default ports, exact path.
    #[test]
    fn htu_spellings() {
        assert!(same_url(
            "HTTPS://Models.Example.com/a",
            "https://models.example.com/a"
        ));
        assert!(same_url(
            "https://models.example.com:443/a",
            "https://models.example.com/a"
        ));
        assert!(same_url("http://h:80/", "http://h"));
        assert!(!same_url(
            "https://models.example.com/A",
            "https://models.example.com/a"
        ));
        assert!(!same_url(
            "http://models.example.com/a",
            "https://models.example.com/a"
        ));
        assert!(!same_url(
            "https://models.example.com:8443/a",
            "https://models.example.com/a"
        ));
        assert!(!same_url("ftp://h/a", "ftp://h/a"));
        assert!(!same_url("https:///a", "https:///a"));
    }

    // The header: typ, alg, and a public key that signed the proof.
    #[test]
    fn header_and_key() {
        let pair = key_pair(4);
        let other = key_pair(5);
        let header = |change: Value| {
            let mut header = good_header(&pair);
            for (name, value) in change.as_object().unwrap() {
                if value.is_null() {
                    header.as_object_mut().unwrap().remove(name);
                } else {
                    header[name] = value.clone();
                }
            }
            header
        };
        let signed = |header: Value| checked(&proof(&header, &claims(), &pair));
        assert_eq!(
            signed(header(json!({"typ": "JWT"}))),
            Err(Failure::DpopProofType)
        );
        assert_eq!(
            signed(header(json!({"typ": null}))),
            Err(Failure::DpopProofType)
        );
        assert!(signed(header(json!({"typ": "application/dpop+jwt"}))).is_ok());
        assert_eq!(
            signed(header(json!({"alg": "HS256"}))),
            Err(Failure::DpopProofAlgorithm)
        );
        assert_eq!(
            signed(header(json!({"alg": "none"}))),
            Err(Failure::DpopProofAlgorithm)
        );
        assert_eq!(
            signed(header(json!({"alg": "RS256"}))),
            Err(Failure::DpopProofAlgorithm)
        );
        assert_eq!(
            signed(header(json!({"jwk": null}))),
            Err(Failure::DpopProofKey)
        );
        let mut private = public_jwk(&pair);
        private["d"] = json!(URL_SAFE_NO_PAD.encode([7u8; 32]));
        assert_eq!(
            signed(header(json!({"jwk": private}))),
            Err(Failure::DpopProofKey)
        );
        let symmetric = json!({"kty": "oct", "k": "c2VjcmV0"});
        assert_eq!(
            signed(header(json!({"jwk": symmetric}))),
            Err(Failure::DpopProofKey)
        );
        // Signed by another key than the one it carries.
        assert_eq!(
            checked(&proof(&good_header(&pair), &claims(), &other)),
            Err(Failure::DpopProofSignature)
        );
        assert_eq!(checked("not.a.proof"), Err(Failure::DpopProofMalformed));
        assert_eq!(checked(""), Err(Failure::DpopProofMalformed));
    }
}
