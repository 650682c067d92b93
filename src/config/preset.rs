//! Provider presets: `"preset": "google_iap"` and `"preset": "google_id_token"` fill in Google's
//! constants, and `"preset": "kubernetes"` those of the cluster's service-account tokens, so a
//! provider is a few lines.
//!
//! A preset works on the provider's JSON before it is compiled: every member the user left out is
//! taken from the preset, and every member the user wrote wins. Objects are merged member by
//! member, so `"remote_jwks": {"http_uri": {"cluster": "gstatic"}}` keeps the preset's URL and
//! adds the cluster. Choosing another key source (or other token locations) replaces the
//! preset's choice instead of adding to it.

use serde_json::{Map, Value};

use super::key_source::DISCOVERY_PATH;
use super::node::{ConfigError, Node};
use crate::jose::json;

/// The provider field that names a preset.
pub const FIELD: &str = "preset";

/// Issuer of IAP's signed headers.
pub const IAP_ISSUER: &str = "https://cloud.google.com/iap";
/// IAP's signing keys as a JWKS.
pub const IAP_JWKS_URI: &str = "https://www.gstatic.com/iap/verify/public_key-jwk";
/// The header IAP puts its assertion in.
pub const IAP_ASSERTION_HEADER: &str = "x-goog-iap-jwt-assertion";
/// Google ID tokens carry either spelling of the issuer.
pub const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];
/// Google's OAuth 2.0 signing keys as a JWKS.
pub const GOOGLE_JWKS_URI: &str = "https://www.googleapis.com/oauth2/v3/certs";

/// The service-account issuer most clusters use (`--service-account-issuer`); managed clusters
/// (EKS, GKE, AKS) have their own, which the user then writes as `issuer`.
pub const KUBERNETES_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Google's recommended clock skew for IAP assertions, in seconds.
const IAP_CLOCK_SKEW_SECONDS: u64 = 30;
/// IAP assertions are valid for ten minutes.
const IAP_LIFETIME_SECONDS: u64 = 600;

const KEY_SOURCES: [&str; 3] = ["remote_jwks", "local_jwks", "oidc_discovery"];
const TOKEN_SOURCES: [&str; 2] = ["from_headers", "from_params"];

/// A named set of provider defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// Google Cloud Identity-Aware Proxy's signed header.
    GoogleIap,
    /// Google-issued OpenID Connect ID tokens sent as Bearer tokens.
    GoogleIdToken,
    /// Kubernetes projected service-account tokens, with keys from the API server's OIDC
    /// discovery.
    Kubernetes,
}

impl Preset {
    /// Every preset.
    pub const ALL: [Preset; 3] = [Preset::GoogleIap, Preset::GoogleIdToken, Preset::Kubernetes];

    /// The name used in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Preset::GoogleIap => "google_iap",
            Preset::GoogleIdToken => "google_id_token",
            Preset::Kubernetes => "kubernetes",
        }
    }

    /// The preset with this configuration name.
    pub fn from_name(name: &str) -> Option<Preset> {
        Preset::ALL.into_iter().find(|preset| preset.name() == name)
    }

    /// The host the preset's JWKS is fetched from, for error messages.
    fn jwks_host(self) -> &'static str {
        match self {
            Preset::GoogleIap => "www.gstatic.com",
            Preset::GoogleIdToken => "www.googleapis.com",
            Preset::Kubernetes => "the API server",
        }
    }

    /// The preset's members as JSON text: data, not code (the `json!` macro would compile every
    /// member into instructions, several kilobytes of the module per preset). The constants
    /// above are spelled out here; `defaults_use_the_constants` checks they agree.
    fn defaults_json(self) -> &'static str {
        match self {
            Preset::GoogleIap => {
                r#"{"issuer": "https://cloud.google.com/iap",
                    "algorithms": ["ES256"],
                    "remote_jwks": {"http_uri": {"uri": "https://www.gstatic.com/iap/verify/public_key-jwk"}},
                    "from_headers": [{"name": "x-goog-iap-jwt-assertion"}],
                    "clock_skew_seconds": 30,
                    "require_email_verified": false,
                    "iap_identity_headers": true}"#
            }
            Preset::GoogleIdToken => {
                r#"{"issuer": ["https://accounts.google.com", "accounts.google.com"],
                    "algorithms": ["RS256"],
                    "remote_jwks": {"http_uri": {"uri": "https://www.googleapis.com/oauth2/v3/certs"}},
                    "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
                    "require_email_verified": true}"#
            }
            // The API server signs with RS256 (or ES256 when given an EC key) and serves its
            // discovery document and JWKS under the issuer's URL.
            Preset::Kubernetes => {
                r#"{"issuer": "https://kubernetes.default.svc.cluster.local",
                    "algorithms": ["RS256", "ES256"],
                    "oidc_discovery": {},
                    "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}]}"#
            }
        }
    }

    /// The preset's members. `clock_skew_seconds` is the skew the provider ends up with, since
    /// IAP's lifetime limit is ten minutes plus twice the skew.
    fn defaults(self, clock_skew_seconds: u64) -> Map<String, Value> {
        let mut defaults = match json::parse_strict(self.defaults_json().as_bytes()) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        if self == Preset::GoogleIap {
            let lifetime =
                IAP_LIFETIME_SECONDS.saturating_add(clock_skew_seconds.saturating_mul(2));
            defaults.insert("max_lifetime".into(), Value::String(format!("{lifetime}s")));
        }
        defaults
    }
}

