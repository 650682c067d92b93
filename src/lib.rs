//! kserve-auth-filter: a proxy-wasm filter that authenticates KServe inference requests with JWTs.
//!
//! Everything except `filter` is an ordinary Rust library with no proxy-wasm dependency, so it is
//! unit-tested natively. `filter` is the only module that talks to the host: it translates host
//! callbacks into calls on the core and the core's outcomes back into host actions.
//!
//! The folders are the layers, each importing only from those listed before it (`make
//! layout-check` enforces it): `failure`, `jose`, `crypto`, `request`, `policy`, `config`, `keys`,
//! `decision`, `gauges`, `filter`.

pub mod config;
pub mod crypto;
pub mod decision;
pub mod failure;
pub mod gauges;
pub mod jose;
pub mod keys;
pub mod policy;
pub mod request;

#[cfg(target_arch = "wasm32")]
mod filter;
