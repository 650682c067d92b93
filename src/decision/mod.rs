//! Request → rule → requirement → outcome: allow (with header changes), deny (with an RFC 6750
//! answer, or its gRPC equivalent), answer locally (protected resource metadata), or wait for
//! signing keys.

pub mod route;
pub mod token_cache;
pub mod waiting;

mod binding;
mod candidates;
mod clock;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod fixture;
mod headers;
pub mod model_list;
pub mod proof;
pub mod replay;
mod reply;
mod requirement;
mod upstream;

use crate::config::{Config, ProviderId};
use crate::crypto::verify::SignatureCheck;
use crate::failure::Failure;
use crate::keys::shared::SharedData;
use crate::keys::store::KeyStore;
pub use crate::policy::claims::claim_at;
use crate::request::body::BodyProtocol;
use crate::request::path;
use crate::request::Request;
use route::Routed;
use token_cache::TokenCache;

pub use candidates::body_failure;
pub use clock::Now;
pub use headers::Allow;
use headers::{
    add_token_headers, present_managed_headers, set_upstream_path, undecodable_read_header,
};
pub use reply::{denial, deny, is_grpc, Denial, LocalReply, Recipient};
use requirement::{claims_holder, Evaluation, Verdict};
pub use upstream::Forwarded;

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
    /// Answer it locally with something other than a denial (the RFC 9728 metadata document).
    Respond(LocalReply),
    /// Read the body for the model it names, then decide again with
    /// [`Request::body_model`] set. The token has passed already.
    ReadBody {
        /// How the body names the model.
        protocol: BodyProtocol,
        /// How much to read, at most, before the model is found.
        max_bytes: u64,
    },
}

/// A CORS preflight, as jwt_authn recognises it: `OPTIONS` with non-empty `Origin` and
/// `Access-Control-Request-Method`.
pub fn is_cors_preflight(request: &Request) -> bool {
    let present = |name| request.header_values(name).any(|v| !v.is_empty());
    request.method == "OPTIONS" && present("origin") && present("access-control-request-method")
}

/// Decides what to do with `request`. May ask `keys` for an unknown-`kid` refetch, remembers
/// verified tokens in `tokens` (one cache per provider) and DPoP proof ids in `shared`, which is
/// why it takes them mutably.
pub fn decide(
    config: &Config,
    request: &Request,
    keys: &mut KeyStore,
    tokens: &mut [TokenCache],
    crypto: &dyn SignatureCheck,
    shared: &mut dyn SharedData,
    now: Now,
) -> Decision {
    if let Some(name) = undecodable_read_header(config, request) {
        let mut denial = deny(
            Failure::UndecodableHeader,
            &Recipient::of(config, request),
            0,
        );
        denial.detail = Some(format!("header {name}"));
        return Decision::Deny(denial);
    }
    let mut allow = Allow {
        public: false,
        remove_headers: present_managed_headers(config, request),
        set_headers: Vec::new(),
        filter_state: Vec::new(),
        narrow_model_list: false,
    };
    // Rules see the normalized path, and so does the upstream: both judge the same request.
    let path = match path::normalize(&request.path) {
        Ok(path) => path,
        Err(_) => return refuse(config, request, Failure::AmbiguousPath, 0),
    };
    if config.bypass_cors_preflight && is_cors_preflight(request) {
        allow.public = true;
        set_upstream_path(request, &path.upstream, &[], &mut allow);
        return Decision::Allow(allow);
    }
    if let Some(reply) = metadata_reply(config, request, &path.decoded) {
        return Decision::Respond(reply);
    }
    let mut evaluation = Evaluation {
        config,
        request,
        upstream_path: &path.upstream,
        keys,
        tokens,
        crypto,
        shared,
        now,
        retry_after_seconds: 1,
        check_bindings: true,
    };
    let rule = match route::find_rule(config, request, &path.decoded) {
        Routed::Rule(rule) => rule,
        Routed::NeedsBody(protocol) => {
            let candidates = route::body_candidates(config, request, &path.decoded);
            evaluation.check_bindings = false;
            return match candidates::before_body(&mut evaluation, &candidates) {
                Ok(()) => Decision::ReadBody {
                    protocol,
                    max_bytes: config.body.max_body_bytes,
                },
                Err(failure) => refuse(config, request, failure, evaluation.retry_after_seconds),
            };
        }
        // The configuration guarantees a final catch-all rule; a miss would be a bug, so fail
        // closed.
        Routed::NoRule => return refuse(config, request, Failure::Missing, 0),
    };
    if let Some(model) = &request.body_model {
        // The name goes into a header; one that cannot be a header value names no model.
        if model.chars().any(char::is_control) {
            return refuse(config, request, Failure::BodyModelNotString, 0);
        }
        if let Some(header) = &config.body.model_header {
            allow
                .set_headers
                .push((header.as_str().into(), model.as_str().into()));
        }
    }
    allow.narrow_model_list = model_list::is_model_list(config, request, &path.decoded);
    let Some(requirement) = &rule.requirement else {
        allow.public = true;
        set_upstream_path(request, &path.upstream, &[], &mut allow);
        return Decision::Allow(allow);
    };
    match evaluation.requirement(requirement) {
        Verdict::Allowed(tokens) => {
            if let Err(failure) = claims_holder(rule, &tokens) {
                let mut recipient = Recipient::of(config, request);
                recipient.scopes = rule
                    .require_claims
                    .iter()
                    .filter_map(|condition| condition.scope().map(str::to_owned))
                    .collect();
                return Decision::Deny(deny(failure, &recipient, 0));
            }
            let removed_params = add_token_headers(config, &tokens, &mut allow);
            set_upstream_path(request, &path.upstream, &removed_params, &mut allow);
            Decision::Allow(allow)
        }
        Verdict::Wait(mut providers) => {
            providers.sort_unstable();
            providers.dedup();
            Decision::Wait { providers }
        }
        Verdict::Failed(failure) => {
            refuse(config, request, failure, evaluation.retry_after_seconds)
        }
    }
}

