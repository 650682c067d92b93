//! The real Keycloak, end to end: the realm file the compose setup imports
//! (`envoy/compose/kserve-realm.json`), Envoy with the compose configuration and the filter, and
//! the real KServe demo model. One Keycloak serves every test here (`support/keycloak.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::cli::{run_kserve_auth, stderr, stdout};
use crate::support::demo::{ModelServer, Scratch, V1_PREDICT, V2_INFER};
use crate::support::envoy::{tail, wrk_bin};
use crate::support::http;
use crate::support::keycloak::{keycloak, Keycloak, CLIENT_ID, REALM};
use crate::support::keys::{header_json, payload_segment};
use crate::support::shipped::compose_envoy_on_loopback;
use crate::support::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

/// `envoy/compose/envoy.yaml` with the compose services moved to loopback: Keycloak, the model
/// server, and the issuer Keycloak names (its hostname, with this run's port).
fn compose_envoy(keycloak: &Keycloak, model: &ModelServer) -> Envoy {
    let shipped_issuer = "\"issuer\": \"http://localhost:8081/realms/kserve\"";
    let yaml = compose_envoy_on_loopback(keycloak.port(), model.port());
    assert!(
        yaml.contains(shipped_issuer),
        "compose/envoy.yaml no longer has {shipped_issuer}"
    );
    let yaml = yaml.replace(
        shipped_issuer,
        &format!("\"issuer\": \"{}\"", keycloak.issuer()),
    );
    Envoy::try_start_bootstrap("envoy.yaml", &yaml, 1, "debug")
        .unwrap_or_else(|f| panic!("compose/envoy.yaml did not start: {}", tail(&f.log, 40)))
}

fn post(envoy: &Envoy, path: &str, token: Option<&str>, body: &str) -> Response {
    let authorization = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(value) = &authorization {
        headers.push(("authorization", value.as_str()));
    }
    http::request(envoy.addr(), "POST", path, &headers, Some(body.as_bytes())).unwrap()
}

fn claims(token: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload_segment(token)).unwrap()).unwrap()
}

// A client credentials token from the real Keycloak, with the realm as the compose setup imports
// it: the token carries what only a real Keycloak shows (typ Bearer, azp, the audience mapper's
// aud, the issuer from the hostname); V1 predict and V2 infer reach the real model server with the
// identity headers and without Authorization; without a token, 401 with the challenge.
#[test]
fn client_credentials_token_reaches_the_model() {
    let keycloak = keycloak();
    eprintln!(
        "Keycloak ready in {:.1} s",
        keycloak.started_in.as_secs_f64()
    );
    let model = ModelServer::start();
    let envoy = compose_envoy(keycloak, &model);
    let token = keycloak.token();
    let claims = claims(&token);
    assert_eq!(header_json(&token)["alg"], "RS256");
    assert_eq!(claims["typ"], "Bearer");
    assert_eq!(claims["azp"], CLIENT_ID);
    assert_eq!(claims["iss"], keycloak.issuer());
    let audiences = match &claims["aud"] {
        Value::Array(list) => list.clone(),
        single => vec![single.clone()],
    };
    assert!(
        audiences.contains(&json!(CLIENT_ID)),
        "aud: {}",
        claims["aud"]
    );
    let sub = claims["sub"].as_str().unwrap();

    assert_missing(&post(
        &envoy,
        V1_PREDICT,
        None,
        r#"{"instances": [[1, 2, 3]]}"#,
    ));
    let response = post(
        &envoy,
        V1_PREDICT,
        Some(&token),
        r#"{"instances": [[1, 2, 3]]}"#,
    );
    assert_eq!(response.status, 200, "body: {}", response.text());
    assert_eq!(
        response.json(),
        json!({"predictions": [6.0], "caller": {"x-jwt-sub": sub, "x-jwt-client": CLIENT_ID,
                                                 "authorization": "absent"}})
    );
    let v2_body = r#"{"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32",
                       "data": [1, 2, 3, 4, 5, 6]}]}"#;
    let response = post(&envoy, V2_INFER, Some(&token), v2_body);
    assert_eq!(response.status, 200, "body: {}", response.text());
    assert_eq!(
        response.json()["parameters"],
        json!({"caller_x_jwt_sub": sub, "caller_x_jwt_client": CLIENT_ID,
               "caller_authorization": "absent"})
    );
}

