//! Memory under a flood of distinct valid tokens, read from the filter's gauges in Envoy's stats:
//! the verified-token cache stays at `jwt_cache_size` and the VM's linear memory stops growing
//! once the cache is full.
//!
//! Tokens are minted once by `examples/mint_tokens.rs` into the target directory and reused
//! while valid; wrk (`$WRK`, else `wrk` on `PATH`; `make wrk` installs it) sends them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "../../examples/mint_tokens.rs"]
mod mint_tokens;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::envoy::{
    bootstrap_with_listeners, direct_response_listener, wrk_bin, WasmFilter,
};
use crate::support::*;
use serde_json::{json, Value};

/// Distinct tokens sent in all.
const TOKENS: usize = 100_000;
/// Tokens sent before the first reading: enough to fill the cache and evict as many again.
const FIRST_PASS: usize = 20_000;
/// The default `jwt_cache_size`.
const CACHE_SIZE: u64 = 10_000;
/// Growth of linear memory allowed between the two readings: 16 wasm pages (1 MiB), room for
/// allocator fragmentation. The cache reaches its final size when it fills (about 1.4 KiB per
/// entry with the default claims), so the later tokens only replace entries; a cache that kept
/// even 1 % of those 80,000 tokens would need more than this.
const MEMORY_SLACK_BYTES: u64 = 16 * 65_536;
const ISSUER: &str = "https://issuer.memory.test";
const AUDIENCE: &str = "kserve-memory";
const LISTENER: &str = "memory";

fn token_options() -> mint_tokens::Options {
    mint_tokens::Options {
        out: Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-memory"),
        count: TOKENS,
        issuer: ISSUER.to_string(),
        audience: AUDIENCE.to_string(),
        hours: 12,
        algorithms: vec!["es256".to_string()],
    }
}

