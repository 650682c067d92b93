//! `kserve-auth token` and `kserve-auth curl` against the demo's real stack: tokens from the real
//! OpenID provider (client credentials, and the device flow approved through the provider's own
//! pages), the real Envoy with the filter publishing RFC 9728 metadata, and the real KServe model.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::support::browser::Browser;
use crate::support::cli::{kserve_auth, run_kserve_auth, stderr, stdout};
use crate::support::demo::{DemoStack, Scratch, CLIENT_ID, CLIENT_SECRET, V1_PREDICT};
use crate::support::server::{HttpServer, Reply};

/// The demo provider's public client for people at a terminal.
const CLI_CLIENT: &str = "demo-cli";
const PREDICT_BODY: &str = r#"{"instances": [[1, 2, 3]]}"#;

fn run(args: &[&str], cache: &Path, env: &[(&str, &str)]) -> Output {
    run_kserve_auth(args, cache, env)
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn cached_tokens(cache: &Path) -> Value {
    serde_json::from_slice::<Value>(&fs::read(cache).unwrap()).unwrap()["tokens"].clone()
}

/// How many tokens the provider issued to `client` by `grant`.
fn issued(stack: &DemoStack, client: &str, grant: &str) -> usize {
    let line = format!("issued an access token to {client} ({grant})");
    stack.op.log().matches(&line).count()
}

fn predict_url(stack: &DemoStack) -> String {
    format!("{}{V1_PREDICT}", stack.resource())
}

/// `kserve-auth curl` of a V1 predict with `extra` arguments.
fn curl_predict(stack: &DemoStack, cache: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let url = predict_url(stack);
    let mut args = vec![
        "curl",
        url.as_str(),
        "-H",
        "content-type: application/json",
        "-d",
        PREDICT_BODY,
    ];
    args.extend_from_slice(extra);
    run(&args, cache, env)
}

fn assert_predicted_for(output: &Output, subject: &str) {
    assert!(
        output.status.success(),
        "{}\n{}",
        stdout(output),
        stderr(output)
    );
    let answer: Value = serde_json::from_str(&stdout(output)).unwrap();
    assert_eq!(answer["predictions"], json!([6.0]), "{answer}");
    assert_eq!(answer["caller"]["x-jwt-sub"], subject, "{answer}");
}

// Client credentials: `token` prints only the token, caches it in a file only its owner can
// read, and reuses it; the secret is read from the environment and refused on the command line.
// `curl` starting from nothing reaches the model by following the 401's resource_metadata
// alone, remembers the authorization server, sends DPoP proofs for a DPoP-bound token, and
// renews a refused token once, never twice.
#[test]
fn client_credentials_token_and_curl_from_a_401() {
    let stack = DemoStack::start("600s");
    let scratch = Scratch::new("callers");
    let cache = scratch.path().join("cache").join("tokens.json");
    let issuer = stack.op.issuer();
    let secret = [("KSERVE_AUTH_CLIENT_SECRET", CLIENT_SECRET)];
    let token_args = ["token", "--issuer", &issuer, "--client-id", CLIENT_ID];

    let output = run(&token_args, &cache, &secret);
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output);
    assert_eq!(printed.lines().count(), 1, "only the token is printed");
    let token = printed.trim().to_owned();
    assert_eq!(claims(&token)["aud"], CLIENT_ID);
    assert_eq!(stack.predict(Some(&token)).status, 200);
    assert_eq!(mode(&cache), 0o600);
    assert_eq!(mode(cache.parent().unwrap()), 0o700);
    // From the cache: the same token, no new one issued.
    let before = issued(&stack, CLIENT_ID, "client_credentials");
    let again = run(&token_args, &cache, &secret);
    assert_eq!(stdout(&again).trim(), token);
    assert_eq!(issued(&stack, CLIENT_ID, "client_credentials"), before);

    // Secrets never come from the command line.
    let mut with_secret_argument = token_args.to_vec();
    with_secret_argument.extend(["--client-secret", CLIENT_SECRET]);
    let refused = run(&with_secret_argument, &cache, &[]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    // A wrong secret: the provider's error, no token, exit 1.
    let wrong = run(
        &[
            "token",
            "--issuer",
            &issuer,
            "--client-id",
            CLIENT_ID,
            "--no-cache",
        ],
        &cache,
        &[("KSERVE_AUTH_CLIENT_SECRET", "wrong")],
    );
    assert_eq!(wrong.status.code(), Some(1));
    assert!(stdout(&wrong).is_empty());
    assert!(
        stderr(&wrong).contains("invalid_client"),
        "{}",
        stderr(&wrong)
    );

    // curl from nothing: no issuer, an empty cache.
    let fresh = scratch.path().join("fresh.json");
    let output = curl_predict(&stack, &fresh, &["--client-id", CLIENT_ID], &secret);
    assert_predicted_for(&output, CLIENT_ID);
    assert!(
        stderr(&output).contains(&format!("takes tokens from {issuer}")),
        "{}",
        stderr(&output)
    );
    // The second call sends the cached token at once.
    let before = issued(&stack, CLIENT_ID, "client_credentials");
    let output = curl_predict(&stack, &fresh, &["--client-id", CLIENT_ID], &secret);
    assert_predicted_for(&output, CLIENT_ID);
    assert!(
        !stderr(&output).contains("takes tokens from"),
        "{}",
        stderr(&output)
    );
    assert_eq!(issued(&stack, CLIENT_ID, "client_credentials"), before);
    // A remembered server that gives no token any more: curl asks the resource again.
    let mut file: Value = serde_json::from_slice(&fs::read(&fresh).unwrap()).unwrap();
    file["issuers"][stack.resource()] = json!("http://127.0.0.1:9");
    fs::write(&fresh, file.to_string()).unwrap();
    let output = curl_predict(&stack, &fresh, &["--client-id", CLIENT_ID], &secret);
    assert_predicted_for(&output, CLIENT_ID);
    assert!(
        stderr(&output).contains("asking the resource again"),
        "{}",
        stderr(&output)
    );
    assert!(stderr(&output).contains(&format!("takes tokens from {issuer}")));

    // DPoP: the provider binds the token to the program's key; each request carries a proof
    // (the filter refuses a bound token without one).
    let bound = scratch.path().join("dpop.json");
    let output = curl_predict(
        &stack,
        &bound,
        &["--client-id", CLIENT_ID, "--dpop"],
        &secret,
    );
    assert_predicted_for(&output, CLIENT_ID);
    let entries = cached_tokens(&bound);
    let entry = entries.as_object().unwrap().values().next().unwrap();
    assert_eq!(entry["token_type"], "DPoP");
    assert!(entry["dpop_key"].is_string());
    let token = entry["access_token"].as_str().unwrap();
    assert!(claims(token)["cnf"]["jkt"].is_string());
    assert_eq!(
        stack.predict(Some(token)).status,
        401,
        "bound token as Bearer"
    );

    // A token the filter keeps refusing is renewed once, then the 401 is the answer.
    let runs = scratch.path().join("runs");
    let command = format!("echo run >> {}; echo not.a.jwt", runs.display());
    let output = curl_predict(
        &stack,
        &scratch.path().join("command.json"),
        &["--token-command", &command],
        &[],
    );
    assert_eq!(output.status.code(), Some(22), "{}", stderr(&output));
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&output)).unwrap()["error"],
        "invalid_token"
    );
    assert_eq!(fs::read_to_string(&runs).unwrap().lines().count(), 2);
    assert_eq!(stderr(&output).matches("renewing it once").count(), 1);
}

