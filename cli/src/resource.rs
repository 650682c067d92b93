//! A protected resource's RFC 9728 metadata, fetched from the URL a challenge names and checked
//! before anything in it is believed.

use serde_json::Value;

use crate::http::Client;
use crate::oauth::{require_secure, split_origin};

/// The registered well-known path suffix.
const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// What a client needs from the metadata.
pub struct Metadata {
    pub resource: String,
    pub authorization_servers: Vec<String>,
    /// `dpop_bound_access_tokens_required`.
    pub dpop_required: bool,
}

/// The metadata at `metadata_url`, for a request to `request_url`.
///
/// RFC 9728 §3.3: the document's `resource` must be the identifier the well-known URL was made
/// from; and it must be the origin the request went to, or any server could send a client to an
/// authorization server of its choosing for another resource's tokens.
pub fn fetch(http: &Client, metadata_url: &str, request_url: &str) -> Result<Metadata, String> {
    require_secure(metadata_url, "resource_metadata")?;
    let (origin, path) = split_origin(metadata_url);
    let resource_path = path
        .strip_prefix(WELL_KNOWN)
        .filter(|rest| rest.is_empty() || rest.starts_with('/'))
        .ok_or_else(|| {
            format!("resource_metadata {metadata_url:?} is not an RFC 9728 well-known URL")
        })?;
    let expected = format!("{origin}{resource_path}");
    if split_origin(request_url).0 != origin {
        return Err(format!(
            "resource_metadata {metadata_url:?} is not on the origin of {request_url:?}"
        ));
    }
    let response = http.get_json(metadata_url)?;
    if response.status != 200 {
        return Err(format!("{metadata_url} answered {}", response.status));
    }
    let document = response.json(metadata_url)?;
    let resource = document
        .get("resource")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if resource.trim_end_matches('/') != expected.trim_end_matches('/') {
        return Err(format!(
            "{metadata_url} describes resource {resource:?}, not {expected:?}"
        ));
    }
    let authorization_servers: Vec<String> = document
        .get("authorization_servers")
        .and_then(Value::as_array)
        .map(|servers| {
            servers
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if authorization_servers.is_empty() {
        return Err(format!("{metadata_url} names no authorization_servers"));
    }
    Ok(Metadata {
        resource: resource.to_owned(),
        authorization_servers,
        dpop_required: document
            .get("dpop_bound_access_tokens_required")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// The authorization server to use: `pinned` (`--issuer`) if the metadata lists it, else the
/// first one listed.
pub fn choose_server<'a>(metadata: &'a Metadata, pinned: Option<&str>) -> Result<&'a str, String> {
    match pinned {
        Some(pinned) => metadata
            .authorization_servers
            .iter()
            .find(|server| server.as_str() == pinned)
            .map(String::as_str)
            .ok_or_else(|| {
                format!(
                    "{} names authorization servers {:?}, not --issuer {pinned:?}",
                    metadata.resource, metadata.authorization_servers
                )
            }),
        None => metadata
            .authorization_servers
            .first()
            .map(String::as_str)
            .ok_or_else(|| format!("{} names no authorization server", metadata.resource)),
    }
}
