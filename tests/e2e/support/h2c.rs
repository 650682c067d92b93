//! HTTP/2 over cleartext with prior knowledge, as gRPC clients speak it, sent with curl
//! (`--http2-prior-knowledge`): a trailers-only gRPC answer can only be seen over HTTP/2.

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::http::{Response, DEFAULT_HOST};

static REQUEST: AtomicUsize = AtomicUsize::new(0);

/// `POST path` over h2c with `headers` plus `content-type: application/grpc` and
/// `te: trailers`. Trailers, if any, are returned among the headers.
///
/// The call has no body, so its HEADERS frame ends the request stream. When a local answer
/// goes out while the request body is still coming, Envoy resets the stream after it (HTTP/2
/// allows that), and curl 7.88 then sometimes fails with "Stream error in the HTTP/2 framing
/// layer" although the answer arrived complete.
pub fn grpc_call(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut all = vec![("content-type", "application/grpc"), ("te", "trailers")];
    all.extend_from_slice(headers);
    post(addr, path, &all, None)
}

/// `POST path` over h2c; `Host` (sent as `:authority`) defaults to [`DEFAULT_HOST`].
pub fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Response {
    let dir = std::env::temp_dir().join(format!(
        "kserve-e2e-h2c-{}-{}",
        std::process::id(),
        REQUEST.fetch_add(1, Ordering::SeqCst)
    ));
    fs::create_dir_all(&dir).expect("create curl temp dir");
    let head_file = dir.join("head");
    let body_file = dir.join("body");
    let mut command = Command::new("curl");
    command
        .args([
            "-sS",
            "--http2-prior-knowledge",
            "--max-time",
            "15",
            "-X",
            "POST",
        ])
        .arg("-D")
        .arg(&head_file)
        .arg("-o")
        .arg(&body_file);
    if body.is_some() {
        command.args(["--data-binary", "@-"]);
    }
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        command.args(["-H", &format!("host: {DEFAULT_HOST}")]);
    }
    for (name, value) in headers {
        command.args(["-H", &format!("{name}: {value}")]);
    }
    command.arg(format!("http://{addr}{path}"));
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run curl (needed for HTTP/2 requests): {e}"));
    let mut stdin = child.stdin.take().expect("curl stdin");
    if let Some(body) = body {
        stdin.write_all(body).expect("write request body to curl");
    }
    drop(stdin);
    let output = child.wait_with_output().expect("wait for curl");
    assert!(
        output.status.success(),
        "curl failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let head = fs::read_to_string(&head_file).expect("read curl header dump");
    let body = fs::read(&body_file).unwrap_or_default();
    let _ = fs::remove_dir_all(&dir);
    parse_head(&head, body)
}

/// The last response head in curl's dump (`HTTP/2 200` then `name: value` lines), with any
/// trailer lines that follow it.
fn parse_head(dump: &str, body: Vec<u8>) -> Response {
    let mut status = None;
    let mut headers = Vec::new();
    for line in dump.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(rest) = line.strip_prefix("HTTP/") {
            let code = rest.split_whitespace().nth(1).and_then(|c| c.parse().ok());
            assert!(code.is_some(), "bad status line {line:?} in {dump:?}");
            status = code;
            headers.clear();
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let status = status.unwrap_or_else(|| panic!("no status line in curl's dump: {dump:?}"));
    assert!(
        dump.starts_with("HTTP/2"),
        "the answer did not come over HTTP/2: {dump:?}"
    );
    Response {
        status,
        headers,
        body,
    }
}
