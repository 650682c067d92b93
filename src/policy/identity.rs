//! Who a verified token names: `email_verified`, allowed hosted domains (`hd`) and email
//! addresses or domains, and the identity headers Google's Identity-Aware Proxy itself sets.
//!
//! These checks run after the signature check: a domain or user restriction is an authorization
//! decision about an authenticated identity, so a forged token is refused as invalid before its
//! claims are judged.

use serde_json::{Map, Value};

use crate::failure::Failure;

/// Header IAP sets to `accounts.google.com:<email>`.
pub const IAP_EMAIL_HEADER: &str = "x-goog-authenticated-user-email";
/// Header IAP sets to the user's id, the assertion's `sub`.
pub const IAP_ID_HEADER: &str = "x-goog-authenticated-user-id";
/// Every header of this family is removed from incoming requests when the filter sets the
/// identity headers, so that no client-made variant reaches the model server either.
pub const IAP_HEADER_PREFIX: &str = "x-goog-authenticated-user-";
/// The namespace IAP puts before a Google account's email.
const GOOGLE_ACCOUNTS_NAMESPACE: &str = "accounts.google.com:";

/// What a provider demands of a verified token's identity claims, and which identity headers it
/// sets. The default demands nothing and sets nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityPolicy {
    /// A token carrying `email` must carry `email_verified: true`.
    pub require_email_verified: bool,
    /// When not empty, `hd` must be one of these (lower-case).
    pub allowed_hosted_domains: Vec<String>,
    /// With `allowed_emails`: when either is not empty, `email` must be one of `allowed_emails`
    /// or have its domain in this list (lower-case).
    pub allowed_email_domains: Vec<String>,
    /// Allowed email addresses (lower-case).
    pub allowed_emails: Vec<String>,
    /// Set [`IAP_EMAIL_HEADER`] and [`IAP_ID_HEADER`] from the verified claims.
    pub iap_identity_headers: bool,
}

impl IdentityPolicy {
    /// Whether an email restriction is configured.
    pub fn restricts_email(&self) -> bool {
        !self.allowed_email_domains.is_empty() || !self.allowed_emails.is_empty()
    }
}

/// Judges the identity claims of a token whose signature was verified.
///
/// `email_verified` is checked first (401: the token does not establish the email), then the
/// hosted domain, then the email (403: the identity is established but not allowed).
pub fn check(policy: &IdentityPolicy, claims: &Map<String, Value>) -> Result<(), Failure> {
    if policy.require_email_verified
        && claims.contains_key("email")
        && claims.get("email_verified") != Some(&Value::Bool(true))
    {
        return Err(Failure::EmailNotVerified);
    }
    if !policy.allowed_hosted_domains.is_empty() {
        let hosted_domain = claims.get("hd").and_then(Value::as_str);
        if !hosted_domain
            .is_some_and(|hd| contains_ignoring_case(&policy.allowed_hosted_domains, hd))
        {
            return Err(Failure::HostedDomainNotAllowed);
        }
    }
    if policy.restricts_email() {
        let email = claims.get("email").and_then(Value::as_str);
        if !email.is_some_and(|email| email_allowed(policy, email)) {
            return Err(Failure::EmailNotAllowed);
        }
    }
    Ok(())
}

fn contains_ignoring_case(list: &[String], value: &str) -> bool {
    list.iter().any(|item| item.eq_ignore_ascii_case(value))
}

fn email_allowed(policy: &IdentityPolicy, email: &str) -> bool {
    if contains_ignoring_case(&policy.allowed_emails, email) {
        return true;
    }
    // The domain is what follows the last `@`; an address must have a local part before it.
    match email.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() => {
            contains_ignoring_case(&policy.allowed_email_domains, domain)
        }
        _ => false,
    }
}

