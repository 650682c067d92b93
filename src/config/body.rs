//! How the filter reads request bodies that name their model: `openai_prefixes`,
//! `max_body_bytes` and `model_header`, top-level fields.

use super::node::{quoted, ConfigError, Object};
use super::provider::header_name;

/// Top-level fields this module reads.
pub const FIELDS: [&str; 3] = ["openai_prefixes", "max_body_bytes", "model_header"];

/// Where KServe serves the OpenAI-compatible API, and where deployments that rewrite it do.
const DEFAULT_OPENAI_PREFIXES: [&str; 2] = ["/openai/v1/", "/v1/"];
/// How much of a body is read for its model, unless configured otherwise: an LLM request with a
/// long conversation before `model` fits.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
const MIN_MAX_BODY_BYTES: u64 = 1024;
const MAX_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// The body-reading settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodySettings {
    /// Path prefixes (each starting and ending with `/`) under which the OpenAI-compatible
    /// endpoints are recognised.
    pub openai_prefixes: Vec<String>,
    /// How many bytes are read, at most, before the model is found.
    pub max_body_bytes: u64,
    /// A header set to the model name read from the body, for routing and logs; client copies
    /// are removed from every request.
    pub model_header: Option<String>,
}

impl Default for BodySettings {
    fn default() -> BodySettings {
        BodySettings {
            openai_prefixes: DEFAULT_OPENAI_PREFIXES.map(str::to_owned).to_vec(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            model_header: None,
        }
    }
}

/// Reads the body-reading fields of the top-level object.
pub(crate) fn compile(top: &Object<'_>) -> Result<BodySettings, ConfigError> {
    let mut settings = BodySettings::default();
    if let Some(list) = top.get("openai_prefixes") {
        let mut prefixes: Vec<String> = Vec::new();
        for item in list.array()? {
            let prefix = item.non_empty_string()?;
            if !prefix.starts_with('/') || !prefix.ends_with('/') || prefix.contains(['?', '#']) {
                return Err(item.error(format!(
                    "{} is not a path prefix; expected one that starts and ends with \"/\", like \
                     \"/openai/v1/\"",
                    quoted(prefix)
                )));
            }
            if prefixes.iter().any(|p| p == prefix) {
                return Err(item.error("is listed twice"));
            }
            prefixes.push(prefix.to_owned());
        }
        settings.openai_prefixes = prefixes;
    }
    if let Some(node) = top.get("max_body_bytes") {
        let bytes = node.unsigned()?;
        if !(MIN_MAX_BODY_BYTES..=MAX_MAX_BODY_BYTES).contains(&bytes) {
            return Err(node.error(format!(
                "must be between {MIN_MAX_BODY_BYTES} and {MAX_MAX_BODY_BYTES}"
            )));
        }
        settings.max_body_bytes = bytes;
    }
    if let Some(node) = top.get("model_header") {
        settings.model_header = Some(header_name(&node)?);
    }
    Ok(settings)
}
