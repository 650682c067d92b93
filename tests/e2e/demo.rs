//! The demo's real stack: tokens from a real OpenID provider (npm oidc-provider, client
//! credentials), Envoy configured by `envoy/demo.yaml` (keys found through OIDC discovery), and
//! a real KServe model server behind it. Also `demo/run.sh` itself, as `make demo` runs it.
//!
//! Every process listens on a loopback port chosen at run time and is killed when the test
//! ends, whether it passes or fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::cli::kserve_auth_bin;
use crate::support::demo::*;
use crate::support::envoy::{envoy_bin, poll};
use crate::support::http::DEFAULT_HOST;
use crate::support::keys::header_json;
use crate::support::server::free_port;
use crate::support::*;
use serde_json::{json, Value};

/// The filter's counter of successful key fetches for the demo's provider.
const FETCH_SUCCESS: &str = "wasmcustom.kserve_auth.jwks.demo.fetch_success";
/// The filter's counter of failed key fetches for the demo's provider.
const FETCH_FAILURE: &str = "wasmcustom.kserve_auth.jwks.demo.fetch_failure";

/// What the demo model says about the caller: the identity headers it received, and whether
/// an Authorization header reached it.
fn caller(sub: &str, client: &str) -> Value {
    json!({"x-jwt-sub": sub, "x-jwt-client": client, "authorization": "absent"})
}

fn kid(token: &str) -> String {
    header_json(token)["kid"].as_str().unwrap().to_string()
}

/// 401 `invalid_token`, whatever the reason.
fn assert_refused_token(response: &Response) {
    assert_eq!(response.status, 401, "body: {}", response.text());
    assert_eq!(
        response.json()["error"],
        "invalid_token",
        "{}",
        response.text()
    );
}

/// 401 "Jwt is missing" whose Bearer challenge links the demo's RFC 9728 metadata.
fn assert_missing_with_metadata(stack: &DemoStack, response: &Response) {
    assert_eq!(response.status, 401, "body: {}", response.text());
    let metadata = format!("{}/.well-known/oauth-protected-resource", stack.resource());
    assert_eq!(
        response.header("www-authenticate"),
        Some(format!("Bearer realm=\"{DEFAULT_HOST}\", resource_metadata=\"{metadata}\"").as_str())
    );
    assert_eq!(
        response.json(),
        json!({"error": "unauthorized", "error_description": "Jwt is missing"})
    );
}

/// The demo publishes RFC 9728 metadata naming its provider, without a token, so a client can
/// start from a 401 alone.
fn assert_publishes_metadata(stack: &DemoStack) {
    let response = stack
        .envoy
        .get("/.well-known/oauth-protected-resource", &[]);
    assert_eq!(response.status, 200, "body: {}", response.text());
    let document = response.json();
    assert_eq!(document["resource"], stack.resource());
    assert_eq!(
        document["authorization_servers"],
        json!([stack.op.issuer()])
    );
    assert_eq!(document["bearer_methods_supported"], json!(["header"]));
    assert_eq!(
        document["dpop_signing_alg_values_supported"],
        json!(["ES256", "EdDSA"])
    );
}

