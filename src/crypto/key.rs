//! Public signing keys as the verifiers use them.

use crate::crypto::rsa::PreparedKey;
use crate::jose::alg::Alg;

/// Public key material, already checked for size and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// RSA 2048–4096 bits; big-endian modulus and exponent without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// EC P-256: uncompressed SEC1 point (`04 || x || y`, 65 bytes).
    P256 { point: Vec<u8> },
    /// EC P-384: uncompressed SEC1 point (97 bytes).
    P384 { point: Vec<u8> },
    /// Ed25519: 32-byte public key.
    Ed25519 { public: Vec<u8> },
}

/// One usable signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// `kid`, when the JWK has one.
    pub kid: Option<String>,
    /// `alg`, when the JWK pins one.
    pub alg: Option<Alg>,
    /// The key itself.
    pub material: KeyMaterial,
    /// The key as DER SubjectPublicKeyInfo, computed once when the key set is loaded, for
    /// verifiers that import keys in that form. `None` for Ed25519.
    pub spki_der: Option<Vec<u8>>,
    /// An RSA key in the form the pure-Rust check works with, made on its first use.
    pub prepared_rsa: PreparedKey,
}

impl Key {
    /// Whether this key may verify a token signed with `alg`: the key type fits, and the JWK's own
    /// `alg`, when present, is the same.
    pub fn fits(&self, alg: Alg) -> bool {
        let type_fits = match &self.material {
            KeyMaterial::Rsa { .. } => matches!(
                alg,
                Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512
            ),
            KeyMaterial::P256 { .. } => alg == Alg::ES256,
            KeyMaterial::P384 { .. } => alg == Alg::ES384,
            KeyMaterial::Ed25519 { .. } => alg == Alg::EdDSA,
        };
        type_fits && self.alg.is_none_or(|pinned| pinned == alg)
    }
}

/// The usable keys of one JWKS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    /// Keys in document order.
    pub keys: Vec<Key>,
}

/// The number of significant bits in a big-endian unsigned integer.
pub fn bit_length(bytes: &[u8]) -> usize {
    match bytes.first() {
        None => 0,
        Some(&top) => (bytes.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
    }
}
