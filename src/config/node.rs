//! The configuration's JSON as it is read: every value with the dotted path it was found at, so
//! that every error names its field, and the readers of each JSON type.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::jose::alg::Alg;

/// A configuration that cannot be used, with the field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the offending field, e.g. `providers.keycloak.audiences`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid configuration: {}: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    #[inline(never)]
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The field name of errors about the document as a whole.
pub(crate) const ROOT: &str = "(root)";
/// The largest `google.protobuf.Duration` (about 10,000 years), so later time arithmetic stays
/// far from overflow.
const MAX_DURATION_SECONDS: u64 = 315_576_000_000;
/// A JSON value and the dotted path it was found at, so every error can name its field.
pub(crate) struct Node<'v> {
    pub(crate) value: &'v Value,
    pub(crate) path: String,
}

/// A JSON object whose member names were checked.
pub(crate) struct Object<'v> {
    pub(crate) map: &'v Map<String, Value>,
    pub(crate) path: String,
}

#[inline(never)]
pub(crate) fn child_path(parent: &str, key: &str) -> String {
    // Keys come from the user: one that would not read as a plain name (empty, dotted, long,
    // with control characters) is written quoted, so the path stays unambiguous and safe to log.
    let plain = !key.is_empty()
        && key.len() <= 64
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (parent == ROOT, plain) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{parent}.{key}"),
        (true, false) => format!("[{}]", quoted(key)),
        (false, false) => format!("{parent}[{}]", quoted(key)),
    }
}

/// A user-given string for an error message: escaped and cut short.
pub(crate) fn quoted(text: &str) -> String {
    const LIMIT: usize = 64;
    match text.char_indices().nth(LIMIT) {
        Some((end, _)) => format!("{:?}...", text.get(..end).unwrap_or_default()),
        None => format!("{text:?}"),
    }
}

// Configuration is parsed once per configure, and these helpers are called from about 200 places:
// kept out of line (`#[inline(never)]` here and below), they save 9 KB of the wasm.
impl<'v> Node<'v> {
    #[inline(never)]
    pub(crate) fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::new(self.path.clone(), message)
    }

    #[inline(never)]
    pub(crate) fn wrong_type(&self, expected: &str) -> ConfigError {
        let found = match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        };
        self.error(format!("expected {expected}, found {found}"))
    }

    /// An object with any member names.
    #[inline(never)]
    pub(crate) fn members(&self) -> Result<Object<'v>, ConfigError> {
        match self.value {
            Value::Object(map) => Ok(Object {
                map,
                path: self.path.clone(),
            }),
            _ => Err(self.wrong_type("an object")),
        }
    }

    /// An object whose member names are all in `fields`.
    #[inline(never)]
    pub(crate) fn object(&self, fields: &[&str]) -> Result<Object<'v>, ConfigError> {
        let object = self.members()?;
        if let Some(unknown) = object.map.keys().find(|k| !fields.contains(&k.as_str())) {
            let message = if fields.is_empty() {
                "unknown field; expected an empty object".to_owned()
            } else {
                format!("unknown field; expected one of: {}", fields.join(", "))
            };
            return Err(ConfigError::new(child_path(&self.path, unknown), message));
        }
        Ok(object)
    }

    #[inline(never)]
    pub(crate) fn string(&self) -> Result<&'v str, ConfigError> {
        match self.value {
            Value::String(text) => Ok(text),
            _ => Err(self.wrong_type("a string")),
        }
    }

    #[inline(never)]
    pub(crate) fn non_empty_string(&self) -> Result<&'v str, ConfigError> {
        let text = self.string()?;
        if text.is_empty() {
            return Err(self.error("must not be empty"));
        }
        Ok(text)
    }

    #[inline(never)]
    pub(crate) fn boolean(&self) -> Result<bool, ConfigError> {
        match self.value {
            Value::Bool(flag) => Ok(*flag),
            _ => Err(self.wrong_type("true or false")),
        }
    }

    #[inline(never)]
    pub(crate) fn unsigned(&self) -> Result<u64, ConfigError> {
        match self.value {
            Value::Number(number) => number
                .as_u64()
                .ok_or_else(|| self.error("expected a non-negative integer")),
            _ => Err(self.wrong_type("a non-negative integer")),
        }
    }

    #[inline(never)]
    pub(crate) fn array(&self) -> Result<Vec<Node<'v>>, ConfigError> {
        match self.value {
            Value::Array(items) => Ok(items
                .iter()
                .enumerate()
                .map(|(index, value)| Node {
                    value,
                    path: format!("{}[{index}]", self.path),
                })
                .collect()),
            _ => Err(self.wrong_type("an array")),
        }
    }

    #[inline(never)]
    pub(crate) fn non_empty_array(&self) -> Result<Vec<Node<'v>>, ConfigError> {
        let items = self.array()?;
        if items.is_empty() {
            return Err(self.error("must not be empty"));
        }
        Ok(items)
    }

    #[inline(never)]
    pub(crate) fn duration(&self) -> Result<Duration, ConfigError> {
        match self.value {
            Value::String(text) => parse_duration(text).map_err(|message| self.error(message)),
            _ => Err(self.wrong_type("a duration string like \"5s\"")),
        }
    }
}

