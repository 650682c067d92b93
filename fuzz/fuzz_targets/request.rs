//! Whole requests through rule matching, token extraction and the decision: never a panic, and
//! never an allow on a protected path without a valid token.
//!
//! Input: first line the path, second the method, then `name: value` header lines.

#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::OnceLock;

use kserve_auth_filter::config::Config;
use kserve_auth_filter::crypto::verify::PureRustCrypto;
use kserve_auth_filter::decision::token_cache::TokenCache;
use kserve_auth_filter::decision::{self, Decision, Now};
use kserve_auth_filter::keys::store::KeyStore;
use kserve_auth_filter::request::path;
use kserve_auth_filter::request::Request;
use libfuzzer_sys::fuzz_target;

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        Config::from_json(common::config_json().as_bytes()).expect("fuzz configuration")
    })
}

fn request(text: &str) -> Request {
    let mut lines = text.split('\n');
    let path = lines.next().unwrap_or_default().to_string();
    let method = lines.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let authority = headers
        .iter()
        .find(|(name, _)| name == "host")
        .map(|(_, value)| value.clone())
        .unwrap_or_default();
    Request {
        method,
        path,
        authority,
        headers,
        undecodable: Vec::new(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = config();
    let Ok(mut keys) = KeyStore::new(config) else {
        return;
    };
    let mut tokens = vec![TokenCache::new(16)];
    let request = request(text);
    let now = Now {
        ms: common::NOW_SECONDS * 1000,
    };
    let decision = decision::decide(
        config,
        &request,
        &mut keys,
        &mut tokens,
        &PureRustCrypto,
        now,
    );
    if let Decision::Allow(allow) = &decision {
        // `/optional` is the one rule that allows a missing token; judge it as the filter does,
        // by the normalized path.
        let optional = path::normalize(&request.path).is_ok_and(|p| p.decoded == "/optional");
        if !allow.public && !optional {
            // Fuzzed input cannot carry a valid signature, so a protected path must not pass.
            panic!(
                "protected path {:?} allowed without a valid token",
                request.path
            );
        }
    }
});
