//! Local answers: RFC 6750 challenges with a JSON body, or their gRPC equivalent.

use crate::config::provider::{DPOP_SCHEME_HEADER, DPOP_SCHEME_PREFIX};
use crate::config::{ChallengeSchemes, Config};
use crate::failure::{Failure, FailureClass};
use crate::request::Request;

/// A local answer that is not a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// HTTP status.
    pub status: u32,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// Body; empty for none.
    pub body: String,
}

/// A local answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Why; drives metrics and logs.
    pub failure: Failure,
    /// HTTP status.
    pub status: u32,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// JSON body; empty for a gRPC denial, which is all headers (trailers-only).
    pub body: String,
    /// What the log line names besides the reason (a header), never token material.
    pub detail: Option<String>,
}

/// What the form of a denial depends on besides its reason: who asked, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipient {
    /// The challenge's `realm`: the request's authority.
    pub realm: String,
    /// The challenge's `resource_metadata` (RFC 9728), when configured.
    pub resource_metadata: Option<String>,
    /// Answer the gRPC way: the request's content type is gRPC.
    pub grpc: bool,
    /// Scopes named in an `insufficient_scope` challenge's `scope`.
    pub scopes: Vec<String>,
    /// Which challenges to send.
    pub schemes: ChallengeSchemes,
    /// The request sent its token with the `DPoP` scheme, so the error belongs in the DPoP
    /// challenge.
    pub used_dpop: bool,
}

impl Recipient {
    /// The recipient of a denial of `request` under `config`.
    pub fn of(config: &Config, request: &Request) -> Recipient {
        Recipient {
            realm: request.authority.clone(),
            resource_metadata: config
                .protected_resource
                .as_ref()
                .map(|resource| resource.metadata_url.clone()),
            grpc: is_grpc(request),
            scopes: Vec::new(),
            used_dpop: config.challenge.dpop_algs.is_some()
                && request.header_values(DPOP_SCHEME_HEADER).any(|value| {
                    value
                        .trim_start()
                        .get(..DPOP_SCHEME_PREFIX.len())
                        .is_some_and(|scheme| scheme.eq_ignore_ascii_case(DPOP_SCHEME_PREFIX))
                }),
            schemes: config.challenge.clone(),
        }
    }
}

/// A gRPC request, by Envoy's definition: content type `application/grpc`, alone or followed by
/// `+` and a codec (`application/grpc+proto`). `application/grpc-web` is not gRPC.
pub fn is_grpc(request: &Request) -> bool {
    request
        .header_values("content-type")
        .next()
        .and_then(|value| value.strip_prefix("application/grpc"))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('+'))
}

/// Builds the RFC 6750 answer for `failure` to a plain HTTP request from `authority`, without
/// `resource_metadata`. `retry_after_seconds` is used for 503s only.
pub fn denial(failure: Failure, authority: &str, retry_after_seconds: u64) -> Denial {
    let recipient = Recipient {
        realm: authority.to_owned(),
        ..Recipient::default()
    };
    deny(failure, &recipient, retry_after_seconds)
}

/// Builds the answer for `failure` to `recipient`: an RFC 6750 challenge and JSON body, or for a
/// gRPC request the same challenge with `grpc-status` and `grpc-message` in a trailers-only
/// response (HTTP 200, no body), as Envoy's own filters answer gRPC. `retry_after_seconds` is
/// used for 503s (gRPC `UNAVAILABLE`) only.
pub fn deny(failure: Failure, recipient: &Recipient, retry_after_seconds: u64) -> Denial {
    let class = failure.class();
    let description = failure.description();
    let (status, error) = match class {
        FailureClass::Missing => (401, "unauthorized"),
        FailureClass::InvalidToken => (401, "invalid_token"),
        FailureClass::InvalidDpopProof => (401, "invalid_dpop_proof"),
        FailureClass::InvalidBody => (400, "invalid_request"),
        FailureClass::BodyTooLarge => (413, "invalid_request"),
        FailureClass::BodyEncoded => (415, "invalid_request"),
        FailureClass::InvalidRequest => (400, "invalid_request"),
        FailureClass::Forbidden => (403, "insufficient_scope"),
        FailureClass::Unavailable => (503, "temporarily_unavailable"),
    };
    // A refusal of the body is about the request, not its credentials: no challenge.
    let challenges = if matches!(
        class,
        FailureClass::Unavailable
            | FailureClass::InvalidBody
            | FailureClass::BodyTooLarge
            | FailureClass::BodyEncoded
    ) {
        Vec::new()
    } else {
        challenges(failure, error, recipient)
    };
    let mut headers = Vec::new();
    if recipient.grpc {
        let grpc_status = match class {
            FailureClass::Missing
            | FailureClass::InvalidToken
            | FailureClass::InvalidDpopProof
            | FailureClass::InvalidRequest => GRPC_UNAUTHENTICATED,
            FailureClass::Forbidden => GRPC_PERMISSION_DENIED,
            FailureClass::Unavailable => GRPC_UNAVAILABLE,
            FailureClass::InvalidBody | FailureClass::BodyTooLarge | FailureClass::BodyEncoded => {
                GRPC_INVALID_ARGUMENT
            }
        };
        headers.push(("content-type".to_owned(), "application/grpc".to_owned()));
        headers.push(("grpc-status".to_owned(), grpc_status.to_string()));
        headers.push(("grpc-message".to_owned(), grpc_percent_encode(description)));
    } else {
        headers.push(("content-type".to_owned(), "application/json".to_owned()));
    }
    for challenge in challenges {
        headers.push(("www-authenticate".to_owned(), challenge));
    }
    if status == 503 {
        headers.push((
            "retry-after".to_owned(),
            retry_after_seconds.max(1).to_string(),
        ));
    }
    let (status, body) = if recipient.grpc {
        (200, String::new())
    } else {
        let body = serde_json::json!({"error": error, "error_description": description});
        (status, body.to_string())
    };
    Denial {
        failure,
        status,
        headers,
        body,
        detail: None,
    }
}

