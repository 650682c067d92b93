//! Signature checks: RSA arithmetic, public keys, and the wire format of the host's
//! `verify_signature`.

pub mod host_wire;
pub mod key;
pub mod rsa;
pub mod verify;
