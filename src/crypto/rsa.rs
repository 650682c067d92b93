//! RSA signature checks (RFC 8017) for the pure-Rust path: the public operation `s^65537 mod n`
//! in Montgomery form over 32-bit limbs, and the two encodings JWS uses, RSASSA-PKCS1-v1_5 and
//! RSASSA-PSS.
//!
//! Only public values go through this code (the key, the signature, the signed text), so it needs
//! no constant-time care. 32-bit limbs because WebAssembly multiplies 32×32→64 bits natively,
//! where 64-bit limbs need a 128-bit product that V8 runs as a function call.

use std::sync::OnceLock;

/// The only public exponent accepted, as in the key-set checks: 65537 = 2^16 + 1.
const EXPONENT: [u8; 3] = [1, 0, 1];

/// A hash function of the RS* and PS* algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// SHA-256 (RS256, PS256).
    Sha256,
    /// SHA-384 (RS384, PS384).
    Sha384,
    /// SHA-512 (RS512, PS512).
    Sha512,
}

impl Hash {
    /// The digest of the concatenation of `parts`.
    fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        match self {
            Hash::Sha256 => {
                let mut hash = hmac_sha256::Hash::new();
                parts.iter().for_each(|part| hash.update(part));
                hash.finalize().to_vec()
            }
            Hash::Sha384 => {
                let mut hash = hmac_sha512::sha384::Hash::new();
                parts.iter().for_each(|part| hash.update(part));
                hash.finalize().to_vec()
            }
            Hash::Sha512 => {
                let mut hash = hmac_sha512::Hash::new();
                parts.iter().for_each(|part| hash.update(part));
                hash.finalize().to_vec()
            }
        }
    }

    /// The digest's length in bytes.
    fn len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    /// The DER `DigestInfo` that precedes the digest in a PKCS #1 v1.5 signature (RFC 8017 §9.2,
    /// note 1).
    fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            Hash::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            Hash::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            Hash::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }
}

/// A [`PublicKey`] made on first use and kept beside the key it derives from, so a key set
/// prepares each RSA key once, and only if the pure-Rust path ever checks with it. It never
/// counts when keys are compared: it only mirrors the modulus and exponent it was made from.
#[derive(Debug, Default, Clone)]
pub struct PreparedKey(OnceLock<Option<PublicKey>>);

impl PreparedKey {
    /// The prepared key, made by `prepare` on the first call.
    pub fn get_or_prepare(
        &self,
        prepare: impl FnOnce() -> Option<PublicKey>,
    ) -> Option<&PublicKey> {
        self.0.get_or_init(prepare).as_ref()
    }
}

impl PartialEq for PreparedKey {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for PreparedKey {}

/// An RSA public key with exponent 65537, prepared for Montgomery multiplication.
#[derive(Debug, Clone)]
pub struct PublicKey {
    /// `n` in little-endian 32-bit limbs; the top limb is not zero.
    modulus: Vec<u32>,
    /// The number of significant bits in `n`.
    bits: usize,
    /// `-n⁻¹ mod 2³²`.
    inverse: u32,
    /// `R² mod n`, where `R = 2^(32·limbs)`: multiplying by it enters Montgomery form.
    r_squared: Vec<u32>,
}

impl PublicKey {
    /// Whether [`PublicKey::new`] accepts `n` and `e`, found without preparing the key: `n` odd,
    /// without a leading zero byte and longer than one limb, `e` 65537.
    pub fn acceptable(n: &[u8], e: &[u8]) -> bool {
        e == EXPONENT
            && n.len() > 4
            && n.first().is_some_and(|&top| top != 0)
            && n.last().is_some_and(|&low| low & 1 == 1)
    }