/// The `WWW-Authenticate` challenges of a refusal: `Bearer`, `DPoP` or both, each with the realm
/// and `resource_metadata`. The error goes into one of them: the DPoP one when the failure is
/// about DPoP or the request used the DPoP scheme (RFC 9449 §7.1), the Bearer one otherwise. No
/// error code when the request carried no credentials (RFC 6750 §3.1).
fn challenges(failure: Failure, error: &str, recipient: &Recipient) -> Vec<String> {
    let class = failure.class();
    let mut common = format!("realm=\"{}\"", quoted_safe(&recipient.realm));
    if let Some(url) = &recipient.resource_metadata {
        common.push_str(&format!(", resource_metadata=\"{}\"", quoted_safe(url)));
    }
    let mut error_part = String::new();
    if class != FailureClass::Missing {
        error_part = format!(
            ", error=\"{error}\", error_description=\"{}\"",
            failure.description()
        );
        let scopes: Vec<&str> = recipient
            .scopes
            .iter()
            .map(String::as_str)
            .filter(|scope| !scope.is_empty() && scope.chars().all(is_scope_char))
            .collect();
        if class == FailureClass::Forbidden && !scopes.is_empty() {
            error_part.push_str(&format!(", scope=\"{}\"", scopes.join(" ")));
        }
    }
    let schemes = &recipient.schemes;
    let Some(algs) = &schemes.dpop_algs else {
        return vec![format!("Bearer {common}{error_part}")];
    };
    let error_in_dpop = !schemes.bearer
        || recipient.used_dpop
        || class == FailureClass::InvalidDpopProof
        || concerns_dpop(failure);
    let mut challenges = Vec::with_capacity(2);
    if schemes.bearer {
        let bearer_error = if error_in_dpop { "" } else { &error_part };
        challenges.push(format!("Bearer {common}{bearer_error}"));
    }
    let dpop_error = if error_in_dpop {
        error_part.as_str()
    } else {
        ""
    };
    challenges.push(format!("DPoP {common}{dpop_error}, algs=\"{algs}\""));
    challenges
}

/// Token refusals that tell the client how to use DPoP.
fn concerns_dpop(failure: Failure) -> bool {
    matches!(
        failure,
        Failure::DpopRequired
            | Failure::DpopBoundTokenAsBearer
            | Failure::DpopProofWithBearer
            | Failure::DpopTokenNotBound
            | Failure::DpopKeyMismatch
    )
}

/// gRPC status codes used in denials.
pub(super) const GRPC_INVALID_ARGUMENT: u32 = 3;
pub(super) const GRPC_PERMISSION_DENIED: u32 = 7;
pub(super) const GRPC_UNAVAILABLE: u32 = 14;
pub(super) const GRPC_UNAUTHENTICATED: u32 = 16;

/// A `grpc-message` value as the gRPC HTTP/2 spec defines it: bytes outside printable ASCII,
/// and `%` itself, as `%XX`.
pub(super) fn grpc_percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// RFC 6749 scope-token characters: printable ASCII except space, `"` and `\`.
pub(super) fn is_scope_char(c: char) -> bool {
    c.is_ascii_graphic() && c != '"' && c != '\\'
}

/// Keeps only characters that are safe inside a quoted-string header parameter.
pub(super) fn quoted_safe(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\' || *c == ' ')
        .take(255)
        .collect()
}
