//! The RSA public operation against a big-integer reference: for any odd modulus of 8 to 518
//! bytes and any signature as long, `s^65537 mod n` exactly, or a refusal when `s ≥ n`.
//!
//! Input: one byte `k`, then a modulus of `8 + 2k` bytes, then a signature of as many bytes.

#![no_main]

use kserve_auth_filter::crypto::rsa::PublicKey;
use libfuzzer_sys::fuzz_target;
use rsa::BigUint;

fuzz_target!(|data: &[u8]| {
    let Some((&half, rest)) = data.split_first() else {
        return;
    };
    let length = 8 + 2 * usize::from(half);
    if rest.len() < 2 * length {
        return;
    }
    let (modulus, rest) = rest.split_at(length);
    let signature = &rest[..length];
    let mut modulus = modulus.to_vec();
    modulus[0] = modulus[0].max(1);
    modulus[length - 1] |= 1;
    let key = PublicKey::new(&modulus, &[1, 0, 1]).expect("odd modulus of two limbs or more");
    assert_eq!(key.size(), length);
    let n = BigUint::from_bytes_be(&modulus);
    let s = BigUint::from_bytes_be(signature);
    let ours = key.encoded_message(signature);
    if s >= n {
        assert!(ours.is_none(), "signature not below the modulus accepted");
    } else {
        let expected = s.modpow(&BigUint::from(65_537u32), &n).to_bytes_be();
        let ours = ours.expect("signature below the modulus refused");
        let (padding, value) = ours.split_at(length - expected.len());
        assert!(padding.iter().all(|&byte| byte == 0));
        assert_eq!(
            value,
            &expected[..],
            "s^65537 mod n differs from the reference"
        );
    }
});
