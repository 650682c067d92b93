//! Signature checks in the form Envoy's `verify_signature` foreign function takes them: keys as
//! DER SubjectPublicKeyInfo, ECDSA signatures as DER `ECDSA-Sig-Value`, and the call's arguments
//! and answer as protobuf (`VerifySignatureArguments`, `VerifySignatureResult`).
//!
//! The host hashes the text with the named hash and runs BoringSSL's `EVP_DigestVerify` with
//! default parameters: PKCS#1 v1.5 for RSA keys, ECDSA for EC keys. It cannot do RSA-PSS (no way to
//! ask for PSS padding) nor Ed25519 (which refuses a separate hash), so PS256/384/512 and EdDSA
//! stay on the pure-Rust path. It does not check that a key fits an algorithm either:
//! [`host_request`] only builds a request for an algorithm and key type that belong together.
//!
//! Everything here is plain data in, plain data out, so it is tested natively; the filter does
//! the call.

use crate::crypto::key::{Key, KeyMaterial};
use crate::jose::alg::Alg;
use crate::jose::token::Token;

/// The name under which Envoy registers the foreign function.
pub const FOREIGN_FUNCTION: &str = "verify_signature";

/// DER content of OID 1.2.840.113549.1.1.1 (rsaEncryption).
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// DER content of OID 1.2.840.10045.2.1 (id-ecPublicKey).
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// DER content of OID 1.2.840.10045.3.1.7 (prime256v1, P-256).
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER content of OID 1.3.132.0.34 (secp384r1, P-384).
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_NULL: u8 = 0x05;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;

/// Bytes of one P-256 scalar (`r` or `s`); a JOSE ES256 signature is twice that.
const P256_SCALAR_BYTES: usize = 32;
/// Bytes of one P-384 scalar; a JOSE ES384 signature is twice that.
const P384_SCALAR_BYTES: usize = 48;

/// What to do about one signature check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRequest {
    /// Call the host with these `VerifySignatureArguments` bytes.
    Ask(Vec<u8>),
    /// The host cannot check this algorithm (or this key has no DER form): check it elsewhere.
    NotForHost,
    /// The signature cannot be valid for this key and algorithm: refuse it without asking.
    Invalid,
}

/// The host's answer, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyResult {
    /// True only when the host verified the signature.
    pub verified: bool,
    /// The host's reason when it did not.
    pub error: String,
}

/// The hash the host must use for `alg`, or `None` when the host cannot check `alg` at all.
pub fn hash_name(alg: Alg) -> Option<&'static str> {
    match alg {
        Alg::RS256 | Alg::ES256 => Some("sha256"),
        Alg::RS384 | Alg::ES384 => Some("sha384"),
        Alg::RS512 => Some("sha512"),
        Alg::PS256 | Alg::PS384 | Alg::PS512 | Alg::EdDSA => None,
    }
}

/// The DER SubjectPublicKeyInfo of an RSA, P-256 or P-384 key, the form the host imports.
/// `None` for Ed25519, which the host cannot use, and for material of the wrong shape.
pub fn spki_der(material: &KeyMaterial) -> Option<Vec<u8>> {
    match material {
        KeyMaterial::Rsa { n, e } => {
            if n.iter().all(|&byte| byte == 0) || e.iter().all(|&byte| byte == 0) {
                return None;
            }
            let mut algorithm = Vec::new();
            push_tlv(&mut algorithm, TAG_OID, OID_RSA_ENCRYPTION);
            push_tlv(&mut algorithm, TAG_NULL, &[]);
            let mut integers = Vec::new();
            push_unsigned_integer(&mut integers, n);
            push_unsigned_integer(&mut integers, e);
            let mut rsa_public_key = Vec::new();
            push_tlv(&mut rsa_public_key, TAG_SEQUENCE, &integers);
            Some(subject_public_key_info(&algorithm, &rsa_public_key))
        }
        KeyMaterial::P256 { point } => ec_spki(OID_P256, point, P256_SCALAR_BYTES),
        KeyMaterial::P384 { point } => ec_spki(OID_P384, point, P384_SCALAR_BYTES),
        KeyMaterial::Ed25519 { .. } => None,
    }
}

