//! The request path as rules see it: normalized here, whatever Envoy's own settings are, so a path
//! trick cannot reach a protected path through a public prefix (CVE-2020-8595, CVE-2021-29492).
//!
//! Unreserved characters are percent-decoded, repeated slashes merged and dot segments removed
//! (RFC 3986 §6.2.2, §5.2.4): that is the path sent upstream. Rules match the same path with every
//! escape decoded, as KServe's server (Starlette) decodes it before routing, so `fraud%3Apredict`
//! is `fraud:predict` to a rule too. What stays ambiguous is refused rather than guessed: an
//! encoded `/` or `\`, a double-encoded octet, a raw `\`, NUL and other control characters, `..`
//! that climbs above the root, escapes that decode to invalid UTF-8, and `.;` or `..;` segments,
//! which servlet-style servers read as `.` and `..`. The query and fragment never take part.

use std::borrow::Cow;

use super::extract::{hex_value, percent_decode};

/// Longest path accepted, in bytes, before normalization.
pub const MAX_PATH_BYTES: usize = 8192;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not an origin-form path (`*`, an authority, empty).
    NotOriginForm,
    /// Longer than [`MAX_PATH_BYTES`].
    TooLong,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// `%2F` or `%5C`: a separator the upstream may or may not decode.
    EncodedSeparator,
    /// `%25` followed by hex: decoded twice, it would be something else.
    DoubleEncoded,
    /// A raw `\`, NUL or another control character.
    ForbiddenCharacter,
    /// `..` above the root.
    ClimbsAboveRoot,
    /// Escapes that decode to bytes that are not UTF-8: servers disagree on what they mean.
    NotUtf8,
    /// A segment `.;…` or `..;…`: `.` and `..` to servers that cut path parameters first.
    DotSegmentParameters,
}

/// A request path in the two spellings the filter uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedPath {
    /// What goes upstream: unreserved escapes decoded, other escapes kept (upper-cased), dot
    /// segments removed, slashes merged.
    pub upstream: String,
    /// What rules match: `upstream` with every escape decoded, as the model server reads it.
    pub decoded: String,
}

/// The normalized path (no query, no fragment), or why the path is refused.
pub fn normalize(raw: &str) -> Result<NormalizedPath, PathError> {
    let upstream = normalize_upstream(raw)?;
    let decoded = decode_all(&upstream)?.into_owned();
    Ok(NormalizedPath { upstream, decoded })
}

/// `.;…` or `..;…`, with the `;` raw or escaped (`%3B`, unreserved escapes already decoded).
fn is_dot_with_parameters(segment: &str) -> bool {
    let rest = segment
        .strip_prefix("..")
        .or_else(|| segment.strip_prefix('.'))
        .unwrap_or(segment);
    rest.len() < segment.len()
        && (rest.starts_with(';')
            || rest
                .get(..3)
                .is_some_and(|escape| escape.eq_ignore_ascii_case("%3B")))
}

/// Decodes every `%XX` of a path whose escapes [`decode_unreserved`] already checked.
fn decode_all(path: &str) -> Result<Cow<'_, str>, PathError> {
    // Every escape here was checked by `decode_unreserved`, so the only way to fail is bytes
    // that are not UTF-8. A path without escapes is borrowed, not copied.
    percent_decode(path).ok_or(PathError::NotUtf8)
}

