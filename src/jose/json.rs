//! Strict JSON: like serde_json, but an object that repeats a member name is an error.
//!
//! RFC 7515 §4 and RFC 7519 §4 require a JOSE header or claims set with a repeated member name to
//! be rejected, or else parsers disagree on which value counts (one takes the first, another the
//! last). serde_json silently keeps the last one, so objects are collected here by a visitor that
//! refuses a name it has already seen.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a document is not strict JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrictJsonError {
    /// An object repeats this member name.
    DuplicateName(String),
    /// Anything else serde_json refuses: syntax, trailing data, nesting deeper than 128, ...
    Syntax(String),
}

impl fmt::Display for StrictJsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StrictJsonError::DuplicateName(name) => {
                write!(f, "an object repeats the member name {name:?}")
            }
            StrictJsonError::Syntax(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for StrictJsonError {}

/// Parses one JSON document; any object at any depth that repeats a member name is an error.
/// serde_json's recursion limit (128 levels) stays in force, so deep nesting cannot overflow the
/// stack.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, StrictJsonError> {
    // serde errors carry only a message, so the repeated name travels beside the parse instead.
    let duplicate = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = StrictSeed {
        duplicate: &duplicate,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));
    match parsed {
        Ok(value) => Ok(value),
        Err(error) => match duplicate.into_inner() {
            Some(name) => Err(StrictJsonError::DuplicateName(name)),
            None => Err(StrictJsonError::Syntax(error.to_string())),
        },
    }
}

/// Deserializes one value, recording the first repeated member name in `duplicate`.
#[derive(Clone, Copy)]
struct StrictSeed<'s> {
    duplicate: &'s RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for StrictSeed<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            // Names compare after unescaping, so "a" and "\u0061" are the same member.
            if object.contains_key(&name) {
                let message = format!("duplicate member name {name:?}");
                *self.duplicate.borrow_mut() = Some(name);
                return Err(de::Error::custom(message));
            }
            let value = map.next_value_seed(self)?;
            object.insert(name, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    // A document without repeated names parses to the same value serde_json gives.
    #[test]
    fn parses_like_serde_json() {
        let text =
            br#"{"a":1,"b":[true,null,-2,3.5,"x"],"c":{"d":{"e":"f"}},"g":18446744073709551615}"#;
        assert_eq!(
            parse_strict(text).unwrap(),
            serde_json::from_slice::<Value>(text).unwrap()
        );
    }

    // A repeated name at the top level is reported with the name.
    #[test]
    fn duplicate_at_top_level() {
        assert_eq!(
            parse_strict(br#"{"alg":"RS256","alg":"none"}"#),
            Err(StrictJsonError::DuplicateName("alg".into()))
        );
    }

    // A repeated name deep inside arrays and objects is found too.
    #[test]
    fn duplicate_nested() {
        assert_eq!(
            parse_strict(br#"{"a":[1,{"b":{"c":1,"c":2}}]}"#),
            Err(StrictJsonError::DuplicateName("c".into()))
        );
    }

    // Names are compared after unescaping: "\u0061" repeats "a".
    #[test]
    fn duplicate_through_escape() {
        assert_eq!(
            parse_strict(br#"{"a":1,"\u0061":2}"#),
            Err(StrictJsonError::DuplicateName("a".into()))
        );
    }

    // The same name in two different objects is not a repetition.
    #[test]
    fn same_name_in_sibling_objects_is_fine() {
        assert_eq!(
            parse_strict(br#"[{"a":1},{"a":2}]"#).unwrap(),
            json!([{"a":1},{"a":2}])
        );
    }

    // Syntax errors, trailing data and non-UTF-8 bytes are Syntax errors.
    #[test]
    fn syntax_errors() {
        for bad in [
            &b"{"[..],
            b"{\"a\":}",
            b"{} {}",
            b"{}x",
            b"",
            b"{\"a\":\"\xff\"}",
            b"{'a':1}",
            b"[1,]",
            b"NaN",
        ] {
            assert!(
                matches!(parse_strict(bad), Err(StrictJsonError::Syntax(_))),
                "{bad:?} should be a syntax error"
            );
        }
    }

    // Nesting is bounded by serde_json's limit of 128, so deep input fails instead of overflowing.
    #[test]
    fn nesting_is_bounded() {
        let ok = format!("{}{}", "[".repeat(127), "]".repeat(127));
        assert!(parse_strict(ok.as_bytes()).is_ok());
        let deep = format!("{}{}", "[".repeat(129), "]".repeat(129));
        assert!(matches!(
            parse_strict(deep.as_bytes()),
            Err(StrictJsonError::Syntax(_))
        ));
        let very_deep = "[".repeat(100_000);
        assert!(matches!(
            parse_strict(very_deep.as_bytes()),
            Err(StrictJsonError::Syntax(_))
        ));
    }

    // Surrounding whitespace is allowed, as in serde_json.
    #[test]
    fn whitespace_is_allowed() {
        assert_eq!(parse_strict(b" \n{ \"a\" : 1 }\t").unwrap(), json!({"a":1}));
    }
}
