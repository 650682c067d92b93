//! The parts of an HTTP request the core looks at, copied once from the host.

pub mod body;
pub mod extract;
pub mod grpc_scan;
pub mod header_map;
pub mod header_matcher;
pub mod host;
pub mod json_scan;
pub mod model;
pub mod path;

use crate::request::header_map::HeaderPairs;

/// A request as the core sees it. Header names are lower-case, as HTTP/2 and Envoy give them.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `:method`
    pub method: String,
    /// `:path`, raw: path plus query, as received.
    pub path: String,
    /// `:authority`
    pub authority: String,
    /// Every header whose value is UTF-8, in arrival order; a name may repeat.
    pub headers: Vec<(String, String)>,
    /// Names of the headers whose value is not UTF-8 (their values are never read). The filter
    /// refuses a request when one of them is a header it reads, and removes one it manages.
    pub undecodable: Vec<String>,
    /// The SHA-256 of the connection's client certificate, in hex, as Envoy reports it; `None`
    /// when the connection has none, or when no provider checks certificate-bound tokens (the
    /// host is then not asked).
    pub peer_certificate_sha256: Option<String>,
    /// The model the body names (OpenAI-compatible JSON, V2 gRPC), once the filter has read it;
    /// `None` while the body has not been read, and for requests whose model is in the path.
    pub body_model: Option<String>,
}

impl Request {
    /// The request as the host handed its header map over: names and values as bytes. Values
    /// that are not UTF-8 are set aside by name; a name that is not UTF-8 (no codec lets one
    /// through) cannot be a header the filter reads or manages, and is dropped.
    pub fn from_header_pairs(pairs: HeaderPairs) -> Request {
        let mut request = Request::default();
        request.headers.reserve(pairs.len());
        for (name, value) in pairs {
            let Ok(name) = String::from_utf8(name) else {
                continue;
            };
            let Ok(value) = String::from_utf8(value) else {
                request.undecodable.push(name);
                continue;
            };
            match name.as_str() {
                ":method" => request.method.clone_from(&value),
                ":path" => request.path.clone_from(&value),
                ":authority" => request.authority.clone_from(&value),
                _ => {}
            }
            request.headers.push((name, value));
        }
        request
    }

    /// All values of one header, in arrival order. `name` must be lower-case.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The name of every header, undecodable ones included.
    pub fn header_names(&self) -> impl Iterator<Item = &str> {
        self.headers
            .iter()
            .map(|(name, _)| name.as_str())
            .chain(self.undecodable.iter().map(String::as_str))
    }

    /// The path without query or fragment.
    pub fn path_only(&self) -> &str {
        let end = self.path.find(['?', '#']).unwrap_or(self.path.len());
        &self.path[..end]
    }

    /// The raw query string (without `?`), if any; a fragment is cut off.
    pub fn query(&self) -> Option<&str> {
        let start = self.path.find('?')? + 1;
        let rest = &self.path[start..];
        Some(rest.split('#').next().unwrap_or(rest))
    }
}

/// A header-name byte as a server that reads `_` as `-` sees it (WSGI and CGI servers turn both
/// into `_`), case folded.
fn fold(byte: u8) -> u8 {
    match byte {
        b'_' => b'-',
        other => other.to_ascii_lowercase(),
    }
}

/// Whether two header names are the same header to any upstream: equal ignoring case, with `_`
/// and `-` equal. `x_jwt_sub` is `x-jwt-sub` to Werkzeug, Django and older gunicorn.
pub fn same_header_name(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

/// Whether header `name` starts with `prefix` in the sense of [`same_header_name`].
pub fn header_name_has_prefix(name: &str, prefix: &str) -> bool {
    name.get(..prefix.len())
        .is_some_and(|head| same_header_name(head, prefix))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn pair(name: &[u8], value: &[u8]) -> (Vec<u8>, Vec<u8>) {
        (name.to_vec(), value.to_vec())
    }

    // Values that are not UTF-8 are set aside by name, never read; the rest are kept in order.
    #[test]
    fn undecodable_values_are_set_aside() {
        let request = Request::from_header_pairs(vec![
            pair(b":method", b"GET"),
            pair(b":path", b"/v1/models/m:predict"),
            pair(b":authority", b"models.test"),
            pair(b"x-a", b"caf\xff"),
            pair(b"x-b", b"ok"),
            pair(b"x-\xff", b"dropped"),
        ]);
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, "/v1/models/m:predict");
        assert_eq!(request.authority, "models.test");
        assert_eq!(request.undecodable, ["x-a"]);
        assert_eq!(request.header_values("x-b").collect::<Vec<_>>(), ["ok"]);
        assert_eq!(request.header_values("x-a").count(), 0);
        assert!(request.header_names().any(|name| name == "x-a"));
        assert_eq!(request.headers.len(), 4);
    }

    // A pseudo-header that is not UTF-8 is left empty: such a request can never match a rule.
    #[test]
    fn undecodable_path_is_empty() {
        let request = Request::from_header_pairs(vec![pair(b":path", b"/caf\xff")]);
        assert_eq!(request.path, "");
        assert_eq!(request.undecodable, [":path"]);
    }

    // `_` and `-` are one character to header-name comparison, and case does not matter.
    #[test]
    fn header_names_fold_underscores_and_case() {
        assert!(same_header_name("x_jwt_sub", "x-jwt-sub"));
        assert!(same_header_name("X-JWT_Sub", "x-jwt-sub"));
        assert!(!same_header_name("x-jwt-su", "x-jwt-sub"));
        assert!(!same_header_name("x.jwt.sub", "x-jwt-sub"));
        assert!(header_name_has_prefix(
            "x_goog_authenticated_user_email",
            "x-goog-authenticated-user-"
        ));
        assert!(!header_name_has_prefix(
            "x-goog",
            "x-goog-authenticated-user-"
        ));
        assert!(!header_name_has_prefix("\u{e9}\u{e9}", "x-g"));
    }
}
