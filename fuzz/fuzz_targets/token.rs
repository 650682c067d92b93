//! Token parsing, claims checks and signature checks on arbitrary text: never a panic.

#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::OnceLock;

use kserve_auth_filter::config::Config;
use kserve_auth_filter::crypto::host_wire;
use kserve_auth_filter::crypto::verify::{self, PureRustCrypto};
use kserve_auth_filter::policy::token_policy;
use kserve_auth_filter::jose::token;
use kserve_auth_filter::crypto::key::KeySet;
use kserve_auth_filter::keys::jwks;
use libfuzzer_sys::fuzz_target;

struct Fixture {
    config: Config,
    keys: KeySet,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| Fixture {
        config: Config::from_json(common::config_json().as_bytes()).expect("fuzz configuration"),
        keys: jwks::parse_jwks(common::jwks().as_bytes())
            .expect("fuzz keys")
            .0,
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let fixture = fixture();
    let Ok(parsed) = token::parse(raw) else {
        return;
    };
    if let Some(provider) = fixture.config.providers.first() {
        let _ = token_policy::check_claims(&parsed, &provider.token_policy(), common::NOW_SECONDS);
    }
    // The signature check runs whatever the claims said, to reach the crypto with odd input.
    let _ = verify::check_signature(&parsed, &fixture.keys, &PureRustCrypto);
    for key in &fixture.keys.keys {
        let _ = host_wire::host_request(parsed.header.alg, key, &parsed);
    }
});
