//! Request → rule → requirement → outcome: allow (with header changes), deny (with an RFC 6750
//! answer), or wait for signing keys.

use crate::config::{Config, Provider, ProviderId, Requirement};
use crate::extract::{self, TokenSource};
use crate::failure::{Failure, FailureClass};
use crate::keys::{KeyStore, Lookup};
use crate::request::Request;
use crate::rules;
use crate::token;
use crate::verify::{self, SignatureCheck};

/// What the filter does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let it through after these header changes.
    Allow(Allow),
    /// Answer it locally.
    Deny(Denial),
    /// Hold it until one of these providers' keys change, then decide again.
    Wait {
        /// Providers whose key fetch the request waits for.
        providers: Vec<ProviderId>,
    },
}

/// Header changes for an allowed request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allow {
    /// Whether the path was public (no requirement).
    pub public: bool,
    /// Headers to remove: client copies of managed headers, and tokens not forwarded.
    pub remove_headers: Vec<String>,
    /// Headers to set from verified claims, after the removals.
    pub set_headers: Vec<(String, String)>,
}

/// A local answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Why; drives metrics and logs.
    pub failure: Failure,
    /// HTTP status.
    pub status: u32,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// JSON body.
    pub body: String,
}

/// The clock, in two resolutions: token times are whole seconds, key timers milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Milliseconds since the Unix epoch.
    pub ms: u64,
}

impl Now {
    /// Whole seconds since the Unix epoch.
    pub fn seconds(self) -> u64 {
        self.ms / 1000
    }
}

/// A token that passed every check.
#[derive(Debug, Clone)]
struct Verified {
    provider: ProviderId,
    /// Header that carried it, when it came from a header.
    header: Option<String>,
    payload_segment: String,
    claims: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug)]
enum Verdict {
    Allowed(Vec<Verified>),
    Failed(Failure),
    Wait(Vec<ProviderId>),
}

/// Which failure a combination reports: the one that says most about what to fix. Keys being
/// unavailable outranks everything, because the token may be fine; a missing token says least.
fn rank(failure: Failure) -> u8 {
    match failure {
        Failure::Missing => 0,
        Failure::IssuerNotConfigured => 1,
        f if f.class() == FailureClass::Unavailable => 4,
        f if f.class() == FailureClass::InvalidRequest => 3,
        _ => 2,
    }
}

struct Evaluation<'a> {
    config: &'a Config,
    request: &'a Request,
    keys: &'a mut KeyStore,
    crypto: &'a dyn SignatureCheck,
    now: Now,
    retry_after_seconds: u64,
}

impl Evaluation<'_> {
    fn requirement(&mut self, requirement: &Requirement) -> Verdict {
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
        let found = match extract::find_tokens(&provider.token_sources, self.request) {
            Ok(found) => found,
            Err(failure) => return Verdict::Failed(failure),
        };
        if found.is_empty() {
            return Verdict::Failed(Failure::Missing);
        }
        let mut verified = Vec::with_capacity(found.len());
        for token in &found {
            let header = match token.source {
                TokenSource::Header { name, .. } => Some(name.clone()),
                TokenSource::Param { .. } => None,
            };
            match self.token(id, provider, &token.value, header) {
                Ok(v) => verified.push(v),
                Err(verdict) => return verdict,
            }
        }
        Verdict::Allowed(verified)
    }

    fn token(
        &mut self,
        id: ProviderId,
        provider: &Provider,
        raw: &str,
        header: Option<String>,
    ) -> Result<Verified, Verdict> {
        let parsed = token::parse(raw).map_err(Verdict::Failed)?;
        verify::check_claims(&parsed, provider, self.now.seconds()).map_err(Verdict::Failed)?;
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
        match result {
            Ok(()) => Ok(Verified {
                provider: id,
                header,
                payload_segment: parsed.payload_segment.to_string(),
                claims: parsed.claims,
            }),
            Err(Failure::UnknownKid) if self.keys.request_refetch(id, self.now.ms) => {
                Err(Verdict::Wait(vec![id]))
            }
            Err(failure) => Err(Verdict::Failed(failure)),
        }
    }
}

