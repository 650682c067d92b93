//! What a provider demands of a token before any key is involved: algorithm, issuer, audience,
//! type, authorized party and times. These checks run first, so a token that fails them never
//! costs a signature check or a key refetch.

use crate::failure::Failure;
use crate::jose::alg::Alg;
use crate::jose::token::{NumericDate, Token};

/// The token rules of one provider, borrowed from its configuration.
#[derive(Debug, Clone, Copy)]
pub struct TokenPolicy<'c> {
    /// Exact value the token's `iss` must have.
    pub issuer: &'c str,
    /// Other accepted `iss` values.
    pub alternate_issuers: &'c [String],
    /// The token's `aud` must contain one of these.
    pub audiences: &'c [String],
    /// Algorithms a token may use.
    pub algorithms: &'c [Alg],
    /// Accepted `typ` values in normal form ([`normal_token_type`]); empty accepts any.
    pub allowed_types: &'c [String],
    /// Accepted `azp` values; empty accepts any.
    pub allowed_authorized_parties: &'c [String],
    /// Allowed clock difference for `exp`, `nbf` and `iat`, in seconds.
    pub clock_skew_seconds: u64,
    /// Longest accepted `exp - iat` (or `exp - nbf`), in seconds.
    pub max_lifetime_seconds: Option<u64>,
    /// Refuse tokens without `exp`.
    pub require_expiration: bool,
}

impl TokenPolicy<'_> {
    /// Whether `iss` is one of the policy's issuers, compared exactly.
    pub fn accepts_issuer(&self, iss: &str) -> bool {
        self.issuer == iss || self.alternate_issuers.iter().any(|other| other == iss)
    }
}

/// A `typ` value compared as RFC 7515 §4.1.9 says: media types are case-insensitive, and a value
/// without `/` stands for `application/<value>`.
pub fn normal_token_type(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) if !rest.contains('/') => rest.to_owned(),
        _ => lower,
    }
}

