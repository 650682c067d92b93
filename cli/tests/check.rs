//! `kserve-auth check` run as a program: every configuration shipped in `envoy/` passes, and a
//! broken one fails with the field that is wrong.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn check(files: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kserve-auth"))
        .arg("check")
        .args(files)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Every Envoy bootstrap and Istio WasmPlugin manifest in `envoy/` (and below).
fn shipped() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["envoy", "envoy/compose", "envoy/istio"] {
        for entry in fs::read_dir(repo().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let text = fs::read_to_string(&path).unwrap_or_default();
            if text.contains("static_resources") || text.contains("kind: WasmPlugin") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

// Every shipped Envoy configuration and WasmPlugin passes.
#[test]
fn shipped_configurations_pass() {
    let files = shipped();
    assert!(files.len() >= 8, "{files:?}");
    for file in &files {
        let output = check(&[file]);
        assert!(
            output.status.success(),
            "{}: {}",
            file.display(),
            stdout(&output)
        );
        assert!(stdout(&output).contains(": ok ("), "{}", stdout(&output));
    }
}

/// A scratch file with `text`, named `name`.
fn scratch(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kserve-auth-check-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

const PROVIDER: &str = r#""kc": {"issuer": "https://kc.example.com/realms/r", "audiences": ["a"],
    "remote_jwks": {"http_uri": {"uri": "https://kc.example.com/certs", "cluster": "kc"}}}"#;

// Broken configurations fail, each naming its field.
#[test]
fn broken_configurations_name_the_field() {
    let rules = r#""rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "kc"}}]"#;
    let cases = [
        (
            "unknown.json",
            format!(r#"{{"providers": {{{PROVIDER}}}, {rules}, "max_waiting": 3}}"#),
            "max_waiting: unknown field",
        ),
        (
            "duration.json",
            format!(
                r#"{{"providers": {{"kc": {{"issuer": "https://i", "audiences": ["a"],
                   "remote_jwks": {{"http_uri": {{"uri": "https://i/k", "cluster": "kc"}},
                                    "cache_duration": "ten minutes"}}}}}}, {rules}}}"#
            ),
            "providers.kc.remote_jwks.cache_duration",
        ),
        (
            "provider.json",
            format!(
                r#"{{"providers": {{{PROVIDER}}}, "rules": [{{"match": {{"prefix": "/"}},
                   "requires": {{"provider_name": "keycloak"}}}}]}}"#
            ),
            "rules[0].requires.provider_name",
        ),
        (
            "wasmplugin.yaml",
            "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata:\n  name: broken\n\
             spec:\n  url: oci://example/kserve-auth\n  pluginConfig:\n    providers: {}\n    rules: []\n"
                .to_owned(),
            "WasmPlugin broken: invalid configuration: providers",
        ),
    ];
    for (name, text, needle) in cases {
        let output = check(&[&scratch(name, &text)]);
        assert!(
            !output.status.success(),
            "{name} passed: {}",
            stdout(&output)
        );
        assert!(
            stdout(&output).contains(needle),
            "{name}: {}",
            stdout(&output)
        );
    }
    let output = check(&[&scratch("nothing.yaml", "kind: Service\n")]);
    assert!(!output.status.success());
}

// Risky but legal choices are warned about and do not fail the check.
#[test]
fn risky_choices_are_warned_about() {
    let text = format!(
        r#"{{"providers": {{{PROVIDER}, "unused": {{"issuer": "https://u", "audiences": ["a"],
            "from_params": ["access_token"], "forward": true,
            "local_jwks": {{"inline_string": "{{\"keys\": [{{\"kty\": \"OKP\", \"crv\": \"Ed25519\", \"x\": \"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}}]}}"}}}}}},
            "rules": [{{"match": {{"prefix": "/v1/"}}, "requires": {{"provider_name": "kc"}}}},
                      {{"match": {{"prefix": "/"}}}}]}}"#
    );
    let output = check(&[&scratch("risky.json", &text)]);
    let printed = stdout(&output);
    assert!(output.status.success(), "{printed}");
    for warning in [
        "warning: the catch-all rule (prefix \"/\") is public",
        "warning: providers.unused is used by no rule",
        "warning: providers.unused.from_params",
        "warning: providers.unused.forward is true",
    ] {
        assert!(printed.contains(warning), "{warning}: {printed}");
    }
}