// A token from the real provider passes V1 predict and V2 infer; the model server sees the
// caller's identity headers and no Authorization header; requests without a valid token never
// reach it; health stays public.
#[test]
fn provider_token_reaches_the_model_over_v1_and_v2() {
    let stack = DemoStack::start("600s");
    let token = stack.op.token();
    // The provider issues what the filter is configured for: an RS256 JWT access token.
    assert_eq!(header_json(&token)["alg"], "RS256");
    assert_eq!(header_json(&token)["typ"], "at+jwt");

    // Health and the resource's metadata are public.
    assert_eq!(stack.envoy.get("/v2/health/ready", &[]).status, 200);
    assert_publishes_metadata(&stack);

    // Without a token: 401 whose challenge links the RFC 9728 metadata, for V1 and V2.
    assert_missing_with_metadata(&stack, &stack.predict(None));
    let v2_body = r#"{"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32",
                       "data": [1, 2, 3, 4, 5, 6]}]}"#;
    assert_missing_with_metadata(&stack, &stack.post(V2_INFER, None, v2_body));

    // V1 predict with the token: the model answers and names the caller.
    let response = stack.predict(Some(&token));
    assert_eq!(response.status, 200, "body: {}", response.text());
    assert_eq!(
        response.json(),
        json!({"predictions": [6.0], "caller": caller(CLIENT_ID, CLIENT_ID)})
    );

    // V2 infer with the token.
    let response = stack.post(V2_INFER, Some(&token), v2_body);
    assert_eq!(response.status, 200, "body: {}", response.text());
    let body = response.json();
    assert_eq!(body["model_name"], MODEL);
    assert_eq!(body["outputs"][0]["data"], json!([6.0, 15.0]));
    assert_eq!(
        body["parameters"],
        json!({"caller_x_jwt_sub": CLIENT_ID, "caller_x_jwt_client": CLIENT_ID,
               "caller_authorization": "absent"})
    );

    // Identity headers sent by the client are replaced by the token's claims.
    let response = stack.post_with(
        V1_PREDICT,
        Some(&token),
        &[("x-jwt-sub", "mallory"), ("x-jwt-client", "mallory")],
        r#"{"instances": [[1, 2, 3]]}"#,
    );
    assert_eq!(response.json()["caller"], caller(CLIENT_ID, CLIENT_ID));

    // A token whose signature was altered is refused.
    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert_refused_token(&stack.predict(Some(&tampered)));

    // A wrong client secret gets no token at all.
    assert_eq!(
        stack.op.token_response(CLIENT_ID, "wrong-secret").status,
        401
    );

    // Only the requests with a valid token reached the model server.
    let predictions = stack.model.log().matches("predict from sub=").count();
    assert_eq!(predictions, 3, "model log:\n{}", stack.model.log());
}

// A key rotation at the provider (new key published, then signing, then the old one removed
// after a grace period) needs no Envoy restart: new tokens pass at once, old ones pass during the
// grace period and are refused once Envoy's next refresh no longer finds their key.
#[test]
fn key_rotation_at_the_provider_needs_no_envoy_restart() {
    // A 20 s key cache (refresh at 16 s) lets the test see the end of the grace period.
    let stack = DemoStack::start("20s");
    let first = stack.op.published_kids();
    assert_eq!(first.len(), 1);
    let old_token = stack.op.token();
    assert_eq!(kid(&old_token), first[0]);
    assert_eq!(stack.predict(Some(&old_token)).status, 200);

    // Step 1: a new key is published but does not sign yet.
    let published = stack.op.rotate("add");
    assert_eq!(published.len(), 2);
    assert_eq!(published[0], first[0]);
    let new_kid = published[1].clone();
    assert_eq!(kid(&stack.op.token()), first[0]);

    // Step 2: the new key signs. Envoy has never seen it; the first request carrying it makes
    // the filter refetch the key set, and passes.
    assert_eq!(
        stack.op.rotate("promote"),
        vec![new_kid.clone(), first[0].clone()]
    );
    let new_token = stack.op.token();
    assert_eq!(kid(&new_token), new_kid);
    let fetches = stack.envoy.counter(FETCH_SUCCESS).unwrap();
    let response = stack.predict(Some(&new_token));
    assert_eq!(response.status, 200, "body: {}", response.text());
    assert!(stack.envoy.counter(FETCH_SUCCESS).unwrap() > fetches);
    // The old key is still published: tokens signed with it still pass.
    assert_eq!(stack.predict(Some(&old_token)).status, 200);

    // Step 3: the old key is removed. New tokens keep passing ...
    assert_eq!(stack.op.rotate("retire"), vec![new_kid.clone()]);
    assert_eq!(stack.predict(Some(&stack.op.token())).status, 200);
    // ... and once Envoy refreshes the key set, tokens signed with the retired key are refused.
    let refused = poll(Duration::from_secs(40), || {
        let response = stack.predict(Some(&old_token));
        (response.status != 200).then_some(response)
    })
    .expect("a token signed with the retired key still passes 40 s after its removal");
    assert_refused_token(&refused);
    assert_eq!(stack.predict(Some(&new_token)).status, 200);
}

