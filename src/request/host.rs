//! The host a request addresses, and the `match.hosts` patterns rules use.
//!
//! KServe gives every InferenceService its own hostname (`{name}-{namespace}.{domain}` at the
//! ingress, `{name}.{namespace}.svc.cluster.local` inside the cluster), so rules tell services
//! apart by host. A host is compared case-insensitively, without its port and without a trailing
//! dot: `Fraud-Risk.models.example.com.:443` is `fraud-risk.models.example.com`. Every spelling
//! of one host must reach the same rule, or a client could pick a laxer rule by respelling it.

use std::borrow::Cow;

/// The host part of an `:authority`: lower-cased, without `:port` and without one trailing dot.
/// An IPv6 literal keeps its brackets (`[::1]:8080` is `[::1]`).
pub fn host_of(authority: &str) -> Cow<'_, str> {
    let host = if authority.starts_with('[') {
        match authority.find(']') {
            Some(end) => authority.get(..=end).unwrap_or(authority),
            None => authority,
        }
    } else {
        match authority.rsplit_once(':') {
            // Only a numeric port is cut; anything else (a bare IPv6 address, garbage) stays
            // whole and so matches no pattern.
            Some((host, port))
                if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) =>
            {
                host
            }
            _ => authority,
        }
    };
    let host = match host.strip_suffix('.') {
        Some(stripped) if !stripped.is_empty() => stripped,
        _ => host,
    };
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// One entry of `match.hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this host (lower case).
    Exact(String),
    /// `*<suffix>`: the host ends with `suffix` (lower case) and the `*` stands for one or more
    /// characters of the first label, never a dot. `*.risk.svc.cluster.local` covers
    /// `fraud.risk.svc.cluster.local` but not `a.fraud.risk.svc.cluster.local`;
    /// `*-risk.models.example.com` covers `fraud-risk.models.example.com`.
    Wildcard(String),
}

impl HostPattern {
    /// Reads one pattern; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        if text.is_empty() {
            return Err("is empty; write a host like \"fraud-risk.models.example.com\"".into());
        }
        if text.contains("://") {
            return Err(format!(
                "{text:?} has a scheme; write the host alone, as in \"fraud-risk.models.example.com\""
            ));
        }
        if text.contains(['/', '?', '#']) {
            return Err(format!(
                "{text:?} has a path; write the host alone and match the path with \"prefix\", \
                 \"path\" or \"model\""
            ));
        }
        let (wildcard, rest) = match text.strip_prefix('*') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if rest.contains('*') {
            return Err(format!(
                "{text:?} has a \"*\" that is not its first character; a wildcard stands for the \
                 start of the first label only, as in \"*.risk.svc.cluster.local\" or \
                 \"*-risk.models.example.com\""
            ));
        }
        if wildcard && rest.is_empty() {
            return Err("\"*\" alone matches every host; leave \"hosts\" out instead".into());
        }
        let lower = rest.to_ascii_lowercase();
        if let Some(address) = lower.strip_prefix('[') {
            return parse_ipv6(text, wildcard, address).map(|()| HostPattern::Exact(lower));
        }
        if lower.contains(':') {
            return Err(format!(
                "{text:?} has a port; hosts are matched without their port, so leave it out"
            ));
        }
        // A wildcard's own label may be empty after the `*` (`*.risk...`), the others may not.
        let labels_from = usize::from(wildcard && lower.starts_with('.'));
        let labels = lower.get(labels_from..).unwrap_or_default();
        if labels.split('.').any(str::is_empty) {
            return Err(format!(
                "{text:?} has an empty label (two dots in a row, or a dot at the start or end)"
            ));
        }
        if let Some(bad) = labels
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(format!(
                "{text:?} has {bad:?}; a host is letters, digits, \"-\", \"_\" and dots"
            ));
        }
        Ok(if wildcard {
            HostPattern::Wildcard(lower)
        } else {
            HostPattern::Exact(lower)
        })
    }

    /// Whether `host` (as [`host_of`] gives it) fits this pattern.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(exact) => host == exact,
            HostPattern::Wildcard(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| !head.is_empty() && !head.contains('.')),
        }
    }
}

