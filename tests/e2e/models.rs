//! Per-model authorization and KServe protocol awareness in a real Envoy: model rules with
//! claim conditions, gRPC denials, CORS preflights, RFC 9728 metadata, and the shipped KServe
//! example configuration.
//!
//! Each test starts its own key server, echo upstream and Envoy. Requests use
//! `Host: kserve.test`, hence `realm="kserve.test"`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::support::envoy::{filter_wasm, tail};
use crate::support::h2c;
use crate::support::http::{self, DEFAULT_HOST};
use crate::support::*;
use serde_json::{json, Value};

const RESOURCE: &str = "https://models.example.com";
const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";
const METADATA_URL: &str = "https://models.example.com/.well-known/oauth-protected-resource";
const FORBIDDEN: &str = "Jwt does not have the claims this request requires";
const GRPC_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";
const GRPC_LIVE: &str = "/inference.GRPCInferenceService/ServerLive";

/// Health public; `fraud` needs a realm role; `team-*` a client role; `scoped` an OAuth scope;
/// `corp` an e-mail domain; the gRPC service (but its liveness probe) a realm role; anything
/// else a valid token. Preflights bypass the filter; metadata is served for [`RESOURCE`].
fn models_config(server: &JwksServer) -> Value {
    json!({
        "providers": {PROVIDER: remote_provider(server)},
        "rules": [
            {"match": {"prefix": "/v2/health"}},
            {"match": {"path": GRPC_LIVE}},
            {"match": {"model": "fraud"}, "requires": {"provider_name": PROVIDER},
             "require_claims": [{"claim": "realm_access.roles", "has": "fraud-predict"}]},
            {"match": {"model": "team-*"}, "requires": {"provider_name": PROVIDER},
             "require_claims": [{"claim": "resource_access.kserve-client.roles", "has": "team"}]},
            {"match": {"model": "scoped"}, "requires": {"provider_name": PROVIDER},
             "require_claims": [{"claim": "scope", "has_word": "models:predict"}]},
            {"match": {"model": "corp"}, "requires": {"provider_name": PROVIDER},
             "require_claims": [{"claim": "email", "ends_with": "@example.com"}]},
            {"match": {"prefix": "/inference.GRPCInferenceService/"},
             "requires": {"provider_name": PROVIDER},
             "require_claims": [{"claim": "realm_access.roles", "has": "grpc-user"}]},
            {"match": {"prefix": "/"}, "requires": {"provider_name": PROVIDER}},
        ],
        "bypass_cors_preflight": true,
        "protected_resource_metadata": {"resource": RESOURCE},
    })
}

fn models_stack() -> (Stack, TestKey) {
    let key = TestKey::es256("key-models");
    let server = JwksServer::start(jwks(&[&key]));
    let config = models_config(&server);
    (Stack::start(server, &config), key)
}

/// A valid token for `sub` with `extra` claims merged in.
fn token(key: &TestKey, extra: Value) -> String {
    let mut claims = good_claims("svc");
    for (name, value) in extra.as_object().unwrap() {
        claims[name] = value.clone();
    }
    key.sign(&claims)
}

