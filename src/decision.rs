//! Request → rule → requirement → outcome: allow (with header changes), deny (with an RFC 6750
//! answer), or wait for signing keys.

use crate::config::{Config, Provider, ProviderId, Requirement};
use crate::extract::{self, TokenSource};
use crate::failure::{Failure, FailureClass};
use crate::identity;
use crate::keys::{KeyStore, Lookup};
use crate::request::Request;
use crate::rules;
use crate::token;
use crate::token_cache::{self, TokenCache};
use crate::verify::{self, SignatureCheck};
use std::rc::Rc;

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
    payload_segment: Rc<str>,
    claims: Rc<serde_json::Map<String, serde_json::Value>>,
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
    tokens: &'a mut [TokenCache],
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
        let digest = token_cache::digest(raw);
        let generation = self.keys.generation(id);
        let now_seconds = self.now.seconds();
        if let (Lookup::Ready { .. }, Some(cache)) =
            (self.keys.lookup(id, self.now.ms), self.tokens.get_mut(id))
        {
            if let Some(entry) = cache.get(
                &digest,
                generation,
                now_seconds,
                provider.clock_skew_seconds,
            ) {
                return Ok(Verified {
                    provider: id,
                    header,
                    payload_segment: Rc::clone(&entry.payload_segment),
                    claims: Rc::clone(&entry.claims),
                });
            }
        }
        let parsed = token::parse(raw).map_err(Verdict::Failed)?;
        verify::check_claims(&parsed, provider, now_seconds).map_err(Verdict::Failed)?;
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
                let entry = token_cache::Entry {
                    generation,
                    exp: parsed.registered.exp,
                    nbf: parsed.registered.nbf,
                    payload_segment: Rc::from(parsed.payload_segment),
                    claims: Rc::new(parsed.claims),
                };
                let verified = Verified {
                    provider: id,
                    header,
                    payload_segment: Rc::clone(&entry.payload_segment),
                    claims: Rc::clone(&entry.claims),
                };
                if let Some(cache) = self.tokens.get_mut(id) {
                    cache.insert(digest, entry);
                }
                Ok(verified)
            }
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