// Keycloak's key set holds an RSA-OAEP encryption key (`use: enc`) beside its signing key: the
// filter skips it, says so in its log, and the signing key verifies tokens.
#[test]
fn the_encryption_key_is_skipped() {
    let keycloak = keycloak();
    let jwks = keycloak.get_json(&format!("/realms/{REALM}/protocol/openid-connect/certs"));
    let uses: Vec<(&str, &str)> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| (key["alg"].as_str().unwrap(), key["use"].as_str().unwrap()))
        .collect();
    assert!(uses.contains(&("RSA-OAEP", "enc")), "{uses:?}");
    assert!(uses.contains(&("RS256", "sig")), "{uses:?}");
    let model = ModelServer::start();
    let envoy = compose_envoy(keycloak, &model);
    let token = keycloak.token();
    let response = post(&envoy, V1_PREDICT, Some(&token), r#"{"instances": [[1]]}"#);
    assert_eq!(response.status, 200, "body: {}", response.text());
    let skipped = envoy.wait_for_log("skipped", std::time::Duration::from_secs(5));
    assert!(
        skipped.is_some_and(|line| line.contains("enc")),
        "no log line about the skipped key:\n{}",
        tail(&envoy.log(), 40)
    );
}

// OIDC discovery against Keycloak's real discovery document: the filter reads `jwks_uri` from it
// (Keycloak names its hostname there; the fetch goes through the configured cluster) and verifies
// the realm's tokens.
#[test]
fn oidc_discovery_against_keycloak() {
    let keycloak = keycloak();
    let discovery = keycloak.get_json(&format!("/realms/{REALM}/.well-known/openid-configuration"));
    assert_eq!(discovery["issuer"], keycloak.issuer());
    let config = json!({
        "providers": {"keycloak": {
            "issuer": keycloak.issuer(),
            "audiences": [CLIENT_ID],
            "oidc_discovery": {"cluster": "jwks", "timeout": "5s"},
            "claim_to_headers": [{"header_name": "x-jwt-client", "claim_name": "azp"}],
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "keycloak"}}],
    });
    let upstream = EchoUpstream::start();
    let envoy = Envoy::start(&EnvoyConfig::with_filter(
        &config,
        keycloak.port(),
        upstream.port(),
    ));
    let token = keycloak.token();
    let authorization = format!("Bearer {token}");
    let response = envoy.get("/v1/models/m:predict", &[("authorization", &authorization)]);
    assert_eq!(response.status, 200, "body: {}", response.text());
    assert_eq!(
        Echo::from_response(&response)
            .header("x-jwt-client")
            .as_deref(),
        Some(CLIENT_ID)
    );
    assert_missing(&envoy.get("/v1/models/m:predict", &[]));
}

/// Envoy with the filter in front of `upstream`, every rule requiring a token of `realm` (keys
/// from its JWKS, cached for ten minutes), after `rules` (the catch-all is added).
fn realm_envoy(keycloak: &Keycloak, realm: &str, rules: Value, upstream: &EchoUpstream) -> Envoy {
    let issuer = keycloak.issuer_of(realm);
    let mut rules = rules.as_array().cloned().unwrap_or_default();
    rules.push(json!({"match": {"prefix": "/"}, "requires": {"provider_name": "keycloak"}}));
    let config = json!({
        "providers": {"keycloak": {
            "issuer": issuer,
            "audiences": [CLIENT_ID],
            "remote_jwks": {"http_uri": {
                "uri": format!("{issuer}/protocol/openid-connect/certs"),
                "cluster": "jwks", "timeout": "2s"},
                "cache_duration": "600s"},
        }},
        "rules": rules,
    });
    Envoy::start(&EnvoyConfig::with_filter(
        &config,
        keycloak.port(),
        upstream.port(),
    ))
}

/// [`realm_envoy`] for realm `kserve`: `/fraud/` needs realm role `fraud-predict`, everything
/// else any valid token of the realm.
fn role_envoy(keycloak: &Keycloak) -> (Envoy, EchoUpstream) {
    let upstream = EchoUpstream::start();
    let rules = json!([{"match": {"prefix": "/fraud/"}, "requires": {"provider_name": "keycloak"},
                        "require_claims": [{"claim": "realm_access.roles", "has": "fraud-predict"}]}]);
    let envoy = realm_envoy(keycloak, REALM, rules, &upstream);
    (envoy, upstream)
}