fn normalize_upstream(raw: &str) -> Result<String, PathError> {
    if raw.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    let end = raw.find(['?', '#']).unwrap_or(raw.len());
    let path = raw.get(..end).unwrap_or_default();
    if !path.starts_with('/') {
        return Err(PathError::NotOriginForm);
    }
    let decoded = decode_unreserved(path)?;
    // Before dot segments are removed, so that a `..` cannot erase what makes a path ambiguous
    // (`/.;/..`, `/%ff/..`).
    if decoded.split('/').any(is_dot_with_parameters) {
        return Err(PathError::DotSegmentParameters);
    }
    decode_all(&decoded)?;
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::ClimbsAboveRoot);
                }
            }
            other => segments.push(other),
        }
    }
    let trailing_slash =
        decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    let mut normalized = String::with_capacity(decoded.len());
    for segment in &segments {
        normalized.push('/');
        normalized.push_str(segment);
    }
    if normalized.is_empty() || (trailing_slash && !segments.is_empty()) {
        normalized.push('/');
    }
    Ok(normalized)
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Decodes `%XX` where XX is an unreserved character; keeps other escapes (upper-cased) as they
/// are; refuses the ambiguous ones.
fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'\\' || byte.is_ascii_control() {
            return Err(PathError::ForbiddenCharacter);
        }
        if byte != b'%' {
            // Multi-byte UTF-8 is copied one char at a time.
            let ch_len = path
                .get(i..)
                .and_then(|rest| rest.chars().next())
                .map_or(1, char::len_utf8);
            out.push_str(path.get(i..i + ch_len).unwrap_or_default());
            i += ch_len;
            continue;
        }
        let (Some(high), Some(low)) = (
            bytes.get(i + 1).copied().and_then(hex_value),
            bytes.get(i + 2).copied().and_then(hex_value),
        ) else {
            return Err(PathError::BadEscape);
        };
        let decoded = high * 16 + low;
        match decoded {
            b'/' | b'\\' => return Err(PathError::EncodedSeparator),
            0..=0x1f | 0x7f => return Err(PathError::ForbiddenCharacter),
            byte if is_unreserved(byte) => out.push(char::from(byte)),
            _ => {
                out.push('%');
                out.push(
                    char::from(bytes.get(i + 1).copied().unwrap_or(b'0')).to_ascii_uppercase(),
                );
                out.push(
                    char::from(bytes.get(i + 2).copied().unwrap_or(b'0')).to_ascii_uppercase(),
                );
            }
        }
        i += 3;
    }
    // Checked on the output, so an escape assembled from escaped digits (`%25%32%65`, which
    // becomes `%252e`) is caught like a plain one.
    if has_double_escape(&out) {
        return Err(PathError::DoubleEncoded);
    }
    Ok(out)
}

