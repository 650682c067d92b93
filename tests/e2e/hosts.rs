//! One gateway in front of many InferenceServices, in a real Envoy: rules told apart by host
//! (`match.hosts`) and by header (`match.headers`), the identity in Envoy filter state for the
//! access log, Kubernetes service-account tokens through the `kubernetes` preset, and the
//! predictor sidecars' shipped plugin configuration on an inbound listener.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use crate::support::envoy::{cluster, router_http_filter, WasmFilter};
use crate::support::keys::now;
use crate::support::*;
use serde_json::{json, Value};

const RISK_HOST: &str = "model-risk.models.example.com";
const ADS_HOST: &str = "model-ads.models.example.com";
/// The same model path on both services.
const PREDICT: &str = "/v1/models/model:predict";
const FORBIDDEN: &str = "Jwt does not have the claims this request requires";

/// Claims of the default provider with these realm roles.
fn with_roles(sub: &str, roles: &[&str]) -> Value {
    let mut claims = good_claims(sub);
    claims["realm_access"] = json!({"roles": roles});
    claims
}

fn role_rule(hosts: Value, role: &str) -> Value {
    json!({"match": {"prefix": "/v1/models/", "hosts": hosts},
           "requires": {"provider_name": PROVIDER},
           "require_claims": [{"claim": "realm_access.roles", "has": role}]})
}

/// Two InferenceServices named `model` in namespaces `risk` and `ads`, each with its own role;
/// in-cluster hosts by wildcard; every other host falls through to the catch-all (any valid
/// token).
fn two_services() -> (Stack, TestKey) {
    let key = TestKey::es256("key-hosts");
    let server = JwksServer::start(jwks(&[&key]));
    let config = json!({
        "providers": {PROVIDER: remote_provider(&server)},
        "rules": [
            {"match": {"prefix": "/v2/health"}},
            role_rule(json!([RISK_HOST, "*.risk.svc.cluster.local"]), "risk"),
            role_rule(json!(["*-ads.models.example.com", "[::1]"]), "ads"),
            {"match": {"prefix": "/"}, "requires": {"provider_name": PROVIDER}},
        ],
    });
    (Stack::start(server, &config), key)
}

fn post_as(stack: &Stack, host: &str, token: &str) -> Response {
    let authorization = format!("Bearer {token}");
    let headers = [("host", host), ("authorization", authorization.as_str())];
    http::request(stack.envoy.addr(), "POST", PREDICT, &headers, Some(b"{}")).unwrap()
}

fn assert_forbidden(response: &Response) {
    assert_eq!(response.status, 403, "body: {}", response.text());
    assert!(response
        .header("www-authenticate")
        .unwrap()
        .contains("error=\"insufficient_scope\""));
    assert_eq!(
        response.json(),
        json!({"error": "insufficient_scope", "error_description": FORBIDDEN})
    );
}

// Two hosts, one model path, two roles: each token reaches only its own service, and a token
// holding neither role reaches neither.
#[test]
fn hosts_tell_two_services_apart() {
    let (stack, key) = two_services();
    let risk = key.sign(&with_roles("risk-team", &["risk"]));
    let ads = key.sign(&with_roles("ads-team", &["ads"]));
    let neither = key.sign(&with_roles("other-team", &["other"]));

    let response = post_as(&stack, RISK_HOST, &risk);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        Echo::from_response(&response).header(SUB_HEADER).as_deref(),
        Some("risk-team")
    );
    assert_forbidden(&post_as(&stack, ADS_HOST, &risk));

    assert_eq!(post_as(&stack, ADS_HOST, &ads).status, 200);
    assert_forbidden(&post_as(&stack, RISK_HOST, &ads));

    assert_forbidden(&post_as(&stack, RISK_HOST, &neither));
    assert_forbidden(&post_as(&stack, ADS_HOST, &neither));
}

