//! The plugin configurations a file holds: the file itself, the wasm filters of an Envoy
//! bootstrap, or the `pluginConfig` of Istio `WasmPlugin` manifests.

use serde_json::Value;

/// One plugin configuration found in a file.
pub struct Found {
    /// Where in the file: `""` for the whole file, else a path such as
    /// `static_resources.listeners[0]…http_filters[1]` or `WasmPlugin kserve-auth`.
    pub location: String,
    /// The configuration, as JSON text.
    pub configuration: Result<String, String>,
    /// The Wasm filter's own settings, for an Envoy bootstrap: `allow_on_headers_stop_iteration`.
    pub holds_headers: Option<bool>,
    /// The failure policy, when the file sets one (`failure_policy`, `failStrategy`).
    pub failure_policy: Option<String>,
}

/// The YAML or JSON documents of `text` (several in a YAML stream), as JSON values.
pub fn parse(text: &str) -> Result<Vec<Value>, String> {
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        return Ok(vec![value]);
    }
    let mut documents = Vec::new();
    for document in yaml_serde::Deserializer::from_str(text) {
        let value: Value = serde::Deserialize::deserialize(document)
            .map_err(|error| format!("not valid YAML or JSON: {error}"))?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

/// The plugin configurations in `documents`.
pub fn configurations(documents: &[Value]) -> Vec<Found> {
    let mut found = Vec::new();
    for document in documents {
        if document.get("static_resources").is_some() {
            bootstrap_filters(document, "", &mut found);
        } else if document.get("kind").and_then(Value::as_str) == Some("WasmPlugin") {
            let name = document
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("(unnamed)");
            let configuration = document
                .pointer("/spec/pluginConfig")
                .map(|config| Ok(config.to_string()))
                .unwrap_or_else(|| Err("spec.pluginConfig is missing".to_owned()));
            found.push(Found {
                location: format!("WasmPlugin {name}"),
                configuration,
                holds_headers: None,
                failure_policy: document
                    .pointer("/spec/failStrategy")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            });
        } else if document.get("kind").is_none() && document.get("providers").is_some() {
            found.push(Found {
                location: String::new(),
                configuration: Ok(document.to_string()),
                holds_headers: None,
                failure_policy: None,
            });
        }
    }
    found
}

/// Every `envoy.filters.http.wasm` filter below `value` whose plugin is this filter (its module
/// is `kserve_auth_filter.wasm`, or its root id or name is `kserve_auth`).
fn bootstrap_filters(value: &Value, path: &str, found: &mut Vec<Found>) {
    match value {
        Value::Object(members) => {
            if members.get("name").and_then(Value::as_str) == Some("envoy.filters.http.wasm") {
                if let Some(config) = value.pointer("/typed_config/config") {
                    if is_this_plugin(config) {
                        found.push(wasm_filter(config, path));
                        return;
                    }
                }
            }
            for (key, child) in members {
                bootstrap_filters(child, &join(path, key), found);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                bootstrap_filters(child, &format!("{path}[{index}]"), found);
            }
        }
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn is_this_plugin(config: &Value) -> bool {
    let named = |pointer: &str| {
        config
            .pointer(pointer)
            .and_then(Value::as_str)
            .is_some_and(|name| name.contains("kserve_auth"))
    };
    named("/vm_config/code/local/filename") || named("/root_id") || named("/name")
}

fn wasm_filter(config: &Value, path: &str) -> Found {
    let configuration = match config.pointer("/configuration/value") {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(_) => Err("configuration.value is not a string".to_owned()),
        None => Err("configuration.value is missing".to_owned()),
    };
    Found {
        location: path.to_owned(),
        configuration,
        holds_headers: Some(
            config
                .get("allow_on_headers_stop_iteration")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        ),
        failure_policy: config
            .get("failure_policy")
            .and_then(Value::as_str)
            .map(str::to_owned),
    }
}
