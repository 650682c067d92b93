//! A rule's requirement judged against the request's tokens: each provider's one token through
//! the token cache, the claim checks, the key lookup and the signature check, then combined as
//! `requires_any` / `requires_all` say.

use super::binding::{self, BindingContext, Scheme};
use super::clock::Now;
use super::token_cache::{self, TokenCache};
use super::upstream::{forwarded, Forwarded};
use crate::config::{Config, Provider, ProviderId, Requirement, Rule};
use crate::crypto::verify::{self, SignatureCheck};
use crate::failure::{Failure, FailureClass};
use crate::jose::token::{self, NumericDate};
use crate::keys::shared::SharedData;
use crate::keys::store::{KeyStore, Lookup};
use crate::policy::{identity, token_policy};
use crate::request::extract;
use crate::request::Request;
use std::rc::Rc;

/// A token that passed every check.
#[derive(Debug, Clone)]
pub(super) struct Verified {
    pub(super) provider: ProviderId,
    /// Where it was found: its position in the provider's `token_sources` (an index rather than
    /// a copy, which would allocate on every request).
    pub(super) source_index: usize,
    pub(super) claims: Rc<serde_json::Map<String, serde_json::Value>>,
    /// The headers and filter state it sends on.
    pub(super) forwarded: Rc<Forwarded>,
    /// It came with a DPoP proof, which goes upstream only with the token.
    pub(super) with_proof: bool,
}

#[derive(Debug)]
pub(super) enum Verdict {
    Allowed(Vec<Verified>),
    Failed(Failure),
    Wait(Vec<ProviderId>),
}

/// Which failure a combination reports: the one that says most about what to fix. Keys being
/// unavailable outranks everything, because the token may be fine; a missing token says least.
pub(super) fn rank(failure: Failure) -> u8 {
    match failure {
        Failure::Missing => 0,
        Failure::IssuerNotConfigured => 1,
        f if f.class() == FailureClass::Unavailable => 4,
        f if f.class() == FailureClass::InvalidRequest => 3,
        _ => 2,
    }
}

pub(super) struct Evaluation<'a> {
    pub(super) config: &'a Config,
    pub(super) request: &'a Request,
    /// The normalized path, as it goes upstream: a DPoP proof names it.
    pub(super) upstream_path: &'a str,
    pub(super) keys: &'a mut KeyStore,
    pub(super) tokens: &'a mut [TokenCache],
    pub(super) crypto: &'a dyn SignatureCheck,
    pub(super) shared: &'a mut dyn SharedData,
    pub(super) now: Now,
    pub(super) retry_after_seconds: u64,
    /// Check sender bindings (DPoP proofs, client certificates); off while only the token is
    /// judged, before a body names the rule.
    pub(super) check_bindings: bool,
}

