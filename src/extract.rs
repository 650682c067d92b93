//! Where tokens come from: headers with a prefix, or query parameters.

use std::borrow::Cow;

use crate::failure::Failure;
use crate::request::Request;

/// One place a provider's token may be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A header; `value_prefix` (e.g. `Bearer `) is stripped, compared case-insensitively.
    Header {
        /// Lower-case header name.
        name: String,
        /// Prefix before the token; empty for none.
        value_prefix: String,
    },
    /// A query parameter.
    Param {
        /// Parameter name.
        name: String,
    },
}

/// A token found in a request, borrowed from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundToken<'r> {
    /// The source it was found in.
    pub source: &'r TokenSource,
    /// The token text, prefix removed.
    pub value: std::borrow::Cow<'r, str>,
}

/// Finds every token sent in `sources`. An empty list means none was sent.
pub fn find_tokens<'r>(
    sources: &'r [TokenSource],
    request: &'r Request,
) -> Result<Vec<FoundToken<'r>>, Failure> {
    let mut found = Vec::new();
    for source in sources {
        let value = match source {
            TokenSource::Header { name, value_prefix } => {
                header_token(request, name, value_prefix)?.map(Cow::Borrowed)
            }
            TokenSource::Param { name } => param_token(request, name)?,
        };
        if let Some(value) = value {
            found.push(FoundToken { source, value });
        }
    }
    Ok(found)
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// The token in header `name` after `prefix`. Values without the prefix belong to some other
/// scheme (`Basic ...` next to a `Bearer ` source) and are skipped.
fn header_token<'r>(
    request: &'r Request,
    name: &'r str,
    prefix: &str,
) -> Result<Option<&'r str>, Failure> {
    let mut token = None;
    for value in request.header_values(name) {
        let Some(rest) = strip_prefix_ignore_case(value, prefix) else {
            continue;
        };
        if token.is_some() {
            return Err(Failure::RepeatedCredential);
        }
        token = Some(rest.trim_matches(is_blank));
    }
    match token {
        Some("") => Err(Failure::MalformedAuthorization),
        other => Ok(other),
    }
}

/// `value` after `prefix` (ASCII case-insensitive). A value that is just the prefix without its
/// trailing blanks (`Bearer` for `Bearer `) still counts as carrying it, with nothing after it.
fn strip_prefix_ignore_case<'v>(value: &'v str, prefix: &str) -> Option<&'v str> {
    if let Some((head, rest)) = value.split_at_checked(prefix.len()) {
        if head.eq_ignore_ascii_case(prefix) {
            return Some(rest);
        }
    }
    let bare_prefix = prefix.trim_end_matches(is_blank);
    let bare_value = value.trim_end_matches(is_blank);
    (!bare_prefix.is_empty() && bare_value.eq_ignore_ascii_case(bare_prefix)).then_some("")
}

/// The value of query parameter `name`, percent-decoded.
fn param_token<'r>(request: &'r Request, name: &str) -> Result<Option<Cow<'r, str>>, Failure> {
    let Some(query) = request.query() else {
        return Ok(None);
    };
    let mut token = None;
    for pair in query.split('&') {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(raw_name).as_deref() != Some(name) {
            continue;
        }
        // A value that does not decode is not a credential for this source.
        let Some(value) = percent_decode(raw_value) else {
            continue;
        };
        if token.is_some() {
            return Err(Failure::RepeatedCredential);
        }
        token = Some(value);
    }
    match token {
        Some(value) if value.is_empty() => Err(Failure::MalformedAuthorization),
        other => Ok(other),
    }
}

