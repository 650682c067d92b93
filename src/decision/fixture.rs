//! What the decision's tests share: an Ed25519 issuer at [`ISSUER`] (key id `k1`), a
//! configuration trusting it, tokens it signs, and the decision at a chosen second.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_compact::{KeyPair, Seed};
use serde_json::{json, Value};

use super::token_cache::TokenCache;
use super::{decide, Decision, Now};
use crate::config::Config;
use crate::crypto::verify::PureRustCrypto;
use crate::keys::shared::MemorySharedData;
use crate::keys::store::KeyStore;
use crate::request::Request;

/// The issuer every fixture's provider `idp` trusts.
pub(super) const ISSUER: &str = "https://idp.test";

/// An Ed25519 key pair from a one-byte seed.
pub(super) fn pair(seed: u8) -> KeyPair {
    KeyPair::from_seed(Seed::new([seed; 32]))
}

/// A key pair's public JWK, without `kid`.
pub(super) fn public_jwk(pair: &KeyPair) -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(*pair.pk)})
}

/// A compact JWS of `header` and `claims`, signed by `signer`.
pub(super) fn jws(header: &Value, claims: &Value, signer: &KeyPair) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = signer.sk.sign(input.as_bytes(), None);
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(*signature))
}

pub(super) struct Fixture {
    pub(super) config: Config,
    pub(super) keys: KeyStore,
    pub(super) tokens: Vec<TokenCache>,
    pub(super) shared: MemorySharedData,
    pub(super) issuer: KeyPair,
}

impl Fixture {
    /// Provider `idp` (issuer [`ISSUER`], audience `kserve`, the issuer's key inline) with the
    /// members of `provider` added, and the top-level members of `document` (its rules, ...).
    pub(super) fn new(provider: Value, document: Value) -> Fixture {
        let issuer = pair(1);
        let mut jwk = public_jwk(&issuer);
        jwk["kid"] = json!("k1");
        let mut idp = json!({
            "issuer": ISSUER,
            "audiences": ["kserve"],
            "local_jwks": {"inline_string": json!({"keys": [jwk]}).to_string()},
        });
        for (name, value) in provider.as_object().unwrap() {
            idp[name] = value.clone();
        }
        let mut document = document;
        document["providers"] = json!({"idp": idp});
        let config = Config::from_json(document.to_string().as_bytes()).unwrap();
        let keys = KeyStore::new(&config).unwrap();
        let tokens = TokenCache::per_provider(&config);
        Fixture {
            config,
            keys,
            tokens,
            shared: MemorySharedData::default(),
            issuer,
        }
    }

    /// A token with `claims`, signed by the issuer.
    pub(super) fn token(&self, claims: &Value) -> String {
        jws(&json!({"alg": "EdDSA", "kid": "k1"}), claims, &self.issuer)
    }

    /// The decision on `request` at `now` (seconds since the epoch).
    pub(super) fn decide(&mut self, request: &Request, now: u64) -> Decision {
        decide(
            &self.config,
            request,
            &mut self.keys,
            &mut self.tokens,
            &PureRustCrypto,
            &mut self.shared,
            Now { ms: now * 1000 },
        )
    }
}
