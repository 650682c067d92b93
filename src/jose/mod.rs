//! JOSE as received: strict JSON and compact JWS tokens, parsed from the raw text.

pub mod alg;
pub mod json;
pub mod token;
