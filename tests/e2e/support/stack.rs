//! Key server + echo upstream + Envoy with the filter, and the assertions on the filter's
//! answers that most tests share.

use serde_json::{json, Value};

use super::echo::EchoUpstream;
use super::envoy::{Envoy, EnvoyConfig, StartFailure};
use super::http::{Response, DEFAULT_HOST};
use super::jwks_server::JwksServer;
use super::keys::{jwks, TestKey, AUDIENCE, ISSUER};

/// Name of the provider in [`plugin_config`].
pub const PROVIDER: &str = "test";
/// Header that receives the verified payload segment.
pub const PAYLOAD_HEADER: &str = "x-jwt-payload";
/// Header that receives the `sub` claim.
pub const SUB_HEADER: &str = "x-jwt-sub";
/// A path under the public rule.
pub const PUBLIC_PATH: &str = "/v2/health/ready";
/// A path under the protected rule.
pub const PROTECTED_PATH: &str = "/v2/models/m/infer";

/// The default provider: fixed issuer and audience, keys from the key server's JWKS URL
/// through cluster `jwks`, payload and `sub` forwarded in headers.
pub fn remote_provider(server: &JwksServer) -> Value {
    json!({
        "issuer": ISSUER,
        "audiences": [AUDIENCE],
        "remote_jwks": {
            "http_uri": {"uri": server.jwks_url(), "cluster": "jwks", "timeout": "2s"},
            "cache_duration": "600s",
        },
        "forward_payload_header": PAYLOAD_HEADER,
        "claim_to_headers": [{"header_name": SUB_HEADER, "claim_name": "sub"}],
    })
}

/// A provider that finds its JWKS through OIDC discovery; its issuer is the key server's URL.
pub fn discovery_provider(server: &JwksServer) -> Value {
    json!({
        "issuer": server.base_url(),
        "audiences": [AUDIENCE],
        "oidc_discovery": {"cluster": "jwks", "timeout": "2s"},
        "forward_payload_header": PAYLOAD_HEADER,
        "claim_to_headers": [{"header_name": SUB_HEADER, "claim_name": "sub"}],
    })
}

/// The plugin configuration with `provider` as [`PROVIDER`]: `/v2/health` is public, every
/// other path requires the provider.
pub fn plugin_config(provider: Value) -> Value {
    json!({
        "providers": {PROVIDER: provider},
        "rules": [
            {"match": {"prefix": "/v2/health"}},
            {"match": {"prefix": "/"}, "requires": {"provider_name": PROVIDER}},
        ],
    })
}

/// Everything one test talks to.
pub struct Stack {
    /// Envoy, dropped (killed) first.
    pub envoy: Envoy,
    /// The key server behind cluster `jwks`.
    pub jwks: JwksServer,
    /// The upstream behind cluster `kserve`.
    pub upstream: EchoUpstream,
}

impl Stack {
    /// Starts an upstream and Envoy with `config` in front of it, keys from `jwks`.
    pub fn start(jwks: JwksServer, config: &Value) -> Stack {
        let upstream = EchoUpstream::start();
        let envoy = Envoy::start(&EnvoyConfig::with_filter(
            config,
            jwks.port(),
            upstream.port(),
        ));
        Stack {
            envoy,
            jwks,
            upstream,
        }
    }

    /// The default configuration with a key server publishing `keys`.
    pub fn with_keys(keys: &[&TestKey]) -> Stack {
        let server = JwksServer::start(jwks(keys));
        let config = plugin_config(remote_provider(&server));
        Stack::start(server, &config)
    }

    /// `GET path` with extra headers.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.envoy.get(path, headers)
    }

    /// `GET path` with `Authorization: Bearer <token>`.
    pub fn get_with_token(&self, path: &str, token: &str) -> Response {
        let authorization = format!("Bearer {token}");
        self.envoy
            .get(path, &[("authorization", authorization.as_str())])
    }
}

/// Envoy with the filter and `config`, expected NOT to come up.
pub fn start_envoy_expecting_failure(config: &Value) -> StartFailure {
    let cfg = EnvoyConfig::with_filter(config, 9, 9);
    match Envoy::try_start(&cfg) {
        Ok(envoy) => {
            let probe = envoy.get(PROTECTED_PATH, &[]);
            panic!(
                "Envoy started with a configuration the filter must refuse; a request got {} {:?}",
                probe.status,
                probe.text()
            )
        }
        Err(failure) => failure,
    }
}

/// The challenge's realm for requests sent with the default `Host`.
pub fn realm() -> String {
    format!("Bearer realm=\"{DEFAULT_HOST}\"")
}

/// 401 for a request without a token: bare challenge, JSON body "Jwt is missing".
pub fn assert_missing(response: &Response) {
    assert_eq!(response.status, 401, "body: {}", response.text());
    assert_eq!(response.header("www-authenticate"), Some(realm().as_str()));
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(
        response.json(),
        json!({"error": "unauthorized", "error_description": "Jwt is missing"})
    );
}

/// 401 `invalid_token` with `reason` in both the challenge and the JSON body.
pub fn assert_invalid_token(response: &Response, reason: &str) {
    assert_eq!(response.status, 401, "body: {}", response.text());
    let challenge = format!(
        "{}, error=\"invalid_token\", error_description=\"{reason}\"",
        realm()
    );
    assert_eq!(
        response.header("www-authenticate"),
        Some(challenge.as_str())
    );
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(
        response.json(),
        json!({"error": "invalid_token", "error_description": reason})
    );
}

/// 503 while no signing keys are available: integer `retry-after`, JSON body, and no
/// `invalid_token` challenge (the token was not judged).
pub fn assert_keys_unavailable(response: &Response) {
    assert_eq!(response.status, 503, "body: {}", response.text());
    let retry_after = response
        .header("retry-after")
        .unwrap_or_else(|| panic!("503 without retry-after: {:?}", response.headers));
    assert!(
        retry_after.parse::<u64>().is_ok(),
        "retry-after is not integer seconds: {retry_after:?}"
    );
    assert!(
        !response.visible_text().contains("invalid_token"),
        "503 must not call the token invalid: {}",
        response.visible_text()
    );
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(
        response.json(),
        json!({
            "error": "temporarily_unavailable",
            "error_description": "Signing keys are not available yet",
        })
    );
}
