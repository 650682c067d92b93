//! Before the body is read: a request whose model is named in its body (the OpenAI-compatible
//! API, V2 gRPC) and that a model rule may cover. Which rule covers it waits for the body, but
//! its token is judged now, so that a request without a valid one gets its `401` before any body
//! is read and held.

use super::requirement::{rank, Evaluation, Verdict};
use crate::config::Rule;
use crate::failure::Failure;
use crate::request::body::BodyError;
use crate::request::grpc_scan::GrpcBodyError;
use crate::request::json_scan::JsonBodyError;

/// Whether to read the body, given the rules the body's model could select (in configuration
/// order, the last one the rule that covers the request whatever its model): `Ok` to read it, or
/// the refusal.
///
/// - A compressed body cannot be read: `415` (the filter does not decompress).
/// - If one of the rules is public, or the request's token meets one rule's requirement, the
///   body is read; the rule and the claim conditions are judged then.
/// - If a requirement waits for signing keys, the body is read too, and the request waits for
///   the keys once it has named its model: a request held for its keys before its body was read
///   would have no later body callback to read it in.
/// - Otherwise no model could let it through: the most telling failure, now.
///
/// Sender bindings (a DPoP proof, whose id may be used once) are checked once, with the rule.
pub(super) fn before_body(
    evaluation: &mut Evaluation<'_>,
    candidates: &[&Rule],
) -> Result<(), Failure> {
    if is_encoded(evaluation) {
        return Err(Failure::BodyEncoded);
    }
    let mut worst: Option<Failure> = None;
    for rule in candidates {
        let Some(requirement) = &rule.requirement else {
            return Ok(());
        };
        match evaluation.requirement(requirement) {
            Verdict::Allowed(_) | Verdict::Wait(_) => return Ok(()),
            Verdict::Failed(failure) => {
                if worst.is_none_or(|w| rank(failure) > rank(w)) {
                    worst = Some(failure);
                }
            }
        }
    }
    Err(worst.unwrap_or(Failure::Missing))
}

/// Whether the body is compressed: any `content-encoding` but `identity`.
fn is_encoded(evaluation: &Evaluation<'_>) -> bool {
    evaluation
        .request
        .header_values("content-encoding")
        .flat_map(|value| value.split(','))
        .map(|coding| coding.trim())
        .any(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case("identity"))
}