/// The minted ES256 tokens and their JWKS, minted now unless still valid for an hour.
fn tokens() -> (PathBuf, String) {
    let options = token_options();
    if !mint_tokens::fresh(&options, 3600) {
        let started = Instant::now();
        mint_tokens::mint(&options).expect("mint tokens");
        eprintln!(
            "minted {TOKENS} ES256 tokens in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let jwks = std::fs::read_to_string(options.out.join("jwks.json")).expect("read jwks.json");
    (options.out.join("tokens-es256.txt"), jwks)
}

/// Sends tokens `first..first + count` once each through wrk; returns wrk's result line. The
/// script stops its thread after `count` answers, but wrk itself runs for its whole `-d` unless
/// interrupted, so it gets SIGINT once Envoy has answered that many more requests.
fn send_tokens(envoy: &Envoy, tokens: &Path, first: usize, count: usize) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/wrk/requests.lua");
    let answered_before = answered(envoy).expect("admin /stats");
    let child = Command::new(wrk_bin())
        .args(["-t", "1", "-c", "8", "-d", "300s", "--timeout", "10s", "-s"])
        .arg(&script)
        .arg(format!("http://{}", envoy.listener_addr(LISTENER)))
        .arg("--")
        .arg("/v2/models/m/infer")
        .arg(tokens)
        .args([count.to_string(), first.to_string(), "once".to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wrk");
    // Stops early when the admin interface is gone; wrk is interrupted in every case.
    let target = answered_before + count as u64;
    let done = poll(Duration::from_secs(300), || match answered(envoy) {
        None => Some(false),
        Some(n) => (n >= target).then_some(true),
    });
    // Lets wrk's last answers arrive, then ends its run early; wrk prints its summary on SIGINT.
    std::thread::sleep(Duration::from_millis(200));
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let output = child.wait_with_output().expect("wait for wrk");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        done == Some(true) && output.status.success(),
        "wrk did not finish: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("wrk-result "))
        .unwrap_or_else(|| panic!("no result from wrk: {stdout}"));
    serde_json::from_str(line).expect("wrk result")
}

/// Requests the listener has answered, whatever the status; `None` when admin does not answer.
fn answered(envoy: &Envoy) -> Option<u64> {
    let name = format!("http.{LISTENER}.downstream_rq_completed");
    let path = format!("/stats?filter={name}");
    let stats = crate::support::http::request(envoy.admin_addr(), "GET", &path, &[], None).ok()?;
    let value = stats.text().lines().find_map(|line| {
        let (stat, value) = line.split_once(": ")?;
        (stat == name).then(|| value.trim().parse().ok())?
    });
    Some(value.unwrap_or(0))
}

/// The allowed-requests counter once it has reached `at_least` (request counters reach Envoy on
/// the plugin's 100 ms tick), or its last value.
fn allowed(envoy: &Envoy, at_least: u64) -> u64 {
    envoy
        .wait_for_counter(
            "wasmcustom.kserve_auth.requests.allowed",
            at_least,
            Duration::from_secs(5),
        )
        .unwrap_or(0)
}

/// Every answer 2xx, no socket error, and at least `count` answers.
fn assert_all_allowed(result: &Value, count: usize) {
    assert!(
        result["requests"].as_u64().unwrap() >= count as u64,
        "{result}"
    );
    for field in [
        "non2xx",
        "status_errors",
        "connect_errors",
        "read_errors",
        "write_errors",
        "timeouts",
    ] {
        assert_eq!(result[field], 0, "{field}: {result}");
    }
}

/// The gauges (and Envoy's RSS) once the 100 ms tick has reported the finished pass.
#[derive(Debug)]
struct Reading {
    cache_entries: u64,
    memory_bytes: u64,
    waiting: u64,
    rss_kib: u64,
}

fn read(envoy: &Envoy) -> Reading {
    std::thread::sleep(Duration::from_millis(350));
    let gauge = |name: &str| {
        envoy
            .gauge(&format!("wasmcustom.kserve_auth.{name}"))
            .unwrap_or_else(|| panic!("no gauge {name}"))
    };
    Reading {
        cache_entries: gauge("token_cache.entries"),
        memory_bytes: gauge("vm.memory_bytes"),
        waiting: gauge("requests.waiting"),
        rss_kib: envoy.rss_kib().unwrap_or(0),
    }
}

// 100,000 distinct valid ES256 tokens (host crypto) against the default cache of 10,000: every
// request passes, the cache holds exactly 10,000 entries, and the VM's linear memory after all
// of them is what it was after the first 20,000, within 1 MiB.
#[test]
fn memory_stays_bounded_over_100000_distinct_tokens() {
    let started = Instant::now();
    let (token_file, jwks) = tokens();
    let config = json!({
        "providers": {"memory": {
            "issuer": ISSUER,
            "audiences": [AUDIENCE],
            "local_jwks": {"inline_string": jwks},
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "memory"}}],
    });
    let filter = WasmFilter {
        module: crate::support::envoy::filter_wasm(),
        configuration: config.to_string(),
        hold_headers: true,
    };
    let bootstrap = bootstrap_with_listeners(vec![direct_response_listener(
        LISTENER,
        vec![filter.http_filter()],
    )]);
    let envoy = Envoy::try_start_bootstrap("bootstrap.json", &bootstrap.to_string(), 1, "warn")
        .unwrap_or_else(|f| {
            panic!(
                "Envoy did not start: {}",
                crate::support::envoy::tail(&f.log, 40)
            )
        });
    let idle = read(&envoy);

    let loaded = Instant::now();
    let first = send_tokens(&envoy, &token_file, 0, FIRST_PASS);
    assert_all_allowed(&first, FIRST_PASS);
    let before = read(&envoy);
    let second = send_tokens(&envoy, &token_file, FIRST_PASS, TOKENS - FIRST_PASS);
    assert_all_allowed(&second, TOKENS - FIRST_PASS);
    let after = read(&envoy);
    let load_seconds = loaded.elapsed().as_secs_f64();

    let allowed = allowed(&envoy, TOKENS as u64);
    for (when, r) in [
        ("idle", &idle),
        (&format!("after {FIRST_PASS} tokens")[..], &before),
        (&format!("after {TOKENS} tokens")[..], &after),
    ] {
        eprintln!(
            "{when}: token_cache.entries {}, vm.memory_bytes {}, requests.waiting {}, Envoy RSS {} KiB",
            r.cache_entries, r.memory_bytes, r.waiting, r.rss_kib
        );
    }
    eprintln!(
        "{allowed} requests allowed in {load_seconds:.1} s of load; test ran {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(allowed >= TOKENS as u64, "only {allowed} requests allowed");
    assert!(
        after.memory_bytes <= before.memory_bytes + MEMORY_SLACK_BYTES,
        "linear memory grew from {} to {} bytes",
        before.memory_bytes,
        after.memory_bytes
    );
    assert_eq!(before.cache_entries, CACHE_SIZE);
    assert_eq!(after.cache_entries, CACHE_SIZE);
    assert_eq!(after.waiting, 0);
    let log = envoy.log();
    assert!(!log.contains("panicked"), "the VM panicked");
}
