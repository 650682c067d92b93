//! The Envoy configurations shipped under `envoy/` (and `envoy/compose/`): Envoy accepts them,
//! the plugin configuration inside them is valid for this crate, and `envoy/envoy.yaml` works
//! as described.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::envoy::{envoy_bin, filter_wasm, tail};
use crate::support::shipped::{compose_envoy_on_loopback, embedded_plugin_configs};
use crate::support::*;
use kserve_auth_filter::config::{Config, KeySource};
use serde_json::json;

/// The module paths the shipped files use: relative to the repository root, and where
/// `envoy/docker-compose.yaml` mounts the module in the Envoy container.
const SHIPPED_MODULES: [&str; 2] = [
    "target/kserve_auth_filter.wasm",
    "/etc/envoy/kserve_auth_filter.wasm",
];

/// Every Envoy bootstrap under `envoy/` and `envoy/compose/` (not the compose file itself).
fn shipped_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("envoy");
    let mut files = Vec::new();
    for dir in [root.clone(), root.join("compose")] {
        files.extend(
            fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
                .map(|entry| entry.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .filter(|p| p.file_name().is_some_and(|n| n != "docker-compose.yaml")),
        );
    }
    files.sort();
    for expected in ["envoy.yaml", "demo.yaml", "compose/envoy.yaml"] {
        assert!(
            files.contains(&root.join(expected)),
            "envoy/{expected} is not among the checked files"
        );
    }
    files
}

/// The file's text with the module path pointing at the module under test.
fn with_module_under_test(path: &Path) -> String {
    let module = filter_wasm().display().to_string();
    SHIPPED_MODULES
        .iter()
        .fold(fs::read_to_string(path).unwrap(), |text, shipped| {
            text.replace(shipped, &module)
        })
}

// `envoy --mode validate` accepts every shipped file with this crate's module (validation
// also loads the module and runs its configuration step).
#[test]
fn shipped_configs_pass_envoy_validation() {
    let dir = std::env::temp_dir().join(format!("kserve-e2e-validate-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    for (i, file) in shipped_files().iter().enumerate() {
        let rewritten = dir.join(format!(
            "{i}-{}",
            file.file_name().unwrap().to_string_lossy()
        ));
        fs::write(&rewritten, with_module_under_test(file)).unwrap();
        let output = Command::new(envoy_bin())
            .args(["--mode", "validate", "-l", "error", "-c"])
            .arg(&rewritten)
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success(),
            "{} fails validation:\n{}",
            file.display(),
            tail(&all, 30)
        );
        assert!(all.contains("OK"), "{all}");
    }
    fs::remove_dir_all(&dir).unwrap();
}

// The plugin configuration embedded in every shipped file is accepted by the crate's own
// parser, and every cluster it fetches keys through is defined in the same file.
#[test]
fn shipped_plugin_configs_are_valid() {
    for file in shipped_files() {
        let yaml = fs::read_to_string(&file).unwrap();
        let configs = embedded_plugin_configs(&yaml);
        assert!(
            !configs.is_empty(),
            "{}: no embedded plugin configuration",
            file.display()
        );
        for text in configs {
            let config = Config::from_json(text.as_bytes())
                .unwrap_or_else(|e| panic!("{}: {e}\n{text}", file.display()));
            for provider in &config.providers {
                let cluster = match &provider.keys {
                    KeySource::Remote { jwks, .. } => Some(&jwks.cluster),
                    KeySource::Discovery { discovery, .. } => Some(&discovery.cluster),
                    KeySource::Local { .. } => None,
                };
                if let Some(cluster) = cluster {
                    assert!(
                        yaml.contains(&format!("- name: {cluster}\n")),
                        "{}: provider {} uses cluster {cluster}, which is not defined",
                        file.display(),
                        provider.name
                    );
                }
            }
        }
    }
}

// The shipped listener normalizes paths before the filter matches rules on them.
#[test]
fn shipped_listeners_normalize_paths() {
    for file in shipped_files() {
        let yaml = fs::read_to_string(&file).unwrap();
        for setting in [
            "normalize_path: true",
            "merge_slashes: true",
            "path_with_escaped_slashes_action: REJECT_REQUEST",
        ] {
            assert!(
                yaml.contains(setting),
                "{}: missing {setting}",
                file.display()
            );
        }
    }
}

