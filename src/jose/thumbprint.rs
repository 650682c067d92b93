//! The digests sender-constrained tokens are bound by: a key's RFC 7638 thumbprint (DPoP's
//! `cnf.jkt`), an access token's hash (a DPoP proof's `ath`), and a client certificate's SHA-256
//! (RFC 8705's `cnf["x5t#S256"]`), each as base64url without padding, the way tokens carry them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

/// The members RFC 7638 hashes for a key type, in the lexicographic order it requires.
fn required_members(kty: &str) -> Option<&'static [&'static str]> {
    match kty {
        "EC" => Some(&["crv", "kty", "x", "y"]),
        "RSA" => Some(&["e", "kty", "n"]),
        "OKP" => Some(&["crv", "kty", "x"]),
        _ => None,
    }
}

/// The RFC 7638 SHA-256 thumbprint of a public JWK: its required members only, in order, as JSON
/// without whitespace. The error names what is missing.
pub fn key_thumbprint(jwk: &Map<String, Value>) -> Result<String, String> {
    let kty = jwk
        .get("kty")
        .and_then(Value::as_str)
        .ok_or("the key has no \"kty\" string")?;
    let members =
        required_members(kty).ok_or_else(|| format!("key type {kty:?} is not supported"))?;
    let mut canonical = String::from("{");
    for (index, member) in members.iter().enumerate() {
        let value = jwk
            .get(*member)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("the {kty} key has no {member:?} string"))?;
        if index > 0 {
            canonical.push(',');
        }
        canonical.push('"');
        canonical.push_str(member);
        canonical.push_str("\":");
        // A JSON string, escaped as JSON needs; base64url values never need it.
        canonical.push_str(&Value::String(value.to_owned()).to_string());
    }
    canonical.push('}');
    Ok(sha256_base64url(canonical.as_bytes()))
}

/// A DPoP proof's `ath` for this access token: the base64url SHA-256 of its ASCII text.
pub fn access_token_hash(token: &str) -> String {
    sha256_base64url(token.as_bytes())
}

/// A certificate's `x5t#S256` from the hex SHA-256 digest Envoy reports for the connection's peer
/// certificate (`connection.sha256_peer_certificate_digest`, either case). `None` unless it is
/// exactly 32 bytes of hex.
pub fn certificate_thumbprint_from_hex(hex: &str) -> Option<String> {
    if hex.len() != 64 {
        return None;
    }
    let nibble = |byte: u8| char::from(byte).to_digit(16);
    let bytes: Option<Vec<u8>> = hex
        .as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [high, low] => Some((nibble(*high)? << 4 | nibble(*low)?) as u8),
            _ => None,
        })
        .collect();
    Some(URL_SAFE_NO_PAD.encode(bytes?))
}

fn sha256_base64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(hmac_sha256::Hash::hash(bytes))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    // RFC 7638 §3.1's RSA example, with members it does not hash (alg, kid) present.
    #[test]
    fn rfc7638_rsa_example() {
        let jwk = object(json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        }));
        assert_eq!(
            key_thumbprint(&jwk).unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    // RFC 9449's example proof key and its `jkt`; the member order in the JWK does not matter.
    #[test]
    fn rfc9449_ec_example() {
        let jwk = object(json!({
            "kty": "EC",
            "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
            "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
            "crv": "P-256"
        }));
        assert_eq!(
            key_thumbprint(&jwk).unwrap(),
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
        );
    }

    // RFC 9449's example access token and its `ath`.
    #[test]
    fn rfc9449_ath_example() {
        assert_eq!(
            access_token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }

    // Missing members and unknown key types are errors that say what is wrong.
    #[test]
    fn incomplete_keys() {
        for (jwk, says) in [
            (json!({"crv": "P-256", "x": "a", "y": "b"}), "no \"kty\""),
            (json!({"kty": "EC", "crv": "P-256", "x": "a"}), "no \"y\""),
            (json!({"kty": "RSA", "n": "a", "e": 3}), "no \"e\""),
            (json!({"kty": "oct", "k": "a"}), "\"oct\" is not supported"),
        ] {
            let error = key_thumbprint(&object(jwk)).unwrap_err();
            assert!(error.contains(says), "{error}");
        }
    }

    // Envoy's hex digest, in either case, is the claim's base64url; anything else is refused.
    #[test]
    fn certificate_digest_spellings() {
        let digest = hmac_sha256::Hash::hash(b"certificate");
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let expected = URL_SAFE_NO_PAD.encode(digest);
        assert_eq!(
            certificate_thumbprint_from_hex(&hex),
            Some(expected.clone())
        );
        assert_eq!(
            certificate_thumbprint_from_hex(&hex.to_ascii_uppercase()),
            Some(expected)
        );
        assert_eq!(certificate_thumbprint_from_hex(&hex[2..]), None);
        assert_eq!(
            certificate_thumbprint_from_hex(&format!("{}zz", &hex[2..])),
            None
        );
        assert_eq!(certificate_thumbprint_from_hex(""), None);
    }
}
