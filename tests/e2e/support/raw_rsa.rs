//! RS256 (RSASSA-PKCS1-v1_5 with SHA-256) over arbitrary bytes, from a PKCS#8 PEM private key.
//!
//! jwt-simple signs only the header and payload it serializes itself and refuses keys under
//! 2048 bits. Tests that need a valid signature over hand-written JSON (repeated member names,
//! `crit`, an embedded `jwk` object) or by a 1024-bit key sign with this instead. It is plain
//! Montgomery exponentiation with the CRT and no side-channel care: test keys only.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};

/// DER prefix of the SHA-256 DigestInfo (RFC 8017 §9.2, note 1).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// An RSA private key reduced to what signing needs.
pub struct RawRsaKey {
    /// Modulus, big-endian, no leading zero.
    pub n: Vec<u8>,
    /// Public exponent, big-endian.
    pub e: Vec<u8>,
    /// Signing works modulo the primes (CRT): four times fewer limb operations than modulo n,
    /// which matters because tests run unoptimized.
    p: Montgomery,
    q: Montgomery,
    dp: Vec<u8>,
    dq: Vec<u8>,
    /// q⁻¹ mod p.
    q_inv: Vec<u64>,
}

impl RawRsaKey {
    /// Reads an unencrypted PKCS#8 `PRIVATE KEY` PEM holding an RSA key.
    pub fn from_pkcs8_pem(pem: &str) -> RawRsaKey {
        let body: String = pem
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let der = STANDARD.decode(body.trim()).expect("PEM base64");
        // PrivateKeyInfo ::= SEQUENCE { version, algorithm, privateKey OCTET STRING }
        let mut info = Der::new(Der::new(&der).take(0x30));
        info.take(0x02);
        info.take(0x30);
        // RSAPrivateKey ::= SEQUENCE { version, n, e, d, p, q, dp, dq, qinv }
        let mut key = Der::new(Der::new(info.take(0x04)).take(0x30));
        key.take(0x02);
        let mut integer = || {
            let bytes = key.take(0x02);
            let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
            bytes[start..].to_vec()
        };
        let n = integer();
        let e = integer();
        let _d = integer();
        let p = Montgomery::new(&integer());
        let q = Montgomery::new(&integer());
        let dp = integer();
        let dq = integer();
        let q_inv = limbs(&integer(), p.len());
        RawRsaKey {
            n,
            e,
            p,
            q,
            dp,
            dq,
            q_inv,
        }
    }

    /// Modulus length in bits.
    pub fn bits(&self) -> usize {
        self.n.len() * 8 - self.n[0].leading_zeros() as usize
    }

    /// The public JWK (`kty`, `n`, `e`) without `kid`, `use` or `alg`.
    pub fn public_jwk(&self) -> Value {
        json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(&self.n), "e": URL_SAFE_NO_PAD.encode(&self.e)})
    }

    /// The RS256 signature of `message`, `k` bytes long (the modulus length).
    pub fn sign_rs256(&self, message: &[u8]) -> Vec<u8> {
        let k = self.n.len();
        let hash = hmac_sha256::Hash::hash(message);
        // EM = 0x00 || 0x01 || PS (0xff…) || 0x00 || DigestInfo || H
        let t_len = SHA256_DIGEST_INFO.len() + hash.len();
        assert!(k >= t_len + 11, "modulus too short for RS256");
        let mut em = vec![0x00, 0x01];
        em.resize(k - t_len - 1, 0xff);
        em.push(0x00);
        em.extend_from_slice(&SHA256_DIGEST_INFO);
        em.extend_from_slice(&hash);
        // Garner: m1 = c^dp mod p, m2 = c^dq mod q, h = q⁻¹(m1 - m2) mod p, s = m2 + h·q.
        let m1 = self.p.pow(&self.p.reduce(&em), &self.dp);
        let m2 = self.q.pow(&self.q.reduce(&em), &self.dq);
        let m2_mod_p = self.p.leave_montgomery(&self.p.reduce(&to_bytes(&m2)));
        let mut diff = m1;
        if less_than(&diff, &m2_mod_p) {
            add(&mut diff, &self.p.n);
        }
        subtract(&mut diff, &m2_mod_p);
        let h = self.p.mul(&self.p.mul(&diff, &self.q_inv), &self.p.r2);
        let mut signature = multiply(&h, &self.q.n);
        add(&mut signature, &m2);
        let bytes = to_bytes(&signature);
        let start = bytes.len() - k;
        assert!(bytes[..start].iter().all(|&b| b == 0));
        bytes[start..].to_vec()
    }
}

