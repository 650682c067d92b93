//! Absolute http(s) URIs split into what an Envoy callout needs: `:authority` and `:path`.

/// Splits `http://host[:port]/path?query` into (`host[:port]`, `/path?query`). The path is `/`
/// when empty. Userinfo, fragments, whitespace and control characters are refused, because a
/// callout has no use for them and they hide mistakes.
pub fn split_http_uri(uri: &str) -> Result<(String, String), String> {
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))
        .ok_or_else(|| "must start with http:// or https://".to_string())?;
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".into());
    }
    if uri.contains('#') {
        return Err("must not contain a fragment".into());
    }
    let split_at = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split_at);
    if authority.is_empty() {
        return Err("has no host".into());
    }
    if authority.contains('@') {
        return Err("must not contain user information".into());
    }
    let path = if path.is_empty() {
        "/".to_string()
    } else if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    Ok((authority.to_string(), path))
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
