//! `GET <openai prefix>models`, the OpenAI-compatible model list: it passes through to the model
//! server, and the filter keeps in its answer only the models the caller's token may use under
//! the rules, so a caller sees its own models and no one else's.
//!
//! A model is listed when a chat completion naming it, sent with the same headers, would be let
//! through: its rule's requirement met by the request's tokens (from the verified-token cache;
//! sender bindings were checked on the list request itself) and its claim conditions held.

use serde_json::Value;

use super::clock::Now;
use super::requirement::{claims_holder, Evaluation, Verdict};
use super::route::{self, Routed};
use super::token_cache::TokenCache;
use crate::config::Config;
use crate::crypto::verify::SignatureCheck;
use crate::jose::json;
use crate::keys::shared::SharedData;
use crate::keys::store::KeyStore;
use crate::request::body::OPENAI_ENDPOINTS;
use crate::request::Request;

/// Whether `path` (normalized, decoded) is the model list of the OpenAI-compatible API, and the
/// request one whose answer the filter narrows: a `GET`, under a configured prefix, with model
/// rules to narrow by.
pub fn is_model_list(config: &Config, request: &Request, path: &str) -> bool {
    request.method == "GET"
        && config.has_model_rules
        && config
            .body
            .openai_prefixes
            .iter()
            .any(|prefix| path.strip_prefix(prefix.as_str()) == Some("models"))
}

/// The tools a model list is judged with.
pub struct Judge<'a> {
    pub config: &'a Config,
    pub keys: &'a mut KeyStore,
    pub tokens: &'a mut [TokenCache],
    pub crypto: &'a dyn SignatureCheck,
    pub shared: &'a mut dyn SharedData,
    pub now: Now,
}

/// The model list `body` with only the models `request` may use: an OpenAI list
/// (`{"object": "list", "data": [{"id": …}, …]}`), or KServe's V1 list (`{"models": [names]}`,
/// the answer to `GET /v1/models`, which the default `/v1/` prefix also reaches). `None` when the
/// body is neither: the caller then gets an empty list, never the unfiltered original.
pub fn narrow(judge: &mut Judge<'_>, request: &Request, body: &[u8]) -> Option<String> {
    // The strict parser the configuration and key sets use: one JSON parser in the module.
    let mut list: Value = json::parse_strict(body).ok()?;
    let (entries, name_of): (&mut Vec<Value>, NameOf) = if list.get("data").is_some() {
        let entries = list.get_mut("data")?.as_array_mut()?;
        (entries, |entry| entry.get("id").and_then(Value::as_str))
    } else {
        let entries = list.get_mut("models")?.as_array_mut()?;
        (entries, Value::as_str)
    };
    let mut kept = Vec::with_capacity(entries.len());
    for entry in entries.drain(..) {
        if name_of(&entry).is_some_and(|name| may_use(judge, request, name)) {
            kept.push(entry);
        }
    }
    *entries = kept;
    Some(list.to_string())
}

/// How a list's entry names its model.
type NameOf = fn(&Value) -> Option<&str>;

/// An empty model list, for a caller whose list could not be narrowed.
pub const EMPTY_LIST: &str = r#"{"object":"list","data":[]}"#;