/// The refusal of a body that names no model the filter can judge.
pub fn body_failure(error: BodyError) -> Failure {
    match error {
        BodyError::TooLarge | BodyError::Grpc(GrpcBodyError::TooLarge) => Failure::BodyTooLarge,
        BodyError::Json(JsonBodyError::NotAnObject) => Failure::BodyNotJsonObject,
        BodyError::Json(JsonBodyError::ModelNotAString) => Failure::BodyModelNotString,
        BodyError::Json(JsonBodyError::RepeatedModel)
        | BodyError::Grpc(GrpcBodyError::RepeatedModel) => Failure::BodyModelRepeated,
        BodyError::Json(JsonBodyError::NoModel) | BodyError::Grpc(GrpcBodyError::NoModel) => {
            Failure::BodyModelMissing
        }
        BodyError::Grpc(GrpcBodyError::Compressed) => Failure::BodyEncoded,
        BodyError::Grpc(GrpcBodyError::Malformed) => Failure::BodyMalformed,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use serde_json::{json, Value};

    use super::super::fixture::{Fixture, ISSUER};
    use super::super::Decision;
    use crate::failure::Failure;
    use crate::request::body::BodyProtocol;
    use crate::request::Request;

    const NOW: u64 = 1_700_000_000;

    fn fixture() -> Fixture {
        Fixture::new(
            json!({}),
            json!({
                "rules": [
                    {"match": {"model": "llama-a"}, "requires": {"provider_name": "idp"},
                     "require_claims": [{"claim": "roles", "has": "a"}]},
                    {"match": {"model": "llama-b"}, "requires": {"provider_name": "idp"},
                     "require_claims": [{"claim": "roles", "has": "b"}]},
                    {"match": {"prefix": "/"}, "requires": {"provider_name": "idp"}}
                ],
                "model_header": "x-kserve-model"
            }),
        )
    }

    /// A token with these roles.
    fn token(f: &Fixture, roles: Value) -> String {
        f.token(&json!({"iss": ISSUER, "aud": "kserve", "sub": "s",
                        "iat": NOW, "exp": NOW + 300, "roles": roles}))
    }

    fn chat(headers: &[(&str, &str)], body_model: Option<&str>) -> Request {
        Request {
            method: "POST".into(),
            path: "/openai/v1/chat/completions".into(),
            authority: "models.test".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body_model: body_model.map(str::to_owned),
            ..Request::default()
        }
    }

    fn failure(decision: &Decision) -> Failure {
        match decision {
            Decision::Deny(denial) => denial.failure,
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    // The token is judged before the body is read; the model, and the claims, after.
    #[test]
    fn token_at_the_headers_model_and_claims_after_the_body() {
        let mut f = fixture();
        assert_eq!(failure(&f.decide(&chat(&[], None), NOW)), Failure::Missing);
        let bearer = format!("Bearer {}", token(&f, json!(["a"])));
        let headers = [("authorization", bearer.as_str())];
        assert_eq!(
            f.decide(&chat(&headers, None), NOW),
            Decision::ReadBody {
                protocol: BodyProtocol::OpenAi,
                max_bytes: 1024 * 1024
            }
        );
        let Decision::Allow(allow) = f.decide(&chat(&headers, Some("llama-a")), NOW) else {
            panic!("llama-a with role a");
        };
        assert!(allow
            .set_headers
            .iter()
            .any(|(name, value)| &**name == "x-kserve-model" && &**value == "llama-a"));
        assert_eq!(
            failure(&f.decide(&chat(&headers, Some("llama-b")), NOW)),
            Failure::ClaimRequirementFailed
        );
        // A model no rule names falls to the catch-all.
        assert!(matches!(
            f.decide(&chat(&headers, Some("other")), NOW),
            Decision::Allow(_)
        ));
        // A name that cannot be a header value.
        assert_eq!(
            failure(&f.decide(&chat(&headers, Some("a\nb")), NOW)),
            Failure::BodyModelNotString
        );
    }

    // A compressed body cannot be read: 415, before anything else.
    #[test]
    fn compressed_bodies_are_refused() {
        let mut f = fixture();
        let bearer = format!("Bearer {}", token(&f, json!(["a"])));
        let request = chat(
            &[("authorization", &bearer), ("content-encoding", "gzip")],
            None,
        );
        let decision = f.decide(&request, NOW);
        assert_eq!(failure(&decision), Failure::BodyEncoded);
        let Decision::Deny(denial) = decision else {
            unreachable!()
        };
        assert_eq!(denial.status, 415);
        assert!(!denial.headers.iter().any(|(n, _)| n == "www-authenticate"));
        let identity = chat(
            &[("authorization", &bearer), ("content-encoding", "identity")],
            None,
        );
        assert!(matches!(
            f.decide(&identity, NOW),
            Decision::ReadBody { .. }
        ));
    }

    // Each body refusal has its status.
    #[test]
    fn body_refusals() {
        use crate::request::body::BodyError;
        use crate::request::json_scan::JsonBodyError;
        let status = |error| super::super::denial(super::body_failure(error), "h", 1).status;
        assert_eq!(status(BodyError::TooLarge), 413);
        assert_eq!(status(BodyError::Json(JsonBodyError::NotAnObject)), 400);
        assert_eq!(status(BodyError::Json(JsonBodyError::RepeatedModel)), 400);
        assert_eq!(status(BodyError::Json(JsonBodyError::NoModel)), 400);
    }
}
