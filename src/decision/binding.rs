//! Sender-constrained tokens: a token bound to a key (DPoP, RFC 9449) or to a client certificate
//! (RFC 8705) works only for the client that holds that key or certificate.
//!
//! Two steps. Before the token is verified, how it was presented is checked against the provider
//! (a `DPoP` proof with a `Bearer` token, a `Bearer` token where DPoP is required, a missing or
//! repeated proof): cheap refusals that need no signature. After it is verified, from the cache or
//! not, its `cnf` claim is checked against this request: the certificate of this connection, and
//! this request's proof. A proof is made for one request, so nothing here is cached; the replay
//! check comes last, so only a proof that passed everything else uses up its `jti`.

use serde_json::{Map, Value};

use super::proof::{self, ProofRules, ProofTarget};
use super::replay::{self, ProofUse};
use crate::config::provider::{DPOP_SCHEME_HEADER, DPOP_SCHEME_PREFIX};
use crate::config::{BindingMode, DpopPolicy, Provider};
use crate::crypto::verify::SignatureCheck;
use crate::failure::Failure;
use crate::jose::thumbprint::certificate_thumbprint_from_hex;
use crate::keys::shared::SharedData;
use crate::request::extract::TokenSource;
use crate::request::Request;

/// The request header carrying a DPoP proof.
pub const PROOF_HEADER: &str = "dpop";

/// How a token was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scheme {
    /// `Authorization: DPoP <token>`.
    Dpop,
    /// Any other source: `Authorization: Bearer`, another header, a query parameter.
    Bearer,
}

impl Scheme {
    pub(super) fn of(source: &TokenSource) -> Scheme {
        match source {
            TokenSource::Header { name, value_prefix }
                if name == DPOP_SCHEME_HEADER
                    && value_prefix.eq_ignore_ascii_case(DPOP_SCHEME_PREFIX) =>
            {
                Scheme::Dpop
            }
            _ => Scheme::Bearer,
        }
    }
}

/// What the binding checks need besides the token.
pub(super) struct BindingContext<'a> {
    pub(super) request: &'a Request,
    /// The request's normalized path, as it goes upstream (no query).
    pub(super) upstream_path: &'a str,
    /// Seconds since the epoch.
    pub(super) now: u64,
    pub(super) crypto: &'a dyn SignatureCheck,
    pub(super) shared: &'a mut dyn SharedData,
}

/// The checks that need no verified token: whether this presentation fits the provider.
pub(super) fn check_presentation(
    provider: &Provider,
    scheme: Scheme,
    request: &Request,
) -> Result<(), Failure> {
    let Some(dpop) = &provider.binding.dpop else {
        return Ok(());
    };
    match scheme {
        Scheme::Bearer => {
            if request.header_values(PROOF_HEADER).next().is_some() {
                return Err(Failure::DpopProofWithBearer);
            }
            if dpop.mode == BindingMode::Required {
                return Err(Failure::DpopRequired);
            }
            Ok(())
        }
        Scheme::Dpop => single_proof(request).map(|_| ()),
    }
}

/// The request's one DPoP proof. Every value counts: two headers, or two proofs joined by a
/// comma (no JWT holds one), are refused.
fn single_proof(request: &Request) -> Result<&str, Failure> {
    let mut values = request.header_values(PROOF_HEADER);
    let proof = values.next().ok_or(Failure::DpopProofMissing)?;
    if values.next().is_some() || proof.contains(',') {
        return Err(Failure::DpopProofRepeated);
    }
    let proof = proof.trim_matches([' ', '\t']);
    if proof.is_empty() {
        return Err(Failure::DpopProofMissing);
    }
    Ok(proof)
}

