//! Sender-constrained tokens through a real Envoy: DPoP proofs (RFC 9449) made by the test with
//! ES256 and RS256 keys, the replay set shared by the workers of one Envoy, and certificate-bound
//! tokens (RFC 8705) on a TLS listener that asks for client certificates.

use std::fs;
use std::path::Path;
use std::process::Command;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use crate::support::cli::{run_kserve_auth, stderr, stdout};
use crate::support::demo::{repo, DemoStack, Scratch, CLIENT_ID, CLIENT_SECRET, V1_PREDICT};
use crate::support::envoy::{
    bootstrap_with_listeners, upstream_clusters, upstream_listener, WasmFilter,
};
use crate::support::http::DEFAULT_HOST;
use crate::support::keys::{forged_token, hs256_token, now};
use crate::support::*;
use kserve_auth_filter::jose::thumbprint::{access_token_hash, key_thumbprint};

/// The provider of [`plugin_config`] with `binding` fields added.
fn bound_provider(server: &JwksServer, binding: Value) -> Value {
    let mut provider = remote_provider(server);
    for (name, value) in binding.as_object().unwrap() {
        provider[name] = value.clone();
    }
    provider
}

fn dpop_stack(issuer: &TestKey, mode: &str, concurrency: u32) -> Stack {
    let server = JwksServer::start(jwks(&[issuer]));
    let config = plugin_config(bound_provider(
        &server,
        json!({"dpop": {"mode": mode, "algorithms": ["ES256", "RS256"]}}),
    ));
    let upstream = EchoUpstream::start();
    let mut envoy_config = EnvoyConfig::with_filter(&config, server.port(), upstream.port());
    envoy_config.concurrency = concurrency;
    let envoy = Envoy::start(&envoy_config);
    Stack {
        envoy,
        jwks: server,
        upstream,
    }
}

/// RFC 7638 thumbprint of a key's public JWK.
fn thumbprint(key: &TestKey) -> String {
    let mut jwk = key.public_jwk();
    jwk.as_object_mut().unwrap().remove("kid");
    key_thumbprint(jwk.as_object().unwrap()).unwrap()
}

/// An access token bound to `holder`'s key.
fn bound_token(issuer: &TestKey, holder: &TestKey) -> String {
    let mut claims = good_claims("alice");
    claims["cnf"] = json!({"jkt": thumbprint(holder)});
    issuer.sign(&claims)
}

/// The claims of a good proof for `GET path` on the test's host with `token`.
fn proof_claims(token: &str, path: &str, jti: &str) -> Value {
    json!({"htm": "GET", "htu": format!("http://{DEFAULT_HOST}{path}"), "iat": now(),
           "jti": jti, "ath": access_token_hash(token)})
}

/// A proof by `holder` for `method url`, bound to `token` when there is one (a token request's
/// proof has no `ath`).
fn proof_for(holder: &TestKey, method: &str, url: &str, token: Option<&str>, jti: &str) -> String {
    let mut claims = json!({"htm": method, "htu": url, "iat": now(), "jti": jti});
    if let Some(token) = token {
        claims["ath"] = json!(access_token_hash(token));
    }
    proof(holder, &claims)
}

/// A proof by `holder` with these claims; its header carries `holder`'s public key.
fn proof(holder: &TestKey, claims: &Value) -> String {
    let mut jwk = holder.public_jwk();
    jwk.as_object_mut().unwrap().remove("kid");
    let header = json!({"typ": "dpop+jwt", "alg": holder.alg(), "jwk": jwk});
    holder.sign_jws(&header, claims)
}

fn with_dpop(stack: &Stack, token: &str, proofs: &[&str]) -> Response {
    let authorization = format!("DPoP {token}");
    let mut headers = vec![("authorization", authorization.as_str())];
    headers.extend(proofs.iter().map(|proof| ("dpop", *proof)));
    stack.get(PROTECTED_PATH, &headers)
}

fn challenges(response: &Response) -> Vec<String> {
    response
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, value)| value.clone())
        .collect()
}

/// 401 with `error` and `description` in the DPoP challenge, which names the proof algorithms,
/// and in the JSON body.
fn assert_dpop_refusal(response: &Response, error: &str, description: &str) {
    assert_eq!(response.status, 401, "{description}: {}", response.text());
    let dpop = format!(
        "DPoP realm=\"{DEFAULT_HOST}\", error=\"{error}\", error_description=\"{description}\", \
         algs=\"RS256 ES256\""
    );
    assert_eq!(challenges(response), [dpop], "{description}");
    assert_eq!(
        response.json(),
        json!({"error": error, "error_description": description})
    );
}

