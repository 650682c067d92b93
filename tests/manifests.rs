//! The deployment files beside the Envoy configurations: the Istio and KServe manifests in
//! `envoy/istio/` (checked against their CRD schemas, copied into `tests/fixtures/schemas/`) and
//! `envoy/docker-compose.yaml` with its Keycloak realm. The plugin configurations they carry pass
//! the filter's own configuration check.
//!
//! YAML is read and schemas are applied by `tests/e2e/support/check_manifests.py` (PyPI jsonschema
//! and PyYAML in `.venv/tools`, `make tools`); the compose file by Debian's `docker-compose`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kserve_auth_filter::config::Config;
use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `$TOOLS_PYTHON`, else `.venv/tools/bin/python` (`make tools`).
fn tools_python() -> PathBuf {
    let path = std::env::var_os("TOOLS_PYTHON")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/tools/bin/python"));
    assert!(
        path.is_file(),
        "{} not found: run `make tools` (or set TOOLS_PYTHON)",
        path.display()
    );
    path
}

/// `$DOCKER_COMPOSE`, else `docker-compose` from PATH (`make docker-compose`).
fn docker_compose() -> PathBuf {
    std::env::var_os("DOCKER_COMPOSE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("docker-compose"))
}

fn check_manifests(args: &[&str], files: &[PathBuf]) -> Output {
    Command::new(tools_python())
        .arg(repo().join("tests/e2e/support/check_manifests.py"))
        .args(args)
        .args(files)
        .output()
        .expect("run check_manifests.py")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn istio_manifests() -> Vec<PathBuf> {
    let dir = repo().join("envoy/istio");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn schema_dir() -> String {
    repo().join("tests/fixtures/schemas").display().to_string()
}

/// The YAML documents of `files`, as JSON.
fn documents(files: &[PathBuf]) -> Vec<Value> {
    let output = check_manifests(&["json"], files);
    assert!(output.status.success(), "{}", text(&output));
    serde_json::from_slice::<Vec<Value>>(&output.stdout).unwrap()
}

fn istio_documents() -> Vec<Value> {
    documents(&istio_manifests())
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The WasmPlugin called `name`.
fn wasm_plugin<'a>(docs: &'a [Value], name: &str) -> &'a Value {
    of_kind(docs, "WasmPlugin")
        .into_iter()
        .find(|plugin| plugin["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no WasmPlugin {name}"))
}

// Every manifest in envoy/istio/ validates against its CRD's schema (unknown fields refused),
// and the set covers the WasmPlugin, the external key hosts and an InferenceService.
#[test]
fn istio_manifests_match_their_crd_schemas() {
    let output = check_manifests(&["validate", &schema_dir()], &istio_manifests());
    let report = text(&output);
    assert!(output.status.success(), "{report}");
    for checked in [
        "ok extensions.istio.io/v1alpha1 WasmPlugin kserve-auth ",
        "ok extensions.istio.io/v1alpha1 WasmPlugin kserve-auth-predictors ",
        "ok networking.istio.io/v1 ServiceEntry",
        "ok networking.istio.io/v1 DestinationRule",
        "ok serving.kserve.io/v1beta1 InferenceService",
    ] {
        assert!(
            report.contains(checked),
            "{checked} missing from:\n{report}"
        );
    }
}

// The schema check is not vacuous: a misspelt field, a value outside an enum and a wrong type
// are each reported with their path.
#[test]
fn schema_check_refuses_unknown_fields_enums_and_types() {
    let dir = std::env::temp_dir().join(format!("kserve-manifests-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let plugin = fs::read_to_string(repo().join("envoy/istio/wasmplugin.yaml")).unwrap();
    let service = fs::read_to_string(repo().join("envoy/istio/inferenceservice.yaml")).unwrap();
    let broken = [
        (
            "typo.yaml",
            plugin.replace("failStrategy: FAIL_RELOAD", "failstrategy: FAIL_RELOAD"),
            "spec: Additional properties are not allowed ('failstrategy' was unexpected)",
        ),
        (
            "enum.yaml",
            plugin.replace("phase: AUTHN", "phase: AUTHENTICATE"),
            "spec.phase: 'AUTHENTICATE' is not one of",
        ),
        (
            "type.yaml",
            service.replace("containerPort: 8080", "containerPort: \"8080\""),
            "spec.predictor.containers.0.ports.0.containerPort: '8080' is not of type 'integer'",
        ),
    ];
    for (name, yaml, expected) in broken {
        let file = dir.join(name);
        fs::write(&file, yaml).unwrap();
        let output = check_manifests(&["validate", &schema_dir()], &[file]);
        let report = text(&output);
        assert!(!output.status.success(), "{name} passed:\n{report}");
        assert!(
            report.contains(expected),
            "{name}: {expected:?} not in:\n{report}"
        );
    }
    fs::remove_dir_all(&dir).unwrap();
}

/// The Istio cluster name for an http(s) URL: `outbound|<port>||<host>`.
fn istio_cluster(uri: &str) -> (String, String, u16) {
    let (scheme, rest) = uri.split_once("://").unwrap();
    let authority = rest.split('/').next().unwrap();
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host.to_string(), port.parse().unwrap()),
        None => (
            authority.to_string(),
            if scheme == "https" { 443 } else { 80 },
        ),
    };
    (format!("outbound|{port}||{host}"), host, port)
}

// The WasmPlugin runs in the AUTHN phase and fails closed, and its pluginConfig passes the
// filter's configuration check, with key callouts through the clusters Istio generates for each
// key URL's host and port.
#[test]
fn wasm_plugin_config_is_valid_and_uses_istio_cluster_names() {
    let docs = istio_documents();
    assert_eq!(of_kind(&docs, "WasmPlugin").len(), 2);
    let spec = &wasm_plugin(&docs, "kserve-auth")["spec"];
    assert_eq!(spec["phase"], "AUTHN");
    assert_eq!(spec["failStrategy"], "FAIL_RELOAD");
    assert!(spec["url"].as_str().unwrap().starts_with("oci://"));

    let plugin_config = spec["pluginConfig"].to_string();
    Config::from_json(plugin_config.as_bytes())
        .unwrap_or_else(|e| panic!("pluginConfig refused: {e}\n{plugin_config}"));

    let providers = spec["pluginConfig"]["providers"].as_object().unwrap();
    assert!(providers.contains_key("keycloak"));
    for (name, provider) in providers {
        let http_uri = &provider["remote_jwks"]["http_uri"];
        let (cluster, _, _) = istio_cluster(http_uri["uri"].as_str().unwrap());
        assert_eq!(http_uri["cluster"], cluster.as_str(), "provider {name}");
    }
    assert_eq!(
        providers["keycloak"]["remote_jwks"]["http_uri"]["cluster"],
        "outbound|8080||keycloak.keycloak.svc.cluster.local"
    );
}

// The predictors' WasmPlugin judges only inbound traffic of KServe's predictor pods in the
// InferenceService's namespace; its pluginConfig passes the configuration check; the
// InferenceService's in-cluster hosts reach the service-account rule, its public host the
// Keycloak rule; and the API server's cluster gets TLS from a DestinationRule on those pods only.
#[test]
fn predictor_sidecar_plugin() {
    let docs = istio_documents();
    let plugin = wasm_plugin(&docs, "kserve-auth-predictors");
    let service = of_kind(&docs, "InferenceService")[0];
    let namespace = service["metadata"]["namespace"].as_str().unwrap();
    let name = service["metadata"]["name"].as_str().unwrap();
    assert_eq!(plugin["metadata"]["namespace"], namespace);
    let spec = &plugin["spec"];
    assert_eq!(spec["selector"]["matchLabels"]["component"], "predictor");
    assert_eq!(spec["match"], serde_json::json!([{"mode": "SERVER"}]));
    assert_eq!(spec["phase"], "AUTHN");
    assert_eq!(spec["failStrategy"], "FAIL_RELOAD");

    let plugin_config = spec["pluginConfig"].to_string();
    let config = Config::from_json(plugin_config.as_bytes())
        .unwrap_or_else(|e| panic!("pluginConfig refused: {e}\n{plugin_config}"));
    let rule_for = |host: &str| {
        let host = kserve_auth_filter::request::host::host_of(host);
        config
            .rules
            .iter()
            .position(|rule| {
                rule.path_match == kserve_auth_filter::config::PathMatch::Prefix("/".into())
                    && (rule.hosts.is_empty() || rule.hosts.iter().any(|h| h.matches(&host)))
            })
            .unwrap()
    };
    let service_account_rule = config.rules.len() - 2;
    for host in [
        format!("{name}-predictor.{namespace}.svc.cluster.local"),
        format!("{name}.{namespace}.svc.cluster.local:80"),
        format!("{name}-predictor.{namespace}.svc"),
        format!("{name}-predictor.{namespace}"),
    ] {
        assert_eq!(rule_for(&host), service_account_rule, "{host}");
    }
    let public = format!("{name}-{namespace}.example.com");
    assert_eq!(rule_for(&public), config.rules.len() - 1);

    let kubernetes = &spec["pluginConfig"]["providers"]["kubernetes"];
    assert_eq!(kubernetes["preset"], "kubernetes");
    let api_cluster = "outbound|443||kubernetes.default.svc.cluster.local";
    assert_eq!(kubernetes["oidc_discovery"]["cluster"], api_cluster);
    let rule = of_kind(&docs, "DestinationRule")
        .into_iter()
        .find(|r| r["spec"]["host"] == "kubernetes.default.svc.cluster.local")
        .expect("a DestinationRule for the API server");
    assert_eq!(rule["metadata"]["namespace"], namespace);
    assert_eq!(
        rule["spec"]["workloadSelector"], spec["selector"],
        "TLS to the API server only on the pods the plugin runs on"
    );
    assert_eq!(rule["spec"]["trafficPolicy"]["tls"]["mode"], "SIMPLE");
}

// Every key host outside the cluster that the WasmPlugin calls has a ServiceEntry for its port
// (so Istio generates the cluster) and a DestinationRule originating TLS to it, both in the
// gateway's namespace; www.googleapis.com and www.gstatic.com are among them.
#[test]
fn external_key_hosts_have_service_entries_and_tls() {
    let docs = istio_documents();
    let plugin = wasm_plugin(&docs, "kserve-auth");
    let namespace = plugin["metadata"]["namespace"].as_str().unwrap();
    let mut external = BTreeSet::new();
    for provider in plugin["spec"]["pluginConfig"]["providers"]
        .as_object()
        .unwrap()
        .values()
    {
        let uri = provider["remote_jwks"]["http_uri"]["uri"].as_str().unwrap();
        let (_, host, port) = istio_cluster(uri);
        if !host.ends_with(".svc.cluster.local") {
            assert!(
                uri.starts_with("https://"),
                "{uri}: external keys over https only"
            );
            external.insert((host, port));
        }
    }
    let hosts: Vec<&str> = external.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(hosts, ["www.googleapis.com", "www.gstatic.com"]);

    for (host, port) in &external {
        let entry = of_kind(&docs, "ServiceEntry")
            .into_iter()
            .find(|e| {
                e["spec"]["hosts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|h| h == host.as_str())
            })
            .unwrap_or_else(|| panic!("no ServiceEntry for {host}"));
        assert_eq!(entry["metadata"]["namespace"], namespace);
        assert_eq!(entry["spec"]["location"], "MESH_EXTERNAL");
        assert!(
            entry["spec"]["ports"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["number"] == *port),
            "ServiceEntry for {host} lacks port {port}"
        );
        let rule = of_kind(&docs, "DestinationRule")
            .into_iter()
            .find(|r| r["spec"]["host"] == host.as_str())
            .unwrap_or_else(|| panic!("no DestinationRule for {host}"));
        assert_eq!(rule["metadata"]["namespace"], namespace);
        let tls = &rule["spec"]["trafficPolicy"]["tls"];
        assert_eq!(tls["mode"], "SIMPLE", "{host}");
        assert_eq!(tls["sni"], host.as_str());
    }
}

// The example InferenceService serves the demo model's image on the port the model listens on.
#[test]
fn inference_service_runs_the_demo_model() {
    let docs = istio_documents();
    let services = of_kind(&docs, "InferenceService");
    assert_eq!(services.len(), 1);
    let service = services[0];
    assert_eq!(service["metadata"]["name"], "demo-model");
    let container = &service["spec"]["predictor"]["containers"][0];
    assert!(container["image"]
        .as_str()
        .unwrap()
        .contains("kserve-auth-demo-model"));
    assert_eq!(container["ports"][0]["containerPort"], 8080);
}

fn compose_file() -> PathBuf {
    repo().join("envoy/docker-compose.yaml")
}

fn compose_services() -> Value {
    documents(&[compose_file()])[0]["services"].clone()
}

// `docker-compose config -q` accepts envoy/docker-compose.yaml (schema, build context present).
#[test]
fn compose_file_passes_docker_compose_config() {
    let output = Command::new(docker_compose())
        .arg("-f")
        .arg(compose_file())
        .args(["config", "-q"])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e} (run `make docker-compose`)",
                docker_compose().display()
            )
        });
    assert!(output.status.success(), "{}", text(&output));
}

