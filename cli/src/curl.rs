//! `kserve-auth curl`: one request to a protected model, with a token.
//!
//! - With no token yet and no `--issuer`, the request goes out bare; the `401` challenge's
//!   `resource_metadata` names the metadata (RFC 9728), which names the authorization server,
//!   whose discovery document names the token endpoint. The resource's authorization server is
//!   remembered in the cache, so the next call sends its token at once; if that server gives no
//!   token any more, the call starts over from the resource's 401.
//! - A `401` with `invalid_token` for a token that was sent gets one renewal (refresh token, else
//!   a new token) and one retry, never more.
//! - A `503` with `Retry-After` is retried after the wait, while the total wait stays within
//!   `--max-wait`.
//! - A DPoP-bound token goes with a fresh proof for every request.

use std::fs;
use std::io::Write as _;
use std::thread;
use std::time::Duration;

use clap::Args;

use crate::cache::CachedToken;
use crate::challenge;
use crate::dpop::DpopKey;
use crate::http::{self, Client, Response};
use crate::oauth::split_origin;
use crate::resource;
use crate::token::{now, TokenOptions, Tokens};

/// How many times a 503 is retried at most.
const MAX_UNAVAILABLE_RETRIES: u32 = 5;

#[derive(Args, Debug)]
pub struct CurlOptions {
    /// The URL to call.
    pub url: String,
    /// The method (default GET, or POST with a body).
    #[arg(short = 'X', long = "request", value_name = "METHOD")]
    pub method: Option<String>,
    /// A request header, `Name: value`.
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// A body; `@FILE` reads it from FILE. Sets `content-type:
    /// application/x-www-form-urlencoded` unless a header names one, as curl does.
    #[arg(short = 'd', long = "data", value_name = "DATA")]
    pub data: Option<String>,
    /// A body sent exactly as given; `@FILE` reads it from FILE.
    #[arg(long = "data-binary", value_name = "DATA", conflicts_with = "data")]
    pub data_binary: Option<String>,
    /// Print the status line and the response headers before the body.
    #[arg(short = 'i', long = "include")]
    pub include: bool,
    /// The longest total wait for `503` answers with `Retry-After`, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub max_wait: u64,
    #[command(flatten)]
    pub token: TokenOptions,
}

/// The body to send, if any.
fn body(options: &CurlOptions) -> Result<Option<Vec<u8>>, String> {
    let read = |text: &str| -> Result<Vec<u8>, String> {
        match text.strip_prefix('@') {
            Some(path) => fs::read(path).map_err(|error| format!("{path}: {error}")),
            None => Ok(text.as_bytes().to_vec()),
        }
    };
    match (&options.data, &options.data_binary) {
        // curl -d @file drops the file's line breaks.
        (Some(data), _) => Ok(Some(
            read(data)?
                .into_iter()
                .filter(|b| *b != b'\n' && *b != b'\r')
                .collect(),
        )),
        (None, Some(data)) => read(data).map(Some),
        (None, None) => Ok(None),
    }
}