fn with_token(envoy: &Envoy, path: &str, token: &str) -> Response {
    let authorization = format!("Bearer {token}");
    envoy.get(path, &[("authorization", &authorization)])
}

fn token_of(keycloak: &Keycloak, client_id: &str, secret: &str) -> String {
    let response = keycloak.client_credentials(client_id, secret);
    assert_eq!(response.status, 200, "token: {}", response.text());
    response.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

// A second client without the audience mapper (added through Keycloak's admin API): its tokens
// do not name `kserve-client` in `aud`, so the filter refuses them.
#[test]
fn a_client_without_the_audience_mapper_is_refused() {
    let keycloak = keycloak();
    keycloak.add_service_client("no-audience-client", "no-audience-secret", false);
    let token = token_of(keycloak, "no-audience-client", "no-audience-secret");
    let (envoy, upstream) = role_envoy(keycloak);
    let response = with_token(&envoy, "/v1/models/m:predict", &token);
    assert_invalid_token(&response, "Audiences in Jwt are not allowed");
    assert_eq!(upstream.count(), 0);
}

// A realm role rule: the service account that holds `fraud-predict` passes, one of a client with
// the audience mapper but without the role gets 403 insufficient_scope.
#[test]
fn a_realm_role_rule() {
    let keycloak = keycloak();
    let holder = keycloak.add_service_client("fraud-client", "fraud-secret", true);
    keycloak.grant_realm_role(&holder, "fraud-predict");
    keycloak.add_service_client("other-client", "other-secret", true);
    let holder_token = token_of(keycloak, "fraud-client", "fraud-secret");
    assert!(claims(&holder_token)["realm_access"]["roles"]
        .as_array()
        .unwrap()
        .contains(&json!("fraud-predict")));
    let other_token = token_of(keycloak, "other-client", "other-secret");
    let (envoy, _upstream) = role_envoy(keycloak);
    assert_eq!(
        with_token(&envoy, "/fraud/v1/models/m:predict", &holder_token).status,
        200
    );
    let refused = with_token(&envoy, "/fraud/v1/models/m:predict", &other_token);
    assert_eq!(refused.status, 403, "body: {}", refused.text());
    assert_eq!(refused.json()["error"], "insufficient_scope");
    assert_eq!(
        with_token(&envoy, "/v1/models/m:predict", &other_token).status,
        200
    );
}

/// wrk sending `token` on every request to `envoy` for `seconds`, through bench/wrk/requests.lua.
fn wrk_with(envoy: &Envoy, token: &str, seconds: u64, dir: &Path, name: &str) -> Child {
    let tokens = dir.join(format!("{name}.txt"));
    std::fs::write(&tokens, format!("{token}\n")).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/wrk/requests.lua");
    Command::new(wrk_bin())
        .args([
            "-t",
            "1",
            "-c",
            "4",
            "-d",
            &format!("{seconds}s"),
            "--timeout",
            "10s",
            "-s",
        ])
        .arg(&script)
        .arg(format!("http://{}", envoy.addr()))
        .arg("--")
        .arg("/v1/models/m:predict")
        .arg(&tokens)
        .arg("1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wrk (make wrk)")
}

/// wrk's result line, once it has finished.
fn wrk_result(child: Child) -> Value {
    let output = child.wait_with_output().expect("wait for wrk");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "wrk failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("wrk-result "))
        .unwrap_or_else(|| panic!("no result from wrk: {stdout}"));
    serde_json::from_str(line).unwrap()
}

/// The key providers of `realm` whose `providerId` is `provider`.
fn key_providers(keycloak: &Keycloak, realm: &str, provider: &str) -> Vec<Value> {
    let all = keycloak
        .admin_at(
            "GET",
            &format!("/admin/realms/{realm}/components?type=org.keycloak.keys.KeyProvider"),
            None,
        )
        .json();
    all.as_array()
        .unwrap()
        .iter()
        .filter(|component| component["providerId"] == provider)
        .cloned()
        .collect()
}

// Key rotation under load, the way a Keycloak administrator does it: while wrk sends a steady
// stream of valid tokens through Envoy, a new RSA key provider with a higher priority is added
// through the admin REST API, tokens signed by the new key join the stream, and the old key is
// disabled. Every answer is 2xx: no 401 at any point. (A realm of its own, imported from the
// compose realm file under another name, so the other tests' keys never change.)
#[test]
fn key_rotation_under_load_refuses_nothing() {
    let keycloak = keycloak();
    let realm = "rotation";
    let mut representation: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("envoy/compose/kserve-realm.json"),
        )
        .unwrap(),
    )
    .unwrap();
    representation["realm"] = json!(realm);
    keycloak.admin_at("POST", "/admin/realms", Some(&representation));
    let realm_id = keycloak
        .admin_at("GET", &format!("/admin/realms/{realm}"), None)
        .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let token = |keycloak: &Keycloak| {
        let response = keycloak.client_credentials_in(realm, CLIENT_ID, "kserve-secret");
        assert_eq!(response.status, 200, "token: {}", response.text());
        response.json()["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let upstream = EchoUpstream::start();
    let envoy = realm_envoy(keycloak, realm, json!([]), &upstream);
    let old_token = token(keycloak);
    let old_kid = header_json(&old_token)["kid"].as_str().unwrap().to_string();
    assert_eq!(
        with_token(&envoy, "/v1/models/m:predict", &old_token).status,
        200
    );

    let dir = std::env::temp_dir().join(format!("kserve-rotation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let before = wrk_with(&envoy, &old_token, 14, &dir, "old");
    std::thread::sleep(Duration::from_secs(2));
    // A new RSA key provider above the realm's own (priority 100): new tokens are signed by it.
    keycloak.admin_at(
        "POST",
        &format!("/admin/realms/{realm}/components"),
        Some(&json!({
            "name": "rotated-rsa", "providerId": "rsa-generated",
            "providerType": "org.keycloak.keys.KeyProvider", "parentId": realm_id,
            "config": {"priority": ["200"], "enabled": ["true"], "active": ["true"],
                       "algorithm": ["RS256"], "keySize": ["2048"]},
        })),
    );
    let new_token = token(keycloak);
    let new_kid = header_json(&new_token)["kid"].as_str().unwrap().to_string();
    assert_ne!(new_kid, old_kid, "the new key provider does not sign");
    let after = wrk_with(&envoy, &new_token, 10, &dir, "new");
    std::thread::sleep(Duration::from_secs(3));
    // The old signing key goes.
    for mut old in key_providers(keycloak, realm, "rsa-generated") {
        if old["name"] == "rotated-rsa" {
            continue;
        }
        old["config"]["enabled"] = json!(["false"]);
        let id = old["id"].as_str().unwrap().to_string();
        keycloak.admin_at(
            "PUT",
            &format!("/admin/realms/{realm}/components/{id}"),
            Some(&old),
        );
    }
    let published = keycloak.get_json(&format!("/realms/{realm}/protocol/openid-connect/certs"));
    let kids: Vec<&str> = published["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["kid"].as_str().unwrap())
        .collect();
    assert!(
        !kids.contains(&old_kid.as_str()),
        "old key still published: {kids:?}"
    );
    assert!(kids.contains(&new_kid.as_str()), "{kids:?}");

    let before = wrk_result(before);
    let after = wrk_result(after);
    let _ = std::fs::remove_dir_all(&dir);
    for (name, result) in [("old key", &before), ("new key", &after)] {
        assert!(result["requests"].as_u64().unwrap() > 0, "{name}: {result}");
        assert_eq!(result["non2xx"], 0, "{name}: {result}");
        assert_eq!(result["unexpected"], 0, "{name}: {result}");
        for errors in ["connect_errors", "read_errors", "write_errors", "timeouts"] {
            assert_eq!(result[errors], 0, "{name}: {result}");
        }
    }
    eprintln!(
        "rotation under load: {} requests with the old key's token and {} with the new key's, \
         every one 2xx",
        before["requests"], after["requests"]
    );
}

// Keycloak down (a Keycloak of this test's own, stopped): the keys the filter fetched keep
// verifying valid tokens, a token seen before and one never seen alike. An Envoy that never got
// keys answers 503 with Retry-After, never 401.
#[test]
fn keycloak_down_cached_keys_serve_and_no_keys_is_503() {
    keycloak();
    let own = Keycloak::start("down");
    let upstream = EchoUpstream::start();
    let envoy = realm_envoy(&own, REALM, json!([]), &upstream);
    let seen = own.token();
    let unseen = own.token();
    assert_eq!(
        with_token(&envoy, "/v1/models/m:predict", &seen).status,
        200
    );

    own.stop();
    assert_eq!(
        with_token(&envoy, "/v1/models/m:predict", &seen).status,
        200
    );
    assert_eq!(
        with_token(&envoy, "/v1/models/m:predict", &unseen).status,
        200
    );

    let never = realm_envoy(&own, REALM, json!([]), &upstream);
    assert_keys_unavailable(&with_token(&never, "/v1/models/m:predict", &unseen));
}

/// Creates a confidential client whose tokens name `audience` in `aud` (Keycloak's audience
/// mapper), with Keycloak's standard token exchange enabled when `exchanges` is set.
fn add_client_with_audience(keycloak: &Keycloak, client_id: &str, audience: &str, exchanges: bool) {
    let client = json!({
        "clientId": client_id, "enabled": true, "protocol": "openid-connect",
        "publicClient": false, "clientAuthenticatorType": "client-secret",
        "secret": format!("{client_id}-secret"),
        "serviceAccountsEnabled": true, "standardFlowEnabled": false,
        "directAccessGrantsEnabled": false,
        "attributes": {"standard.token.exchange.enabled": exchanges.to_string()},
        "protocolMappers": [{
            "name": format!("{client_id}-audience"),
            "protocol": "openid-connect",
            "protocolMapper": "oidc-audience-mapper",
            "config": {"included.client.audience": audience, "access.token.claim": "true",
                       "id.token.claim": "false"}
        }],
    });
    keycloak.admin("POST", "/clients", Some(&client));
}

// RFC 8693 token exchange with `kserve-auth token --flow exchange`: a token meant for another
// service (its `aud` names the exchanging client, not the model) is exchanged at Keycloak for one
// whose audience is the model's client, which the filter then lets through; the original token
// is refused.
#[test]
fn kserve_auth_exchanges_a_token_for_the_model_audience() {
    let keycloak = keycloak();
    add_client_with_audience(keycloak, "exchanging-service", CLIENT_ID, true);
    add_client_with_audience(keycloak, "calling-app", "exchanging-service", false);
    let subject = token_of(keycloak, "calling-app", "calling-app-secret");
    let subject_audience = &claims(&subject)["aud"];
    assert!(
        subject_audience.as_array().is_some_and(
            |a| a.contains(&json!("exchanging-service")) && !a.contains(&json!(CLIENT_ID))
        ),
        "{subject_audience}"
    );

    let scratch = Scratch::new("exchange");
    let issuer = keycloak.issuer();
    let output = run_kserve_auth(
        &[
            "token",
            "--flow",
            "exchange",
            "--issuer",
            &issuer,
            "--client-id",
            "exchanging-service",
            "--audience",
            CLIENT_ID,
        ],
        &scratch.path().join("tokens.json"),
        &[
            ("KSERVE_AUTH_CLIENT_SECRET", "exchanging-service-secret"),
            ("KSERVE_AUTH_SUBJECT_TOKEN", &subject),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let exchanged = stdout(&output).trim().to_owned();
    let exchanged_claims = claims(&exchanged);
    assert!(
        exchanged_claims["aud"] == json!(CLIENT_ID)
            || exchanged_claims["aud"]
                .as_array()
                .is_some_and(|a| a.contains(&json!(CLIENT_ID))),
        "{exchanged_claims}"
    );
    assert_eq!(exchanged_claims["azp"], "exchanging-service");

    let (envoy, _upstream) = role_envoy(keycloak);
    assert_eq!(
        with_token(&envoy, "/v1/models/m:predict", &exchanged).status,
        200
    );
    assert_invalid_token(
        &with_token(&envoy, "/v1/models/m:predict", &subject),
        "Audiences in Jwt are not allowed",
    );
}