// The compose file runs the official Envoy image with the built module and the Envoy
// configuration the tests validate, Keycloak importing the realm, and the model server built
// from demo/model; every file it mounts exists (or is built by `make build`).
#[test]
fn compose_services_mount_the_checked_files() {
    let services = compose_services();
    let envoy = &services["envoy"];
    assert!(envoy["image"]
        .as_str()
        .unwrap()
        .starts_with("envoyproxy/envoy:v1.40"));
    let volumes: Vec<&str> = envoy["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(volumes.contains(&"./compose/envoy.yaml:/etc/envoy/envoy.yaml:ro"));
    assert!(volumes
        .contains(&"../target/kserve_auth_filter.wasm:/etc/envoy/kserve_auth_filter.wasm:ro"));
    let envoy_yaml = fs::read_to_string(repo().join("envoy/compose/envoy.yaml")).unwrap();
    assert!(envoy_yaml.contains("filename: /etc/envoy/kserve_auth_filter.wasm"));

    let keycloak = &services["keycloak"];
    assert!(keycloak["image"]
        .as_str()
        .unwrap()
        .starts_with("quay.io/keycloak/keycloak:"));
    assert!(keycloak["command"].to_string().contains("--import-realm"));
    assert_eq!(
        keycloak["volumes"][0],
        "./compose/kserve-realm.json:/opt/keycloak/data/import/kserve-realm.json:ro"
    );

    assert_eq!(services["model"]["build"], "../demo/model");
    assert!(repo().join("demo/model/Dockerfile").is_file());

    for service in services.as_object().unwrap().values() {
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let source = volume.as_str().unwrap().split(':').next().unwrap();
            if source.starts_with("../target/") {
                continue;
            }
            assert!(
                repo().join("envoy").join(source).is_file(),
                "{source} is mounted but missing"
            );
        }
    }
}

