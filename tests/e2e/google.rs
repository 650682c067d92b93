//! Google Cloud IAP assertions and Google ID tokens through a real Envoy: the `google_iap` and
//! `google_id_token` presets, with keys served on loopback by overriding the preset's JWKS URL
//! and cluster (explicit fields win over a preset's defaults), IAP's identity headers, and the
//! hosted-domain restriction.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::keys::now;
use crate::support::shipped::shipped_plugin_configs;
use crate::support::*;
use serde_json::{json, Value};

const IAP_ISSUER: &str = "https://cloud.google.com/iap";
const ASSERTION_HEADER: &str = "x-goog-iap-jwt-assertion";
const EMAIL_HEADER: &str = "x-goog-authenticated-user-email";
const ID_HEADER: &str = "x-goog-authenticated-user-id";
/// The audience of an IAP-protected load balancer backend.
const BACKEND_AUDIENCE: &str = "/projects/123456789012/global/backendServices/4567890123456789012";
/// The audience of an IAP-protected App Engine app.
const APP_ENGINE_AUDIENCE: &str = "/projects/123456789012/apps/kserve-models";
/// The OAuth client ID Google ID tokens are issued for.
const CLIENT_ID: &str = "123456789012-abcdef.apps.googleusercontent.com";
const USER_SUB: &str = "accounts.google.com:110169484474386276334";
const USER_EMAIL: &str = "alice@example.com";

/// A `google_iap` provider whose keys come from `server` through cluster `jwks`.
fn iap_provider(server: &JwksServer, audiences: &[&str]) -> Value {
    json!({
        "preset": "google_iap",
        "audiences": audiences,
        "remote_jwks": {"http_uri": {"uri": server.jwks_url(), "cluster": "jwks"}},
    })
}

/// A `google_id_token` provider whose keys come from `server` through cluster `jwks`.
fn id_token_provider(server: &JwksServer) -> Value {
    json!({
        "preset": "google_id_token",
        "audiences": [CLIENT_ID],
        "remote_jwks": {"http_uri": {"uri": server.jwks_url(), "cluster": "jwks"}},
        "claim_to_headers": [{"header_name": "x-user-email", "claim_name": "email"}],
    })
}

/// Claims of an assertion IAP would sign now: valid for ten minutes, for a Workspace user.
fn assertion_claims(audience: &str) -> Value {
    let now = now();
    json!({
        "iss": IAP_ISSUER,
        "aud": audience,
        "sub": USER_SUB,
        "email": USER_EMAIL,
        "hd": "example.com",
        "iat": now,
        "exp": now + 600,
    })
}

/// Claims of a Google ID token issued now for [`CLIENT_ID`].
fn id_token_claims(issuer: &str) -> Value {
    let now = now();
    json!({
        "iss": issuer,
        "azp": CLIENT_ID,
        "aud": CLIENT_ID,
        "sub": "110169484474386276334",
        "email": "svc@project.iam.gserviceaccount.com",
        "email_verified": true,
        "iat": now,
        "exp": now + 3600,
    })
}

/// Envoy with one `google_iap` provider ("iap") accepting `audiences`, keys from `key`.
fn iap_stack(key: &TestKey, audiences: &[&str]) -> Stack {
    let server = JwksServer::start(jwks(&[key]));
    let config = json!({
        "providers": {"iap": iap_provider(&server, audiences)},
        "rules": [
            {"match": {"prefix": "/v2/health"}},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "iap"}},
        ],
    });
    Stack::start(server, &config)
}

/// Envoy with one `google_id_token` provider ("google"), keys from `key`.
fn id_token_stack(key: &TestKey) -> Stack {
    let server = JwksServer::start(jwks(&[key]));
    let config = json!({
        "providers": {"google": id_token_provider(&server)},
        "rules": [
            {"match": {"prefix": "/v2/health"}},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "google"}},
        ],
    });
    Stack::start(server, &config)
}

fn send_assertion(stack: &Stack, path: &str, assertion: &str) -> Response {
    stack.get(path, &[(ASSERTION_HEADER, assertion)])
}

/// The upstream saw exactly the verified identity and no assertion.
fn assert_verified_identity(echo: &Echo) {
    let expected_email = format!("accounts.google.com:{USER_EMAIL}");
    assert_eq!(
        echo.header(EMAIL_HEADER).as_deref(),
        Some(expected_email.as_str())
    );
    assert_eq!(echo.header(ID_HEADER).as_deref(), Some(USER_SUB));
    assert_eq!(echo.header(ASSERTION_HEADER), None);
}

