//! kserve-auth-filter: a proxy-wasm filter that authenticates KServe inference requests with JWTs.
//!
//! Everything except `filter` is an ordinary Rust library with no proxy-wasm dependency, so it is
//! unit-tested natively. `filter` is the only module that talks to the host: it translates host
//! callbacks into calls on the core and the core's outcomes back into host actions.

pub mod claims;
pub mod config;
pub mod decision;
pub mod extract;
pub mod failure;
pub mod gauges;
pub mod header_map;
pub mod identity;
pub mod json;
pub mod jwks;
pub mod keys;
pub mod metadata;
pub mod model;
pub mod path;
pub mod preset;
pub mod request;
pub mod rsa;
pub mod rules;
pub mod shared;
pub mod signature;
pub mod token;
pub mod token_cache;
pub mod uri;
pub mod verify;

#[cfg(target_arch = "wasm32")]
mod filter;