    /// The key with big-endian modulus `n` and exponent `e`, when they are
    /// [`acceptable`](PublicKey::acceptable). Preparing it takes time quadratic in the modulus's
    /// length, so callers bound that first (`verify::rsa_public_key`).
    pub fn new(n: &[u8], e: &[u8]) -> Option<Self> {
        if !PublicKey::acceptable(n, e) {
            return None;
        }
        let modulus = limbs(n);
        let low = *modulus.first()?;
        let top = *modulus.last()?;
        let bits = modulus.len() * 32 - top.leading_zeros() as usize;
        let mut key = PublicKey {
            inverse: negated_inverse(low),
            r_squared: Vec::new(),
            modulus,
            bits,
        };
        key.r_squared = key.compute_r_squared();
        Some(key)
    }

    /// The number of significant bits in the modulus.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// The modulus length in bytes, which is every signature's length.
    pub fn size(&self) -> usize {
        self.bits.div_ceil(8)
    }

    /// Whether `signature` is a valid RSASSA-PKCS1-v1_5 signature of `message` with `hash`.
    pub fn verify_pkcs1v15(&self, hash: Hash, message: &[u8], signature: &[u8]) -> bool {
        let Some(encoded) = self.encoded_message(signature) else {
            return false;
        };
        // EM = 00 01 FF…FF 00 DigestInfo H, with at least eight FF bytes (RFC 8017 §9.2): the
        // whole expected encoding is rebuilt and compared, never parsed out of the signature.
        let prefix = hash.digest_info_prefix();
        let digest = hash.digest(&[message]);
        let Some(padding) = encoded.len().checked_sub(3 + prefix.len() + digest.len()) else {
            return false;
        };
        if padding < 8 {
            return false;
        }
        let mut expected = Vec::with_capacity(encoded.len());
        expected.extend_from_slice(&[0x00, 0x01]);
        expected.resize(2 + padding, 0xff);
        expected.push(0x00);
        expected.extend_from_slice(prefix);
        expected.extend_from_slice(&digest);
        encoded == expected
    }

    /// Whether `signature` is a valid RSASSA-PSS signature of `message` with `hash`, MGF1 with
    /// the same hash and a salt as long as the digest (RFC 7518 §3.5; RFC 8017 §9.1.2).
    pub fn verify_pss(&self, hash: Hash, message: &[u8], signature: &[u8]) -> bool {
        let Some(mut encoded) = self.encoded_message(signature) else {
            return false;
        };
        // emBits = modBits - 1; when that is a multiple of 8, EM is one byte shorter than the
        // modulus and the byte before it must be zero.
        let em_bits = self.bits - 1;
        let em_len = em_bits.div_ceil(8);
        let skipped = encoded.len() - em_len;
        if encoded
            .get(..skipped)
            .is_none_or(|lead| lead.iter().any(|&byte| byte != 0))
        {
            return false;
        }
        let Some(em) = encoded.get_mut(skipped..) else {
            return false;
        };
        let h_len = hash.len();
        let s_len = h_len;
        if em_len < h_len + s_len + 2 || em.last() != Some(&0xbc) {
            return false;
        }
        let (masked_db, rest) = em.split_at_mut(em_len - h_len - 1);
        let Some(h) = rest.get(..h_len) else {
            return false;
        };
        let unused_bits = 8 * em_len - em_bits;
        let top_mask = 0xffu8 >> unused_bits;
        if masked_db
            .first()
            .is_none_or(|&first| first & !top_mask != 0)
        {
            return false;
        }
        mgf1_xor(hash, h, masked_db);
        if let Some(first) = masked_db.first_mut() {
            *first &= top_mask;
        }
        // DB = 00…00 01 salt.
        let (padding, salt) = masked_db.split_at(masked_db.len() - s_len);
        let Some((&one, zeros)) = padding.split_last() else {
            return false;
        };
        if one != 0x01 || zeros.iter().any(|&byte| byte != 0) {
            return false;
        }
        let message_digest = hash.digest(&[message]);
        hash.digest(&[&[0u8; 8], &message_digest, salt]) == h
    }