/// A cursor over DER TLVs (definite lengths only, which is all DER has).
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Der<'a> {
        Der { rest: bytes }
    }

    /// The contents of the next TLV, which must carry `tag`.
    fn take(&mut self, tag: u8) -> &'a [u8] {
        assert_eq!(self.rest[0], tag, "unexpected DER tag");
        let (len, header) = match self.rest[1] {
            short @ 0..=0x7f => (usize::from(short), 2),
            long => {
                let count = usize::from(long & 0x7f);
                let len = self.rest[2..2 + count]
                    .iter()
                    .fold(0usize, |acc, &b| acc << 8 | usize::from(b));
                (len, 2 + count)
            }
        };
        let contents = &self.rest[header..header + len];
        self.rest = &self.rest[header + len..];
        contents
    }
}

/// Big-endian bytes → little-endian 64-bit limbs, `count` of them.
fn limbs(bytes: &[u8], count: usize) -> Vec<u64> {
    let mut out = vec![0u64; count.max(bytes.len().div_ceil(8))];
    for (i, &byte) in bytes.iter().rev().enumerate() {
        out[i / 8] |= u64::from(byte) << (8 * (i % 8));
    }
    out
}

/// Little-endian limbs → big-endian bytes.
fn to_bytes(value: &[u64]) -> Vec<u8> {
    value
        .iter()
        .rev()
        .flat_map(|limb| limb.to_be_bytes())
        .collect()
}

/// Arithmetic modulo an odd `n` in Montgomery form (R = 2^(64·limbs)).
struct Montgomery {
    n: Vec<u64>,
    /// -n⁻¹ mod 2^64.
    n_prime: u64,
    /// R² mod n, to enter Montgomery form.
    r2: Vec<u64>,
    /// R³ mod n, to reduce a number of two limbs' widths straight into Montgomery form.
    r3: Vec<u64>,
}

impl Montgomery {
    fn new(n_bytes: &[u8]) -> Montgomery {
        let n = limbs(n_bytes, 0);
        assert!(n[0] & 1 == 1, "modulus must be odd");
        // Newton's iteration doubles the correct low bits each step: 1 → 64 in six steps.
        let mut inverse: u64 = 1;
        for _ in 0..6 {
            inverse = inverse.wrapping_mul(2u64.wrapping_sub(n[0].wrapping_mul(inverse)));
        }
        let mut r2 = vec![0u64; n.len()];
        r2[0] = 1;
        for _ in 0..2 * 64 * n.len() {
            double_mod(&mut r2, &n);
        }
        let mut modulus = Montgomery {
            n_prime: inverse.wrapping_neg(),
            n,
            r3: Vec::new(),
            r2,
        };
        modulus.r3 = modulus.mul(&modulus.r2, &modulus.r2);
        modulus
    }

    fn len(&self) -> usize {
        self.n.len()
    }

    /// x mod n in Montgomery form (x·R mod n), for x < R².
    fn reduce(&self, x_bytes: &[u8]) -> Vec<u64> {
        let s = self.len();
        let x = limbs(x_bytes, 2 * s);
        assert!(x.len() <= 2 * s, "operand too wide");
        // x = high·R + low, so x·R = high·R² + low·R.
        let mut sum = self.mul(&x[s..], &self.r3);
        let low = self.mul(&x[..s], &self.r2);
        let carry = add(&mut sum, &low);
        if carry || !less_than(&sum, &self.n) {
            subtract(&mut sum, &self.n);
        }
        sum
    }