// Proofs from ES256 and RS256 keys are accepted; neither the token nor the proof goes upstream.
#[test]
fn proofs_from_es256_and_rs256_keys_are_accepted() {
    let issuer = TestKey::es256("issuer");
    let stack = dpop_stack(&issuer, "required", 1);
    for (index, holder) in [TestKey::es256(""), TestKey::rs256("rsa-a", "")]
        .iter()
        .enumerate()
    {
        let token = bound_token(&issuer, holder);
        let jti = format!("accepted-{index}");
        let proof = proof(holder, &proof_claims(&token, PROTECTED_PATH, &jti));
        let response = with_dpop(&stack, &token, &[&proof]);
        let echo = Echo::from_response(&response);
        assert_eq!(echo.header(SUB_HEADER).as_deref(), Some("alice"));
        assert_eq!(echo.header("authorization"), None);
        assert_eq!(echo.header("dpop"), None);
    }
}

// Every way a proof can fail gets its own answer, before the model server sees the request.
#[test]
fn proofs_that_do_not_fit_are_refused() {
    let issuer = TestKey::es256("issuer");
    let stack = dpop_stack(&issuer, "required", 1);
    let holder = TestKey::es256("");
    let thief = TestKey::es256("");
    let token = bound_token(&issuer, &holder);
    let changed = |jti: &str, change: Value| {
        let mut claims = proof_claims(&token, PROTECTED_PATH, jti);
        for (name, value) in change.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        proof(&holder, &claims)
    };
    let url = format!("http://{DEFAULT_HOST}{PROTECTED_PATH}");
    let cases = [
        (
            changed("htm", json!({"htm": "POST"})),
            "DPoP proof htm does not match the request method",
        ),
        (
            changed(
                "htu",
                json!({"htu": format!("http://{DEFAULT_HOST}/v2/models/other/infer")}),
            ),
            "DPoP proof htu does not match the request URL",
        ),
        (
            changed("query", json!({"htu": format!("{url}?x=1")})),
            "DPoP proof htu does not match the request URL",
        ),
        (
            changed("stale", json!({"iat": now() - 600})),
            "DPoP proof iat is outside the accepted window",
        ),
        (
            changed("future", json!({"iat": now() + 600})),
            "DPoP proof iat is outside the accepted window",
        ),
        (
            changed("no-ath", json!({"ath": null})),
            "DPoP proof ath does not match the access token",
        ),
        (
            changed("wrong-ath", json!({"ath": access_token_hash("another")})),
            "DPoP proof ath does not match the access token",
        ),
        (
            changed("", json!({"jti": null})),
            "DPoP proof has no usable jti",
        ),
    ];
    for (proof, description) in &cases {
        let response = with_dpop(&stack, &token, &[proof]);
        assert_dpop_refusal(&response, "invalid_dpop_proof", description);
    }

    // Signed by another key than the one in its header.
    let mut jwk = holder.public_jwk();
    jwk.as_object_mut().unwrap().remove("kid");
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
    let forged = thief.sign_jws(&header, &proof_claims(&token, PROTECTED_PATH, "forged"));
    let response = with_dpop(&stack, &token, &[&forged]);
    assert_dpop_refusal(
        &response,
        "invalid_dpop_proof",
        "DPoP proof signature is invalid",
    );
    // A good proof by a key the token is not bound to.
    let response = with_dpop(
        &stack,
        &token,
        &[&proof(
            &thief,
            &proof_claims(&token, PROTECTED_PATH, "thief"),
        )],
    );
    assert_dpop_refusal(
        &response,
        "invalid_token",
        "Jwt cnf.jkt does not match the DPoP proof key",
    );
    // A header carrying the private key.
    let mut private = jwk.clone();
    private["d"] = json!(URL_SAFE_NO_PAD.encode([7u8; 32]));
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": private});
    let leaky = holder.sign_jws(&header, &proof_claims(&token, PROTECTED_PATH, "private"));
    let response = with_dpop(&stack, &token, &[&leaky]);
    assert_dpop_refusal(
        &response,
        "invalid_dpop_proof",
        "DPoP proof has no usable public jwk",
    );
    // alg none, and HS256 keyed with anything.
    let claims = proof_claims(&token, PROTECTED_PATH, "none");
    let none = forged_token(
        &json!({"typ": "dpop+jwt", "alg": "none", "jwk": jwk}),
        &claims,
        "",
    );
    let response = with_dpop(&stack, &token, &[&none]);
    assert_dpop_refusal(
        &response,
        "invalid_dpop_proof",
        "DPoP proof algorithm is not allowed",
    );
    let hs256 = hs256_token(&[7u8; 32], "", &claims);
    let response = with_dpop(&stack, &token, &[&hs256]);
    assert_eq!(response.status, 401);
    assert!(challenges(&response)[0].contains("error=\"invalid_dpop_proof\""));
    // Two DPoP headers, each a good proof.
    let good = proof(&holder, &proof_claims(&token, PROTECTED_PATH, "twice"));
    let response = with_dpop(&stack, &token, &[&good, &good]);
    assert_dpop_refusal(
        &response,
        "invalid_dpop_proof",
        "DPoP proof is sent more than once",
    );
    // The bound token as a Bearer token.
    let response = stack.get_with_token(PROTECTED_PATH, &token);
    assert_dpop_refusal(
        &response,
        "invalid_token",
        "Jwt must be sent with the DPoP scheme",
    );
    // A replayed proof: the first use passes, the second does not.
    let once = proof(&holder, &proof_claims(&token, PROTECTED_PATH, "once"));
    assert_eq!(with_dpop(&stack, &token, &[&once]).status, 200);
    let response = with_dpop(&stack, &token, &[&once]);
    assert_dpop_refusal(
        &response,
        "invalid_dpop_proof",
        "DPoP proof jti was already used",
    );
    assert_eq!(
        stack.upstream.count(),
        1,
        "only the one good request went upstream"
    );
}

