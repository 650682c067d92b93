//! Plugin configuration: the JSON a user writes, validated and compiled into [`Config`].
//!
//! Field names follow Envoy's jwt_authn v3 API in its JSON form. Every error names the field it
//! is about, as a dotted path (`providers.keycloak.audiences`).

pub mod binding;
pub mod body;
pub mod host_index;
pub mod identity;
pub mod key_source;
mod node;
pub mod preset;
pub mod protected_resource;
pub mod provider;
pub mod rules;
pub mod uri;

use serde_json::Value;

pub use node::ConfigError;
use node::{quoted, Node, ROOT};

use provider::{compile_header_prefixes, compile_providers};
use rules::{compile_rules, ManagedHeaders};

use crate::jose::json::{self, StrictJsonError};

pub use binding::{BindingMode, ChallengeSchemes, DpopPolicy};
pub use body::BodySettings;
pub use host_index::HostIndex;
pub use key_source::{HttpFetch, KeySource};
pub use provider::{ClaimToHeader, Provider, ProviderId};
pub use rules::{PathMatch, Requirement, Rule};

/// A validated configuration. Built only by [`Config::from_json`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Providers in name order; a [`ProviderId`] indexes this vector.
    pub providers: Vec<Provider>,
    /// Rules in configuration order; the first whose match fits the request wins.
    pub rules: Vec<Rule>,
    /// Which rules may cover a host, so that finding the rule does not test every host rule.
    pub host_index: HostIndex,
    /// Header names (lower-case) the filter sets upstream. Client copies are removed from every
    /// request, public ones included, so the upstream can trust them.
    pub managed_headers: Vec<String>,
    /// Header name prefixes (lower-case) the filter owns: every request header starting with one
    /// is removed, whatever the rest of its name.
    pub managed_header_prefixes: Vec<String>,
    /// How many requests one worker may hold paused while signing keys load.
    pub max_waiting_requests: usize,
    /// Check RS256/384/512 and ES256/384 signatures with the host's `verify_signature` when the
    /// host offers it; false keeps every check in the plugin's own pure-Rust code.
    pub host_crypto: bool,
    /// Let CORS preflight requests (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`) through without a token.
    pub bypass_cors_preflight: bool,
    /// Where the filter serves its RFC 9728 protected resource metadata, when configured.
    pub protected_resource: Option<ProtectedResource>,
    /// Which authentication schemes refusals challenge with.
    pub challenge: ChallengeSchemes,
    /// How bodies that name their model are read.
    pub body: BodySettings,
    /// Some rule matches a model: model lists are narrowed, and bodies may be read.
    pub has_model_rules: bool,
    /// Some provider checks certificate-bound tokens, so requests need the peer certificate's
    /// digest (an extra host call, made only then).
    pub reads_peer_certificate: bool,
}

/// The RFC 9728 protected resource this filter guards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedResource {
    /// The resource identifier, as configured (an https URL).
    pub resource: String,
    /// The request path the filter answers with the metadata document.
    pub metadata_path: String,
    /// The document's absolute URL, sent as `resource_metadata` in challenges.
    pub metadata_url: String,
    /// The RFC 9728 document itself, built once from the providers and rules.
    pub document: String,
}

const DEFAULT_MAX_WAITING_REQUESTS: usize = 1000;
const TOP_FIELDS: [&str; 6] = [
    "providers",
    "rules",
    "max_waiting_requests",
    "host_crypto",
    "bypass_cors_preflight",
    "protected_resource_metadata",
];
impl Config {
    /// Parses and validates the plugin configuration.
    pub fn from_json(json: &[u8]) -> Result<Config, ConfigError> {
        // serde_json's message names line and column only, never the input.
        let value: Value = json::parse_strict(json).map_err(|e| match e {
            StrictJsonError::DuplicateName(name) => ConfigError::new(
                ROOT,
                format!("member name {} appears twice in one object", quoted(&name)),
            ),
            StrictJsonError::Syntax(message) => {
                ConfigError::new(ROOT, format!("not valid JSON: {message}"))
            }
        })?;
        compile(&Node {
            value: &value,
            path: ROOT.into(),
        })
    }

    /// Looks a provider up by name.
    pub fn provider_id(&self, name: &str) -> Option<ProviderId> {
        self.providers.iter().position(|p| p.name == name)
    }
}

fn compile(root: &Node<'_>) -> Result<Config, ConfigError> {
    let fields: Vec<&str> = TOP_FIELDS.into_iter().chain(body::FIELDS).collect();
    let top = root.object(&fields)?;
    let (providers, mut managed_headers) = compile_providers(&top.required("providers")?)?;
    let body = body::compile(&top)?;
    if let Some(header) = &body.model_header {
        if managed_headers.contains(header) || providers.iter().any(|p| p.reads_token_from(header))
        {
            return Err(ConfigError::new(
                "model_header",
                format!(
                    "\"{header}\" is already a header a provider reads or sets; use another name"
                ),
            ));
        }
        managed_headers.push(header.clone());
    }
    let managed_header_prefixes = compile_header_prefixes(&providers)?;
    let rules = compile_rules(
        &top.required("rules")?,
        &providers,
        &ManagedHeaders {
            names: &managed_headers,
            prefixes: &managed_header_prefixes,
        },
    )?;
    let host_index = HostIndex::build(&rules);
    let max_waiting_requests = match top.get("max_waiting_requests") {
        None => DEFAULT_MAX_WAITING_REQUESTS,
        Some(node) => {
            let count = node.unsigned()?;
            if count == 0 {
                return Err(node.error("must be at least 1"));
            }
            usize::try_from(count).map_err(|_| node.error("is too large"))?
        }
    };
    let host_crypto = match top.get("host_crypto") {
        None => true,
        Some(node) => node.boolean()?,
    };
    let bypass_cors_preflight = match top.get("bypass_cors_preflight") {
        None => false,
        Some(node) => node.boolean()?,
    };
    let protected_resource = top
        .get("protected_resource_metadata")
        .map(|node| compile_protected_resource(&node, &providers, &rules))
        .transpose()?;
    let challenge = binding::challenge_schemes(providers.iter().map(|p| p.binding.dpop.as_ref()));
    let reads_peer_certificate = providers.iter().any(|p| p.binding.mtls.is_some());
    let has_model_rules = rules
        .iter()
        .any(|rule| matches!(rule.path_match, PathMatch::Model(_)));
    Ok(Config {
        has_model_rules,
        body,
        challenge,
        reads_peer_certificate,
        providers,
        rules,
        host_index,
        managed_headers,
        managed_header_prefixes,
        max_waiting_requests,
        host_crypto,
        bypass_cors_preflight,
        protected_resource,
    })
}