/// Whether a chat completion naming `model`, with `request`'s headers, would be let through.
fn may_use(judge: &mut Judge<'_>, request: &Request, model: &str) -> bool {
    let Some(prefix) = judge.config.body.openai_prefixes.first() else {
        return false;
    };
    let Some(endpoint) = OPENAI_ENDPOINTS.first() else {
        return false;
    };
    let path = format!("{prefix}{endpoint}");
    let mut chat = request.clone();
    chat.method = "POST".into();
    chat.body_model = Some(model.to_owned());
    let Routed::Rule(rule) = route::find_rule(judge.config, &chat, &path) else {
        return false;
    };
    let Some(requirement) = &rule.requirement else {
        return true;
    };
    let mut evaluation = Evaluation {
        config: judge.config,
        request: &chat,
        upstream_path: &path,
        keys: judge.keys,
        tokens: judge.tokens,
        crypto: judge.crypto,
        shared: judge.shared,
        now: judge.now,
        retry_after_seconds: 1,
        check_bindings: false,
    };
    match evaluation.requirement(requirement) {
        Verdict::Allowed(tokens) => claims_holder(rule, &tokens).is_ok(),
        Verdict::Failed(_) | Verdict::Wait(_) => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::crypto::verify::PureRustCrypto;
    use crate::keys::shared::MemorySharedData;
    use serde_json::json;

    fn config(rules: Value) -> Config {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let pair = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([1; 32]));
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(*pair.pk)});
        let jwks = json!({"keys": [jwk]}).to_string();
        Config::from_json(
            json!({"providers": {"p": {"issuer": "https://i", "audiences": ["a"],
                                       "local_jwks": {"inline_string": jwks}}},
                   "rules": rules})
            .to_string()
            .as_bytes(),
        )
        .unwrap()
    }

    fn get(path: &str) -> Request {
        Request {
            method: "GET".into(),
            path: path.into(),
            authority: "models.test".into(),
            ..Request::default()
        }
    }

    // Only a GET of `<prefix>models`, and only with model rules to narrow by.
    #[test]
    fn which_answers_are_narrowed() {
        let with_models = config(json!([
            {"match": {"model": "llama-a"}},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}
        ]));
        assert!(is_model_list(
            &with_models,
            &get("/openai/v1/models"),
            "/openai/v1/models"
        ));
        assert!(is_model_list(
            &with_models,
            &get("/v1/models"),
            "/v1/models"
        ));
        assert!(!is_model_list(
            &with_models,
            &get("/v1/models/m"),
            "/v1/models/m"
        ));
        let mut post = get("/v1/models");
        post.method = "POST".into();
        assert!(!is_model_list(&with_models, &post, "/v1/models"));
        let without = config(json!([{"match": {"prefix": "/"}}]));
        assert!(!is_model_list(&without, &get("/v1/models"), "/v1/models"));
    }

    // Public model rules list their models to anyone; others need what their rule needs; an
    // answer that is not a list is not narrowed (the caller gets an empty one).
    #[test]
    fn narrowing() {
        let config = config(json!([
            {"match": {"model": "open-*"}},
            {"match": {"model": "llama-a"}, "requires": {"provider_name": "p"}},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "p"}}
        ]));
        let mut keys = KeyStore::new(&config).unwrap();
        let mut tokens = vec![TokenCache::new(10)];
        let mut shared = MemorySharedData::default();
        let mut judge = Judge {
            config: &config,
            keys: &mut keys,
            tokens: &mut tokens,
            crypto: &PureRustCrypto,
            shared: &mut shared,
            now: Now {
                ms: 1_700_000_000_000,
            },
        };
        let list = json!({"object": "list", "data": [
            {"id": "open-small"}, {"id": "llama-a"}, {"id": 7}, {"id": "other"}]});
        let narrowed = narrow(&mut judge, &get("/v1/models"), list.to_string().as_bytes()).unwrap();
        let narrowed: Value = serde_json::from_str(&narrowed).unwrap();
        assert_eq!(
            narrowed,
            json!({"object": "list", "data": [{"id": "open-small"}]})
        );
        // KServe's V1 list.
        let v1 = json!({"models": ["open-small", "llama-a", 7]});
        let narrowed = narrow(&mut judge, &get("/v1/models"), v1.to_string().as_bytes()).unwrap();
        let narrowed: Value = serde_json::from_str(&narrowed).unwrap();
        assert_eq!(narrowed, json!({"models": ["open-small"]}));
        assert_eq!(narrow(&mut judge, &get("/v1/models"), b"[1, 2]"), None);
        assert_eq!(
            narrow(&mut judge, &get("/v1/models"), b"{\"data\": 1}"),
            None
        );
    }
}
