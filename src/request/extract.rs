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
    /// Its position among the sources searched.
    pub source_index: usize,
    /// The token text, prefix removed.
    pub value: std::borrow::Cow<'r, str>,
}

/// The one token sent in any of `sources`, or `None` when none was sent. A provider judges one
/// credential per request: two tokens in any mix of its sources (two headers, a header and a query
/// parameter, one header repeated) are refused with [`Failure::RepeatedCredential`], so that no
/// rule can be met by two identities together.
pub fn find_token<'r>(
    sources: &'r [TokenSource],
    request: &'r Request,
) -> Result<Option<FoundToken<'r>>, Failure> {
    let mut found = None;
    let mut repeated = false;
    for (source_index, source) in sources.iter().enumerate() {
        let value = match source {
            TokenSource::Header { name, value_prefix } => {
                header_token(request, name, value_prefix)?.map(Cow::Borrowed)
            }
            TokenSource::Param { name } => param_token(request, name)?,
        };
        if let Some(value) = value {
            repeated |= found.is_some();
            found = Some(FoundToken {
                source,
                source_index,
                value,
            });
        }
    }
    // Checked after every source, so a malformed credential anywhere is reported as such.
    if repeated {
        return Err(Failure::RepeatedCredential);
    }
    Ok(found)
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// The token in header `name` after `prefix`. Every value of the header counts, and so does every
/// element of a comma-separated value: Envoy joins a repeated `Authorization` into one value with
/// commas (`Bearer a,Bearer b`), and no JWT contains a comma. Elements without the prefix belong
/// to some other scheme (`Basic ...` next to a `Bearer ` source) and are skipped.
fn header_token<'r>(
    request: &'r Request,
    name: &'r str,
    prefix: &str,
) -> Result<Option<&'r str>, Failure> {
    let mut token = None;
    for value in request.header_values(name) {
        let list = value.contains(',');
        for element in value.split(',') {
            // Empty list elements are allowed (RFC 9110 §5.6.1); a lone empty value is not.
            if list && element.trim_matches(is_blank).is_empty() {
                continue;
            }
            let Some(rest) = strip_prefix_ignore_case(element.trim_start_matches(is_blank), prefix)
            else {
                continue;
            };
            if token.is_some() {
                return Err(Failure::RepeatedCredential);
            }
            token = Some(rest.trim_matches(is_blank));
        }
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

/// `query` without the pairs whose decoded name is one of `names`; every other pair is kept byte
/// for byte and in order. Used to keep a token taken from a query parameter from going upstream.
pub fn without_params(query: &str, names: &[&str]) -> String {
    query
        .split('&')
        .filter(|pair| {
            let raw_name = pair.split_once('=').map_or(*pair, |(name, _)| name);
            !percent_decode(raw_name).is_some_and(|name| names.contains(&name.as_ref()))
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Decodes `%XX` escapes; `+` is kept as is. `None` for a broken escape or invalid UTF-8.
pub(super) fn percent_decode(text: &str) -> Option<Cow<'_, str>> {
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

/// The value of one hexadecimal digit, either case.
pub(super) fn hex_value(digit: u8) -> Option<u8> {
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
            ..Request::default()
        }
    }

    fn value(found: &Option<FoundToken<'_>>) -> Vec<String> {
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
        let found = find_token(&sources, &req).unwrap().unwrap();
        assert_eq!(found.value, "abc.def.ghi");
        assert!(matches!(found.value, Cow::Borrowed(_)));
        assert_eq!(found.source, &sources[0]);
    }

    // The prefix is compared case-insensitively, and blanks around the token are removed.
    #[test]
    fn prefix_is_case_insensitive_and_token_trimmed() {
        let sources = [bearer()];
        let req = request("/", &[("authorization", "bearer \t a.b.c \t")]);
        assert_eq!(value(&find_token(&sources, &req).unwrap()), ["a.b.c"]);
        let req = request("/", &[("authorization", "BEARER a.b.c")]);
        assert_eq!(value(&find_token(&sources, &req).unwrap()), ["a.b.c"]);
    }

    // The prefix with nothing after it is a malformed credential.
    #[test]
    fn prefix_only_is_malformed() {
        let sources = [bearer()];
        for value in ["Bearer ", "Bearer    ", "Bearer", "bearer\t"] {
            let req = request("/", &[("authorization", value)]);
            assert_eq!(
                find_token(&sources, &req),
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
        assert_eq!(find_token(&sources, &req), Ok(None));
        let req = request("/", &[("authorization", "Bearertoken")]);
        assert_eq!(find_token(&sources, &req), Ok(None));
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
        assert_eq!(value(&find_token(&sources, &req).unwrap()), ["t.o.k"]);
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
        assert_eq!(find_token(&sources, &req), Err(Failure::RepeatedCredential));
    }

    // With an empty prefix the whole value is the token; an empty value is malformed.
    #[test]
    fn empty_prefix_takes_whole_value() {
        let sources = [header("x-goog-iap-jwt-assertion", "")];
        let req = request("/", &[("x-goog-iap-jwt-assertion", "h.p.s")]);
        assert_eq!(value(&find_token(&sources, &req).unwrap()), ["h.p.s"]);
        let req = request("/", &[("x-goog-iap-jwt-assertion", " ")]);
        assert_eq!(
            find_token(&sources, &req),
            Err(Failure::MalformedAuthorization)
        );
    }

    // No token anywhere is an empty list, not an error.
    #[test]
    fn nothing_sent() {
        let sources = [bearer(), param("access_token")];
        let req = request("/v2/models?x=1", &[("content-type", "application/json")]);
        assert_eq!(find_token(&sources, &req), Ok(None));
    }

    // A query parameter is found; names and values are percent-decoded, '+' stays '+'.
    #[test]
    fn param_is_decoded() {
        let sources = [param("access_token")];
        let req = request("/p?a=1&access_token=a.b.c&z", &[]);
        let found = find_token(&sources, &req).unwrap().unwrap();
        assert_eq!(found.value, "a.b.c");
        assert!(matches!(found.value, Cow::Borrowed(_)));

        let req = request("/p?access%5Ftoken=a%2Eb+c%2e", &[]);
        let found = find_token(&sources, &req).unwrap().unwrap();
        assert_eq!(found.value, "a.b+c.");
        assert!(matches!(found.value, Cow::Owned(_)));
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
            assert_eq!(find_token(&sources, &req), Ok(None), "{path}");
        }
    }

    // The same parameter twice is refused.
    #[test]
    fn repeated_param_is_refused() {
        let sources = [param("access_token")];
        let req = request("/p?access_token=a&access%5Ftoken=b", &[]);
        assert_eq!(find_token(&sources, &req), Err(Failure::RepeatedCredential));
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
                find_token(&sources, &req),
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
        assert_eq!(find_token(&sources, &req), Ok(None));
        let req = request("/p?access_token=a.b.c#frag", &[]);
        assert_eq!(value(&find_token(&sources, &req).unwrap()), ["a.b.c"]);
    }

    // One token per provider: two sources that each carry one, in any mix, are refused, even when
    // the tokens are equal; the token's source is reported with it.
    #[test]
    fn tokens_in_two_sources_are_refused() {
        let sources = [param("access_token"), bearer(), header("x-token", "")];
        for headers in [
            vec![("authorization", "Bearer from.the.header")],
            vec![("x-token", "from.the.query")],
        ] {
            let req = request("/p?access_token=from.the.query", &headers);
            assert_eq!(find_token(&sources, &req), Err(Failure::RepeatedCredential));
        }
        let req = request(
            "/p",
            &[("authorization", "Bearer a.b.c"), ("x-token", "d.e.f")],
        );
        assert_eq!(find_token(&sources, &req), Err(Failure::RepeatedCredential));
        let req = request("/p", &[("x-token", "d.e.f")]);
        let found = find_token(&sources, &req).unwrap().unwrap();
        assert_eq!(found.source, &sources[2]);
    }

    // Envoy joins a repeated Authorization header with commas: two Bearer tokens are two
    // credentials; another scheme beside one Bearer token leaves the Bearer token; empty list
    // elements are skipped.
    #[test]
    fn comma_joined_authorization() {
        let sources = [bearer()];
        for joined in ["Bearer a.b.c,Bearer d.e.f", "Bearer a.b.c, bearer a.b.c"] {
            let req = request("/", &[("authorization", joined)]);
            assert_eq!(
                find_token(&sources, &req),
                Err(Failure::RepeatedCredential),
                "{joined}"
            );
        }
        for joined in [
            "Basic dXNlcjpwYXNz,Bearer t.o.k",
            "Bearer t.o.k, Basic dXNlcjpwYXNz",
            "Digest username=\"u\", realm=\"r\",Bearer t.o.k",
            ",Bearer t.o.k,,",
        ] {
            let req = request("/", &[("authorization", joined)]);
            assert_eq!(
                value(&find_token(&sources, &req).unwrap()),
                ["t.o.k"],
                "{joined}"
            );
        }
        let req = request("/", &[("authorization", "Basic dXNlcjpwYXNz,Bearer")]);
        assert_eq!(
            find_token(&sources, &req),
            Err(Failure::MalformedAuthorization)
        );
    }

    // An error in a later source is reported even if an earlier source found a token.
    #[test]
    fn later_source_error_is_reported() {
        let sources = [bearer(), param("access_token")];
        let req = request("/p?access_token=", &[("authorization", "Bearer a.b.c")]);
        assert_eq!(
            find_token(&sources, &req),
            Err(Failure::MalformedAuthorization)
        );
    }

    // Only the named parameters go, however their names are spelled; the rest stay byte for byte.
    #[test]
    fn token_params_are_removed_from_the_query() {
        let names = ["access_token"];
        assert_eq!(without_params("access_token=a.b.c", &names), "");
        assert_eq!(
            without_params("x=%2F1&access_token=a.b.c&y=2&&z", &names),
            "x=%2F1&y=2&&z"
        );
        assert_eq!(without_params("access%5Ftoken=a&b=c", &names), "b=c");
        assert_eq!(
            without_params("access_tokens=a&b=c", &names),
            "access_tokens=a&b=c"
        );
    }

    // A multi-byte character where the prefix would end does not panic and does not match.
    #[test]
    fn non_ascii_value_does_not_panic() {
        let sources = [bearer()];
        let req = request("/", &[("authorization", "Beare\u{e9}x")]);
        assert_eq!(find_token(&sources, &req), Ok(None));
        let req = request("/", &[("authorization", "\u{e9}")]);
        assert_eq!(find_token(&sources, &req), Ok(None));
    }
}