fn compile_protected_resource(
    node: &Node<'_>,
    providers: &[Provider],
    rules: &[Rule],
) -> Result<ProtectedResource, ConfigError> {
    let object = node.object(&["resource"])?;
    let resource_node = object.required("resource")?;
    let resource = resource_node.non_empty_string()?;
    let location =
        protected_resource::locate(resource).map_err(|message| resource_node.error(message))?;
    Ok(ProtectedResource {
        document: protected_resource::document(resource, providers, rules),
        resource: resource.to_owned(),
        metadata_path: location.path,
        metadata_url: location.url,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::time::Duration;

    use super::node::parse_duration;
    use super::*;
    use crate::jose::alg::Alg;
    use crate::policy::claims::{ClaimCondition, ClaimTest};
    use crate::policy::identity::IdentityPolicy;
    use crate::request::extract::TokenSource;
    use crate::request::header_matcher::{HeaderMatcher, HeaderTest};
    use crate::request::host::HostPattern;
    use crate::request::model::ModelPattern;
    use serde_json::json;

    const EXAMPLE: &str = include_str!("../../tests/fixtures/config/keycloak.json");

    /// The smallest valid configuration: one provider with inline keys, one protected rule.
    fn minimal() -> Value {
        json!({
            "providers": {
                "kc": {
                    "issuer": "https://kc.example.com/realms/r",
                    "audiences": ["kserve"],
                    "local_jwks": {"inline_string": "{\"keys\": []}"}
                }
            },
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "kc"}}]
        })
    }

    /// Sets the member (or array element) at JSON pointer `pointer`, creating a missing member.
    fn set(doc: &mut Value, pointer: &str, value: Value) {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        match doc.pointer_mut(parent).unwrap() {
            Value::Object(map) => {
                map.insert(key.to_owned(), value);
            }
            Value::Array(items) => items[key.parse::<usize>().unwrap()] = value,
            other => panic!("cannot set {pointer} in {other}"),
        }
    }

    fn remove(doc: &mut Value, pointer: &str) {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        doc.pointer_mut(parent)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove(key)
            .unwrap();
    }

    fn minimal_with(pointer: &str, value: Value) -> Value {
        let mut doc = minimal();
        set(&mut doc, pointer, value);
        doc
    }

    fn minimal_without(pointer: &str) -> Value {
        let mut doc = minimal();
        remove(&mut doc, pointer);
        doc
    }

    fn compile_doc(doc: &Value) -> Result<Config, ConfigError> {
        Config::from_json(doc.to_string().as_bytes())
    }

    fn ok(doc: &Value) -> Config {
        compile_doc(doc).unwrap_or_else(|e| panic!("{e}"))
    }

    fn provider(doc: &Value) -> Provider {
        ok(doc).providers.into_iter().next().unwrap()
    }

    #[track_caller]
    fn assert_error(doc: &Value, field: &str, needle: &str) {
        let error = compile_doc(doc).expect_err("configuration should be refused");
        assert_eq!(error.field, field, "{error}");
        assert!(error.message.contains(needle), "{error}");
    }

    fn with_remote_uri(uri: &str) -> Value {
        let mut doc = minimal_without("/providers/kc/local_jwks");
        set(
            &mut doc,
            "/providers/kc/remote_jwks",
            json!({"http_uri": {"uri": uri, "cluster": "idp"}}),
        );
        doc
    }

    fn remote_fetch(doc: &Value) -> (HttpFetch, u64) {
        match provider(doc).keys {
            KeySource::Remote {
                jwks,
                cache_duration_seconds,
            } => (jwks, cache_duration_seconds),
            other => panic!("expected remote keys, got {other:?}"),
        }
    }

    fn with_discovery(issuer: &str, discovery: Value) -> Value {
        let mut doc = minimal_without("/providers/kc/local_jwks");
        set(&mut doc, "/providers/kc/issuer", json!(issuer));
        set(&mut doc, "/providers/kc/oidc_discovery", discovery);
        doc
    }

    fn with_rules(rules: Value) -> Value {
        minimal_with("/rules", rules)
    }

    /// A requirement nesting `depth` levels: requires_any inside requires_any ... around kc.
    fn nested_requirement(depth: usize) -> Value {
        let mut requirement = json!({"provider_name": "kc"});
        for _ in 1..depth {
            requirement = json!({"requires_any": {"requirements": [requirement]}});
        }
        requirement
    }

    // ---- the full example ----

    // The documented example compiles to exactly these values.
    #[test]
    fn example_compiles() {
        let config = Config::from_json(EXAMPLE.as_bytes()).unwrap();
        let expected = Config {
            providers: vec![Provider {
                name: "keycloak".into(),
                issuer: "https://keycloak.example.com/realms/kserve".into(),
                audiences: vec!["kserve-client".into()],
                algorithms: vec![Alg::RS256, Alg::ES256],
                keys: KeySource::Remote {
                    jwks: HttpFetch {
                        cluster: "keycloak".into(),
                        authority: "keycloak:8080".into(),
                        path: "/realms/kserve/protocol/openid-connect/certs".into(),
                        timeout_ms: 5000,
                    },
                    cache_duration_seconds: 600,
                },
                token_sources: vec![
                    TokenSource::Header {
                        name: "authorization".into(),
                        value_prefix: "Bearer ".into(),
                    },
                    TokenSource::Param {
                        name: "access_token".into(),
                    },
                ],
                forward: false,
                forward_payload_header: Some("x-jwt-payload".into()),
                claim_to_headers: vec![ClaimToHeader {
                    header_name: "x-jwt-sub".into(),
                    claim_path: vec!["sub".into()],
                }],
                clock_skew_seconds: 60,
                max_lifetime_seconds: Some(86400),
                require_expiration: true,
                jwt_cache_size: 10_000,
                allowed_types: Vec::new(),
                allowed_authorized_parties: Vec::new(),
                alternate_issuers: vec![],
                identity: IdentityPolicy::default(),
                filter_state: None,
                binding: Default::default(),
            }],
            rules: vec![
                Rule {
                    path_match: PathMatch::Prefix("/v2/health".into()),
                    requirement: None,
                    methods: Vec::new(),
                    hosts: Vec::new(),
                    headers: Vec::new(),
                    require_claims: Vec::new(),
                },
                Rule {
                    path_match: PathMatch::Exact("/metrics".into()),
                    requirement: None,
                    methods: Vec::new(),
                    hosts: Vec::new(),
                    headers: Vec::new(),
                    require_claims: Vec::new(),
                },
                Rule {
                    path_match: PathMatch::Prefix("/".into()),
                    requirement: Some(Requirement::Provider(0)),
                    methods: Vec::new(),
                    hosts: Vec::new(),
                    headers: Vec::new(),
                    require_claims: Vec::new(),
                },
            ],
            host_index: HostIndex::default(),
            managed_headers: vec!["x-jwt-payload".into(), "x-jwt-sub".into()],
            managed_header_prefixes: vec![],
            max_waiting_requests: 1000,
            host_crypto: true,
            bypass_cors_preflight: false,
            protected_resource: None,
            challenge: Default::default(),
            body: Default::default(),
            has_model_rules: false,
            reads_peer_certificate: false,
        };
        let expected = Config {
            host_index: HostIndex::build(&expected.rules),
            ..expected
        };
        assert_eq!(config, expected);
        assert_eq!(config.provider_id("keycloak"), Some(0));
        assert_eq!(config.provider_id("google"), None);
    }

    // ---- defaults ----

    // Optional provider fields take their documented defaults.
    #[test]
    fn provider_defaults() {
        let config = ok(&minimal());
        assert_eq!(config.max_waiting_requests, 1000);
        assert!(config.host_crypto);
        assert!(config.managed_headers.is_empty());
        let provider = &config.providers[0];
        assert_eq!(
            provider.token_sources,
            vec![TokenSource::Header {
                name: "authorization".into(),
                value_prefix: "Bearer ".into()
            }]
        );
        assert!(!provider.forward);
        assert_eq!(provider.forward_payload_header, None);
        assert!(provider.claim_to_headers.is_empty());
        assert_eq!(provider.clock_skew_seconds, 60);
        assert_eq!(provider.max_lifetime_seconds, None);
        assert!(provider.require_expiration);
        assert_eq!(provider.algorithms, Alg::ALL.to_vec());
        assert_eq!(
            provider.keys,
            KeySource::Local {
                jwks: "{\"keys\": []}".into()
            }
        );
    }

    // remote_jwks without timeout and cache_duration uses 5 s and 600 s.
    #[test]
    fn remote_defaults() {
        let (fetch, cache) = remote_fetch(&with_remote_uri("https://idp.example.com/certs"));
        assert_eq!(
            fetch,
            HttpFetch {
                cluster: "idp".into(),
                authority: "idp.example.com".into(),
                path: "/certs".into(),
                timeout_ms: 5000,
            }
        );
        assert_eq!(cache, 600);
    }

    // from_params alone means only those parameters, as in jwt_authn: no implicit Bearer header.
    #[test]
    fn params_alone_replace_default_header() {
        let doc = minimal_with("/providers/kc/from_params", json!(["access_token"]));
        assert_eq!(
            provider(&doc).token_sources,
            vec![TokenSource::Param {
                name: "access_token".into()
            }]
        );
    }

    // An empty from_headers with params leaves only the params.
    #[test]
    fn empty_headers_with_params() {
        let mut doc = minimal_with("/providers/kc/from_headers", json!([]));
        set(&mut doc, "/providers/kc/from_params", json!(["token"]));
        assert_eq!(
            provider(&doc).token_sources,
            vec![TokenSource::Param {
                name: "token".into()
            }]
        );
    }

    // Header names are stored lower-case; a missing value_prefix means none.
    #[test]
    fn header_source_lower_cased_without_prefix() {
        let doc = minimal_with(
            "/providers/kc/from_headers",
            json!([{"name": "X-Goog-IAP-JWT-Assertion"}]),
        );
        assert_eq!(
            provider(&doc).token_sources,
            vec![TokenSource::Header {
                name: "x-goog-iap-jwt-assertion".into(),
                value_prefix: String::new()
            }]
        );
    }

    // Providers are sorted by name and requirements refer to the sorted index.
    #[test]
    fn providers_sorted_by_name() {
        let mut doc = minimal();
        let kc = doc.pointer("/providers/kc").unwrap().clone();
        set(&mut doc, "/providers/zeta", kc.clone());
        set(&mut doc, "/providers/alpha", kc);
        set(
            &mut doc,
            "/rules/0/requires",
            json!({"requires_all": {"requirements": [
                {"provider_name": "zeta"}, {"provider_name": "alpha"}, {"provider_name": "kc"}
            ]}}),
        );
        let config = ok(&doc);
        let names: Vec<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["alpha", "kc", "zeta"]);
        assert_eq!(
            config.rules[0].requirement,
            Some(Requirement::All(vec![
                Requirement::Provider(2),
                Requirement::Provider(0),
                Requirement::Provider(1)
            ]))
        );
        assert_eq!(config.provider_id("zeta"), Some(2));
    }

    // max_waiting_requests accepts a positive integer.
    #[test]
    fn max_waiting_requests_set() {
        assert_eq!(
            ok(&minimal_with("/max_waiting_requests", json!(5))).max_waiting_requests,
            5
        );
    }

    // host_crypto can be turned off and must be a boolean.
    #[test]
    fn host_crypto_set() {
        assert!(!ok(&minimal_with("/host_crypto", json!(false))).host_crypto);
        assert!(ok(&minimal_with("/host_crypto", json!(true))).host_crypto);
        assert_error(
            &minimal_with("/host_crypto", json!("false")),
            "host_crypto",
            "expected true or false, found a string",
        );
        assert_error(
            &minimal_with("/host_crypto", json!(1)),
            "host_crypto",
            "expected true or false",
        );
    }

    // ---- durations ----

    // Valid protobuf duration strings convert to the exact value.
    #[test]
    fn durations_valid() {
        for (text, expected) in [
            ("5s", Duration::from_secs(5)),
            ("600s", Duration::from_secs(600)),
            ("1.5s", Duration::from_millis(1500)),
            ("0.250s", Duration::from_millis(250)),
            ("0.000000001s", Duration::from_nanos(1)),
            ("0s", Duration::ZERO),
            ("315576000000s", Duration::from_secs(315_576_000_000)),
        ] {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
    }

    // Anything but decimal seconds with an "s" suffix is refused.
    #[test]
    fn durations_invalid() {
        for text in [
            "5",
            "5m",
            "-1s",
            "s",
            "",
            "1.s",
            ".5s",
            "+5s",
            " 5s",
            "5 s",
            "1e3s",
            "5S",
            "0.0000000001s",
            "1h",
            "5ss",
        ] {
            let error = parse_duration(text).unwrap_err();
            assert!(error.contains("unparsable duration"), "{text}: {error}");
            assert!(
                error.contains("expected seconds like \"5s\""),
                "{text}: {error}"
            );
        }
    }

    // Durations beyond the protobuf range are refused as too long.
    #[test]
    fn durations_too_long() {
        for text in ["315576000001s", "99999999999999999999999s"] {
            assert!(
                parse_duration(text).unwrap_err().contains("too long"),
                "{text}"
            );
        }
    }

    // Timeouts become milliseconds, rounded up; cache durations become seconds, rounded up.
    #[test]
    fn durations_convert_to_fetch_units() {
        let mut doc = with_remote_uri("https://idp.example.com/certs");
        set(
            &mut doc,
            "/providers/kc/remote_jwks/http_uri/timeout",
            json!("0.0001s"),
        );
        set(
            &mut doc,
            "/providers/kc/remote_jwks/cache_duration",
            json!("1.5s"),
        );
        let (fetch, cache) = remote_fetch(&doc);
        assert_eq!(fetch.timeout_ms, 1);
        assert_eq!(cache, 2);

        set(
            &mut doc,
            "/providers/kc/remote_jwks/http_uri/timeout",
            json!("60s"),
        );
        set(
            &mut doc,
            "/providers/kc/remote_jwks/cache_duration",
            json!("1s"),
        );
        let (fetch, cache) = remote_fetch(&doc);
        assert_eq!(fetch.timeout_ms, 60_000);
        assert_eq!(cache, 1);
    }

    // A malformed duration in the document names its field.
    #[test]
    fn duration_field_unparsable() {
        let mut doc = with_remote_uri("https://idp.example.com/certs");
        set(
            &mut doc,
            "/providers/kc/remote_jwks/http_uri/timeout",
            json!("5"),
        );
        assert_error(
            &doc,
            "providers.kc.remote_jwks.http_uri.timeout",
            "unparsable duration \"5\"; expected seconds like \"5s\"",
        );
    }

    // A duration given as a number is refused.
    #[test]
    fn duration_field_not_string() {
        let mut doc = with_remote_uri("https://idp.example.com/certs");
        set(
            &mut doc,
            "/providers/kc/remote_jwks/cache_duration",
            json!(600),
        );
        assert_error(
            &doc,
            "providers.kc.remote_jwks.cache_duration",
            "expected a duration string",
        );
    }

    // A zero timeout is refused.
    #[test]
    fn timeout_zero() {
        let mut doc = with_remote_uri("https://idp.example.com/certs");
        set(
            &mut doc,
            "/providers/kc/remote_jwks/http_uri/timeout",
            json!("0s"),
        );
        assert_error(
            &doc,
            "providers.kc.remote_jwks.http_uri.timeout",
            "more than \"0s\"",
        );
    }

    // A timeout over 60 s is refused.
    #[test]
    fn timeout_too_long() {
        let mut doc = with_remote_uri("https://idp.example.com/certs");
        set(
            &mut doc,
            "/providers/kc/remote_jwks/http_uri/timeout",
            json!("60.001s"),
        );
        assert_error(
            &doc,
            "providers.kc.remote_jwks.http_uri.timeout",
            "at most \"60s\"",
        );
    }

    // A cache duration under 1 s is refused.
    #[test]
    fn cache_duration_too_short() {
        let mut doc = with_remote_uri("https://idp.example.com/certs");
        set(
            &mut doc,
            "/providers/kc/remote_jwks/cache_duration",
            json!("0.999s"),
        );
        assert_error(
            &doc,
            "providers.kc.remote_jwks.cache_duration",
            "at least \"1s\"",
        );
    }

    // max_lifetime is kept in whole seconds, rounded down (token times are whole seconds).
    #[test]
    fn max_lifetime_seconds() {
        let doc = minimal_with("/providers/kc/max_lifetime", json!("3600.9s"));
        assert_eq!(provider(&doc).max_lifetime_seconds, Some(3600));
    }

    // A max_lifetime under 1 s is refused.
    #[test]
    fn max_lifetime_too_short() {
        let doc = minimal_with("/providers/kc/max_lifetime", json!("0.5s"));
        assert_error(&doc, "providers.kc.max_lifetime", "at least \"1s\"");
    }

    // ---- document shape ----

    // Text that is not JSON is reported at the root with serde's position, not the input.
    #[test]
    fn invalid_json() {
        let error = Config::from_json(b"{\"providers\": {\"secret-looking-text\"").unwrap_err();
        assert_eq!(error.field, "(root)");
        assert!(error.message.contains("line 1"), "{error}");
        assert!(!error.message.contains("secret-looking-text"), "{error}");
    }

    // A repeated member name (two providers of the same name) is refused, not silently merged.
    #[test]
    fn duplicate_member_name() {
        let text = br#"{"providers": {"a": {}, "a": {}}, "rules": []}"#;
        let error = Config::from_json(text).unwrap_err();
        assert_eq!(error.field, "(root)");
        assert!(error.message.contains("\"a\" appears twice"), "{error}");
    }

    // A document that is not an object is refused at the root.
    #[test]
    fn root_not_object() {
        assert_error(
            &json!([1, 2]),
            "(root)",
            "expected an object, found an array",
        );
    }

    // An unknown top-level field is named.
    #[test]
    fn unknown_top_level_field() {
        assert_error(
            &minimal_with("/provider", json!({})),
            "provider",
            "unknown field; expected one of: providers, rules, max_waiting_requests, host_crypto",
        );
    }

    // An unknown field deep inside is named by its full path.
    #[test]
    fn unknown_nested_field() {
        let mut doc = with_remote_uri("https://idp.example.com/certs");
        set(
            &mut doc,
            "/providers/kc/remote_jwks/http_uri/timout",
            json!("5s"),
        );
        assert_error(
            &doc,
            "providers.kc.remote_jwks.http_uri.timout",
            "unknown field; expected one of: uri, cluster, timeout",
        );
    }

    // An unknown provider field is named.
    #[test]
    fn unknown_provider_field() {
        assert_error(
            &minimal_with("/providers/kc/audience", json!(["x"])),
            "providers.kc.audience",
            "expected one of: issuer, audiences",
        );
    }

    // providers is required.
    #[test]
    fn providers_missing() {
        assert_error(
            &minimal_without("/providers"),
            "providers",
            "required field is missing",
        );
    }

    // providers must be an object.
    #[test]
    fn providers_not_object() {
        assert_error(
            &minimal_with("/providers", json!([])),
            "providers",
            "expected an object, found an array",
        );
    }

    // providers must not be empty.
    #[test]
    fn providers_empty() {
        assert_error(
            &minimal_with("/providers", json!({})),
            "providers",
            "at least one provider",
        );
    }

    // A provider name must not be empty.
    #[test]
    fn provider_name_empty() {
        let mut doc = minimal();
        let kc = doc.pointer("/providers/kc").unwrap().clone();
        set(&mut doc, "/providers/", kc);
        assert_error(&doc, "providers", "provider names must not be empty");
    }

    // A provider must be an object.
    #[test]
    fn provider_not_object() {
        assert_error(
            &minimal_with("/providers/kc", json!("x")),
            "providers.kc",
            "expected an object, found a string",
        );
    }

    // max_waiting_requests must be positive.
    #[test]
    fn max_waiting_requests_zero() {
        assert_error(
            &minimal_with("/max_waiting_requests", json!(0)),
            "max_waiting_requests",
            "at least 1",
        );
    }

    // max_waiting_requests must be an integer.
    #[test]
    fn max_waiting_requests_not_integer() {
        assert_error(
            &minimal_with("/max_waiting_requests", json!(-3)),
            "max_waiting_requests",
            "non-negative integer",
        );
        assert_error(
            &minimal_with("/max_waiting_requests", json!("10")),
            "max_waiting_requests",
            "expected a non-negative integer, found a string",
        );
    }

    // ---- issuer and audiences ----

    // issuer is required.
    #[test]
    fn issuer_missing() {
        assert_error(
            &minimal_without("/providers/kc/issuer"),
            "providers.kc.issuer",
            "required field is missing",
        );
    }

    // issuer must not be empty.
    #[test]
    fn issuer_empty() {
        assert_error(
            &minimal_with("/providers/kc/issuer", json!("")),
            "providers.kc.issuer",
            "must not be empty",
        );
    }

    // An issuer that is not a URL is fine when keys do not come from discovery.
    #[test]
    fn issuer_any_string_without_discovery() {
        let doc = minimal_with("/providers/kc/issuer", json!("accounts.google.com"));
        assert_eq!(provider(&doc).issuer, "accounts.google.com");
    }

    // audiences is required.
    #[test]
    fn audiences_missing() {
        assert_error(
            &minimal_without("/providers/kc/audiences"),
            "providers.kc.audiences",
            "required field is missing",
        );
    }

    // audiences must not be empty.
    #[test]
    fn audiences_empty() {
        assert_error(
            &minimal_with("/providers/kc/audiences", json!([])),
            "providers.kc.audiences",
            "must not be empty",
        );
    }

    // audiences must be an array.
    #[test]
    fn audiences_not_array() {
        assert_error(
            &minimal_with("/providers/kc/audiences", json!("kserve")),
            "providers.kc.audiences",
            "expected an array, found a string",
        );
    }

    // Each audience must be a non-empty string.
    #[test]
    fn audience_element_invalid() {
        assert_error(
            &minimal_with("/providers/kc/audiences", json!(["a", ""])),
            "providers.kc.audiences[1]",
            "must not be empty",
        );
        assert_error(
            &minimal_with("/providers/kc/audiences", json!([7])),
            "providers.kc.audiences[0]",
            "expected a string, found a number",
        );
    }

    // ---- key sources ----

    // A provider without a key source is refused at the provider.
    #[test]
    fn key_source_missing() {
        assert_error(
            &minimal_without("/providers/kc/local_jwks"),
            "providers.kc",
            "no key source is set; set exactly one of remote_jwks, local_jwks, oidc_discovery",
        );
    }

    // A provider with two key sources is refused at the provider.
    #[test]
    fn key_source_several() {
        let mut doc = with_remote_uri("https://idp.example.com/certs");
        set(
            &mut doc,
            "/providers/kc/local_jwks",
            json!({"inline_string": "{}"}),
        );
        assert_error(
            &doc,
            "providers.kc",
            "remote_jwks and local_jwks are set; set exactly one of",
        );
    }

    // remote_jwks needs http_uri.
    #[test]
    fn remote_http_uri_missing() {
        let mut doc = minimal_without("/providers/kc/local_jwks");
        set(
            &mut doc,
            "/providers/kc/remote_jwks",
            json!({"cache_duration": "5s"}),
        );
        assert_error(
            &doc,
            "providers.kc.remote_jwks.http_uri",
            "required field is missing",
        );
    }

    // http_uri needs uri.
    #[test]
    fn remote_uri_missing() {
        let mut doc = with_remote_uri("https://idp.example.com/certs");
        remove(&mut doc, "/providers/kc/remote_jwks/http_uri/uri");
        assert_error(
            &doc,
            "providers.kc.remote_jwks.http_uri.uri",
            "required field is missing",
        );
    }

    // http_uri needs a non-empty cluster.
    #[test]
    fn remote_cluster_invalid() {
        let mut doc = with_remote_uri("https://idp.example.com/certs");
        remove(&mut doc, "/providers/kc/remote_jwks/http_uri/cluster");
        assert_error(
            &doc,
            "providers.kc.remote_jwks.http_uri.cluster",
            "required field is missing",
        );
        set(
            &mut doc,
            "/providers/kc/remote_jwks/http_uri/cluster",
            json!(""),
        );
        assert_error(
            &doc,
            "providers.kc.remote_jwks.http_uri.cluster",
            "must not be empty",
        );
    }

    // The JWKS URL is split into authority (as written) and path with query.
    #[test]
    fn remote_uri_split() {
        for (uri, authority, path) in [
            ("https://idp.example.com", "idp.example.com", "/"),
            ("https://idp.example.com/", "idp.example.com", "/"),
            ("HTTP://Keycloak:8080/certs", "Keycloak:8080", "/certs"),
            ("https://idp.example.com?v=1", "idp.example.com", "/?v=1"),
            (
                "https://idp.example.com/a/b?x=1&y=%20",
                "idp.example.com",
                "/a/b?x=1&y=%20",
            ),
            ("http://[::1]:8443/jwks", "[::1]:8443", "/jwks"),
            ("http://10.0.0.1/jwks", "10.0.0.1", "/jwks"),
        ] {
            let (fetch, _) = remote_fetch(&with_remote_uri(uri));
            assert_eq!(fetch.authority, authority, "{uri}");
            assert_eq!(fetch.path, path, "{uri}");
        }
    }

    // JWKS URLs that are not absolute http(s) URLs, or that carry userinfo, a fragment,
    // whitespace or a broken authority are refused, without repeating the URL.
    #[test]
    fn remote_uri_invalid() {
        for (uri, needle) in [
            ("/realms/kserve/certs", "absolute http:// or https:// URL"),
            (
                "ftp://idp.example.com/certs",
                "absolute http:// or https:// URL",
            ),
            ("idp.example.com/certs", "absolute http:// or https:// URL"),
            (
                "https://user:hunter2@idp.example.com/certs",
                "user information",
            ),
            ("https://idp.example.com/certs#keys", "fragment"),
            (
                "https://idp.example.com/a b",
                "whitespace, control or non-ASCII",
            ),
            (
                "https://idp.example.com/\u{7}",
                "whitespace, control or non-ASCII",
            ),
            (
                "https://idp.exämple.com/",
                "whitespace, control or non-ASCII",
            ),
            ("https:///certs", "has no host"),
            ("https://:443/certs", "invalid host name"),
            ("https://idp.example.com:/certs", "invalid port"),
            ("https://idp.example.com:0/certs", "invalid port"),
            ("https://idp.example.com:65536/certs", "invalid port"),
            ("https://idp.example.com:44x/certs", "invalid port"),
            ("https://::1/certs", "invalid host name"),
            ("https://[::1/certs", "unclosed"),
            ("https://[]/certs", "invalid IPv6"),
            ("https://[::1]x/certs", "after its IPv6"),
            ("https://idp%2eexample.com/certs", "invalid host name"),
        ] {
            let error = compile_doc(&with_remote_uri(uri)).unwrap_err();
            assert_eq!(
                error.field, "providers.kc.remote_jwks.http_uri.uri",
                "{uri}"
            );
            assert!(error.message.contains(needle), "{uri}: {error}");
            assert!(!error.message.contains("hunter2"), "{error}");
        }
    }

    // local_jwks needs a non-empty inline_string.
    #[test]
    fn local_inline_string_invalid() {
        assert_error(
            &minimal_with("/providers/kc/local_jwks", json!({})),
            "providers.kc.local_jwks.inline_string",
            "required field is missing",
        );
        assert_error(
            &minimal_with("/providers/kc/local_jwks", json!({"inline_string": ""})),
            "providers.kc.local_jwks.inline_string",
            "must not be empty",
        );
    }

    // Only inline keys are supported; a file name is an unknown field.
    #[test]
    fn local_filename_unsupported() {
        assert_error(
            &minimal_with(
                "/providers/kc/local_jwks",
                json!({"filename": "/etc/jwks.json"}),
            ),
            "providers.kc.local_jwks.filename",
            "expected one of: inline_string",
        );
    }

    // Discovery reads <issuer>/.well-known/openid-configuration through the given cluster.
    #[test]
    fn discovery_compiles() {
        for (issuer, authority, path) in [
            (
                "https://kc.example.com/realms/kserve",
                "kc.example.com",
                "/realms/kserve/.well-known/openid-configuration",
            ),
            (
                "https://kc.example.com/realms/kserve/",
                "kc.example.com",
                "/realms/kserve/.well-known/openid-configuration",
            ),
            (
                "https://accounts.google.com",
                "accounts.google.com",
                "/.well-known/openid-configuration",
            ),
            (
                "http://keycloak:8080/",
                "keycloak:8080",
                "/.well-known/openid-configuration",
            ),
        ] {
            let doc = with_discovery(issuer, json!({"cluster": "idp", "cache_duration": "30s"}));
            assert_eq!(
                provider(&doc).keys,
                KeySource::Discovery {
                    discovery: HttpFetch {
                        cluster: "idp".into(),
                        authority: authority.into(),
                        path: path.into(),
                        timeout_ms: 5000,
                    },
                    cache_duration_seconds: 30,
                },
                "{issuer}"
            );
        }
    }

    // Discovery without timeout and cache_duration uses 5 s and 600 s.
    #[test]
    fn discovery_defaults() {
        let doc = with_discovery("https://kc.example.com", json!({"cluster": "idp"}));
        let KeySource::Discovery {
            discovery,
            cache_duration_seconds,
        } = provider(&doc).keys
        else {
            panic!("expected discovery");
        };
        assert_eq!(discovery.timeout_ms, 5000);
        assert_eq!(cache_duration_seconds, 600);
    }

    // Discovery needs an issuer that is an http(s) URL; the error names the issuer.
    #[test]
    fn discovery_issuer_not_url() {
        assert_error(
            &with_discovery("accounts.google.com", json!({"cluster": "idp"})),
            "providers.kc.issuer",
            "oidc_discovery needs the issuer to be an absolute http:// or https:// URL",
        );
    }

    // Discovery refuses an issuer with a query.
    #[test]
    fn discovery_issuer_with_query() {
        assert_error(
            &with_discovery(
                "https://kc.example.com/?tenant=1",
                json!({"cluster": "idp"}),
            ),
            "providers.kc.issuer",
            "must not have a query",
        );
    }

    // Discovery needs a cluster.
    #[test]
    fn discovery_cluster_missing() {
        assert_error(
            &with_discovery("https://kc.example.com", json!({})),
            "providers.kc.oidc_discovery.cluster",
            "required field is missing",
        );
    }

    // ---- token sources ----

    // An empty from_headers without from_params could never find a token.
    #[test]
    fn no_token_source() {
        assert_error(
            &minimal_with("/providers/kc/from_headers", json!([])),
            "providers.kc.from_headers",
            "no token could ever be found",
        );
        let mut doc = minimal_with("/providers/kc/from_headers", json!([]));
        set(&mut doc, "/providers/kc/from_params", json!([]));
        assert_error(
            &doc,
            "providers.kc.from_headers",
            "no token could ever be found",
        );
    }

    // A from_headers entry needs a name.
    #[test]
    fn from_header_name_missing() {
        assert_error(
            &minimal_with(
                "/providers/kc/from_headers",
                json!([{"value_prefix": "Bearer "}]),
            ),
            "providers.kc.from_headers[0].name",
            "required field is missing",
        );
    }

    // Header names must consist of HTTP token characters.
    #[test]
    fn from_header_name_invalid() {
        assert_error(
            &minimal_with("/providers/kc/from_headers", json!([{"name": "x token"}])),
            "providers.kc.from_headers[0].name",
            "not a valid header name",
        );
    }

    // Pseudo-headers cannot carry tokens.
    #[test]
    fn from_header_pseudo() {
        assert_error(
            &minimal_with(
                "/providers/kc/from_headers",
                json!([{"name": ":authority"}]),
            ),
            "providers.kc.from_headers[0].name",
            "pseudo-header \":authority\"",
        );
    }

    // Connection-level headers cannot be token sources.
    #[test]
    fn from_header_reserved() {
        assert_error(
            &minimal_with("/providers/kc/from_headers", json!([{"name": "Host"}])),
            "providers.kc.from_headers[0].name",
            "\"host\" cannot be used",
        );
    }

    // The same header and prefix listed twice would find the same token twice.
    #[test]
    fn from_header_repeated() {
        assert_error(
            &minimal_with(
                "/providers/kc/from_headers",
                json!([
                    {"name": "authorization", "value_prefix": "Bearer "},
                    {"name": "Authorization", "value_prefix": "bearer "}
                ]),
            ),
            "providers.kc.from_headers[1]",
            "listed twice",
        );
    }

    // value_prefix must be a string.
    #[test]
    fn from_header_prefix_not_string() {
        assert_error(
            &minimal_with(
                "/providers/kc/from_headers",
                json!([{"name": "authorization", "value_prefix": null}]),
            ),
            "providers.kc.from_headers[0].value_prefix",
            "expected a string, found null",
        );
    }

    // Query parameter names must not be empty.
    #[test]
    fn from_param_empty() {
        assert_error(
            &minimal_with("/providers/kc/from_params", json!(["token", ""])),
            "providers.kc.from_params[1]",
            "must not be empty",
        );
    }

    // The same parameter listed twice is refused.
    #[test]
    fn from_param_repeated() {
        assert_error(
            &minimal_with("/providers/kc/from_params", json!(["token", "token"])),
            "providers.kc.from_params[1]",
            "listed twice",
        );
    }

    // ---- forwarding ----

    // forward must be a boolean.
    #[test]
    fn forward_not_bool() {
        assert_error(
            &minimal_with("/providers/kc/forward", json!("yes")),
            "providers.kc.forward",
            "expected true or false, found a string",
        );
    }

    // forward_payload_header must be a valid, unreserved header name.
    #[test]
    fn forward_payload_header_invalid() {
        assert_error(
            &minimal_with(
                "/providers/kc/forward_payload_header",
                json!("x-jwt payload"),
            ),
            "providers.kc.forward_payload_header",
            "not a valid header name",
        );
        assert_error(
            &minimal_with(
                "/providers/kc/forward_payload_header",
                json!("Content-Length"),
            ),
            "providers.kc.forward_payload_header",
            "\"content-length\" cannot be used",
        );
    }

    // Claim names are dotted paths or arrays of names; header names are lower-cased.
    #[test]
    fn claim_to_headers_compile() {
        let doc = minimal_with(
            "/providers/kc/claim_to_headers",
            json!([
                {"header_name": "X-Roles", "claim_name": "realm_access.roles"},
                {"header_name": "x-tenant", "claim_name": ["https://example.com/tenant"]},
                {"header_name": "x-nested", "claim_name": ["a.b", "c"]}
            ]),
        );
        let config = ok(&doc);
        assert_eq!(
            config.providers[0].claim_to_headers,
            vec![
                ClaimToHeader {
                    header_name: "x-roles".into(),
                    claim_path: vec!["realm_access".into(), "roles".into()]
                },
                ClaimToHeader {
                    header_name: "x-tenant".into(),
                    claim_path: vec!["https://example.com/tenant".into()]
                },
                ClaimToHeader {
                    header_name: "x-nested".into(),
                    claim_path: vec!["a.b".into(), "c".into()]
                },
            ]
        );
        assert_eq!(config.managed_headers, ["x-roles", "x-tenant", "x-nested"]);
    }

    // A dotted claim name with an empty segment is refused.
    #[test]
    fn claim_name_empty_segment() {
        for name in ["realm_access..roles", ".sub", "sub."] {
            let doc = minimal_with(
                "/providers/kc/claim_to_headers",
                json!([{"header_name": "x-a", "claim_name": name}]),
            );
            assert_error(
                &doc,
                "providers.kc.claim_to_headers[0].claim_name",
                "empty segment",
            );
        }
    }

    // Claim name arrays must be non-empty and hold non-empty strings.
    #[test]
    fn claim_name_array_invalid() {
        let doc = minimal_with(
            "/providers/kc/claim_to_headers",
            json!([{"header_name": "x-a", "claim_name": []}]),
        );
        assert_error(
            &doc,
            "providers.kc.claim_to_headers[0].claim_name",
            "must not be empty",
        );
        let doc = minimal_with(
            "/providers/kc/claim_to_headers",
            json!([{"header_name": "x-a", "claim_name": ["a", ""]}]),
        );
        assert_error(
            &doc,
            "providers.kc.claim_to_headers[0].claim_name[1]",
            "must not be empty",
        );
        let doc = minimal_with(
            "/providers/kc/claim_to_headers",
            json!([{"header_name": "x-a", "claim_name": 3}]),
        );
        assert_error(
            &doc,
            "providers.kc.claim_to_headers[0].claim_name",
            "expected a claim name",
        );
    }

    // claim_to_headers entries need both fields.
    #[test]
    fn claim_to_headers_fields_missing() {
        let doc = minimal_with(
            "/providers/kc/claim_to_headers",
            json!([{"claim_name": "sub"}]),
        );
        assert_error(
            &doc,
            "providers.kc.claim_to_headers[0].header_name",
            "required field is missing",
        );
        let doc = minimal_with(
            "/providers/kc/claim_to_headers",
            json!([{"header_name": "x-sub"}]),
        );
        assert_error(
            &doc,
            "providers.kc.claim_to_headers[0].claim_name",
            "required field is missing",
        );
    }

    // One provider cannot set the same header twice.
    #[test]
    fn managed_header_set_twice_by_provider() {
        let mut doc = minimal_with("/providers/kc/forward_payload_header", json!("x-jwt"));
        set(
            &mut doc,
            "/providers/kc/claim_to_headers",
            json!([{"header_name": "X-JWT", "claim_name": "sub"}]),
        );
        assert_error(
            &doc,
            "providers.kc.claim_to_headers[0].header_name",
            "already set by providers.kc.forward_payload_header",
        );
    }

    // Managed headers are de-duplicated across providers.
    #[test]
    fn managed_headers_deduplicated() {
        let mut doc = minimal_with(
            "/providers/kc/forward_payload_header",
            json!("x-jwt-payload"),
        );
        set(
            &mut doc,
            "/providers/kc/claim_to_headers",
            json!([{"header_name": "x-jwt-sub", "claim_name": "sub"}]),
        );
        let kc = doc.pointer("/providers/kc").unwrap().clone();
        set(&mut doc, "/providers/other", kc);
        assert_eq!(ok(&doc).managed_headers, ["x-jwt-payload", "x-jwt-sub"]);
    }

    // A managed header that is the provider's own token header would erase the token.
    #[test]
    fn managed_header_is_own_token_header() {
        let doc = minimal_with(
            "/providers/kc/forward_payload_header",
            json!("Authorization"),
        );
        assert_error(
            &doc,
            "providers.kc.forward_payload_header",
            "\"authorization\" is a header provider \"kc\" reads tokens from",
        );
    }

    // A managed header that is another provider's token header would erase that token.
    #[test]
    fn managed_header_is_other_token_header() {
        let mut doc = minimal();
        let mut other = doc.pointer("/providers/kc").unwrap().clone();
        set(
            &mut other,
            "/from_headers",
            json!([{"name": "x-goog-iap-jwt-assertion"}]),
        );
        set(&mut doc, "/providers/iap", other);
        set(
            &mut doc,
            "/providers/kc/claim_to_headers",
            json!([{"header_name": "x-goog-iap-jwt-assertion", "claim_name": "sub"}]),
        );
        assert_error(
            &doc,
            "providers.kc.claim_to_headers[0].header_name",
            "provider \"iap\" reads tokens from",
        );
    }

    // ---- times and algorithms ----

    // clock_skew_seconds accepts 0..=3600.
    #[test]
    fn clock_skew_bounds() {
        assert_eq!(
            provider(&minimal_with("/providers/kc/clock_skew_seconds", json!(0)))
                .clock_skew_seconds,
            0
        );
        assert_eq!(
            provider(&minimal_with(
                "/providers/kc/clock_skew_seconds",
                json!(3600)
            ))
            .clock_skew_seconds,
            3600
        );
        assert_error(
            &minimal_with("/providers/kc/clock_skew_seconds", json!(3601)),
            "providers.kc.clock_skew_seconds",
            "at most 3600",
        );
    }

    // clock_skew_seconds must be a non-negative integer.
    #[test]
    fn clock_skew_not_integer() {
        for value in [json!(-1), json!(1.5), json!("60")] {
            assert_error(
                &minimal_with("/providers/kc/clock_skew_seconds", value),
                "providers.kc.clock_skew_seconds",
                "non-negative integer",
            );
        }
    }

    // require_expiration can be turned off and must be a boolean.
    #[test]
    fn require_expiration_set() {
        let doc = minimal_with("/providers/kc/require_expiration", json!(false));
        assert!(!provider(&doc).require_expiration);
        assert_error(
            &minimal_with("/providers/kc/require_expiration", json!(0)),
            "providers.kc.require_expiration",
            "expected true or false",
        );
    }

    // Listed algorithms are kept in order, duplicates dropped.
    #[test]
    fn algorithms_listed() {
        let doc = minimal_with(
            "/providers/kc/algorithms",
            json!(["ES256", "EdDSA", "ES256"]),
        );
        assert_eq!(provider(&doc).algorithms, vec![Alg::ES256, Alg::EdDSA]);
    }

    // "none" and HMAC algorithms are refused, naming the element and the supported list.
    #[test]
    fn algorithms_unsupported() {
        for name in ["none", "HS256", "rs256"] {
            assert_error(
                &minimal_with("/providers/kc/algorithms", json!(["RS256", name])),
                "providers.kc.algorithms[1]",
                &format!("unsupported algorithm \"{name}\"; supported: RS256, RS384"),
            );
        }
    }

    // An empty algorithm list would refuse every token.
    #[test]
    fn algorithms_empty() {
        assert_error(
            &minimal_with("/providers/kc/algorithms", json!([])),
            "providers.kc.algorithms",
            "must not be empty",
        );
    }

    // ---- rules ----

    // rules is required.
    #[test]
    fn rules_missing() {
        assert_error(
            &minimal_without("/rules"),
            "rules",
            "required field is missing",
        );
    }

    // rules must not be empty.
    #[test]
    fn rules_empty() {
        assert_error(&with_rules(json!([])), "rules", "must not be empty");
    }

    // Every rule needs a match.
    #[test]
    fn rule_match_missing() {
        assert_error(
            &with_rules(json!([{"requires": {"provider_name": "kc"}}])),
            "rules[0].match",
            "required field is missing",
        );
    }

    // A match needs exactly one of prefix and path.
    #[test]
    fn rule_match_not_exactly_one() {
        assert_error(
            &with_rules(json!([{"match": {"prefix": "/", "path": "/"}}])),
            "rules[0].match",
            "set exactly one of prefix, path",
        );
        assert_error(
            &with_rules(json!([{"match": {}}])),
            "rules[0].match",
            "set exactly one of prefix, path",
        );
    }

    // An unknown match kind is named.
    #[test]
    fn rule_match_unknown_kind() {
        assert_error(
            &with_rules(json!([{"match": {"safe_regex": ".*"}}])),
            "rules[0].match.safe_regex",
            "expected one of: prefix, path",
        );
    }

    // Match paths must start with "/".
    #[test]
    fn rule_match_relative() {
        assert_error(
            &with_rules(json!([{"match": {"path": "metrics"}}, {"match": {"prefix": "/"}}])),
            "rules[0].match.path",
            "does not start with \"/\"",
        );
    }

    // Match paths cannot contain a query, which is never part of the matched path.
    #[test]
    fn rule_match_with_query() {
        assert_error(
            &with_rules(json!([{"match": {"path": "/a?b=1"}}, {"match": {"prefix": "/"}}])),
            "rules[0].match.path",
            "must not contain \"?\"",
        );
    }

    // The last rule must catch every path.
    #[test]
    fn last_rule_not_catch_all() {
        assert_error(
            &with_rules(json!([{"match": {"prefix": "/v1"}, "requires": {"provider_name": "kc"}}])),
            "rules",
            "the last rule must match {\"prefix\": \"/\"}",
        );
        assert_error(
            &with_rules(json!([{"match": {"path": "/"}, "requires": {"provider_name": "kc"}}])),
            "rules",
            "the last rule must match {\"prefix\": \"/\"}",
        );
    }

    // A catch-all before the end would hide the rules after it.
    #[test]
    fn catch_all_not_last() {
        assert_error(
            &with_rules(json!([
                {"match": {"prefix": "/"}},
                {"match": {"prefix": "/"}, "requires": {"provider_name": "kc"}}
            ])),
            "rules[0].match.prefix",
            "rules after it would never apply",
        );
    }

    // A public catch-all is allowed: the operator chose it explicitly.
    #[test]
    fn public_catch_all_allowed() {
        let config = ok(&with_rules(json!([{"match": {"prefix": "/"}}])));
        assert_eq!(config.rules[0].requirement, None);
    }

    // A requirement naming an unknown provider lists the defined ones.
    #[test]
    fn requirement_unknown_provider() {
        assert_error(
            &with_rules(json!([
                {"match": {"prefix": "/v2/health"}},
                {"match": {"prefix": "/"}, "requires": {"provider_name": "keycloak"}}
            ])),
            "rules[1].requires.provider_name",
            "no provider named \"keycloak\"; defined providers: \"kc\"",
        );
    }

    // A requirement needs exactly one kind.
    #[test]
    fn requirement_not_exactly_one() {
        assert_error(
            &with_rules(json!([{"match": {"prefix": "/"}, "requires": {}}])),
            "rules[0].requires",
            "set exactly one of provider_name, requires_any",
        );
        assert_error(
            &with_rules(json!([{"match": {"prefix": "/"},
                "requires": {"provider_name": "kc", "allow_missing": {}}}])),
            "rules[0].requires",
            "set exactly one of",
        );
    }

    // An unknown requirement kind is named.
    #[test]
    fn requirement_unknown_kind() {
        assert_error(
            &with_rules(
                json!([{"match": {"prefix": "/"}, "requires": {"provider_and_audiences": {}}}]),
            ),
            "rules[0].requires.provider_and_audiences",
            "expected one of: provider_name, requires_any, requires_all, allow_missing",
        );
    }

    // Two providers accepted together under requires_all may not set the same header, in any
    // spelling; alternatives under requires_any may.
    #[test]
    fn requires_all_branches_set_disjoint_headers() {
        let provider = |issuer: &str, header: &str| {
            json!({"issuer": issuer, "audiences": ["a"],
                   "local_jwks": {"inline_string": "{\"keys\": []}"},
                   "from_headers": [{"name": format!("x-token-{header}")}],
                   "claim_to_headers": [{"header_name": header, "claim_name": "sub"}]})
        };
        let config = |requires: Value| {
            json!({"providers": {"a": provider("https://a", "x-user"),
                                 "b": provider("https://b", "X_User"),
                                 "c": provider("https://c", "x-other")},
                   "rules": [{"match": {"prefix": "/"}, "requires": requires}]})
        };
        let both = json!({"requires_all": {"requirements": [
            {"provider_name": "a"}, {"provider_name": "b"}]}});
        let err = Config::from_json(config(both).to_string().as_bytes()).unwrap_err();
        assert_eq!(err.field, "rules[0].requires.requires_all");
        assert!(err.message.contains("\"x-user\""), "{}", err.message);
        let nested = json!({"requires_all": {"requirements": [
            {"provider_name": "c"},
            {"requires_any": {"requirements": [{"provider_name": "a"}, {"provider_name": "b"}]}}]}});
        assert!(Config::from_json(config(nested).to_string().as_bytes()).is_ok());
    }

    // Two providers accepted together may not both record the identity in filter state: one
    // `wasm.kserve_auth.sub` would hold one of two identities.
    #[test]
    fn requires_all_branches_record_one_identity() {
        let provider = |issuer: &str, token_header: &str, filter_state: bool| {
            let mut provider = json!({"issuer": issuer, "audiences": ["a"],
                   "local_jwks": {"inline_string": "{\"keys\": []}"},
                   "from_headers": [{"name": token_header}]});
            if filter_state {
                provider["filter_state"] = json!({});
            }
            provider
        };
        let config = |b_records: bool| {
            json!({"providers": {"a": provider("https://a", "x-token-a", true),
                                 "b": provider("https://b", "x-token-b", b_records)},
                   "rules": [{"match": {"prefix": "/"}, "requires": {"requires_all": {
                       "requirements": [{"provider_name": "a"}, {"provider_name": "b"}]}}}]})
        };
        let err = Config::from_json(config(true).to_string().as_bytes()).unwrap_err();
        assert_eq!(err.field, "rules[0].requires.requires_all");
        assert!(err.message.contains("filter state"), "{}", err.message);
        assert!(Config::from_json(config(false).to_string().as_bytes()).is_ok());
    }

    // requires_any and requires_all need at least one requirement.
    #[test]
    fn requirement_list_empty() {
        assert_error(
            &with_rules(json!([{"match": {"prefix": "/"},
                "requires": {"requires_any": {"requirements": []}}}])),
            "rules[0].requires.requires_any.requirements",
            "must not be empty",
        );
        assert_error(
            &with_rules(json!([{"match": {"prefix": "/"}, "requires": {"requires_all": {}}}])),
            "rules[0].requires.requires_all.requirements",
            "required field is missing",
        );
    }

    // allow_missing takes an empty object.
    #[test]
    fn allow_missing_with_field() {
        assert_error(
            &with_rules(json!([{"match": {"prefix": "/"},
                "requires": {"allow_missing": {"x": 1}}}])),
            "rules[0].requires.allow_missing.x",
            "expected an empty object",
        );
    }

    // Nested requirements compile into the same tree.
    #[test]
    fn nested_requirements() {
        let mut doc = minimal();
        let kc = doc.pointer("/providers/kc").unwrap().clone();
        set(&mut doc, "/providers/iap", kc);
        set(
            &mut doc,
            "/rules/0/requires",
            json!({"requires_any": {"requirements": [
                {"requires_all": {"requirements": [
                    {"provider_name": "kc"}, {"provider_name": "iap"}
                ]}},
                {"allow_missing": {}},
                {"allow_missing_or_failed": {}}
            ]}}),
        );
        assert_eq!(
            ok(&doc).rules[0].requirement,
            Some(Requirement::Any(vec![
                Requirement::All(vec![Requirement::Provider(1), Requirement::Provider(0)]),
                Requirement::AllowMissing,
                Requirement::AllowMissingOrFailed,
            ]))
        );
    }

    // Eight levels of nesting are accepted; nine are refused at the ninth.
    #[test]
    fn requirement_depth_limit() {
        let doc = minimal_with("/rules/0/requires", nested_requirement(8));
        assert!(compile_doc(&doc).is_ok());

        let doc = minimal_with("/rules/0/requires", nested_requirement(9));
        let inner = ".requires_any.requirements[0]".repeat(8);
        assert_error(
            &doc,
            &format!("rules[0].requires{inner}"),
            "nested more than 8 levels deep",
        );
    }

    // Nesting far beyond the limit is refused, by this walk or by the JSON parser's own limit,
    // without exhausting the stack.
    #[test]
    fn requirement_deep_nesting_refused() {
        let doc = minimal_with("/rules/0/requires", nested_requirement(40));
        let error = compile_doc(&doc).unwrap_err();
        assert!(error.message.contains("nested more than 8"), "{error}");
        let error = Config::from_json(&[b'['; 100_000]).unwrap_err();
        assert_eq!(error.field, "(root)");
    }

    // ---- model rules, methods and claim conditions ----

    fn model_rule(model: Value) -> Value {
        with_rules(json!([
            {"match": {"model": model}, "requires": {"provider_name": "kc"}},
            {"match": {"prefix": "/"}}
        ]))
    }

    // A model match compiles to an exact or a prefix pattern.
    #[test]
    fn model_match_compiles() {
        assert_eq!(
            ok(&model_rule(json!("fraud"))).rules[0].path_match,
            PathMatch::Model(ModelPattern::Exact("fraud".into()))
        );
        assert_eq!(
            ok(&model_rule(json!("team-*"))).rules[0].path_match,
            PathMatch::Model(ModelPattern::Prefix("team-".into()))
        );
    }

    // A star that is not trailing is refused, naming the field and the accepted forms.
    #[test]
    fn model_glob_malformed() {
        for pattern in ["*-fraud", "team-*-a"] {
            assert_error(
                &model_rule(json!(pattern)),
                "rules[0].match.model",
                "\"*\" is allowed only at the end",
            );
        }
        assert_error(
            &model_rule(json!("a/b")),
            "rules[0].match.model",
            "a prefix with a trailing \"*\"",
        );
        assert_error(
            &model_rule(json!(3)),
            "rules[0].match.model",
            "expected a string",
        );
    }

    // model is a third match kind: exactly one of the three is set.
    #[test]
    fn model_with_path_refused() {
        assert_error(
            &with_rules(
                json!([{"match": {"model": "m", "prefix": "/v1"}}, {"match": {"prefix": "/"}}]),
            ),
            "rules[0].match",
            "set exactly one of prefix, path, model",
        );
    }

    // methods are kept in order without repeats; absent means every method.
    #[test]
    fn methods_compile() {
        let doc = with_rules(json!([
            {"match": {"prefix": "/v2/models", "methods": ["GET", "HEAD", "GET"]}},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "kc"}}
        ]));
        let config = ok(&doc);
        assert_eq!(config.rules[0].methods, ["GET", "HEAD"]);
        assert!(config.rules[1].methods.is_empty());
    }

    // Method names are case-sensitive tokens written in upper case; a list must not be empty.
    #[test]
    fn methods_invalid() {
        let rules = |methods: Value| {
            with_rules(json!([
                {"match": {"prefix": "/a", "methods": methods}},
                {"match": {"prefix": "/"}}
            ]))
        };
        assert_error(
            &rules(json!(["get"])),
            "rules[0].match.methods[0]",
            "write \"GET\"",
        );
        assert_error(
            &rules(json!(["GET", "PO ST"])),
            "rules[0].match.methods[1]",
            "is not a method name",
        );
        assert_error(
            &rules(json!([])),
            "rules[0].match.methods",
            "must not be empty",
        );
        assert_error(
            &rules(json!("GET")),
            "rules[0].match.methods",
            "expected an array",
        );
    }

    // `match.hosts` compiles exact and wildcard patterns; each malformed one names its entry.
    #[test]
    fn match_hosts() {
        let doc = with_rules(json!([
            {"match": {"prefix": "/", "hosts": ["Fraud-Risk.models.example.com",
                                                "*.risk.svc.cluster.local", "[::1]"]},
             "requires": {"provider_name": "kc"}},
            {"match": {"prefix": "/"}}
        ]));
        let config = ok(&doc);
        assert_eq!(
            config.rules[0].hosts,
            [
                HostPattern::Exact("fraud-risk.models.example.com".into()),
                HostPattern::Wildcard(".risk.svc.cluster.local".into()),
                HostPattern::Exact("[::1]".into()),
            ]
        );
        let rules = |hosts: Value| {
            with_rules(json!([
                {"match": {"prefix": "/v1", "hosts": hosts}},
                {"match": {"prefix": "/"}}
            ]))
        };
        for (hosts, field, message) in [
            (
                json!("a.example.com"),
                "rules[0].match.hosts",
                "expected an array",
            ),
            (json!([]), "rules[0].match.hosts", "must not be empty"),
            (
                json!(["a.example.com", 7]),
                "rules[0].match.hosts[1]",
                "expected a string",
            ),
            (
                json!(["https://a.example.com"]),
                "rules[0].match.hosts[0]",
                "has a scheme",
            ),
            (
                json!(["a.example.com/v1"]),
                "rules[0].match.hosts[0]",
                "has a path",
            ),
            (
                json!(["a.*.example.com"]),
                "rules[0].match.hosts[0]",
                "not its first character",
            ),
            (
                json!(["a..example.com"]),
                "rules[0].match.hosts[0]",
                "empty label",
            ),
            (
                json!(["a.example.com:443"]),
                "rules[0].match.hosts[0]",
                "has a port",
            ),
        ] {
            assert_error(&rules(hosts), field, message);
        }
    }

    // `match.headers`: one test per entry; `:path`, managed headers and bad names are refused.
    #[test]
    fn match_headers() {
        let doc = with_rules(json!([
            {"match": {"prefix": "/", "headers": [
                {"name": "X-Team", "exact": "risk"},
                {"name": ":scheme", "prefix": "http"},
                {"name": "x-canary", "present": false}
            ]}, "requires": {"provider_name": "kc"}},
            {"match": {"prefix": "/"}}
        ]));
        let config = ok(&doc);
        assert_eq!(
            config.rules[0].headers,
            [
                HeaderMatcher {
                    name: "x-team".into(),
                    test: HeaderTest::Exact("risk".into())
                },
                HeaderMatcher {
                    name: ":scheme".into(),
                    test: HeaderTest::Prefix("http".into())
                },
                HeaderMatcher {
                    name: "x-canary".into(),
                    test: HeaderTest::Present(false)
                },
            ]
        );
        let rules = |headers: Value| {
            let mut doc = with_rules(json!([
                {"match": {"prefix": "/v1", "headers": headers}},
                {"match": {"prefix": "/"}}
            ]));
            doc["providers"]["kc"]["claim_to_headers"] =
                json!([{"header_name": "x-jwt-sub", "claim_name": "sub"}]);
            doc
        };
        for (headers, field, message) in [
            (json!([]), "rules[0].match.headers", "must not be empty"),
            (
                json!([{"name": ":path", "exact": "/"}]),
                "rules[0].match.headers[0].name",
                "\":path\" is matched by",
            ),
            (
                json!([{"name": "x-a b", "exact": "1"}]),
                "rules[0].match.headers[0].name",
                "not a header name",
            ),
            (
                json!([{"name": "x-a"}]),
                "rules[0].match.headers[0]",
                "set exactly one of exact, prefix, present",
            ),
            (
                json!([{"name": "x-a", "exact": "1", "prefix": "1"}]),
                "rules[0].match.headers[0]",
                "set exactly one",
            ),
            (
                json!([{"name": "x-a", "present": "yes"}]),
                "rules[0].match.headers[0].present",
                "expected true or false",
            ),
            (
                json!([{"name": "x-a", "regex": "."}]),
                "rules[0].match.headers[0].regex",
                "unknown field",
            ),
            (
                json!([{"name": "x-jwt-sub", "exact": "alice"}]),
                "rules[0].match.headers[0].name",
                "sets upstream",
            ),
            (
                json!([{"name": "X_JWT_SUB", "present": true}]),
                "rules[0].match.headers[0].name",
                "sets upstream",
            ),
        ] {
            assert_error(&rules(headers), field, message);
        }
    }

    // A catch-all narrowed by hosts or headers is not the catch-all.
    #[test]
    fn catch_all_with_hosts_or_headers() {
        for narrowing in [
            json!({"hosts": ["a.example.com"]}),
            json!({"headers": [{"name": "x-a", "present": true}]}),
        ] {
            let mut last = json!({"prefix": "/"});
            last.as_object_mut()
                .unwrap()
                .extend(narrowing.as_object().unwrap().clone());
            assert_error(
                &with_rules(json!([{"match": last}])),
                "rules",
                "the last rule must match",
            );
            let early = with_rules(json!([{"match": last}, {"match": {"prefix": "/"}}]));
            assert_eq!(ok(&early).rules.len(), 2);
        }
    }

    // `filter_state` compiles to property names; bad, reserved and repeated keys are refused.
    #[test]
    fn filter_state() {
        let mut doc = minimal();
        doc["providers"]["kc"]["filter_state"] = json!({"claims": [{"key": "email", "claim_name": "email"},
                              {"key": "namespace", "claim_name": ["kubernetes.io", "namespace"]}]});
        let config = ok(&doc);
        let recorded = config.providers[0].filter_state.clone().unwrap();
        assert_eq!(
            recorded.claims,
            [
                ("kserve_auth.sub".to_owned(), vec!["sub".to_owned()]),
                ("kserve_auth.email".to_owned(), vec!["email".to_owned()]),
                (
                    "kserve_auth.namespace".to_owned(),
                    vec!["kubernetes.io".to_owned(), "namespace".to_owned()]
                ),
            ]
        );
        doc["providers"]["kc"]["filter_state"] = json!({});
        assert_eq!(
            ok(&doc).providers[0].filter_state,
            Some(provider::FilterState {
                claims: vec![("kserve_auth.sub".to_owned(), vec!["sub".to_owned()])]
            })
        );
        for (filter_state, field, message) in [
            (
                json!(true),
                "providers.kc.filter_state",
                "expected an object",
            ),
            (
                json!({"claims": []}),
                "providers.kc.filter_state.claims",
                "must not be empty",
            ),
            (
                json!({"claims": [{"key": "a.b", "claim_name": "x"}]}),
                "providers.kc.filter_state.claims[0].key",
                "is not a key",
            ),
            (
                json!({"claims": [{"key": "sub", "claim_name": "x"}]}),
                "providers.kc.filter_state.claims[0].key",
                "reserved",
            ),
            (
                json!({"claims": [{"key": "a", "claim_name": "x"}, {"key": "a", "claim_name": "y"}]}),
                "providers.kc.filter_state.claims[1].key",
                "appears twice",
            ),
            (
                json!({"claims": [{"key": "a"}]}),
                "providers.kc.filter_state.claims[0].claim_name",
                "required field is missing",
            ),
        ] {
            doc["providers"]["kc"]["filter_state"] = filter_state;
            assert_error(&doc, field, message);
        }
    }

    // A catch-all restricted to methods is not a catch-all: it may come early, not last.
    #[test]
    fn catch_all_with_methods() {
        let doc = with_rules(json!([
            {"match": {"prefix": "/", "methods": ["OPTIONS"]}},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "kc"}}
        ]));
        assert_eq!(ok(&doc).rules[0].methods, ["OPTIONS"]);
        assert_error(
            &with_rules(json!([{"match": {"prefix": "/", "methods": ["GET"]}}])),
            "rules",
            "the last rule must match {\"prefix\": \"/\"} (for every method, host and header)",
        );
    }

    fn claims_rule(conditions: Value) -> Value {
        with_rules(json!([
            {"match": {"model": "fraud"}, "requires": {"provider_name": "kc"},
             "require_claims": conditions},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "kc"}}
        ]))
    }

    // Conditions compile with dotted and array claim paths and every operator.
    #[test]
    fn require_claims_compile() {
        let doc = claims_rule(json!([
            {"claim": "realm_access.roles", "has": "fraud-predict"},
            {"claim": ["https://example.com/groups"], "has": "ml"},
            {"claim": "scope", "has_word": "fraud:predict"},
            {"claim": "email_verified", "equals": true},
            {"claim": "azp", "one_of": ["a", "b"]},
            {"claim": "email", "ends_with": "@example.com"}
        ]));
        let conditions = ok(&doc).rules[0].require_claims.clone();
        assert_eq!(
            conditions,
            vec![
                ClaimCondition {
                    claim_path: vec!["realm_access".into(), "roles".into()],
                    test: ClaimTest::Has(json!("fraud-predict")),
                },
                ClaimCondition {
                    claim_path: vec!["https://example.com/groups".into()],
                    test: ClaimTest::Has(json!("ml")),
                },
                ClaimCondition {
                    claim_path: vec!["scope".into()],
                    test: ClaimTest::HasWord("fraud:predict".into()),
                },
                ClaimCondition {
                    claim_path: vec!["email_verified".into()],
                    test: ClaimTest::Equals(json!(true)),
                },
                ClaimCondition {
                    claim_path: vec!["azp".into()],
                    test: ClaimTest::OneOf(vec![json!("a"), json!("b")]),
                },
                ClaimCondition {
                    claim_path: vec!["email".into()],
                    test: ClaimTest::EndsWith("@example.com".into()),
                },
            ]
        );
    }

    // An unknown operator is named, with the list of known ones.
    #[test]
    fn require_claims_unknown_operator() {
        assert_error(
            &claims_rule(json!([{"claim": "roles", "contains": "x"}])),
            "rules[0].require_claims[0].contains",
            "unknown field; expected one of: claim, has, has_word, equals, one_of, ends_with",
        );
    }

    // A condition needs a claim and exactly one operator.
    #[test]
    fn require_claims_operator_count() {
        assert_error(
            &claims_rule(json!([{"claim": "roles", "has": "x", "equals": "x"}])),
            "rules[0].require_claims[0]",
            "set exactly one operator of has, has_word",
        );
        assert_error(
            &claims_rule(json!([{"claim": "roles"}])),
            "rules[0].require_claims[0]",
            "set exactly one operator",
        );
        assert_error(
            &claims_rule(json!([{"has": "x"}])),
            "rules[0].require_claims[0].claim",
            "required field is missing",
        );
        assert_error(
            &claims_rule(json!([{"claim": "a..b", "has": "x"}])),
            "rules[0].require_claims[0].claim",
            "empty segment",
        );
    }

    // Operand errors name the operand, and the element of a list.
    #[test]
    fn require_claims_bad_operand() {
        assert_error(
            &claims_rule(json!([{"claim": "scope", "has_word": "a b"}])),
            "rules[0].require_claims[0].has_word",
            "single word",
        );
        assert_error(
            &claims_rule(json!([{"claim": "azp", "one_of": ["a", {"b": 1}]}])),
            "rules[0].require_claims[0].one_of[1]",
            "expected a string, a number or a boolean",
        );
        assert_error(
            &claims_rule(json!([])),
            "rules[0].require_claims",
            "must not be empty",
        );
    }

    // Claims come from a verified token, so a public rule cannot require them.
    #[test]
    fn require_claims_without_requires() {
        assert_error(
            &with_rules(json!([
                {"match": {"model": "fraud"}, "require_claims": [{"claim": "a", "has": "b"}]},
                {"match": {"prefix": "/"}}
            ])),
            "rules[0]",
            "require_claims needs \"requires\"",
        );
    }

    // ---- typ, azp, CORS and protected resource metadata ----

    // allowed_types are stored in normal form, without repeats.
    #[test]
    fn allowed_types_normalized() {
        let doc = minimal_with(
            "/providers/kc/allowed_types",
            json!(["at+jwt", "application/AT+JWT", "JWT"]),
        );
        assert_eq!(provider(&doc).allowed_types, ["at+jwt", "jwt"]);
        assert!(provider(&minimal()).allowed_types.is_empty());
    }

    // A typ no token can carry, or an empty list, is refused.
    #[test]
    fn allowed_types_invalid() {
        assert_error(
            &minimal_with("/providers/kc/allowed_types", json!(["JWT", "JOSE"])),
            "providers.kc.allowed_types[1]",
            "\"JOSE\" can never match",
        );
        assert_error(
            &minimal_with("/providers/kc/allowed_types", json!(["+jwt"])),
            "providers.kc.allowed_types[0]",
            "can never match",
        );
        assert_error(
            &minimal_with("/providers/kc/allowed_types", json!([])),
            "providers.kc.allowed_types",
            "must not be empty",
        );
    }

    // allowed_authorized_parties keeps exact values without repeats; empty values are refused.
    #[test]
    fn allowed_authorized_parties() {
        let doc = minimal_with(
            "/providers/kc/allowed_authorized_parties",
            json!(["fraud-svc", "Fraud-svc", "fraud-svc"]),
        );
        assert_eq!(
            provider(&doc).allowed_authorized_parties,
            ["fraud-svc", "Fraud-svc"]
        );
        assert_error(
            &minimal_with("/providers/kc/allowed_authorized_parties", json!([""])),
            "providers.kc.allowed_authorized_parties[0]",
            "must not be empty",
        );
    }

    // bypass_cors_preflight is off by default and must be a boolean.
    #[test]
    fn bypass_cors_preflight() {
        assert!(!ok(&minimal()).bypass_cors_preflight);
        assert!(ok(&minimal_with("/bypass_cors_preflight", json!(true))).bypass_cors_preflight);
        assert_error(
            &minimal_with("/bypass_cors_preflight", json!("yes")),
            "bypass_cors_preflight",
            "expected true or false",
        );
    }

    // The metadata location is derived from the resource once, at configure time.
    #[test]
    fn protected_resource_metadata() {
        let doc = minimal_with(
            "/protected_resource_metadata",
            json!({"resource": "https://models.example.com"}),
        );
        let resource = ok(&doc).protected_resource.unwrap();
        assert_eq!(resource.resource, "https://models.example.com");
        assert_eq!(
            resource.metadata_path,
            "/.well-known/oauth-protected-resource"
        );
        assert_eq!(
            resource.metadata_url,
            "https://models.example.com/.well-known/oauth-protected-resource"
        );
        let document: Value = serde_json::from_str(&resource.document).unwrap();
        assert_eq!(document["resource"], "https://models.example.com");
        assert_eq!(ok(&minimal()).protected_resource, None);
    }

    // An unusable resource names its field.
    #[test]
    fn protected_resource_metadata_invalid() {
        assert_error(
            &minimal_with(
                "/protected_resource_metadata",
                json!({"resource": "http://models.example.com"}),
            ),
            "protected_resource_metadata.resource",
            "must be an https:// URL",
        );
        assert_error(
            &minimal_with("/protected_resource_metadata", json!({})),
            "protected_resource_metadata.resource",
            "required field is missing",
        );
        assert_error(
            &minimal_with(
                "/protected_resource_metadata",
                json!({"resource": "https://m.example.com", "scopes": []}),
            ),
            "protected_resource_metadata.scopes",
            "unknown field; expected one of: resource",
        );
    }

    // ---- helpers ----

    // Long user strings are cut short in messages and control characters escaped.
    #[test]
    fn odd_keys_are_quoted_in_field_paths() {
        // Found by fuzzing: an empty key made an error whose field was empty.
        let error = Config::from_json(br#"{"": "x", "providers": {}, "rules": []}"#).unwrap_err();
        assert_eq!(error.field, "[\"\"]");
        let error =
            Config::from_json(br#"{"providers": {"a.b\n": {"x": 1}}, "rules": []}"#).unwrap_err();
        assert!(error.field.starts_with("providers[\"a.b\\n\"]"), "{error}");
    }

    #[test]
    fn quoted_is_short_and_escaped() {
        assert_eq!(quoted("a\nb"), "\"a\\nb\"");
        let long = "x".repeat(1000);
        assert_eq!(quoted(&long), format!("{:?}...", "x".repeat(64)));
        assert_eq!(quoted(&"é".repeat(100)).chars().count(), 64 + 2 + 3);
    }

    // ---- presets, issuers and identity ----

    const IAP_AUDIENCE: &str = "/projects/123456789012/global/backendServices/4567890123456789012";

    fn with_provider(provider: Value) -> Value {
        json!({
            "providers": {"g": provider},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "g"}}]
        })
    }

    // The google_iap preset compiles to IAP's constants with the user's audience and cluster, and
    // makes the filter own the x-goog-authenticated-user-* headers.
    #[test]
    fn google_iap_preset_compiles() {
        let config = ok(&with_provider(json!({
            "preset": "google_iap",
            "audiences": [IAP_AUDIENCE],
            "remote_jwks": {"http_uri": {"cluster": "gstatic"}}
        })));
        let provider = &config.providers[0];
        assert_eq!(provider.issuer, "https://cloud.google.com/iap");
        assert!(provider.alternate_issuers.is_empty());
        assert_eq!(provider.audiences, vec![IAP_AUDIENCE.to_string()]);
        assert_eq!(provider.algorithms, vec![Alg::ES256]);
        assert_eq!(
            provider.keys,
            KeySource::Remote {
                jwks: HttpFetch {
                    cluster: "gstatic".into(),
                    authority: "www.gstatic.com".into(),
                    path: "/iap/verify/public_key-jwk".into(),
                    timeout_ms: 5000,
                },
                cache_duration_seconds: 600,
            }
        );
        assert_eq!(
            provider.token_sources,
            vec![TokenSource::Header {
                name: "x-goog-iap-jwt-assertion".into(),
                value_prefix: String::new()
            }]
        );
        assert_eq!(provider.clock_skew_seconds, 30);
        assert_eq!(provider.max_lifetime_seconds, Some(660));
        assert!(provider.require_expiration);
        assert_eq!(
            provider.identity,
            IdentityPolicy {
                iap_identity_headers: true,
                ..IdentityPolicy::default()
            }
        );
        assert_eq!(
            config.managed_headers,
            vec![
                "x-goog-authenticated-user-email".to_string(),
                "x-goog-authenticated-user-id".to_string()
            ]
        );
        assert_eq!(
            config.managed_header_prefixes,
            vec!["x-goog-authenticated-user-".to_string()]
        );
    }

    // The google_id_token preset accepts both issuer spellings, RS256 only, from Google's certs,
    // and requires a verified email; it manages no identity headers.
    #[test]
    fn google_id_token_preset_compiles() {
        let config = ok(&with_provider(json!({
            "preset": "google_id_token",
            "audiences": ["123-abc.apps.googleusercontent.com"],
            "remote_jwks": {"http_uri": {"cluster": "googleapis"}}
        })));
        let provider = &config.providers[0];
        assert_eq!(provider.issuer, "https://accounts.google.com");
        assert_eq!(provider.alternate_issuers, vec!["accounts.google.com"]);
        assert!(provider
            .token_policy()
            .accepts_issuer("accounts.google.com"));
        assert!(provider
            .token_policy()
            .accepts_issuer("https://accounts.google.com"));
        assert!(!provider
            .token_policy()
            .accepts_issuer("https://accounts.google.com/"));
        assert_eq!(provider.algorithms, vec![Alg::RS256]);
        let (fetch, _) = remote_fetch(&with_provider(json!({
            "preset": "google_id_token",
            "audiences": ["c"],
            "remote_jwks": {"http_uri": {"cluster": "googleapis"}}
        })));
        assert_eq!(fetch.authority, "www.googleapis.com");
        assert_eq!(fetch.path, "/oauth2/v3/certs");
        assert_eq!(
            provider.token_sources,
            vec![TokenSource::Header {
                name: "authorization".into(),
                value_prefix: "Bearer ".into()
            }]
        );
        assert_eq!(provider.clock_skew_seconds, 60);
        assert!(provider.identity.require_email_verified);
        assert!(!provider.identity.iap_identity_headers);
        assert!(config.managed_headers.is_empty());
        assert!(config.managed_header_prefixes.is_empty());
    }

    // A google_iap provider whose audience is not in an IAP format is refused when loaded.
    #[test]
    fn google_iap_audience_format_checked_at_load() {
        let doc = with_provider(json!({
            "preset": "google_iap",
            "audiences": ["kserve-client"],
            "remote_jwks": {"http_uri": {"cluster": "gstatic"}}
        }));
        assert_error(&doc, "providers.g.audiences[0]", "is not an IAP audience");
    }

    // An unknown provider field lists the preset and identity fields among the known ones.
    #[test]
    fn unknown_provider_field_lists_new_fields() {
        assert_error(
            &minimal_with("/providers/kc/presets", json!("google_iap")),
            "providers.kc.presets",
            "preset",
        );
        assert_error(
            &minimal_with("/providers/kc/allowed_domains", json!(["example.com"])),
            "providers.kc.allowed_domains",
            "allowed_hosted_domains",
        );
    }

    // issuer may list several accepted values; the first is the issuer proper.
    #[test]
    fn issuer_list() {
        let doc = minimal_with("/providers/kc/issuer", json!(["https://a.test", "a.test"]));
        let provider = provider(&doc);
        assert_eq!(provider.issuer, "https://a.test");
        assert_eq!(provider.alternate_issuers, vec!["a.test"]);
        let single = provider_single();
        assert!(single.alternate_issuers.is_empty());
    }

    fn provider_single() -> Provider {
        provider(&minimal_with(
            "/providers/kc/issuer",
            json!(["https://a.test"]),
        ))
    }

    // An issuer list must be non-empty, without empty or repeated entries.
    #[test]
    fn issuer_list_invalid() {
        assert_error(
            &minimal_with("/providers/kc/issuer", json!([])),
            "providers.kc.issuer",
            "must not be empty",
        );
        assert_error(
            &minimal_with("/providers/kc/issuer", json!(["a", ""])),
            "providers.kc.issuer[1]",
            "must not be empty",
        );
        assert_error(
            &minimal_with("/providers/kc/issuer", json!(["a", "a"])),
            "providers.kc.issuer[1]",
            "listed twice",
        );
        assert_error(
            &minimal_with("/providers/kc/issuer", json!(7)),
            "providers.kc.issuer",
            "expected a string",
        );
    }

    // OIDC discovery reads one issuer's document, so it needs a single issuer.
    #[test]
    fn discovery_needs_a_single_issuer() {
        let mut doc = with_discovery("https://a.test", json!({"cluster": "idp"}));
        set(
            &mut doc,
            "/providers/kc/issuer",
            json!(["https://a.test", "a.test"]),
        );
        assert_error(&doc, "providers.kc.issuer", "single issuer");
    }

    // Identity fields compile lower-cased; an email restriction turns require_email_verified on
    // unless it is set explicitly.
    #[test]
    fn identity_fields_compile() {
        let mut doc = minimal_with(
            "/providers/kc/allowed_hosted_domains",
            json!(["Example.com"]),
        );
        set(
            &mut doc,
            "/providers/kc/allowed_email_domains",
            json!(["partner.org"]),
        );
        set(
            &mut doc,
            "/providers/kc/allowed_emails",
            json!(["Bob@Contractor.test"]),
        );
        assert_eq!(
            provider(&doc).identity,
            IdentityPolicy {
                require_email_verified: true,
                allowed_hosted_domains: vec!["example.com".into()],
                allowed_email_domains: vec!["partner.org".into()],
                allowed_emails: vec!["bob@contractor.test".into()],
                iap_identity_headers: false,
            }
        );
        set(
            &mut doc,
            "/providers/kc/require_email_verified",
            json!(false),
        );
        assert!(!provider(&doc).identity.require_email_verified);
        let hosted_only = minimal_with(
            "/providers/kc/allowed_hosted_domains",
            json!(["example.com"]),
        );
        assert!(!provider(&hosted_only).identity.require_email_verified);
        assert_eq!(provider(&minimal()).identity, IdentityPolicy::default());
    }

    // Malformed domains and addresses are refused, naming the entry.
    #[test]
    fn identity_fields_invalid() {
        for (field, value, path, needle) in [
            (
                "allowed_hosted_domains",
                json!(["@example.com"]),
                "providers.kc.allowed_hosted_domains[0]",
                "not a domain name",
            ),
            (
                "allowed_email_domains",
                json!(["*.example.com"]),
                "providers.kc.allowed_email_domains[0]",
                "not a domain name",
            ),
            (
                "allowed_email_domains",
                json!(["example.com", "EXAMPLE.com"]),
                "providers.kc.allowed_email_domains[1]",
                "listed twice",
            ),
            (
                "allowed_emails",
                json!(["example.com"]),
                "providers.kc.allowed_emails[0]",
                "not an email address",
            ),
            (
                "allowed_emails",
                json!(["a@b@example.com"]),
                "providers.kc.allowed_emails[0]",
                "not an email address",
            ),
            (
                "allowed_emails",
                json!([]),
                "providers.kc.allowed_emails",
                "must not be empty",
            ),
            (
                "require_email_verified",
                json!("yes"),
                "providers.kc.require_email_verified",
                "expected true or false",
            ),
            (
                "iap_identity_headers",
                json!(1),
                "providers.kc.iap_identity_headers",
                "expected true or false",
            ),
        ] {
            let doc = minimal_with(&format!("/providers/kc/{field}"), value);
            assert_error(&doc, path, needle);
        }
    }

    // claim_to_headers cannot take over a header iap_identity_headers sets.
    #[test]
    fn iap_headers_collide_with_claim_headers() {
        let mut doc = minimal_with("/providers/kc/iap_identity_headers", json!(true));
        set(
            &mut doc,
            "/providers/kc/claim_to_headers",
            json!([{"header_name": "X-Goog-Authenticated-User-Id", "claim_name": "sub"}]),
        );
        assert_error(
            &doc,
            "providers.kc.claim_to_headers[0].header_name",
            "already set by providers.kc.iap_identity_headers",
        );
    }

    // No provider may read its token from a header of the family the filter strips.
    #[test]
    fn token_header_under_managed_prefix_refused() {
        let mut doc = minimal_with("/providers/kc/iap_identity_headers", json!(true));
        set(
            &mut doc,
            "/providers/kc/from_headers",
            json!([{"name": "x-goog-authenticated-user-jwt"}]),
        );
        assert_error(
            &doc,
            "providers.kc.from_headers",
            "x-goog-authenticated-user-*",
        );
        // Without identity headers the same header is an ordinary token location.
        set(&mut doc, "/providers/kc/iap_identity_headers", json!(false));
        ok(&doc);
    }
}
