//! The request headers an allowed request goes upstream with: managed headers removed in every
//! spelling, identity headers set from the accepted tokens, the path normalized and cleared of
//! query tokens.

use super::requirement::Verified;
use crate::config::provider::FILTER_STATE_PROVIDER;
use crate::config::Config;
pub use crate::policy::claims::claim_at;
use crate::policy::identity;
use crate::request::extract::{self, TokenSource};
use crate::request::{header_name_has_prefix, same_header_name, Request};

/// Header changes for an allowed request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allow {
    /// Whether the path was public (no requirement).
    pub public: bool,
    /// Headers to remove: client copies of managed headers, and tokens not forwarded.
    pub remove_headers: Vec<String>,
    /// Headers to set from verified claims, after the removals.
    pub set_headers: Vec<(String, String)>,
    /// Envoy filter state properties to write: the verified identity.
    pub filter_state: Vec<(String, String)>,
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
    allow.set_headers.push((":path".to_owned(), rewritten));
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
            match &token.source {
                TokenSource::Header { name, .. } => {
                    if !allow.remove_headers.contains(name) {
                        allow.remove_headers.push(name.clone());
                    }
                }
                TokenSource::Param { name } => removed_params.push(name.as_str()),
            }
        }
        if let Some(name) = &provider.forward_payload_header {
            allow
                .set_headers
                .push((name.clone(), token.payload_segment.to_string()));
        }
        for mapping in &provider.claim_to_headers {
            if let Some(value) = claim_header_value(&token.claims, &mapping.claim_path) {
                allow.set_headers.push((mapping.header_name.clone(), value));
            }
        }
        allow
            .set_headers
            .extend(identity::headers(&provider.identity, &token.claims));
        if let Some(filter_state) = &provider.filter_state {
            allow
                .filter_state
                .push((FILTER_STATE_PROVIDER.to_owned(), provider.name.clone()));
            for (property, claim_path) in &filter_state.claims {
                if let Some(value) = claim_header_value(&token.claims, claim_path) {
                    allow.filter_state.push((property.clone(), value));
                }
            }
        }
    }
    removed_params
}

/// A claim rendered as a header value: strings as they are, other scalars and objects as JSON,
/// arrays joined with commas. An array whose elements would lose their boundaries that way (an
/// element with a comma or a double quote, or a first element that starts with `[`) is sent as a
/// JSON array instead: `["a,b","c"]`, never `a,b,c`. Values that cannot be a header value
/// (control characters) are left out.
pub(super) fn claim_header_value(
    claims: &serde_json::Map<String, serde_json::Value>,
    path: &[String],
) -> Option<String> {
    fn scalar(value: &serde_json::Value) -> String {
        match value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
    let value = match claim_at(claims, path)? {
        serde_json::Value::Array(items) => {
            let elements: Vec<String> = items.iter().map(scalar).collect();
            let ambiguous = elements.iter().any(|e| e.contains([',', '"']))
                || elements.first().is_some_and(|e| e.starts_with('['));
            if ambiguous {
                serde_json::Value::Array(items.clone()).to_string()
            } else {
                elements.join(",")
            }
        }
        serde_json::Value::Null => return None,
        other => scalar(other),
    };
    if value.chars().any(|c| c.is_control()) {
        return None;
    }
    Some(value)
}