// With the provider stopped, Envoy keeps serving from the keys it fetched until they expire,
// then answers 503; the provider's keys survive its restart, and Envoy recovers by itself.
#[test]
fn cached_keys_serve_while_the_provider_is_down() {
    let cache = Duration::from_secs(8);
    let mut stack = DemoStack::start("8s");
    let started = Instant::now();
    let token = stack.op.token();
    let kids = stack.op.published_kids();
    assert_eq!(stack.predict(Some(&token)).status, 200);

    stack.op.stop();
    // Served from the cached keys until they expire; the refresh at 80 % fails meanwhile.
    let unavailable = poll(Duration::from_secs(30), || {
        let response = stack.predict(Some(&token));
        (response.status != 200).then_some(response)
    })
    .expect("still serving 30 s after the provider stopped");
    let served_for = started.elapsed();
    assert_keys_unavailable(&unavailable);
    assert!(
        served_for >= cache - Duration::from_secs(2),
        "keys given up after {served_for:?}, before the {cache:?} cache duration"
    );
    assert!(stack.envoy.counter(FETCH_FAILURE).unwrap() >= 1);

    // Restarted, the provider publishes and signs with the same keys.
    stack.op.restart();
    assert_eq!(stack.op.published_kids(), kids);
    let fresh = stack.op.token();
    assert_eq!(kid(&fresh), kids[0]);
    // Envoy's retry picks the keys up again: old and new tokens pass.
    poll(Duration::from_secs(45), || {
        (stack.predict(Some(&token)).status == 200).then_some(())
    })
    .expect("Envoy did not recover after the provider came back");
    assert_eq!(stack.predict(Some(&fresh)).status, 200);
}

/// `demo/run.sh` running; stopped with SIGTERM (which it forwards) if the test ends first.
struct DemoScript {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl DemoScript {
    fn start(ports: &[(&str, u16)], state: &Path, env: &[(&str, String)]) -> DemoScript {
        // A terminal's Ctrl-C reaches a shell whose SIGINT is in its default state; a shell
        // that inherits SIGINT ignored (a test run started in the background) cannot trap it.
        let mut command = Command::new("env");
        command
            .args(["--default-signal=INT", "bash"])
            .arg(repo().join("demo/run.sh"))
            .env("DEMO_STATE_DIR", state)
            .env("ENVOY_BIN", envoy_bin())
            .env("KSERVE_PYTHON", kserve_python())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, port) in ports {
            command.env(name, port.to_string());
        }
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("run demo/run.sh");
        let (sender, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let sender = sender.clone();
            thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = sender.send(line);
                }
            });
        }
        DemoScript { child, lines }
    }

    /// Lines printed until one contains `marker`; panics with them after `timeout`.
    fn read_until(&self, marker: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.contains(marker);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "demo/run.sh never printed {marker:?}; it printed:\n{}",
            seen.join("\n")
        );
    }

    fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status();
    }

    /// Waits for the script to exit; `None` if it is still running after `timeout`.
    fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        poll(timeout, || self.child.try_wait().ok().flatten())
    }
}

impl Drop for DemoScript {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.signal("TERM");
            if self.wait(Duration::from_secs(15)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )
    .is_ok()
}

// `demo/run.sh` (what `make demo` runs) comes up, the four commands it prints work as printed,
// and Ctrl-C (SIGINT) stops every process it started.
#[test]
fn demo_script_prints_working_commands_and_stops_on_ctrl_c() {
    run_demo_script(&[], |caller_seen| {
        assert_eq!(caller_seen, &caller(CLIENT_ID, CLIENT_ID));
    });
}

// `make demo IDP=keycloak`: the same with a real Keycloak importing the compose realm file (started
// after the tests' shared Keycloak is up, so the two never prepare the installation at once).
#[test]
fn demo_script_with_keycloak() {
    crate::support::keycloak::keycloak();
    let home = std::env::var("KEYCLOAK_HOME").unwrap_or_else(|_| {
        repo()
            .join(".venv/keycloak/keycloak-26.7.3")
            .display()
            .to_string()
    });
    run_demo_script(
        &[("IDP", "keycloak".to_owned()), ("KEYCLOAK_HOME", home)],
        |caller_seen| {
            assert_eq!(caller_seen["x-jwt-client"], "kserve-client");
            assert_eq!(caller_seen["authorization"], "absent");
            assert!(caller_seen["x-jwt-sub"]
                .as_str()
                .is_some_and(|sub| !sub.is_empty()));
        },
    );
}