/// The checks on a verified token's `cnf` claim against this request.
pub(super) fn check_binding(
    provider: &Provider,
    scheme: Scheme,
    token: &str,
    claims: &Map<String, Value>,
    context: &mut BindingContext<'_>,
) -> Result<(), Failure> {
    let confirmation = claims.get("cnf").and_then(Value::as_object);
    let member = |name: &str| confirmation.and_then(|cnf| cnf.get(name)?.as_str());
    if let Some(mode) = provider.binding.mtls {
        check_certificate(mode, member("x5t#S256"), context.request)?;
    }
    let bound_key = member("jkt");
    match (scheme, &provider.binding.dpop) {
        // RFC 9449 §7.2: a DPoP-bound token is never a bearer token, whoever is asked.
        (Scheme::Bearer, _) if bound_key.is_some() => Err(Failure::DpopBoundTokenAsBearer),
        (Scheme::Bearer, _) => Ok(()),
        (Scheme::Dpop, Some(dpop)) => check_proof(dpop, token, bound_key, context),
        // No provider reads the DPoP scheme without a DPoP policy.
        (Scheme::Dpop, None) => Err(Failure::DpopTokenNotBound),
    }
}

/// RFC 8705 §3: the token's `x5t#S256` must be the SHA-256 of this connection's client
/// certificate. Envoy gives the digest in hex, the claim is base64url.
fn check_certificate(
    mode: BindingMode,
    bound_certificate: Option<&str>,
    request: &Request,
) -> Result<(), Failure> {
    let Some(bound_certificate) = bound_certificate else {
        return match mode {
            BindingMode::Required => Err(Failure::CertificateNotBound),
            BindingMode::Allowed => Ok(()),
        };
    };
    let presented = request
        .peer_certificate_sha256
        .as_deref()
        .filter(|digest| !digest.is_empty())
        .ok_or(Failure::CertificateMissing)?;
    match certificate_thumbprint_from_hex(presented) {
        Some(thumbprint) if thumbprint == bound_certificate => Ok(()),
        _ => Err(Failure::CertificateMismatch),
    }
}

fn check_proof(
    dpop: &DpopPolicy,
    token: &str,
    bound_key: Option<&str>,
    context: &mut BindingContext<'_>,
) -> Result<(), Failure> {
    let proof = single_proof(context.request)?;
    let url =
        expected_url(dpop, context.request, context.upstream_path).ok_or(Failure::DpopProofUrl)?;
    let target = ProofTarget {
        method: &context.request.method,
        url: &url,
        access_token: token,
    };
    let rules = ProofRules {
        algorithms: &dpop.algorithms,
        max_age_seconds: dpop.max_age_seconds,
        clock_skew_seconds: dpop.clock_skew_seconds,
    };
    let checked = proof::check(proof, &target, &rules, context.now, context.crypto)?;
    let bound_key = bound_key.ok_or(Failure::DpopTokenNotBound)?;
    if bound_key != checked.key_thumbprint {
        return Err(Failure::DpopKeyMismatch);
    }
    let expires_at = checked
        .issued_at
        .saturating_add(dpop.max_age_seconds)
        .saturating_add(dpop.clock_skew_seconds);
    let proof_use = ProofUse {
        key_thumbprint: &checked.key_thumbprint,
        jti: &checked.jti,
        expires_at,
    };
    let slots = replay::slots_for(dpop.replay_cache_size);
    replay::remember(context.shared, &proof_use, slots, context.now)
}

