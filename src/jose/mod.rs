//! JOSE as received: strict JSON, compact JWS tokens parsed from the raw text, and the thumbprints
//! sender-constrained tokens are bound by.

pub mod alg;
pub mod json;
pub mod thumbprint;
pub mod token;
