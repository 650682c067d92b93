//! Which KServe model a request path addresses, and the `match.model` patterns rules use.
//!
//! KServe's REST protocols put the model name in the path: V1 `/v1/models/<m>:predict` (and
//! `:explain`, and `/v1/models/<m>` for its status), V2 `/v2/models/<m>[/versions/<v>]/infer`
//! (and `/ready`, and the metadata path without a suffix). The gRPC service and the
//! OpenAI-compatible endpoints carry the model in the body, so no model is read from them.

use std::borrow::Cow;

use super::extract::hex_value;

/// The KServe REST protocol a model path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `/v1/models/<m>[:<verb>]`
    V1,
    /// `/v2/models/<m>[/versions/<v>][/<endpoint>]`
    V2,
}

/// The model a request path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPath {
    /// Which protocol's path layout it follows.
    pub protocol: Protocol,
    /// The model name, percent-decoded as the model server decodes it.
    pub name: String,
    /// The V2 model version, when the path names one.
    pub version: Option<String>,
}

/// Reads the model from `path` (query already removed). `None` for paths that address no
/// single model: health probes, model lists, gRPC, OpenAI-compatible endpoints.
///
/// The path is percent-decoded first, as the model server decodes it before routing, so that
/// `/v1/models/fr%61ud:predict` is model `fraud` here too. Everything below `/v1/models/<m>`
/// and `/v2/models/<m>` belongs to that model, whatever verb or endpoint follows: a rule about a
/// model then also covers endpoints a future server version adds.
pub fn parse(path: &str) -> Option<ModelPath> {
    let decoded = percent_decode(path);
    if let Some(rest) = decoded.strip_prefix("/v1/models/") {
        let segment = rest.split('/').next().unwrap_or_default();
        // V1 verbs follow the name after a colon: the name ends at the first one.
        let name = segment.split(':').next().unwrap_or_default();
        return (!name.is_empty()).then(|| ModelPath {
            protocol: Protocol::V1,
            name: name.to_owned(),
            version: None,
        });
    }
    if let Some(rest) = decoded.strip_prefix("/v2/models/") {
        let mut segments = rest.split('/');
        let name = segments.next().unwrap_or_default();
        if name.is_empty() {
            return None;
        }
        let version = match (segments.next(), segments.next()) {
            (Some("versions"), Some(version)) if !version.is_empty() => Some(version.to_owned()),
            _ => None,
        };
        return Some(ModelPath {
            protocol: Protocol::V2,
            name: name.to_owned(),
            version,
        });
    }
    None
}