// Where DPoP is allowed, Bearer tokens still work, and a refusal challenges with both schemes.
#[test]
fn allowed_mode_challenges_with_both_schemes() {
    let issuer = TestKey::es256("issuer");
    let stack = dpop_stack(&issuer, "allowed", 1);
    let plain = issuer.sign(&good_claims("bob"));
    assert_eq!(stack.get_with_token(PROTECTED_PATH, &plain).status, 200);
    let response = stack.get(PROTECTED_PATH, &[]);
    assert_eq!(response.status, 401);
    assert_eq!(
        challenges(&response),
        [
            format!("Bearer realm=\"{DEFAULT_HOST}\""),
            format!("DPoP realm=\"{DEFAULT_HOST}\", algs=\"RS256 ES256\""),
        ]
    );
    let holder = TestKey::es256("");
    let bound = bound_token(&issuer, &holder);
    let response = stack.get_with_token(PROTECTED_PATH, &bound);
    assert_eq!(response.status, 401);
    let both = challenges(&response);
    assert_eq!(both[0], format!("Bearer realm=\"{DEFAULT_HOST}\""));
    assert!(
        both[1].contains(
            "error_description=\"Jwt is DPoP-bound and must be sent with the DPoP scheme\""
        ),
        "{both:?}"
    );
}

// The replay set is one per Envoy: with two workers, a proof accepted on one connection is a
// replay on every other, whichever worker takes it.
#[test]
fn a_replay_is_caught_across_workers() {
    let issuer = TestKey::es256("issuer");
    let stack = dpop_stack(&issuer, "required", 2);
    let holder = TestKey::es256("");
    let token = bound_token(&issuer, &holder);
    for round in 0..12 {
        let proof = proof(
            &holder,
            &proof_claims(&token, PROTECTED_PATH, &format!("round-{round}")),
        );
        // Each request is its own connection; the kernel spreads them over the workers.
        assert_eq!(with_dpop(&stack, &token, &[&proof]).status, 200);
        for _ in 0..3 {
            let response = with_dpop(&stack, &token, &[&proof]);
            assert_dpop_refusal(
                &response,
                "invalid_dpop_proof",
                "DPoP proof jti was already used",
            );
        }
    }
}

/// Runs `openssl` with `args` in `dir`, failing the test with its output if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (Debian package openssl)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and client certificates `a` and `b`, in `dir`.
fn make_certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=test CA",
        ],
    );
    fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    // Extensions make X.509 v3 certificates, the only version rustls (kserve-auth) presents.
    fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (name, subject, extensions) in [
        ("server", "/CN=127.0.0.1", "server.ext"),
        ("a", "/CN=client a", "client.ext"),
        ("b", "/CN=client b", "client.ext"),
    ] {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                subject,
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                extensions,
            ],
        );
    }
}