/// The checks that need no key: algorithm allowed, `iss`, `aud`, `typ` and `azp` when the
/// policy restricts them, times, lifetime. They run first,
/// so a token that fails them never costs a signature check or a key refetch.
///
/// Times follow Envoy's jwt_authn: a token is expired only once `now > exp + skew`, so it is still
/// valid at exactly `exp + skew`. All arithmetic saturates.
pub fn check_claims(token: &Token<'_>, policy: &TokenPolicy<'_>, now: u64) -> Result<(), Failure> {
    if !policy.algorithms.contains(&token.header.alg) {
        return Err(Failure::AlgNotAllowed);
    }
    if !token
        .registered
        .iss
        .as_deref()
        .is_some_and(|iss| policy.accepts_issuer(iss))
    {
        return Err(Failure::IssuerNotConfigured);
    }
    if !token
        .registered
        .aud
        .iter()
        .any(|aud| policy.audiences.contains(aud))
    {
        return Err(Failure::AudienceNotAllowed);
    }
    if !policy.allowed_types.is_empty() {
        let typ = token.header.typ.as_deref().map(normal_token_type);
        if !typ.is_some_and(|typ| policy.allowed_types.contains(&typ)) {
            return Err(Failure::TypeNotAllowed);
        }
    }
    if !policy.allowed_authorized_parties.is_empty() {
        let azp = token.claims.get("azp").and_then(serde_json::Value::as_str);
        if !azp.is_some_and(|azp| policy.allowed_authorized_parties.iter().any(|p| p == azp)) {
            return Err(Failure::AuthorizedPartyNotAllowed);
        }
    }

    let skew = policy.clock_skew_seconds;
    let registered = &token.registered;
    // `now` is whole seconds: a fractional `exp` is compared by its floor and `nbf`/`iat` by
    // their ceiling, which is exact (see NumericDate).
    match registered.exp {
        None if policy.require_expiration => return Err(Failure::ExpirationMissing),
        Some(exp) if now > exp.floor().saturating_add(skew) => return Err(Failure::Expired),
        _ => {}
    }
    let latest_acceptable_start = now.saturating_add(skew);
    if registered
        .nbf
        .is_some_and(|nbf| nbf.ceil() > latest_acceptable_start)
    {
        return Err(Failure::NotYetValid);
    }
    if registered
        .iat
        .is_some_and(|iat| iat.ceil() > latest_acceptable_start)
    {
        return Err(Failure::IssuedInFuture);
    }
    if let (Some(max), Some(exp)) = (policy.max_lifetime_seconds, registered.exp) {
        let start = registered
            .iat
            .or(registered.nbf)
            .unwrap_or(NumericDate::whole(now));
        if exp.exceeds_after(start, max) {
            return Err(Failure::LifetimeTooLong);
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use serde_json::{json, Value};

    use super::*;
    use crate::config::{KeySource, Provider};
    use crate::jose::token::parse;

    const ISSUER: &str = "https://issuer.example";

    fn provider() -> Provider {
        Provider {
            name: "test".into(),
            issuer: ISSUER.into(),
            audiences: vec!["api".into(), "other".into()],
            algorithms: Alg::ALL.to_vec(),
            keys: KeySource::Local {
                jwks: String::new(),
            },
            token_sources: Vec::new(),
            forward: false,
            forward_payload_header: None,
            claim_to_headers: Vec::new(),
            clock_skew_seconds: 60,
            max_lifetime_seconds: None,
            require_expiration: true,
            jwt_cache_size: 10_000,
            allowed_types: Vec::new(),
            allowed_authorized_parties: Vec::new(),
            alternate_issuers: Vec::new(),
            identity: Default::default(),
            filter_state: None,
            binding: Default::default(),
        }
    }

    /// An unsigned token (dummy signature) with this header and payload; enough for claims.
    fn unsigned(header: &Value, payload: &Value) -> String {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        )
    }

    /// check_claims on an RS256 token with `payload`.
    fn claims(payload: Value, provider: &Provider, now: u64) -> Result<(), Failure> {
        let raw = unsigned(&json!({"alg": "RS256"}), &payload);
        check_claims(&parse(&raw).unwrap(), &provider.token_policy(), now)
    }

    /// A payload that passes every check at `now` = 1000 with the default provider.
    fn good_payload() -> Value {
        json!({"iss": ISSUER, "aud": "api", "exp": 2000, "iat": 900, "nbf": 900})
    }

    fn with(mut payload: Value, name: &str, value: Value) -> Value {
        payload[name] = value;
        payload
    }

    fn without(mut payload: Value, name: &str) -> Value {
        payload.as_object_mut().unwrap().remove(name);
        payload
    }

    // A token meeting every claim check is accepted.
    #[test]
    fn claims_accepted() {
        assert_eq!(claims(good_payload(), &provider(), 1000), Ok(()));
    }

    // The token's alg must be one the provider allows.
    #[test]
    fn alg_must_be_allowed() {
        let provider = Provider {
            algorithms: vec![Alg::ES256],
            ..provider()
        };
        assert_eq!(
            claims(good_payload(), &provider, 1000),
            Err(Failure::AlgNotAllowed)
        );
    }

    // iss must equal the configured issuer exactly; a missing iss is wrong too.
    #[test]
    fn issuer_must_match_exactly() {
        for iss in [
            json!("https://issuer.example/"),
            json!("HTTPS://ISSUER.EXAMPLE"),
            json!("https://other.example"),
            json!(""),
        ] {
            assert_eq!(
                claims(with(good_payload(), "iss", iss.clone()), &provider(), 1000),
                Err(Failure::IssuerNotConfigured),
                "{iss}"
            );
        }
        assert_eq!(
            claims(without(good_payload(), "iss"), &provider(), 1000),
            Err(Failure::IssuerNotConfigured)
        );
    }

    // Every listed issuer spelling is accepted exactly; anything else is not.
    #[test]
    fn alternate_issuers_accepted() {
        let provider = Provider {
            alternate_issuers: vec!["issuer.example".into()],
            ..provider()
        };
        for iss in [ISSUER, "issuer.example"] {
            assert_eq!(
                claims(with(good_payload(), "iss", json!(iss)), &provider, 1000),
                Ok(()),
                "{iss}"
            );
        }
        for iss in [
            "ISSUER.EXAMPLE",
            "issuer.example/",
            "https://issuer.example/",
        ] {
            assert_eq!(
                claims(with(good_payload(), "iss", json!(iss)), &provider, 1000),
                Err(Failure::IssuerNotConfigured),
                "{iss}"
            );
        }
    }

    // aud must contain one of the provider's audiences; missing or empty aud is refused.
    #[test]
    fn audience_must_match() {
        for aud in [json!(["x", "other"]), json!("other"), json!(["api"])] {
            assert_eq!(
                claims(with(good_payload(), "aud", aud.clone()), &provider(), 1000),
                Ok(()),
                "{aud}"
            );
        }
        for aud in [json!("API"), json!(["x", "y"]), json!([]), json!("")] {
            assert_eq!(
                claims(with(good_payload(), "aud", aud.clone()), &provider(), 1000),
                Err(Failure::AudienceNotAllowed),
                "{aud}"
            );
        }
        assert_eq!(
            claims(without(good_payload(), "aud"), &provider(), 1000),
            Err(Failure::AudienceNotAllowed)
        );
    }

    // Checks run in order: alg, then iss, then aud, then times.
    #[test]
    fn check_order() {
        let everything_wrong = json!({"iss": "x", "aud": "x", "exp": 1});
        let only_es256 = Provider {
            algorithms: vec![Alg::ES256],
            ..provider()
        };
        assert_eq!(
            claims(everything_wrong.clone(), &only_es256, 1000),
            Err(Failure::AlgNotAllowed)
        );
        assert_eq!(
            claims(everything_wrong, &provider(), 1000),
            Err(Failure::IssuerNotConfigured)
        );
        assert_eq!(
            claims(
                json!({"iss": ISSUER, "aud": "x", "exp": 1}),
                &provider(),
                1000
            ),
            Err(Failure::AudienceNotAllowed)
        );
        // Expired wins over not-yet-valid and issued-in-future.
        let all_times_wrong =
            json!({"iss": ISSUER, "aud": "api", "exp": 1, "nbf": 5000, "iat": 5000});
        assert_eq!(
            claims(all_times_wrong, &provider(), 1000),
            Err(Failure::Expired)
        );
        let future = json!({"iss": ISSUER, "aud": "api", "exp": 9000, "nbf": 5000, "iat": 5000});
        assert_eq!(claims(future, &provider(), 1000), Err(Failure::NotYetValid));
    }

    /// check_claims on an RS256 token with header member `typ` (absent when `None`).
    fn with_typ(typ: Option<&str>, provider: &Provider) -> Result<(), Failure> {
        let header = match typ {
            Some(typ) => json!({"alg": "RS256", "typ": typ}),
            None => json!({"alg": "RS256"}),
        };
        check_claims(
            &parse(&unsigned(&header, &good_payload())).unwrap(),
            &provider.token_policy(),
            1000,
        )
    }

    // allowed_types accepts the listed typ values in any case and with or without
    // `application/`; another typ, or none, is refused as invalid.
    #[test]
    fn typ_must_be_allowed() {
        let access_tokens = Provider {
            allowed_types: vec!["at+jwt".into()],
            ..provider()
        };
        for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
            assert_eq!(with_typ(Some(typ), &access_tokens), Ok(()), "{typ}");
        }
        for typ in [Some("JWT"), Some("id+jwt"), None] {
            assert_eq!(
                with_typ(typ, &access_tokens),
                Err(Failure::TypeNotAllowed),
                "{typ:?}"
            );
        }
        assert_eq!(with_typ(None, &provider()), Ok(()));
        assert_eq!(with_typ(Some("id+jwt"), &provider()), Ok(()));
    }

    // allowed_authorized_parties needs a string azp from the list; a missing or non-string azp
    // is refused.
    #[test]
    fn azp_must_be_allowed() {
        let kserve_clients = Provider {
            allowed_authorized_parties: vec!["fraud-svc".into(), "churn-svc".into()],
            ..provider()
        };
        let payload = |azp: Value| with(good_payload(), "azp", azp);
        assert_eq!(
            claims(payload(json!("churn-svc")), &kserve_clients, 1000),
            Ok(())
        );
        for azp in [
            json!("other"),
            json!("FRAUD-SVC"),
            json!(["fraud-svc"]),
            json!(1),
        ] {
            assert_eq!(
                claims(payload(azp.clone()), &kserve_clients, 1000),
                Err(Failure::AuthorizedPartyNotAllowed),
                "{azp}"
            );
        }
        assert_eq!(
            claims(good_payload(), &kserve_clients, 1000),
            Err(Failure::AuthorizedPartyNotAllowed)
        );
        assert_eq!(claims(payload(json!("other")), &provider(), 1000), Ok(()));
    }

    // exp is required when the provider says so, optional otherwise.
    #[test]
    fn expiration_required() {
        assert_eq!(
            claims(without(good_payload(), "exp"), &provider(), 1000),
            Err(Failure::ExpirationMissing)
        );
        let lenient = Provider {
            require_expiration: false,
            jwt_cache_size: 10_000,
            ..provider()
        };
        assert_eq!(
            claims(without(good_payload(), "exp"), &lenient, 1000),
            Ok(())
        );
    }

    // Expired iff now > exp + skew: valid at exp + skew - 1 and exp + skew, expired one later.
    #[test]
    fn exp_boundary() {
        let payload = with(good_payload(), "exp", json!(2000));
        assert_eq!(claims(payload.clone(), &provider(), 2059), Ok(()));
        assert_eq!(claims(payload.clone(), &provider(), 2060), Ok(()));
        assert_eq!(
            claims(payload.clone(), &provider(), 2061),
            Err(Failure::Expired)
        );
        let no_skew = Provider {
            clock_skew_seconds: 0,
            ..provider()
        };
        assert_eq!(claims(payload.clone(), &no_skew, 1999), Ok(()));
        assert_eq!(claims(payload.clone(), &no_skew, 2000), Ok(()));
        assert_eq!(claims(payload, &no_skew, 2001), Err(Failure::Expired));
    }

    // Fractional times are judged exactly against the whole-second clock: exp 2000.5 is valid at
    // 2000 + skew and expired one second later; nbf 1500.5 is valid only from 1501 - skew.
    #[test]
    fn fractional_time_boundaries() {
        let lenient = Provider {
            clock_skew_seconds: 0,
            ..provider()
        };
        let payload = with(good_payload(), "exp", json!(2000.5));
        assert_eq!(claims(payload.clone(), &lenient, 2000), Ok(()));
        assert_eq!(claims(payload, &lenient, 2001), Err(Failure::Expired));
        let payload = without(with(good_payload(), "nbf", json!(1500.5)), "iat");
        assert_eq!(
            claims(payload.clone(), &lenient, 1500),
            Err(Failure::NotYetValid)
        );
        assert_eq!(claims(payload, &lenient, 1501), Ok(()));
        let payload = without(with(good_payload(), "iat", json!(1500.25)), "nbf");
        assert_eq!(
            claims(payload.clone(), &lenient, 1500),
            Err(Failure::IssuedInFuture)
        );
        assert_eq!(claims(payload, &lenient, 1501), Ok(()));
    }

    // Not yet valid iff nbf > now + skew: refused at nbf - skew - 1, valid from nbf - skew.
    #[test]
    fn nbf_boundary() {
        let payload = without(with(good_payload(), "nbf", json!(1500)), "iat");
        assert_eq!(
            claims(payload.clone(), &provider(), 1439),
            Err(Failure::NotYetValid)
        );
        assert_eq!(claims(payload.clone(), &provider(), 1440), Ok(()));
        assert_eq!(claims(payload, &provider(), 1441), Ok(()));
    }

    // Issued in the future iff iat > now + skew: refused at iat - skew - 1, valid from iat - skew.
    #[test]
    fn iat_boundary() {
        let payload = without(with(good_payload(), "iat", json!(1500)), "nbf");
        assert_eq!(
            claims(payload.clone(), &provider(), 1439),
            Err(Failure::IssuedInFuture)
        );
        assert_eq!(claims(payload.clone(), &provider(), 1440), Ok(()));
        assert_eq!(claims(payload, &provider(), 1441), Ok(()));
    }

    // Lifetime exp - iat may equal the maximum but not exceed it.
    #[test]
    fn max_lifetime_boundary_with_iat() {
        let provider = Provider {
            max_lifetime_seconds: Some(3600),
            ..provider()
        };
        for (exp, expected) in [
            (900 + 3599, Ok(())),
            (900 + 3600, Ok(())),
            (900 + 3601, Err(Failure::LifetimeTooLong)),
        ] {
            let payload = with(good_payload(), "exp", json!(exp));
            assert_eq!(claims(payload, &provider, 1000), expected, "exp {exp}");
        }
    }

    // Without iat the lifetime starts at nbf; without either it starts now.
    #[test]
    fn max_lifetime_start() {
        let provider = Provider {
            max_lifetime_seconds: Some(3600),
            ..provider()
        };
        let from_nbf = without(good_payload(), "iat");
        assert_eq!(
            claims(with(from_nbf.clone(), "exp", json!(4500)), &provider, 1000),
            Ok(())
        );
        assert_eq!(
            claims(with(from_nbf, "exp", json!(4501)), &provider, 1000),
            Err(Failure::LifetimeTooLong)
        );
        let from_now = without(without(good_payload(), "iat"), "nbf");
        assert_eq!(
            claims(with(from_now.clone(), "exp", json!(4600)), &provider, 1000),
            Ok(())
        );
        assert_eq!(
            claims(with(from_now, "exp", json!(4601)), &provider, 1000),
            Err(Failure::LifetimeTooLong)
        );
        // iat takes precedence over nbf.
        let both = json!({"iss": ISSUER, "aud": "api", "iat": 500, "nbf": 1000, "exp": 4101});
        assert_eq!(claims(both, &provider, 1000), Err(Failure::LifetimeTooLong));
        // No lifetime limit without exp.
        let lenient = Provider {
            require_expiration: false,
            jwt_cache_size: 10_000,
            ..provider
        };
        assert_eq!(
            claims(without(good_payload(), "exp"), &lenient, 1000),
            Ok(())
        );
    }

    // Extreme values saturate instead of overflowing or panicking.
    #[test]
    fn extreme_times_do_not_overflow() {
        // The largest time a token may carry; skew and `now` go all the way to u64::MAX.
        let max = i64::MAX as u64;
        let huge_skew = Provider {
            clock_skew_seconds: u64::MAX,
            max_lifetime_seconds: Some(u64::MAX),
            ..provider()
        };
        let payload = json!({"iss": ISSUER, "aud": "api", "exp": max, "nbf": max, "iat": max});
        assert_eq!(claims(payload.clone(), &huge_skew, u64::MAX), Ok(()));
        assert_eq!(claims(payload.clone(), &huge_skew, 0), Ok(()));
        assert_eq!(claims(payload, &provider(), max), Ok(()));
        let limited = Provider {
            max_lifetime_seconds: Some(3600),
            ..provider()
        };
        let forever = json!({"iss": ISSUER, "aud": "api", "exp": max, "iat": 0});
        assert_eq!(claims(forever, &limited, 0), Err(Failure::LifetimeTooLong));
        let past = json!({"iss": ISSUER, "aud": "api", "exp": 0, "iat": max});
        assert_eq!(
            claims(past, &huge_skew, u64::MAX),
            Ok(()),
            "exp + skew saturates at u64::MAX, and now == u64::MAX is not after it"
        );
    }
}
