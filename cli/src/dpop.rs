//! DPoP (RFC 9449) on the client side: a key pair the tokens are bound to, and a fresh proof for
//! every request that carries one of them. Ed25519 (`EdDSA`): small keys, deterministic
//! signatures, nothing to get wrong with nonces.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_compact::{KeyPair, Seed};
use kserve_auth_filter::jose::thumbprint::access_token_hash;
use serde_json::{json, Value};

/// The JWS algorithm of every proof.
pub const ALGORITHM: &str = "EdDSA";

/// A proof-of-possession key.
pub struct DpopKey {
    seed: [u8; 32],
    pair: KeyPair,
}

impl DpopKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<DpopKey, String> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|error| format!("no random bytes: {error}"))?;
        Ok(DpopKey::from_seed(seed))
    }

    fn from_seed(seed: [u8; 32]) -> DpopKey {
        DpopKey {
            seed,
            pair: KeyPair::from_seed(Seed::new(seed)),
        }
    }

    /// The private key as stored in the token cache (which only its owner can read).
    pub fn to_stored(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.seed)
    }

    /// A key read back from the token cache.
    pub fn from_stored(text: &str) -> Result<DpopKey, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| "the cached DPoP key is not base64url".to_owned())?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "the cached DPoP key is not 32 bytes".to_owned())?;
        Ok(DpopKey::from_seed(seed))
    }

    /// The public key as a JWK, as the proof's header carries it.
    pub fn public_jwk(&self) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(*self.pair.pk)})
    }

    /// A proof for `method url`, at `now` (seconds since the epoch). `access_token` is the token
    /// sent with it (its hash goes into `ath`), absent at the token endpoint; `nonce` is the
    /// server's `DPoP-Nonce`, when it asked for one.
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
        now: u64,
    ) -> Result<String, String> {
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti).map_err(|error| format!("no random bytes: {error}"))?;
        let header = json!({"typ": "dpop+jwt", "alg": ALGORITHM, "jwk": self.public_jwk()});
        let mut claims = json!({
            "jti": URL_SAFE_NO_PAD.encode(jti),
            "htm": method,
            "htu": target_uri(url),
            "iat": now,
        });
        if let Some(token) = access_token {
            // The filter's own `ath`, so both sides hash the token alike.
            claims["ath"] = json!(access_token_hash(token));
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.pair.sk.sign(signing_input.as_bytes(), None);
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}

/// `htu`: the request URL without its query and fragment (RFC 9449 §4.2).
fn target_uri(url: &str) -> &str {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    url.get(..end).unwrap_or(url)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn part(token: &str, index: usize) -> Value {
        let segment = token.split('.').nth(index).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
    }

    // A proof names the method, the URL without query, the time and the token's hash, and is
    // signed by the key its header carries.
    #[test]
    fn proof_claims_and_signature() {
        let key = DpopKey::generate().unwrap();
        let proof = key
            .proof(
                "POST",
                "https://m.example.com/v1/chat?x=1#f",
                Some("abc"),
                Some("n1"),
                1_700_000_000,
            )
            .unwrap();
        let header = part(&proof, 0);
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["jwk"], key.public_jwk());
        let claims = part(&proof, 1);
        assert_eq!(claims["htm"], "POST");
        assert_eq!(claims["htu"], "https://m.example.com/v1/chat");
        assert_eq!(claims["iat"], 1_700_000_000);
        assert_eq!(claims["nonce"], "n1");
        // SHA-256("abc"), base64url.
        assert_eq!(claims["ath"], "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
        let (input, signature) = proof.rsplit_once('.').unwrap();
        let signature =
            ed25519_compact::Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).unwrap())
                .unwrap();
        key.pair.pk.verify(input, &signature).unwrap();
        // Every proof has its own jti.
        let again = key
            .proof("POST", "https://m.example.com/", None, None, 1)
            .unwrap();
        assert_ne!(part(&again, 1)["jti"], claims["jti"]);
        assert!(part(&again, 1).get("ath").is_none());
    }

    // The stored key is the same key.
    #[test]
    fn stored_key_round_trip() {
        let key = DpopKey::generate().unwrap();
        let again = DpopKey::from_stored(&key.to_stored()).unwrap();
        assert_eq!(again.public_jwk(), key.public_jwk());
        assert!(DpopKey::from_stored("short").is_err());
    }
}
