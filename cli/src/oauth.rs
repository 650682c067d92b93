//! An authorization server as a client sees it: its endpoints (OIDC discovery, else RFC 8414
//! metadata) and its token endpoint's answers (RFC 6749 §5).

use std::fmt;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::Value;

use kserve_auth_filter::config::uri;

use crate::cache::CachedToken;
use crate::dpop::DpopKey;
use crate::http::{encode_component, Client};

/// RFC 8693's token type of an access token.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The endpoints of one issuer.
pub struct Endpoints {
    pub issuer: String,
    pub token: String,
    pub device_authorization: Option<String>,
}

/// Where secrets may be sent: `https://`, or `http://` to this machine (as RFC 8252 allows for
/// native apps), so a client secret never crosses a network in the clear.
pub fn require_secure(url: &str, what: &str) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Ok(());
    }
    if let Some(rest) = lower.strip_prefix("http://") {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if uri::is_loopback(authority) {
            return Ok(());
        }
    }
    Err(format!(
        "{what} {url:?} must be an https:// URL (http:// only for 127.0.0.1, [::1] or localhost)"
    ))
}

/// The endpoints `issuer` publishes in its OpenID discovery document, or else in its RFC 8414
/// authorization server metadata. The document must name the same issuer (RFC 8414 §3.3).
pub fn discover(http: &Client, issuer: &str) -> Result<Endpoints, String> {
    require_secure(issuer, "issuer")?;
    let trimmed = issuer.trim_end_matches('/');
    let openid = format!("{trimmed}/.well-known/openid-configuration");
    let mut response = http.get_json(&openid)?;
    let mut source = openid;
    if response.status == 404 {
        // RFC 8414 §3.1: the well-known suffix goes between the host and the issuer's path.
        let (origin, path) = split_origin(trimmed);
        source = format!("{origin}/.well-known/oauth-authorization-server{path}");
        response = http.get_json(&source)?;
    }
    if response.status != 200 {
        return Err(format!("{source} answered {}", response.status));
    }
    let document = response.json(&source)?;
    let text = |name: &str| {
        document
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    if text("issuer").as_deref() != Some(issuer) {
        return Err(format!(
            "{source} names issuer {:?}, not {issuer:?}",
            text("issuer").unwrap_or_default()
        ));
    }
    let token = text("token_endpoint").ok_or(format!("{source} has no token_endpoint"))?;
    require_secure(&token, "token_endpoint")?;
    let device_authorization = text("device_authorization_endpoint");
    if let Some(url) = &device_authorization {
        require_secure(url, "device_authorization_endpoint")?;
    }
    Ok(Endpoints {
        issuer: issuer.to_owned(),
        token,
        device_authorization,
    })
}

/// `https://host:port` and the rest of `url`.
pub fn split_origin(url: &str) -> (&str, &str) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url
        .get(after_scheme..)
        .and_then(|rest| rest.find(['/', '?', '#']))
        .map_or(url.len(), |i| after_scheme + i);
    url.split_at(end)
}

/// How the client authenticates: HTTP Basic with a secret (RFC 6749 §2.3.1), or only its id in
/// the form for a public client.
pub struct ClientAuth {
    pub client_id: String,
    pub secret: Option<String>,
}

impl ClientAuth {
    /// The headers and form members that authenticate a request.
    fn apply(&self, headers: &mut Vec<(String, String)>, form: &mut Vec<(String, String)>) {
        match &self.secret {
            Some(secret) => {
                let pair = format!(
                    "{}:{}",
                    encode_component(&self.client_id),
                    encode_component(secret)
                );
                headers.push((
                    "authorization".into(),
                    format!("Basic {}", STANDARD.encode(pair)),
                ));
            }
            None => form.push(("client_id".into(), self.client_id.clone())),
        }
    }
}

/// Why a token request got no token.
#[derive(Debug)]
pub enum Failure {
    /// The server answered with an OAuth error (RFC 6749 §5.2).
    Refused {
        status: u16,
        error: String,
        description: Option<String>,
    },
    /// Anything else: the network, a body that is not a token response.
    Broken(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Refused {
                status,
                error,
                description,
            } => {
                write!(f, "the token endpoint answered {status} {error}")?;
                match description {
                    Some(description) => write!(f, ": {description}"),
                    None => Ok(()),
                }
            }
            Failure::Broken(message) => f.write_str(message),
        }
    }
}