    /// `s^65537 mod n` as big-endian bytes of the modulus's length, for a signature `s` of
    /// exactly that length and smaller than `n` (RSAVP1, RFC 8017 §5.2.2).
    pub fn encoded_message(&self, signature: &[u8]) -> Option<Vec<u8>> {
        if signature.len() != self.size() {
            return None;
        }
        let signature = limbs_of_length(signature, self.modulus.len())?;
        if !less_than(&signature, &self.modulus) {
            return None;
        }
        let mut scratch = vec![0u32; self.modulus.len() + 2];
        // Into Montgomery form: s·R mod n.
        let base = self.multiply(&signature, &self.r_squared, &mut scratch);
        // s^(2^16) by sixteen squarings, then one more multiplication by s: s^65537.
        let mut power = base.clone();
        for _ in 0..16 {
            power = self.multiply(&power, &power, &mut scratch);
        }
        power = self.multiply(&power, &base, &mut scratch);
        // Out of Montgomery form: multiplying by 1 divides by R.
        let mut one = vec![0u32; self.modulus.len()];
        if let Some(low) = one.first_mut() {
            *low = 1;
        }
        let result = self.multiply(&power, &one, &mut scratch);
        Some(big_endian_bytes(&result, self.size()))
    }

    /// `R² mod n`: `R mod n` by doubling the modulus's top power of two, doubled further to
    /// `2^k·R` and then squared in Montgomery form, each squaring doubling the exponent, until it
    /// is `2^(32·limbs)·R`.
    fn compute_r_squared(&self) -> Vec<u32> {
        let width = self.modulus.len() * 32;
        // 2^(bits-1) < n, doubled (width - bits + 1) times: 2^width mod n = R mod n.
        let mut value = vec![0u32; self.modulus.len()];
        let top_bit = self.bits - 1;
        if let Some(limb) = value.get_mut(top_bit / 32) {
            *limb = 1 << (top_bit % 32);
        }
        for _ in 0..(width - top_bit) {
            self.double(&mut value);
        }
        let squarings = width.trailing_zeros();
        for _ in 0..(width >> squarings) {
            self.double(&mut value);
        }
        let mut scratch = vec![0u32; self.modulus.len() + 2];
        for _ in 0..squarings {
            value = self.multiply(&value, &value, &mut scratch);
        }
        value
    }

    /// `value ← 2·value mod n`, for `value < n`.
    fn double(&self, value: &mut [u32]) {
        let mut carry = 0u32;
        for limb in value.iter_mut() {
            let shifted = (*limb << 1) | carry;
            carry = *limb >> 31;
            *limb = shifted;
        }
        if carry != 0 || !less_than(value, &self.modulus) {
            subtract_in_place(value, &self.modulus);
        }
    }

