//! Sender-constrained tokens, per provider: `dpop` (RFC 9449, a token bound to a key the client
//! proves it holds on every request) and `mtls_binding` (RFC 8705, a token bound to the client's
//! TLS certificate).

use std::time::Duration;

use super::node::{algorithm_list, quoted, ConfigError, Node, Object};
use super::uri;
use crate::jose::alg::Alg;

/// Provider fields this module reads.
pub const FIELDS: [&str; 2] = ["dpop", "mtls_binding"];

const DPOP_FIELDS: [&str; 6] = [
    "mode",
    "algorithms",
    "max_age",
    "clock_skew_seconds",
    "external_url_base",
    "replay_cache_size",
];

/// The default and the bounds of how old a proof may be: RFC 9449 §11.1 asks for a short window.
const DEFAULT_PROOF_MAX_AGE_SECONDS: u64 = 60;
const MIN_PROOF_MAX_AGE: Duration = Duration::from_secs(1);
const MAX_PROOF_MAX_AGE: Duration = Duration::from_secs(300);
/// Proofs are made by clients whose clocks are close to right; a token's skew (60 s) is too wide
/// for a proof that lives a minute.
const DEFAULT_PROOF_CLOCK_SKEW_SECONDS: u64 = 5;
const MAX_PROOF_CLOCK_SKEW_SECONDS: u64 = 300;
/// Proof ids remembered per Envoy unless configured otherwise, and the bounds.
pub const DEFAULT_REPLAY_CACHE_SIZE: u64 = 32_768;
const MIN_REPLAY_CACHE_SIZE: u64 = 4096;
const MAX_REPLAY_CACHE_SIZE: u64 = 1_048_576;

/// Whether a binding is demanded of every token, or checked only on tokens that carry one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingMode {
    /// Every token must be bound (and, for DPoP, sent with the `DPoP` scheme).
    Required,
    /// Bound tokens are checked; unbound tokens sent as `Bearer` pass as before.
    Allowed,
}

/// A provider's DPoP settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopPolicy {
    /// `required` or `allowed`.
    pub mode: BindingMode,
    /// Algorithms a proof may be signed with; every one the filter knows is asymmetric.
    pub algorithms: Vec<Alg>,
    /// How old a proof's `iat` may be, in seconds.
    pub max_age_seconds: u64,
    /// Allowed clock difference for a proof's `iat`, either way, in seconds.
    pub clock_skew_seconds: u64,
    /// Scheme and authority (and a path prefix) clients use, when a proxy in front of Envoy
    /// changes them: `https://models.example.com`. `None` builds `htu` from the request.
    pub external_url_base: Option<String>,
    /// How many proof ids one Envoy remembers at most.
    pub replay_cache_size: u64,
}

/// A provider's sender-constraint settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SenderBinding {
    /// DPoP, when configured.
    pub dpop: Option<DpopPolicy>,
    /// Certificate binding, when configured.
    pub mtls: Option<BindingMode>,
}

/// Reads `dpop` and `mtls_binding` of one provider.
pub(crate) fn compile(object: &Object<'_>) -> Result<SenderBinding, ConfigError> {
    let dpop = object
        .get("dpop")
        .map(|node| compile_dpop(&node))
        .transpose()?;
    let mtls = object
        .get("mtls_binding")
        .map(|node| mode(&node))
        .transpose()?;
    Ok(SenderBinding { dpop, mtls })
}

fn mode(node: &Node<'_>) -> Result<BindingMode, ConfigError> {
    match node.string()? {
        "required" => Ok(BindingMode::Required),
        "allowed" => Ok(BindingMode::Allowed),
        other => Err(node.error(format!(
            "unknown mode {}; expected \"required\" or \"allowed\"",
            quoted(other)
        ))),
    }
}

