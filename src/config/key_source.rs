//! Where a provider's signing keys come from: `remote_jwks`, `local_jwks` or `oidc_discovery`.

use std::time::Duration;

use serde_json::Value;

use super::node::{ConfigError, Node, Object};
use super::uri;

/// An HTTP GET the filter makes through an Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpFetch {
    /// Envoy cluster the callout goes through.
    pub cluster: String,
    /// `:authority` sent.
    pub authority: String,
    /// `:path` sent (path and query).
    pub path: String,
    /// Callout timeout in milliseconds.
    pub timeout_ms: u64,
}

/// Where a provider's signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A JWKS URL fetched through a cluster and cached.
    Remote {
        /// The JWKS request.
        jwks: HttpFetch,
        /// How long a fetched key set is used before it is refreshed, in seconds.
        cache_duration_seconds: u64,
    },
    /// The JWKS URL is read from `<issuer>/.well-known/openid-configuration`, then fetched
    /// through the same cluster.
    Discovery {
        /// The discovery document request.
        discovery: HttpFetch,
        /// How long a fetched key set is used before it is refreshed, in seconds.
        cache_duration_seconds: u64,
    },
    /// A JWKS given inline; never refreshed.
    Local {
        /// The JWKS JSON text.
        jwks: String,
    },
}

pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
pub(super) const MAX_TIMEOUT: Duration = Duration::from_secs(60);
pub(super) const DEFAULT_CACHE_DURATION: Duration = Duration::from_secs(600);
pub(super) const MIN_CACHE_DURATION: Duration = Duration::from_secs(1);
pub(super) const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

pub(super) const KEY_SOURCES: [&str; 3] = ["remote_jwks", "local_jwks", "oidc_discovery"];
pub(super) fn compile_key_source(
    object: &Object<'_>,
    issuer: &Node<'_>,
) -> Result<KeySource, ConfigError> {
    let present: Vec<&str> = KEY_SOURCES
        .into_iter()
        .filter(|kind| object.map.contains_key(*kind))
        .collect();
    let [kind] = present.as_slice() else {
        let found = if present.is_empty() {
            "no key source is set".to_owned()
        } else {
            format!("{} are set", present.join(" and "))
        };
        return Err(object.error(format!(
            "{found}; set exactly one of {}",
            KEY_SOURCES.join(", ")
        )));
    };
    let source = object.required(kind)?;
    match *kind {
        "remote_jwks" => {
            let remote = source.object(&["http_uri", "cache_duration"])?;
            let http_uri = remote
                .required("http_uri")?
                .object(&["uri", "cluster", "timeout"])?;
            let uri_node = http_uri.required("uri")?;
            let url = uri::parse_http_url(uri_node.non_empty_string()?)
                .map_err(|message| uri_node.error(message))?;
            Ok(KeySource::Remote {
                jwks: HttpFetch {
                    cluster: http_uri.required("cluster")?.non_empty_string()?.to_owned(),
                    path: url.path_and_query(),
                    authority: url.authority,
                    timeout_ms: timeout_ms(&http_uri)?,
                },
                cache_duration_seconds: cache_duration_seconds(&remote)?,
            })
        }
        "local_jwks" => {
            let local = source.object(&["inline_string"])?;
            let jwks = local.required("inline_string")?.non_empty_string()?;
            Ok(KeySource::Local {
                jwks: jwks.to_owned(),
            })
        }
        _ => {
            let discovery = source.object(&["cluster", "timeout", "cache_duration"])?;
            let cluster = discovery
                .required("cluster")?
                .non_empty_string()?
                .to_owned();
            let timeout_ms = timeout_ms(&discovery)?;
            let cache_duration_seconds = cache_duration_seconds(&discovery)?;
            if matches!(issuer.value, Value::Array(_)) {
                return Err(issuer.error(
                    "must be a single issuer when oidc_discovery is used: discovery reads one \
                     issuer's document, whose issuer must match it exactly",
                ));
            }
            let url = uri::parse_http_url(issuer.string()?).map_err(|message| {
                issuer.error(format!(
                    "{message}; oidc_discovery needs the issuer to be an absolute http:// or \
                     https:// URL"
                ))
            })?;
            if url.query.is_some() {
                return Err(issuer.error("must not have a query when oidc_discovery is used"));
            }
            Ok(KeySource::Discovery {
                discovery: HttpFetch {
                    cluster,
                    path: format!("{}{DISCOVERY_PATH}", url.path.trim_end_matches('/')),
                    authority: url.authority,
                    timeout_ms,
                },
                cache_duration_seconds,
            })
        }
    }
}

pub(super) fn timeout_ms(object: &Object<'_>) -> Result<u64, ConfigError> {
    let timeout = match object.get("timeout") {
        None => DEFAULT_TIMEOUT,
        Some(node) => {
            let timeout = node.duration()?;
            if timeout.is_zero() {
                return Err(node.error("must be more than \"0s\""));
            }
            if timeout > MAX_TIMEOUT {
                return Err(node.error("must be at most \"60s\""));
            }
            timeout
        }
    };
    // Rounded up so that a tiny positive timeout does not become "no timeout".
    Ok(u64::try_from(timeout.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX))
}

pub(super) fn cache_duration_seconds(object: &Object<'_>) -> Result<u64, ConfigError> {
    let duration = match object.get("cache_duration") {
        None => DEFAULT_CACHE_DURATION,
        Some(node) => {
            let duration = node.duration()?;
            if duration < MIN_CACHE_DURATION {
                return Err(node.error("must be at least \"1s\""));
            }
            duration
        }
    };
    Ok(duration.as_secs() + u64::from(duration.subsec_nanos() > 0))
}
