//! Per-model rules where the model is named in the body, through a real Envoy: the
//! OpenAI-compatible API's JSON `"model"` and V2 gRPC's field 1. The upstream records each body's
//! SHA-256, so a test sees that what reached it is what the client sent, byte for byte.

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::h2c;
use crate::support::http::{self, read_response, Response, DEFAULT_HOST};
use crate::support::*;

const CHAT: &str = "/openai/v1/chat/completions";
const MODEL_HEADER: &str = "x-kserve-model";

/// Two models, each for one role; anything else for any valid token.
fn config(server: &JwksServer, extra: Value) -> Value {
    let mut config = json!({
        "providers": {PROVIDER: remote_provider(server)},
        "rules": [
            {"match": {"prefix": "/v2/health"}},
            {"match": {"model": "llama-a"}, "requires": {"provider_name": PROVIDER},
             "require_claims": [{"claim": "roles", "has": "team-a"}]},
            {"match": {"model": "llama-b"}, "requires": {"provider_name": PROVIDER},
             "require_claims": [{"claim": "roles", "has": "team-b"}]},
            {"match": {"prefix": "/"}, "requires": {"provider_name": PROVIDER}},
        ],
        "model_header": MODEL_HEADER,
    });
    for (name, value) in extra.as_object().unwrap() {
        config[name] = value.clone();
    }
    config
}

fn stack(extra: Value) -> (Stack, TestKey) {
    let key = TestKey::es256("k1");
    let server = JwksServer::start(jwks(&[&key]));
    let config = config(&server, extra);
    (Stack::start(server, &config), key)
}

fn token(key: &TestKey, role: &str) -> String {
    let mut claims = good_claims(role);
    claims["roles"] = json!([role]);
    key.sign(&claims)
}

fn post(stack: &Stack, token: Option<&str>, extra: &[(&str, &str)], body: &[u8]) -> Response {
    let authorization = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(value) = &authorization {
        headers.push(("authorization", value));
    }
    headers.extend_from_slice(extra);
    http::request(stack.envoy.addr(), "POST", CHAT, &headers, Some(body)).unwrap()
}

