//! Signing keys: JWKS documents into key sets, the per-provider fetch state machine, and the
//! records VMs share about fetches.

pub mod coordinator;
pub mod jitter;
pub mod jwks;
pub mod shared;
pub mod store;