/// `POST path` with a JSON body and, when given, a bearer token.
fn post(stack: &Stack, path: &str, token: Option<&str>) -> Response {
    let authorization = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(authorization) = &authorization {
        headers.push(("authorization", authorization.as_str()));
    }
    http::request(stack.envoy.addr(), "POST", path, &headers, Some(b"{}"))
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// The request reached the model server.
#[track_caller]
fn assert_passed(response: &Response, path: &str) {
    let echo = Echo::from_response(response);
    assert_eq!(echo.path, path);
}

/// 403 with an `insufficient_scope` challenge that also points to the metadata.
#[track_caller]
fn assert_forbidden(response: &Response) {
    assert_forbidden_naming(response, "");
}

/// 403 `insufficient_scope` whose challenge ends with `suffix` (the `scope` parameter).
#[track_caller]
fn assert_forbidden_naming(response: &Response, suffix: &str) {
    assert_eq!(response.status, 403, "body: {}", response.text());
    let challenge = format!(
        "Bearer realm=\"{DEFAULT_HOST}\", resource_metadata=\"{METADATA_URL}\", \
         error=\"insufficient_scope\", error_description=\"{FORBIDDEN}\"{suffix}"
    );
    assert_eq!(
        response.header("www-authenticate"),
        Some(challenge.as_str())
    );
    assert_eq!(
        response.json(),
        json!({"error": "insufficient_scope", "error_description": FORBIDDEN})
    );
}

// A realm-role holder reaches the model on V1 predict and explain, V2 infer and versioned
// infer; a valid token without the role gets 403 insufficient_scope on each, and nothing of
// the denied requests reaches the model server.
#[test]
fn role_holder_allowed_and_non_holder_forbidden() {
    let (stack, key) = models_stack();
    let holder = token(
        &key,
        json!({"realm_access": {"roles": ["offline_access", "fraud-predict"]}}),
    );
    let other = token(&key, json!({"realm_access": {"roles": ["churn-predict"]}}));
    let paths = [
        "/v1/models/fraud:predict",
        "/v1/models/fraud:explain",
        "/v2/models/fraud/infer",
        "/v2/models/fraud/versions/2/infer",
    ];
    for path in paths {
        assert_passed(&post(&stack, path, Some(&holder)), path);
        assert_forbidden(&post(&stack, path, Some(&other)));
    }
    assert_eq!(stack.upstream.count(), paths.len());
    let denied = stack.envoy.wait_for_counter(
        "wasmcustom.kserve_auth.requests.denied.claim_requirement_failed",
        4,
        Duration::from_secs(5),
    );
    assert_eq!(denied, Some(4));
}

// `fraud` is an exact name: `fraudulent` falls through to the plain rule. `team-*` covers every
// model with that prefix, and only those.
#[test]
fn exact_and_glob_model_matches() {
    let (stack, key) = models_stack();
    let plain = token(&key, json!({}));
    assert_passed(
        &post(&stack, "/v1/models/fraudulent:predict", Some(&plain)),
        "/v1/models/fraudulent:predict",
    );
    assert_forbidden(&post(&stack, "/v1/models/fraud:predict", Some(&plain)));
    assert_forbidden(&post(&stack, "/v2/models/team-a/infer", Some(&plain)));
    assert_forbidden(&post(&stack, "/v1/models/team-b:predict", Some(&plain)));
    assert_passed(
        &post(&stack, "/v2/models/teams/infer", Some(&plain)),
        "/v2/models/teams/infer",
    );
    let member = token(
        &key,
        json!({"resource_access": {"kserve-client": {"roles": ["team"]}}}),
    );
    assert_passed(
        &post(&stack, "/v2/models/team-a/infer", Some(&member)),
        "/v2/models/team-a/infer",
    );
    // A percent-encoded name is the same model to the rule as to the model server.
    assert_forbidden(&post(&stack, "/v1/models/fr%61ud:predict", Some(&plain)));
}

// `has_word` needs the exact scope word (`models:predict-all` is not `models:predict`), and
// the 403 names the scope; `ends_with` needs the e-mail suffix.
#[test]
fn has_word_is_word_exact_and_ends_with_checks_the_suffix() {
    let (stack, key) = models_stack();
    let path = "/v2/models/scoped/infer";
    let scope = ", scope=\"models:predict\"";
    let near = token(&key, json!({"scope": "openid models:predict-all profile"}));
    assert_forbidden_naming(&post(&stack, path, Some(&near)), scope);
    let prefix_only = token(&key, json!({"scope": "models"}));
    assert_forbidden_naming(&post(&stack, path, Some(&prefix_only)), scope);
    let exact = token(&key, json!({"scope": "openid models:predict profile"}));
    assert_passed(&post(&stack, path, Some(&exact)), path);

    let path = "/v1/models/corp:predict";
    for email in ["bob@example.com.evil.test", "bob@notexample.com", "bob"] {
        let outsider = token(&key, json!({"email": email}));
        assert_forbidden(&post(&stack, path, Some(&outsider)));
    }
    let insider = token(&key, json!({"email": "bob@example.com"}));
    assert_passed(&post(&stack, path, Some(&insider)), path);
}

// A gRPC call without a token gets a trailers-only answer over HTTP/2: status 200,
// grpc-status 16 (UNAUTHENTICATED) and a grpc-message, not a bare HTTP 401. A token without the
// rule's role gets grpc-status 7 (PERMISSION_DENIED); the liveness method is public.
#[test]
fn grpc_calls_are_denied_the_grpc_way() {
    let (stack, key) = models_stack();
    let addr = stack.envoy.addr();

    let response = h2c::grpc_call(addr, GRPC_INFER, &[]);
    assert_eq!(response.status, 200, "{:?}", response.headers);
    assert_eq!(response.header("content-type"), Some("application/grpc"));
    assert_eq!(response.header("grpc-status"), Some("16"));
    assert_eq!(response.header("grpc-message"), Some("Jwt is missing"));
    assert_eq!(
        response.header("www-authenticate"),
        Some(
            format!("Bearer realm=\"{DEFAULT_HOST}\", resource_metadata=\"{METADATA_URL}\"")
                .as_str()
        )
    );
    assert!(response.body.is_empty(), "{:?}", response.text());

    // ModelInfer names its model in the message; one no model rule names falls to the gRPC rule.
    let plain = token(&key, json!({}));
    let authorization = format!("Bearer {plain}");
    let response = infer(addr, &authorization, "other");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("grpc-status"), Some("7"));
    assert_eq!(response.header("grpc-message"), Some(FORBIDDEN));
    assert_eq!(stack.upstream.count(), 0);

    let member = token(&key, json!({"realm_access": {"roles": ["grpc-user"]}}));
    let authorization = format!("Bearer {member}");
    infer(addr, &authorization, "other");
    h2c::grpc_call(addr, GRPC_LIVE, &[]);
    let paths: Vec<String> = stack
        .upstream
        .received()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(paths, [GRPC_INFER, GRPC_LIVE]);
}