/// Starts `kserve-auth token --flow device` and returns it with the URL it shows the person.
fn start_device_flow(stack: &DemoStack, cache: &Path) -> (std::process::Child, String) {
    let issuer = stack.op.issuer();
    let mut child = kserve_auth(
        &[
            "token",
            "--flow",
            "device",
            "--issuer",
            &issuer,
            "--client-id",
            CLI_CLIENT,
            "--scope",
            "predict",
        ],
        cache,
        &[],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .strip_prefix("To sign in, open ")
        .unwrap_or_else(|| panic!("unexpected prompt: {first}"))
        .to_owned();
    // Keep draining the rest so the program never blocks on a full pipe.
    thread::spawn(move || for _ in lines {});
    (child, url)
}

// The device flow: the program shows a URL, a person approves it on the provider's own pages
// and the program prints the token. A cached token the filter refuses is refreshed with the
// refresh token, once, and the call goes through.
#[test]
fn device_flow_and_refresh_on_invalid_token() {
    let stack = DemoStack::start("600s");
    let scratch = Scratch::new("device");
    let cache = scratch.path().join("tokens.json");

    let (child, url) = start_device_flow(&stack, &cache);
    assert!(url.contains("/device?user_code="), "{url}");
    let page =
        Browser::new(([127, 0, 0, 1], stack.op.port()).into()).approve(&url, &[("login", "ada")]);
    assert!(page.text().contains("Sign-in Success"), "{}", page.text());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let token = stdout(&output).trim().to_owned();
    assert_eq!(claims(&token)["sub"], "ada");
    assert_eq!(claims(&token)["aud"], CLIENT_ID);

    // Damage the cached token's signature: the filter refuses it as invalid_token.
    let mut file: Value = serde_json::from_slice(&fs::read(&cache).unwrap()).unwrap();
    let (_, entry) = file["tokens"]
        .as_object_mut()
        .unwrap()
        .iter_mut()
        .next()
        .unwrap();
    assert!(entry["refresh_token"].is_string());
    let mut damaged = entry["access_token"].as_str().unwrap().to_owned();
    let last = damaged.pop().unwrap();
    damaged.push(if last == 'A' { 'B' } else { 'A' });
    entry["access_token"] = json!(damaged);
    fs::write(&cache, file.to_string()).unwrap();

    let refreshed_before = issued(&stack, CLI_CLIENT, "refresh_token");
    let output = curl_predict(
        &stack,
        &cache,
        &["--client-id", CLI_CLIENT, "--scope", "predict"],
        &[],
    );
    assert_predicted_for(&output, "ada");
    assert_eq!(
        stderr(&output).matches("renewing it once").count(),
        1,
        "{}",
        stderr(&output)
    );
    assert_eq!(
        issued(&stack, CLI_CLIENT, "refresh_token"),
        refreshed_before + 1
    );
    assert_eq!(mode(&cache), 0o600);
}

// A 503 with Retry-After is retried after the wait while the total wait stays within
// --max-wait; beyond it, the 503 is the answer.
#[test]
fn curl_waits_out_retry_after_within_its_bound() {
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&requests);
    let mut server = HttpServer::start_new(
        Arc::new(move |_request| {
            if counter.fetch_add(1, Ordering::SeqCst) < 2 {
                let mut reply = Reply::json(503, r#"{"error":"temporarily_unavailable"}"#);
                reply.headers.push(("retry-after", "1".to_owned()));
                reply
            } else {
                Reply::json(200, r#"{"ok":true}"#)
            }
        }),
        false,
    );
    let scratch = Scratch::new("retry");
    let cache: PathBuf = scratch.path().join("tokens.json");
    let url = format!("http://{}/v1/models/m", server.addr());
    let started = Instant::now();
    let output = run(&["curl", &url, "--token-command", "echo t"], &cache, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), r#"{"ok":true}"#);
    assert_eq!(requests.load(Ordering::SeqCst), 3);
    assert!(started.elapsed() >= Duration::from_secs(2));

    requests.store(0, Ordering::SeqCst);
    let output = run(
        &["curl", &url, "--token-command", "echo t", "--max-wait", "0"],
        &cache,
        &[],
    );
    assert_eq!(output.status.code(), Some(22));
    assert_eq!(requests.load(Ordering::SeqCst), 1);
    server.stop();
}

/// A resource that answers every request with 401 whose challenge names `metadata_url`, and
/// serves `document` at the well-known path (both made from the server's own address).
fn misleading_resource(
    metadata_url: impl Fn(SocketAddr) -> String + Send + Sync + 'static,
    document: impl Fn(SocketAddr) -> Value + Send + Sync + 'static,
) -> HttpServer {
    let mut server = HttpServer::reserve(
        Arc::new(move |request| {
            // The server's own address, as the client named it.
            let addr: SocketAddr = request.header("host").unwrap().parse().unwrap();
            if request
                .path
                .starts_with("/.well-known/oauth-protected-resource")
            {
                return Reply::json(200, document(addr).to_string());
            }
            let mut reply = Reply::json(401, r#"{"error":"unauthorized"}"#);
            reply.headers.push((
                "www-authenticate",
                format!(
                    "Bearer realm=\"x\", resource_metadata=\"{}\"",
                    metadata_url(addr)
                ),
            ));
            reply
        }),
        false,
    );
    server.start();
    server
}

// curl believes a resource's metadata only when it describes that resource: metadata on another
// origin, or a document naming another resource, gets no token request and no secret.
#[test]
fn curl_refuses_metadata_for_another_resource() {
    let scratch = Scratch::new("metadata");
    let cache = scratch.path().join("tokens.json");
    let secret = [("KSERVE_AUTH_CLIENT_SECRET", "s")];
    let cases: Vec<(HttpServer, &str)> = vec![
        (
            misleading_resource(
                |_| "http://127.0.0.1:9/.well-known/oauth-protected-resource".to_owned(),
                |_| json!({}),
            ),
            "is not on the origin of",
        ),
        (
            misleading_resource(
                |addr| format!("http://{addr}/.well-known/oauth-protected-resource"),
                |_| {
                    json!({"resource": "https://elsewhere.example.com",
                           "authorization_servers": ["http://127.0.0.1:9"]})
                },
            ),
            "describes resource \"https://elsewhere.example.com\"",
        ),
        (
            misleading_resource(
                |addr| format!("http://{addr}/.well-known/oauth-protected-resource"),
                |addr| json!({"resource": format!("http://{addr}"), "authorization_servers": []}),
            ),
            "names no authorization_servers",
        ),
        (
            misleading_resource(
                |addr| format!("http://{addr}/.well-known/oauth-protected-resource"),
                |addr| {
                    json!({"resource": format!("http://{addr}"),
                              "authorization_servers": ["http://idp.example.com"]})
                },
            ),
            "must be an https:// URL",
        ),
    ];
    for (server, expected) in cases {
        let url = format!("http://{}/v1/models/m:predict", server.addr());
        let output = run(&["curl", &url, "--client-id", "c"], &cache, &secret);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{expected}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(expected),
            "{expected}: {}",
            stderr(&output)
        );
        assert!(stdout(&output).is_empty());
    }
}