/// The URL a proof's `htu` must name: `external_url_base` or the request's scheme and authority,
/// then the normalized path. `None` when the request does not say its scheme or authority.
fn expected_url(dpop: &DpopPolicy, request: &Request, upstream_path: &str) -> Option<String> {
    if let Some(base) = &dpop.external_url_base {
        return Some(format!("{base}{upstream_path}"));
    }
    let scheme = request.header_values(":scheme").next()?;
    if request.authority.is_empty() {
        return None;
    }
    Some(format!("{scheme}://{}{upstream_path}", request.authority))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use ed25519_compact::KeyPair;
    use serde_json::json;

    use super::super::fixture::{jws, pair, public_jwk, Fixture, ISSUER};
    use super::super::{Decision, Denial};
    use super::*;
    use crate::config::Config;
    use crate::jose::thumbprint::{access_token_hash, key_thumbprint};

    const NOW: u64 = 1_700_000_000;
    const HOST: &str = "models.example.com";
    const PATH: &str = "/v1/models/fraud:predict";

    fn thumbprint(pair: &KeyPair) -> String {
        key_thumbprint(public_jwk(pair).as_object().unwrap()).unwrap()
    }

    /// The fixture's provider with the members of `binding`, behind one catch-all rule.
    fn fixture(binding: Value) -> Fixture {
        let mut provider =
            json!({"claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}]});
        for (name, value) in binding.as_object().unwrap() {
            provider[name] = value.clone();
        }
        Fixture::new(
            provider,
            json!({"rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}]}),
        )
    }

    fn dpop(mode: &str) -> Value {
        json!({"dpop": {"mode": mode}})
    }

    /// An access token with this `cnf` (none when null).
    fn token_with(f: &Fixture, cnf: Value) -> String {
        let mut claims = json!({"iss": ISSUER, "aud": "kserve", "sub": "svc-1",
                                "iat": NOW, "exp": NOW + 300});
        if !cnf.is_null() {
            claims["cnf"] = cnf;
        }
        f.token(&claims)
    }

    fn proof_claims(token: &str, jti: &str) -> Value {
        json!({"htm": "POST", "htu": format!("https://{HOST}{PATH}"), "iat": NOW, "jti": jti,
               "ath": access_token_hash(token)})
    }

    fn proof(holder: &KeyPair, claims: &Value) -> String {
        let header = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": public_jwk(holder)});
        jws(&header, claims, holder)
    }

    fn request(headers: &[(&str, &str)]) -> Request {
        let mut all = vec![
            (":method".to_owned(), "POST".to_owned()),
            (":scheme".to_owned(), "https".to_owned()),
            (":path".to_owned(), PATH.to_owned()),
            (":authority".to_owned(), HOST.to_owned()),
        ];
        all.extend(headers.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        Request {
            method: "POST".into(),
            path: PATH.into(),
            authority: HOST.into(),
            headers: all,
            ..Request::default()
        }
    }

    fn dpop_request(token: &str, proof: &str) -> Request {
        request(&[("authorization", &format!("DPoP {token}")), ("dpop", proof)])
    }

    fn denied(decision: &Decision) -> &Denial {
        match decision {
            Decision::Deny(denial) => denial,
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    fn challenges(denial: &Denial) -> Vec<&str> {
        denial
            .headers
            .iter()
            .filter(|(name, _)| name == "www-authenticate")
            .map(|(_, value)| value.as_str())
            .collect()
    }

    fn refused(decision: &Decision, failure: Failure) -> &Denial {
        let denial = denied(decision);
        assert_eq!(denial.failure, failure, "{denial:?}");
        denial
    }

    // A DPoP-bound token with a good proof passes; the token and the proof do not go upstream.
    #[test]
    fn a_bound_token_with_its_proof_passes() {
        let mut f = fixture(dpop("required"));
        let holder = pair(2);
        let token = token_with(&f, json!({"jkt": thumbprint(&holder)}));
        let decision = f.decide(
            &dpop_request(&token, &proof(&holder, &proof_claims(&token, "j1"))),
            NOW,
        );
        let Decision::Allow(allow) = decision else {
            panic!("{decision:?}")
        };
        assert!(allow.remove_headers.contains(&"authorization".to_owned()));
        assert!(allow.remove_headers.contains(&"dpop".to_owned()));
        assert!(allow
            .set_headers
            .iter()
            .any(|(n, v)| &**n == "x-jwt-sub" && &**v == "svc-1"));
    }

    // The verified-token cache never vouches for a proof: a cached token still needs a fresh
    // one, and a used proof is a replay.
    #[test]
    fn every_request_needs_its_own_proof() {
        let mut f = fixture(dpop("required"));
        let holder = pair(2);
        let token = token_with(&f, json!({"jkt": thumbprint(&holder)}));
        let first = proof(&holder, &proof_claims(&token, "j1"));
        assert!(matches!(
            f.decide(&dpop_request(&token, &first), NOW),
            Decision::Allow(_)
        ));
        let replayed = f.decide(&dpop_request(&token, &first), NOW + 1);
        let denial = refused(&replayed, Failure::DpopProofReplayed);
        assert_eq!(denial.status, 401);
        let without = request(&[("authorization", &format!("DPoP {token}"))]);
        refused(&f.decide(&without, NOW + 1), Failure::DpopProofMissing);
        let second = proof(&holder, &proof_claims(&token, "j2"));
        assert!(matches!(
            f.decide(&dpop_request(&token, &second), NOW + 1),
            Decision::Allow(_)
        ));
    }

    // Binding mismatches are invalid tokens; proof faults are invalid proofs. Each answer names
    // its error in the DPoP challenge, with the algorithms proofs may use.
    #[test]
    fn refusals_and_their_challenges() {
        let mut f = fixture(dpop("required"));
        let holder = pair(2);
        let thief = pair(3);
        let token = token_with(&f, json!({"jkt": thumbprint(&holder)}));
        // A proof by another key than the token's.
        let other_key = f.decide(
            &dpop_request(&token, &proof(&thief, &proof_claims(&token, "j1"))),
            NOW,
        );
        let denial = refused(&other_key, Failure::DpopKeyMismatch);
        assert_eq!(denial.status, 401);
        assert_eq!(
            challenges(denial),
            [format!(
                "DPoP realm=\"{HOST}\", error=\"invalid_token\", error_description=\"Jwt cnf.jkt \
                 does not match the DPoP proof key\", algs=\"RS256 RS384 RS512 PS256 PS384 \
                 PS512 ES256 ES384 EdDSA\""
            )]
        );
        // A bound token sent as Bearer.
        let as_bearer = f.decide(
            &request(&[("authorization", &format!("Bearer {token}"))]),
            NOW,
        );
        refused(&as_bearer, Failure::DpopRequired);
        // An unbound token sent with the DPoP scheme.
        let unbound = token_with(&f, Value::Null);
        let decision = f.decide(
            &dpop_request(&unbound, &proof(&holder, &proof_claims(&unbound, "j2"))),
            NOW,
        );
        refused(&decision, Failure::DpopTokenNotBound);
        // A proof for another request.
        let mut claims = proof_claims(&token, "j3");
        claims["htm"] = json!("GET");
        let decision = f.decide(&dpop_request(&token, &proof(&holder, &claims)), NOW);
        let denial = refused(&decision, Failure::DpopProofMethod);
        assert!(challenges(denial)[0].contains("error=\"invalid_dpop_proof\""));
        // Two proofs, as two headers or joined.
        let good = proof(&holder, &proof_claims(&token, "j4"));
        let two = request(&[
            ("authorization", &format!("DPoP {token}")),
            ("dpop", &good),
            ("dpop", &good),
        ]);
        refused(&f.decide(&two, NOW), Failure::DpopProofRepeated);
        let joined = dpop_request(&token, &format!("{good},{good}"));
        refused(&f.decide(&joined, NOW), Failure::DpopProofRepeated);
        // No token at all: both nothing and a bare DPoP challenge.
        let missing = f.decide(&request(&[]), NOW);
        let denial = refused(&missing, Failure::Missing);
        assert_eq!(challenges(denial).len(), 1);
        assert!(challenges(denial)[0].starts_with("DPoP realm="));
        assert!(!challenges(denial)[0].contains("error="));
    }

    // Where DPoP is allowed, unbound Bearer tokens pass as before; a bound one does not, nor a
    // proof sent with a Bearer token. Both challenges appear, the error in the fitting one.
    #[test]
    fn allowed_mode_keeps_bearer_tokens_working() {
        let mut f = fixture(dpop("allowed"));
        let holder = pair(2);
        let unbound = token_with(&f, Value::Null);
        let bearer = request(&[("authorization", &format!("Bearer {unbound}"))]);
        assert!(matches!(f.decide(&bearer, NOW), Decision::Allow(_)));
        let bound = token_with(&f, json!({"jkt": thumbprint(&holder)}));
        let decision = f.decide(
            &request(&[("authorization", &format!("Bearer {bound}"))]),
            NOW,
        );
        let denial = refused(&decision, Failure::DpopBoundTokenAsBearer);
        let both = challenges(denial);
        assert_eq!(both.len(), 2);
        assert_eq!(both[0], format!("Bearer realm=\"{HOST}\""));
        assert!(both[1].starts_with("DPoP realm="));
        assert!(both[1].contains("error=\"invalid_token\""));
        let with_proof = request(&[
            ("authorization", &format!("Bearer {unbound}")),
            ("dpop", &proof(&holder, &proof_claims(&unbound, "j1"))),
        ]);
        refused(&f.decide(&with_proof, NOW), Failure::DpopProofWithBearer);
        // A plain token failure on a Bearer request keeps its error in the Bearer challenge.
        let expired = f.decide(&bearer, NOW + 10_000);
        let denial = refused(&expired, Failure::Expired);
        assert!(challenges(denial)[0].contains("error=\"invalid_token\""));
        assert!(!challenges(denial)[1].contains("error="));
    }

    // A provider without DPoP still never takes a DPoP-bound token as a bearer token.
    #[test]
    fn a_bound_token_is_never_a_bearer_token() {
        let mut f = fixture(json!({}));
        let bound = token_with(&f, json!({"jkt": thumbprint(&pair(2))}));
        let decision = f.decide(
            &request(&[("authorization", &format!("Bearer {bound}"))]),
            NOW,
        );
        refused(&decision, Failure::DpopBoundTokenAsBearer);
    }

    // htu is built from :scheme, :authority and the normalized path, or from external_url_base.
    #[test]
    fn the_proof_names_the_url_clients_use() {
        let holder = pair(2);
        let mut f = fixture(dpop("required"));
        let token = token_with(&f, json!({"jkt": thumbprint(&holder)}));
        let mut claims = proof_claims(&token, "j1");
        claims["htu"] = json!(format!("http://{HOST}{PATH}"));
        let decision = f.decide(&dpop_request(&token, &proof(&holder, &claims)), NOW);
        refused(&decision, Failure::DpopProofUrl);
        // The same path spelled with a dot segment and an escaped unreserved character.
        claims["htu"] = json!(format!("https://{HOST}/v1/./models/fr%61ud:predict"));
        let decision = f.decide(&dpop_request(&token, &proof(&holder, &claims)), NOW);
        assert!(matches!(decision, Decision::Allow(_)), "{decision:?}");

        let mut f = fixture(json!({"dpop": {"mode": "required",
                                            "external_url_base": "https://api.example.com/ml/"}}));
        let token = token_with(&f, json!({"jkt": thumbprint(&holder)}));
        let mut claims = proof_claims(&token, "j1");
        let decision = f.decide(&dpop_request(&token, &proof(&holder, &claims)), NOW);
        refused(&decision, Failure::DpopProofUrl);
        claims["htu"] = json!(format!("https://api.example.com/ml{PATH}"));
        let decision = f.decide(&dpop_request(&token, &proof(&holder, &claims)), NOW);
        assert!(matches!(decision, Decision::Allow(_)), "{decision:?}");
    }

    // The proof's window is exact: max_age plus skew old, skew ahead.
    #[test]
    fn proof_age_edges() {
        let holder = pair(2);
        let mut f = fixture(json!({"dpop": {"mode": "required", "max_age": "30s",
                                            "clock_skew_seconds": 2}}));
        let token = token_with(&f, json!({"jkt": thumbprint(&holder)}));
        let at = |f: &mut Fixture, iat: u64, jti: &str| {
            let mut claims = proof_claims(&token, jti);
            claims["iat"] = json!(iat);
            f.decide(&dpop_request(&token, &proof(&holder, &claims)), NOW + 100)
        };
        assert!(matches!(at(&mut f, NOW + 68, "a"), Decision::Allow(_)));
        refused(&at(&mut f, NOW + 67, "b"), Failure::DpopProofIssuedAt);
        assert!(matches!(at(&mut f, NOW + 102, "c"), Decision::Allow(_)));
        refused(&at(&mut f, NOW + 103, "d"), Failure::DpopProofIssuedAt);
    }

    /// The hex digest Envoy reports for a certificate whose SHA-256 is `bytes`.
    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    // A certificate-bound token passes only on a connection with that certificate; both hex
    // spellings of one digest match the base64url claim.
    #[test]
    fn certificate_bound_tokens() {
        let digest = [0xabu8; 32];
        let mut f = fixture(json!({"mtls_binding": "required"}));
        assert!(f.config.reads_peer_certificate);
        let token = token_with(&f, json!({"x5t#S256": URL_SAFE_NO_PAD.encode(digest)}));
        let with_certificate = |certificate: Option<String>| {
            let mut request = request(&[("authorization", &format!("Bearer {token}"))]);
            request.peer_certificate_sha256 = certificate;
            request
        };
        for spelling in [hex(&digest), hex(&digest).to_uppercase()] {
            let decision = f.decide(&with_certificate(Some(spelling)), NOW);
            assert!(matches!(decision, Decision::Allow(_)), "{decision:?}");
        }
        let other = with_certificate(Some(hex(&[0xcd; 32])));
        let mismatch = f.decide(&other, NOW);
        let denial = refused(&mismatch, Failure::CertificateMismatch);
        assert_eq!(denial.status, 401);
        assert!(challenges(denial)[0].contains("error=\"invalid_token\""));
        refused(
            &f.decide(&with_certificate(None), NOW),
            Failure::CertificateMissing,
        );
        refused(
            &f.decide(&with_certificate(Some("zz".into())), NOW),
            Failure::CertificateMismatch,
        );
        // Required: an unbound token is refused even with a certificate.
        let unbound = token_with(&f, Value::Null);
        let mut request = request(&[("authorization", &format!("Bearer {unbound}"))]);
        request.peer_certificate_sha256 = Some(hex(&digest));
        refused(&f.decide(&request, NOW), Failure::CertificateNotBound);
        // Allowed: it passes, and a bound one is still checked.
        let mut f = fixture(json!({"mtls_binding": "allowed"}));
        assert!(matches!(f.decide(&request, NOW), Decision::Allow(_)));
        let bound = token_with(&f, json!({"x5t#S256": URL_SAFE_NO_PAD.encode([0xcd; 32])}));
        let mut request = request.clone();
        request.headers.retain(|(name, _)| name != "authorization");
        request
            .headers
            .push(("authorization".into(), format!("Bearer {bound}")));
        refused(&f.decide(&request, NOW), Failure::CertificateMismatch);
    }

    // Configuration errors name the field.
    #[test]
    fn configuration_errors_name_the_field() {
        let error = |binding: Value| {
            let mut provider = json!({"issuer": "https://idp.test", "audiences": ["kserve"],
                                      "local_jwks": {"inline_string": "{\"keys\": []}"}});
            for (name, value) in binding.as_object().unwrap() {
                provider[name] = value.clone();
            }
            Config::from_json(
                json!({"providers": {"idp": provider},
                       "rules": [{"match": {"prefix": "/"},
                                  "requires": {"provider_name": "idp"}}]})
                .to_string()
                .as_bytes(),
            )
            .unwrap_err()
            .to_string()
        };
        let cases = [
            (
                json!({"dpop": {"mode": "sometimes"}}),
                "providers.idp.dpop.mode",
            ),
            (json!({"dpop": {}}), "providers.idp.dpop.mode"),
            (
                json!({"dpop": {"mode": "required", "max_age": "0s"}}),
                "providers.idp.dpop.max_age",
            ),
            (
                json!({"dpop": {"mode": "required", "max_age": "301s"}}),
                "providers.idp.dpop.max_age",
            ),
            (
                json!({"dpop": {"mode": "required", "algorithms": ["HS256"]}}),
                "providers.idp.dpop.algorithms[0]",
            ),
            (
                json!({"dpop": {"mode": "required", "external_url_base": "models.example.com"}}),
                "providers.idp.dpop.external_url_base",
            ),
            (
                json!({"dpop": {"mode": "required", "replay_cache_size": 10}}),
                "providers.idp.dpop.replay_cache_size",
            ),
            (
                json!({"dpop": {"mode": "required", "nonce": true}}),
                "providers.idp.dpop.nonce",
            ),
            (json!({"mtls_binding": "yes"}), "providers.idp.mtls_binding"),
        ];
        for (binding, field) in cases {
            let message = error(binding.clone());
            assert!(
                message.starts_with(&format!("invalid configuration: {field}: ")),
                "{binding}: {message}"
            );
        }
    }
}
