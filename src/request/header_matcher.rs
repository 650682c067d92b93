//! `match.headers` entries: a header's value equals a string, starts with one, or the header is
//! present (or absent), as jwt_authn's route header matchers.
//!
//! A header sent more than once matches only if every one of its values does. Matching on any one
//! value would let a client add a second copy to pick a rule the first copy does not allow
//! (CVE-2025-64527 was that class of bug in Envoy's JWT filter, and Envoy 1.38's RBAC changed to
//! judge every value of a repeated header for the same reason).

use super::Request;

/// One entry of `match.headers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatcher {
    /// Lower-case header name; pseudo-headers other than `:path` are allowed.
    pub name: String,
    /// What its values must be.
    pub test: HeaderTest,
}

/// The test a [`HeaderMatcher`] applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderTest {
    /// Every value equals this.
    Exact(String),
    /// Every value starts with this.
    Prefix(String),
    /// `true`: the header is present; `false`: it is absent.
    Present(bool),
}

/// The operators of a `match.headers` entry, besides `name`.
pub const HEADER_TESTS: [&str; 3] = ["exact", "prefix", "present"];

impl HeaderMatcher {
    /// Whether `request` fits. A value that is not UTF-8 counts as present and fits no string.
    pub fn matches(&self, request: &Request) -> bool {
        let undecodable = request.undecodable.contains(&self.name);
        let mut values = request.header_values(&self.name).peekable();
        let present = undecodable || values.peek().is_some();
        match &self.test {
            HeaderTest::Present(expected) => present == *expected,
            HeaderTest::Exact(expected) => {
                present && !undecodable && values.all(|value| value == expected)
            }
            HeaderTest::Prefix(prefix) => {
                present && !undecodable && values.all(|value| value.starts_with(prefix.as_str()))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request {
        Request {
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            ..Request::default()
        }
    }

    fn matcher(name: &str, test: HeaderTest) -> HeaderMatcher {
        HeaderMatcher {
            name: name.into(),
            test,
        }
    }

    // Exact and prefix need the header; a repeated header needs every value to fit.
    #[test]
    fn every_value_must_fit() {
        let exact = matcher("x-team", HeaderTest::Exact("risk".into()));
        assert!(exact.matches(&request(&[("x-team", "risk")])));
        assert!(exact.matches(&request(&[("x-team", "risk"), ("x-team", "risk")])));
        assert!(!exact.matches(&request(&[("x-team", "risk"), ("x-team", "ads")])));
        assert!(!exact.matches(&request(&[("x-team", "ads"), ("x-team", "risk")])));
        assert!(!exact.matches(&request(&[("x-team", "risk, ads")])));
        assert!(!exact.matches(&request(&[])));
        let prefix = matcher("x-team", HeaderTest::Prefix("risk-".into()));
        assert!(prefix.matches(&request(&[("x-team", "risk-a"), ("x-team", "risk-b")])));
        assert!(!prefix.matches(&request(&[("x-team", "risk-a"), ("x-team", "ads")])));
        assert!(!prefix.matches(&request(&[])));
    }

    // Presence and absence; an undecodable value is present but equals nothing.
    #[test]
    fn presence_and_undecodable_values() {
        let present = matcher("x-canary", HeaderTest::Present(true));
        let absent = matcher("x-canary", HeaderTest::Present(false));
        let with = request(&[("x-canary", "")]);
        assert!(present.matches(&with));
        assert!(!absent.matches(&with));
        assert!(absent.matches(&request(&[])));
        let mut undecodable = request(&[("x-team", "risk")]);
        undecodable.undecodable.push("x-team".into());
        assert!(!matcher("x-team", HeaderTest::Exact("risk".into())).matches(&undecodable));
        assert!(matcher("x-team", HeaderTest::Present(true)).matches(&undecodable));
    }

    // Pseudo-headers are headers to a matcher.
    #[test]
    fn pseudo_headers() {
        let scheme = matcher(":scheme", HeaderTest::Exact("https".into()));
        assert!(scheme.matches(&request(&[(":scheme", "https")])));
        assert!(!scheme.matches(&request(&[(":scheme", "http")])));
    }
}