/// Decodes every valid `%XX` escape; invalid escapes stay as they are and bytes that are not
/// UTF-8 become U+FFFD, as Python's `unquote` (the model server's decoder) does.
fn percent_decode(path: &str) -> Cow<'_, str> {
    if !path.contains('%') {
        return Cow::Borrowed(path);
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        let escaped = match (byte, bytes.get(index + 1), bytes.get(index + 2)) {
            (b'%', Some(&high), Some(&low)) => {
                hex_value(high).zip(hex_value(low)).map(|(h, l)| h << 4 | l)
            }
            _ => None,
        };
        match escaped {
            Some(decoded) => {
                out.push(decoded);
                index += 3;
            }
            None => {
                out.push(byte);
                index += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// A `match.model` value: an exact model name, or a name prefix written with a trailing `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelPattern {
    /// The model name equals this.
    Exact(String),
    /// The model name starts with this (`"team-*"`); `"*"` alone matches every model.
    Prefix(String),
}

impl ModelPattern {
    /// Parses a pattern. `*` is allowed only as the last character; a name cannot contain `/`,
    /// `?`, `#`, `%`, whitespace or control characters, none of which a model path can carry
    /// as part of the name.
    pub fn parse(text: &str) -> Result<ModelPattern, String> {
        if text.is_empty() {
            return Err("must not be empty".to_owned());
        }
        let (name, glob) = match text.strip_suffix('*') {
            Some(name) => (name, true),
            None => (text, false),
        };
        if name.contains('*') {
            return Err(
                "\"*\" is allowed only at the end, as in \"team-*\"; a model pattern is an \
                 exact name or a name prefix followed by \"*\""
                    .to_owned(),
            );
        }
        if let Some(bad) = name
            .chars()
            .find(|c| "/?#%".contains(*c) || c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "contains {bad:?}, which a model name in a request path cannot contain"
            ));
        }
        Ok(if glob {
            ModelPattern::Prefix(name.to_owned())
        } else {
            ModelPattern::Exact(name.to_owned())
        })
    }

    /// Whether a model named `name` fits. Names are compared case-sensitively, as paths are.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            ModelPattern::Exact(exact) => name == exact,
            ModelPattern::Prefix(prefix) => name.starts_with(prefix.as_str()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn v1(name: &str) -> Option<ModelPath> {
        Some(ModelPath {
            protocol: Protocol::V1,
            name: name.into(),
            version: None,
        })
    }

    fn v2(name: &str, version: Option<&str>) -> Option<ModelPath> {
        Some(ModelPath {
            protocol: Protocol::V2,
            name: name.into(),
            version: version.map(Into::into),
        })
    }

    // V1 predict, explain and the model status path all name the model.
    #[test]
    fn v1_paths() {
        assert_eq!(parse("/v1/models/fraud:predict"), v1("fraud"));
        assert_eq!(parse("/v1/models/fraud:explain"), v1("fraud"));
        assert_eq!(parse("/v1/models/fraud"), v1("fraud"));
        assert_eq!(parse("/v1/models/fraud/"), v1("fraud"));
    }

    // Any V1 verb belongs to the model, so a new verb is still covered by the model's rule.
    #[test]
    fn v1_unknown_verb_is_still_the_model() {
        assert_eq!(parse("/v1/models/fraud:generate"), v1("fraud"));
        assert_eq!(parse("/v1/models/fraud:a:b"), v1("fraud"));
    }

    // V2 infer, ready and metadata, with and without a version.
    #[test]
    fn v2_paths() {
        assert_eq!(parse("/v2/models/fraud/infer"), v2("fraud", None));
        assert_eq!(parse("/v2/models/fraud/ready"), v2("fraud", None));
        assert_eq!(parse("/v2/models/fraud"), v2("fraud", None));
        assert_eq!(
            parse("/v2/models/fraud/versions/3/infer"),
            v2("fraud", Some("3"))
        );
        assert_eq!(
            parse("/v2/models/fraud/versions/3/ready"),
            v2("fraud", Some("3"))
        );
        assert_eq!(parse("/v2/models/fraud/versions/3"), v2("fraud", Some("3")));
        assert_eq!(parse("/v2/models/fraud/versions/"), v2("fraud", None));
    }

    // Paths that address no single model give none.
    #[test]
    fn paths_without_a_model() {
        for path in [
            "/",
            "/v1/models",
            "/v1/models/",
            "/v1/models/:predict",
            "/v2/models/",
            "/v2/models//infer",
            "/v2/health/ready",
            "/v2",
            "/v3/models/fraud/infer",
            "/openai/v1/chat/completions",
            "/inference.GRPCInferenceService/ModelInfer",
            "/x/v1/models/fraud:predict",
        ] {
            assert_eq!(parse(path), None, "{path}");
        }
    }

    // The name is decoded as the model server decodes it, so an escape cannot dodge a rule.
    #[test]
    fn percent_escapes_are_decoded() {
        assert_eq!(parse("/v1/models/fr%61ud:predict"), v1("fraud"));
        assert_eq!(parse("/v1/models/fraud%3Apredict"), v1("fraud"));
        assert_eq!(parse("/v2/%6Dodels/fraud/infer"), v2("fraud", None));
        assert_eq!(parse("/v2/models/fraud%2Finfer"), v2("fraud", None));
    }

    // Invalid escapes stay literal and undecodable bytes become U+FFFD; nothing panics.
    #[test]
    fn odd_escapes_are_kept() {
        assert_eq!(parse("/v1/models/a%zz:predict"), v1("a%zz"));
        assert_eq!(parse("/v1/models/a%4"), v1("a%4"));
        assert_eq!(parse("/v1/models/a%"), v1("a%"));
        assert_eq!(parse("/v1/models/a%ff"), v1("a\u{fffd}"));
        assert_eq!(parse("/v1/models/é:predict"), v1("é"));
    }

    // Exact patterns match only the identical name: `fraudulent` is not `fraud`.
    #[test]
    fn exact_pattern() {
        let pattern = ModelPattern::parse("fraud").unwrap();
        assert_eq!(pattern, ModelPattern::Exact("fraud".into()));
        assert!(pattern.matches("fraud"));
        assert!(!pattern.matches("fraudulent"));
        assert!(!pattern.matches("fraud-v2"));
        assert!(!pattern.matches("frau"));
        assert!(!pattern.matches("Fraud"));
    }

    // A trailing star matches the prefix itself and every longer name.
    #[test]
    fn prefix_pattern() {
        let pattern = ModelPattern::parse("team-*").unwrap();
        assert_eq!(pattern, ModelPattern::Prefix("team-".into()));
        assert!(pattern.matches("team-a"));
        assert!(pattern.matches("team-"));
        assert!(!pattern.matches("team"));
        assert!(!pattern.matches("teams"));
        assert!(ModelPattern::parse("*").unwrap().matches("anything"));
    }

    // A star anywhere but at the end is refused, with the reason.
    #[test]
    fn misplaced_star() {
        for text in ["*-fraud", "team-*-a", "**", "a*b"] {
            let error = ModelPattern::parse(text).unwrap_err();
            assert!(error.contains("only at the end"), "{text}: {error}");
        }
    }

    // Characters a model path cannot carry in its name are refused.
    #[test]
    fn impossible_characters() {
        for text in ["a/b", "a?", "a#", "a%20", "a b", "a\n", ""] {
            assert!(ModelPattern::parse(text).is_err(), "{text:?}");
        }
    }
}