// Wildcards, case and ports in `:authority`, an IPv6 literal, and an unknown host falling
// through to the catch-all rule.
#[test]
fn host_spellings_and_the_catch_all() {
    let (stack, key) = two_services();
    let risk = key.sign(&with_roles("risk-team", &["risk"]));
    let ads = key.sign(&with_roles("ads-team", &["ads"]));
    let plain = key.sign(&with_roles("anyone", &[]));

    for host in [
        "MODEL-RISK.Models.Example.COM",
        "model-risk.models.example.com:443",
        "model-risk.models.example.com.",
        "fraud-predictor.risk.svc.cluster.local:8080",
    ] {
        assert_eq!(post_as(&stack, host, &risk).status, 200, "{host}");
        assert_forbidden(&post_as(&stack, host, &ads));
    }
    for host in ["churn-ads.models.example.com", "[::1]:8080", "[::1]"] {
        assert_eq!(post_as(&stack, host, &ads).status, 200, "{host}");
        assert_forbidden(&post_as(&stack, host, &risk));
    }
    // Not covered by any host rule: the catch-all wants any valid token, and only that.
    for host in [
        "model-risk.models.example.org",
        "a.fraud.risk.svc.cluster.local",
        "-ads.models.example.com",
        "10.0.0.7:8080",
    ] {
        assert_eq!(post_as(&stack, host, &plain).status, 200, "{host}");
        let headers = [("host", host)];
        let response = http::request(stack.envoy.addr(), "POST", PREDICT, &headers, None).unwrap();
        assert_eq!(response.status, 401, "{host}");
    }
}

// Header matchers pick a rule; a header sent twice matches only if both values do, so a
// second copy cannot steer the request to a laxer rule.
#[test]
fn header_matchers_judge_every_value() {
    let key = TestKey::es256("key-headers");
    let server = JwksServer::start(jwks(&[&key]));
    let config = json!({
        "providers": {PROVIDER: remote_provider(&server)},
        "rules": [
            // A public canary path for one tenant only.
            {"match": {"prefix": "/v1/models/", "headers": [
                {"name": "x-tenant", "exact": "demo"},
                {"name": ":method", "exact": "GET"}]}},
            {"match": {"prefix": "/v1/models/", "headers": [{"name": "x-tenant", "prefix": "risk-"}]},
             "requires": {"provider_name": PROVIDER},
             "require_claims": [{"claim": "realm_access.roles", "has": "risk"}]},
            {"match": {"prefix": "/v1/models/", "headers": [{"name": "x-debug", "present": true}]},
             "requires": {"provider_name": PROVIDER},
             "require_claims": [{"claim": "realm_access.roles", "has": "debugger"}]},
            {"match": {"prefix": "/"}, "requires": {"provider_name": PROVIDER}},
        ],
    });
    let stack = Stack::start(server, &config);
    let plain = key.sign(&with_roles("anyone", &[]));
    let bearer = format!("Bearer {plain}");
    let get = |headers: &[(&str, &str)]| stack.get("/v1/models/model", headers);

    assert_eq!(get(&[("x-tenant", "demo")]).status, 200);
    assert_missing(&get(&[("x-tenant", "demo"), ("x-tenant", "demo2")]));
    assert_missing(&get(&[("x-tenant", "demo"), ("x-tenant", "risk-a")]));
    assert_missing(&get(&[("x-tenant", "Demo")]));

    let risk = [("x-tenant", "risk-a"), ("authorization", bearer.as_str())];
    assert_forbidden(&get(&risk));
    let both = [
        ("x-tenant", "risk-a"),
        ("x-tenant", "risk-b"),
        ("authorization", bearer.as_str()),
    ];
    assert_forbidden(&get(&both));
    // One value outside the prefix: the risk rule does not apply, the catch-all does.
    let mixed = [
        ("x-tenant", "risk-a"),
        ("x-tenant", "ads"),
        ("authorization", bearer.as_str()),
    ];
    assert_eq!(get(&mixed).status, 200);

    assert_forbidden(&get(&[("x-debug", ""), ("authorization", bearer.as_str())]));
    assert_eq!(get(&[("authorization", bearer.as_str())]).status, 200);
}