    /// x·R⁻¹ mod n: Montgomery form back to normal form.
    fn leave_montgomery(&self, x: &[u64]) -> Vec<u64> {
        let mut one = vec![0u64; self.len()];
        one[0] = 1;
        self.mul(x, &one)
    }

    /// a·b·R⁻¹ mod n (CIOS), for a < R and b < n.
    fn mul(&self, a: &[u64], b: &[u64]) -> Vec<u64> {
        let s = self.n.len();
        let n = &self.n[..s];
        let mut t = vec![0u64; s + 2];
        for &bi in &b[..s] {
            let bi = bi as u128;
            let mut carry = 0u128;
            for j in 0..s {
                let sum = t[j] as u128 + a[j] as u128 * bi + carry;
                t[j] = sum as u64;
                carry = sum >> 64;
            }
            let sum = t[s] as u128 + carry;
            t[s] = sum as u64;
            t[s + 1] = (sum >> 64) as u64;
            let m = t[0].wrapping_mul(self.n_prime) as u128;
            let mut carry = (t[0] as u128 + m * n[0] as u128) >> 64;
            for j in 1..s {
                let sum = t[j] as u128 + m * n[j] as u128 + carry;
                t[j - 1] = sum as u64;
                carry = sum >> 64;
            }
            let sum = t[s] as u128 + carry;
            t[s - 1] = sum as u64;
            t[s] = t[s + 1] + (sum >> 64) as u64;
            t[s + 1] = 0;
        }
        if t[s] != 0 || !less_than(&t[..s], n) {
            subtract(&mut t[..=s], n);
        }
        t.truncate(s);
        t
    }

    /// base^exponent mod n for `base` in Montgomery form; the result is in normal form.
    fn pow(&self, base: &[u64], exponent: &[u8]) -> Vec<u64> {
        let mut one = vec![0u64; self.len()];
        one[0] = 1;
        let mut acc = self.mul(&one, &self.r2);
        for byte in exponent {
            for bit in (0..8).rev() {
                acc = self.mul(&acc, &acc);
                if byte >> bit & 1 == 1 {
                    acc = self.mul(&acc, base);
                }
            }
        }
        self.leave_montgomery(&acc)
    }
}

fn less_than(a: &[u64], b: &[u64]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

/// a += b (b no longer than a); returns the carry out of a.
fn add(a: &mut [u64], b: &[u64]) -> bool {
    let mut carry = false;
    for (i, limb) in a.iter_mut().enumerate() {
        let rhs = b.get(i).copied().unwrap_or(0);
        let (sum, c1) = limb.overflowing_add(rhs);
        let (sum, c2) = sum.overflowing_add(u64::from(carry));
        *limb = sum;
        carry = c1 || c2;
    }
    carry
}

/// a -= b (b no longer than a), modulo 2^(64·len(a)).
fn subtract(a: &mut [u64], b: &[u64]) {
    let mut borrow = 0u64;
    for (i, limb) in a.iter_mut().enumerate() {
        let rhs = b.get(i).copied().unwrap_or(0);
        let (diff, b1) = limb.overflowing_sub(rhs);
        let (diff, b2) = diff.overflowing_sub(borrow);
        *limb = diff;
        borrow = u64::from(b1 || b2);
    }
}

/// a·b, schoolbook.
fn multiply(a: &[u64], b: &[u64]) -> Vec<u64> {
    let mut out = vec![0u64; a.len() + b.len() + 1];
    for (i, &ai) in a.iter().enumerate() {
        let mut carry = 0u128;
        for (j, &bj) in b.iter().enumerate() {
            let sum = out[i + j] as u128 + ai as u128 * bj as u128 + carry;
            out[i + j] = sum as u64;
            carry = sum >> 64;
        }
        out[i + b.len()] = carry as u64;
    }
    out
}

/// x = 2x mod n, for x < n.
fn double_mod(x: &mut [u64], n: &[u64]) {
    let top = x[x.len() - 1] >> 63;
    for i in (1..x.len()).rev() {
        x[i] = x[i] << 1 | x[i - 1] >> 63;
    }
    x[0] <<= 1;
    if top == 1 || !less_than(x, n) {
        subtract(x, n);
    }
}
