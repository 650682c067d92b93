//! One HTTP exchange, whole: the request as given, the response read to its end. Redirects are
//! not followed (as curl does by default), and a 4xx or 5xx is an answer, not an error.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use ureq::http::{Method, Request};
use ureq::tls::{parse_pem, Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};
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

/// Whom to trust and what to present in TLS, for every exchange (the model, its metadata, the
/// authorization server).
#[derive(Args, Clone, Debug, Default)]
pub struct TlsOptions {
    /// Trust the CA certificates in this PEM file instead of the web PKI's roots (a gateway or an
    /// identity provider with a private CA).
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Present this client certificate (PEM, with --key): for gateways that ask for one, and for
    /// certificate-bound tokens (RFC 8705), which the token endpoint binds to it.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
}

impl TlsOptions {
    fn config(&self) -> Result<TlsConfig, String> {
        let mut config = TlsConfig::builder();
        if let Some(path) = &self.cacert {
            let roots = certificates(path)?;
            if roots.is_empty() {
                return Err(format!("--cacert {}: no certificate in it", path.display()));
            }
            config = config.root_certs(RootCerts::from(roots));
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            let chain = certificates(cert)?;
            if chain.is_empty() {
                return Err(format!("--cert {}: no certificate in it", cert.display()));
            }
            // rustls presents only X.509 v3 certificates (and ureq would abort on another).
            if chain.iter().any(|c| !is_x509_v3(c.der())) {
                return Err(format!(
                    "--cert {}: not an X.509 v3 certificate (reissue it with an extension, \
                     e.g. extendedKeyUsage=clientAuth)",
                    cert.display()
                ));
            }
            let text = read(key)?;
            let key = PrivateKey::from_pem(&text)
                .map_err(|error| format!("--key {}: {error}", key.display()))?;
            config = config.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        Ok(config.build())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|error| format!("{}: {error}", path.display()))
}

/// Whether a DER certificate is X.509 v3: its `tbsCertificate` starts with the explicit
/// `[0] version` holding 2 (v1 certificates leave the field out).
fn is_x509_v3(der: &[u8]) -> bool {
    /// The contents of the DER element at the start of `bytes` with tag `tag`.
    fn contents(bytes: &[u8], tag: u8) -> Option<&[u8]> {
        let (&found, rest) = bytes.split_first()?;
        let (&first, rest) = rest.split_first()?;
        if found != tag {
            return None;
        }
        let (length, rest) = match first {
            0..=0x7f => (usize::from(first), rest),
            0x81..=0x84 => {
                let count = usize::from(first & 0x7f);
                let (digits, rest) = rest.split_at_checked(count)?;
                let length = digits
                    .iter()
                    .fold(0usize, |length, digit| length << 8 | usize::from(*digit));
                (length, rest)
            }
            _ => return None,
        };
        rest.get(..length)
    }
    const SEQUENCE: u8 = 0x30;
    const VERSION: u8 = 0xa0;
    const INTEGER: u8 = 0x02;
    contents(der, SEQUENCE)
        .and_then(|certificate| contents(certificate, SEQUENCE))
        .and_then(|tbs| contents(tbs, VERSION))
        .and_then(|version| contents(version, INTEGER))
        == Some(&[2])
}

/// Every certificate of a PEM file.
fn certificates(path: &Path) -> Result<Vec<Certificate<'static>>, String> {
    let text = read(path)?;
    let mut found = Vec::new();
    for item in parse_pem(&text) {
        match item.map_err(|error| format!("{}: {error}", path.display()))? {
            PemItem::Certificate(certificate) => found.push(certificate),
            _ => continue,
        }
    }
    Ok(found)
}

/// A client for exchanges with one configuration.
pub struct Client {
    agent: Agent,
}

impl Client {
    pub fn new(tls: &TlsOptions) -> Result<Client, String> {
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .timeout_global(Some(TIMEOUT))
            .user_agent(concat!("kserve-auth/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls.config()?)
            .build()
            .into();
        Ok(Client { agent })
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

    // A v3 certificate has the explicit version 2; a v1 certificate has none; garbage is neither.
    #[test]
    fn certificate_versions() {
        let tbs_v3 = [0xa0, 0x03, 0x02, 0x01, 0x02, 0x02, 0x01, 0x07];
        let tbs_v1 = [0x02, 0x01, 0x07];
        let wrap = |tbs: &[u8]| {
            let mut inner = vec![0x30, tbs.len() as u8];
            inner.extend_from_slice(tbs);
            let mut outer = vec![0x30, inner.len() as u8];
            outer.extend(inner);
            outer
        };
        assert!(is_x509_v3(&wrap(&tbs_v3)));
        assert!(!is_x509_v3(&wrap(&tbs_v1)));
        assert!(!is_x509_v3(&[0x30, 0x82, 0xff]));
        assert!(!is_x509_v3(&[]));
    }

    #[test]
    fn form_encoding() {
        assert_eq!(
            form_encode(&[("grant_type", "client_credentials"), ("scope", "a b:c/d")]),
            "grant_type=client_credentials&scope=a+b%3Ac%2Fd"
        );
    }
}
