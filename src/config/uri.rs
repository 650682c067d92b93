//! Absolute http(s) URLs split into what an Envoy callout needs: `:authority` and `:path`.

/// An absolute http(s) URL split into what an Envoy callout needs.
#[derive(Debug)]
pub struct HttpUrl {
    /// host[:port] as written.
    pub authority: String,
    /// The path as written; may be empty.
    pub path: String,
    /// The query, without `?`.
    pub query: Option<String>,
}

impl HttpUrl {
    /// The `:path` of a request for this URL: `/` when the path is empty, query included.
    pub fn path_and_query(&self) -> String {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        match &self.query {
            Some(query) => format!("{path}?{query}"),
            None => path.to_owned(),
        }
    }
}

/// Whether `authority` (`host[:port]`, IPv6 in brackets) names this machine: `127.0.0.1`, `[::1]`
/// or `localhost` (any case).
pub fn is_loopback(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']').map_or("", |(host, _)| host),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host == "127.0.0.1" || host == "::1" || host.eq_ignore_ascii_case("localhost")
}

/// Parses an absolute http(s) URL. Messages never repeat the URL: it might hold a password.
pub fn parse_http_url(text: &str) -> Result<HttpUrl, String> {
    const EXPECTED: &str = "expected an absolute http:// or https:// URL";
    if !text.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!(
            "contains whitespace, control or non-ASCII characters; {EXPECTED}"
        ));
    }
    if text.contains('#') {
        return Err("must not have a fragment (\"#...\")".to_owned());
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(EXPECTED.to_owned());
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(EXPECTED.to_owned());
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at_checked(end).unwrap_or((rest, ""));
    check_authority(authority)?;
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, Some(query.to_owned())),
        None => (tail, None),
    };
    Ok(HttpUrl {
        authority: authority.to_owned(),
        path: path.to_owned(),
        query,
    })
}

fn check_authority(authority: &str) -> Result<(), String> {
    if authority.contains('@') {
        return Err("must not contain user information (\"user:password@\")".to_owned());
    }
    if authority.is_empty() {
        return Err("has no host; expected an absolute http:// or https:// URL".to_owned());
    }
    let port = if let Some(bracketed) = authority.strip_prefix('[') {
        let (address, after) = bracketed
            .split_once(']')
            .ok_or("has an unclosed \"[\" in its host")?;
        if address.is_empty() || !address.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err("has an invalid IPv6 address".to_owned());
        }
        if after.is_empty() {
            None
        } else {
            Some(
                after
                    .strip_prefix(':')
                    .ok_or("has characters after its IPv6 address")?,
            )
        }
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        let host_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_';
        if host.is_empty() || !host.chars().all(host_char) {
            return Err("has an invalid host name".to_owned());
        }
        port
    };
    if let Some(port) = port {
        let valid = port.len() <= 5
            && port.chars().all(|c| c.is_ascii_digit())
            && matches!(port.parse::<u32>(), Ok(1..=65535));
        if !valid {
            return Err("has an invalid port; expected a number from 1 to 65535".to_owned());
        }
    }
    Ok(())
}

/// Splits an absolute http(s) URL into (`:authority`, `:path`).
pub fn split_http_uri(uri: &str) -> Result<(String, String), String> {
    let url = parse_http_url(uri)?;
    let path = url.path_and_query();
    Ok((url.authority, path))
}

#[cfg(test)]
mod tests {
    use super::split_http_uri;

    fn ok(uri: &str) -> (String, String) {
        split_http_uri(uri).unwrap_or_else(|err| unreachable!("{uri}: {err}"))
    }

    #[test]
    fn splits_authority_and_path_with_query() {
        // The query belongs to :path; the port stays in :authority.
        assert_eq!(
            ok("http://keycloak:8080/realms/kserve/certs?x=1"),
            ("keycloak:8080".into(), "/realms/kserve/certs?x=1".into())
        );
    }

    #[test]
    fn empty_path_becomes_root() {
        // A callout always needs a :path.
        assert_eq!(
            ok("https://issuer.test"),
            ("issuer.test".into(), "/".into())
        );
        assert_eq!(
            ok("https://issuer.test?a"),
            ("issuer.test".into(), "/?a".into())
        );
    }

    #[test]
    fn refuses_what_a_callout_cannot_carry() {
        // Each of these would be silently wrong if accepted.
        for bad in [
            "ftp://x/y",
            "keycloak:8080/certs",
            "http:///certs",
            "http://user:pw@host/certs",
            "http://host/certs#frag",
            "http://host/ce rts",
        ] {
            assert!(split_http_uri(bad).is_err(), "{bad}");
        }
    }
}
