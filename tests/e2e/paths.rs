//! Path tricks against a public prefix in front of a protected model path, with Envoy's own path
//! normalization turned OFF: the filter's normalization alone must hold (CVE-2020-8595,
//! CVE-2021-29492 were bypasses of this kind in Envoy's and Istio's JWT filters).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::http;
use crate::support::*;

/// The default stack, but Envoy does no path normalization of its own.
fn unnormalized_stack() -> (Stack, TestKey) {
    let key = TestKey::es256("k1");
    let server = JwksServer::start(jwks(&[&key]));
    let config = plugin_config(remote_provider(&server));
    let upstream = EchoUpstream::start();
    let envoy_config = EnvoyConfig::with_filter(&config, server.port(), upstream.port());
    let mut bootstrap = envoy_config.bootstrap();
    let manager = &mut bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
        [0]["typed_config"];
    manager["normalize_path"] = false.into();
    manager["merge_slashes"] = false.into();
    manager["path_with_escaped_slashes_action"] = "KEEP_UNCHANGED".into();
    let envoy = Envoy::try_start_bootstrap("envoy.json", &bootstrap.to_string(), 1, "debug")
        .unwrap_or_else(|failure| panic!("Envoy did not start: {}", failure.log));
    (
        Stack {
            envoy,
            jwks: server,
            upstream,
        },
        key,
    )
}

/// Sends `path` exactly as written (no client-side cleanup) and returns the status.
fn raw_status(stack: &Stack, method: &str, path: &str) -> u16 {
    http::request(stack.envoy.addr(), method, path, &[], None)
        .map(|response| response.status)
        .unwrap_or(0)
}

// Every trick that climbs from the public /v2/health prefix into a model path either is
// refused as ambiguous (400) or is judged as the model path it really is (401 without a token);
// none reaches the model server.
#[test]
fn no_path_trick_reaches_a_protected_model_without_a_token() {
    let (stack, _) = unnormalized_stack();
    let tricks = [
        ("/v2/health/../models/m/infer", 401),
        ("/v2/health/./../models/m/infer", 401),
        ("/v2/health/%2e%2e/models/m/infer", 401),
        ("/v2/health/.%2E/models/m/infer", 401),
        ("/v2/health//../models/m/infer", 401),
        ("//v2//models//m//infer", 401),
        ("/v2/./models/m/infer", 401),
        ("/v2/health%2F..%2Fmodels%2Fm%2Finfer", 400),
        ("/v2/health%2f..%2fmodels%2fm%2finfer", 400),
        ("/v2/health%5C..%5Cmodels%5Cm%5Cinfer", 400),
        ("/v2/health/%252e%252e/models/m/infer", 400),
        ("/v2/health/%25%32%65%25%32%65/models/m/infer", 400),
        ("/v2/models/m/infer%00/../../health/ready", 400),
        ("/v2/health/../../../models/m/infer", 400),
        // Servlet-style servers read `..;` and `.;` as `..` and `.`: ambiguous, refused.
        ("/v2/health/..;/models/m/infer", 400),
        ("/v2/health/..;jsessionid=1/models/m/infer", 400),
        ("/v2/health/.;/../models/m/infer", 400),
        // Every escape is decoded before rules match, as KServe's server decodes it.
        ("/v2/health/..%3B/models/m/infer", 400),
        ("/v2/health/%ff/../models/m/infer", 400),
        ("/v2/models/m/infer?/v2/health/ready", 401),
        // Envoy's HTTP/1 codec refuses a fragment in the request line before the filter runs.
        ("/v2/models/m/infer#/v2/health/ready", 400),
    ];
    for (path, expected) in tricks {
        assert_eq!(raw_status(&stack, "GET", path), expected, "{path}");
    }
    let long = format!("/v2/health/{}/../models/m/infer", "a".repeat(9_000));
    let status = raw_status(&stack, "GET", &long);
    assert!(
        matches!(status, 400 | 414 | 431),
        "very long path: {status}"
    );
    assert_eq!(
        stack.upstream.count(),
        0,
        "a trick reached the model server"
    );
}

// The public prefix still works, spelled plainly or with harmless noise, and the upstream gets
// the normalized path the filter judged.
#[test]
fn public_paths_pass_and_the_upstream_sees_the_normalized_path() {
    let (stack, key) = unnormalized_stack();
    assert_eq!(raw_status(&stack, "GET", "/v2/health/ready"), 200);
    assert_eq!(raw_status(&stack, "GET", "/v2//health/./ready"), 200);
    let received = stack.upstream.received();
    assert_eq!(
        received.last().map(|r| r.path.as_str()),
        Some("/v2/health/ready")
    );

    let token = key.sign(&good_claims("alice"));
    let response = stack.get_with_token("/v2/models/x/../m/infer?debug=1", &token);
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        Echo::from_response(&response).path,
        "/v2/models/m/infer?debug=1"
    );
}

// A CONNECT request has no origin-form path: it never reaches the model server.
#[test]
fn connect_requests_do_not_pass() {
    let (stack, _) = unnormalized_stack();
    let mut stream = TcpStream::connect(stack.envoy.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "CONNECT {}:443 HTTP/1.1\r\nHost: {}:443\r\n\r\n",
        http::DEFAULT_HOST,
        http::DEFAULT_HOST
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status_line = answer.lines().next().unwrap_or_default().to_owned();
    assert!(
        !status_line.contains(" 200 "),
        "CONNECT answered {status_line:?}"
    );
    assert_eq!(stack.upstream.count(), 0);
}