fn any(verdicts: Vec<Verdict>) -> Verdict {
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

/// Decides what to do with `request`. May ask `keys` for an unknown-`kid` refetch, which is why
/// it takes them mutably.
pub fn decide(
    config: &Config,
    request: &Request,
    keys: &mut KeyStore,
    crypto: &dyn SignatureCheck,
    now: Now,
) -> Decision {
    let mut allow = Allow {
        public: false,
        remove_headers: config.managed_headers.clone(),
        set_headers: Vec::new(),
    };
    // The configuration guarantees a final catch-all rule; a miss would be a bug, so fail closed.
    let Some(rule) = rules::find_rule(&config.rules, request.path_only()) else {
        return Decision::Deny(denial(Failure::Missing, &request.authority, 0));
    };
    let Some(requirement) = &rule.requirement else {
        allow.public = true;
        return Decision::Allow(allow);
    };
    let mut evaluation = Evaluation {
        config,
        request,
        keys,
        crypto,
        now,
        retry_after_seconds: 1,
    };
    match evaluation.requirement(requirement) {
        Verdict::Allowed(tokens) => {
            add_token_headers(config, &tokens, &mut allow);
            Decision::Allow(allow)
        }
        Verdict::Wait(mut providers) => {
            providers.sort_unstable();
            providers.dedup();
            Decision::Wait { providers }
        }
        Verdict::Failed(failure) => Decision::Deny(denial(
            failure,
            &request.authority,
            evaluation.retry_after_seconds,
        )),
    }
}

fn add_token_headers(config: &Config, tokens: &[Verified], allow: &mut Allow) {
    for token in tokens {
        let Some(provider) = config.providers.get(token.provider) else {
            continue;
        };
        if let (false, Some(header)) = (provider.forward, &token.header) {
            if !allow.remove_headers.contains(header) {
                allow.remove_headers.push(header.clone());
            }
        }
        if let Some(name) = &provider.forward_payload_header {
            allow
                .set_headers
                .push((name.clone(), token.payload_segment.clone()));
        }
        for mapping in &provider.claim_to_headers {
            if let Some(value) = claim_header_value(&token.claims, &mapping.claim_path) {
                allow.set_headers.push((mapping.header_name.clone(), value));
            }
        }
    }
}

/// Looks a claim up by path (`["realm_access", "roles"]`).
pub fn claim_at<'c>(
    claims: &'c serde_json::Map<String, serde_json::Value>,
    path: &[String],
) -> Option<&'c serde_json::Value> {
    let (first, rest) = path.split_first()?;
    rest.iter()
        .try_fold(claims.get(first)?, |value, segment| value.get(segment))
}

/// A claim rendered as a header value: strings as they are, arrays joined with commas, other
/// values as JSON. Values that cannot be a header value (control characters) are left out.
fn claim_header_value(
    claims: &serde_json::Map<String, serde_json::Value>,
    path: &[String],
) -> Option<String> {
    fn scalar(value: &serde_json::Value) -> String {
        match value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
    let value = match claim_at(claims, path)? {
        serde_json::Value::Array(items) => items.iter().map(scalar).collect::<Vec<_>>().join(","),
        serde_json::Value::Null => return None,
        other => scalar(other),
    };
    if value.chars().any(|c| c.is_control()) {
        return None;
    }
    Some(value)
}

/// Builds the RFC 6750 answer for `failure`. `retry_after_seconds` is used for 503s only.
pub fn denial(failure: Failure, authority: &str, retry_after_seconds: u64) -> Denial {
    let realm = quoted_safe(authority);
    let description = failure.description();
    let (status, error, challenge) = match failure.class() {
        FailureClass::Missing => (401, "unauthorized", Some(format!("Bearer realm=\"{realm}\""))),
        FailureClass::InvalidToken => (
            401,
            "invalid_token",
            Some(format!(
                "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{description}\""
            )),
        ),
        FailureClass::InvalidRequest => (
            400,
            "invalid_request",
            Some(format!(
                "Bearer realm=\"{realm}\", error=\"invalid_request\", error_description=\"{description}\""
            )),
        ),
        FailureClass::Unavailable => (503, "temporarily_unavailable", None),
    };
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    if let Some(challenge) = challenge {
        headers.push(("www-authenticate".to_string(), challenge));
    }
    if status == 503 {
        headers.push((
            "retry-after".to_string(),
            retry_after_seconds.max(1).to_string(),
        ));
    }
    let body = serde_json::json!({"error": error, "error_description": description}).to_string();
    Denial {
        failure,
        status,
        headers,
        body,
    }
}

/// Keeps only characters that are safe inside a quoted-string header parameter.
fn quoted_safe(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\' || *c == ' ')
        .take(255)
        .collect()
}