fn ec_spki(curve: &[u8], point: &[u8], scalar_bytes: usize) -> Option<Vec<u8>> {
    // Only the uncompressed form `04 || x || y`, as jwks stores it.
    if point.len() != 1 + 2 * scalar_bytes || point.first() != Some(&0x04) {
        return None;
    }
    let mut algorithm = Vec::new();
    push_tlv(&mut algorithm, TAG_OID, OID_EC_PUBLIC_KEY);
    push_tlv(&mut algorithm, TAG_OID, curve);
    Some(subject_public_key_info(&algorithm, point))
}

/// `SEQUENCE { SEQUENCE { algorithm }, BIT STRING { key } }`; the key is a whole number of bytes,
/// so the BIT STRING's unused-bits byte is 0.
fn subject_public_key_info(algorithm: &[u8], key: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(algorithm.len() + key.len() + 16);
    push_tlv(&mut body, TAG_SEQUENCE, algorithm);
    let mut bits = Vec::with_capacity(key.len() + 1);
    bits.push(0);
    bits.extend_from_slice(key);
    push_tlv(&mut body, TAG_BIT_STRING, &bits);
    let mut out = Vec::with_capacity(body.len() + 4);
    push_tlv(&mut out, TAG_SEQUENCE, &body);
    out
}

/// A JOSE ECDSA signature (`r || s`, each `scalar_bytes` long) as DER
/// `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }`. `None` when the length is wrong or
/// `r` or `s` is zero: such a signature is never valid and never reaches the host.
pub fn ecdsa_signature_der(jose: &[u8], scalar_bytes: usize) -> Option<Vec<u8>> {
    if scalar_bytes == 0 || jose.len() != 2 * scalar_bytes {
        return None;
    }
    let (r, s) = jose.split_at_checked(scalar_bytes)?;
    if r.iter().all(|&byte| byte == 0) || s.iter().all(|&byte| byte == 0) {
        return None;
    }
    let mut integers = Vec::with_capacity(jose.len() + 6);
    push_unsigned_integer(&mut integers, r);
    push_unsigned_integer(&mut integers, s);
    let mut out = Vec::with_capacity(integers.len() + 3);
    push_tlv(&mut out, TAG_SEQUENCE, &integers);
    Some(out)
}

/// Decides how `token`'s signature is checked with `key` as `alg`, and builds the host's
/// arguments when the host can do it. The algorithm and the key type must belong together
/// (RS* with RSA, ES256 with P-256, ES384 with P-384); anything else is [`HostRequest::Invalid`].
pub fn host_request(alg: Alg, key: &Key, token: &Token<'_>) -> HostRequest {
    let Some(hash) = hash_name(alg) else {
        return HostRequest::NotForHost;
    };
    let signature = match (alg, &key.material) {
        (Alg::RS256 | Alg::RS384 | Alg::RS512, KeyMaterial::Rsa { .. }) => token.signature.clone(),
        (Alg::ES256, KeyMaterial::P256 { .. }) => {
            match ecdsa_signature_der(&token.signature, P256_SCALAR_BYTES) {
                Some(der) => der,
                None => return HostRequest::Invalid,
            }
        }
        (Alg::ES384, KeyMaterial::P384 { .. }) => {
            match ecdsa_signature_der(&token.signature, P384_SCALAR_BYTES) {
                Some(der) => der,
                None => return HostRequest::Invalid,
            }
        }
        _ => return HostRequest::Invalid,
    };
    let Some(public_key) = key.spki_der.as_deref() else {
        return HostRequest::NotForHost;
    };
    HostRequest::Ask(encode_arguments(
        hash,
        public_key,
        &signature,
        token.signing_input.as_bytes(),
    ))
}

/// `VerifySignatureArguments { hash_function = 1; public_key = 2; signature = 3; text = 4 }` in
/// protobuf wire format. `public_key_pem` (5) stays empty: the host refuses both key forms at once.
pub fn encode_arguments(hash: &str, public_key: &[u8], signature: &[u8], text: &[u8]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(hash.len() + public_key.len() + signature.len() + text.len() + 16);
    push_field(&mut out, 1, hash.as_bytes());
    push_field(&mut out, 2, public_key);
    push_field(&mut out, 3, signature);
    push_field(&mut out, 4, text);
    out
}