/// The denial of `request` for `failure`. Built only when denying: most requests never need the
/// challenge's realm and metadata URL.
fn refuse(
    config: &Config,
    request: &Request,
    failure: Failure,
    retry_after_seconds: u64,
) -> Decision {
    Decision::Deny(deny(
        failure,
        &Recipient::of(config, request),
        retry_after_seconds,
    ))
}

/// The answer to a request for the protected resource metadata document, if it is one.
fn metadata_reply(config: &Config, request: &Request, path: &str) -> Option<LocalReply> {
    let resource = config.protected_resource.as_ref()?;
    if path != resource.metadata_path {
        return None;
    }
    if request.method != "GET" && request.method != "HEAD" {
        return Some(LocalReply {
            status: 405,
            headers: vec![("allow".to_owned(), "GET, HEAD".to_owned())],
            body: String::new(),
        });
    }
    Some(LocalReply {
        status: 200,
        headers: vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("cache-control".to_owned(), "max-age=300".to_owned()),
        ],
        body: resource.document.clone(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::reply::grpc_percent_encode;
    use super::upstream::claim_header_value;
    use std::cell::Cell;
    use std::rc::Rc;

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jwt_simple::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::crypto::key::Key;
    use crate::crypto::verify::PureRustCrypto;
    use crate::jose::alg::Alg;
    use crate::jose::token::Token;
    use crate::keys::shared::MemorySharedData;
    use crate::keys::store::Response;

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
        shared: MemorySharedData,
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
        let tokens = TokenCache::per_provider(&config);
        Fixture {
            config,
            keys,
            tokens,
            crypto: CountingCrypto::default(),
            shared: MemorySharedData::default(),
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
            ..Request::default()
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
                &mut self.shared,
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
        // Forged identity headers never reach upstream, even on public paths; only the managed
        // headers the request carries are named for removal.
        let mut f = fixture();
        let d = f.decide(
            &request(
                "/v2/health/ready",
                &[("x-jwt-sub", "admin"), ("x-jwt-sub", "root")],
            ),
            NOW,
        );
        let allow = allowed(&d);
        assert!(allow.public);
        assert_eq!(allow.remove_headers, ["x-jwt-sub"]);
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
    fn filter_state_records_provider_sub_and_chosen_claims() {
        // The identity goes to filter state for access logs and RBAC, on hits as on misses; a
        // public request records nothing, and a provider without filter_state writes none.
        let mut f = fixture_with(
            json!({"filter_state": {"claims": [
                {"key": "roles", "claim_name": "realm_access.roles"},
                {"key": "missing", "claim_name": "no_such_claim"}]}}),
            json!([{"match": {"prefix": "/v2/health"}},
                   {"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}]),
        );
        let token = sign(&f.pair, claims());
        let expected: Vec<(Rc<str>, Rc<str>)> = vec![
            ("kserve_auth.provider".into(), "idp".into()),
            ("kserve_auth.sub".into(), "svc-1".into()),
            ("kserve_auth.roles".into(), "fraud,churn".into()),
        ];
        assert_eq!(allowed(&f.bearer(&token)).filter_state, expected);
        assert_eq!(allowed(&f.bearer(&token)).filter_state, expected);
        let public = f.decide(&request("/v2/health", &[]), NOW);
        assert!(allowed(&public).filter_state.is_empty());
        let mut plain = fixture();
        let token = sign(&plain.pair, claims());
        assert!(allowed(&plain.bearer(&token)).filter_state.is_empty());
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
    fn one_token_per_provider() {
        // A header token and a query token for the same provider are two identities: 400,
        // whichever of them is valid. One token alone passes.
        let mut f = fixture_with(
            json!({"from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
                   "from_params": ["access_token"]}),
            json!([{"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}]),
        );
        let good = sign(&f.pair, claims());
        let auth = format!("Bearer {good}");
        let bad = sign(&f.pair, claims().with_audience("other"));
        for query_token in [&bad, &good] {
            let path = format!("/v1/models/m:predict?access_token={query_token}");
            let d = f.decide(&request(&path, &[("authorization", &auth)]), NOW);
            assert_eq!(denied(&d).status, 400);
            assert_eq!(denied(&d).failure, Failure::RepeatedCredential);
        }
        let joined = format!("Bearer {good},Bearer {good}");
        let d = f.decide(
            &request("/v1/models/m:predict", &[("authorization", &joined)]),
            NOW,
        );
        assert_eq!(denied(&d).failure, Failure::RepeatedCredential);
        let basic_and_bearer = format!("Basic dXNlcjpwYXNz,Bearer {good}");
        allowed(&f.decide(
            &request(
                "/v1/models/m:predict",
                &[("authorization", &basic_and_bearer)],
            ),
            NOW,
        ));
    }

    #[test]
    fn a_query_token_never_goes_upstream() {
        // forward: false removes the parameter that carried the token from :path and keeps the
        // rest of the query byte for byte; forward: true keeps it.
        let rules = json!([{"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}]);
        let mut f = fixture_with(json!({"from_params": ["access_token"]}), rules.clone());
        let token = sign(&f.pair, claims());
        let path = format!("/v1/models/m:predict?a=%2F1&access_token={token}&b");
        let d = f.decide(&request(&path, &[]), NOW);
        let set = &allowed(&d).set_headers;
        assert!(set.contains(&(":path".into(), "/v1/models/m:predict?a=%2F1&b".into())));
        let path = format!("/v1/models/m:predict?access_token={token}");
        let d = f.decide(&request(&path, &[]), NOW);
        assert!(allowed(&d)
            .set_headers
            .contains(&(":path".into(), "/v1/models/m:predict".into())));
        let mut forwarding = fixture_with(
            json!({"from_params": ["access_token"], "forward": true}),
            rules,
        );
        let token = sign(&forwarding.pair, claims());
        let path = format!("/v1/models/m:predict?access_token={token}");
        let d = forwarding.decide(&request(&path, &[]), NOW);
        assert!(!allowed(&d)
            .set_headers
            .iter()
            .any(|(name, _)| &**name == ":path"));
    }

    #[test]
    fn managed_headers_are_removed_in_every_spelling() {
        // WSGI servers read x_jwt_sub as x-jwt-sub: underscore and case variants of a managed
        // header are removed on protected and public paths, by the name the client used.
        let mut f = fixture();
        let spoofed = [
            ("x_jwt_sub", "admin"),
            ("X-JWT_Sub", "admin"),
            ("x-jwt-payload", "e30"),
        ];
        let d = f.decide(&request("/v2/health/ready", &spoofed), NOW);
        let removed = &allowed(&d).remove_headers;
        for (name, _) in spoofed {
            assert!(
                removed.contains(&name.to_string()),
                "{name} kept: {removed:?}"
            );
        }
        let auth = format!("Bearer {}", sign(&f.pair, claims()));
        let mut headers = spoofed.to_vec();
        headers.push(("authorization", &auth));
        let d = f.decide(&request("/v1/models/m:predict", &headers), NOW);
        let allow = allowed(&d);
        assert!(allow.remove_headers.contains(&"x_jwt_sub".to_string()));
        assert!(allow
            .set_headers
            .contains(&("x-jwt-sub".into(), "svc-1".into())));
    }

    #[test]
    fn an_undecodable_header_the_filter_reads_is_a_400() {
        // A token header or a pseudo-header that is not UTF-8 cannot be judged; any other
        // undecodable header is ignored, or removed when it is a managed one.
        let mut f = fixture();
        for name in ["authorization", ":path"] {
            let mut req = request("/v2/health/ready", &[]);
            req.undecodable.push(name.into());
            let d = f.decide(&req, NOW);
            let denial = denied(&d);
            assert_eq!(
                (denial.status, denial.failure),
                (400, Failure::UndecodableHeader)
            );
            assert_eq!(
                denial.detail.as_deref(),
                Some(format!("header {name}").as_str())
            );
        }
        let mut req = request("/v2/health/ready", &[]);
        req.undecodable
            .extend(["x-other".to_string(), "x_jwt_sub".to_string()]);
        let d = f.decide(&req, NOW);
        assert_eq!(allowed(&d).remove_headers, ["x_jwt_sub"]);
    }

    #[test]
    fn array_claims_keep_their_boundaries() {
        // Joined with commas while that is unambiguous, a JSON array otherwise.
        let value = |claim: serde_json::Value| {
            let claims = json!({"c": claim}).as_object().unwrap().clone();
            claim_header_value(&claims, &["c".to_string()])
        };
        assert_eq!(value(json!(["a", "b"])).as_deref(), Some("a,b"));
        assert_eq!(
            value(json!(["a,b", "c"])).as_deref(),
            Some(r#"["a,b","c"]"#)
        );
        assert_eq!(
            value(json!(["say \"hi\""])).as_deref(),
            Some(r#"["say \"hi\""]"#)
        );
        assert_eq!(value(json!(["[x", "y"])).as_deref(), Some(r#"["[x","y"]"#));
        assert_eq!(
            value(json!([1, {"k": 2}])).as_deref(),
            Some(r#"[1,{"k":2}]"#)
        );
        assert_eq!(value(json!([])).as_deref(), Some(""));
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
    fn unknown_kid_while_the_key_server_fails_is_503_not_401() {
        // The refetch for a rotated key fails: the filter cannot tell a rotated key from a forged
        // one, so the token gets 503 with Retry-After, also while the 30-second refetch limit
        // holds, and passes once the next retry brings the new key.
        let mut f = remote_fixture();
        let rotated = Ed25519KeyPair::generate().with_key_id("k2");
        let old_set = json!({"keys": [jwk(&f.pair, "k1")]}).to_string();
        answer(&mut f, NOW, Some(old_set));
        let token = sign(&rotated, claims());
        assert_eq!(f.bearer(&token), Decision::Wait { providers: vec![0] });
        answer(&mut f, NOW, None);
        let d = f.bearer(&token);
        let denial = denied(&d);
        assert_eq!(
            (denial.status, denial.failure),
            (503, Failure::KeysUnavailable)
        );
        assert_eq!(header(denial, "retry-after"), Some("1"));
        // The old key still verifies its own tokens meanwhile.
        allowed(&f.bearer(&sign(&f.pair, claims())));
        let retry = Now { ms: NOW.ms + 1000 };
        let both = json!({"keys": [jwk(&f.pair, "k1"), jwk(&rotated, "k2")]}).to_string();
        answer(&mut f, retry, Some(both));
        let auth = format!("Bearer {token}");
        allowed(&f.decide(
            &request("/v1/models/m:predict", &[("authorization", &auth)]),
            retry,
        ));
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
        // The hit reuses the values computed when the token was verified: nothing is rebuilt
        // from the claims.
        assert_eq!(first.set_headers.len(), 3);
        for ((_, a), (_, b)) in first.set_headers.iter().zip(&second.set_headers) {
            assert!(Rc::ptr_eq(a, b), "{a} was computed again");
        }
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
    fn a_cached_signature_does_not_vouch_for_another_payload() {
        // The cache finds entries by the signature's digest; a token that pairs a verified
        // token's signature with other claims is checked in full, and refused.
        let mut f = fixture();
        let token = sign(&f.pair, claims());
        allowed(&f.bearer(&token));
        let (signing_input, signature) = token.rsplit_once('.').unwrap();
        let (header, _) = signing_input.split_once('.').unwrap();
        let mut other_claims = claims();
        other_claims.subject = Some("admin".to_owned());
        let other = sign(&f.pair, other_claims);
        let other_payload = other.split('.').nth(1).unwrap();
        let spliced = format!("{header}.{other_payload}.{signature}");
        assert_eq!(denied(&f.bearer(&spliced)).failure, Failure::BadSignature);
        assert_eq!(f.crypto.checks.get(), 2);
        allowed(&f.bearer(&token));
        assert_eq!(
            f.crypto.checks.get(),
            2,
            "the verified token is still cached"
        );
    }

    #[test]
    fn a_disabled_cache_verifies_every_request() {
        // jwt_cache_size 0: each request pays for its own signature check.
        let mut f = fixture_with(
            json!({"jwt_cache_config": {"jwt_cache_size": 0}}),
            json!([{"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}]),
        );
        let token = sign(&f.pair, claims());
        for _ in 0..3 {
            allowed(&f.bearer(&token));
        }
        assert_eq!(f.crypto.checks.get(), 3);
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
    fn claim_conditions_are_met_by_one_token() {
        // requires_all accepts two tokens; a role in one and a subject in the other do not add
        // up. The token that meets every condition alone is accepted.
        let mut f = fixture();
        let other = Ed25519KeyPair::generate().with_key_id("g1");
        let config = Config::from_json(
            json!({"providers": {
                "idp": {"issuer": "https://idp.test", "audiences": ["kserve"],
                        "local_jwks": {"inline_string": json!({"keys": [jwk(&f.pair, "k1")]}).to_string()},
                        "claim_to_headers": [{"header_name": "x-idp-sub", "claim_name": "sub"}]},
                "google": {"issuer": "https://accounts.google.com", "audiences": ["kserve"],
                        "from_headers": [{"name": "x-goog-token"}],
                        "local_jwks": {"inline_string": json!({"keys": [jwk(&other, "g1")]}).to_string()},
                        "claim_to_headers": [{"header_name": "x-google-sub", "claim_name": "sub"}]}},
               "rules": [{"match": {"prefix": "/"},
                          "requires": {"requires_all": {"requirements": [
                              {"provider_name": "idp"}, {"provider_name": "google"}]}},
                          "require_claims": [{"claim": "realm_access.roles", "has": "fraud"},
                                             {"claim": "sub", "equals": "svc-2"}]}]})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        f.keys = KeyStore::new(&config).unwrap();
        f.tokens = vec![TokenCache::new(10), TokenCache::new(10)];
        f.config = config;
        let role_only = sign(&f.pair, claims());
        let google = |sub: &str, roles: serde_json::Value| {
            let mut c = claims()
                .with_issuer("https://accounts.google.com")
                .with_subject(sub);
            c.custom = json!({"realm_access": {"roles": roles}});
            sign(&other, c)
        };
        let auth = format!("Bearer {role_only}");
        let split = google("svc-2", json!([]));
        let d = f.decide(
            &request("/", &[("authorization", &auth), ("x-goog-token", &split)]),
            NOW,
        );
        assert_eq!(denied(&d).failure, Failure::ClaimRequirementFailed);
        let whole = google("svc-2", json!(["fraud"]));
        let d = f.decide(
            &request("/", &[("authorization", &auth), ("x-goog-token", &whole)]),
            NOW,
        );
        let set = &allowed(&d).set_headers;
        assert!(set.contains(&("x-google-sub".into(), "svc-2".into())));
        assert!(set.contains(&("x-idp-sub".into(), "svc-1".into())));
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

    // ---- require_claims, gRPC, CORS, protected resource metadata ----

    fn fraud_rules(extra_rule_fields: serde_json::Value) -> serde_json::Value {
        let mut fraud = json!({"match": {"model": "fraud"}, "requires": {"provider_name": "idp"},
                               "require_claims": [{"claim": "realm_access.roles", "has": "fraud"}]});
        for (k, v) in extra_rule_fields.as_object().unwrap() {
            fraud[k] = v.clone();
        }
        json!([fraud, {"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}])
    }

    fn with_roles(roles: serde_json::Value) -> JWTClaims<serde_json::Value> {
        let mut c = claims();
        c.custom = json!({"realm_access": {"roles": roles}});
        c
    }

    fn on(f: &mut Fixture, path: &str, token: &str) -> Decision {
        let auth = format!("Bearer {token}");
        f.decide(&request(path, &[("authorization", &auth)]), NOW)
    }

    #[test]
    fn role_holder_passes_and_non_holder_gets_403_insufficient_scope() {
        // A valid token is not enough for a model whose rule requires a role.
        let mut f = fixture_with(json!({}), fraud_rules(json!({})));
        let holder = sign(&f.pair, with_roles(json!(["fraud", "churn"])));
        allowed(&on(&mut f, "/v1/models/fraud:predict", &holder));
        let other = sign(&f.pair, with_roles(json!(["churn"])));
        let d = on(&mut f, "/v2/models/fraud/versions/1/infer", &other);
        let denial = denied(&d);
        assert_eq!(denial.status, 403);
        assert_eq!(denial.failure, Failure::ClaimRequirementFailed);
        assert_eq!(
            header(denial, "www-authenticate"),
            Some(
                "Bearer realm=\"models.test\", error=\"insufficient_scope\", \
                 error_description=\"Jwt does not have the claims this request requires\""
            )
        );
        assert_eq!(
            denial.body,
            r#"{"error":"insufficient_scope","error_description":"Jwt does not have the claims this request requires"}"#
        );
        // Other models fall through to the plain rule.
        allowed(&on(&mut f, "/v1/models/fraudulent:predict", &other));
    }

    #[test]
    fn claim_conditions_hold_on_cached_tokens_too() {
        // A cache hit carries the claims, so the decision does not change on the second request.
        let mut f = fixture_with(json!({}), fraud_rules(json!({})));
        let other = sign(&f.pair, with_roles(json!(["churn"])));
        for _ in 0..2 {
            assert_eq!(
                denied(&on(&mut f, "/v1/models/fraud:predict", &other)).status,
                403
            );
        }
        assert_eq!(f.crypto.checks.get(), 1);
    }

    #[test]
    fn every_condition_must_hold() {
        // require_claims is a conjunction.
        let mut f = fixture_with(
            json!({}),
            fraud_rules(json!({"require_claims": [
                {"claim": "realm_access.roles", "has": "fraud"},
                {"claim": "sub", "one_of": ["svc-2"]}]})),
        );
        let token = sign(&f.pair, with_roles(json!(["fraud"])));
        assert_eq!(
            denied(&on(&mut f, "/v1/models/fraud:predict", &token)).failure,
            Failure::ClaimRequirementFailed
        );
    }

    #[test]
    fn a_scope_condition_is_named_in_the_403_challenge() {
        // RFC 6750 §3.1: insufficient_scope may say which scope is needed.
        let mut f = fixture_with(
            json!({}),
            fraud_rules(json!({"require_claims": [
                {"claim": "scope", "has_word": "fraud:predict"},
                {"claim": "scope", "has_word": "bad\"scope"}]})),
        );
        let mut c = claims();
        c.custom = json!({"scope": "openid fraud:predict-all"});
        let token = sign(&f.pair, c);
        let d = on(&mut f, "/v1/models/fraud:predict", &token);
        assert!(header(denied(&d), "www-authenticate")
            .unwrap()
            .ends_with(", scope=\"fraud:predict\""));
    }

    #[test]
    fn require_claims_without_any_token_is_a_401_challenge() {
        // allow_missing lets an absent token through the requirement; the claims still need one.
        let mut f = fixture_with(
            json!({}),
            json!([{"match": {"prefix": "/"}, "requires": {"allow_missing": {}},
                    "require_claims": [{"claim": "sub", "equals": "svc-1"}]}]),
        );
        let d = f.decide(&request("/v1/models/m:predict", &[]), NOW);
        assert_eq!(denied(&d).status, 401);
        assert_eq!(denied(&d).failure, Failure::Missing);
        let token = sign(&f.pair, claims());
        allowed(&on(&mut f, "/", &token));
    }

    fn grpc_request(path: &str, content_type: &str, headers: &[(&str, &str)]) -> Request {
        let mut request = request(path, headers);
        request
            .headers
            .push(("content-type".into(), content_type.into()));
        request
    }

    #[test]
    fn grpc_request_without_token_gets_a_trailers_only_unauthenticated() {
        // gRPC clients read grpc-status, not the HTTP status.
        let mut f = fixture();
        let d = f.decide(
            &grpc_request(
                "/inference.GRPCInferenceService/ModelInfer",
                "application/grpc",
                &[],
            ),
            NOW,
        );
        let denial = denied(&d);
        assert_eq!(denial.status, 200);
        assert_eq!(denial.body, "");
        assert_eq!(header(denial, "content-type"), Some("application/grpc"));
        assert_eq!(header(denial, "grpc-status"), Some("16"));
        assert_eq!(header(denial, "grpc-message"), Some("Jwt is missing"));
        assert_eq!(
            header(denial, "www-authenticate"),
            Some("Bearer realm=\"models.test\"")
        );
    }

    #[test]
    fn grpc_status_follows_the_failure_class() {
        // 403 → PERMISSION_DENIED (7), invalid token → UNAUTHENTICATED (16),
        // no keys → UNAVAILABLE (14).
        let grpc = Recipient {
            grpc: true,
            ..Recipient::default()
        };
        let status = |failure| {
            let denial = deny(failure, &grpc, 3);
            header(&denial, "grpc-status").unwrap().to_owned()
        };
        assert_eq!(status(Failure::ClaimRequirementFailed), "7");
        assert_eq!(status(Failure::Expired), "16");
        assert_eq!(status(Failure::MalformedAuthorization), "16");
        assert_eq!(status(Failure::KeysUnavailable), "14");
        let unavailable = deny(Failure::KeysUnavailable, &grpc, 3);
        assert_eq!(header(&unavailable, "retry-after"), Some("3"));
        assert_eq!(header(&unavailable, "www-authenticate"), None);
    }

    #[test]
    fn grpc_codecs_count_but_grpc_web_does_not() {
        // Envoy's own definition: application/grpc alone or with +codec.
        let is = |content_type| is_grpc(&grpc_request("/", content_type, &[]));
        assert!(is("application/grpc"));
        assert!(is("application/grpc+proto"));
        assert!(!is("application/grpc-web"));
        assert!(!is("application/grpc-web+proto"));
        assert!(!is("application/json"));
        assert!(!is_grpc(&request("/", &[])));
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        // gRPC HTTP/2 spec: printable ASCII except '%' as is, everything else as %XX.
        assert_eq!(grpc_percent_encode("Jwt is expired"), "Jwt is expired");
        assert_eq!(grpc_percent_encode("a%b\né~"), "a%25b%0A%C3%A9~");
    }

    fn preflight(headers: &[(&str, &str)]) -> Request {
        let mut request = request("/v1/models/m:predict", headers);
        request.method = "OPTIONS".into();
        request
    }

    const PREFLIGHT: [(&str, &str); 2] = [
        ("origin", "https://app.example.com"),
        ("access-control-request-method", "POST"),
    ];

    #[test]
    fn cors_preflight_passes_only_when_bypassed() {
        // A browser's preflight carries no credentials; jwt_authn's bypass_cors_preflight.
        let rules = json!([{"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}]);
        let mut f = fixture_with(json!({}), rules.clone());
        assert_eq!(denied(&f.decide(&preflight(&PREFLIGHT), NOW)).status, 401);
        let config = Config::from_json(
            json!({"providers": {"idp": {"issuer": "https://idp.test", "audiences": ["kserve"],
                     "local_jwks": {"inline_string": json!({"keys": [jwk(&f.pair, "k1")]}).to_string()}}},
                   "rules": rules, "bypass_cors_preflight": true})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        f.config = config;
        let d = f.decide(&preflight(&PREFLIGHT), NOW);
        assert!(allowed(&d).public);
        // A plain OPTIONS, or one lacking either header, is not a preflight.
        for headers in [&PREFLIGHT[..1], &PREFLIGHT[1..], &[]] {
            assert_eq!(denied(&f.decide(&preflight(headers), NOW)).status, 401);
        }
        let empty_origin = [("origin", ""), PREFLIGHT[1]];
        assert_eq!(
            denied(&f.decide(&preflight(&empty_origin), NOW)).status,
            401
        );
    }

    fn metadata_fixture() -> Fixture {
        let mut f = fixture();
        let config = Config::from_json(
            json!({"providers": {"idp": {"issuer": "https://idp.test", "audiences": ["kserve"],
                     "local_jwks": {"inline_string": json!({"keys": [jwk(&f.pair, "k1")]}).to_string()}}},
                   "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}],
                   "protected_resource_metadata": {"resource": "https://models.example.com"}})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        f.config = config;
        f
    }

    #[test]
    fn metadata_document_is_answered_without_a_token() {
        // RFC 9728: clients fetch it before they have a token.
        let mut f = metadata_fixture();
        let mut req = request("/.well-known/oauth-protected-resource?x=1", &[]);
        req.method = "GET".into();
        let Decision::Respond(reply) = f.decide(&req, NOW) else {
            panic!("expected the metadata document");
        };
        assert_eq!(reply.status, 200);
        assert!(reply
            .headers
            .contains(&("content-type".into(), "application/json".into())));
        let document: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(document["resource"], "https://models.example.com");
        assert_eq!(
            document["authorization_servers"],
            json!(["https://idp.test"])
        );
        req.method = "POST".into();
        let Decision::Respond(reply) = f.decide(&req, NOW) else {
            panic!("expected 405");
        };
        assert_eq!(reply.status, 405);
        // Other well-known paths are ordinary protected paths.
        let other = request("/.well-known/oauth-protected-resource/x", &[]);
        assert_eq!(denied(&f.decide(&other, NOW)).status, 401);
    }

    #[test]
    fn challenges_carry_resource_metadata() {
        // A client can find the issuer from any challenge alone.
        let mut f = metadata_fixture();
        let d = f.decide(&request("/v1/models/m:predict", &[]), NOW);
        assert_eq!(
            header(denied(&d), "www-authenticate"),
            Some(
                "Bearer realm=\"models.test\", resource_metadata=\"https://models.example.com\
                 /.well-known/oauth-protected-resource\""
            )
        );
        let d = on(&mut f, "/v1/models/m:predict", "x.y.z");
        let challenge = header(denied(&d), "www-authenticate").unwrap();
        assert!(challenge.contains(
            "resource_metadata=\"https://models.example.com/.well-known/oauth-protected-resource\", \
             error=\"invalid_token\""
        ));
    }

    #[test]
    fn typ_and_azp_mismatches_are_invalid_tokens() {
        // The wrong kind of token, or a token for another client, is a token problem: 401.
        let mut f = fixture_with(
            json!({"allowed_types": ["at+jwt"], "allowed_authorized_parties": ["svc"]}),
            json!([{"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}]),
        );
        let token = sign(&f.pair, claims());
        let denial = denied(&f.bearer(&token)).clone();
        assert_eq!(denial.failure, Failure::TypeNotAllowed);
        assert_eq!(denial.status, 401);
        assert!(header(&denial, "www-authenticate")
            .unwrap()
            .contains("error=\"invalid_token\""));
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
        assert_eq!(allow.remove_headers, ["x-goog-authenticated-user-whatever"]);
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
