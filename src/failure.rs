//! Why a request was not allowed: one flat enum whose text is the `error_description`.

/// The HTTP answer class a failure maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// No credentials: 401 with a bare `Bearer realm=...` challenge (RFC 6750 §3.1).
    Missing,
    /// Credentials were sent but are not acceptable: 401 `error="invalid_token"`.
    InvalidToken,
    /// The request itself is malformed: 400 `error="invalid_request"`.
    InvalidRequest,
    /// The filter cannot judge the token right now (no signing keys): 503 with `Retry-After`.
    Unavailable,
    /// The token is valid but does not grant this request: 403 `error="insufficient_scope"`.
    Forbidden,
    /// The DPoP proof is missing, malformed, or does not fit the request: 401
    /// `error="invalid_dpop_proof"` in a DPoP challenge (RFC 9449 §7.1).
    InvalidDpopProof,
    /// A body that should name the model does not: 400 `error="invalid_request"`, no challenge
    /// (gRPC: `INVALID_ARGUMENT`).
    InvalidBody,
    /// More body than the filter reads arrived without a model: 413.
    BodyTooLarge,
    /// A compressed body, which the filter does not decompress: 415.
    BodyEncoded,
}

/// Every reason a request can be refused. The `description` is what clients see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    Missing,
    MalformedAuthorization,
    RepeatedCredential,
    TooLong,
    BadFormat,
    BadHeaderJson,
    BadPayloadJson,
    BadSignatureEncoding,
    DuplicateName,
    AlgNotAllowed,
    CritNotSupported,
    NestedToken,
    BadType,
    IssuerNotConfigured,
    AudienceNotAllowed,
    BadClaimType,
    ExpirationMissing,
    Expired,
    NotYetValid,
    IssuedInFuture,
    NegativeTime,
    LifetimeTooLong,
    UnknownKid,
    NoFittingKey,
    BadSignature,
    KeysUnavailable,
    TooManyWaiting,
    ClaimRequirementFailed,
    TypeNotAllowed,
    AuthorizedPartyNotAllowed,
    AmbiguousPath,
    EmailNotVerified,
    HostedDomainNotAllowed,
    EmailNotAllowed,
    /// The host refused to remove or set a request header the decision depends on (a managed
    /// identity header, the normalized path): the request cannot go upstream as judged.
    HeaderRewriteFailed,
    /// A header the filter reads (`:path`, a token header) is not valid UTF-8.
    UndecodableHeader,
    DpopProofMissing,
    DpopProofRepeated,
    DpopProofMalformed,
    DpopProofType,
    DpopProofAlgorithm,
    DpopProofKey,
    DpopProofSignature,
    DpopProofMethod,
    DpopProofUrl,
    DpopProofIssuedAt,
    DpopProofTokenHash,
    DpopProofId,
    DpopProofReplayed,
    DpopRequired,
    DpopBoundTokenAsBearer,
    DpopProofWithBearer,
    DpopTokenNotBound,
    DpopKeyMismatch,
    DpopReplayCheckUnavailable,
    CertificateMissing,
    CertificateNotBound,
    CertificateMismatch,
    BodyNotJsonObject,
    BodyModelNotString,
    BodyModelRepeated,
    BodyModelMissing,
    BodyMalformed,
    BodyTooLarge,
    BodyEncoded,
    BodyNotDelivered,
}

impl Failure {
    /// The class decides status code and challenge.
    pub fn class(self) -> FailureClass {
        match self {
            Failure::Missing => FailureClass::Missing,
            Failure::MalformedAuthorization
            | Failure::RepeatedCredential
            | Failure::AmbiguousPath
            | Failure::UndecodableHeader => FailureClass::InvalidRequest,
            Failure::KeysUnavailable | Failure::TooManyWaiting | Failure::HeaderRewriteFailed => {
                FailureClass::Unavailable
            }
            Failure::ClaimRequirementFailed
            | Failure::HostedDomainNotAllowed
            | Failure::EmailNotAllowed => FailureClass::Forbidden,
            Failure::DpopProofMissing
            | Failure::DpopProofRepeated
            | Failure::DpopProofMalformed
            | Failure::DpopProofType
            | Failure::DpopProofAlgorithm
            | Failure::DpopProofKey
            | Failure::DpopProofSignature
            | Failure::DpopProofMethod
            | Failure::DpopProofUrl
            | Failure::DpopProofIssuedAt
            | Failure::DpopProofTokenHash
            | Failure::DpopProofId
            | Failure::DpopProofReplayed => FailureClass::InvalidDpopProof,
            Failure::DpopReplayCheckUnavailable => FailureClass::Unavailable,
            Failure::BodyNotJsonObject
            | Failure::BodyModelNotString
            | Failure::BodyModelRepeated
            | Failure::BodyModelMissing
            | Failure::BodyMalformed => FailureClass::InvalidBody,
            Failure::BodyTooLarge => FailureClass::BodyTooLarge,
            Failure::BodyEncoded => FailureClass::BodyEncoded,
            Failure::BodyNotDelivered => FailureClass::Unavailable,
            _ => FailureClass::InvalidToken,
        }
    }