/// Runs `demo/run.sh` with `env` on free ports, runs the commands it prints as printed, checks
/// the model's answer names the caller as `check_caller` expects, and stops it with Ctrl-C.
fn run_demo_script(env: &[(&str, String)], check_caller: impl Fn(&Value)) {
    let ports = [
        ("DEMO_OP_PORT", free_port()),
        ("DEMO_MODEL_PORT", free_port()),
        ("DEMO_ENVOY_PORT", free_port()),
        ("DEMO_ADMIN_PORT", free_port()),
    ];
    let state = Scratch::new("run");
    let mut script = DemoScript::start(&ports, state.path(), env);
    let printed = script.read_until("Ctrl-C stops everything", Duration::from_secs(240));

    let token_commands: Vec<&String> = printed
        .iter()
        .filter(|l| l.starts_with("TOKEN=$("))
        .collect();
    let curl_commands: Vec<&String> = printed.iter().filter(|l| l.starts_with("curl ")).collect();
    let kserve_auth_commands: Vec<String> = printed
        .iter()
        .filter(|l| l.starts_with("KSERVE_AUTH_CLIENT_SECRET="))
        .map(|l| {
            l.replace(
                "target/release/kserve-auth",
                &kserve_auth_bin().display().to_string(),
            )
        })
        .collect();
    assert_eq!(token_commands.len(), 1, "printed:\n{}", printed.join("\n"));
    assert_eq!(curl_commands.len(), 2, "printed:\n{}", printed.join("\n"));
    assert_eq!(
        kserve_auth_commands.len(),
        1,
        "printed:\n{}",
        printed.join("\n")
    );
    let session = format!(
        "set -e\n{}\necho '--- without'\n{}\necho\necho '--- with'\n{}\necho\n\
         echo '--- kserve-auth'\n{}\n",
        token_commands[0], curl_commands[0], curl_commands[1], kserve_auth_commands[0]
    );
    let output = Command::new("bash")
        .args(["-c", &session])
        .env("KSERVE_AUTH_CACHE", state.path().join("tokens.json"))
        .output()
        .expect("run the printed commands");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the printed commands failed:\n{session}\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (without, rest) = stdout
        .split_once("--- without\n")
        .and_then(|(_, rest)| rest.split_once("--- with\n"))
        .unwrap_or_else(|| panic!("unexpected output:\n{stdout}"));
    let (with, by_kserve_auth) = rest
        .split_once("--- kserve-auth\n")
        .unwrap_or_else(|| panic!("unexpected output:\n{stdout}"));
    // Command 2: refused by the filter.
    assert!(without.starts_with("HTTP/1.1 401"), "{without}");
    assert!(without.contains(r#"{"error":"unauthorized","error_description":"Jwt is missing"}"#));
    // Command 3: answered by the model, which names the caller.
    let answer: Value = serde_json::from_str(with.trim()).unwrap_or_else(|e| panic!("{e}: {with}"));
    assert_eq!(answer["predictions"], json!([6.0]), "{answer}");
    check_caller(&answer["caller"]);
    // Command 4: kserve-auth got the token itself.
    let answer: Value = serde_json::from_str(by_kserve_auth.trim())
        .unwrap_or_else(|e| panic!("{e}: {by_kserve_auth}"));
    assert_eq!(answer["predictions"], json!([6.0]), "{answer}");
    check_caller(&answer["caller"]);

    // Ctrl-C: the script stops everything and exits cleanly.
    script.signal("INT");
    let status = script
        .wait(Duration::from_secs(30))
        .expect("demo/run.sh still running 30 s after SIGINT");
    assert!(status.success(), "exit status {status:?}");
    for (name, port) in ports {
        assert!(!listening(port), "{name} {port} still answers after Ctrl-C");
    }
}