// Defence in depth in every shipped listener: a wasm VM that fails is reloaded (never failed
// open), header names with underscores are refused before any filter, the plugin runs in a VM id
// of its own, and it may hold a request's headers while it reads a body that names the model.
#[test]
fn shipped_configs_reload_failed_vms_and_refuse_underscores() {
    for file in shipped_files() {
        let yaml = fs::read_to_string(&file).unwrap();
        for setting in [
            "failure_policy: FAIL_RELOAD",
            "allow_on_headers_stop_iteration: true",
            "headers_with_underscores_action: REJECT_REQUEST",
            "vm_id: kserve_auth",
        ] {
            assert!(
                yaml.contains(setting),
                "{}: missing {setting}",
                file.display()
            );
        }
        for never in ["fail_open", "FAIL_OPEN"] {
            assert!(!yaml.contains(never), "{}: ships {never}", file.display());
        }
    }
}

// `envoy/envoy.yaml` run as shipped (ports moved to free ones): health is public, inference
// needs a token from the Keycloak realm, and a valid one reaches the model server.
#[test]
fn shipped_envoy_yaml_protects_inference() {
    let key = TestKey::rs256("rsa-a", "realm-key");
    let keycloak = JwksServer::start(jwks(&[&key]));
    keycloak.set_jwks_path("/realms/kserve/protocol/openid-connect/certs");
    let model = EchoUpstream::start();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("envoy/envoy.yaml");
    let yaml = with_module_under_test(&file);
    let mut moved = yaml.clone();
    for (from, to) in [
        ("port_value: 10000", 0),
        ("port_value: 9901", 0),
        ("port_value: 8081", keycloak.port()),
        ("port_value: 8080", model.port()),
    ] {
        assert!(moved.contains(from), "envoy.yaml no longer has {from}");
        moved = moved.replace(from, &format!("port_value: {to}"));
    }
    let envoy = Envoy::try_start_bootstrap("envoy.yaml", &moved, 1, "info")
        .unwrap_or_else(|f| panic!("envoy.yaml did not start: {}", tail(&f.log, 40)));

    assert_eq!(envoy.get("/v2/health/ready", &[]).status, 200);
    assert_missing(&envoy.get("/v2/models/m/infer", &[]));
    // An underscore spelling of an identity header is refused by Envoy itself.
    assert_eq!(
        envoy
            .get("/v2/health/ready", &[("x_jwt_sub", "admin")])
            .status,
        400
    );
    assert_eq!(model.count(), 1);

    let now = crate::support::keys::now();
    let claims = json!({"iss": "http://127.0.0.1:8081/realms/kserve", "aud": "kserve-client",
                        "sub": "alice", "iat": now, "exp": now + 300});
    let authorization = format!("Bearer {}", key.sign(&claims));
    let response = envoy.get(
        "/v2/models/m/infer",
        &[("authorization", authorization.as_str())],
    );
    let echo = Echo::from_response(&response);
    assert_eq!(echo.header("x-jwt-sub").as_deref(), Some("alice"));
    assert_eq!(echo.header("authorization"), None);
    assert!(keycloak.jwks_fetches() >= 1);
}

// `envoy/compose/envoy.yaml` run with the compose services' addresses moved to loopback: a
// Keycloak service-account token (issuer from KC_HOSTNAME, the audience mapper's `aud`, `azp`)
// reaches the model server as identity headers, and a request without one is refused.
#[test]
fn compose_envoy_yaml_protects_inference() {
    let key = TestKey::rs256("rsa-a", "realm-key");
    let keycloak = JwksServer::start(jwks(&[&key]));
    keycloak.set_jwks_path("/realms/kserve/protocol/openid-connect/certs");
    let model = EchoUpstream::start();
    let moved = compose_envoy_on_loopback(keycloak.port(), model.port());
    let envoy = Envoy::try_start_bootstrap("envoy.yaml", &moved, 1, "info")
        .unwrap_or_else(|f| panic!("compose/envoy.yaml did not start: {}", tail(&f.log, 40)));

    assert_eq!(envoy.get("/v2/health/ready", &[]).status, 200);
    assert_missing(&envoy.get("/v1/models/demo-model:predict", &[]));

    let now = crate::support::keys::now();
    let claims = json!({"iss": "http://localhost:8081/realms/kserve", "aud": ["kserve-client", "account"],
                        "sub": "0b5c6f5e-service-account", "azp": "kserve-client",
                        "iat": now, "exp": now + 300});
    let authorization = format!("Bearer {}", key.sign(&claims));
    let response = envoy.get(
        "/v1/models/demo-model:predict",
        &[("authorization", authorization.as_str())],
    );
    let echo = Echo::from_response(&response);
    assert_eq!(
        echo.header("x-jwt-sub").as_deref(),
        Some("0b5c6f5e-service-account")
    );
    assert_eq!(
        echo.header("x-jwt-client").as_deref(),
        Some("kserve-client")
    );
    assert_eq!(echo.header("authorization"), None);
}