    /// Montgomery multiplication: `a·b·R⁻¹ mod n` for `a, b < n` (coarsely integrated operand
    /// scanning). `scratch` holds `limbs + 2` words.
    fn multiply(&self, a: &[u32], b: &[u32], scratch: &mut [u32]) -> Vec<u32> {
        let limbs = self.modulus.len();
        scratch.iter_mut().for_each(|word| *word = 0);
        let (low, high) = scratch.split_at_mut(limbs);
        let [top, overflow] = high else {
            return vec![0; limbs];
        };
        for &b_limb in b {
            // t += a·b_i
            let mut carry = 0u64;
            for (t, &a_limb) in low.iter_mut().zip(a) {
                let sum = u64::from(*t) + u64::from(a_limb) * u64::from(b_limb) + carry;
                *t = sum as u32;
                carry = sum >> 32;
            }
            let sum = u64::from(*top) + carry;
            *top = sum as u32;
            *overflow = (sum >> 32) as u32;
            // t = (t + m·n) / 2^32, with m chosen so the low word cancels.
            let m = low.first().map_or(0, |&t0| t0.wrapping_mul(self.inverse));
            let mut carry = 0u64;
            let mut previous: Option<&mut u32> = None;
            for (t, &n_limb) in low.iter_mut().zip(&self.modulus) {
                let sum = u64::from(*t) + u64::from(m) * u64::from(n_limb) + carry;
                if let Some(slot) = previous {
                    *slot = sum as u32;
                }
                carry = sum >> 32;
                previous = Some(t);
            }
            let sum = u64::from(*top) + carry;
            if let Some(slot) = previous {
                *slot = sum as u32;
            }
            *top = (u64::from(*overflow) + (sum >> 32)) as u32;
        }
        // t < 2n: one subtraction at most brings it below n.
        let mut result = low.to_vec();
        if *top != 0 || !less_than(&result, &self.modulus) {
            subtract_in_place(&mut result, &self.modulus);
        }
        result
    }
}

/// `-x⁻¹ mod 2³²` for odd `x`, by Newton's iteration (each step doubles the correct low bits).
fn negated_inverse(x: u32) -> u32 {
    // x·x ≡ 1 mod 8 for odd x: three bits to start.
    let mut inverse = x;
    for _ in 0..4 {
        inverse = inverse.wrapping_mul(2u32.wrapping_sub(x.wrapping_mul(inverse)));
    }
    inverse.wrapping_neg()
}

/// Big-endian bytes as little-endian 32-bit limbs, as few as hold them.
fn limbs(bytes: &[u8]) -> Vec<u32> {
    bytes
        .rchunks(4)
        .map(|chunk| {
            chunk
                .iter()
                .fold(0u32, |limb, &byte| (limb << 8) | u32::from(byte))
        })
        .collect()
}

/// Big-endian bytes as exactly `count` limbs, when they fit.
fn limbs_of_length(bytes: &[u8], count: usize) -> Option<Vec<u32>> {
    let mut value = limbs(bytes);
    if value.len() > count {
        return None;
    }
    value.resize(count, 0);
    Some(value)
}

/// Little-endian limbs as `length` big-endian bytes (the value fits: it is below the modulus).
fn big_endian_bytes(value: &[u32], length: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = value
        .iter()
        .rev()
        .flat_map(|limb| limb.to_be_bytes())
        .collect();
    let excess = bytes.len().saturating_sub(length);
    bytes.drain(..excess);
    bytes
}

/// `a < b` for little-endian limbs of equal length.
fn less_than(a: &[u32], b: &[u32]) -> bool {
    a.iter().rev().cmp(b.iter().rev()) == std::cmp::Ordering::Less
}

/// `value ← value - subtrahend mod 2^(32·limbs)`.
fn subtract_in_place(value: &mut [u32], subtrahend: &[u32]) {
    let mut borrow = 0u64;
    for (limb, &other) in value.iter_mut().zip(subtrahend) {
        let difference = u64::from(*limb)
            .wrapping_sub(u64::from(other))
            .wrapping_sub(borrow);
        *limb = difference as u32;
        borrow = (difference >> 63) & 1;
    }
}

/// `target ^= MGF1(seed)` with `hash` (RFC 8017 appendix B.2.1).
fn mgf1_xor(hash: Hash, seed: &[u8], target: &mut [u8]) {
    for (counter, chunk) in (0u32..).zip(target.chunks_mut(hash.len())) {
        let mask = hash.digest(&[seed, &counter.to_be_bytes()]);
        for (byte, mask_byte) in chunk.iter_mut().zip(mask) {
            *byte ^= mask_byte;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use ::rsa::pkcs1v15::SigningKey as Pkcs1v15SigningKey;
    use ::rsa::pss::SigningKey as PssSigningKey;
    use ::rsa::signature::{RandomizedSigner as _, SignatureEncoding as _, Signer as _};
    use ::rsa::traits::{PrivateKeyParts as _, PublicKeyParts as _};
    use ::rsa::{BigUint, RsaPrivateKey};

    use super::*;

    /// A deterministic xorshift generator, so a failing case can be replayed.
    struct Random(u64);

    impl Random {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn bytes(&mut self, count: usize) -> Vec<u8> {
            (0..count).map(|_| self.next() as u8).collect()
        }

        /// An odd number of exactly `bits` bits, big-endian.
        fn odd_modulus(&mut self, bits: usize) -> Vec<u8> {
            let mut n = self.bytes(bits.div_ceil(8));
            let top_bit = (bits - 1) % 8;
            n[0] &= (1u16 << (top_bit + 1)).wrapping_sub(1) as u8;
            n[0] |= 1 << top_bit;
            *n.last_mut().unwrap() |= 1;
            n
        }
    }

    fn padded(value: &BigUint, length: usize) -> Vec<u8> {
        let bytes = value.to_bytes_be();
        let mut out = vec![0; length - bytes.len()];
        out.extend_from_slice(&bytes);
        out
    }

    fn private_key(bits: usize) -> RsaPrivateKey {
        let mut rng = ::rsa::rand_core::OsRng;
        RsaPrivateKey::new(&mut rng, bits).unwrap()
    }

    fn public_key(private: &RsaPrivateKey) -> PublicKey {
        PublicKey::new(&private.n().to_bytes_be(), &private.e().to_bytes_be()).unwrap()
    }

    // `s^65537 mod n` equals the big-integer reference for odd moduli of every width class (top
    // limb full, nearly empty, byte-aligned or not) and signatures at the edges and in between.
    #[test]
    fn public_operation_matches_modpow() {
        let mut random = Random(0x9e37_79b9_7f4a_7c15);
        let e = BigUint::from(65_537u32);
        for bits in [
            64, 65, 95, 96, 97, 2048, 2049, 2055, 2056, 2079, 2080, 2081, 3072, 4095, 4096,
        ] {
            let n_bytes = random.odd_modulus(bits);
            let key = PublicKey::new(&n_bytes, &EXPONENT).unwrap();
            assert_eq!(key.bits(), bits);
            let n = BigUint::from_bytes_be(&n_bytes);
            let mut signatures = vec![
                BigUint::from(0u32),
                BigUint::from(1u32),
                BigUint::from(2u32),
                &n - 1u32,
                &n - 2u32,
            ];
            for _ in 0..20 {
                signatures.push(BigUint::from_bytes_be(&random.bytes(key.size())) % &n);
            }
            for s in signatures {
                let expected = padded(&s.modpow(&e, &n), key.size());
                let actual = key.encoded_message(&padded(&s, key.size()));
                assert_eq!(actual, Some(expected), "{bits} bits, s = {s:x}");
            }
        }
    }

    // A signature not below the modulus, or not exactly as long as it, has no encoded message.
    #[test]
    fn out_of_range_signatures_are_refused() {
        let mut random = Random(7);
        let n_bytes = random.odd_modulus(2048);
        let key = PublicKey::new(&n_bytes, &EXPONENT).unwrap();
        let n = BigUint::from_bytes_be(&n_bytes);
        assert!(key.encoded_message(&n_bytes).is_none());
        assert!(key.encoded_message(&padded(&(&n + 1u32), 256)).is_none());
        assert!(key.encoded_message(&[0xff; 256]).is_none());
        assert!(key.encoded_message(&[0x01; 255]).is_none());
        assert!(key.encoded_message(&[0x01; 257]).is_none());
        assert!(key.encoded_message(&padded(&(&n - 1u32), 256)).is_some());
    }

    // Only odd moduli of two limbs or more, without a leading zero byte, with exponent 65537.
    #[test]
    fn key_policy() {
        let mut random = Random(11);
        let n = random.odd_modulus(2048);
        assert!(PublicKey::new(&n, &EXPONENT).is_some());
        let mut even = n.clone();
        *even.last_mut().unwrap() &= 0xfe;
        assert!(PublicKey::new(&even, &EXPONENT).is_none());
        let mut leading_zero = vec![0];
        leading_zero.extend_from_slice(&n);
        assert!(PublicKey::new(&leading_zero, &EXPONENT).is_none());
        assert!(PublicKey::new(&[0x80, 0, 0, 1], &EXPONENT).is_none());
        assert!(PublicKey::new(&[], &EXPONENT).is_none());
        for e in [&[3][..], &[1, 0, 0, 1], &[0, 1, 0, 1], &[]] {
            assert!(PublicKey::new(&n, e).is_none(), "{e:?}");
            assert!(!PublicKey::acceptable(&n, e), "{e:?}");
        }
        for refused in [&even, &leading_zero, &vec![0x80, 0, 0, 1], &Vec::new()] {
            assert!(!PublicKey::acceptable(refused, &EXPONENT), "{refused:?}");
        }
        // The shortest modulus accepted: five bytes, two limbs.
        assert!(PublicKey::acceptable(&[1, 0, 0, 0, 1], &EXPONENT));
        assert!(PublicKey::new(&[1, 0, 0, 0, 1], &EXPONENT).is_some());
        assert!(PublicKey::acceptable(&n, &EXPONENT));
    }

    // A key set prepares a key once however often it checks with it, and preparing never makes
    // two otherwise equal keys differ (an unchanged key set must not look changed on refresh).
    #[test]
    fn prepared_key_is_made_once_and_never_compared() {
        let n = Random(5).odd_modulus(2048);
        let prepared = PreparedKey::default();
        let mut made = 0;
        for _ in 0..3 {
            let key = prepared.get_or_prepare(|| {
                made += 1;
                PublicKey::new(&n, &EXPONENT)
            });
            assert_eq!(key.map(PublicKey::bits), Some(2048));
        }
        assert_eq!(made, 1);
        assert_eq!(prepared, PreparedKey::default());
    }

    // -x⁻¹ mod 2³² is exact for odd x.
    #[test]
    fn negated_inverse_is_exact() {
        let mut random = Random(3);
        for x in [1u32, 3, 0xffff_ffff, 0x8000_0001] {
            assert_eq!(x.wrapping_mul(negated_inverse(x)), u32::MAX, "{x:#x}");
        }
        for _ in 0..1000 {
            let x = (random.next() as u32) | 1;
            assert_eq!(x.wrapping_mul(negated_inverse(x)), u32::MAX, "{x:#x}");
        }
    }

    // PKCS #1 v1.5 and PSS signatures made by the `rsa` crate verify with every hash, for a
    // byte-aligned modulus and for one a bit longer (where the PSS encoding is a byte shorter
    // than the modulus); a flipped bit, another message or the other hash do not.
    #[test]
    fn signatures_of_the_rsa_crate_verify() {
        use ::rsa::sha2::{Sha256, Sha384, Sha512};
        let mut rng = ::rsa::rand_core::OsRng;
        for bits in [2048, 2049] {
            let private = private_key(bits);
            let key = public_key(&private);
            let message = b"header.payload";
            let cases: Vec<(Hash, bool, Vec<u8>)> = vec![
                (
                    Hash::Sha256,
                    false,
                    Pkcs1v15SigningKey::<Sha256>::new(private.clone())
                        .sign(message)
                        .to_vec(),
                ),
                (
                    Hash::Sha384,
                    false,
                    Pkcs1v15SigningKey::<Sha384>::new(private.clone())
                        .sign(message)
                        .to_vec(),
                ),
                (
                    Hash::Sha512,
                    false,
                    Pkcs1v15SigningKey::<Sha512>::new(private.clone())
                        .sign(message)
                        .to_vec(),
                ),
                (
                    Hash::Sha256,
                    true,
                    PssSigningKey::<Sha256>::new(private.clone())
                        .sign_with_rng(&mut rng, message)
                        .to_vec(),
                ),
                (
                    Hash::Sha384,
                    true,
                    PssSigningKey::<Sha384>::new(private.clone())
                        .sign_with_rng(&mut rng, message)
                        .to_vec(),
                ),
                (
                    Hash::Sha512,
                    true,
                    PssSigningKey::<Sha512>::new(private.clone())
                        .sign_with_rng(&mut rng, message)
                        .to_vec(),
                ),
            ];
            for (hash, pss, signature) in cases {
                let verify = |hash: Hash, message: &[u8], signature: &[u8]| {
                    if pss {
                        key.verify_pss(hash, message, signature)
                    } else {
                        key.verify_pkcs1v15(hash, message, signature)
                    }
                };
                assert!(
                    verify(hash, message, &signature),
                    "{bits} {hash:?} pss={pss}"
                );
                assert!(!verify(hash, b"header.payloaD", &signature));
                let other = if hash == Hash::Sha256 {
                    Hash::Sha384
                } else {
                    Hash::Sha256
                };
                assert!(!verify(other, message, &signature));
                for position in [0, signature.len() / 2, signature.len() - 1] {
                    let mut flipped = signature.clone();
                    flipped[position] ^= 0x01;
                    assert!(
                        !verify(hash, message, &flipped),
                        "{bits} {hash:?} at {position}"
                    );
                }
                // One scheme's signature is never the other's.
                if pss {
                    assert!(!key.verify_pkcs1v15(hash, message, &signature));
                } else {
                    assert!(!key.verify_pss(hash, message, &signature));
                }
            }
        }
    }

    // PKCS #1 v1.5 encodings that differ from the expected one anywhere are refused: the block
    // type, the padding byte values and length, the separator, the DigestInfo and the digest.
    #[test]
    fn pkcs1v15_encoding_must_be_exact() {
        let private = private_key(2048);
        let key = public_key(&private);
        let n = private.n();
        let message = b"header.payload";
        let digest = Hash::Sha256.digest(&[message]);
        let prefix = Hash::Sha256.digest_info_prefix();
        let encode = |block_type: u8,
                      filler: u8,
                      padding: usize,
                      separator: u8,
                      prefix: &[u8],
                      digest: &[u8]| {
            let mut em = vec![0x00, block_type];
            em.extend(std::iter::repeat_n(filler, padding));
            em.push(separator);
            em.extend_from_slice(prefix);
            em.extend_from_slice(digest);
            let mut full = vec![0; 256usize.saturating_sub(em.len())];
            full.extend_from_slice(&em);
            let m = BigUint::from_bytes_be(&full);
            padded(&m.modpow(private.d(), n), 256)
        };
        let padding = 256 - 3 - prefix.len() - digest.len();
        let valid = encode(1, 0xff, padding, 0, prefix, &digest);
        assert!(key.verify_pkcs1v15(Hash::Sha256, message, &valid));
        let mut wrong_prefix = prefix.to_vec();
        wrong_prefix[1] ^= 1;
        let mut wrong_digest = digest.clone();
        wrong_digest[31] ^= 1;
        for (name, signature) in [
            ("block type 2", encode(2, 0xff, padding, 0, prefix, &digest)),
            ("filler fe", encode(1, 0xfe, padding, 0, prefix, &digest)),
            ("separator 1", encode(1, 0xff, padding, 1, prefix, &digest)),
            (
                "DigestInfo",
                encode(1, 0xff, padding, 0, &wrong_prefix, &digest),
            ),
            ("digest", encode(1, 0xff, padding, 0, prefix, &wrong_digest)),
            (
                "no DigestInfo",
                encode(1, 0xff, padding + prefix.len(), 0, &[], &digest),
            ),
        ] {
            assert!(
                !key.verify_pkcs1v15(Hash::Sha256, message, &signature),
                "{name}"
            );
        }
    }

    // When the modulus is one bit longer than a whole number of bytes, the PSS encoding is one
    // byte shorter than the signature and the extra leading byte must be zero (RFC 8017 §8.1.2:
    // I2OSP refuses an integer too large); the `rsa` crate ignores that byte.
    #[test]
    fn pss_refuses_a_nonzero_byte_before_the_encoding() {
        let mut rng = ::rsa::rand_core::OsRng;
        let private = loop {
            let candidate = private_key(2049);
            // m = 2^2048 + EM must stay below n.
            if candidate.n() > &(BigUint::from(3u32) << 2047) {
                break candidate;
            }
        };
        let key = public_key(&private);
        let message = b"header.payload";
        let signature = PssSigningKey::<::rsa::sha2::Sha256>::new(private.clone())
            .sign_with_rng(&mut rng, message)
            .to_vec();
        assert!(key.verify_pss(Hash::Sha256, message, &signature));
        let n = private.n();
        let em = BigUint::from_bytes_be(&signature).modpow(private.e(), n);
        let raised = em + (BigUint::from(1u32) << 2048);
        let forged = padded(&raised.modpow(private.d(), n), key.size());
        assert!(!key.verify_pss(Hash::Sha256, message, &forged));
    }
}