/// Decodes `VerifySignatureResult { bool result = 1; string error = 2; }`. Unknown fields are
/// skipped; anything malformed gives `None`, which the caller takes as "not verified".
pub fn decode_result(bytes: &[u8]) -> Option<VerifyResult> {
    let mut reader = Reader { rest: bytes };
    let mut result = VerifyResult::default();
    while let Some((number, value)) = reader.next_field()? {
        match (number, value) {
            (1, Value::Varint(flag)) => result.verified = flag != 0,
            (2, Value::Bytes(text)) => result.error = String::from_utf8(text.to_vec()).ok()?,
            // A known field with the wrong wire type: not an answer this filter understands.
            (1 | 2, _) => return None,
            _ => {}
        }
    }
    Some(result)
}

/// A fixed ES256 token (key, signing input, JOSE signature) the host must verify, and a
/// variant with an altered signing input it must refuse. Checking both at start tells a working
/// `verify_signature` from one that is missing, broken or says yes to everything.
pub fn self_test_arguments() -> Option<SelfTest> {
    let material = KeyMaterial::P256 {
        point: SELF_TEST_POINT.to_vec(),
    };
    let public_key = spki_der(&material)?;
    let signature = ecdsa_signature_der(&SELF_TEST_SIGNATURE, P256_SCALAR_BYTES)?;
    let hash = hash_name(Alg::ES256)?;
    let mut altered = SELF_TEST_SIGNING_INPUT.as_bytes().to_vec();
    if let Some(last) = altered.last_mut() {
        *last ^= 1;
    }
    Some(SelfTest {
        genuine: encode_arguments(
            hash,
            &public_key,
            &signature,
            SELF_TEST_SIGNING_INPUT.as_bytes(),
        ),
        forged: encode_arguments(hash, &public_key, &signature, &altered),
    })
}

/// The two self-test calls of [`self_test_arguments`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfTest {
    /// Arguments of a valid signature: the host must answer verified.
    pub genuine: Vec<u8>,
    /// The same signature over other text: the host must answer not verified.
    pub forged: Vec<u8>,
}

/// `{"alg":"ES256"}.{"sub":"kserve-auth-filter host self-test"}`, base64url.
const SELF_TEST_SIGNING_INPUT: &str =
    "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJrc2VydmUtYXV0aC1maWx0ZXIgaG9zdCBzZWxmLXRlc3QifQ";

/// The P-256 public key that signed [`SELF_TEST_SIGNING_INPUT`] (uncompressed point).
const SELF_TEST_POINT: [u8; 65] = [
    0x04, 0x2e, 0x18, 0x46, 0xce, 0x2f, 0x58, 0xe1, 0x65, 0xa8, 0x0b, 0x27, 0xd3, 0xc2, 0x9b, 0x92,
    0x36, 0xb4, 0x95, 0xff, 0xe0, 0xd7, 0xec, 0xcf, 0x5b, 0xe9, 0x60, 0xd1, 0x37, 0x4a, 0x2b, 0x4a,
    0xcc, 0xee, 0xc2, 0x21, 0x17, 0xaa, 0x00, 0xa3, 0xa4, 0x73, 0x9e, 0xd8, 0xa4, 0xfd, 0x8b, 0x44,
    0xf2, 0xb7, 0xd8, 0x8c, 0x85, 0x08, 0xb1, 0x3e, 0x86, 0xb9, 0xb6, 0x70, 0xc7, 0xf1, 0x6b, 0xb6,
    0x6e,
];