/// A gRPC ModelInfer over h2c naming `model`.
fn infer(addr: std::net::SocketAddr, authorization: &str, model: &str) -> Response {
    let mut message = vec![0x0a, model.len() as u8];
    message.extend_from_slice(model.as_bytes());
    let mut frame = vec![0];
    frame.extend((message.len() as u32).to_be_bytes());
    frame.extend(message);
    let headers = [
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("authorization", authorization),
    ];
    h2c::post(addr, GRPC_INFER, &headers, Some(&frame))
}

// A CORS preflight (OPTIONS with Origin and Access-Control-Request-Method) reaches the
// upstream without a token; a plain OPTIONS is refused like any request without one.
#[test]
fn cors_preflight_passes_and_plain_options_does_not() {
    let (stack, _) = models_stack();
    let addr = stack.envoy.addr();
    let path = "/v1/models/fraud:predict";
    let preflight = http::request(
        addr,
        "OPTIONS",
        path,
        &[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "authorization"),
        ],
        None,
    )
    .unwrap();
    let echo = Echo::from_response(&preflight);
    assert_eq!(echo.method, "OPTIONS");

    let plain = http::request(addr, "OPTIONS", path, &[], None).unwrap();
    assert_eq!(plain.status, 401);
    let origin_only = http::request(
        addr,
        "OPTIONS",
        path,
        &[("origin", "https://app.example.com")],
        None,
    )
    .unwrap();
    assert_eq!(origin_only.status, 401);
    assert_eq!(stack.upstream.count(), 1);
}

// The filter serves the RFC 9728 document itself (the model server never sees the request),
// and every 401 challenge carries `resource_metadata` with its URL.
#[test]
fn metadata_is_served_and_401s_point_to_it() {
    let (stack, key) = models_stack();
    let response = stack.get(METADATA_PATH, &[]);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(
        response.json(),
        json!({
            "resource": RESOURCE,
            "authorization_servers": [ISSUER],
            "bearer_methods_supported": ["header"],
            "scopes_supported": ["models:predict"],
        })
    );
    assert_eq!(stack.upstream.count(), 0);

    let missing = stack.get("/v2/models/m/infer", &[]);
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.header("www-authenticate"),
        Some(
            format!("Bearer realm=\"{DEFAULT_HOST}\", resource_metadata=\"{METADATA_URL}\"")
                .as_str()
        )
    );
    let mut expired = good_claims("svc");
    expired["exp"] = json!(crate::support::keys::now() - 600);
    expired["iat"] = json!(crate::support::keys::now() - 900);
    let invalid = stack.get_with_token("/v2/models/m/infer", &key.sign(&expired));
    assert_eq!(invalid.status, 401);
    assert_eq!(
        invalid.header("www-authenticate"),
        Some(
            format!(
                "Bearer realm=\"{DEFAULT_HOST}\", resource_metadata=\"{METADATA_URL}\", \
                 error=\"invalid_token\", error_description=\"Jwt is expired\""
            )
            .as_str()
        )
    );
    let served = stack.envoy.wait_for_counter(
        "wasmcustom.kserve_auth.requests.metadata",
        1,
        Duration::from_secs(5),
    );
    assert_eq!(served, Some(1));
}