impl<'v> Object<'v> {
    #[inline(never)]
    pub(crate) fn get(&self, key: &str) -> Option<Node<'v>> {
        self.map.get(key).map(|value| Node {
            value,
            path: child_path(&self.path, key),
        })
    }

    #[inline(never)]
    pub(crate) fn required(&self, key: &str) -> Result<Node<'v>, ConfigError> {
        self.get(key).ok_or_else(|| {
            ConfigError::new(child_path(&self.path, key), "required field is missing")
        })
    }

    #[inline(never)]
    pub(crate) fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::new(self.path.clone(), message)
    }
}

/// Parses a protobuf JSON duration: decimal seconds with an `s` suffix ("5s", "0.250s").
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let unparsable = || {
        format!(
            "unparsable duration {}; expected seconds like \"5s\" or \"0.250s\"",
            quoted(text)
        )
    };
    let number = text.strip_suffix('s').ok_or_else(unparsable)?;
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (number, None),
    };
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) {
        return Err(unparsable());
    }
    let nanos = match fraction {
        None => 0,
        Some(fraction) if digits(fraction) && fraction.len() <= 9 => format!("{fraction:0<9}")
            .parse::<u32>()
            .map_err(|_| unparsable())?,
        Some(_) => return Err(unparsable()),
    };
    let seconds = whole
        .parse::<u64>()
        .ok()
        .filter(|seconds| *seconds <= MAX_DURATION_SECONDS)
        .ok_or_else(|| {
            format!(
                "duration {} is too long; the longest is \"{MAX_DURATION_SECONDS}s\"",
                quoted(text)
            )
        })?;
    Ok(Duration::new(seconds, nanos))
}

/// A list of JWS algorithm names at `field` of `object`, each once, in the order given; every
/// algorithm the filter verifies when the field is absent. An unknown name is an error naming the
/// entry: "unsupported `noun` …; `supported_label`: …".
pub(crate) fn algorithm_list(
    object: &Object<'_>,
    field: &str,
    noun: &str,
    supported_label: &str,
) -> Result<Vec<Alg>, ConfigError> {
    let Some(list) = object.get(field) else {
        return Ok(Alg::ALL.to_vec());
    };
    let mut algorithms = Vec::new();
    for item in list.non_empty_array()? {
        let name = item.string()?;
        let alg = Alg::from_name(name).ok_or_else(|| {
            let supported: Vec<&str> = Alg::ALL.iter().map(|a| a.name()).collect();
            item.error(format!(
                "unsupported {noun} {}; {supported_label}: {}",
                quoted(name),
                supported.join(", ")
            ))
        })?;
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    Ok(algorithms)
}