/// The provider's JSON with its preset's defaults filled in and the `preset` member removed, or
/// `None` when the provider names no preset (or is not an object, which compiling reports).
pub(crate) fn expand(node: &Node<'_>) -> Result<Option<Value>, ConfigError> {
    let Ok(object) = node.members() else {
        return Ok(None);
    };
    let Some(preset_node) = object.get(FIELD) else {
        return Ok(None);
    };
    let name = preset_node.string()?;
    let preset = Preset::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = Preset::ALL.iter().map(|p| p.name()).collect();
        preset_node.error(format!(
            "unknown preset {name:?}; expected one of: {}",
            names.join(", ")
        ))
    })?;
    check_audiences(preset, &object.get("audiences"), &node.path)?;

    let user = object.map;
    let skew = match user.get("clock_skew_seconds").and_then(Value::as_u64) {
        Some(seconds) if preset == Preset::GoogleIap => seconds,
        _ => IAP_CLOCK_SKEW_SECONDS,
    };
    let mut merged: Map<String, Value> = user.clone();
    merged.remove(FIELD);
    let user_has_any = |fields: &[&str]| fields.iter().any(|field| user.contains_key(*field));
    for (field, default) in preset.defaults(skew) {
        let group_chosen = (KEY_SOURCES.contains(&field.as_str()) && user_has_any(&KEY_SOURCES))
            || (TOKEN_SOURCES.contains(&field.as_str()) && user_has_any(&TOKEN_SOURCES));
        match merged.get_mut(&field) {
            Some(mine) => merge(mine, default),
            None if group_chosen => {}
            None => {
                merged.insert(field, default);
            }
        }
    }
    require_cluster(preset, &merged, &node.path)?;
    Ok(Some(Value::Object(merged)))
}

/// Fills members missing from `mine` with `default`'s, recursively through objects; any other
/// value the user wrote stays as written.
fn merge(mine: &mut Value, default: Value) {
    if let (Value::Object(mine), Value::Object(default)) = (mine, default) {
        for (field, value) in default {
            match mine.get_mut(&field) {
                Some(existing) => merge(existing, value),
                None => {
                    mine.insert(field, value);
                }
            }
        }
    }
}

