//! What an accepted token sends upstream: its provider's identity headers and filter state,
//! computed once when the token is verified and kept with it in the token cache.

use std::rc::Rc;

use crate::config::provider::FILTER_STATE_PROVIDER;
use crate::config::Provider;
use crate::policy::claims::claim_at;
use crate::policy::identity;

/// What one verified token sends on. It depends only on the token and its provider, so a cache
/// hit applies it as it is, without reading a claim or formatting a value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarded {
    /// `forward_payload_header`, `claim_to_headers` and IAP identity headers, in that order.
    pub headers: Vec<(Rc<str>, Rc<str>)>,
    /// Filter state properties (`filter_state`).
    pub filter_state: Vec<(Rc<str>, Rc<str>)>,
}

/// The headers and filter state `provider` sends for a token with this payload segment and
/// these claims.
pub(super) fn forwarded(
    provider: &Provider,
    payload_segment: &Rc<str>,
    claims: &serde_json::Map<String, serde_json::Value>,
) -> Forwarded {
    let mut forwarded = Forwarded::default();
    if let Some(name) = &provider.forward_payload_header {
        forwarded
            .headers
            .push((name.as_str().into(), Rc::clone(payload_segment)));
    }
    for mapping in &provider.claim_to_headers {
        if let Some(value) = claim_header_value(claims, &mapping.claim_path) {
            forwarded
                .headers
                .push((mapping.header_name.as_str().into(), value.into()));
        }
    }
    forwarded.headers.extend(
        identity::headers(&provider.identity, claims)
            .into_iter()
            .map(|(name, value)| (name.into(), value.into())),
    );
    if let Some(filter_state) = &provider.filter_state {
        forwarded
            .filter_state
            .push((FILTER_STATE_PROVIDER.into(), provider.name.as_str().into()));
        for (property, claim_path) in &filter_state.claims {
            if let Some(value) = claim_header_value(claims, claim_path) {
                forwarded
                    .filter_state
                    .push((property.as_str().into(), value.into()));
            }
        }
    }
    forwarded
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