// A valid assertion is accepted with either audience format, and the upstream gets IAP's
// identity headers from its claims.
#[test]
fn valid_assertion_with_each_audience_format() {
    let key = TestKey::es256("iap-0");
    let stack = iap_stack(&key, &[BACKEND_AUDIENCE, APP_ENGINE_AUDIENCE]);
    for audience in [BACKEND_AUDIENCE, APP_ENGINE_AUDIENCE] {
        let assertion = key.sign(&assertion_claims(audience));
        let response = send_assertion(&stack, PROTECTED_PATH, &assertion);
        assert_verified_identity(&Echo::from_response(&response));
    }
    assert_eq!(stack.upstream.count(), 2);
}

// An assertion for another backend service: 401 "Audiences in Jwt are not allowed".
#[test]
fn assertion_for_another_backend_is_rejected() {
    let key = TestKey::es256("iap-0");
    let stack = iap_stack(&key, &[BACKEND_AUDIENCE]);
    let other = "/projects/123456789012/global/backendServices/999";
    let response = send_assertion(&stack, PROTECTED_PATH, &key.sign(&assertion_claims(other)));
    assert_invalid_token(&response, "Audiences in Jwt are not allowed");
    assert_eq!(stack.upstream.count(), 0);
}

// An assertion from another issuer (a Google ID token's) under IAP's key: 401 "Jwt issuer is
// not configured".
#[test]
fn assertion_from_another_issuer_is_rejected() {
    let key = TestKey::es256("iap-0");
    let stack = iap_stack(&key, &[BACKEND_AUDIENCE]);
    let mut claims = assertion_claims(BACKEND_AUDIENCE);
    claims["iss"] = json!("https://accounts.google.com");
    let response = send_assertion(&stack, PROTECTED_PATH, &key.sign(&claims));
    assert_invalid_token(&response, "Jwt issuer is not configured");
    assert_eq!(stack.upstream.count(), 0);
}

// An RS256 assertion is refused even though its key is in the served key set: IAP signs with
// ES256 only.
#[test]
fn rs256_assertion_is_rejected() {
    let es_key = TestKey::es256("iap-0");
    let rsa_key = TestKey::rs256("rsa-a", "iap-rsa");
    let server = JwksServer::start(jwks(&[&es_key, &rsa_key]));
    let config = json!({
        "providers": {"iap": iap_provider(&server, &[BACKEND_AUDIENCE])},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "iap"}}],
    });
    let stack = Stack::start(server, &config);
    let assertion = rsa_key.sign(&assertion_claims(BACKEND_AUDIENCE));
    let response = send_assertion(&stack, PROTECTED_PATH, &assertion);
    assert_invalid_token(&response, "Jwt algorithm is not allowed");
    assert_eq!(stack.upstream.count(), 0);
}

// The preset's 30 s skew: an assertion that expired 10 s ago passes, one that expired 45 s ago
// (within the default 60 s, beyond IAP's 30 s) is refused.
#[test]
fn expiry_within_skew_passes_and_beyond_is_rejected() {
    let key = TestKey::es256("iap-0");
    let stack = iap_stack(&key, &[BACKEND_AUDIENCE]);
    let expired_ago = |seconds: i64| {
        let mut claims = assertion_claims(BACKEND_AUDIENCE);
        let exp = now() - seconds;
        claims["exp"] = json!(exp);
        claims["iat"] = json!(exp - 600);
        key.sign(&claims)
    };
    let within = send_assertion(&stack, PROTECTED_PATH, &expired_ago(10));
    assert_verified_identity(&Echo::from_response(&within));
    let beyond = send_assertion(&stack, PROTECTED_PATH, &expired_ago(45));
    assert_invalid_token(&beyond, "Jwt is expired");
    assert_eq!(stack.upstream.count(), 1);
}

// An assertion living longer than IAP's ten minutes plus twice the skew is refused.
#[test]
fn assertion_with_too_long_a_lifetime_is_rejected() {
    let key = TestKey::es256("iap-0");
    let stack = iap_stack(&key, &[BACKEND_AUDIENCE]);
    let mut claims = assertion_claims(BACKEND_AUDIENCE);
    claims["exp"] = json!(now() + 661);
    let response = send_assertion(&stack, PROTECTED_PATH, &key.sign(&claims));
    assert_invalid_token(&response, "Jwt lifetime exceeds the allowed maximum");
}

// The assertion sent as a Bearer token is not looked for there: 401 "Jwt is missing".
#[test]
fn assertion_as_bearer_token_is_rejected() {
    let key = TestKey::es256("iap-0");
    let stack = iap_stack(&key, &[BACKEND_AUDIENCE]);
    let assertion = key.sign(&assertion_claims(BACKEND_AUDIENCE));
    assert_missing(&stack.get_with_token(PROTECTED_PATH, &assertion));
    assert_eq!(stack.upstream.count(), 0);
}