// A provider restricted to `typ: at+jwt` and one authorized party refuses other tokens with
// 401 invalid_token.
#[test]
fn token_type_and_authorized_party_are_enforced() {
    let key = TestKey::es256("key-azp");
    let server = JwksServer::start(jwks(&[&key]));
    let mut provider = remote_provider(&server);
    provider["allowed_types"] = json!(["JWT"]);
    provider["allowed_authorized_parties"] = json!(["fraud-svc"]);
    let stack = Stack::start(server, &plugin_config(provider));
    let allowed = token(&key, json!({"azp": "fraud-svc"}));
    let echo = Echo::from_response(&stack.get_with_token(PROTECTED_PATH, &allowed));
    assert_eq!(echo.path, PROTECTED_PATH);
    let other = token(&key, json!({"azp": "churn-svc"}));
    assert_invalid_token(
        &stack.get_with_token(PROTECTED_PATH, &other),
        "Jwt azp is not an allowed authorized party",
    );
    let none = token(&key, json!({}));
    assert_invalid_token(
        &stack.get_with_token(PROTECTED_PATH, &none),
        "Jwt azp is not an allowed authorized party",
    );
}

/// Starts Envoy with a configuration the filter must refuse and returns its log.
fn refused_config_log(config: &Value) -> String {
    let failure = start_envoy_expecting_failure(config);
    let status = failure.status.expect("Envoy exited by itself");
    assert_eq!(status.code(), Some(1), "{}", failure.log);
    failure.log
}

#[track_caller]
fn assert_logged_line(log: &str, needle: &str) {
    assert!(
        log.lines()
            .any(|l| l.contains("wasm log kserve_auth") && l.contains(needle)),
        "no plugin log line names {needle:?}:\n{}",
        tail(log, 30)
    );
}