/// The HTTP connection manager of the bootstrap's first listener.
fn connection_manager(bootstrap: &mut Value) -> &mut Value {
    &mut bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]
}

// The verified identity lands in Envoy filter state, where an access log prints it with
// %FILTER_STATE(wasm.kserve_auth.*:PLAIN)%; no header carries it upstream.
#[test]
fn access_log_carries_the_identity_from_filter_state() {
    let key = TestKey::es256("key-log");
    let server = JwksServer::start(jwks(&[&key]));
    let mut provider = remote_provider(&server);
    provider["filter_state"] =
        json!({"claims": [{"key": "roles", "claim_name": "realm_access.roles"}]});
    provider.as_object_mut().unwrap().remove("claim_to_headers");
    provider
        .as_object_mut()
        .unwrap()
        .remove("forward_payload_header");
    let config = plugin_config(provider);
    let upstream = EchoUpstream::start();
    let mut bootstrap =
        EnvoyConfig::with_filter(&config, server.port(), upstream.port()).bootstrap();
    let access_log = std::env::temp_dir().join(format!(
        "kserve-auth-access-{}-{}.log",
        std::process::id(),
        server.port()
    ));
    connection_manager(&mut bootstrap)["access_log"] = json!([{
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": access_log.display().to_string(),
            "log_format": {"text_format_source": {"inline_string":
                "ACCESS %REQ(:PATH)% %RESPONSE_CODE% \
                 provider=%FILTER_STATE(wasm.kserve_auth.provider:PLAIN)% \
                 sub=%FILTER_STATE(wasm.kserve_auth.sub:PLAIN)% \
                 roles=%FILTER_STATE(wasm.kserve_auth.roles:PLAIN)%\n"}},
        },
    }]);
    let envoy = Envoy::start_bootstrap("bootstrap.json", &bootstrap.to_string(), 1, "debug");

    let token = key.sign(&with_roles("svc-logged", &["fraud", "churn"]));
    let authorization = format!("Bearer {token}");
    let response = envoy.get(PROTECTED_PATH, &[("authorization", authorization.as_str())]);
    assert_eq!(response.status, 200, "{}", response.text());
    let echo = Echo::from_response(&response);
    assert!(echo.header("x-jwt-sub").is_none() && echo.header("authorization").is_none());
    assert_eq!(envoy.get(PUBLIC_PATH, &[]).status, 200);

    let wanted = [
        format!("ACCESS {PROTECTED_PATH} 200 provider={PROVIDER} sub=svc-logged roles=fraud,churn"),
        format!("ACCESS {PUBLIC_PATH} 200 provider=- sub=- roles=-"),
    ];
    // Envoy writes access log files out every ten seconds; reopening them writes them now.
    let written = poll(std::time::Duration::from_secs(15), || {
        http::request(envoy.admin_addr(), "POST", "/reopen_logs", &[], None).ok()?;
        let log = std::fs::read_to_string(&access_log).unwrap_or_default();
        wanted
            .iter()
            .all(|line| log.lines().any(|l| l == line))
            .then_some(())
    });
    let log = std::fs::read_to_string(&access_log).unwrap_or_default();
    let _ = std::fs::remove_file(&access_log);
    assert!(written.is_some(), "{wanted:?} not all in:\n{log}");
    assert!(!log.contains(&token), "the token must never be logged");
}

/// Claims of a projected service-account token as the API server mints them.
fn service_account_claims(namespace: &str, account: &str, audience: &str) -> Value {
    let now = now();
    json!({
        "iss": "https://kubernetes.default.svc.cluster.local",
        "aud": [audience],
        "sub": format!("system:serviceaccount:{namespace}:{account}"),
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "kubernetes.io": {
            "namespace": namespace,
            "serviceaccount": {"name": account, "uid": "4b3c2a1f-0000-4000-8000-000000000001"},
            "pod": {"name": format!("{account}-7d9f8"), "uid": "4b3c2a1f-0000-4000-8000-000000000002"},
        },
    })
}

