//! `kserve-auth explain`: the filter's decision on one request, step by step, and its answer.
//! The answer is the filter's own (`decision::decide`); the steps before it re-run the checks the
//! decision makes, each with its verdict, so an operator sees which one refused the token. The
//! token itself is never printed.

use std::collections::HashMap;

use serde_json::{json, Value};

use kserve_auth_filter::config::{Config, Requirement};
use kserve_auth_filter::crypto::verify::{check_signature, PureRustCrypto};
use kserve_auth_filter::decision::route::{self, Routed};
use kserve_auth_filter::decision::token_cache::TokenCache;
use kserve_auth_filter::decision::{self, Decision, Now, Recipient};
use kserve_auth_filter::failure::Failure;
use kserve_auth_filter::jose::token;
use kserve_auth_filter::keys::shared::{SharedData, WriteError};
use kserve_auth_filter::keys::store::{KeyStore, Lookup};
use kserve_auth_filter::policy::{identity, token_policy};
use kserve_auth_filter::request::body::BodyScanner;
use kserve_auth_filter::request::extract::find_token;
use kserve_auth_filter::request::{path, Request};

/// What to explain.
pub struct Question {
    /// The plugin configuration, JSON text.
    pub configuration: String,
    /// A JWKS (JSON text) standing in for every provider's keys; without it, only inline keys
    /// are known.
    pub jwks: Option<String>,
    pub token: String,
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// The request body, for rules that depend on the model it names.
    pub body: Option<Vec<u8>>,
    /// Seconds since the epoch.
    pub at: u64,
}

/// One step: what was checked, and its verdict.
pub struct Step {
    pub check: String,
    pub verdict: String,
}

/// The steps and the final answer.
pub struct Explanation {
    pub steps: Vec<Step>,
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Explanation {
    /// As JSON, for `--json`.
    pub fn to_json(&self) -> Value {
        json!({
            "steps": self.steps.iter()
                .map(|step| json!({"check": step.check, "verdict": step.verdict}))
                .collect::<Vec<_>>(),
            "answer": {
                "status": self.status,
                "headers": self.headers.iter()
                    .map(|(name, value)| json!([name, value]))
                    .collect::<Vec<_>>(),
                "body": self.body,
            },
        })
    }

    /// As lines of text.
    pub fn to_text(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .steps
            .iter()
            .map(|step| format!("{:<44} {}", step.check, step.verdict))
            .collect();
        lines.push(format!("answer: {}", self.status));
        for (name, value) in &self.headers {
            lines.push(format!("  {name}: {value}"));
        }
        if !self.body.is_empty() {
            lines.push(format!("  {}", self.body));
        }
        lines
    }
}

/// Shared data for one decision: a map, as one VM would see it.
#[derive(Default)]
struct LocalSharedData(HashMap<String, (Vec<u8>, u32)>);

impl SharedData for LocalSharedData {
    fn shared_get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String> {
        Ok(match self.0.get(key) {
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        })
    }

    fn shared_set(&mut self, key: &str, value: &[u8], _cas: Option<u32>) -> Result<(), WriteError> {
        let cas = self.0.get(key).map_or(1, |(_, cas)| cas + 1);
        self.0.insert(key.to_owned(), (value.to_vec(), cas));
        Ok(())
    }
}

/// The configuration with `jwks` as every provider's inline key set.
fn with_keys(configuration: &str, jwks: &str) -> Result<String, String> {
    let mut config: Value =
        serde_json::from_str(configuration).map_err(|e| format!("configuration: {e}"))?;
    let providers = config
        .get_mut("providers")
        .and_then(Value::as_object_mut)
        .ok_or("configuration: no providers object")?;
    for provider in providers.values_mut() {
        if let Some(provider) = provider.as_object_mut() {
            for source in ["remote_jwks", "oidc_discovery", "local_jwks"] {
                provider.remove(source);
            }
            provider.insert("local_jwks".into(), json!({"inline_string": jwks}));
        }
    }
    Ok(config.to_string())
}

/// The request `question` describes, as the filter would see it.
fn request(question: &Question) -> Result<Request, String> {
    let (scheme, rest) = question
        .url
        .split_once("://")
        .ok_or("--url: expected scheme://host/path")?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, "/"),
    };
    let mut headers = vec![
        (":method".to_owned(), question.method.clone()),
        (":scheme".to_owned(), scheme.to_owned()),
        (":path".to_owned(), path.to_owned()),
        (":authority".to_owned(), authority.to_owned()),
    ];
    let sends_token = question
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("authorization"));
    if !sends_token && !question.token.is_empty() {
        headers.push(("authorization".into(), format!("Bearer {}", question.token)));
    }
    for (name, value) in &question.headers {
        let value = value.replace("$TOKEN", &question.token);
        headers.push((name.to_ascii_lowercase(), value));
    }
    Ok(Request {
        method: question.method.clone(),
        path: path.to_owned(),
        authority: authority.to_owned(),
        headers,
        ..Request::default()
    })
}