/// POSTs `form` to `url` with the client's authentication and, with `dpop`, a proof (once more
/// with the server's nonce if it asks for one, RFC 9449 §8).
pub fn post(
    http: &Client,
    url: &str,
    auth: &ClientAuth,
    form: &[(&str, &str)],
    dpop: Option<&DpopKey>,
    now: u64,
) -> Result<Value, Failure> {
    let mut headers = Vec::new();
    let mut members: Vec<(String, String)> = form
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    auth.apply(&mut headers, &mut members);
    let members: Vec<(&str, &str)> = members
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let mut nonce: Option<String> = None;
    for _attempt in 0..2 {
        let mut request_headers = headers.clone();
        if let Some(key) = dpop {
            let proof = key
                .proof("POST", url, None, nonce.as_deref(), now)
                .map_err(Failure::Broken)?;
            request_headers.push(("dpop".into(), proof));
        }
        let response = http
            .post_form(url, &request_headers, &members)
            .map_err(Failure::Broken)?;
        let body = response.json(url).map_err(Failure::Broken)?;
        if response.status == 200 {
            return Ok(body);
        }
        let error = body
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("an error")
            .to_owned();
        let server_nonce = response.header("dpop-nonce").map(str::to_owned);
        if error == "use_dpop_nonce" && nonce.is_none() && server_nonce.is_some() {
            nonce = server_nonce;
            continue;
        }
        return Err(Failure::Refused {
            status: response.status,
            error,
            description: body
                .get("error_description")
                .and_then(Value::as_str)
                .map(str::to_owned),
        });
    }
    Err(Failure::Broken(format!(
        "{url} asked for a second DPoP nonce"
    )))
}

/// A token endpoint's successful answer as a cached token, at `now`. Without `expires_in`, the
/// token's own `exp` (read, not verified: the server that issued it is the one trusted here)
/// sets the expiry.
pub fn token_from(response: &Value, now: u64) -> Result<CachedToken, Failure> {
    let access_token = response
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| Failure::Broken("the token response has no access_token".to_owned()))?;
    let expires_at = response
        .get("expires_in")
        .and_then(Value::as_u64)
        .map(|seconds| now.saturating_add(seconds))
        .or_else(|| jwt_expiry(access_token));
    Ok(CachedToken {
        access_token: access_token.to_owned(),
        token_type: response
            .get("token_type")
            .and_then(Value::as_str)
            .unwrap_or("Bearer")
            .to_owned(),
        expires_at,
        refresh_token: response
            .get("refresh_token")
            .and_then(Value::as_str)
            .map(str::to_owned),
        dpop_key: None,
    })
}

/// `exp` of a JWT, when the token is one.
pub fn jwt_expiry(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Value>(&bytes)
        .ok()?
        .get("exp")?
        .as_u64()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    // Secrets go to https URLs, or to plain http on this machine only.
    #[test]
    fn secure_urls() {
        for url in [
            "https://kc.example.com/realms/r",
            "http://127.0.0.1:9000",
            "http://localhost/x",
            "http://[::1]:8080/token",
        ] {
            assert!(require_secure(url, "issuer").is_ok(), "{url}");
        }
        for url in [
            "http://kc.example.com",
            "http://127.0.0.1.example.com/",
            "http://10.0.0.1",
            "ftp://127.0.0.1",
        ] {
            let error = require_secure(url, "issuer").unwrap_err();
            assert!(error.contains("must be an https:// URL"), "{error}");
        }
    }

    #[test]
    fn origins() {
        assert_eq!(
            split_origin("https://kc.example.com/realms/r"),
            ("https://kc.example.com", "/realms/r")
        );
        assert_eq!(
            split_origin("http://127.0.0.1:9000"),
            ("http://127.0.0.1:9000", "")
        );
    }

    // expires_in wins; without it the JWT's exp; neither, unknown.
    #[test]
    fn token_responses() {
        let payload = URL_SAFE_NO_PAD.encode(json!({"exp": 2_000}).to_string());
        let jwt = format!("e30.{payload}.c2ln");
        let token = token_from(&json!({"access_token": jwt, "expires_in": 300}), 1_000).unwrap();
        assert_eq!(token.expires_at, Some(1_300));
        assert_eq!(token.token_type, "Bearer");
        let token = token_from(&json!({"access_token": jwt, "token_type": "DPoP"}), 1_000).unwrap();
        assert_eq!(token.expires_at, Some(2_000));
        assert!(token.is_dpop_bound());
        let token = token_from(&json!({"access_token": "opaque"}), 1_000).unwrap();
        assert_eq!(token.expires_at, None);
        assert!(token_from(&json!({"token_type": "Bearer"}), 1).is_err());
    }
}