/// Decides what to do with `request`. May ask `keys` for an unknown-`kid` refetch and remembers
/// verified tokens in `tokens` (one cache per provider), which is why it takes both mutably.
pub fn decide(
    config: &Config,
    request: &Request,
    keys: &mut KeyStore,
    tokens: &mut [TokenCache],
    crypto: &dyn SignatureCheck,
    now: Now,
) -> Decision {
    let mut allow = Allow {
        public: false,
        remove_headers: config.managed_headers.clone(),
        set_headers: Vec::new(),
    };
    remove_prefixed_headers(config, request, &mut allow);
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
        tokens,
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

/// The glue removes headers by exact name, so a managed prefix becomes the names of the request's
/// headers that start with it.
fn remove_prefixed_headers(config: &Config, request: &Request, allow: &mut Allow) {
    for (name, _) in &request.headers {
        let managed = config
            .managed_header_prefixes
            .iter()
            .any(|prefix| name.starts_with(prefix.as_str()));
        if managed && !allow.remove_headers.contains(name) {
            allow.remove_headers.push(name.clone());
        }
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
                .push((name.clone(), token.payload_segment.to_string()));
        }
        for mapping in &provider.claim_to_headers {
            if let Some(value) = claim_header_value(&token.claims, &mapping.claim_path) {
                allow.set_headers.push((mapping.header_name.clone(), value));
            }
        }
        allow
            .set_headers
            .extend(identity::headers(&provider.identity, &token.claims));
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
        FailureClass::Forbidden => (
            403,
            "insufficient_scope",
            Some(format!(
                "Bearer realm=\"{realm}\", error=\"insufficient_scope\", error_description=\"{description}\""
            )),
        ),
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::cell::Cell;

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jwt_simple::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::jwks::{Alg, Key};
    use crate::keys::Response;
    use crate::token::Token;
    use crate::verify::PureRustCrypto;

    const NOW_S: u64 = 1_700_000_000;
    const NOW: Now = Now { ms: NOW_S * 1000 };

    /// Counts signature checks, so tests can see what the token cache saved.
    #[derive(Default)]
    struct CountingCrypto {
        checks: Cell<usize>,
    }

    impl SignatureCheck for CountingCrypto {
        fn check(&self, alg: Alg, key: &Key, token: &Token<'_>) -> bool {
            self.checks.set(self.checks.get() + 1);
            PureRustCrypto.check(alg, key, token)
        }
    }

    struct Fixture {
        config: Config,
        keys: KeyStore,
        tokens: Vec<TokenCache>,
        crypto: CountingCrypto,
        pair: Ed25519KeyPair,
    }

    fn jwk(pair: &Ed25519KeyPair, kid: &str) -> serde_json::Value {
        json!({"kty": "OKP", "crv": "Ed25519", "kid": kid,
               "x": URL_SAFE_NO_PAD.encode(pair.public_key().to_bytes())})
    }

    fn fixture_with(provider_extra: serde_json::Value, rules: serde_json::Value) -> Fixture {
        let pair = Ed25519KeyPair::generate().with_key_id("k1");
        let mut provider = json!({
            "issuer": "https://idp.test",
            "audiences": ["kserve"],
            "local_jwks": {"inline_string": json!({"keys": [jwk(&pair, "k1")]}).to_string()},
            "forward_payload_header": "x-jwt-payload",
            "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"},
                                 {"header_name": "x-roles", "claim_name": "realm_access.roles"}]
        });
        for (k, v) in provider_extra.as_object().unwrap() {
            provider[k] = v.clone();
        }
        let config = Config::from_json(
            json!({"providers": {"idp": provider}, "rules": rules})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        let keys = KeyStore::new(&config).unwrap();
        let tokens = config
            .providers
            .iter()
            .map(|p| TokenCache::new(p.jwt_cache_size))
            .collect();
        Fixture {
            config,
            keys,
            tokens,
            crypto: CountingCrypto::default(),
            pair,
        }
    }

    fn fixture() -> Fixture {
        fixture_with(
            json!({}),
            json!([{"match": {"prefix": "/v2/health"}},
                   {"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}]),
        )
    }

    fn claims() -> JWTClaims<serde_json::Value> {
        Claims::with_custom_claims(
            json!({"realm_access": {"roles": ["fraud", "churn"]}}),
            Duration::from_secs(300),
        )
        .with_issuer("https://idp.test")
        .with_audience("kserve")
        .with_subject("svc-1")
    }

    fn sign(pair: &Ed25519KeyPair, claims: JWTClaims<serde_json::Value>) -> String {
        // Tokens are minted "now" by jwt-simple's clock; pin their times to NOW_S instead.
        let mut claims = claims;
        claims.issued_at = Some(UnixTimeStamp::from_secs(NOW_S));
        claims.invalid_before = Some(UnixTimeStamp::from_secs(NOW_S));
        claims.expires_at = Some(UnixTimeStamp::from_secs(NOW_S + 300));
        pair.sign(claims).unwrap()
    }

    fn request(path: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: "POST".into(),
            path: path.into(),
            authority: "models.test".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    impl Fixture {
        fn decide(&mut self, request: &Request, now: Now) -> Decision {
            decide(
                &self.config,
                request,
                &mut self.keys,
                &mut self.tokens,
                &self.crypto,
                now,
            )
        }

        fn bearer(&mut self, token: &str) -> Decision {
            let auth = format!("Bearer {token}");
            self.decide(
                &request("/v1/models/m:predict", &[("authorization", &auth)]),
                NOW,
            )
        }
    }

    fn denied(decision: &Decision) -> &Denial {
        match decision {
            Decision::Deny(denial) => denial,
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    fn allowed(decision: &Decision) -> &Allow {
        match decision {
            Decision::Allow(allow) => allow,
            other => panic!("expected allow, got {other:?}"),
        }
    }

    fn header<'d>(denial: &'d Denial, name: &str) -> Option<&'d str> {
        denial
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn public_path_is_allowed_and_managed_headers_are_still_stripped() {
        // Forged identity headers never reach upstream, even on public paths.
        let mut f = fixture();
        let d = f.decide(&request("/v2/health/ready", &[("x-jwt-sub", "admin")]), NOW);
        let allow = allowed(&d);
        assert!(allow.public);
        assert!(allow.remove_headers.contains(&"x-jwt-sub".to_string()));
        assert!(allow.remove_headers.contains(&"x-jwt-payload".to_string()));
        assert!(allow.set_headers.is_empty());
    }

    #[test]
    fn missing_token_gets_a_bare_bearer_challenge() {
        // RFC 6750 §3.1: no error code when the request carried no credentials.
        let mut f = fixture();
        let d = f.decide(&request("/v1/models/m:predict", &[]), NOW);
        let denial = denied(&d);
        assert_eq!(denial.status, 401);
        assert_eq!(
            header(denial, "www-authenticate"),
            Some("Bearer realm=\"models.test\"")
        );
        assert_eq!(header(denial, "content-type"), Some("application/json"));
        assert_eq!(
            denial.body,
            r#"{"error":"unauthorized","error_description":"Jwt is missing"}"#
        );
    }

    #[test]
    fn valid_token_sets_claim_headers_and_drops_the_token_header() {
        // The upstream sees claims, never the credential.
        let mut f = fixture();
        let token = sign(&f.pair, claims());
        let d = f.bearer(&token);
        let allow = allowed(&d);
        assert!(!allow.public);
        assert!(allow.remove_headers.contains(&"authorization".to_string()));
        let payload = token.split('.').nth(1).unwrap();
        assert!(allow
            .set_headers
            .contains(&("x-jwt-payload".into(), payload.into())));
        assert!(allow
            .set_headers
            .contains(&("x-jwt-sub".into(), "svc-1".into())));
        assert!(allow
            .set_headers
            .contains(&("x-roles".into(), "fraud,churn".into())));
    }

    #[test]
    fn forward_true_keeps_the_token_header() {
        // forward: true is how a model server that checks tokens itself gets them.
        let mut f = fixture_with(
            json!({"forward": true}),
            json!([{"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}]),
        );
        let token = sign(&f.pair, claims());
        let d = f.bearer(&token);
        assert!(!allowed(&d)
            .remove_headers
            .contains(&"authorization".to_string()));
    }

    #[test]
    fn invalid_token_names_the_reason_in_challenge_and_body() {
        // The client learns why, and that the token (not the server) is at fault.
        let mut f = fixture();
        let token = sign(&f.pair, claims().with_audience("other"));
        let d = f.bearer(&token);
        let denial = denied(&d);
        assert_eq!(denial.status, 401);
        assert_eq!(
            header(denial, "www-authenticate"),
            Some(
                "Bearer realm=\"models.test\", error=\"invalid_token\", \
                 error_description=\"Audiences in Jwt are not allowed\""
            )
        );
        assert!(!denial.body.contains(&token));
    }

    #[test]
    fn every_token_sent_must_verify() {
        // A valid header token does not excuse an invalid one in the query.
        let mut f = fixture_with(
            json!({"from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
                   "from_params": ["access_token"]}),
            json!([{"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}]),
        );
        let good = sign(&f.pair, claims());
        let auth = format!("Bearer {good}");
        let bad = sign(&f.pair, claims().with_audience("other"));
        let path = format!("/v1/models/m:predict?access_token={bad}");
        let d = f.decide(&request(&path, &[("authorization", &auth)]), NOW);
        assert_eq!(denied(&d).failure, Failure::AudienceNotAllowed);
        let path = format!("/v1/models/m:predict?access_token={good}");
        allowed(&f.decide(&request(&path, &[("authorization", &auth)]), NOW));
    }

    #[test]
    fn empty_bearer_is_a_malformed_request() {
        // 400 invalid_request, not 401: the request itself is wrong.
        let mut f = fixture();
        let d = f.decide(
            &request("/v1/models/m:predict", &[("authorization", "Bearer ")]),
            NOW,
        );
        let denial = denied(&d);
        assert_eq!(denial.status, 400);
        assert!(header(denial, "www-authenticate")
            .unwrap()
            .contains("error=\"invalid_request\""));
    }

    #[test]
    fn realm_cannot_break_out_of_its_quotes() {
        // The authority is client-controlled; it must not inject challenge parameters.
        let denial = denial(Failure::Missing, "evil\", error=\"x\\", 0);
        assert_eq!(
            header(&denial, "www-authenticate"),
            Some("Bearer realm=\"evil, error=x\"")
        );
    }

    fn remote_fixture() -> Fixture {
        let mut f = fixture();
        let config = Config::from_json(
            json!({"providers": {"idp": {
                "issuer": "https://idp.test", "audiences": ["kserve"],
                "remote_jwks": {"http_uri": {"uri": "http://idp.test/jwks", "cluster": "idp"},
                                "cache_duration": "10s"}}},
               "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}]})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        f.keys = KeyStore::new(&config).unwrap();
        f.config = config;
        f
    }

    fn answer(f: &mut Fixture, now: Now, body: Option<String>) {
        let fetch = f.keys.due_fetches(now.ms).pop().expect("a fetch is due");
        let response = match &body {
            Some(body) => Response {
                status: Some(200),
                body_size: body.len(),
                body: body.as_bytes(),
            },
            None => Response {
                status: None,
                body_size: 0,
                body: &[],
            },
        };
        f.keys.on_response(&fetch, response, now.ms);
    }

    #[test]
    fn requests_wait_for_the_first_key_set_then_pass() {
        // No request is rejected merely because keys are still loading.
        let mut f = remote_fixture();
        let token = sign(&f.pair, claims());
        assert_eq!(f.bearer(&token), Decision::Wait { providers: vec![0] });
        let jwks = json!({"keys": [jwk(&f.pair, "k1")]}).to_string();
        answer(&mut f, NOW, Some(jwks));
        allowed(&f.bearer(&token));
    }

    #[test]
    fn key_server_down_gives_503_with_retry_after_not_401() {
        // A 401 would make clients throw away a good token.
        let mut f = remote_fixture();
        let token = sign(&f.pair, claims());
        answer(&mut f, NOW, None);
        let d = f.bearer(&token);
        let denial = denied(&d);
        assert_eq!(denial.status, 503);
        assert_eq!(header(denial, "retry-after"), Some("1"));
        assert_eq!(header(denial, "www-authenticate"), None);
        assert_eq!(denial.failure, Failure::KeysUnavailable);
    }

    #[test]
    fn cheap_checks_reject_before_waiting_for_keys() {
        // A token for another issuer never waits for, or triggers, a key fetch.
        let mut f = remote_fixture();
        let token = sign(&f.pair, claims().with_issuer("https://evil.test"));
        assert_eq!(
            denied(&f.bearer(&token)).failure,
            Failure::IssuerNotConfigured
        );
    }

    #[test]
    fn unknown_kid_waits_for_one_refetch_then_is_rejected() {
        // Rotation is picked up without restart; a kid still unknown is invalid_token.
        let mut f = remote_fixture();
        let jwks = json!({"keys": [jwk(&f.pair, "k1")]}).to_string();
        answer(&mut f, NOW, Some(jwks.clone()));
        let rotated = Ed25519KeyPair::generate().with_key_id("k2");
        let token = sign(&rotated, claims());
        assert_eq!(f.bearer(&token), Decision::Wait { providers: vec![0] });
        let both = json!({"keys": [jwk(&f.pair, "k1"), jwk(&rotated, "k2")]}).to_string();
        answer(&mut f, NOW, Some(both));
        allowed(&f.bearer(&token));
        let stranger = sign(&Ed25519KeyPair::generate().with_key_id("k3"), claims());
        assert_eq!(denied(&f.bearer(&stranger)).failure, Failure::UnknownKid);
    }

    #[test]
    fn a_verified_token_is_not_checked_again_until_it_expires() {
        // The cache saves the signature check, and still honours exp + skew exactly.
        let mut f = fixture();
        let token = sign(&f.pair, claims());
        allowed(&f.bearer(&token));
        allowed(&f.bearer(&token));
        assert_eq!(f.crypto.checks.get(), 1);
        let auth = format!("Bearer {token}");
        let req = request("/v1/models/m:predict", &[("authorization", &auth)]);
        let last_valid = Now {
            ms: (NOW_S + 300 + 60) * 1000,
        };
        allowed(&f.decide(&req, last_valid));
        let expired = Now {
            ms: (NOW_S + 300 + 61) * 1000,
        };
        assert_eq!(denied(&f.decide(&req, expired)).failure, Failure::Expired);
    }

    #[test]
    fn a_cached_token_carries_its_claim_headers() {
        // A cache hit must forward the same identity as the first verification.
        let mut f = fixture();
        let token = sign(&f.pair, claims());
        let first = allowed(&f.bearer(&token)).clone();
        let second = allowed(&f.bearer(&token)).clone();
        assert_eq!(first, second);
    }

    #[test]
    fn a_failed_verification_is_never_cached() {
        // A bad signature fails every time, at the cost of a check each time.
        let mut f = fixture();
        let token = sign(&f.pair, claims());
        let mut forged = token.clone();
        forged.truncate(token.len() - 4);
        forged.push_str("AAAA");
        for _ in 0..2 {
            assert_eq!(denied(&f.bearer(&forged)).failure, Failure::BadSignature);
        }
        assert_eq!(f.crypto.checks.get(), 2);
    }

    #[test]
    fn a_changed_key_set_invalidates_cached_tokens() {
        // A key removed at the issuer stops its tokens at once, cache or not.
        let mut f = remote_fixture();
        let jwks = json!({"keys": [jwk(&f.pair, "k1")]}).to_string();
        answer(&mut f, NOW, Some(jwks));
        let token = sign(&f.pair, claims());
        allowed(&f.bearer(&token));
        let other = Ed25519KeyPair::generate();
        let refresh = Now { ms: NOW.ms + 8_000 };
        answer(
            &mut f,
            refresh,
            Some(json!({"keys": [jwk(&other, "k1")]}).to_string()),
        );
        let auth = format!("Bearer {token}");
        let req = request("/v1/models/m:predict", &[("authorization", &auth)]);
        assert_eq!(
            denied(&f.decide(&req, refresh)).failure,
            Failure::BadSignature
        );
    }

    fn two_providers(rule: serde_json::Value) -> (Fixture, Ed25519KeyPair) {
        let mut f = fixture();
        let other = Ed25519KeyPair::generate().with_key_id("g1");
        let config = Config::from_json(
            json!({"providers": {
                "idp": {"issuer": "https://idp.test", "audiences": ["kserve"],
                        "local_jwks": {"inline_string": json!({"keys": [jwk(&f.pair, "k1")]}).to_string()}},
                "google": {"issuer": "https://accounts.google.com", "audiences": ["kserve"],
                        "from_headers": [{"name": "x-goog-token"}],
                        "local_jwks": {"inline_string": json!({"keys": [jwk(&other, "g1")]}).to_string()}}},
               "rules": [{"match": {"prefix": "/"}, "requires": rule}]})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        f.keys = KeyStore::new(&config).unwrap();
        f.tokens = vec![TokenCache::new(10), TokenCache::new(10)];
        f.config = config;
        (f, other)
    }

    #[test]
    fn requires_all_needs_every_token() {
        // Both credentials must be present and valid.
        let (mut f, google) = two_providers(json!({"requires_all": {"requirements": [
            {"provider_name": "idp"}, {"provider_name": "google"}]}}));
        let idp_token = sign(&f.pair, claims());
        let google_token = sign(&google, claims().with_issuer("https://accounts.google.com"));
        let auth = format!("Bearer {idp_token}");
        let only_one = request("/", &[("authorization", &auth)]);
        assert_eq!(denied(&f.decide(&only_one, NOW)).failure, Failure::Missing);
        let both = request(
            "/",
            &[("authorization", &auth), ("x-goog-token", &google_token)],
        );
        allowed(&f.decide(&both, NOW));
    }

    #[test]
    fn requires_any_reports_the_most_telling_failure() {
        // A present but invalid token says more than the other provider's missing token.
        let (mut f, _) = two_providers(json!({"requires_any": {"requirements": [
            {"provider_name": "idp"}, {"provider_name": "google"}]}}));
        let expired = {
            let mut c = claims();
            c.issued_at = Some(UnixTimeStamp::from_secs(NOW_S - 1000));
            c.invalid_before = None;
            c.expires_at = Some(UnixTimeStamp::from_secs(NOW_S - 900));
            f.pair.sign(c).unwrap()
        };
        let auth = format!("Bearer {expired}");
        let d = f.decide(&request("/", &[("authorization", &auth)]), NOW);
        assert_eq!(denied(&d).failure, Failure::Expired);
        let d = f.decide(&request("/", &[]), NOW);
        assert_eq!(denied(&d).failure, Failure::Missing);
    }

    #[test]
    fn allow_missing_passes_no_token_but_not_a_bad_one() {
        // jwt_authn's allow_missing: absence is fine, an invalid token is not.
        let (mut f, _) = two_providers(json!({"allow_missing": {}}));
        allowed(&f.decide(&request("/", &[]), NOW));
        let d = f.decide(&request("/", &[("authorization", "Bearer x.y.z")]), NOW);
        assert_eq!(denied(&d).status, 401);
        let good = format!("Bearer {}", sign(&f.pair, claims()));
        let d = f.decide(&request("/", &[("authorization", &good)]), NOW);
        assert!(allowed(&d)
            .remove_headers
            .contains(&"authorization".to_string()));
    }

    #[test]
    fn allow_missing_or_failed_always_passes_and_forwards_valid_claims() {
        // Optional authentication: valid identities are still made available.
        let (mut f, _) = two_providers(json!({"allow_missing_or_failed": {}}));
        allowed(&f.decide(&request("/", &[("authorization", "Bearer x.y.z")]), NOW));
        allowed(&f.decide(&request("/", &[]), NOW));
    }

    /// Claims with these custom members (hd, email, ...) besides issuer, audience and subject.
    fn identity_claims(custom: serde_json::Value) -> JWTClaims<serde_json::Value> {
        Claims::with_custom_claims(custom, Duration::from_secs(300))
            .with_issuer("https://idp.test")
            .with_audience("kserve")
            .with_subject("accounts.google.com:1234")
    }

    fn identity_fixture(policy: serde_json::Value) -> Fixture {
        fixture_with(
            policy,
            json!([{"match": {"prefix": "/v2/health"}},
                   {"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}]),
        )
    }

    #[test]
    fn forbidden_is_403_insufficient_scope() {
        // An authenticated but disallowed identity is told so, distinctly from a bad token.
        let denial = denial(Failure::EmailNotAllowed, "models.test", 0);
        assert_eq!(denial.status, 403);
        assert_eq!(
            header(&denial, "www-authenticate"),
            Some(
                "Bearer realm=\"models.test\", error=\"insufficient_scope\", \
                 error_description=\"Jwt email is not allowed\""
            )
        );
        assert_eq!(
            denial.body,
            r#"{"error":"insufficient_scope","error_description":"Jwt email is not allowed"}"#
        );
        assert_eq!(header(&denial, "retry-after"), None);
    }

    #[test]
    fn disallowed_hosted_domain_is_forbidden_only_once_authenticated() {
        // A valid token from another domain gets 403; a forged one gets 401, its claims unjudged.
        let mut f = identity_fixture(json!({"allowed_hosted_domains": ["example.com"]}));
        let good = sign(&f.pair, identity_claims(json!({"hd": "example.com"})));
        allowed(&f.bearer(&good));
        let other = sign(&f.pair, identity_claims(json!({"hd": "evil.test"})));
        let d = f.bearer(&other);
        assert_eq!(denied(&d).failure, Failure::HostedDomainNotAllowed);
        assert_eq!(denied(&d).status, 403);
        let stranger = Ed25519KeyPair::generate().with_key_id("k1");
        let forged = sign(&stranger, identity_claims(json!({"hd": "evil.test"})));
        assert_eq!(denied(&f.bearer(&forged)).failure, Failure::BadSignature);
    }

    #[test]
    fn unverified_email_is_401_and_never_cached() {
        // email_verified: false fails every time; only passing tokens enter the cache.
        let mut f = identity_fixture(json!({"require_email_verified": true}));
        let token = sign(
            &f.pair,
            identity_claims(json!({"email": "a@example.com", "email_verified": false})),
        );
        for _ in 0..2 {
            let d = f.bearer(&token);
            assert_eq!(denied(&d).failure, Failure::EmailNotVerified);
            assert_eq!(denied(&d).status, 401);
        }
        assert_eq!(f.crypto.checks.get(), 2);
    }

    #[test]
    fn iap_identity_headers_replace_every_client_copy() {
        // Verified identity goes upstream; any x-goog-authenticated-user-* a client sent is removed.
        let mut f = identity_fixture(json!({"iap_identity_headers": true}));
        let token = sign(
            &f.pair,
            identity_claims(json!({"email": "alice@example.com"})),
        );
        let auth = format!("Bearer {token}");
        let d = f.decide(
            &request(
                "/v1/models/m:predict",
                &[
                    ("authorization", &auth),
                    (
                        "x-goog-authenticated-user-email",
                        "accounts.google.com:admin@example.com",
                    ),
                    ("x-goog-authenticated-user-groups", "admins"),
                ],
            ),
            NOW,
        );
        let allow = allowed(&d);
        for name in [
            "x-goog-authenticated-user-email",
            "x-goog-authenticated-user-id",
            "x-goog-authenticated-user-groups",
        ] {
            assert!(allow.remove_headers.contains(&name.to_string()), "{name}");
        }
        assert!(allow.set_headers.contains(&(
            "x-goog-authenticated-user-email".into(),
            "accounts.google.com:alice@example.com".into()
        )));
        assert!(allow.set_headers.contains(&(
            "x-goog-authenticated-user-id".into(),
            "accounts.google.com:1234".into()
        )));
    }

    #[test]
    fn iap_header_family_is_stripped_on_public_paths() {
        // A public path gets no identity, and no forged one either.
        let mut f = identity_fixture(json!({"iap_identity_headers": true}));
        let d = f.decide(
            &request(
                "/v2/health/ready",
                &[("x-goog-authenticated-user-whatever", "x")],
            ),
            NOW,
        );
        let allow = allowed(&d);
        assert!(allow.public);
        assert!(allow
            .remove_headers
            .contains(&"x-goog-authenticated-user-whatever".to_string()));
        assert!(allow
            .remove_headers
            .contains(&"x-goog-authenticated-user-email".to_string()));
    }

    #[test]
    fn other_headers_are_left_alone_without_iap_identity_headers() {
        // The x-goog family is the filter's only when it sets those headers.
        let mut f = fixture();
        let d = f.decide(
            &request(
                "/v2/health/ready",
                &[("x-goog-authenticated-user-email", "x")],
            ),
            NOW,
        );
        assert!(!allowed(&d)
            .remove_headers
            .contains(&"x-goog-authenticated-user-email".to_string()));
    }
}