// A Kubernetes service-account token, keys through the API server's OIDC discovery: allowed on
// its own namespace's models, refused on another's, and refused with the wrong audience.
#[test]
fn service_account_tokens_by_namespace() {
    let key = TestKey::rs256("rsa-a", "sa-key");
    let server = JwksServer::start(jwks(&[&key]));
    server.serve_discovery("https://kubernetes.default.svc.cluster.local");
    let config = json!({
        "providers": {"kubernetes": {
            "preset": "kubernetes",
            "audiences": ["kserve"],
            "oidc_discovery": {"cluster": "jwks"},
            "claim_to_headers": [{"header_name": "x-caller", "claim_name": "sub"}],
        }},
        "rules": [
            {"match": {"prefix": "/", "hosts": ["*.risk.svc.cluster.local"]},
             "requires": {"provider_name": "kubernetes"},
             "require_claims": [{"claim": "kubernetes.io.namespace", "equals": "risk"}]},
            {"match": {"prefix": "/", "hosts": ["*.ads.svc.cluster.local"]},
             "requires": {"provider_name": "kubernetes"},
             "require_claims": [{"claim": ["kubernetes.io", "namespace"], "equals": "ads"}]},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "kubernetes"},
             "require_claims": [{"claim": "kubernetes.io.serviceaccount.name", "equals": "admin"}]},
        ],
    });
    let stack = Stack::start(server, &config);
    let pipeline = key.sign(&service_account_claims("risk", "pipeline", "kserve"));
    let notebook = key.sign(&service_account_claims("ads", "notebook", "kserve"));
    let api_audience = key.sign(&service_account_claims(
        "risk",
        "pipeline",
        "https://kubernetes.default.svc.cluster.local",
    ));
    let admin = key.sign(&service_account_claims("ops", "admin", "kserve"));

    let response = post_as(&stack, "fraud-predictor.risk.svc.cluster.local", &pipeline);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        Echo::from_response(&response).header("x-caller").as_deref(),
        Some("system:serviceaccount:risk:pipeline")
    );
    assert_forbidden(&post_as(
        &stack,
        "ctr-predictor.ads.svc.cluster.local",
        &pipeline,
    ));
    assert_eq!(
        post_as(&stack, "ctr-predictor.ads.svc.cluster.local", &notebook).status,
        200
    );
    assert_forbidden(&post_as(
        &stack,
        "fraud-predictor.risk.svc.cluster.local",
        &notebook,
    ));
    let wrong_audience = post_as(
        &stack,
        "fraud-predictor.risk.svc.cluster.local",
        &api_audience,
    );
    assert_eq!(wrong_audience.status, 401);
    assert!(wrong_audience
        .text()
        .contains("Audiences in Jwt are not allowed"));
    assert_eq!(post_as(&stack, "anything.example.com", &admin).status, 200);
    assert_forbidden(&post_as(&stack, "anything.example.com", &pipeline));
}

/// The `pluginConfig` of a WasmPlugin shipped under `envoy/istio/`, as JSON.
fn shipped_wasm_plugin_config(file: &str) -> Value {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var_os("TOOLS_PYTHON")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo.join(".venv/tools/bin/python"));
    let output = Command::new(&python)
        .arg(repo.join("tests/e2e/support/check_manifests.py"))
        .arg("json")
        .arg(repo.join("envoy/istio").join(file))
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run `make tools`)", python.display()));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let documents: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    documents
        .into_iter()
        .find(|doc| doc["kind"] == "WasmPlugin")
        .map(|doc| doc["spec"]["pluginConfig"].clone())
        .unwrap()
}