// An unknown claim operator keeps Envoy from starting; the log names the operator's field.
#[test]
fn unknown_operator_is_refused() {
    let server = JwksServer::reserve(r#"{"keys":[]}"#);
    let mut config = models_config(&server);
    config["rules"][2]["require_claims"] = json!([{"claim": "roles", "contains": "fraud"}]);
    assert_logged_line(
        &refused_config_log(&config),
        "rules[2].require_claims[0].contains: unknown field; expected one of: claim, has, \
         has_word, equals, one_of, ends_with",
    );
}

// A model glob with a star anywhere but at the end keeps Envoy from starting; the log names the
// field.
#[test]
fn malformed_model_glob_is_refused() {
    let server = JwksServer::reserve(r#"{"keys":[]}"#);
    let mut config = models_config(&server);
    config["rules"][3]["match"]["model"] = json!("team-*-a");
    assert_logged_line(
        &refused_config_log(&config),
        "rules[3].match.model: \"*\" is allowed only at the end",
    );
}

// `envoy/kserve.yaml` as shipped (ports moved to free ones): health probes are public, each
// model requires its Keycloak realm role, the OpenAI-compatible endpoints need a valid token.
#[test]
fn shipped_kserve_example_enforces_model_roles() {
    let key = TestKey::rs256("rsa-a", "realm-key");
    let keycloak = JwksServer::start(jwks(&[&key]));
    keycloak.set_jwks_path("/realms/kserve/protocol/openid-connect/certs");
    let model = EchoUpstream::start();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("envoy/kserve.yaml");
    let mut yaml = fs::read_to_string(&file).unwrap().replace(
        "target/kserve_auth_filter.wasm",
        &filter_wasm().display().to_string(),
    );
    for (from, to) in [
        ("port_value: 10000", 0),
        ("port_value: 9901", 0),
        ("port_value: 8081", keycloak.port()),
        ("port_value: 8080", model.port()),
    ] {
        assert!(yaml.contains(from), "kserve.yaml no longer has {from}");
        yaml = yaml.replace(from, &format!("port_value: {to}"));
    }
    let access_log = std::env::temp_dir().join(format!(
        "kserve-example-access-{}-{}.log",
        std::process::id(),
        model.port()
    ));
    assert!(yaml.contains("path: /dev/stdout"));
    yaml = yaml.replace(
        "path: /dev/stdout",
        &format!("path: {}", access_log.display()),
    );
    let envoy = Envoy::try_start_bootstrap("kserve.yaml", &yaml, 1, "info")
        .unwrap_or_else(|f| panic!("kserve.yaml did not start: {}", tail(&f.log, 40)));
    let addr = envoy.addr();

    for probe in ["/", "/v2/health/live", "/v2/health/ready"] {
        assert_eq!(envoy.get(probe, &[]).status, 200, "{probe}");
    }
    assert_eq!(envoy.get("/v2/models/fraud/ready", &[]).status, 401);

    let now = crate::support::keys::now();
    let sign = |roles: Value| {
        let claims = json!({"iss": "http://127.0.0.1:8081/realms/kserve",
                            "aud": "kserve-client", "sub": "svc", "iat": now, "exp": now + 300,
                            "realm_access": {"roles": roles}});
        format!("Bearer {}", key.sign(&claims))
    };
    let fraud = sign(json!(["fraud-predict"]));
    let churn = sign(json!(["churn-predict"]));
    let call = |path: &str, authorization: &str| {
        http::request(
            addr,
            "POST",
            path,
            &[("authorization", authorization)],
            Some(b"{}"),
        )
        .unwrap()
        .status
    };
    assert_eq!(call("/v1/models/fraud:predict", &fraud), 200);
    assert_eq!(call("/v2/models/fraud/versions/1/infer", &fraud), 200);
    assert_eq!(call("/v1/models/fraud:predict", &churn), 403);
    assert_eq!(call("/v2/models/churn/infer", &churn), 200);
    assert_eq!(call("/v2/models/churn/infer", &fraud), 403);
    // The OpenAI-compatible API names the model in the body, and the same model rules hold.
    let chat = |model: &str, authorization: &str| {
        let body = json!({"model": model, "messages": []}).to_string();
        http::request(
            addr,
            "POST",
            "/openai/v1/chat/completions",
            &[("authorization", authorization)],
            Some(body.as_bytes()),
        )
        .unwrap()
        .status
    };
    assert_eq!(chat("churn", &churn), 200);
    assert_eq!(chat("fraud", &churn), 403);
    assert_eq!(chat("llama", &churn), 200);
    assert_eq!(envoy.get("/openai/v1/chat/completions", &[]).status, 401);
    let metadata = envoy.get(METADATA_PATH, &[]);
    assert_eq!(metadata.status, 200);
    assert_eq!(
        metadata.json()["authorization_servers"],
        json!(["http://127.0.0.1:8081/realms/kserve"])
    );

    // The access log names the caller from filter state; reopening the log writes it out now.
    let wanted = [
        "\"POST /v1/models/fraud:predict\" 200 provider=keycloak sub=svc roles=fraud-predict",
        "\"POST /v1/models/fraud:predict\" 403 provider=- sub=- roles=-",
        "\"GET /v2/health/ready\" 200 provider=- sub=- roles=-",
    ];
    let written = poll(Duration::from_secs(15), || {
        http::request(envoy.admin_addr(), "POST", "/reopen_logs", &[], None).ok()?;
        let log = fs::read_to_string(&access_log).unwrap_or_default();
        wanted
            .iter()
            .all(|line| log.lines().any(|l| l.ends_with(line)))
            .then_some(())
    });
    let log = fs::read_to_string(&access_log).unwrap_or_default();
    let _ = fs::remove_file(&access_log);
    assert!(written.is_some(), "{wanted:?} not all in:\n{log}");
    assert!(!log.contains(fraud.trim_start_matches("Bearer ")));
}
