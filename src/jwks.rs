//! JWK and JWKS JSON into usable public keys. Unusable keys are skipped with a reason; they do not
//! spoil the rest of the set.

/// A JWS algorithm this filter can verify. `none` and HMAC are deliberately absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl Alg {
    /// Every supported algorithm.
    pub const ALL: [Alg; 9] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
    ];

    /// Parses a JOSE `alg` name; unsupported names (`none`, `HS256`, ...) give `None`.
    pub fn from_name(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// The JOSE `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }
}

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

/// A JWK left out of the set, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    /// Position in the `keys` array.
    pub index: usize,
    /// `kid`, when it had one.
    pub kid: Option<String>,
    /// Why it was left out, e.g. "RSA modulus is 1024 bits; at least 2048 required".
    pub reason: String,
}

/// Why a JWKS document could not be used at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksError {
    /// What is wrong, e.g. "no usable key (3 skipped)".
    pub message: String,
}

impl std::fmt::Display for JwksError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Parses a JWKS document. A set with no usable key is an error.
pub fn parse_jwks(_body: &[u8]) -> Result<(KeySet, Vec<SkippedKey>), JwksError> {
    Err(JwksError {
        message: "not implemented".into(),
    })
}