/// Decodes `%XX` escapes; `+` is kept as is. `None` for a broken escape or invalid UTF-8.
fn percent_decode(text: &str) -> Option<Cow<'_, str>> {
    if !text.contains('%') {
        return Some(Cow::Borrowed(text));
    }
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let (&high, &low) = (tail.first()?, tail.get(1)?);
            bytes.push((hex_value(high)? << 4) | hex_value(low)?);
            rest = tail.get(2..)?;
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok().map(Cow::Owned)
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn bearer() -> TokenSource {
        TokenSource::Header {
            name: "authorization".into(),
            value_prefix: "Bearer ".into(),
        }
    }

    fn header(name: &str, prefix: &str) -> TokenSource {
        TokenSource::Header {
            name: name.into(),
            value_prefix: prefix.into(),
        }
    }

    fn param(name: &str) -> TokenSource {
        TokenSource::Param { name: name.into() }
    }

    fn request(path: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: "GET".into(),
            path: path.into(),
            authority: "model.example.com".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn values(found: &[FoundToken<'_>]) -> Vec<String> {
        found.iter().map(|t| t.value.to_string()).collect()
    }

    // The token after "Bearer " is found and borrowed from the request.
    #[test]
    fn bearer_header() {
        let sources = [bearer()];
        let req = request(
            "/v1/models/m:predict",
            &[("authorization", "Bearer abc.def.ghi")],
        );
        let found = find_tokens(&sources, &req).unwrap();
        assert_eq!(values(&found), ["abc.def.ghi"]);
        assert!(matches!(found[0].value, Cow::Borrowed(_)));
        assert_eq!(found[0].source, &sources[0]);
    }

    // The prefix is compared case-insensitively, and blanks around the token are removed.
    #[test]
    fn prefix_is_case_insensitive_and_token_trimmed() {
        let sources = [bearer()];
        let req = request("/", &[("authorization", "bearer \t a.b.c \t")]);
        assert_eq!(values(&find_tokens(&sources, &req).unwrap()), ["a.b.c"]);
        let req = request("/", &[("authorization", "BEARER a.b.c")]);
        assert_eq!(values(&find_tokens(&sources, &req).unwrap()), ["a.b.c"]);
    }

    // The prefix with nothing after it is a malformed credential.
    #[test]
    fn prefix_only_is_malformed() {
        let sources = [bearer()];
        for value in ["Bearer ", "Bearer    ", "Bearer", "bearer\t"] {
            let req = request("/", &[("authorization", value)]);
            assert_eq!(
                find_tokens(&sources, &req),
                Err(Failure::MalformedAuthorization),
                "{value:?}"
            );
        }
    }

    // Another scheme in the same header is not a token for a Bearer source.
    #[test]
    fn other_scheme_is_skipped() {
        let sources = [bearer()];
        let req = request("/", &[("authorization", "Basic dXNlcjpwYXNz")]);
        assert_eq!(find_tokens(&sources, &req), Ok(vec![]));
        let req = request("/", &[("authorization", "Bearertoken")]);
        assert_eq!(find_tokens(&sources, &req), Ok(vec![]));
    }

    // A Basic value next to a Bearer value leaves the Bearer token as the only credential.
    #[test]
    fn other_scheme_next_to_bearer() {
        let sources = [bearer()];
        let req = request(
            "/",
            &[
                ("authorization", "Basic dXNlcjpwYXNz"),
                ("authorization", "Bearer t.o.k"),
            ],
        );
        assert_eq!(values(&find_tokens(&sources, &req).unwrap()), ["t.o.k"]);
    }

    // Two prefixed values of the same header are refused, even when equal.
    #[test]
    fn repeated_header_is_refused() {
        let sources = [bearer()];
        let req = request(
            "/",
            &[
                ("authorization", "Bearer a.b.c"),
                ("authorization", "Bearer a.b.c"),
            ],
        );
        assert_eq!(
            find_tokens(&sources, &req),
            Err(Failure::RepeatedCredential)
        );
    }

    // With an empty prefix the whole value is the token; an empty value is malformed.
    #[test]
    fn empty_prefix_takes_whole_value() {
        let sources = [header("x-goog-iap-jwt-assertion", "")];
        let req = request("/", &[("x-goog-iap-jwt-assertion", "h.p.s")]);
        assert_eq!(values(&find_tokens(&sources, &req).unwrap()), ["h.p.s"]);
        let req = request("/", &[("x-goog-iap-jwt-assertion", " ")]);
        assert_eq!(
            find_tokens(&sources, &req),
            Err(Failure::MalformedAuthorization)
        );
    }

    // No token anywhere is an empty list, not an error.
    #[test]
    fn nothing_sent() {
        let sources = [bearer(), param("access_token")];
        let req = request("/v2/models?x=1", &[("content-type", "application/json")]);
        assert_eq!(find_tokens(&sources, &req), Ok(vec![]));
    }

    // A query parameter is found; names and values are percent-decoded, '+' stays '+'.
    #[test]
    fn param_is_decoded() {
        let sources = [param("access_token")];
        let req = request("/p?a=1&access_token=a.b.c&z", &[]);
        let found = find_tokens(&sources, &req).unwrap();
        assert_eq!(values(&found), ["a.b.c"]);
        assert!(matches!(found[0].value, Cow::Borrowed(_)));

        let req = request("/p?access%5Ftoken=a%2Eb+c%2e", &[]);
        let found = find_tokens(&sources, &req).unwrap();
        assert_eq!(values(&found), ["a.b+c."]);
        assert!(matches!(found[0].value, Cow::Owned(_)));
    }

    // A pair whose escapes do not decode does not match the source.
    #[test]
    fn param_with_bad_escape_is_ignored() {
        let sources = [param("access_token")];
        for path in [
            "/p?access_token=a%zz",
            "/p?access_token=a%2",
            "/p?access_token=%",
            "/p?access_token=%ff",
            "/p?access%zztoken=abc",
        ] {
            let req = request(path, &[]);
            assert_eq!(find_tokens(&sources, &req), Ok(vec![]), "{path}");
        }
    }

    // The same parameter twice is refused.
    #[test]
    fn repeated_param_is_refused() {
        let sources = [param("access_token")];
        let req = request("/p?access_token=a&access%5Ftoken=b", &[]);
        assert_eq!(
            find_tokens(&sources, &req),
            Err(Failure::RepeatedCredential)
        );
    }

    // A parameter with an empty value (or no '=') is malformed.
    #[test]
    fn empty_param_is_malformed() {
        let sources = [param("access_token")];
        for path in [
            "/p?access_token=",
            "/p?access_token",
            "/p?x=1&access_token=&y",
        ] {
            let req = request(path, &[]);
            assert_eq!(
                find_tokens(&sources, &req),
                Err(Failure::MalformedAuthorization),
                "{path}"
            );
        }
    }

    // A fragment is not part of the query, so a parameter inside it is not seen.
    #[test]
    fn fragment_is_ignored() {
        let sources = [param("access_token")];
        let req = request("/p?x=1#access_token=a.b.c", &[]);
        assert_eq!(find_tokens(&sources, &req), Ok(vec![]));
        let req = request("/p?access_token=a.b.c#frag", &[]);
        assert_eq!(values(&find_tokens(&sources, &req).unwrap()), ["a.b.c"]);
    }

    // Tokens from several sources come back in source order.
    #[test]
    fn tokens_in_source_order() {
        let sources = [param("access_token"), bearer()];
        let req = request(
            "/p?access_token=from.the.query",
            &[("authorization", "Bearer from.the.header")],
        );
        let found = find_tokens(&sources, &req).unwrap();
        assert_eq!(values(&found), ["from.the.query", "from.the.header"]);
        assert_eq!(found[0].source, &sources[0]);
        assert_eq!(found[1].source, &sources[1]);
    }

    // An error in a later source is reported even if an earlier source found a token.
    #[test]
    fn later_source_error_is_reported() {
        let sources = [bearer(), param("access_token")];
        let req = request("/p?access_token=", &[("authorization", "Bearer a.b.c")]);
        assert_eq!(
            find_tokens(&sources, &req),
            Err(Failure::MalformedAuthorization)
        );
    }

    // A multi-byte character where the prefix would end does not panic and does not match.
    #[test]
    fn non_ascii_value_does_not_panic() {
        let sources = [bearer()];
        let req = request("/", &[("authorization", "Beare\u{e9}x")]);
        assert_eq!(find_tokens(&sources, &req), Ok(vec![]));
        let req = request("/", &[("authorization", "\u{e9}")]);
        assert_eq!(find_tokens(&sources, &req), Ok(vec![]));
    }
}