/// The plugin configuration embedded in envoy/compose/envoy.yaml.
fn compose_plugin_config() -> Config {
    let yaml = fs::read_to_string(repo().join("envoy/compose/envoy.yaml")).unwrap();
    let start = yaml.find("value: |").unwrap() + "value: |".len();
    let block: Vec<&str> = yaml[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.trim().is_empty() || l.starts_with("                    "))
        .collect();
    Config::from_json(block.join("\n").as_bytes()).unwrap()
}

// The Keycloak realm import gives the client what the Keycloak guides set by hand: a
// confidential client with service accounts (client credentials grant) and an audience mapper
// putting the audience Envoy requires into access tokens; its issuer is the one Envoy trusts.
#[test]
fn keycloak_realm_matches_the_compose_envoy_config() {
    let realm: Value = serde_json::from_str(
        &fs::read_to_string(repo().join("envoy/compose/kserve-realm.json")).unwrap(),
    )
    .unwrap();
    let client = realm["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["clientId"] == "kserve-client")
        .expect("client kserve-client");
    assert_eq!(client["serviceAccountsEnabled"], true);
    assert_eq!(client["publicClient"], false);
    assert!(client["secret"].as_str().is_some_and(|s| !s.is_empty()));
    let mapper = client["protocolMappers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["protocolMapper"] == "oidc-audience-mapper")
        .expect("an audience mapper");
    assert_eq!(mapper["config"]["access.token.claim"], "true");
    let audience = mapper["config"]["included.client.audience"]
        .as_str()
        .unwrap();
    let service_account = realm["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["serviceAccountClientId"] == "kserve-client");
    assert!(
        service_account.is_some(),
        "no service-account user for kserve-client"
    );

    let config = compose_plugin_config();
    let provider = &config.providers[0];
    let services = compose_services();
    let hostname = services["keycloak"]["environment"]["KC_HOSTNAME"]
        .as_str()
        .unwrap();
    let realm_name = realm["realm"].as_str().unwrap();
    assert_eq!(provider.issuer, format!("{hostname}/realms/{realm_name}"));
    assert_eq!(provider.audiences, vec![audience.to_string()]);
}

// Keycloak's version is pinned once, in the Makefile (`make keycloak`); the compose file and the
// defaults of the demo script and the test harness name the same one.
#[test]
fn keycloak_version_is_pinned_once() {
    let makefile = fs::read_to_string(repo().join("Makefile")).unwrap();
    let version = makefile
        .lines()
        .find_map(|line| line.strip_prefix("KEYCLOAK_VERSION := "))
        .expect("KEYCLOAK_VERSION in the Makefile")
        .trim()
        .to_string();
    let compose = fs::read_to_string(repo().join("envoy/docker-compose.yaml")).unwrap();
    assert!(
        compose.contains(&format!("image: quay.io/keycloak/keycloak:{version}")),
        "docker-compose.yaml does not run Keycloak {version}"
    );
    for file in ["demo/run.sh", "tests/e2e/support/keycloak.rs"] {
        let text = fs::read_to_string(repo().join(file)).unwrap();
        assert!(
            text.contains(&format!("keycloak-{version}")),
            "{file} does not default to Keycloak {version}"
        );
    }
}
