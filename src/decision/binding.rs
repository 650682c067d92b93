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
    let url = expected_url(dpop, context.request, context.upstream_path)
        .ok_or(Failure::DpopProofUrl)?;
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
