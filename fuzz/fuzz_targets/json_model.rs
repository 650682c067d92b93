//! The JSON model scanner against serde_json's full parse: whenever the scanner names a model,
//! a full parser that reads the body as a JSON object sees that same model as the one top-level
//! `model` member; and whenever a full parse finds exactly one top-level `model` string, the
//! scanner names it. The body is fed in pieces whose sizes come from the input too.

#![no_main]

use std::fmt;

use kserve_auth_filter::request::json_scan::{JsonBodyError, JsonModelScanner, MAX_MODEL_BYTES};
use libfuzzer_sys::fuzz_target;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

/// The top-level `model` members of an object, as a full parser reads them, in order.
struct TopLevelModels(Vec<serde_json::Value>);

impl<'de> Deserialize<'de> for TopLevelModels {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = TopLevelModels;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut models = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "model" {
                        models.push(map.next_value::<serde_json::Value>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(TopLevelModels(models))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&piece, body)) = data.split_first() else {
        return;
    };
    let piece = usize::from(piece % 16) + 1;
    let mut scanner = JsonModelScanner::new();
    let mut fed = Ok(());
    for chunk in body.chunks(piece) {
        fed = scanner.feed(chunk);
        if fed.is_err() {
            break;
        }
    }
    let scanned = fed.and_then(|()| scanner.finish().map(str::to_owned));
    // serde_json does not skip a byte order mark; the model server's parser does.
    let text = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    let full = serde_json::from_slice::<TopLevelModels>(text);
    match (&scanned, &full) {
        (Ok(model), Ok(TopLevelModels(models))) => {
            assert_eq!(models.len(), 1, "scanner named {model:?}, full parse {models:?}");
            assert_eq!(models[0].as_str(), Some(model.as_str()));
        }
        (Ok(_), Err(_)) => {} // the model server refuses what no full parser reads
        (Err(error), Ok(TopLevelModels(models))) => {
            if let [serde_json::Value::String(model)] = models.as_slice() {
                assert!(
                    *error == JsonBodyError::ModelNotAString && model.len() > MAX_MODEL_BYTES,
                    "full parse found model {model:?}, scanner said {error:?}"
                );
            }
        }
        (Err(_), Err(_)) => {}
    }
});
