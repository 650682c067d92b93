//! The identity fields of a provider (`allowed_hosted_domains`, `allowed_email_domains`,
//! `allowed_emails`, `require_email_verified`, `iap_identity_headers`) into an
//! [`IdentityPolicy`].

use super::node::{ConfigError, Node, Object};
use crate::policy::identity::IdentityPolicy;

/// Provider fields this module reads.
pub const FIELDS: [&str; 5] = [
    "require_email_verified",
    "allowed_hosted_domains",
    "allowed_email_domains",
    "allowed_emails",
    "iap_identity_headers",
];

/// Reads the identity fields of one provider. `require_email_verified` defaults to true when an
/// email restriction is configured: an allow-list of addresses means nothing if the address is
/// not known to belong to the caller. A preset may set it the other way: IAP assertions carry no
/// `email_verified`, their `email` being that of the account IAP authenticated.
pub(crate) fn compile(object: &Object<'_>) -> Result<IdentityPolicy, ConfigError> {
    let allowed_hosted_domains = domain_list(object, "allowed_hosted_domains")?;
    let allowed_email_domains = domain_list(object, "allowed_email_domains")?;
    let allowed_emails = match object.get("allowed_emails") {
        None => Vec::new(),
        Some(list) => {
            let mut emails = Vec::new();
            for item in list.non_empty_array()? {
                let email = item.non_empty_string()?.to_ascii_lowercase();
                let valid = match email.split_once('@') {
                    Some((local, domain)) => !local.is_empty() && is_domain(domain),
                    None => false,
                };
                if !valid {
                    return Err(item.error(
                        "is not an email address; expected user@domain (allowed_email_domains \
                         takes whole domains)",
                    ));
                }
                push_unique(&mut emails, email, &item)?;
            }
            emails
        }
    };
    let restricts_email = !allowed_email_domains.is_empty() || !allowed_emails.is_empty();
    let require_email_verified = match object.get("require_email_verified") {
        None => restricts_email,
        Some(node) => node.boolean()?,
    };
    let iap_identity_headers = match object.get("iap_identity_headers") {
        None => false,
        Some(node) => node.boolean()?,
    };
    Ok(IdentityPolicy {
        require_email_verified,
        allowed_hosted_domains,
        allowed_email_domains,
        allowed_emails,
        iap_identity_headers,
    })
}

fn domain_list(object: &Object<'_>, field: &str) -> Result<Vec<String>, ConfigError> {
    let Some(list) = object.get(field) else {
        return Ok(Vec::new());
    };
    let mut domains = Vec::new();
    for item in list.non_empty_array()? {
        let domain = item.non_empty_string()?.to_ascii_lowercase();
        if !is_domain(&domain) {
            return Err(item.error(
                "is not a domain name; expected a name like \"example.com\" (no \"@\", no \
                 scheme, no wildcard)",
            ));
        }
        push_unique(&mut domains, domain, &item)?;
    }
    Ok(domains)
}

fn push_unique(list: &mut Vec<String>, value: String, node: &Node<'_>) -> Result<(), ConfigError> {
    if list.contains(&value) {
        return Err(node.error("is listed twice"));
    }
    list.push(value);
    Ok(())
}

/// Letters, digits and hyphens in dot-separated labels, none of them empty.
fn is_domain(text: &str) -> bool {
    !text.is_empty()
        && text.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}