/// The JOSE (`r || s`) ES256 signature of [`SELF_TEST_SIGNING_INPUT`].
const SELF_TEST_SIGNATURE: [u8; 64] = [
    0x6e, 0x0e, 0x27, 0xdd, 0xd0, 0x74, 0x4f, 0xb2, 0xc5, 0xc9, 0x28, 0x3b, 0xb2, 0xfd, 0x5b, 0x14,
    0x0d, 0x45, 0x7a, 0xe5, 0x20, 0x5a, 0xee, 0x09, 0x7b, 0xa9, 0x1f, 0xfa, 0x68, 0x80, 0x0b, 0x46,
    0xd1, 0x1e, 0xed, 0xfc, 0xc1, 0xc6, 0xcb, 0xb8, 0x7f, 0xff, 0x26, 0xdf, 0x23, 0xaa, 0x5e, 0x32,
    0x70, 0x2f, 0x7b, 0xda, 0x1e, 0xa5, 0x6e, 0x00, 0xf5, 0x5f, 0xd6, 0x75, 0xcc, 0xbc, 0x19, 0x16,
];

/// Appends a DER tag-length-value.
fn push_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    match u8::try_from(content.len()) {
        Ok(short) if short < 0x80 => out.push(short),
        _ => {
            let bytes = content.len().to_be_bytes();
            let first = bytes
                .iter()
                .position(|&byte| byte != 0)
                .unwrap_or(bytes.len());
            let significant = bytes.get(first..).unwrap_or_default();
            // At most size_of::<usize>() bytes, so the count fits the low seven bits.
            out.push(0x80 | significant.len() as u8);
            out.extend_from_slice(significant);
        }
    }
    out.extend_from_slice(content);
}

/// Appends a DER INTEGER holding the non-negative big-endian `magnitude`: minimal length
/// (leading zeros dropped), with one 0x00 in front when the top bit is set so it stays positive.
fn push_unsigned_integer(out: &mut Vec<u8>, magnitude: &[u8]) {
    let first = magnitude
        .iter()
        .position(|&byte| byte != 0)
        .unwrap_or(magnitude.len());
    let trimmed = magnitude.get(first..).unwrap_or_default();
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|&top| top & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    push_tlv(out, TAG_INTEGER, &content);
}

