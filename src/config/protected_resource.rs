//! RFC 9728 OAuth 2.0 protected resource metadata: where the document lives, and what it says.
//!
//! A client that gets a 401 finds `resource_metadata="<url>"` in the challenge, fetches that
//! document from the filter, and learns from `authorization_servers` which issuer to get a
//! token from, without any out-of-band configuration.

use serde_json::{json, Value};

use super::binding::{challenge_schemes, BindingMode};
use super::provider::Provider;
use super::rules::Rule;
use crate::config::uri;
use crate::request::extract::TokenSource;

/// The well-known path suffix RFC 9728 registers.
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// Long enough for any real resource URL, short enough that the metadata URL fits the
/// challenge's quoted-string limit whole.
const MAX_RESOURCE_LEN: usize = 200;

/// Where the metadata of one resource is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The request path the filter answers.
    pub path: String,
    /// The absolute URL of the document.
    pub url: String,
}

/// The metadata location of the resource identifier `resource` (RFC 9728 §3.1): the well-known
/// suffix goes between the host and the resource's path, so `https://models.example.com` is
/// described at `https://models.example.com/.well-known/oauth-protected-resource` and
/// `https://example.com/models` at `https://example.com/.well-known/oauth-protected-resource/models`.
pub fn locate(resource: &str) -> Result<Location, String> {
    let url = uri::parse_http_url(resource)?;
    let scheme = resource
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    // As OAuth does for native apps' redirect URIs (RFC 8252 §7.3), plain http is acceptable
    // on this machine: the traffic never leaves the host, which a demo or a laptop needs.
    if scheme != "https" && !uri::is_loopback(&url.authority) {
        return Err(
            "must be an https:// URL (RFC 9728 resource identifiers use https); http:// is \
             accepted only for a loopback host (127.0.0.1, [::1], localhost)"
                .to_owned(),
        );
    }
    if url.query.is_some() {
        return Err("must not have a query".to_owned());
    }
    // The URL is sent inside a quoted-string in challenges, whole.
    if resource.contains(['"', '\\']) {
        return Err("must not contain '\"' or '\\'".to_owned());
    }
    if resource.len() > MAX_RESOURCE_LEN {
        return Err(format!(
            "must be at most {MAX_RESOURCE_LEN} characters long"
        ));
    }
    let resource_path = if url.path == "/" { "" } else { &url.path };
    let path = format!("{WELL_KNOWN}{resource_path}");
    Ok(Location {
        url: format!("{scheme}://{}{path}", url.authority),
        path,
    })
}

/// The metadata document of `resource` protected under these providers and rules.
///
/// - `authorization_servers`: every provider's issuer, once each;
/// - `bearer_methods_supported`: `header` when a provider reads `Authorization: Bearer`, `query`
///   when one reads query parameters;
/// - `scopes_supported`: the scopes rules require (see [`ClaimCondition::scope`]), when any;
/// - `dpop_signing_alg_values_supported`, when a provider takes DPoP, and
///   `dpop_bound_access_tokens_required` when every provider requires it;
/// - `tls_client_certificate_bound_access_tokens` when every provider requires certificate-bound
///   tokens.
///
/// [`ClaimCondition::scope`]: crate::policy::claims::ClaimCondition::scope
pub fn document(resource: &str, providers: &[Provider], rules: &[Rule]) -> String {
    let mut issuers: Vec<&str> = Vec::new();
    for provider in providers {
        if !issuers.contains(&provider.issuer.as_str()) {
            issuers.push(&provider.issuer);
        }
    }
    let sources = || providers.iter().flat_map(|p| &p.token_sources);
    let mut methods = Vec::new();
    if sources().any(|source| {
        matches!(source, TokenSource::Header { name, value_prefix }
            if name == "authorization" && value_prefix.eq_ignore_ascii_case("Bearer "))
    }) {
        methods.push("header");
    }
    if sources().any(|source| matches!(source, TokenSource::Param { .. })) {
        methods.push("query");
    }
    let mut document = json!({
        "resource": resource,
        "authorization_servers": issuers,
        "bearer_methods_supported": methods,
    });
    let Value::Object(members) = &mut document else {
        return document.to_string();
    };
    let scopes = required_scopes(rules);
    if !scopes.is_empty() {
        members.insert("scopes_supported".to_owned(), json!(scopes));
    }
    let schemes = challenge_schemes(providers.iter().map(|p| p.binding.dpop.as_ref()));
    if let Some(algs) = schemes.dpop_algs {
        let algs: Vec<&str> = algs.split(' ').collect();
        members.insert("dpop_signing_alg_values_supported".to_owned(), json!(algs));
        if !schemes.bearer {
            members.insert("dpop_bound_access_tokens_required".to_owned(), json!(true));
        }
    }
    if providers
        .iter()
        .all(|p| p.binding.mtls == Some(BindingMode::Required))
    {
        members.insert(
            "tls_client_certificate_bound_access_tokens".to_owned(),
            json!(true),
        );
    }
    document.to_string()
}