// Forged identity headers: replaced by the verified identity on a protected path, removed (with
// any other x-goog-authenticated-user-* header) on a public one.
#[test]
fn forged_identity_headers_are_replaced_or_removed() {
    let key = TestKey::es256("iap-0");
    let stack = iap_stack(&key, &[BACKEND_AUDIENCE]);
    let forged = [
        (EMAIL_HEADER, "accounts.google.com:admin@example.com"),
        (ID_HEADER, "accounts.google.com:1"),
        ("x-goog-authenticated-user-groups", "admins"),
    ];

    let assertion = key.sign(&assertion_claims(BACKEND_AUDIENCE));
    let mut headers = forged.to_vec();
    headers.push((ASSERTION_HEADER, assertion.as_str()));
    let echo = Echo::from_response(&stack.get(PROTECTED_PATH, &headers));
    assert_verified_identity(&echo);
    assert_eq!(echo.header("x-goog-authenticated-user-groups"), None);

    let echo = Echo::from_response(&stack.get(PUBLIC_PATH, &forged));
    for (name, _) in forged {
        assert_eq!(echo.header(name), None, "{name} reached a public path");
    }
}

// A Google ID token is accepted with either spelling of Google's issuer.
#[test]
fn id_token_with_each_issuer_spelling() {
    let key = TestKey::rs256("rsa-a", "google-1");
    let stack = id_token_stack(&key);
    for issuer in ["https://accounts.google.com", "accounts.google.com"] {
        let response = stack.get_with_token(PROTECTED_PATH, &key.sign(&id_token_claims(issuer)));
        let echo = Echo::from_response(&response);
        assert_eq!(
            echo.header("x-user-email").as_deref(),
            Some("svc@project.iam.gserviceaccount.com"),
            "{issuer}"
        );
        assert_eq!(echo.header("authorization"), None);
    }
}

// A Google ID token issued for another OAuth client: 401 "Audiences in Jwt are not allowed".
#[test]
fn id_token_for_another_client_is_rejected() {
    let key = TestKey::rs256("rsa-a", "google-1");
    let stack = id_token_stack(&key);
    let mut claims = id_token_claims("https://accounts.google.com");
    claims["aud"] = json!("999999999999-other.apps.googleusercontent.com");
    let response = stack.get_with_token(PROTECTED_PATH, &key.sign(&claims));
    assert_invalid_token(&response, "Audiences in Jwt are not allowed");
    assert_eq!(stack.upstream.count(), 0);
}

// A Google ID token whose email is not verified: 401 "Jwt email is not verified", counted
// under its own reason.
#[test]
fn id_token_with_unverified_email_is_rejected() {
    let key = TestKey::rs256("rsa-a", "google-1");
    let stack = id_token_stack(&key);
    let mut claims = id_token_claims("https://accounts.google.com");
    claims["email_verified"] = json!(false);
    let response = stack.get_with_token(PROTECTED_PATH, &key.sign(&claims));
    assert_invalid_token(&response, "Jwt email is not verified");
    assert_eq!(stack.upstream.count(), 0);
    let counter = "wasmcustom.kserve_auth.requests.denied.email_not_verified";
    let seen = stack
        .envoy
        .wait_for_counter(counter, 1, std::time::Duration::from_secs(5));
    assert_eq!(seen, Some(1));
}

// requires_all with an IAP assertion and a Google ID token: both must be present and valid, and
// neither credential reaches the upstream.
#[test]
fn requires_all_needs_the_assertion_and_the_bearer_token() {
    let iap_key = TestKey::es256("iap-0");
    let google_key = TestKey::rs256("rsa-a", "google-1");
    let server = JwksServer::start(jwks(&[&iap_key, &google_key]));
    let config = json!({
        "providers": {
            "iap": iap_provider(&server, &[BACKEND_AUDIENCE]),
            "google": id_token_provider(&server),
        },
        "rules": [{"match": {"prefix": "/"}, "requires": {"requires_all": {"requirements": [
            {"provider_name": "iap"}, {"provider_name": "google"}]}}}],
    });
    let stack = Stack::start(server, &config);
    let assertion = iap_key.sign(&assertion_claims(BACKEND_AUDIENCE));
    let bearer = format!(
        "Bearer {}",
        google_key.sign(&id_token_claims("accounts.google.com"))
    );

    let both = stack.get(
        PROTECTED_PATH,
        &[
            (ASSERTION_HEADER, assertion.as_str()),
            ("authorization", bearer.as_str()),
        ],
    );
    let echo = Echo::from_response(&both);
    assert_verified_identity(&echo);
    assert_eq!(echo.header("authorization"), None);
    assert_eq!(
        echo.header("x-user-email").as_deref(),
        Some("svc@project.iam.gserviceaccount.com")
    );

    assert_missing(&send_assertion(&stack, PROTECTED_PATH, &assertion));
    assert_missing(&stack.get(PROTECTED_PATH, &[("authorization", bearer.as_str())]));
    assert_eq!(stack.upstream.count(), 1);
}