/// `[` has been read; `address` is the rest of the pattern.
fn parse_ipv6(text: &str, wildcard: bool, address: &str) -> Result<(), String> {
    if wildcard {
        return Err(format!("{text:?}: an IPv6 address cannot have a wildcard"));
    }
    let Some(inner) = address.strip_suffix(']') else {
        return Err(format!(
            "{text:?} is not a bracketed IPv6 address, or has a port; write \"[::1]\""
        ));
    };
    if inner.is_empty()
        || !inner
            .chars()
            .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.'))
    {
        return Err(format!("{text:?} is not an IPv6 address"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    // Port, case and a trailing dot never change which host a request addresses.
    #[test]
    fn host_of_normalizes() {
        assert_eq!(host_of("fraud-risk.example.com"), "fraud-risk.example.com");
        assert_eq!(
            host_of("Fraud-Risk.Example.COM:8080"),
            "fraud-risk.example.com"
        );
        assert_eq!(
            host_of("fraud-risk.example.com.:443"),
            "fraud-risk.example.com"
        );
        assert_eq!(host_of("fraud-risk.example.com."), "fraud-risk.example.com");
        assert_eq!(host_of("[::1]:8080"), "[::1]");
        assert_eq!(host_of("[::1]"), "[::1]");
        assert_eq!(host_of("[FE80::1]:80"), "[fe80::1]");
        assert_eq!(host_of("127.0.0.1:80"), "127.0.0.1");
        assert_eq!(host_of("host:"), "host");
        // A bare IPv6 address or a non-numeric "port" stays whole and matches no host pattern.
        assert_eq!(host_of("::1"), "::1");
        assert_eq!(host_of("host:http"), "host:http");
        assert_eq!(host_of(""), "");
        assert_eq!(host_of("."), ".");
        assert!(matches!(host_of("a.example:1"), Cow::Borrowed(_)));
    }

    // An exact pattern fits its host only; case in the configuration does not matter.
    #[test]
    fn exact_patterns() {
        let pattern = HostPattern::parse("Fraud-Risk.models.example.com").unwrap();
        assert_eq!(
            pattern,
            HostPattern::Exact("fraud-risk.models.example.com".into())
        );
        assert!(pattern.matches("fraud-risk.models.example.com"));
        assert!(!pattern.matches("fraud-risk.models.example.co"));
        assert!(!pattern.matches("x.fraud-risk.models.example.com"));
        let ipv6 = HostPattern::parse("[::1]").unwrap();
        assert!(ipv6.matches(&host_of("[::1]:9000")));
    }

    // A wildcard stands for one or more characters of the first label, never for a dot.
    #[test]
    fn wildcard_patterns() {
        let namespace = HostPattern::parse("*.risk.svc.cluster.local").unwrap();
        assert!(namespace.matches("fraud.risk.svc.cluster.local"));
        assert!(namespace.matches("fraud-predictor.risk.svc.cluster.local"));
        assert!(!namespace.matches(".risk.svc.cluster.local"));
        assert!(!namespace.matches("a.fraud.risk.svc.cluster.local"));
        assert!(!namespace.matches("fraud.ads.svc.cluster.local"));
        assert!(!namespace.matches("risk.svc.cluster.local"));
        let label_tail = HostPattern::parse("*-risk.models.example.com").unwrap();
        assert!(label_tail.matches("fraud-risk.models.example.com"));
        assert!(!label_tail.matches("-risk.models.example.com"));
        assert!(!label_tail.matches("fraud-ads.models.example.com"));
        assert!(!label_tail.matches("a.fraud-risk.models.example.com"));
    }

    // Each malformed pattern is refused with a message about what is wrong.
    #[test]
    fn malformed_patterns() {
        for (text, says) in [
            ("", "is empty"),
            ("https://a.example.com", "scheme"),
            ("a.example.com/v1", "path"),
            ("a.*.example.com", "not its first character"),
            ("*", "every host"),
            ("**.example.com", "not its first character"),
            ("a..example.com", "empty label"),
            (".example.com", "empty label"),
            ("example.com.", "empty label"),
            ("*..example.com", "empty label"),
            ("a.example.com:8080", "port"),
            ("[::1]:8080", "port"),
            ("*[::1]", "wildcard"),
            ("[xyz]", "not an IPv6"),
            ("a b.example.com", "' '"),
            ("user@a.example.com", "'@'"),
        ] {
            let error = HostPattern::parse(text).unwrap_err();
            assert!(error.contains(says), "{text:?}: {error}");
        }
    }
}