/// Every scope a rule requires, in rule order, once each.
pub fn required_scopes(rules: &[Rule]) -> Vec<&str> {
    let mut scopes: Vec<&str> = Vec::new();
    for condition in rules.iter().flat_map(|rule| &rule.require_claims) {
        if let Some(scope) = condition.scope() {
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
    }
    scopes
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn location(resource: &str) -> Location {
        locate(resource).unwrap_or_else(|e| panic!("{resource}: {e}"))
    }

    fn config(extra: Value) -> Config {
        let mut doc = json!({
            "providers": {
                "kc": {"issuer": "https://kc.example.com/realms/r", "audiences": ["kserve"],
                       "local_jwks": {"inline_string": "{\"keys\": []}"}},
                "google": {"issuer": "https://accounts.google.com", "audiences": ["x"],
                           "from_headers": [{"name": "x-goog-iap-jwt-assertion"}],
                           "local_jwks": {"inline_string": "{\"keys\": []}"}},
                "again": {"issuer": "https://kc.example.com/realms/r", "audiences": ["other"],
                          "from_params": ["access_token"],
                          "local_jwks": {"inline_string": "{\"keys\": []}"}}
            },
            "rules": [
                {"match": {"model": "fraud"}, "requires": {"provider_name": "kc"},
                 "require_claims": [{"claim": "scope", "has_word": "fraud:predict"},
                                    {"claim": "realm_access.roles", "has": "fraud"}]},
                {"match": {"model": "churn"}, "requires": {"provider_name": "kc"},
                 "require_claims": [{"claim": "scp", "has": "churn.read"},
                                    {"claim": "scope", "has_word": "fraud:predict"}]},
                {"match": {"prefix": "/"}, "requires": {"provider_name": "kc"}}
            ]
        });
        for (key, value) in extra.as_object().unwrap() {
            doc[key] = value.clone();
        }
        Config::from_json(doc.to_string().as_bytes()).unwrap()
    }

    // A resource without a path is described at the bare well-known path.
    #[test]
    fn location_of_a_host() {
        let expected = Location {
            path: "/.well-known/oauth-protected-resource".into(),
            url: "https://models.example.com/.well-known/oauth-protected-resource".into(),
        };
        assert_eq!(location("https://models.example.com"), expected);
        assert_eq!(location("https://models.example.com/"), expected);
    }

    // A resource path goes after the well-known suffix; a port stays in the URL.
    #[test]
    fn location_of_a_path() {
        assert_eq!(
            location("https://example.com:8443/models/v2"),
            Location {
                path: "/.well-known/oauth-protected-resource/models/v2".into(),
                url: "https://example.com:8443/.well-known/oauth-protected-resource/models/v2"
                    .into(),
            }
        );
    }

    // Plain http is accepted for this machine only, and the document is served over http.
    #[test]
    fn loopback_resources_may_use_http() {
        for (resource, url) in [
            (
                "http://127.0.0.1:10000",
                "http://127.0.0.1:10000/.well-known/oauth-protected-resource",
            ),
            (
                "http://[::1]:10000/models",
                "http://[::1]:10000/.well-known/oauth-protected-resource/models",
            ),
            (
                "HTTP://LocalHost",
                "http://LocalHost/.well-known/oauth-protected-resource",
            ),
        ] {
            assert_eq!(location(resource).url, url);
        }
    }

    // Resources that RFC 9728 or a quoted challenge parameter cannot carry are refused.
    #[test]
    fn unusable_resources() {
        for (resource, needle) in [
            ("http://models.example.com", "https"),
            ("http://10.0.0.1:8080", "loopback"),
            ("http://127.0.0.2", "loopback"),
            ("http://localhost.example.com", "loopback"),
            ("http://[::2]:10000", "loopback"),
            ("https://models.example.com/?a=1", "query"),
            ("https://models.example.com/#x", "fragment"),
            ("https://models.example.com/a\"b", "must not contain"),
            ("https://user:pw@models.example.com", "user information"),
            ("models.example.com", "absolute"),
            (
                &format!("https://m.example.com/{}", "a".repeat(200)),
                "at most 200",
            ),
        ] {
            let error = locate(resource).unwrap_err();
            assert!(error.contains(needle), "{resource}: {error}");
        }
    }

    // The document lists each issuer once, the RFC 6750 methods in use and the rules' scopes.
    #[test]
    fn document_contents() {
        let config = config(json!({
            "protected_resource_metadata": {"resource": "https://models.example.com"}
        }));
        let document: Value =
            serde_json::from_str(&config.protected_resource.unwrap().document).unwrap();
        assert_eq!(
            document,
            json!({
                "resource": "https://models.example.com",
                "authorization_servers": ["https://kc.example.com/realms/r",
                                          "https://accounts.google.com"],
                "bearer_methods_supported": ["header", "query"],
                "scopes_supported": ["fraud:predict", "churn.read"]
            })
        );
    }

    // Without scope conditions, scopes_supported is left out rather than sent empty.
    #[test]
    fn document_without_scopes() {
        let mut doc = json!({
            "providers": {"kc": {"issuer": "https://kc.example.com", "audiences": ["a"],
                                 "local_jwks": {"inline_string": "{\"keys\": []}"}}},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "kc"}}],
            "protected_resource_metadata": {"resource": "https://m.example.com/x"}
        });
        let config = Config::from_json(doc.to_string().as_bytes()).unwrap();
        let document: Value =
            serde_json::from_str(&config.protected_resource.unwrap().document).unwrap();
        assert_eq!(
            document,
            json!({"resource": "https://m.example.com/x",
                   "authorization_servers": ["https://kc.example.com"],
                   "bearer_methods_supported": ["header"]})
        );
        doc.as_object_mut()
            .unwrap()
            .remove("protected_resource_metadata");
        let config = Config::from_json(doc.to_string().as_bytes()).unwrap();
        assert_eq!(config.protected_resource, None);
    }

    // Sender-constrained providers advertise what RFC 9449 §5.1 and RFC 8705 §3.3 define.
    #[test]
    fn document_names_sender_constraints() {
        let document = |binding: Value| -> Value {
            let mut provider = json!({"issuer": "https://kc.example.com", "audiences": ["a"],
                                      "local_jwks": {"inline_string": "{\"keys\": []}"}});
            for (name, value) in binding.as_object().unwrap() {
                provider[name] = value.clone();
            }
            let doc = json!({
                "providers": {"kc": provider},
                "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "kc"}}],
                "protected_resource_metadata": {"resource": "https://m.example.com/x"}
            });
            let config = Config::from_json(doc.to_string().as_bytes()).unwrap();
            serde_json::from_str(&config.protected_resource.unwrap().document).unwrap()
        };
        let required = document(
            json!({"dpop": {"mode": "required", "algorithms": ["ES256"]},
                                       "mtls_binding": "required"}),
        );
        assert_eq!(
            required["dpop_signing_alg_values_supported"],
            json!(["ES256"])
        );
        assert_eq!(required["dpop_bound_access_tokens_required"], json!(true));
        assert_eq!(
            required["tls_client_certificate_bound_access_tokens"],
            json!(true)
        );
        let allowed = document(json!({"dpop": {"mode": "allowed", "algorithms": ["ES256"]},
                                      "mtls_binding": "allowed"}));
        assert_eq!(
            allowed["dpop_signing_alg_values_supported"],
            json!(["ES256"])
        );
        assert_eq!(allowed.get("dpop_bound_access_tokens_required"), None);
        assert_eq!(
            allowed.get("tls_client_certificate_bound_access_tokens"),
            None
        );
    }
}
