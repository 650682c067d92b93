//! JWKS and discovery documents from a key server: never a panic, whatever it sends.

#![no_main]

use kserve_auth_filter::crypto::host_wire;
use kserve_auth_filter::keys::jwks;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((set, _skipped)) = jwks::parse_jwks(data) {
        for key in &set.keys {
            let _ = host_wire::spki_der(&key.material);
        }
    }
});
