//! What a verified token must satisfy beyond its signature: claim conditions and identity checks.

pub mod claims;
pub mod identity;
pub mod token_policy;