// allowed_hosted_domains: a valid assertion from another Workspace domain gets 403
// insufficient_scope; one from the allowed domain passes.
#[test]
fn hosted_domain_restriction_answers_403() {
    let key = TestKey::es256("iap-0");
    let server = JwksServer::start(jwks(&[&key]));
    let mut provider = iap_provider(&server, &[BACKEND_AUDIENCE]);
    provider["allowed_hosted_domains"] = json!(["example.com"]);
    let config = json!({
        "providers": {"iap": provider},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "iap"}}],
    });
    let stack = Stack::start(server, &config);

    let allowed = send_assertion(
        &stack,
        PROTECTED_PATH,
        &key.sign(&assertion_claims(BACKEND_AUDIENCE)),
    );
    assert_verified_identity(&Echo::from_response(&allowed));

    let mut claims = assertion_claims(BACKEND_AUDIENCE);
    claims["hd"] = json!("other.example");
    claims["email"] = json!("mallory@other.example");
    let response = send_assertion(&stack, PROTECTED_PATH, &key.sign(&claims));
    assert_eq!(response.status, 403, "{}", response.text());
    let challenge = format!(
        "{}, error=\"insufficient_scope\", error_description=\"Jwt hosted domain is not allowed\"",
        realm()
    );
    assert_eq!(
        response.header("www-authenticate"),
        Some(challenge.as_str())
    );
    assert_eq!(
        response.json(),
        json!({"error": "insufficient_scope",
               "error_description": "Jwt hosted domain is not allowed"})
    );
    assert_eq!(stack.upstream.count(), 1);
}

// A google_iap provider with an audience that is not in an IAP format is refused when loaded:
// Envoy does not start, and the log names the audiences entry.
#[test]
fn non_iap_audience_is_refused_at_configure_time() {
    let server = JwksServer::reserve(r#"{"keys":[]}"#);
    let config = json!({
        "providers": {"iap": iap_provider(&server, &[CLIENT_ID])},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "iap"}}],
    });
    let failure = start_envoy_expecting_failure(&config);
    assert_eq!(
        failure.status.and_then(|s| s.code()),
        Some(1),
        "{}",
        failure.log
    );
    assert!(
        failure
            .log
            .lines()
            .any(|line| line.contains("wasm log kserve_auth")
                && line.contains("providers.iap.audiences[0]")
                && line.contains("is not an IAP audience")),
        "no plugin log line names the audience:\n{}",
        failure.log
    );
}

// The shipped envoy/envoy-iap.yaml plugin configuration, keys moved to loopback: KServe's
// liveness and health paths are public, models need an assertion, and a valid one reaches the
// model server with the verified identity.
#[test]
fn shipped_iap_example_protects_models_and_leaves_health_public() {
    let configs = shipped_plugin_configs("envoy-iap.yaml");
    let [text] = configs.as_slice() else {
        panic!("envoy-iap.yaml should embed one plugin configuration");
    };
    let mut config: Value = serde_json::from_str(text).unwrap();
    let key = TestKey::es256("iap-0");
    let server = JwksServer::start(jwks(&[&key]));
    let audience = config["providers"]["iap"]["audiences"][0]
        .as_str()
        .unwrap()
        .to_string();
    config["providers"]["iap"]["remote_jwks"] =
        json!({"http_uri": {"uri": server.jwks_url(), "cluster": "jwks"}});
    let stack = Stack::start(server, &config);

    for public in ["/", "/v2/health/live", "/v2/health/ready"] {
        let forged = [(EMAIL_HEADER, "accounts.google.com:admin@example.com")];
        let echo = Echo::from_response(&stack.get(public, &forged));
        assert_eq!(echo.header(EMAIL_HEADER), None, "{public}");
    }
    for model_path in [
        "/v1/models/sklearn-iap:predict",
        "/v2/models/sklearn-iap/infer",
        "/v2/healthz",
    ] {
        assert_missing(&stack.get(model_path, &[]));
    }
    let assertion = key.sign(&assertion_claims(&audience));
    let response = send_assertion(&stack, "/v1/models/sklearn-iap:predict", &assertion);
    assert_verified_identity(&Echo::from_response(&response));
}
