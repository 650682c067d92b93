//! `kserve-auth explain` run as a program: each check's verdict, the filter's answer, and never
//! the token.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use jwt_simple::prelude::*;
use serde_json::{json, Value};

const ISSUER: &str = "https://idp.example.com";
const NOW: u64 = 1_800_000_000;

struct Setup {
    config: PathBuf,
    jwks: PathBuf,
    key: Ed25519KeyPair,
}

fn setup(name: &str) -> Setup {
    let dir =
        std::env::temp_dir().join(format!("kserve-auth-explain-{}-{name}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let key = Ed25519KeyPair::generate().with_key_id("k1");
    let jwk: Value = serde_json::from_str(&key.public_key().to_jwk()).unwrap_or_else(|_| {
        json!({"kty": "OKP", "crv": "Ed25519", "kid": "k1",
               "x": Base64UrlSafeNoPadding::encode_to_string(key.public_key().to_bytes()).unwrap()})
    });
    let jwks = dir.join("jwks.json");
    fs::write(&jwks, json!({"keys": [jwk]}).to_string()).unwrap();
    let config = dir.join("config.json");
    let plugin = json!({
        "providers": {"idp": {"issuer": ISSUER, "audiences": ["kserve"],
            "remote_jwks": {"http_uri": {"uri": "https://idp.example.com/jwks", "cluster": "idp"}}}},
        "rules": [
            {"match": {"prefix": "/v2/health"}},
            {"match": {"model": "fraud"}, "requires": {"provider_name": "idp"},
             "require_claims": [{"claim": "roles", "has": "fraud"}]},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}
        ]
    });
    fs::write(&config, plugin.to_string()).unwrap();
    Setup { config, jwks, key }
}

fn token(setup: &Setup, audience: &str, roles: Value) -> String {
    let mut claims = Claims::with_custom_claims(json!({"roles": roles}), Duration::from_secs(300))
        .with_issuer(ISSUER)
        .with_audience(audience)
        .with_subject("svc");
    claims.issued_at = Some(UnixTimeStamp::from_secs(NOW));
    claims.invalid_before = Some(UnixTimeStamp::from_secs(NOW));
    claims.expires_at = Some(UnixTimeStamp::from_secs(NOW + 300));
    setup.key.sign(claims).unwrap()
}

fn explain(setup: &Setup, token: &str, url: &str, at: u64) -> (Value, String) {
    explain_with(setup, token, url, at, &[])
}

fn explain_with(setup: &Setup, token: &str, url: &str, at: u64, extra: &[&str]) -> (Value, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_kserve-auth"))
        .args(["explain", "--config"])
        .arg(&setup.config)
        .arg("--jwks")
        .arg(&setup.jwks)
        .args([
            "--token",
            token,
            "--method",
            "POST",
            "--url",
            url,
            "--at",
            &at.to_string(),
            "--json",
        ])
        .args(extra)
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (serde_json::from_str(&text).unwrap(), text)
}

fn verdict_of(explained: &Value, check: &str) -> String {
    explained["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|step| step["check"] == check)
        .map(|step| step["verdict"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no step {check}: {explained}"))
}

// A good token on a model it may use passes; each failure is named by its step and in the answer.
#[test]
fn each_check_has_its_verdict_and_the_answer_is_the_filters() {
    let setup = setup("verdicts");
    let url = "https://models.example.com/v1/models/fraud:predict";
    let good = token(&setup, "kserve", json!(["fraud"]));
    let (explained, text) = explain(&setup, &good, url, NOW + 10);
    assert_eq!(explained["answer"]["status"], 200, "{explained}");
    assert_eq!(
        verdict_of(&explained, "providers.idp: key and signature"),
        "ok"
    );
    assert!(verdict_of(&explained, "rule").starts_with("rules[1]"));
    assert!(!text.contains(&good), "the token is printed back");

    let (explained, _) = explain(&setup, &good, url, NOW + 10_000);
    assert_eq!(explained["answer"]["status"], 401);
    assert_eq!(
        verdict_of(&explained, "providers.idp: iss, aud, times, typ, azp"),
        "refused: Jwt is expired"
    );

    let other_audience = token(&setup, "elsewhere", json!(["fraud"]));
    let (explained, _) = explain(&setup, &other_audience, url, NOW + 10);
    assert_eq!(explained["answer"]["status"], 401);
    assert_eq!(
        verdict_of(&explained, "providers.idp: iss, aud, times, typ, azp"),
        "refused: Audiences in Jwt are not allowed"
    );

    let (head, _) = good.rsplit_once('.').unwrap();
    let forged = format!("{head}.{}", "A".repeat(86));
    let (explained, _) = explain(&setup, &forged, url, NOW + 10);
    assert_eq!(explained["answer"]["status"], 401);
    assert_eq!(
        verdict_of(&explained, "providers.idp: key and signature"),
        "refused: Jwt verification fails"
    );

    let no_role = token(&setup, "kserve", json!([]));
    let (explained, _) = explain(&setup, &no_role, url, NOW + 10);
    assert_eq!(explained["answer"]["status"], 403);
}

// A rule on the model an OpenAI-compatible body names: with --data, the body is read as the filter
// reads it and the request decided again with its model; without it, explain says what it needs.
#[test]
fn the_model_named_in_the_body_decides_with_data() {
    let setup = setup("body");
    let url = "https://models.example.com/openai/v1/chat/completions";
    let with_role = token(&setup, "kserve", json!(["fraud"]));
    let without_role = token(&setup, "kserve", json!([]));
    let chat = |model: &str| json!({"model": model, "messages": []}).to_string();

    let (explained, _) = explain_with(
        &setup,
        &with_role,
        url,
        NOW + 10,
        &["--data", &chat("fraud")],
    );
    assert_eq!(explained["answer"]["status"], 200, "{explained}");
    assert_eq!(verdict_of(&explained, "body"), "names model \"fraud\"");

    let (explained, _) = explain_with(
        &setup,
        &without_role,
        url,
        NOW + 10,
        &["--data", &chat("fraud")],
    );
    assert_eq!(explained["answer"]["status"], 403, "{explained}");
    // Another model falls to the catch-all rule, which any valid token passes.
    let (explained, _) = explain_with(
        &setup,
        &without_role,
        url,
        NOW + 10,
        &["--data", &chat("churn")],
    );
    assert_eq!(explained["answer"]["status"], 200, "{explained}");

    let (explained, _) = explain_with(
        &setup,
        &with_role,
        url,
        NOW + 10,
        &["--data", r#"{"messages": []}"#],
    );
    assert_eq!(explained["answer"]["status"], 400, "{explained}");
    assert!(
        verdict_of(&explained, "body").starts_with("refused: "),
        "{explained}"
    );

    let (explained, _) = explain(&setup, &with_role, url, NOW + 10);
    assert_eq!(explained["answer"]["status"], 0, "{explained}");
    assert!(
        explained["answer"]["body"]
            .as_str()
            .unwrap()
            .contains("--data"),
        "{explained}"
    );
}