    /// Human-readable reason, sent as `error_description`; never contains token material.
    pub fn description(self) -> &'static str {
        match self {
            Failure::Missing => "Jwt is missing",
            Failure::MalformedAuthorization => "Authorization header is not a Bearer token",
            Failure::RepeatedCredential => "Jwt is sent more than once",
            Failure::TooLong => "Jwt is too long",
            Failure::BadFormat => "Jwt is not in the form of Header.Payload.Signature",
            Failure::BadHeaderJson => "Jwt header is not valid base64url JSON",
            Failure::BadPayloadJson => "Jwt payload is not valid base64url JSON",
            Failure::BadSignatureEncoding => "Jwt signature is not valid base64url",
            Failure::DuplicateName => "Jwt header or payload repeats a member name",
            Failure::AlgNotAllowed => "Jwt algorithm is not allowed",
            Failure::CritNotSupported => "Jwt crit header is not supported",
            Failure::NestedToken => "Jwt nested tokens are not supported",
            Failure::BadType => "Jwt typ is not allowed",
            Failure::IssuerNotConfigured => "Jwt issuer is not configured",
            Failure::AudienceNotAllowed => "Audiences in Jwt are not allowed",
            Failure::BadClaimType => "Jwt registered claim has the wrong type",
            Failure::ExpirationMissing => "Jwt has no exp claim",
            Failure::Expired => "Jwt is expired",
            Failure::NotYetValid => "Jwt not yet valid",
            Failure::IssuedInFuture => "Jwt iat is in the future",
            Failure::NegativeTime => "Jwt time claim is negative",
            Failure::LifetimeTooLong => "Jwt lifetime exceeds the allowed maximum",
            Failure::UnknownKid => "Jwt kid is not in the issuer's key set",
            Failure::NoFittingKey => "Jwks has no key that fits the Jwt algorithm",
            Failure::BadSignature => "Jwt verification fails",
            Failure::KeysUnavailable => "Signing keys are not available yet",
            Failure::TooManyWaiting => "Too many requests are waiting for signing keys",
            Failure::ClaimRequirementFailed => "Jwt does not have the claims this request requires",
            Failure::TypeNotAllowed => "Jwt typ is not one of the provider's allowed types",
            Failure::AuthorizedPartyNotAllowed => "Jwt azp is not an allowed authorized party",
            Failure::AmbiguousPath => "Request path is ambiguous",
            Failure::EmailNotVerified => "Jwt email is not verified",
            Failure::HostedDomainNotAllowed => "Jwt hosted domain is not allowed",
            Failure::EmailNotAllowed => "Jwt email is not allowed",
            Failure::HeaderRewriteFailed => "Request headers could not be rewritten",
            Failure::UndecodableHeader => "Request header is not valid UTF-8",
            Failure::DpopProofMissing => "DPoP proof is missing",
            Failure::DpopProofRepeated => "DPoP proof is sent more than once",
            Failure::DpopProofMalformed => "DPoP proof is not a well-formed JWT",
            Failure::DpopProofType => "DPoP proof typ is not dpop+jwt",
            Failure::DpopProofAlgorithm => "DPoP proof algorithm is not allowed",
            Failure::DpopProofKey => "DPoP proof has no usable public jwk",
            Failure::DpopProofSignature => "DPoP proof signature is invalid",
            Failure::DpopProofMethod => "DPoP proof htm does not match the request method",
            Failure::DpopProofUrl => "DPoP proof htu does not match the request URL",
            Failure::DpopProofIssuedAt => "DPoP proof iat is outside the accepted window",
            Failure::DpopProofTokenHash => "DPoP proof ath does not match the access token",
            Failure::DpopProofId => "DPoP proof has no usable jti",
            Failure::DpopProofReplayed => "DPoP proof jti was already used",
            Failure::DpopRequired => "Jwt must be sent with the DPoP scheme",
            Failure::DpopBoundTokenAsBearer => {
                "Jwt is DPoP-bound and must be sent with the DPoP scheme"
            }
            Failure::DpopProofWithBearer => "DPoP proof is sent with a Bearer token",
            Failure::DpopTokenNotBound => "Jwt sent with the DPoP scheme has no cnf.jkt",
            Failure::DpopKeyMismatch => "Jwt cnf.jkt does not match the DPoP proof key",
            Failure::DpopReplayCheckUnavailable => "DPoP replay check is not available",
            Failure::CertificateMissing => "Client certificate is missing",
            Failure::CertificateNotBound => "Jwt is not bound to a client certificate",
            Failure::CertificateMismatch => {
                "Jwt cnf x5t#S256 does not match the client certificate"
            }
            Failure::BodyNotJsonObject => "Request body is not a JSON object",
            Failure::BodyModelNotString => "Request body model is not a string",
            Failure::BodyModelRepeated => "Request body names its model twice",
            Failure::BodyModelMissing => "Request body names no model",
            Failure::BodyMalformed => "Request body is not a well-formed gRPC message",
            Failure::BodyTooLarge => "Request body is larger than the filter reads for its model",
            Failure::BodyEncoded => {
                "Request body is compressed; the filter reads only uncompressed bodies"
            }
            Failure::BodyNotDelivered => "Request body did not reach the filter",
        }
    }

    /// Stable snake_case name for metrics and logs.
    pub fn metric_name(self) -> &'static str {
        match self {
            Failure::Missing => "missing",
            Failure::MalformedAuthorization => "malformed_authorization",
            Failure::RepeatedCredential => "repeated_credential",
            Failure::TooLong => "too_long",
            Failure::BadFormat => "bad_format",
            Failure::BadHeaderJson => "bad_header_json",
            Failure::BadPayloadJson => "bad_payload_json",
            Failure::BadSignatureEncoding => "bad_signature_encoding",
            Failure::DuplicateName => "duplicate_name",
            Failure::AlgNotAllowed => "alg_not_allowed",
            Failure::CritNotSupported => "crit_not_supported",
            Failure::NestedToken => "nested_token",
            Failure::BadType => "bad_type",
            Failure::IssuerNotConfigured => "issuer_not_configured",
            Failure::AudienceNotAllowed => "audience_not_allowed",
            Failure::BadClaimType => "bad_claim_type",
            Failure::ExpirationMissing => "expiration_missing",
            Failure::Expired => "expired",
            Failure::NotYetValid => "not_yet_valid",
            Failure::IssuedInFuture => "issued_in_future",
            Failure::NegativeTime => "negative_time",
            Failure::LifetimeTooLong => "lifetime_too_long",
            Failure::UnknownKid => "unknown_kid",
            Failure::NoFittingKey => "no_fitting_key",
            Failure::BadSignature => "bad_signature",
            Failure::KeysUnavailable => "keys_unavailable",
            Failure::TooManyWaiting => "too_many_waiting",
            Failure::ClaimRequirementFailed => "claim_requirement_failed",
            Failure::TypeNotAllowed => "type_not_allowed",
            Failure::AuthorizedPartyNotAllowed => "authorized_party_not_allowed",
            Failure::AmbiguousPath => "ambiguous_path",
            Failure::EmailNotVerified => "email_not_verified",
            Failure::HostedDomainNotAllowed => "hosted_domain_not_allowed",
            Failure::EmailNotAllowed => "email_not_allowed",
            Failure::HeaderRewriteFailed => "header_rewrite_failed",
            Failure::UndecodableHeader => "undecodable_header",
            Failure::DpopProofMissing => "dpop_proof_missing",
            Failure::DpopProofRepeated => "dpop_proof_repeated",
            Failure::DpopProofMalformed => "dpop_proof_malformed",
            Failure::DpopProofType => "dpop_proof_type",
            Failure::DpopProofAlgorithm => "dpop_proof_algorithm",
            Failure::DpopProofKey => "dpop_proof_key",
            Failure::DpopProofSignature => "dpop_proof_signature",
            Failure::DpopProofMethod => "dpop_proof_method",
            Failure::DpopProofUrl => "dpop_proof_url",
            Failure::DpopProofIssuedAt => "dpop_proof_issued_at",
            Failure::DpopProofTokenHash => "dpop_proof_token_hash",
            Failure::DpopProofId => "dpop_proof_id",
            Failure::DpopProofReplayed => "dpop_proof_replayed",
            Failure::DpopRequired => "dpop_required",
            Failure::DpopBoundTokenAsBearer => "dpop_bound_token_as_bearer",
            Failure::DpopProofWithBearer => "dpop_proof_with_bearer",
            Failure::DpopTokenNotBound => "dpop_token_not_bound",
            Failure::DpopKeyMismatch => "dpop_key_mismatch",
            Failure::DpopReplayCheckUnavailable => "dpop_replay_check_unavailable",
            Failure::CertificateMissing => "certificate_missing",
            Failure::CertificateNotBound => "certificate_not_bound",
            Failure::CertificateMismatch => "certificate_mismatch",
            Failure::BodyNotJsonObject => "body_not_json_object",
            Failure::BodyModelNotString => "body_model_not_string",
            Failure::BodyModelRepeated => "body_model_repeated",
            Failure::BodyModelMissing => "body_model_missing",
            Failure::BodyMalformed => "body_malformed",
            Failure::BodyTooLarge => "body_too_large",
            Failure::BodyEncoded => "body_encoded",
            Failure::BodyNotDelivered => "body_not_delivered",
        }
    }

    /// Every variant, for metric registration and exhaustive tests.
    pub const ALL: [Failure; 66] = [
        Failure::Missing,
        Failure::MalformedAuthorization,
        Failure::RepeatedCredential,
        Failure::TooLong,
        Failure::BadFormat,
        Failure::BadHeaderJson,
        Failure::BadPayloadJson,
        Failure::BadSignatureEncoding,
        Failure::DuplicateName,
        Failure::AlgNotAllowed,
        Failure::CritNotSupported,
        Failure::NestedToken,
        Failure::BadType,
        Failure::IssuerNotConfigured,
        Failure::AudienceNotAllowed,
        Failure::BadClaimType,
        Failure::ExpirationMissing,
        Failure::Expired,
        Failure::NotYetValid,
        Failure::IssuedInFuture,
        Failure::NegativeTime,
        Failure::LifetimeTooLong,
        Failure::UnknownKid,
        Failure::NoFittingKey,
        Failure::BadSignature,
        Failure::KeysUnavailable,
        Failure::TooManyWaiting,
        Failure::ClaimRequirementFailed,
        Failure::TypeNotAllowed,
        Failure::AuthorizedPartyNotAllowed,
        Failure::AmbiguousPath,
        Failure::EmailNotVerified,
        Failure::HostedDomainNotAllowed,
        Failure::EmailNotAllowed,
        Failure::HeaderRewriteFailed,
        Failure::UndecodableHeader,
        Failure::DpopProofMissing,
        Failure::DpopProofRepeated,
        Failure::DpopProofMalformed,
        Failure::DpopProofType,
        Failure::DpopProofAlgorithm,
        Failure::DpopProofKey,
        Failure::DpopProofSignature,
        Failure::DpopProofMethod,
        Failure::DpopProofUrl,
        Failure::DpopProofIssuedAt,
        Failure::DpopProofTokenHash,
        Failure::DpopProofId,
        Failure::DpopProofReplayed,
        Failure::DpopRequired,
        Failure::DpopBoundTokenAsBearer,
        Failure::DpopProofWithBearer,
        Failure::DpopTokenNotBound,
        Failure::DpopKeyMismatch,
        Failure::DpopReplayCheckUnavailable,
        Failure::CertificateMissing,
        Failure::CertificateNotBound,
        Failure::CertificateMismatch,
        Failure::BodyNotJsonObject,
        Failure::BodyModelNotString,
        Failure::BodyModelRepeated,
        Failure::BodyModelMissing,
        Failure::BodyMalformed,
        Failure::BodyTooLarge,
        Failure::BodyEncoded,
        Failure::BodyNotDelivered,
    ];
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    // ALL lists no variant twice, and metric names are unique, so each reason has its counter.
    #[test]
    fn all_variants_and_unique_names() {
        let mut names: Vec<&str> = Failure::ALL.iter().map(|f| f.metric_name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Failure::ALL.len());
        for failure in [
            Failure::ClaimRequirementFailed,
            Failure::TypeNotAllowed,
            Failure::AuthorizedPartyNotAllowed,
        ] {
            assert!(Failure::ALL.contains(&failure), "{failure:?}");
        }
    }

    // Authorization failures (claims, Google domain and user rules) are the only 403s; typ, azp
    // and an unverified email are invalid tokens; an ambiguous path is a malformed request.
    #[test]
    fn new_classes() {
        assert_eq!(
            Failure::ClaimRequirementFailed.class(),
            FailureClass::Forbidden
        );
        assert_eq!(Failure::TypeNotAllowed.class(), FailureClass::InvalidToken);
        assert_eq!(
            Failure::AuthorizedPartyNotAllowed.class(),
            FailureClass::InvalidToken
        );
        let forbidden: Vec<Failure> = Failure::ALL
            .into_iter()
            .filter(|f| f.class() == FailureClass::Forbidden)
            .collect();
        assert_eq!(
            forbidden,
            [
                Failure::ClaimRequirementFailed,
                Failure::HostedDomainNotAllowed,
                Failure::EmailNotAllowed
            ]
        );
        assert_eq!(
            Failure::EmailNotVerified.class(),
            FailureClass::InvalidToken
        );
        assert_eq!(Failure::AmbiguousPath.class(), FailureClass::InvalidRequest);
    }
}