impl Evaluation<'_> {
    pub(super) fn requirement(&mut self, requirement: &Requirement) -> Verdict {
        match requirement {
            Requirement::Provider(id) => self.provider(*id),
            Requirement::Any(children) => {
                let verdicts: Vec<Verdict> = children.iter().map(|c| self.requirement(c)).collect();
                any(verdicts)
            }
            Requirement::All(children) => {
                let mut allowed = Vec::new();
                let mut waits = Vec::new();
                for child in children {
                    match self.requirement(child) {
                        Verdict::Failed(failure) => return Verdict::Failed(failure),
                        Verdict::Wait(providers) => waits.extend(providers),
                        Verdict::Allowed(tokens) => allowed.extend(tokens),
                    }
                }
                if waits.is_empty() {
                    Verdict::Allowed(allowed)
                } else {
                    Verdict::Wait(waits)
                }
            }
            Requirement::AllowMissing => match self.any_provider() {
                Verdict::Failed(Failure::Missing) => Verdict::Allowed(Vec::new()),
                other => other,
            },
            Requirement::AllowMissingOrFailed => match self.any_provider() {
                Verdict::Failed(_) => Verdict::Allowed(Vec::new()),
                other => other,
            },
        }
    }

    fn any_provider(&mut self) -> Verdict {
        let verdicts: Vec<Verdict> = (0..self.config.providers.len())
            .map(|id| self.provider(id))
            .collect();
        any(verdicts)
    }

    fn provider(&mut self, id: ProviderId) -> Verdict {
        let config = self.config;
        let Some(provider) = config.providers.get(id) else {
            return Verdict::Failed(Failure::KeysUnavailable);
        };
        let found = match extract::find_token(&provider.token_sources, self.request) {
            Ok(Some(found)) => found,
            Ok(None) => return Verdict::Failed(Failure::Missing),
            Err(failure) => return Verdict::Failed(failure),
        };
        let scheme = Scheme::of(found.source);
        if let Err(failure) = binding::check_presentation(provider, scheme, self.request) {
            return Verdict::Failed(failure);
        }
        let mut verified = match self.token(id, provider, &found.value, found.source_index) {
            Ok(verified) => verified,
            Err(verdict) => return verdict,
        };
        if !self.check_bindings {
            return Verdict::Allowed(vec![verified]);
        }
        // Per request, after the cache: a binding holds for this connection and this proof only.
        let mut context = BindingContext {
            request: self.request,
            upstream_path: self.upstream_path,
            now: self.now.seconds(),
            crypto: self.crypto,
            shared: &mut *self.shared,
        };
        if let Err(failure) = binding::check_binding(
            provider,
            scheme,
            &found.value,
            &verified.claims,
            &mut context,
        ) {
            return Verdict::Failed(failure);
        }
        verified.with_proof = scheme == Scheme::Dpop;
        Verdict::Allowed(vec![verified])
    }

    fn token(
        &mut self,
        id: ProviderId,
        provider: &Provider,
        raw: &str,
        source_index: usize,
    ) -> Result<Verified, Verdict> {
        // No key to compute when the cache is off.
        let cache_key = match self.tokens.get(id) {
            Some(cache) if cache.is_enabled() => cache.key(raw),
            _ => None,
        };
        let generation = self.keys.generation(id);
        let now_seconds = self.now.seconds();
        if let (Lookup::Ready { .. }, Some(cache), Some(key)) = (
            self.keys.lookup(id, self.now.ms),
            self.tokens.get_mut(id),
            &cache_key,
        ) {
            if let Some(entry) =
                cache.get(key, generation, now_seconds, provider.clock_skew_seconds)
            {
                return Ok(Verified {
                    provider: id,
                    source_index,
                    claims: Rc::clone(&entry.claims),
                    forwarded: Rc::clone(&entry.forwarded),
                    with_proof: false,
                });
            }
        }
        let parsed = token::parse(raw).map_err(Verdict::Failed)?;
        token_policy::check_claims(&parsed, &provider.token_policy(), now_seconds)
            .map_err(Verdict::Failed)?;
        let result = match self.keys.lookup(id, self.now.ms) {
            Lookup::Loading => return Err(Verdict::Wait(vec![id])),
            Lookup::Unavailable {
                retry_after_seconds,
            } => {
                self.retry_after_seconds = self.retry_after_seconds.max(retry_after_seconds);
                return Err(Verdict::Failed(Failure::KeysUnavailable));
            }
            Lookup::Ready { keys, .. } => verify::check_signature(&parsed, keys, self.crypto),
        };
        // Identity restrictions judge an authenticated token only, and a token that fails them is
        // not cached, so every cache hit has passed them.
        let result = result.and_then(|()| identity::check(&provider.identity, &parsed.claims));
        match result {
            Ok(()) => {
                let payload_segment: Rc<str> = Rc::from(parsed.payload_segment);
                let forwarded = Rc::new(forwarded(provider, &payload_segment, &parsed.claims));
                let entry = token_cache::Entry {
                    generation,
                    exp: parsed.registered.exp.map(NumericDate::floor),
                    nbf: parsed.registered.nbf.map(NumericDate::ceil),
                    header_segment: parsed.header_segment.into(),
                    payload_segment,
                    claims: Rc::new(parsed.claims),
                    forwarded,
                };
                let verified = Verified {
                    provider: id,
                    source_index,
                    claims: Rc::clone(&entry.claims),
                    forwarded: Rc::clone(&entry.forwarded),
                    with_proof: false,
                };
                if let (Some(cache), Some(key)) = (self.tokens.get_mut(id), cache_key) {
                    cache.insert(key.tag, entry);
                }
                Ok(verified)
            }
            Err(Failure::UnknownKid) if self.keys.request_refetch(id, self.now.ms) => {
                Err(Verdict::Wait(vec![id]))
            }
            Err(Failure::UnknownKid) => match self.keys.failing_retry_after(id, self.now.ms) {
                Some(retry_after_seconds) => {
                    self.retry_after_seconds = self.retry_after_seconds.max(retry_after_seconds);
                    Err(Verdict::Failed(Failure::KeysUnavailable))
                }
                None => Err(Verdict::Failed(Failure::UnknownKid)),
            },
            Err(failure) => Err(Verdict::Failed(failure)),
        }
    }
}

pub(super) fn any(verdicts: Vec<Verdict>) -> Verdict {
    let mut waits = Vec::new();
    let mut worst: Option<Failure> = None;
    for verdict in verdicts {
        match verdict {
            Verdict::Allowed(tokens) => return Verdict::Allowed(tokens),
            Verdict::Wait(providers) => waits.extend(providers),
            Verdict::Failed(failure) => {
                if worst.is_none_or(|w| rank(failure) > rank(w)) {
                    worst = Some(failure);
                }
            }
        }
    }
    if !waits.is_empty() {
        return Verdict::Wait(waits);
    }
    Verdict::Failed(worst.unwrap_or(Failure::Missing))
}

/// The token that meets every one of the rule's `require_claims` (`None` when the rule has
/// none), or why no token does. All conditions must hold for one and the same token: under
/// `requires_all` a role in one token and an e-mail in another do not add up. Without any token
/// (a requirement that allowed a missing one) the answer is a 401 challenge: authenticating may
/// still help.
pub(super) fn claims_holder<'t>(
    rule: &Rule,
    tokens: &'t [Verified],
) -> Result<Option<&'t Verified>, Failure> {
    if rule.require_claims.is_empty() {
        return Ok(None);
    }
    if tokens.is_empty() {
        return Err(Failure::Missing);
    }
    tokens
        .iter()
        .find(|token| {
            rule.require_claims
                .iter()
                .all(|condition| condition.holds(&token.claims))
        })
        .map(Some)
        .ok_or(Failure::ClaimRequirementFailed)
}
