//! End-to-end harness: a real Envoy loading the filter, a key server and an echoing upstream,
//! all on loopback ports chosen at run time, so tests run in parallel.
//!
//! Paths come from `ENVOY_BIN` and `FILTER_WASM` (set by `make test`), defaulting to
//! `.venv/envoy/bin/envoy` and `target/kserve_auth_filter.wasm`.

pub mod browser;
pub mod cli;
pub mod demo;
pub mod ecdsa;
pub mod echo;
pub mod envoy;
pub mod h2c;
pub mod http;
pub mod jwks_server;
pub mod keycloak;
pub mod keys;
pub mod raw_rsa;
pub mod server;
pub mod shipped;
pub mod stack;

pub use echo::{Echo, EchoUpstream};
pub use envoy::{poll, Envoy, EnvoyConfig};
pub use http::Response;
pub use jwks_server::JwksServer;
pub use keys::{good_claims, jwks, TestKey, AUDIENCE, ISSUER};
pub use stack::*;