fn compile_dpop(node: &Node<'_>) -> Result<DpopPolicy, ConfigError> {
    let object = node.object(&DPOP_FIELDS)?;
    let mode = mode(&object.required("mode")?)?;
    let algorithms = algorithm_list(
        &object,
        "algorithms",
        "proof algorithm",
        "supported (all asymmetric)",
    )?;
    let max_age_seconds = match object.get("max_age") {
        None => DEFAULT_PROOF_MAX_AGE_SECONDS,
        Some(node) => {
            let age = node.duration()?;
            if !(MIN_PROOF_MAX_AGE..=MAX_PROOF_MAX_AGE).contains(&age) {
                return Err(node.error("must be between \"1s\" and \"300s\""));
            }
            age.as_secs()
        }
    };
    let clock_skew_seconds = match object.get("clock_skew_seconds") {
        None => DEFAULT_PROOF_CLOCK_SKEW_SECONDS,
        Some(node) => {
            let seconds = node.unsigned()?;
            if seconds > MAX_PROOF_CLOCK_SKEW_SECONDS {
                return Err(node.error(format!("must be at most {MAX_PROOF_CLOCK_SKEW_SECONDS}")));
            }
            seconds
        }
    };
    let external_url_base = object
        .get("external_url_base")
        .map(|node| external_url_base(&node))
        .transpose()?;
    let replay_cache_size = match object.get("replay_cache_size") {
        None => DEFAULT_REPLAY_CACHE_SIZE,
        Some(node) => {
            let size = node.unsigned()?;
            if !(MIN_REPLAY_CACHE_SIZE..=MAX_REPLAY_CACHE_SIZE).contains(&size) {
                return Err(node.error(format!(
                    "must be between {MIN_REPLAY_CACHE_SIZE} and {MAX_REPLAY_CACHE_SIZE}"
                )));
            }
            size
        }
    };
    Ok(DpopPolicy {
        mode,
        algorithms,
        max_age_seconds,
        clock_skew_seconds,
        external_url_base,
        replay_cache_size,
    })
}

/// `scheme://authority[/prefix]`, without a trailing slash, query or fragment.
fn external_url_base(node: &Node<'_>) -> Result<String, ConfigError> {
    let text = node.non_empty_string()?;
    let url = uri::parse_http_url(text).map_err(|message| node.error(message))?;
    if url.query.is_some() {
        return Err(node.error("must not have a query"));
    }
    let scheme = text.split_once("://").map(|(s, _)| s).unwrap_or_default();
    let prefix = url.path.trim_end_matches('/');
    Ok(format!(
        "{}://{}{prefix}",
        scheme.to_ascii_lowercase(),
        url.authority
    ))
}

/// The challenges a refusal carries: `Bearer` while some provider takes Bearer tokens, `DPoP`
/// with the algorithms proofs may use while some provider takes DPoP (RFC 9449 §7.1). Both
/// appear where both are accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeSchemes {
    /// Some provider accepts a token without DPoP.
    pub bearer: bool,
    /// The `algs` of the DPoP challenge (space-separated), when some provider accepts DPoP.
    pub dpop_algs: Option<String>,
}

impl Default for ChallengeSchemes {
    fn default() -> ChallengeSchemes {
        ChallengeSchemes {
            bearer: true,
            dpop_algs: None,
        }
    }
}

/// The challenge schemes of a configuration whose providers have these DPoP policies.
pub(crate) fn challenge_schemes<'p>(
    policies: impl Iterator<Item = Option<&'p DpopPolicy>> + Clone,
) -> ChallengeSchemes {
    let bearer = policies
        .clone()
        .any(|dpop| dpop.is_none_or(|dpop| dpop.mode == BindingMode::Allowed));
    let mut algorithms: Vec<Alg> = policies
        .flatten()
        .flat_map(|dpop| dpop.algorithms.iter().copied())
        .collect();
    algorithms.sort_unstable();
    algorithms.dedup();
    let dpop_algs = (!algorithms.is_empty()).then(|| {
        algorithms
            .iter()
            .map(|alg| alg.name())
            .collect::<Vec<_>>()
            .join(" ")
    });
    ChallengeSchemes { bearer, dpop_algs }
}
