//! The Envoy configurations shipped under `envoy/`, and the plugin configurations inside them.

use std::fs;
use std::path::{Path, PathBuf};

use super::envoy::filter_wasm;

/// `envoy/compose/envoy.yaml` as Envoy runs it here: the module under test, and the compose
/// services moved to loopback (the listener and admin to kernel-chosen ports, Keycloak and the
/// model server to theirs).
pub fn compose_envoy_on_loopback(keycloak_port: u16, model_port: u16) -> String {
    let file = shipped_file("compose/envoy.yaml");
    let mut yaml = fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("read {}: {e}", file.display()))
        .replace(
            "/etc/envoy/kserve_auth_filter.wasm",
            &filter_wasm().display().to_string(),
        );
    for (from, to) in [
        (
            "{address: 0.0.0.0, port_value: 10000}".to_string(),
            "{address: 127.0.0.1, port_value: 0}".to_string(),
        ),
        ("port_value: 9901}".into(), "port_value: 0}".into()),
        (
            "{address: keycloak, port_value: 8080}".into(),
            format!("{{address: 127.0.0.1, port_value: {keycloak_port}}}"),
        ),
        (
            "{address: model, port_value: 8080}".into(),
            format!("{{address: 127.0.0.1, port_value: {model_port}}}"),
        ),
    ] {
        assert!(
            yaml.contains(&from),
            "compose/envoy.yaml no longer has {from}"
        );
        yaml = yaml.replace(&from, &to);
    }
    yaml
}

/// A file under `envoy/`.
pub fn shipped_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("envoy")
        .join(name)
}

/// The plugin configurations embedded in the shipped file `name`.
pub fn shipped_plugin_configs(name: &str) -> Vec<String> {
    let path = shipped_file(name);
    let yaml = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    embedded_plugin_configs(&yaml)
}

/// Every plugin configuration embedded as a `google.protobuf.StringValue` block scalar
/// (`value: |` followed by more-indented lines).
pub fn embedded_plugin_configs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let indent = |line: &str| line.len() - line.trim_start().len();
    let mut configs = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim() != "\"@type\": type.googleapis.com/google.protobuf.StringValue" {
            continue;
        }
        let value_line = lines.get(i + 1).copied().unwrap_or_default();
        assert_eq!(
            value_line.trim(),
            "value: |",
            "a StringValue plugin configuration must be written as a `value: |` block"
        );
        let block: Vec<&str> = lines[i + 2..]
            .iter()
            .copied()
            .take_while(|l| l.trim().is_empty() || indent(l) > indent(value_line))
            .collect();
        let strip = block
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| indent(l))
            .min()
            .unwrap_or(0);
        let text: Vec<&str> = block.iter().map(|l| l.get(strip..).unwrap_or("")).collect();
        configs.push(text.join("\n"));
    }
    configs
}
