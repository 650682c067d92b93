//! One token, one provider, one key set and `now` → accepted, or one reason why not.

use crate::config::Provider;
use crate::failure::Failure;
use crate::jwks::{Alg, Key, KeySet};
use crate::token::Token;

/// Checks one signature with one key. The pure-Rust implementation is [`PureRustCrypto`]; the
/// filter may supply one backed by the host.
pub trait SignatureCheck {
    /// True when `token`'s signature over its signing input is valid for `key` with `alg`.
    /// The caller has already checked that `key` fits `alg`.
    fn check(&self, alg: Alg, key: &Key, token: &Token<'_>) -> bool;
}

/// Signature checks with jwt-simple's pure-Rust primitives.
#[derive(Debug, Clone, Copy, Default)]
pub struct PureRustCrypto;

impl SignatureCheck for PureRustCrypto {
    fn check(&self, _alg: Alg, _key: &Key, _token: &Token<'_>) -> bool {
        false
    }
}

/// The checks that need no key: algorithm allowed, `iss`, `aud`, times, lifetime. They run first,
/// so a token that fails them never costs a signature check or a key refetch.
pub fn check_claims(_token: &Token<'_>, _provider: &Provider, _now: u64) -> Result<(), Failure> {
    Err(Failure::BadSignature)
}

/// Selects the key by `kid` (or tries each fitting key when the token has none) and checks the
/// signature. [`Failure::UnknownKid`] tells the caller a key refetch may help.
pub fn check_signature(
    _token: &Token<'_>,
    _keys: &KeySet,
    _crypto: &dyn SignatureCheck,
) -> Result<(), Failure> {
    Err(Failure::BadSignature)
}