/// `x5t#S256` of a PEM certificate: base64url SHA-256 of its DER form.
fn certificate_thumbprint(dir: &Path, pem: &str) -> String {
    let der = format!("{pem}.der");
    openssl(dir, &["x509", "-in", pem, "-outform", "DER", "-out", &der]);
    let bytes = fs::read(dir.join(der)).unwrap();
    URL_SAFE_NO_PAD.encode(hmac_sha256::Hash::hash(&bytes))
}

/// A TLS listener on loopback that asks for (but does not require) a client certificate from
/// the test CA, with the filter in front of the echo upstream.
fn tls_listener(dir: &Path, filter: &WasmFilter) -> Value {
    let mut listener = upstream_listener("tls", vec![filter.http_filter()]);
    let file = |name: &str| json!({"filename": dir.join(name).display().to_string()});
    listener["filter_chains"][0]["transport_socket"] = json!({
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": false,
            "common_tls_context": {
                "tls_certificates": [{"certificate_chain": file("server.pem"),
                                      "private_key": file("server.key")}],
                "validation_context": {"trusted_ca": file("ca.pem")},
            },
        },
    });
    listener
}

/// `GET path` over TLS with curl, optionally presenting client certificate `client`.
fn curl_tls(dir: &Path, port: u16, token: &str, client: Option<&str>) -> (u16, String) {
    let url = format!("https://127.0.0.1:{port}{PROTECTED_PATH}");
    let authorization = format!("authorization: Bearer {token}");
    let mut command = Command::new("curl");
    command
        .current_dir(dir)
        .args(["-sS", "--cacert", "ca.pem", "-H", &authorization])
        .args(["-o", "-", "-w", "\n%{http_code}", &url]);
    if let Some(client) = client {
        command.args([
            "--cert",
            &format!("{client}.pem"),
            "--key",
            &format!("{client}.key"),
        ]);
    }
    let output = command.output().expect("run curl");
    assert!(
        output.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.trim().parse().unwrap(), body.to_owned())
}

// A token bound to certificate A works only on a connection presenting certificate A.
#[test]
fn certificate_bound_token_needs_its_certificate() {
    let scratch = Scratch::new("mtls");
    let dir = scratch.path();
    make_certificates(dir);
    let issuer = TestKey::es256("issuer");
    let server = JwksServer::start(jwks(&[&issuer]));
    let config = plugin_config(bound_provider(&server, json!({"mtls_binding": "required"})));
    let upstream = EchoUpstream::start();
    let filter = WasmFilter::new(&config);
    let mut bootstrap = bootstrap_with_listeners(vec![tls_listener(dir, &filter)]);
    bootstrap["static_resources"]["clusters"] =
        json!(upstream_clusters(server.port(), upstream.port()));
    let envoy = Envoy::start_bootstrap("mtls.json", &bootstrap.to_string(), 1, "debug");
    let port = envoy.listener_addr("tls").port();

    let mut claims = good_claims("alice");
    claims["cnf"] = json!({"x5t#S256": certificate_thumbprint(dir, "a.pem")});
    let token = issuer.sign(&claims);
    let (status, body) = curl_tls(dir, port, &token, Some("a"));
    assert_eq!(status, 200, "{body}");
    for (client, description) in [
        (
            Some("b"),
            "Jwt cnf x5t#S256 does not match the client certificate",
        ),
        (None, "Client certificate is missing"),
    ] {
        let (status, body) = curl_tls(dir, port, &token, client);
        assert_eq!(status, 401, "{client:?}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            body,
            json!({"error": "invalid_token", "error_description": description})
        );
    }
    // An unbound token, even with a certificate, when binding is required.
    let unbound = issuer.sign(&good_claims("bob"));
    let (status, body) = curl_tls(dir, port, &unbound, Some("a"));
    assert_eq!(status, 401, "{body}");
    assert!(
        body.contains("Jwt is not bound to a client certificate"),
        "{body}"
    );

    // `kserve-auth curl` trusts the private CA with --cacert and presents --cert / --key.
    let url = format!("https://127.0.0.1:{port}{PROTECTED_PATH}");
    let print_token = format!("echo {token}");
    let cache = dir.join("kserve-auth.json");
    let path = |name: &str| dir.join(name).display().to_string();
    let kserve_auth = |extra: &[&str]| {
        let mut args = vec![
            "curl",
            url.as_str(),
            "--token-command",
            print_token.as_str(),
        ];
        args.extend_from_slice(extra);
        run_kserve_auth(&args, &cache, &[])
    };
    let (ca, a_pem, a_key, b_pem, b_key) = (
        path("ca.pem"),
        path("a.pem"),
        path("a.key"),
        path("b.pem"),
        path("b.key"),
    );
    let output = kserve_auth(&["--cacert", &ca, "--cert", &a_pem, "--key", &a_key]);
    assert!(output.status.success(), "{}", stderr(&output));
    let output = kserve_auth(&["--cacert", &ca, "--cert", &b_pem, "--key", &b_key]);
    assert_eq!(output.status.code(), Some(22), "{}", stderr(&output));
    assert!(stdout(&output).contains("does not match the client certificate"));
    let output = kserve_auth(&["--cert", &a_pem, "--key", &a_key]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("UnknownIssuer"),
        "{}",
        stderr(&output)
    );
    assert_eq!(upstream.count(), 2);
}