/// Appends a length-delimited protobuf field (wire type 2).
fn push_field(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
    push_varint(out, number << 3 | 2);
    push_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// One protobuf field value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Reads protobuf fields one at a time; every read is bounds-checked.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// The next field: `Some(None)` at the end of the input, `None` when malformed.
    fn next_field(&mut self) -> Option<Option<(u64, Value<'a>)>> {
        if self.rest.is_empty() {
            return Some(None);
        }
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 {
            return None;
        }
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            2 => {
                let length = usize::try_from(self.varint()?).ok()?;
                Value::Bytes(self.take(length)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            // Groups (3, 4) are obsolete; 6 and 7 do not exist.
            _ => return None,
        };
        Some(Some((number, value)))
    }

    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.rest.split_at_checked(count)?;
        self.rest = rest;
        Some(taken)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value: u64 = 0;
        for index in 0..10 {
            let (&byte, rest) = self.rest.split_first()?;
            self.rest = rest;
            let bits = u64::from(byte & 0x7f);
            // The tenth byte may only carry the 64th bit.
            if index == 9 && bits > 1 {
                return None;
            }
            value |= bits << (7 * index);
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use jwt_simple::prelude::*;

    use super::*;
    use crate::crypto::verify::verify_signature;
    use crate::jose::token::parse;
    use crate::keys::jwks::test_support::{RSA_3072_PEM, RSA_A_PEM, RSA_B_PEM};

    fn rsa(n: &[u8], e: &[u8]) -> KeyMaterial {
        KeyMaterial::Rsa {
            n: n.to_vec(),
            e: e.to_vec(),
        }
    }

    fn key(material: KeyMaterial) -> Key {
        Key {
            kid: None,
            alg: None,
            spki_der: spki_der(&material),
            prepared_rsa: Default::default(),
            material,
        }
    }

    /// Every field of a protobuf message, in order.
    fn fields(bytes: &[u8]) -> Vec<(u64, Value<'_>)> {
        let mut reader = Reader { rest: bytes };
        let mut out = Vec::new();
        while let Some(field) = reader.next_field().unwrap() {
            out.push(field);
        }
        out
    }

    /// The four argument fields, as (hash, key, signature, text).
    fn arguments(bytes: &[u8]) -> (String, Vec<u8>, Vec<u8>, Vec<u8>) {
        let fields = fields(bytes);
        let bytes_of = |number: u64| match fields.iter().find(|(n, _)| *n == number) {
            Some((_, Value::Bytes(bytes))) => bytes.to_vec(),
            other => panic!("field {number}: {other:?}"),
        };
        (
            String::from_utf8(bytes_of(1)).unwrap(),
            bytes_of(2),
            bytes_of(3),
            bytes_of(4),
        )
    }

    // The RSA SPKI is byte for byte what jwt-simple's own DER encoder produces, for every fixture.
    #[test]
    fn rsa_spki_matches_jwt_simple() {
        for pem in [RSA_A_PEM, RSA_B_PEM, RSA_3072_PEM] {
            let public = RS256KeyPair::from_pem(pem).unwrap().public_key();
            let components = public.to_components();
            assert_eq!(
                spki_der(&rsa(&components.n, &components.e)).unwrap(),
                public.to_der().unwrap()
            );
        }
    }

    // A modulus whose top bit is clear gets no 0x00 pad; one whose top bit is set gets one.
    #[test]
    fn rsa_spki_integer_padding() {
        let mut n = vec![0x01];
        n.extend(std::iter::repeat_n(0xff, 256));
        let public = RS256PublicKey::from_components(&n, &[1, 0, 1]).unwrap();
        let der = spki_der(&rsa(&n, &[1, 0, 1])).unwrap();
        assert_eq!(der, public.to_der().unwrap());
        // INTEGER n: 02 82 01 01 01 ff ...; no zero in front of 0x01.
        let at = der
            .windows(5)
            .position(|w| w == [0x02, 0x82, 0x01, 0x01, 0x01]);
        assert!(at.is_some(), "{der:02x?}");

        let n = vec![0xff; 256];
        let der = spki_der(&rsa(&n, &[1, 0, 1])).unwrap();
        let at = der
            .windows(5)
            .position(|w| w == [0x02, 0x82, 0x01, 0x01, 0x00]);
        assert!(at.is_some(), "{der:02x?}");
        assert!(der.ends_with(&[0x02, 0x03, 0x01, 0x00, 0x01]));
    }

    // Leading zero bytes in n or e do not change the encoding.
    #[test]
    fn rsa_spki_ignores_leading_zeros() {
        let components = RS256KeyPair::from_pem(RSA_A_PEM)
            .unwrap()
            .public_key()
            .to_components();
        let mut n = vec![0, 0];
        n.extend(&components.n);
        assert_eq!(
            spki_der(&rsa(&n, &[0, 1, 0, 1])),
            spki_der(&rsa(&components.n, &components.e))
        );
    }

    // A zero or empty modulus or exponent has no key form.
    #[test]
    fn rsa_spki_refuses_zero() {
        assert_eq!(spki_der(&rsa(&[], &[1, 0, 1])), None);
        assert_eq!(spki_der(&rsa(&[0, 0], &[1, 0, 1])), None);
        assert_eq!(spki_der(&rsa(&[0xc5; 256], &[])), None);
    }

    // The P-256 and P-384 SPKIs are byte for byte jwt-simple's DER.
    #[test]
    fn ec_spki_matches_jwt_simple() {
        for _ in 0..8 {
            let p256 = ES256KeyPair::generate().public_key();
            let point = p256.public_key().to_bytes_uncompressed();
            assert_eq!(
                spki_der(&KeyMaterial::P256 { point }).unwrap(),
                p256.to_der().unwrap()
            );
            let p384 = ES384KeyPair::generate().public_key();
            let point = p384.public_key().to_bytes_uncompressed();
            assert_eq!(
                spki_der(&KeyMaterial::P384 { point }).unwrap(),
                p384.to_der().unwrap()
            );
        }
    }

    // Points of the wrong size or form, and Ed25519 keys, have no SPKI here.
    #[test]
    fn spki_refuses_other_material() {
        let point = ES256KeyPair::generate()
            .public_key()
            .public_key()
            .to_bytes_uncompressed();
        assert_eq!(
            spki_der(&KeyMaterial::P384 {
                point: point.clone()
            }),
            None
        );
        let mut compressed_tag = point.clone();
        compressed_tag[0] = 0x02;
        assert_eq!(
            spki_der(&KeyMaterial::P256 {
                point: compressed_tag
            }),
            None
        );
        assert_eq!(
            spki_der(&KeyMaterial::P256 {
                point: point[..64].to_vec()
            }),
            None
        );
        let public = Ed25519KeyPair::generate().public_key().to_bytes();
        assert_eq!(spki_der(&KeyMaterial::Ed25519 { public }), None);
    }

    // r with its top bit set gets a 0x00 pad; leading zeros of s are dropped.
    #[test]
    fn ecdsa_der_integers() {
        let mut jose = vec![0u8; 64];
        jose[0] = 0x80;
        jose[63] = 0x01;
        let mut expected = vec![0x30, 0x26, 0x02, 0x21, 0x00, 0x80];
        expected.extend([0u8; 31]);
        expected.extend([0x02, 0x01, 0x01]);
        assert_eq!(ecdsa_signature_der(&jose, 32).unwrap(), expected);

        let mut jose = vec![0x11u8; 64];
        jose[0] = 0;
        jose[1] = 0x7f;
        let der = ecdsa_signature_der(&jose, 32).unwrap();
        // SEQUENCE of 67 bytes: INTEGER r (2 + 31), INTEGER s (2 + 32).
        assert_eq!(&der[..5], &[0x30, 0x43, 0x02, 0x1f, 0x7f]);
        assert_eq!(&der[35..38], &[0x02, 0x20, 0x11]);
        assert_eq!(der.len(), 69);
    }

    // An ES384 signature of two 48-byte scalars with top bits set is 104 bytes of DER.
    #[test]
    fn ecdsa_der_p384() {
        let der = ecdsa_signature_der(&[0xff; 96], 48).unwrap();
        assert_eq!(&der[..4], &[0x30, 0x66, 0x02, 0x31]);
        assert_eq!(der.len(), 104);
    }

    // Wrong lengths and zero r or s never become a DER signature.
    #[test]
    fn ecdsa_der_refuses_malformed() {
        for length in [0, 1, 32, 63, 65, 96, 128] {
            assert_eq!(ecdsa_signature_der(&vec![7; length], 32), None, "{length}");
        }
        for length in [64, 95, 97] {
            assert_eq!(ecdsa_signature_der(&vec![7; length], 48), None, "{length}");
        }
        let mut zero_r = vec![7u8; 64];
        zero_r[..32].fill(0);
        assert_eq!(ecdsa_signature_der(&zero_r, 32), None);
        let mut zero_s = vec![7u8; 64];
        zero_s[32..].fill(0);
        assert_eq!(ecdsa_signature_der(&zero_s, 32), None);
        assert_eq!(ecdsa_signature_der(&[], 0), None);
    }

    // Hash names follow the alg's digest; PSS and EdDSA are not for the host.
    #[test]
    fn hash_names() {
        assert_eq!(hash_name(Alg::RS256), Some("sha256"));
        assert_eq!(hash_name(Alg::ES256), Some("sha256"));
        assert_eq!(hash_name(Alg::RS384), Some("sha384"));
        assert_eq!(hash_name(Alg::ES384), Some("sha384"));
        assert_eq!(hash_name(Alg::RS512), Some("sha512"));
        for alg in [Alg::PS256, Alg::PS384, Alg::PS512, Alg::EdDSA] {
            assert_eq!(hash_name(alg), None, "{alg:?}");
        }
    }

    // Arguments are four length-delimited fields; lengths over 127 take a two-byte varint.
    #[test]
    fn arguments_wire_format() {
        assert_eq!(
            encode_arguments("sha256", &[1, 2], &[3], b"ab"),
            [
                &[0x0a, 6][..],
                b"sha256",
                &[0x12, 2, 1, 2],
                &[0x1a, 1, 3],
                &[0x22, 2],
                b"ab"
            ]
            .concat()
        );
        let text = vec![b'x'; 300];
        let encoded = encode_arguments("sha384", &[], &[], &text);
        assert_eq!(
            &encoded[encoded.len() - 303..encoded.len() - 300],
            &[0x22, 0xac, 0x02]
        );
        assert_eq!(arguments(&encoded), ("sha384".into(), vec![], vec![], text));
    }

    // Result decoding: defaults, both fields, last value wins, unknown fields skipped.
    #[test]
    fn result_decoding() {
        let ok = |verified: bool, error: &str| {
            Some(VerifyResult {
                verified,
                error: error.into(),
            })
        };
        assert_eq!(decode_result(&[]), ok(false, ""));
        assert_eq!(decode_result(&[0x08, 0x01]), ok(true, ""));
        assert_eq!(decode_result(&[0x08, 0x00]), ok(false, ""));
        assert_eq!(decode_result(&[0x08, 0x81, 0x00]), ok(true, ""));
        assert_eq!(decode_result(&[0x12, 2, b'n', b'o']), ok(false, "no"));
        assert_eq!(decode_result(&[0x08, 0x01, 0x08, 0x00]), ok(false, ""));
        let unknown: [&[u8]; 4] = [
            &[0x18, 0x96, 0x01],
            &[0x21, 1, 2, 3, 4, 5, 6, 7, 8],
            &[0x2a, 2, 0xff, 0xfe],
            &[0x35, 1, 2, 3, 4],
        ];
        for field in unknown {
            let bytes = [field, &[0x08, 0x01]].concat();
            assert_eq!(decode_result(&bytes), ok(true, ""), "{bytes:02x?}");
        }
    }

    // Truncated or malformed answers decode to None, never to "verified".
    #[test]
    fn result_malformed() {
        let cases: [&[u8]; 11] = [
            &[0x08],
            &[0x08, 0x80],
            &[0x12, 5, b'a'],
            &[0x0a, 1, 1],
            &[0x15, 1, 0, 0, 0],
            &[0x10, 0x01],
            &[0x0b],
            &[0x0e],
            &[0x00, 0x01],
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
            ],
            &[0x12, 2, 0xc3, 0x28],
        ];
        for bytes in cases {
            assert_eq!(decode_result(bytes), None, "{bytes:02x?}");
        }
        // Every prefix of a real "verified" answer followed by garbage is handled without panic.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..20_000 {
            let mut bytes = Vec::new();
            for _ in 0..(state % 24) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                bytes.push(state as u8);
            }
            let _ = decode_result(&bytes);
        }
        for first in 0..=255u8 {
            for second in 0..=255u8 {
                let _ = decode_result(&[first, second]);
                let _ = decode_result(&[0x08, 0x01, first, second]);
            }
        }
    }

    // A ten-byte varint carrying the 64th bit is accepted; one more bit is not.
    #[test]
    fn varint_limits() {
        let max = [
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        assert!(decode_result(&max).unwrap().verified);
        let mut out = Vec::new();
        push_varint(&mut out, u64::MAX);
        assert_eq!(out, max[1..]);
    }

    fn signed_es256(pair: &ES256KeyPair) -> String {
        pair.sign(Claims::create(Duration::from_mins(5))).unwrap()
    }

    // An RS256 token becomes arguments holding the key's SPKI, the raw signature and the signing input.
    #[test]
    fn host_request_rsa() {
        let pair = RS256KeyPair::from_pem(RSA_A_PEM).unwrap();
        let raw = pair.sign(Claims::create(Duration::from_mins(5))).unwrap();
        let token = parse(&raw).unwrap();
        let components = pair.public_key().to_components();
        let key = key(rsa(&components.n, &components.e));
        let HostRequest::Ask(bytes) = host_request(Alg::RS256, &key, &token) else {
            panic!("expected a host request");
        };
        let (hash, public_key, signature, text) = arguments(&bytes);
        assert_eq!(hash, "sha256");
        assert_eq!(public_key, pair.public_key().to_der().unwrap());
        assert_eq!(signature, token.signature);
        assert_eq!(text, token.signing_input.as_bytes());
    }

    // An ES256 token's JOSE signature goes to the host as DER; a malformed one never does.
    #[test]
    fn host_request_ecdsa() {
        let pair = ES256KeyPair::generate();
        let raw = signed_es256(&pair);
        let mut token = parse(&raw).unwrap();
        let key = key(KeyMaterial::P256 {
            point: pair.public_key().public_key().to_bytes_uncompressed(),
        });
        let HostRequest::Ask(bytes) = host_request(Alg::ES256, &key, &token) else {
            panic!("expected a host request");
        };
        let (hash, _, signature, _) = arguments(&bytes);
        assert_eq!(hash, "sha256");
        assert_eq!(
            signature,
            ecdsa_signature_der(&token.signature, 32).unwrap()
        );
        token.signature.pop();
        assert_eq!(host_request(Alg::ES256, &key, &token), HostRequest::Invalid);
        token.signature = vec![0; 64];
        assert_eq!(host_request(Alg::ES256, &key, &token), HostRequest::Invalid);
    }

    // An algorithm and a key type that do not belong together are refused, not sent.
    #[test]
    fn host_request_mismatched_key() {
        let pair = ES256KeyPair::generate();
        let raw = signed_es256(&pair);
        let token = parse(&raw).unwrap();
        let p256 = key(KeyMaterial::P256 {
            point: pair.public_key().public_key().to_bytes_uncompressed(),
        });
        assert_eq!(
            host_request(Alg::ES384, &p256, &token),
            HostRequest::Invalid
        );
        assert_eq!(
            host_request(Alg::RS256, &p256, &token),
            HostRequest::Invalid
        );
        let components = RS256KeyPair::from_pem(RSA_A_PEM)
            .unwrap()
            .public_key()
            .to_components();
        let rsa_key = key(rsa(&components.n, &components.e));
        assert_eq!(
            host_request(Alg::ES256, &rsa_key, &token),
            HostRequest::Invalid
        );
    }

    // PSS, EdDSA and keys without a DER form are left to the pure-Rust path.
    #[test]
    fn host_request_not_for_host() {
        let raw = signed_es256(&ES256KeyPair::generate());
        let token = parse(&raw).unwrap();
        let components = RS256KeyPair::from_pem(RSA_A_PEM)
            .unwrap()
            .public_key()
            .to_components();
        let rsa_key = key(rsa(&components.n, &components.e));
        for alg in [Alg::PS256, Alg::PS384, Alg::PS512] {
            assert_eq!(host_request(alg, &rsa_key, &token), HostRequest::NotForHost);
        }
        let ed = key(KeyMaterial::Ed25519 {
            public: Ed25519KeyPair::generate().public_key().to_bytes(),
        });
        assert_eq!(
            host_request(Alg::EdDSA, &ed, &token),
            HostRequest::NotForHost
        );
        let without_der = Key {
            spki_der: None,
            ..rsa_key
        };
        assert_eq!(
            host_request(Alg::RS256, &without_der, &token),
            HostRequest::NotForHost
        );
    }

    // The self-test token is a genuine ES256 signature (jwt-simple and the pure-Rust verifier
    // agree); the forged text differs.
    #[test]
    fn self_test_vector_is_genuine() {
        let raw = format!(
            "{SELF_TEST_SIGNING_INPUT}.{}",
            crate::keys::jwks::test_support::b64(&SELF_TEST_SIGNATURE)
        );
        let key = key(KeyMaterial::P256 {
            point: SELF_TEST_POINT.to_vec(),
        });
        ES256PublicKey::from_bytes(&SELF_TEST_POINT)
            .unwrap()
            .verify_token::<NoCustomClaims>(&raw, None)
            .unwrap();
        assert!(verify_signature(
            Alg::ES256,
            &key,
            SELF_TEST_SIGNING_INPUT.as_bytes(),
            &SELF_TEST_SIGNATURE
        ));

        let test = self_test_arguments().unwrap();
        let (hash, public_key, signature, text) = arguments(&test.genuine);
        assert_eq!(hash, "sha256");
        assert_eq!(public_key, key.spki_der.clone().unwrap());
        assert_eq!(
            signature,
            ecdsa_signature_der(&SELF_TEST_SIGNATURE, 32).unwrap()
        );
        assert_eq!(text, SELF_TEST_SIGNING_INPUT.as_bytes());
        let (_, _, forged_signature, forged_text) = arguments(&test.forged);
        assert_eq!(forged_signature, signature);
        assert_ne!(forged_text, text);
        assert_eq!(forged_text.len(), text.len());
    }
}