/// The preset's keys come through a cluster only the user can name; say which host it must reach
/// instead of a bare "missing".
fn require_cluster(
    preset: Preset,
    merged: &Map<String, Value>,
    provider_path: &str,
) -> Result<(), ConfigError> {
    if let Some(Value::Object(discovery)) = merged.get("oidc_discovery") {
        if discovery.contains_key("cluster") {
            return Ok(());
        }
        let issuer = merged
            .get("issuer")
            .and_then(Value::as_str)
            .unwrap_or("the issuer");
        return Err(ConfigError {
            field: format!("{provider_path}.oidc_discovery.cluster"),
            message: format!(
                "required field is missing; the {} preset reads {issuer}{DISCOVERY_PATH} and \
                 needs the name of the Envoy cluster that reaches {} over TLS (in an Istio \
                 sidecar: \"outbound|443||kubernetes.default.svc.cluster.local\")",
                preset.name(),
                preset.jwks_host()
            ),
        });
    }
    let Some(Value::Object(http_uri)) = merged
        .get("remote_jwks")
        .and_then(|remote| remote.get("http_uri"))
    else {
        return Ok(());
    };
    if http_uri.contains_key("cluster") {
        return Ok(());
    }
    Err(ConfigError {
        field: format!("{provider_path}.remote_jwks.http_uri.cluster"),
        message: format!(
            "required field is missing; the {} preset fetches its keys from {} and needs the \
             name of the Envoy cluster that reaches {}:443 over TLS",
            preset.name(),
            http_uri
                .get("uri")
                .and_then(Value::as_str)
                .unwrap_or("the configured uri"),
            preset.jwks_host()
        ),
    })
}

/// The audiences a preset needs: IAP's own audience format, or the OAuth client IDs of Google
/// ID tokens. Values of the wrong type are left for compiling to report.
fn check_audiences(
    preset: Preset,
    audiences: &Option<Node<'_>>,
    provider_path: &str,
) -> Result<(), ConfigError> {
    let Some(audiences) = audiences else {
        let hint = match preset {
            Preset::GoogleIap => {
                "an IAP assertion's audience: \"/projects/PROJECT_NUMBER/global/backendServices/\
                 SERVICE_ID\" or \"/projects/PROJECT_NUMBER/apps/PROJECT_ID\""
            }
            Preset::GoogleIdToken => "the OAuth client IDs the ID tokens are issued for",
            Preset::Kubernetes => {
                "the audience callers request for their projected service-account token \
                 (serviceAccountToken.audience, or kubectl create token --audience); the API \
                 server's own audience would accept tokens meant for it"
            }
        };
        return Err(ConfigError {
            field: format!("{provider_path}.audiences"),
            message: format!(
                "required field is missing; the {} preset needs {hint}",
                preset.name()
            ),
        });
    };
    if preset != Preset::GoogleIap {
        return Ok(());
    }
    let Ok(items) = audiences.array() else {
        return Ok(());
    };
    for item in items {
        let Ok(audience) = item.string() else {
            continue;
        };
        if !is_iap_audience(audience) {
            let hint = if audience.ends_with(".apps.googleusercontent.com") {
                " (that is an OAuth client ID: Google ID tokens carry it, IAP assertions do not; \
                 use the google_id_token preset for those)"
            } else {
                ""
            };
            return Err(item.error(format!(
                "{audience:?} is not an IAP audience; expected \
                 \"/projects/PROJECT_NUMBER/global/backendServices/SERVICE_ID\" (SERVICE_ID is the \
                 backend service's numeric id) or \"/projects/PROJECT_NUMBER/apps/PROJECT_ID\" \
                 (App Engine){hint}"
            )));
        }
    }
    Ok(())
}

/// `/projects/PROJECT_NUMBER/global/backendServices/SERVICE_ID` or
/// `/projects/PROJECT_NUMBER/apps/PROJECT_ID`.
pub fn is_iap_audience(audience: &str) -> bool {
    let Some(rest) = audience.strip_prefix("/projects/") else {
        return false;
    };
    let Some((project_number, rest)) = rest.split_once('/') else {
        return false;
    };
    if !is_number(project_number) {
        return false;
    }
    if let Some(service_id) = rest.strip_prefix("global/backendServices/") {
        return is_number(service_id);
    }
    rest.strip_prefix("apps/").is_some_and(is_project_id)
}

/// A numeric Google Cloud id: digits only, at most 20 (a 64-bit number).
fn is_number(text: &str) -> bool {
    (1..=20).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
}