// The predictor sidecars' shipped plugin configuration, unchanged, on an inbound listener laid
// out as Istio's (`virtualInbound`, route to `inbound|8080||`), its key callouts through the
// cluster names Istio generates on a sidecar: in-cluster callers pass with a service-account
// token of the namespace, the gateway's traffic with a Keycloak token, and nothing else.
#[test]
fn predictor_sidecar_plugin_on_an_inbound_listener() {
    let plugin_config = shipped_wasm_plugin_config("sidecar-wasmplugin.yaml");
    let keycloak_key = TestKey::rs256("rsa-a", "keycloak-key");
    let keycloak = JwksServer::start(jwks(&[&keycloak_key]));
    keycloak.set_jwks_path("/realms/kserve/protocol/openid-connect/certs");
    let api_key = TestKey::es256("api-server-key");
    let api_server = JwksServer::start(jwks(&[&api_key]));
    api_server.serve_discovery("https://kubernetes.default.svc.cluster.local");
    let model = EchoUpstream::start();

    let filter = WasmFilter::new(&plugin_config);
    let bootstrap = json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{
                "name": "virtualInbound",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                "traffic_direction": "INBOUND",
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "inbound_0.0.0.0_8080",
                        "normalize_path": true,
                        "merge_slashes": true,
                        "common_http_protocol_options":
                            {"headers_with_underscores_action": "REJECT_REQUEST"},
                        "route_config": {"name": "inbound|8080||", "virtual_hosts": [{
                            "name": "inbound|http|8080",
                            "domains": ["*"],
                            "routes": [{"match": {"prefix": "/"},
                                        "route": {"cluster": "inbound|8080||"}}],
                        }]},
                        "http_filters": [filter.http_filter(), router_http_filter()],
                    },
                }]}],
            }],
            "clusters": [
                cluster("inbound|8080||", model.port()),
                cluster("outbound|8080||keycloak.keycloak.svc.cluster.local", keycloak.port()),
                cluster("outbound|443||kubernetes.default.svc.cluster.local", api_server.port()),
            ],
        },
    });
    let envoy = Envoy::start_bootstrap("bootstrap.json", &bootstrap.to_string(), 1, "debug");
    let post = |host: &str, token: Option<&str>| {
        let authorization = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("host", host)];
        if let Some(value) = &authorization {
            headers.push(("authorization", value.as_str()));
        }
        http::request(
            envoy.addr(),
            "POST",
            "/v1/models/demo-model:predict",
            &headers,
            Some(b"{}"),
        )
        .unwrap()
    };

    let in_cluster = "demo-model-predictor.kserve-demo.svc.cluster.local";
    let public = "demo-model-kserve-demo.example.com";
    let own = api_key.sign(&service_account_claims("kserve-demo", "pipeline", "kserve"));
    let other = api_key.sign(&service_account_claims("ads", "notebook", "kserve"));
    let now = now();
    let keycloak_token = keycloak_key.sign(&json!({
        "iss": "https://keycloak.example.com/realms/kserve", "aud": "kserve-client",
        "azp": "kserve-client", "sub": "service-account-kserve-client",
        "iat": now, "exp": now + 300,
    }));

    let response = post(in_cluster, Some(&own));
    assert_eq!(response.status, 200, "{}", response.text());
    let echo = Echo::from_response(&response);
    assert_eq!(
        echo.header("x-jwt-sub").as_deref(),
        Some("system:serviceaccount:kserve-demo:pipeline")
    );
    assert!(
        echo.header("authorization").is_none(),
        "the token never reaches the model"
    );
    assert_eq!(
        post("demo-model-predictor.kserve-demo:8080", Some(&own)).status,
        200
    );
    assert_forbidden(&post(in_cluster, Some(&other)));
    assert_eq!(post(in_cluster, None).status, 401);
    assert_eq!(post(in_cluster, Some(&keycloak_token)).status, 401);

    let response = post(public, Some(&keycloak_token));
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        Echo::from_response(&response)
            .header("x-jwt-client")
            .as_deref(),
        Some("kserve-client")
    );
    assert_eq!(post(public, Some(&own)).status, 401);
    assert_eq!(post(public, None).status, 401);
    assert_eq!(
        envoy
            .get("/v2/health/ready", &[("host", in_cluster)])
            .status,
        200
    );
    assert!(api_server.count("/.well-known/openid-configuration") >= 1);
    assert!(keycloak.count("/realms/kserve/protocol/openid-connect/certs") >= 1);
}
