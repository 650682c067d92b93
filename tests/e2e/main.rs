//! Every end-to-end test in one binary, one module per area: a real Envoy with the built module,
//! and the real key servers, model servers and providers each area needs, all on loopback ports
//! chosen at run time so the tests run in parallel. The harness is `support/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod body_models;
mod bounds;
mod callers;
mod demo;
mod differential;
mod envoy_configs;
mod filter;
mod google;
mod hardening;
mod harness;
mod host_crypto;
mod hosts;
mod keycloak;
mod memory;
mod models;
mod paths;
mod reconfigure;
mod sender;
mod workers;