/// Sends the request as the options say and returns the final response.
pub fn run(options: CurlOptions) -> Result<Response, String> {
    let body = body(&options)?;
    let method = options
        .method
        .clone()
        .unwrap_or_else(|| if body.is_some() { "POST" } else { "GET" }.to_owned());
    let mut headers = http::parse_headers(&options.headers, "-H")?;
    let has = |headers: &[(String, String)], name: &str| {
        headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    if options.data.is_some() && !has(&headers, "content-type") {
        headers.push((
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        ));
    }
    let http = Client::new(&options.token.tls)?;
    // A caller's own Authorization header is sent as it is.
    if has(&headers, "authorization") {
        return http.send(&method, &options.url, &headers, body.as_deref());
    }

    let origin = split_origin(&options.url).0.to_owned();
    let pinned = options.token.issuer.clone();
    let mut tokens = Tokens {
        cache: options.token.open_cache(),
        options: options.token,
        http: &http,
    };
    let mut issuer = pinned
        .clone()
        .or_else(|| tokens.cache.issuer_of(&origin).map(str::to_owned));
    let uses_command = tokens.options.token_command.is_some();
    let mut token = match issuer.clone() {
        _ if pinned.is_some() || uses_command => Some(tokens.get(issuer.as_deref(), false)?),
        // A server remembered from the resource's metadata may have moved on: start over from
        // the resource's 401 rather than fail.
        Some(remembered) => match tokens.get(Some(&remembered), false) {
            Ok(token) => Some(token),
            Err(message) => {
                eprintln!(
                    "kserve-auth curl: {remembered}, which the resource named before, gave no \
                     token ({message}); asking the resource again"
                );
                issuer = None;
                None
            }
        },
        None => None,
    };
    let mut discovered = false;
    let mut renewed = false;
    let mut waited: u64 = 0;
    let mut unavailable_retries = 0;
    loop {
        let mut request_headers = headers.clone();
        if let Some(token) = &token {
            authorize(&mut request_headers, token, &method, &options.url)?;
        }
        let response = http.send(&method, &options.url, &request_headers, body.as_deref())?;
        match response.status {
            401 => {
                let challenges = challenge::parse_all(response.values("www-authenticate"));
                let param = |name: &str| challenges.iter().find_map(|c| c.param(name));
                if token.is_none() && !discovered {
                    discovered = true;
                    let Some(metadata_url) = param("resource_metadata") else {
                        eprintln!(
                            "kserve-auth curl: the 401 names no resource_metadata; give --issuer"
                        );
                        return Ok(response);
                    };
                    let metadata = resource::fetch(&http, metadata_url, &options.url)?;
                    let server = resource::choose_server(&metadata, pinned.as_deref())?.to_owned();
                    eprintln!(
                        "kserve-auth curl: {} takes tokens from {server}",
                        metadata.resource
                    );
                    if metadata.dpop_required {
                        tokens.options.dpop = true;
                    }
                    tokens.cache.remember_issuer(&origin, &server)?;
                    token = Some(tokens.get(Some(&server), false)?);
                    issuer = Some(server);
                    continue;
                }
                if token.is_some() && !renewed && param("error") == Some("invalid_token") {
                    renewed = true;
                    eprintln!(
                        "kserve-auth curl: the token was refused ({}); renewing it once",
                        param("error_description").unwrap_or("invalid_token")
                    );
                    token = Some(tokens.get(issuer.as_deref(), true)?);
                    continue;
                }
                return Ok(response);
            }
            503 => {
                let Some(delay) = response.header("retry-after").and_then(retry_after) else {
                    return Ok(response);
                };
                // Saturating: a huge Retry-After must not wrap around into a short wait.
                if unavailable_retries >= MAX_UNAVAILABLE_RETRIES
                    || waited.saturating_add(delay) > options.max_wait
                {
                    return Ok(response);
                }
                eprintln!("kserve-auth curl: 503; retrying in {delay} s");
                thread::sleep(Duration::from_secs(delay));
                waited += delay;
                unavailable_retries += 1;
            }
            _ => return Ok(response),
        }
    }
}

/// `Retry-After` as delay-seconds. An HTTP-date (which the filter never sends) counts as one
/// second.
fn retry_after(value: &str) -> Option<u64> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    Some(value.parse().unwrap_or(1))
}

/// Adds the token, with a DPoP proof when the token is bound.
fn authorize(
    headers: &mut Vec<(String, String)>,
    token: &CachedToken,
    method: &str,
    url: &str,
) -> Result<(), String> {
    match (&token.dpop_key, token.is_dpop_bound()) {
        (Some(key), true) => {
            let key = DpopKey::from_stored(key)?;
            let proof = key.proof(method, url, Some(&token.access_token), None, now())?;
            headers.push((
                "authorization".into(),
                format!("DPoP {}", token.access_token),
            ));
            headers.push(("dpop".into(), proof));
        }
        _ => headers.push((
            "authorization".into(),
            format!("Bearer {}", token.access_token),
        )),
    }
    Ok(())
}

/// Writes `response` as curl does: the body, after the status line and headers with `-i`.
pub fn print(response: &Response, include: bool) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    if include {
        writeln!(out, "HTTP/1.1 {}\r", response.status)?;
        for (name, value) in &response.headers {
            writeln!(out, "{name}: {value}\r")?;
        }
        writeln!(out, "\r")?;
    }
    out.write_all(&response.body)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_values() {
        assert_eq!(retry_after("3"), Some(3));
        assert_eq!(retry_after(" 0 "), Some(0));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(1));
        assert_eq!(retry_after(""), None);
        assert_eq!(retry_after("18446744073709551615"), Some(u64::MAX));
    }
}