/// A project id: 6 to 30 lower-case letters, digits and hyphens, starting with a letter and not
/// ending with a hyphen; older projects may be scoped by a domain (`example.com:my-project`).
fn is_project_id(text: &str) -> bool {
    let id = match text.rsplit_once(':') {
        Some((domain, id)) => {
            let domain_ok = !domain.is_empty()
                && domain.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                });
            if !domain_ok {
                return false;
            }
            id
        }
        None => text,
    };
    (6..=30).contains(&id.len())
        && id.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && !id.ends_with('-')
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    fn expand_json(provider: Value) -> Result<Option<Value>, ConfigError> {
        expand(&Node {
            value: &provider,
            path: "providers.p".into(),
        })
    }

    fn expanded(provider: Value) -> Value {
        expand_json(provider)
            .unwrap_or_else(|e| panic!("{e}"))
            .expect("a preset was named")
    }

    const BACKEND: &str = "/projects/123456789012/global/backendServices/4567890123456789012";

    // Both documented audience formats are accepted, with numeric ids and valid project ids.
    #[test]
    fn iap_audience_formats_accepted() {
        for audience in [
            BACKEND,
            "/projects/1/global/backendServices/2",
            "/projects/123456789012/apps/my-project",
            "/projects/123456789012/apps/abcdef",
            "/projects/123456789012/apps/a23456789012345678901234567890",
            "/projects/123456789012/apps/example.com:my-project",
        ] {
            assert!(is_iap_audience(audience), "{audience}");
        }
    }

    // Anything else is refused: other shapes, names instead of numbers, client IDs, bad ids.
    #[test]
    fn iap_audience_formats_refused() {
        for audience in [
            "",
            "/projects/",
            "projects/123/global/backendServices/456",
            "/projects/123/global/backendServices/my-backend",
            "/projects/my-project/global/backendServices/456",
            "/projects/123/global/backendServices/",
            "/projects/123/global/backendServices/456/",
            "/projects/123/regions/europe-west1/backendServices/456",
            "/projects/123/apps/",
            "/projects/123/apps/My-Project",
            "/projects/123/apps/1project",
            "/projects/123/apps/short",
            "/projects/123/apps/my-project-",
            "/projects/123/apps/a234567890123456789012345678901",
            "/projects/123/apps/my_project",
            "/projects/123/apps/:my-project",
            "/projects/123456789012345678901/apps/my-project",
            "123-abc.apps.googleusercontent.com",
            "https://cloud.google.com/iap",
            "/projects/123/apps/my-project?x",
        ] {
            assert!(!is_iap_audience(audience), "{audience}");
        }
    }

    // A provider without a preset is left alone.
    #[test]
    fn no_preset_no_expansion() {
        assert_eq!(expand_json(json!({"issuer": "x"})).unwrap(), None);
        assert_eq!(expand_json(json!("not an object")).unwrap(), None);
    }

    // google_iap fills in issuer, ES256, the gstatic JWKS, the assertion header, 30 s skew and a
    // 660 s lifetime, and keeps the user's audiences and cluster.
    #[test]
    fn google_iap_defaults() {
        let provider = expanded(json!({
            "preset": "google_iap",
            "audiences": [BACKEND],
            "remote_jwks": {"http_uri": {"cluster": "gstatic"}},
        }));
        assert_eq!(
            provider,
            json!({
                "issuer": "https://cloud.google.com/iap",
                "audiences": [BACKEND],
                "algorithms": ["ES256"],
                "remote_jwks": {"http_uri": {
                    "uri": "https://www.gstatic.com/iap/verify/public_key-jwk",
                    "cluster": "gstatic"}},
                "from_headers": [{"name": "x-goog-iap-jwt-assertion"}],
                "clock_skew_seconds": 30,
                "max_lifetime": "660s",
                "require_email_verified": false,
                "iap_identity_headers": true,
            })
        );
    }

    // google_id_token fills in both issuer spellings, RS256, Google's certs and the Bearer header.
    #[test]
    fn google_id_token_defaults() {
        let provider = expanded(json!({
            "preset": "google_id_token",
            "audiences": ["123-abc.apps.googleusercontent.com"],
            "remote_jwks": {"http_uri": {"cluster": "googleapis"}},
        }));
        assert_eq!(
            provider,
            json!({
                "issuer": ["https://accounts.google.com", "accounts.google.com"],
                "audiences": ["123-abc.apps.googleusercontent.com"],
                "algorithms": ["RS256"],
                "remote_jwks": {"http_uri": {
                    "uri": "https://www.googleapis.com/oauth2/v3/certs",
                    "cluster": "googleapis"}},
                "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
                "require_email_verified": true,
            })
        );
    }

    // Explicit fields win, nested ones too; the lifetime limit follows an explicit skew.
    #[test]
    fn explicit_fields_win() {
        let provider = expanded(json!({
            "preset": "google_iap",
            "audiences": [BACKEND],
            "remote_jwks": {"http_uri": {"uri": "http://127.0.0.1:9/jwks", "cluster": "jwks",
                                         "timeout": "2s"},
                            "cache_duration": "60s"},
            "algorithms": ["ES256", "ES384"],
            "clock_skew_seconds": 60,
            "iap_identity_headers": false,
            "forward": true,
        }));
        assert_eq!(
            provider["remote_jwks"],
            json!({"http_uri": {"uri": "http://127.0.0.1:9/jwks", "cluster": "jwks",
                                "timeout": "2s"},
                   "cache_duration": "60s"})
        );
        assert_eq!(provider["algorithms"], json!(["ES256", "ES384"]));
        assert_eq!(provider["clock_skew_seconds"], json!(60));
        assert_eq!(provider["max_lifetime"], json!("720s"));
        assert_eq!(provider["iap_identity_headers"], json!(false));
        assert_eq!(provider["forward"], json!(true));
        assert_eq!(provider["issuer"], json!(IAP_ISSUER));
    }

    // Another key source replaces the preset's remote_jwks instead of conflicting with it.
    #[test]
    fn another_key_source_replaces_the_presets() {
        let provider = expanded(json!({
            "preset": "google_iap",
            "audiences": [BACKEND],
            "local_jwks": {"inline_string": "{\"keys\": []}"},
        }));
        assert_eq!(provider.get("remote_jwks"), None);
        assert_eq!(
            provider["local_jwks"],
            json!({"inline_string": "{\"keys\": []}"})
        );
    }

    // Token locations the user gives replace the preset's header rather than adding to it.
    #[test]
    fn user_token_sources_replace_the_presets() {
        let provider = expanded(json!({
            "preset": "google_id_token",
            "audiences": ["client"],
            "remote_jwks": {"http_uri": {"cluster": "googleapis"}},
            "from_params": ["id_token"],
        }));
        assert_eq!(provider.get("from_headers"), None);
        assert_eq!(provider["from_params"], json!(["id_token"]));
    }

    // Without a cluster the error names the field and the host the cluster must reach.
    #[test]
    fn cluster_is_required() {
        let error =
            expand_json(json!({"preset": "google_iap", "audiences": [BACKEND]})).unwrap_err();
        assert_eq!(error.field, "providers.p.remote_jwks.http_uri.cluster");
        assert!(error.message.contains("www.gstatic.com:443"), "{error}");
        let error = expand_json(json!({"preset": "google_id_token", "audiences": ["c"],
                                       "remote_jwks": {"http_uri": {}}}))
        .unwrap_err();
        assert_eq!(error.field, "providers.p.remote_jwks.http_uri.cluster");
        assert!(error.message.contains("www.googleapis.com:443"), "{error}");
    }

    // An unknown preset name is refused with the list of known ones.
    #[test]
    fn unknown_preset() {
        let error = expand_json(json!({"preset": "google", "audiences": ["x"]})).unwrap_err();
        assert_eq!(error.field, "providers.p.preset");
        assert!(
            error
                .message
                .contains("google_iap, google_id_token, kubernetes"),
            "{error}"
        );
        let error = expand_json(json!({"preset": 1})).unwrap_err();
        assert_eq!(error.field, "providers.p.preset");
    }

    // A google_iap audience in another format is refused, naming the audiences entry.
    #[test]
    fn google_iap_refuses_other_audiences() {
        let error = expand_json(json!({
            "preset": "google_iap",
            "audiences": [BACKEND, "123-abc.apps.googleusercontent.com"],
            "remote_jwks": {"http_uri": {"cluster": "gstatic"}},
        }))
        .unwrap_err();
        assert_eq!(error.field, "providers.p.audiences[1]");
        assert!(error.message.contains("is not an IAP audience"), "{error}");
        assert!(error.message.contains("OAuth client ID"), "{error}");
    }

    // Both presets need audiences, and say what kind.
    #[test]
    fn audiences_required() {
        let error = expand_json(json!({"preset": "google_iap"})).unwrap_err();
        assert_eq!(error.field, "providers.p.audiences");
        assert!(
            error.message.contains("/projects/PROJECT_NUMBER"),
            "{error}"
        );
        let error = expand_json(json!({"preset": "google_id_token"})).unwrap_err();
        assert_eq!(error.field, "providers.p.audiences");
        assert!(error.message.contains("OAuth client IDs"), "{error}");
    }

    // The kubernetes preset reads the API server's discovery through the named cluster.
    #[test]
    fn kubernetes_defaults() {
        let provider = expanded(json!({
            "preset": "kubernetes",
            "audiences": ["kserve"],
            "oidc_discovery": {"cluster": "outbound|443||kubernetes.default.svc.cluster.local"},
        }));
        assert_eq!(provider["issuer"], json!(KUBERNETES_ISSUER));
        assert_eq!(provider["algorithms"], json!(["RS256", "ES256"]));
        assert_eq!(
            provider["oidc_discovery"],
            json!({"cluster": "outbound|443||kubernetes.default.svc.cluster.local"})
        );
        assert_eq!(
            provider["from_headers"],
            json!([{"name": "authorization", "value_prefix": "Bearer "}])
        );
        assert!(provider.get("preset").is_none());
        // A managed cluster's own issuer replaces the default.
        let eks = expanded(json!({
            "preset": "kubernetes",
            "issuer": "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC",
            "audiences": ["kserve"],
            "oidc_discovery": {"cluster": "eks-oidc"},
        }));
        assert_eq!(
            eks["issuer"],
            json!("https://oidc.eks.eu-west-1.amazonaws.com/id/ABC")
        );
    }

    // Without a cluster or audiences the kubernetes preset says what it needs.
    #[test]
    fn kubernetes_needs_a_cluster_and_audiences() {
        let error =
            expand_json(json!({"preset": "kubernetes", "audiences": ["kserve"]})).unwrap_err();
        assert_eq!(error.field, "providers.p.oidc_discovery.cluster");
        assert!(
            error.message.contains(
                "https://kubernetes.default.svc.cluster.local/.well-known/openid-configuration"
            ),
            "{error}"
        );
        let error = expand_json(json!({"preset": "kubernetes"})).unwrap_err();
        assert_eq!(error.field, "providers.p.audiences");
        assert!(
            error.message.contains("projected service-account token"),
            "{error}"
        );
    }

    // The JSON text of each preset parses, and spells the constants the rest of the filter uses.
    #[test]
    fn defaults_use_the_constants() {
        for preset in Preset::ALL {
            let parsed: Value = serde_json::from_str(preset.defaults_json()).unwrap();
            assert!(parsed.is_object(), "{}", preset.name());
        }
        let iap = Preset::GoogleIap.defaults(IAP_CLOCK_SKEW_SECONDS);
        assert_eq!(iap["issuer"], json!(IAP_ISSUER));
        assert_eq!(iap["remote_jwks"]["http_uri"]["uri"], json!(IAP_JWKS_URI));
        assert_eq!(iap["from_headers"][0]["name"], json!(IAP_ASSERTION_HEADER));
        assert_eq!(iap["clock_skew_seconds"], json!(IAP_CLOCK_SKEW_SECONDS));
        assert_eq!(iap["max_lifetime"], json!("660s"));
        let google = Preset::GoogleIdToken.defaults(0);
        assert_eq!(google["issuer"], json!(GOOGLE_ISSUERS));
        assert_eq!(
            google["remote_jwks"]["http_uri"]["uri"],
            json!(GOOGLE_JWKS_URI)
        );
        let kubernetes = Preset::Kubernetes.defaults(0);
        assert_eq!(kubernetes["issuer"], json!(KUBERNETES_ISSUER));
    }
}