fn chat_body(model: &str) -> Vec<u8> {
    json!({"model": model, "messages": [{"role": "user", "content": "hello"}]})
        .to_string()
        .into_bytes()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hmac_sha256::Hash::hash(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The upstream's record of a request that reached it: the model header and the body's digest.
fn reached(response: &Response) -> (Option<String>, String) {
    let echo = Echo::from_response(response);
    let digest = response.json()["body_sha256"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (echo.header(MODEL_HEADER), digest)
}

// Role A reaches model A and gets 403 on model B; the body arrives unchanged, with the model in a
// header the client could not set.
#[test]
fn each_role_reaches_its_model_only() {
    let (stack, key) = stack(json!({}));
    let team_a = token(&key, "team-a");
    let team_b = token(&key, "team-b");
    let body = chat_body("llama-a");
    let response = post(&stack, Some(&team_a), &[(MODEL_HEADER, "forged")], &body);
    assert_eq!(
        reached(&response),
        (Some("llama-a".to_owned()), sha256_hex(&body))
    );
    let response = post(&stack, Some(&team_a), &[], &chat_body("llama-b"));
    assert_eq!(response.status, 403, "{}", response.text());
    assert_eq!(
        response.json()["error"],
        "insufficient_scope",
        "{}",
        response.text()
    );
    let response = post(&stack, Some(&team_b), &[], &chat_body("llama-b"));
    assert_eq!(reached(&response).0.as_deref(), Some("llama-b"));
    // A model no rule names goes to the catch-all: any valid token.
    let response = post(&stack, Some(&team_b), &[], &chat_body("mistral"));
    assert_eq!(reached(&response).0.as_deref(), Some("mistral"));
    // A nested "model" never counts.
    let nested = json!({"messages": [{"role": "user", "content": "x", "model": "llama-a"}],
                        "model": "llama-b"})
    .to_string();
    let response = post(&stack, Some(&team_a), &[], nested.as_bytes());
    assert_eq!(response.status, 403);
    // A request whose rule does not depend on the body is passed on as it comes.
    let response = http::request(
        stack.envoy.addr(),
        "POST",
        "/v2/models/llama-a/infer",
        &[("authorization", &format!("Bearer {team_a}"))],
        Some(b"{}"),
    )
    .unwrap();
    assert_eq!(reached(&response).0, None);
}

// The model first, after a 200 KiB messages array, or split over pieces of a slow chunked
// upload: the same verdicts, and the same bytes upstream.
#[test]
fn model_anywhere_in_the_body() {
    let (stack, key) = stack(json!({}));
    let team_a = token(&key, "team-a");
    let mut messages = Vec::new();
    while serde_json::to_string(&messages).unwrap().len() < 200 * 1024 {
        messages.push(json!({"role": "user", "content": "lorem ipsum dolor sit amet, {\"model\": \"llama-b\"}"}));
    }
    let late = serde_json::to_vec(&json!({"messages": messages, "model": "llama-a"})).unwrap();
    let response = post(&stack, Some(&team_a), &[], &late);
    assert_eq!(
        reached(&response),
        (Some("llama-a".into()), sha256_hex(&late))
    );
    let late_b = serde_json::to_vec(&json!({"messages": messages, "model": "llama-b"})).unwrap();
    assert_eq!(post(&stack, Some(&team_a), &[], &late_b).status, 403);

    // Chunked, slowly, with the model's name split between two pieces.
    let body = chat_body("llama-a");
    let split = body.windows(5).position(|w| w == b"llama").unwrap() + 3;
    let pieces = [&body[..split], &body[split..]];
    let response = chunked_upload(&stack, &team_a, &pieces, Duration::from_millis(300));
    assert_eq!(
        reached(&response),
        (Some("llama-a".into()), sha256_hex(&body))
    );
}

/// `POST` with `Transfer-Encoding: chunked`, one chunk per piece, pausing between them.
fn chunked_upload(stack: &Stack, token: &str, pieces: &[&[u8]], pause: Duration) -> Response {
    let mut stream = TcpStream::connect(stack.envoy.addr()).unwrap();
    let head = format!(
        "POST {CHAT} HTTP/1.1\r\nHost: {DEFAULT_HOST}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    for piece in pieces {
        thread::sleep(pause);
        stream
            .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
            .unwrap();
        stream.write_all(piece).unwrap();
        stream.write_all(b"\r\n").unwrap();
    }
    stream.write_all(b"0\r\n\r\n").unwrap();
    read_response(&mut BufReader::new(stream), false).unwrap()
}

// Without a valid token the answer is 401 before any body is sent.
#[test]
fn no_token_is_refused_before_the_body() {
    let (stack, _key) = stack(json!({}));
    let mut stream = TcpStream::connect(stack.envoy.addr()).unwrap();
    let head = format!(
        "POST {CHAT} HTTP/1.1\r\nHost: {DEFAULT_HOST}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let response = read_response(&mut BufReader::new(stream), false).unwrap();
    assert_missing(&response);
    assert_eq!(stack.upstream.count(), 0);
}

// Each body that names no model the filter can judge gets its own answer, and never reaches the
// model server.
#[test]
fn bodies_that_name_no_model_are_refused() {
    let (stack, key) = stack(json!({"max_body_bytes": 4096}));
    let team_a = token(&key, "team-a");
    let cases: [RefusalCase; 9] = [
        (b"[1, 2]", &[], 400, "Request body is not a JSON object"),
        // Bytes that are not UTF-8, in the model and around it.
        (
            b"{\"model\": \"llama-\xff\"}",
            &[],
            400,
            "Request body model is not a string",
        ),
        (
            b"\xff\xfe{\"model\": 1}",
            &[],
            400,
            "Request body is not a JSON object",
        ),
        (
            br#"{"model": 7}"#,
            &[],
            400,
            "Request body model is not a string",
        ),
        (
            br#"{"model": "llama-b", "model": "llama-a"}"#,
            &[],
            400,
            "Request body names its model twice",
        ),
        (
            br#"{"messages": []}"#,
            &[],
            400,
            "Request body names no model",
        ),
        (
            br#"{"model": "llama-a"}"#,
            &[("content-encoding", "gzip")],
            415,
            "Request body is compressed; the filter reads only uncompressed bodies",
        ),
        (b"", &[], 400, "Request body names no model"),
        (
            format!(
                r#"{{"messages": ["{}"], "model": "llama-a"}}"#,
                "x".repeat(8192)
            )
            .leak()
            .as_bytes(),
            &[],
            413,
            "Request body is larger than the filter reads for its model",
        ),
    ];
    for (body, extra, status, description) in cases {
        let response = post(&stack, Some(&team_a), extra, body);
        assert_eq!(
            response.status,
            status,
            "{description}: {}",
            response.text()
        );
        assert_eq!(
            response.json(),
            json!({"error": "invalid_request", "error_description": description})
        );
        assert_eq!(response.header("www-authenticate"), None);
    }
    assert_eq!(stack.upstream.count(), 0);
}

/// A body, extra headers, and the status and description it must get.
type RefusalCase<'a> = (&'a [u8], &'a [(&'a str, &'a str)], u16, &'a str);

/// A gRPC frame holding `message`, uncompressed.
fn grpc_frame(message: &[u8]) -> Vec<u8> {
    let mut frame = vec![0];
    frame.extend((message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

/// A gRPC frame holding a ModelInferRequest with `model_name` and an id.
fn model_infer(model: &str) -> Vec<u8> {
    let mut message = vec![0x1a, 2, b'i', b'd']; // field 3 (id) first
    message.push(0x0a);
    message.push(model.len() as u8);
    message.extend_from_slice(model.as_bytes());
    let mut frame = vec![0];
    frame.extend((message.len() as u32).to_be_bytes());
    frame.extend(message);
    frame
}

// gRPC ModelInfer over h2c: model A with role A reaches the upstream, model B is refused the gRPC
// way, as is a compressed frame.
#[test]
fn grpc_model_infer_names_its_model() {
    let (stack, key) = stack(json!({}));
    let authorization = format!("Bearer {}", token(&key, "team-a"));
    let path = "/inference.GRPCInferenceService/ModelInfer";
    let headers = [
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("authorization", authorization.as_str()),
    ];
    let response = h2c::post(
        stack.envoy.addr(),
        path,
        &headers,
        Some(&model_infer("llama-a")),
    );
    assert_eq!(
        response.header("grpc-status"),
        None,
        "{:?}",
        response.headers
    );
    assert_eq!(reached(&response).0.as_deref(), Some("llama-a"));
    let response = h2c::post(
        stack.envoy.addr(),
        path,
        &headers,
        Some(&model_infer("llama-b")),
    );
    assert_eq!(
        response.header("grpc-status"),
        Some("7"),
        "{:?}",
        response.headers
    );
    let mut compressed = model_infer("llama-a");
    compressed[0] = 1;
    let without_model = grpc_frame(&[0x1a, 2, b'i', b'd']);
    let mut too_large = grpc_frame(&[0x1a, 2, b'i', b'd']);
    too_large[1..5].copy_from_slice(&(2u32 << 20).to_be_bytes());
    for (body, reason) in [
        (
            compressed,
            "Request body is compressed; the filter reads only uncompressed bodies",
        ),
        (without_model, "Request body names no model"),
        (
            too_large,
            "Request body is larger than the filter reads for its model",
        ),
    ] {
        let response = h2c::post(stack.envoy.addr(), path, &headers, Some(&body));
        assert_eq!(
            response.header("grpc-status"),
            Some("3"),
            "{reason}: {:?}",
            response.headers
        );
        assert_eq!(response.header("grpc-message"), Some(reason));
    }
    assert_eq!(stack.upstream.count(), 1);
}

// Without allow_on_headers_stop_iteration (an Istio WasmPlugin cannot set it), Envoy never hands
// the filter the body of a request it holds: the request is refused after 10 s with a 503, and
// the log says what to set, rather than waiting for ever or going through unjudged.
#[test]
fn a_body_that_never_arrives_is_refused() {
    let key = TestKey::es256("k1");
    let server = JwksServer::start(jwks(&[&key]));
    let upstream = EchoUpstream::start();
    let mut config =
        EnvoyConfig::with_filter(&config(&server, json!({})), server.port(), upstream.port());
    if let Some(filter) = config.filter.as_mut() {
        filter.hold_headers = false;
    }
    let envoy = Envoy::start(&config);
    let authorization = format!("Bearer {}", token(&key, "team-a"));
    let started = std::time::Instant::now();
    let response = http::request(
        envoy.addr(),
        "POST",
        CHAT,
        &[("authorization", &authorization)],
        Some(&chat_body("llama-a")),
    )
    .unwrap();
    assert_eq!(response.status, 503, "{}", response.text());
    assert_eq!(
        response.json()["error_description"],
        "Request body did not reach the filter"
    );
    assert!(started.elapsed() >= Duration::from_secs(10));
    assert!(envoy
        .log()
        .contains("allow_on_headers_stop_iteration: true"));
    assert_eq!(upstream.count(), 0);
}

// The OpenAI model list passes through, and each caller sees only the models its token may use;
// a caller with none gets an empty list, not a 403.
#[test]
fn the_model_list_shows_each_caller_its_models() {
    use crate::support::server::{HttpServer, Reply};
    use std::sync::Arc;
    let key = TestKey::es256("k1");
    let server = JwksServer::start(jwks(&[&key]));
    let list = json!({"object": "list", "data": [
        {"id": "llama-a", "object": "model", "owned_by": "kserve"},
        {"id": "llama-b", "object": "model", "owned_by": "kserve"},
    ]});
    let body = list.to_string();
    let models = HttpServer::start_new(
        Arc::new(move |_: &http::ReceivedRequest| Reply::json(200, body.clone())),
        true,
    );
    let mut plugin = config(&server, json!({}));
    // Only the two models: every other path needs team-a's role.
    plugin["rules"][3] = json!({"match": {"prefix": "/"}, "requires": {"provider_name": PROVIDER}});
    let envoy = Envoy::start(&EnvoyConfig::with_filter(
        &plugin,
        server.port(),
        models.addr().port(),
    ));
    let ids = |token: &str| -> Vec<String> {
        let response = envoy.get(
            "/openai/v1/models",
            &[("authorization", &format!("Bearer {token}"))],
        );
        assert_eq!(response.status, 200, "{}", response.text());
        response.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|model| model["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&token(&key, "team-a")), ["llama-a"]);
    assert_eq!(ids(&token(&key, "team-b")), ["llama-b"]);
    assert!(ids(&token(&key, "nobody")).is_empty());
    let response = envoy.get("/openai/v1/models", &[]);
    assert_eq!(response.status, 401);
}

// 64 requests held at once, each with 200 KiB of messages and no model yet: the filter keeps no
// body, only each stream's scanner, so its VM's memory barely moves (Envoy holds the bytes).
#[test]
fn held_bodies_cost_the_vm_no_memory() {
    let (stack, key) = stack(json!({}));
    let authorization = format!("Bearer {}", token(&key, "team-a"));
    let gauge = || {
        thread::sleep(Duration::from_millis(400));
        stack
            .envoy
            .gauge("wasmcustom.kserve_auth.vm.memory_bytes")
            .expect("vm.memory_bytes gauge")
    };
    // One request first, so the VM has grown to what one held body needs.
    assert_eq!(
        post(
            &stack,
            Some(&token(&key, "team-a")),
            &[],
            &chat_body("llama-a")
        )
        .status,
        200
    );
    let before = gauge();
    let messages = format!(r#"{{"messages": ["{}"], "#, "x".repeat(200 * 1024));
    let rest = br#""model": "llama-a"}"#;
    let mut streams: Vec<TcpStream> = (0..64)
        .map(|_| {
            let mut stream = TcpStream::connect(stack.envoy.addr()).unwrap();
            let head = format!(
                "POST {CHAT} HTTP/1.1\r\nHost: {DEFAULT_HOST}\r\nAuthorization: {authorization}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                messages.len() + rest.len()
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(messages.as_bytes()).unwrap();
            stream
        })
        .collect();
    let held = gauge();
    println!("vm.memory_bytes: {before} before, {held} with 64 held bodies of 200 KiB");
    assert!(
        held <= before + 2 * 1024 * 1024,
        "64 held bodies grew the VM from {before} to {held} bytes"
    );
    for stream in &mut streams {
        stream.write_all(rest).unwrap();
    }
    for stream in streams {
        let response = read_response(&mut BufReader::new(stream), false).unwrap();
        assert_eq!(response.status, 200, "{}", response.text());
    }
}
