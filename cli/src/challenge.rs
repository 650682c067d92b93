//! `WWW-Authenticate` challenges (RFC 9110 §11.6.1): the scheme and its parameters, as a
//! client needs them to recover from a 401.

/// One challenge.
#[derive(Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, as sent (`Bearer`, `DPoP`).
    pub scheme: String,
    /// `name=value` parameters, names in lower case, quoted values unquoted.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every challenge in every `WWW-Authenticate` value; what cannot be read is skipped.
pub fn parse_all<'a>(values: impl Iterator<Item = &'a str>) -> Vec<Challenge> {
    values.flat_map(parse).collect()
}

/// The challenges of one header value: `Scheme name=value, name="quoted", Other name=value`.
pub fn parse(value: &str) -> Vec<Challenge> {
    let mut challenges: Vec<Challenge> = Vec::new();
    let mut rest = value.trim_start();
    while !rest.is_empty() {
        rest = rest.trim_start_matches([',', ' ', '\t']);
        let token_end = rest.find(|c: char| !is_token_char(c)).unwrap_or(rest.len());
        let (token, after) = rest.split_at(token_end);
        if token.is_empty() {
            break;
        }
        let after_space = after.trim_start_matches([' ', '\t']);
        if let Some(value_text) = after_space.strip_prefix('=') {
            // A parameter of the current challenge.
            let (value, remaining) = parameter_value(value_text.trim_start_matches([' ', '\t']));
            if let Some(current) = challenges.last_mut() {
                current.params.push((token.to_ascii_lowercase(), value));
            }
            rest = remaining;
        } else {
            challenges.push(Challenge {
                scheme: token.to_owned(),
                params: Vec::new(),
            });
            rest = after;
        }
    }
    challenges
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// A token or a quoted-string, and what follows it.
fn parameter_value(text: &str) -> (String, &str) {
    if let Some(quoted) = text.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        while let Some((index, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                }
                '"' => return (value, quoted.get(index + 1..).unwrap_or_default()),
                c => value.push(c),
            }
        }
        (value, "")
    } else {
        let end = text.find([',', ' ', '\t']).unwrap_or(text.len());
        let (value, rest) = text.split_at(end);
        (value.to_owned(), rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(challenge: &Challenge) -> Vec<(&str, &str)> {
        challenge
            .params
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    // The filter's own challenges, one or two per value.
    #[test]
    fn bearer_and_dpop_challenges() {
        let challenges = parse(
            "Bearer realm=\"m.example.com\", resource_metadata=\"https://m.example.com/.well-known/oauth-protected-resource\", \
             error=\"invalid_token\", error_description=\"Jwt is expired\", DPoP algs=\"ES256 EdDSA\"",
        );
        assert_eq!(challenges.len(), 2);
        assert_eq!(challenges[0].scheme, "Bearer");
        assert_eq!(
            pairs(&challenges[0]),
            [
                ("realm", "m.example.com"),
                (
                    "resource_metadata",
                    "https://m.example.com/.well-known/oauth-protected-resource"
                ),
                ("error", "invalid_token"),
                ("error_description", "Jwt is expired"),
            ]
        );
        assert_eq!(challenges[1].scheme, "DPoP");
        assert_eq!(challenges[1].param("algs"), Some("ES256 EdDSA"));
    }

    // Tokens as values, escapes in quoted strings, bare schemes.
    #[test]
    fn token_values_and_escapes() {
        let challenges = parse(r#"Basic, Bearer error=invalid_token, x="a\"b""#);
        assert_eq!(challenges[0].scheme, "Basic");
        assert_eq!(challenges[1].param("error"), Some("invalid_token"));
        assert_eq!(challenges[1].param("x"), Some("a\"b"));
        assert!(parse("").is_empty());
    }
}
