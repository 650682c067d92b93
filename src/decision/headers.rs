//! The request headers an allowed request goes upstream with: managed headers removed in every
//! spelling, identity headers set from the accepted tokens, the path normalized and cleared of
//! query tokens.

use std::rc::Rc;

use super::binding::PROOF_HEADER;
use super::requirement::Verified;
use crate::config::Config;
use crate::request::extract::{self, TokenSource};
use crate::request::{header_name_has_prefix, same_header_name, Request};

/// Header changes for an allowed request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allow {
    /// Whether the path was public (no requirement).
    pub public: bool,
    /// Headers to remove: client copies of managed headers, and tokens not forwarded.
    pub remove_headers: Vec<String>,
    /// Headers to set from verified claims, after the removals. Values are shared with the
    /// verified-token cache, so a cache hit copies no value.
    pub set_headers: Vec<(Rc<str>, Rc<str>)>,
    /// Envoy filter state properties to write: the verified identity.
    pub filter_state: Vec<(Rc<str>, Rc<str>)>,
    /// The answer is the OpenAI model list, to be narrowed to the models the caller may use.
    pub narrow_model_list: bool,
}

/// The first header the filter reads whose value is not UTF-8: a pseudo-header, or a header some
/// provider takes tokens from. Such a request cannot be judged, so it is refused; an undecodable
/// header the filter does not read is left alone (or removed, if it is a managed one).
pub(super) fn undecodable_read_header<'r>(
    config: &Config,
    request: &'r Request,
) -> Option<&'r str> {
    request.undecodable.iter().map(String::as_str).find(|name| {
        name.starts_with(':')
            || config.providers.iter().any(|provider| {
                provider.token_sources.iter().any(|source| {
                        matches!(source, TokenSource::Header { name: read, .. } if read == name)
                    })
            })
    })
}

/// Sets `:path` for the upstream when it differs from what was received: the normalized path,
/// and the query without the parameters that carried a token that is not forwarded. Every other
/// query byte is kept as it was.
pub(super) fn set_upstream_path(
    request: &Request,
    path: &str,
    removed_params: &[&str],
    allow: &mut Allow,
) {
    let query = request.query();
    let kept = match query {
        Some(query) if !removed_params.is_empty() => {
            Some(extract::without_params(query, removed_params))
        }
        _ => None,
    };
    if kept.is_none() && path == request.path_only() {
        return;
    }
    let query = match &kept {
        Some(kept) => Some(kept.as_str()).filter(|kept| !kept.is_empty()),
        None => query,
    };
    let rewritten = match query {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    allow.set_headers.push((":path".into(), rewritten.into()));
}

/// The managed headers this request carries, by the name it used (a managed prefix becomes the
/// names of the request's headers that start with it). Names match ignoring case and with `_`
/// equal to `-`, because WSGI and CGI servers read `x_jwt_sub` as `x-jwt-sub`. Only present
/// headers are removed: asking the host to remove an absent header costs a call and, in Envoy, a
/// recomputed route.
pub(super) fn present_managed_headers(config: &Config, request: &Request) -> Vec<String> {
    let mut present: Vec<String> = Vec::new();
    for name in request.header_names() {
        let managed = config
            .managed_headers
            .iter()
            .any(|managed| same_header_name(name, managed))
            || config
                .managed_header_prefixes
                .iter()
                .any(|prefix| header_name_has_prefix(name, prefix));
        if managed && !present.iter().any(|seen| seen == name) {
            present.push(name.to_owned());
        }
    }
    present
}

/// Adds the header changes of every accepted token, and returns the query parameters whose token
/// must not go upstream.
pub(super) fn add_token_headers<'c>(
    config: &'c Config,
    tokens: &'c [Verified],
    allow: &mut Allow,
) -> Vec<&'c str> {
    let mut removed_params = Vec::new();
    for token in tokens {
        let Some(provider) = config.providers.get(token.provider) else {
            continue;
        };
        if !provider.forward {
            // The token's own source; every source of the provider if the index were ever
            // stale, so that the token never goes upstream.
            let sources = match provider.token_sources.get(token.source_index) {
                Some(source) => std::slice::from_ref(source),
                None => provider.token_sources.as_slice(),
            };
            for source in sources {
                match source {
                    TokenSource::Header { name, .. } => {
                        if !allow.remove_headers.contains(name) {
                            allow.remove_headers.push(name.clone());
                        }
                    }
                    TokenSource::Param { name } => removed_params.push(name.as_str()),
                }
            }
            // The proof is bound to the token: without it, it is of no use upstream.
            if token.with_proof && !allow.remove_headers.iter().any(|n| n == PROOF_HEADER) {
                allow.remove_headers.push(PROOF_HEADER.to_owned());
            }
        }
        allow
            .set_headers
            .extend(token.forwarded.headers.iter().cloned());
        allow
            .filter_state
            .extend(token.forwarded.filter_state.iter().cloned());
    }
    removed_params
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_json(
            br#"{"providers": {"p": {"issuer": "https://i", "audiences": ["a"],
                   "from_headers": [{"name": "x-token"}], "from_params": ["access_token"],
                   "local_jwks": {"inline_string": "{\"keys\": []}"}}},
                 "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}]}"#,
        )
        .unwrap()
    }

    fn verified(source_index: usize) -> Verified {
        Verified {
            provider: 0,
            source_index,
            claims: Rc::default(),
            forwarded: Rc::default(),
            with_proof: false,
        }
    }

    // The token's own source is cleared: its header removed, or its query parameter dropped.
    #[test]
    fn the_token_source_is_cleared() {
        let config = config();
        let mut allow = Allow::default();
        assert!(add_token_headers(&config, &[verified(0)], &mut allow).is_empty());
        assert_eq!(allow.remove_headers, ["x-token"]);
        let mut allow = Allow::default();
        assert_eq!(
            add_token_headers(&config, &[verified(1)], &mut allow),
            ["access_token"]
        );
        assert!(allow.remove_headers.is_empty());
    }

    // A source index that names no source clears every source: the token never goes upstream.
    #[test]
    fn an_unknown_source_clears_every_source() {
        let config = config();
        let mut allow = Allow::default();
        let tokens = [verified(7)];
        let params = add_token_headers(&config, &tokens, &mut allow);
        assert_eq!(allow.remove_headers, ["x-token"]);
        assert_eq!(params, ["access_token"]);
    }
}