fn providers_of(requirement: &Requirement, all: usize, out: &mut Vec<usize>) {
    match requirement {
        Requirement::Provider(id) => out.push(*id),
        Requirement::Any(children) | Requirement::All(children) => {
            for child in children {
                providers_of(child, all, out);
            }
        }
        Requirement::AllowMissing | Requirement::AllowMissingOrFailed => out.extend(0..all),
    }
}

fn verdict<E: std::fmt::Debug>(result: Result<(), E>, describe: impl Fn(E) -> String) -> String {
    match result {
        Ok(()) => "ok".to_owned(),
        Err(error) => format!("refused: {}", describe(error)),
    }
}

/// Explains the decision on `question`.
pub fn explain(question: &Question) -> Result<Explanation, String> {
    let text = match &question.jwks {
        Some(jwks) => with_keys(&question.configuration, jwks)?,
        None => question.configuration.clone(),
    };
    let config = Config::from_json(text.as_bytes()).map_err(|e| e.to_string())?;
    let request = request(question)?;
    let now = Now {
        ms: question.at.saturating_mul(1000),
    };
    let mut keys = KeyStore::new(&config).map_err(|e| format!("{:?}", e.error))?;
    let mut steps = Vec::new();
    let mut step = |check: String, verdict: String| steps.push(Step { check, verdict });

    step(
        "request".into(),
        format!(
            "{} {} (host {})",
            request.method, request.path, request.authority
        ),
    );
    step(
        "clock".into(),
        format!("{} (seconds since the epoch)", question.at),
    );
    if let Ok(normal) = path::normalize(&request.path) {
        match route::find_rule(&config, &request, &normal.decoded) {
            Routed::Rule(rule) => {
                let index = config
                    .rules
                    .iter()
                    .position(|r| std::ptr::eq(r, rule))
                    .unwrap_or_default();
                step(
                    "rule".into(),
                    format!("rules[{index}] ({:?})", rule.path_match),
                );
                let mut ids = Vec::new();
                if let Some(requirement) = &rule.requirement {
                    providers_of(requirement, config.providers.len(), &mut ids);
                } else {
                    step("requirement".into(), "none: the rule is public".into());
                }
                ids.dedup();
                for id in ids {
                    let Some(provider) = config.providers.get(id) else {
                        continue;
                    };
                    let name = &provider.name;
                    let found = match find_token(&provider.token_sources, &request) {
                        Ok(Some(found)) => found,
                        Ok(None) => {
                            step(format!("providers.{name}: token"), "none found".into());
                            continue;
                        }
                        Err(failure) => {
                            step(
                                format!("providers.{name}: token"),
                                format!("refused: {}", failure.description()),
                            );
                            continue;
                        }
                    };
                    step(format!("providers.{name}: token"), "found".into());
                    let parsed = match token::parse(&found.value) {
                        Ok(parsed) => parsed,
                        Err(failure) => {
                            step(
                                format!("providers.{name}: parse"),
                                format!("refused: {}", failure.description()),
                            );
                            continue;
                        }
                    };
                    step(
                        format!("providers.{name}: parse"),
                        format!(
                            "ok (alg {}, kid {})",
                            parsed.header.alg.name(),
                            parsed.header.kid.as_deref().unwrap_or("none")
                        ),
                    );
                    let policy = provider.token_policy();
                    let claims_result = token_policy::check_claims(&parsed, &policy, now.seconds());
                    step(
                        format!("providers.{name}: iss, aud, times, typ, azp"),
                        verdict(claims_result, |f| f.description().to_owned()),
                    );
                    let signature = match keys.lookup(id, now.ms) {
                        Lookup::Ready { keys, .. } => {
                            verdict(check_signature(&parsed, keys, &PureRustCrypto), |f| {
                                f.description().to_owned()
                            })
                        }
                        Lookup::Loading | Lookup::Unavailable { .. } => {
                            "unknown: no keys (give --jwks)".into()
                        }
                    };
                    step(format!("providers.{name}: key and signature"), signature);
                    step(
                        format!("providers.{name}: identity"),
                        verdict(identity::check(&provider.identity, &parsed.claims), |f| {
                            f.description().to_owned()
                        }),
                    );
                }
                for (index, condition) in rule.require_claims.iter().enumerate() {
                    step(format!("require_claims[{index}]"), format!("{condition:?}"));
                }
            }
            Routed::NeedsBody(_) => step(
                "rule".into(),
                "depends on the model named in the body (--data)".into(),
            ),
            Routed::NoRule => step("rule".into(), "none".into()),
        }
    }

    let mut tokens: Vec<TokenCache> = config
        .providers
        .iter()
        .map(|_| TokenCache::new(0))
        .collect();
    let mut shared = LocalSharedData::default();
    let mut request = request;
    let mut decide = |request: &Request| {
        decision::decide(
            &config,
            request,
            &mut keys,
            &mut tokens,
            &PureRustCrypto,
            &mut shared,
            now,
        )
    };
    let mut decision = decide(&request);
    // As the filter does: the token is judged at the headers, then the body is read for the
    // model, and the request is decided again with it.
    if let (
        Decision::ReadBody {
            protocol,
            max_bytes,
        },
        Some(body),
    ) = (&decision, &question.body)
    {
        let mut scanner = BodyScanner::new(*protocol, *max_bytes);
        let read = scanner
            .feed(body)
            .map(|()| scanner.model().map(str::to_owned));
        match read {
            Ok(Some(model)) => {
                steps.push(Step {
                    check: "body".into(),
                    verdict: format!("names model {model:?}"),
                });
                request.body_model = Some(model);
                decision = decide(&request);
            }
            outcome => {
                let failure = match outcome {
                    Err(error) => decision::body_failure(error),
                    Ok(_) => match scanner.finish() {
                        Ok(_) => Failure::BodyModelMissing,
                        Err(error) => decision::body_failure(error),
                    },
                };
                steps.push(Step {
                    check: "body".into(),
                    verdict: format!("refused: {}", failure.description()),
                });
                let recipient = Recipient::of(&config, &request);
                decision = Decision::Deny(decision::deny(failure, &recipient, 1));
            }
        }
    }
    let (status, headers, body) = match decision {
        Decision::Allow(allow) => {
            let mut headers: Vec<(String, String)> = allow
                .set_headers
                .iter()
                .map(|(name, value)| (format!("sets {name}"), value.to_string()))
                .collect();
            headers.extend(
                allow
                    .remove_headers
                    .iter()
                    .map(|name| (format!("removes {name}"), String::new())),
            );
            (200, headers, "let through to the model server".to_owned())
        }
        Decision::Deny(denial) => (denial.status, denial.headers, denial.body),
        Decision::Respond(reply) => (reply.status, reply.headers, reply.body),
        Decision::Wait { .. } => (
            503,
            Vec::new(),
            "waits for signing keys the filter would fetch (give --jwks)".to_owned(),
        ),
        Decision::ReadBody { .. } => (
            0,
            Vec::new(),
            "the rule depends on the model named in the body: give it with --data".to_owned(),
        ),
    };
    Ok(Explanation {
        steps,
        status,
        // The token, or a part of it (the payload a provider forwards), is never printed back.
        headers: headers
            .into_iter()
            .map(|(name, value)| {
                let from_token = value.len() >= 8 && question.token.contains(value.as_str());
                (
                    name,
                    if from_token {
                        "<from the token>".to_owned()
                    } else {
                        value
                    },
                )
            })
            .collect(),
        body,
    })
}