/// The identity headers for a verified token: `accounts.google.com:<email>` and the `sub`, as IAP
/// sends them. A claim that is missing, not a string or not a valid header value sets nothing.
pub fn headers(policy: &IdentityPolicy, claims: &Map<String, Value>) -> Vec<(String, String)> {
    if !policy.iap_identity_headers {
        return Vec::new();
    }
    let header_safe = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .filter(|value| !value.is_empty() && !value.chars().any(char::is_control))
    };
    let mut headers = Vec::with_capacity(2);
    if let Some(email) = header_safe("email") {
        headers.push((
            IAP_EMAIL_HEADER.to_owned(),
            format!("{GOOGLE_ACCOUNTS_NAMESPACE}{email}"),
        ));
    }
    if let Some(sub) = header_safe("sub") {
        headers.push((IAP_ID_HEADER.to_owned(), sub.to_owned()));
    }
    headers
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn policy() -> IdentityPolicy {
        IdentityPolicy::default()
    }

    // The default policy accepts any claims, even an unverified email.
    #[test]
    fn default_policy_checks_nothing() {
        let unverified = claims(json!({"email": "a@example.com", "email_verified": false}));
        assert_eq!(check(&policy(), &unverified), Ok(()));
        assert_eq!(check(&policy(), &claims(json!({}))), Ok(()));
    }

    // With require_email_verified, a token with an email needs email_verified exactly true.
    #[test]
    fn email_must_be_verified_when_present() {
        let policy = IdentityPolicy {
            require_email_verified: true,
            ..policy()
        };
        let verified = claims(json!({"email": "a@example.com", "email_verified": true}));
        assert_eq!(check(&policy, &verified), Ok(()));
        for email_verified in [json!(false), json!("true"), json!(1), json!(null)] {
            let token = claims(json!({"email": "a@example.com", "email_verified": email_verified}));
            assert_eq!(
                check(&policy, &token),
                Err(Failure::EmailNotVerified),
                "{email_verified}"
            );
        }
        let missing = claims(json!({"email": "a@example.com"}));
        assert_eq!(check(&policy, &missing), Err(Failure::EmailNotVerified));
        // A token without an email (no `email` scope) uses no email, so there is nothing to verify.
        assert_eq!(check(&policy, &claims(json!({"sub": "1"}))), Ok(()));
    }

    // hd must be one of the allowed hosted domains, compared without case; a missing hd fails.
    #[test]
    fn hosted_domain_must_be_allowed() {
        let policy = IdentityPolicy {
            allowed_hosted_domains: vec!["example.com".into()],
            ..policy()
        };
        assert_eq!(
            check(&policy, &claims(json!({"hd": "example.com"}))),
            Ok(())
        );
        assert_eq!(
            check(&policy, &claims(json!({"hd": "Example.COM"}))),
            Ok(())
        );
        for hd in [
            json!("sub.example.com"),
            json!("example.org"),
            json!(["example.com"]),
        ] {
            assert_eq!(
                check(&policy, &claims(json!({"hd": hd}))),
                Err(Failure::HostedDomainNotAllowed),
                "{hd}"
            );
        }
        // A consumer account has no hd at all.
        assert_eq!(
            check(&policy, &claims(json!({"email": "a@example.com"}))),
            Err(Failure::HostedDomainNotAllowed)
        );
    }

    // An email passes when it is an allowed address or its domain is an allowed email domain.
    #[test]
    fn email_must_be_an_allowed_address_or_domain() {
        let policy = IdentityPolicy {
            allowed_email_domains: vec!["example.com".into()],
            allowed_emails: vec!["bob@partner.org".into()],
            ..policy()
        };
        for email in ["alice@example.com", "ALICE@Example.Com", "bob@partner.org"] {
            assert_eq!(
                check(&policy, &claims(json!({"email": email}))),
                Ok(()),
                "{email}"
            );
        }
        for email in [
            "carol@partner.org",
            "alice@sub.example.com",
            "alice@example.com.evil.test",
            "example.com",
            "@example.com",
            "alice@evil.test@example.org",
        ] {
            assert_eq!(
                check(&policy, &claims(json!({"email": email}))),
                Err(Failure::EmailNotAllowed),
                "{email}"
            );
        }
        assert_eq!(
            check(&policy, &claims(json!({"sub": "1"}))),
            Err(Failure::EmailNotAllowed)
        );
        assert_eq!(
            check(&policy, &claims(json!({"email": 7}))),
            Err(Failure::EmailNotAllowed)
        );
    }

    // An address with several @ is judged by what follows the last one.
    #[test]
    fn email_domain_is_after_the_last_at() {
        let policy = IdentityPolicy {
            allowed_email_domains: vec!["example.com".into()],
            ..policy()
        };
        assert_eq!(
            check(&policy, &claims(json!({"email": "\"a@b\"@example.com"}))),
            Ok(())
        );
    }

    // email_verified is judged before the hosted domain, and the domain before the email.
    #[test]
    fn check_order() {
        let policy = IdentityPolicy {
            require_email_verified: true,
            allowed_hosted_domains: vec!["example.com".into()],
            allowed_emails: vec!["a@example.com".into()],
            ..policy()
        };
        let all_wrong =
            claims(json!({"email": "x@evil.test", "email_verified": false, "hd": "evil.test"}));
        assert_eq!(check(&policy, &all_wrong), Err(Failure::EmailNotVerified));
        let verified =
            claims(json!({"email": "x@evil.test", "email_verified": true, "hd": "evil.test"}));
        assert_eq!(
            check(&policy, &verified),
            Err(Failure::HostedDomainNotAllowed)
        );
        let in_domain =
            claims(json!({"email": "x@evil.test", "email_verified": true, "hd": "example.com"}));
        assert_eq!(check(&policy, &in_domain), Err(Failure::EmailNotAllowed));
    }

    // IAP headers carry the email in IAP's accounts.google.com namespace and sub as it is.
    #[test]
    fn iap_headers_from_claims() {
        let policy = IdentityPolicy {
            iap_identity_headers: true,
            ..policy()
        };
        let token =
            claims(json!({"email": "alice@example.com", "sub": "accounts.google.com:1234"}));
        assert_eq!(
            headers(&policy, &token),
            vec![
                (
                    IAP_EMAIL_HEADER.to_string(),
                    "accounts.google.com:alice@example.com".to_string()
                ),
                (
                    IAP_ID_HEADER.to_string(),
                    "accounts.google.com:1234".to_string()
                ),
            ]
        );
    }

    // No header is set when the policy does not ask for them, or from unusable claim values.
    #[test]
    fn iap_headers_only_from_usable_claims() {
        let token = claims(json!({"email": "alice@example.com", "sub": "1"}));
        assert!(headers(&policy(), &token).is_empty());
        let policy = IdentityPolicy {
            iap_identity_headers: true,
            ..policy()
        };
        let unusable = claims(json!({"email": "a@b.c\r\nx-admin: 1", "sub": 42}));
        assert!(headers(&policy, &unusable).is_empty());
        assert!(headers(&policy, &claims(json!({"email": ""}))).is_empty());
    }
}
