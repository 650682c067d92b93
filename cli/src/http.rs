//! One HTTP exchange, whole: the request as given, the response read to its end. Redirects are
//! not followed (as curl does by default), and a 4xx or 5xx is an answer, not an error.

use std::time::Duration;

use ureq::http::{Method, Request};
use ureq::Agent;

/// How long one exchange may take, connection to last byte.
const TIMEOUT: Duration = Duration::from_secs(60);
/// The largest response body read: model answers can be large, this is only a guard.
const MAX_BODY_BYTES: u64 = 256 * 1024 * 1024;

/// A response, read whole.
pub struct Response {
    pub status: u16,
    /// Every header line, names in lower case, in order (repeated names repeated).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// Every value of header `name`.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON, or a message naming `what` answered something else.
    pub fn json(&self, what: &str) -> Result<serde_json::Value, String> {
        serde_json::from_slice(&self.body).map_err(|error| {
            format!(
                "{what} answered {} with a body that is not JSON ({error})",
                self.status
            )
        })
    }
}

/// A client for exchanges with one configuration.
pub struct Client {
    agent: Agent,
}

impl Client {
    pub fn new() -> Client {
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .timeout_global(Some(TIMEOUT))
            .user_agent(concat!("kserve-auth/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Client { agent }
    }

    /// Sends `method url` with `headers` and, when given, `body`.
    pub fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: Option<&[u8]>,
    ) -> Result<Response, String> {
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| format!("{method:?} is not an HTTP method"))?;
        let mut builder = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let response = match body {
            Some(body) => builder
                .body(body.to_vec())
                .map_err(|error| format!("{url}: {error}"))
                .and_then(|request| self.agent.run(request).map_err(|e| describe(url, e))),
            None => builder
                .body(())
                .map_err(|error| format!("{url}: {error}"))
                .and_then(|request| self.agent.run(request).map_err(|e| describe(url, e))),
        }?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response
            .into_body()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_vec()
            .map_err(|error| describe(url, error))?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// `POST url` with an `application/x-www-form-urlencoded` body.
    pub fn post_form(
        &self,
        url: &str,
        headers: &[(String, String)],
        form: &[(&str, &str)],
    ) -> Result<Response, String> {
        let mut headers = headers.to_vec();
        headers.push((
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        ));
        headers.push(("accept".into(), "application/json".into()));
        self.send("POST", url, &headers, Some(form_encode(form).as_bytes()))
    }

    /// `GET url` accepting JSON.
    pub fn get_json(&self, url: &str) -> Result<Response, String> {
        self.send(
            "GET",
            url,
            &[("accept".into(), "application/json".into())],
            None,
        )
    }
}

fn describe(url: &str, error: ureq::Error) -> String {
    format!("{url}: {error}")
}

/// Header arguments as given on the command line (`Name: value`), each split at its first colon
/// and trimmed; `option` names the option in the message about one that has no colon.
pub fn parse_headers(arguments: &[String], option: &str) -> Result<Vec<(String, String)>, String> {
    arguments
        .iter()
        .map(|header| {
            header
                .split_once(':')
                .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
                .ok_or_else(|| format!("{option} {header:?}: expected Name: value"))
        })
        .collect()
}

/// `application/x-www-form-urlencoded` (the WHATWG URL standard's serializer).
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("{}={}", encode_component(name), encode_component(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// One form component: unreserved bytes as they are, space as `+`, every other byte as `%XX`.
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        assert_eq!(
            form_encode(&[("grant_type", "client_credentials"), ("scope", "a b:c/d")]),
            "grant_type=client_credentials&scope=a+b%3Ac%2Fd"
        );
    }
}