// The demo's real OpenID provider binds a client credentials token to the client's DPoP key, and
// Envoy with envoy/demo.yaml accepts that token only with proofs from that key; the proof script
// the docs show does the same (one demo stack for both).
#[test]
fn a_token_bound_by_the_openid_provider_works_only_with_its_key() {
    let stack = DemoStack::start("600s");
    the_documented_proof_script_gets_and_uses_a_bound_token(&stack);
    let holder = TestKey::es256("");
    let token_url = format!("{}/token", stack.op.issuer());
    let token_proof = proof_for(&holder, "POST", &token_url, None, "token-request");
    let response =
        stack
            .op
            .token_response_with(CLIENT_ID, CLIENT_SECRET, &[("dpop", token_proof.as_str())]);
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json();
    assert_eq!(body["token_type"], "DPoP", "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let payload: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(payload["cnf"]["jkt"], json!(thumbprint(&holder)));

    let url = format!("http://{DEFAULT_HOST}{V1_PREDICT}");
    let authorization = format!("DPoP {token}");
    let call = |signer: &TestKey, jti: &str| {
        let proof = proof_for(signer, "POST", &url, Some(&token), jti);
        stack.post_with(
            V1_PREDICT,
            None,
            &[("authorization", &authorization), ("dpop", &proof)],
            r#"{"instances": [[1, 2, 3]]}"#,
        )
    };
    let response = call(&holder, "call-1");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["predictions"], json!([6.0]));
    let response = call(&TestKey::es256(""), "call-2");
    assert_eq!(response.status, 401);
    assert_eq!(
        response.json()["error_description"],
        "Jwt cnf.jkt does not match the DPoP proof key"
    );
    let response = stack.predict(Some(&token));
    assert_eq!(response.status, 401);
    assert_eq!(
        response.json()["error_description"],
        "Jwt is DPoP-bound and must be sent with the DPoP scheme"
    );
}

/// Runs `demo/dpop-proof.mjs` with `args` and returns what it prints.
fn proof_script(args: &[&str]) -> String {
    let output = Command::new("node")
        .arg(repo().join("demo/dpop-proof.mjs"))
        .args(args)
        .output()
        .expect("run node");
    assert!(
        output.status.success(),
        "dpop-proof.mjs {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// The proof script the docs show makes proofs the provider and the filter both accept, with a
/// key file only its owner can read.
fn the_documented_proof_script_gets_and_uses_a_bound_token(stack: &DemoStack) {
    let scratch = Scratch::new("dpop-script");
    let key = scratch.path().join("dpop-key.json");
    let key = key.to_str().unwrap();
    let token_url = format!("{}/token", stack.op.issuer());
    let token_proof = proof_script(&["--key", key, "POST", &token_url]);
    let mode = fs::metadata(key).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    let response =
        stack
            .op
            .token_response_with(CLIENT_ID, CLIENT_SECRET, &[("dpop", token_proof.as_str())]);
    assert_eq!(response.status, 200, "{}", response.text());
    let token = response.json()["access_token"].as_str().unwrap().to_owned();
    let payload: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        payload["cnf"]["jkt"],
        json!(proof_script(&["--key", key, "--thumbprint"]))
    );
    let url = format!("http://{DEFAULT_HOST}{V1_PREDICT}");
    let proof = proof_script(&["--key", key, "POST", &url, &token]);
    let authorization = format!("DPoP {token}");
    let response = stack.post_with(
        V1_PREDICT,
        None,
        &[("authorization", &authorization), ("dpop", &proof)],
        r#"{"instances": [[1, 2, 3]]}"#,
    );
    assert_eq!(response.status, 200, "{}", response.text());
}
