//! The byte formats exchanged with the host: ECDSA signature conversion and the protobuf answer
//! of `verify_signature`. Never a panic.

#![no_main]

use kserve_auth_filter::crypto::host_wire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = host_wire::decode_result(data);
    for scalar_bytes in [32, 48] {
        if let Some(der) = host_wire::ecdsa_signature_der(data, scalar_bytes) {
            assert!(
                der.len() <= 2 * scalar_bytes + 9,
                "DER signature longer than possible"
            );
        }
    }
});