/// Whether `text` has `%25` followed by two hex digits: an escape that a second decoding pass
/// would turn into another character.
fn has_double_escape(text: &str) -> bool {
    let bytes = text.as_bytes();
    text.match_indices("%25").any(|(at, _)| {
        bytes.get(at + 3).copied().and_then(hex_value).is_some()
            && bytes.get(at + 4).copied().and_then(hex_value).is_some()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        normalize(raw)
            .unwrap_or_else(|e| panic!("{raw}: {e:?}"))
            .upstream
    }

    fn decoded(raw: &str) -> String {
        normalize(raw)
            .unwrap_or_else(|e| panic!("{raw}: {e:?}"))
            .decoded
    }

    // Rules see every escape decoded, as Starlette does before routing: `%3A` is `:`, so a rule
    // for `/v1/models/fraud:predict` covers `fraud%3Apredict`; the upstream keeps the escape.
    #[test]
    fn rules_see_every_escape_decoded() {
        assert_eq!(
            decoded("/v1/models/fraud%3Apredict"),
            "/v1/models/fraud:predict"
        );
        assert_eq!(
            ok("/v1/models/fraud%3apredict"),
            "/v1/models/fraud%3Apredict"
        );
        assert_eq!(decoded("/v2/models/a%2bb"), "/v2/models/a+b");
        assert_eq!(decoded("/v2/models/%e2%82%ac"), "/v2/models/\u{20ac}");
        assert_eq!(decoded("/v2/models/100%25"), "/v2/models/100%");
        assert_eq!(decoded("/v2/models/m%3Finfer"), "/v2/models/m?infer");
        assert_eq!(
            decoded("/v1/models/fraud:predict"),
            "/v1/models/fraud:predict"
        );
    }

    // `..;` and `.;` segments are `..` and `.` to servlet-style servers: refused, also encoded.
    // Path parameters elsewhere in a segment are ordinary text.
    #[test]
    fn dot_segments_with_parameters_are_refused() {
        for raw in [
            "/v2/health/..;/v1/models/x:predict",
            "/v2/health/..;x=1/v1/models/x:predict",
            "/v2/health/.;/v1/models/x:predict",
            "/v2/health/..%3B/v1/models/x:predict",
            "/v2/health/%2e%2e%3b/v1/models/x:predict",
            "/v2/health/.;/../v1/models/x:predict",
            "/v2/health/..;/../x",
        ] {
            assert_eq!(
                normalize(raw),
                Err(PathError::DotSegmentParameters),
                "{raw}"
            );
        }
        assert_eq!(decoded("/v2/models/m;v=1/infer"), "/v2/models/m;v=1/infer");
        assert_eq!(decoded("/v2/models/...;/infer"), "/v2/models/...;/infer");
    }

    // Escapes that decode to invalid UTF-8 mean different paths to different servers.
    #[test]
    fn escapes_that_are_not_utf8_are_refused() {
        for raw in [
            "/v2/models/%ff",
            "/v2/models/caf%e9",
            "/v2/models/%e2%82",
            "/a/%ff/../b",
        ] {
            assert_eq!(normalize(raw), Err(PathError::NotUtf8), "{raw}");
        }
    }

    #[test]
    fn ordinary_paths_are_unchanged() {
        // KServe's own paths must come through exactly.
        for path in [
            "/v1/models/fraud:predict",
            "/v2/models/fraud/versions/2/infer",
            "/v2/health/ready",
            "/openai/v1/chat/completions",
            "/",
        ] {
            assert_eq!(ok(path), path);
        }
    }

    #[test]
    fn query_and_fragment_never_take_part() {
        // `?` and `#` end the path, whatever follows them.
        assert_eq!(ok("/v2/health?x=/../../models"), "/v2/health");
        assert_eq!(ok("/v2/health#/../models"), "/v2/health");
    }

    #[test]
    fn dot_segments_are_removed() {
        // A public prefix followed by `..` lands on the path the upstream would serve.
        assert_eq!(ok("/v2/health/../models/m/infer"), "/v2/models/m/infer");
        assert_eq!(ok("/v2/./models/m/infer"), "/v2/models/m/infer");
        assert_eq!(ok("/v2/health/%2e%2e/models/m/infer"), "/v2/models/m/infer");
        assert_eq!(ok("/v2/health/.%2E/models/m/infer"), "/v2/models/m/infer");
        assert_eq!(ok("/a/b/.."), "/a/");
        assert_eq!(ok("/a/."), "/a/");
    }

    #[test]
    fn repeated_slashes_are_merged() {
        // `//` must not make a path look like another.
        assert_eq!(ok("//v2//models///m/infer"), "/v2/models/m/infer");
        assert_eq!(ok("/v2/models/m/infer/"), "/v2/models/m/infer/");
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_kept() {
        // `%6d` is `m`; `%20` stays an escape, upper-cased, so rules see one spelling.
        assert_eq!(ok("/v2/%6dodels/%66raud/infer"), "/v2/models/fraud/infer");
        assert_eq!(ok("/v2/models/a%2bb"), "/v2/models/a%2Bb");
        assert_eq!(ok("/v2/models/%e2%82%ac"), "/v2/models/%E2%82%AC");
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        // Each of these could mean two different paths to two different parsers.
        let cases = [
            ("/v2/health%2F..%2Fmodels", PathError::EncodedSeparator),
            ("/v2/health%2f..%2fmodels", PathError::EncodedSeparator),
            ("/v2/health%5C..%5Cmodels", PathError::EncodedSeparator),
            ("/v2/health\\..\\models", PathError::ForbiddenCharacter),
            ("/v2/health/%252e%252e/models", PathError::DoubleEncoded),
            (
                "/v2/health/%25%32%65%25%32%65/models",
                PathError::DoubleEncoded,
            ),
            ("/v2/health/%25%32F/models", PathError::DoubleEncoded),
            ("/v2/models/m%00/infer", PathError::ForbiddenCharacter),
            ("/v2/models/m\u{0}/infer", PathError::ForbiddenCharacter),
            ("/v2/models/%zz", PathError::BadEscape),
            ("/v2/models/%4", PathError::BadEscape),
            ("/..", PathError::ClimbsAboveRoot),
            ("/v2/../../etc", PathError::ClimbsAboveRoot),
            ("*", PathError::NotOriginForm),
            ("models.test:443", PathError::NotOriginForm),
            ("", PathError::NotOriginForm),
        ];
        for (raw, error) in cases {
            assert_eq!(normalize(raw), Err(error), "{raw:?}");
        }
    }

    #[test]
    fn a_literal_percent_sign_is_kept() {
        // `%25` not followed by hex is an ordinary, unambiguous escape.
        assert_eq!(ok("/v2/models/100%25"), "/v2/models/100%25");
    }

    #[test]
    fn very_long_paths_are_refused() {
        // Bounded work per request.
        let long = format!("/{}", "a".repeat(MAX_PATH_BYTES));
        assert_eq!(normalize(&long), Err(PathError::TooLong));
        let fits = format!("/{}", "a".repeat(MAX_PATH_BYTES - 1));
        assert_eq!(ok(&fits), fits);
    }

    #[test]
    fn non_ascii_text_passes_through() {
        // Raw UTF-8 is not an escape and must not be mangled.
        assert_eq!(
            ok("/v2/models/caf\u{e9}/infer"),
            "/v2/models/caf\u{e9}/infer"
        );
    }
}
