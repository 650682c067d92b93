//! Signature checks through Envoy's `verify_signature` foreign function (BoringSSL, native speed)
//! for RS256/384/512 and ES256/384, and through the plugin's pure-Rust code for everything else or
//! when the host cannot help.

use std::cell::Cell;

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

use crate::crypto::host_wire::{self, HostRequest, FOREIGN_FUNCTION};
use crate::crypto::key::Key;
use crate::crypto::verify::{PureRustCrypto, SignatureCheck};
use crate::jose::alg::Alg;
use crate::jose::token::Token;

/// The signature checker of one worker.
#[derive(Debug)]
pub struct HostCrypto {
    /// Whether `verify_signature` passed its self-test and may be used.
    host: bool,
    /// Whether a failed host call has been reported already; later ones are logged at debug.
    warned: Cell<bool>,
}

impl HostCrypto {
    /// Decides once, at configure time, which path checks signatures, and logs it. `enabled` is
    /// the configuration's `host_crypto`.
    pub fn detect(enabled: bool) -> HostCrypto {
        let host = if enabled {
            host_passes_self_test()
        } else {
            log::info!("signature checks: pure Rust (host_crypto is false)");
            false
        };
        HostCrypto {
            host,
            warned: Cell::new(false),
        }
    }

    fn warn_once(&self, status: Status) {
        if self.warned.replace(true) {
            log::debug!("host {FOREIGN_FUNCTION} failed ({status:?}); checked in pure Rust");
        } else {
            log::warn!(
                "host {FOREIGN_FUNCTION} failed ({status:?}); checking this signature in pure \
                 Rust (reported once)"
            );
        }
    }
}

impl SignatureCheck for HostCrypto {
    fn check(&self, alg: Alg, key: &Key, token: &Token<'_>) -> bool {
        if !self.host {
            return PureRustCrypto.check(alg, key, token);
        }
        match host_wire::host_request(alg, key, token) {
            HostRequest::NotForHost => PureRustCrypto.check(alg, key, token),
            HostRequest::Invalid => false,
            // An answer that does not decode counts as "not verified": fail closed. A failed call
            // says nothing about the signature, so it is checked here instead.
            HostRequest::Ask(arguments) => match host_verifies(&arguments) {
                Ok(verified) => verified,
                Err(status) => {
                    self.warn_once(status);
                    PureRustCrypto.check(alg, key, token)
                }
            },
        }
    }
}

/// Calls `verify_signature` with a genuine and a forged ES256 signature; the host is used only
/// when it accepts the first and refuses the second.
fn host_passes_self_test() -> bool {
    let Some(test) = host_wire::self_test_arguments() else {
        log::warn!("signature checks: pure Rust (self-test arguments unavailable)");
        return false;
    };
    match host_verifies(&test.genuine) {
        Err(Status::NotFound) => {
            log::info!("signature checks: pure Rust (the host has no {FOREIGN_FUNCTION})");
            false
        }
        Err(status) => {
            log::warn!(
                "signature checks: pure Rust (host {FOREIGN_FUNCTION} failed its self-test: \
                 {status:?})"
            );
            false
        }
        Ok(false) => {
            log::warn!(
                "signature checks: pure Rust (host {FOREIGN_FUNCTION} refused a valid signature \
                 in its self-test)"
            );
            false
        }
        Ok(true) => match host_verifies(&test.forged) {
            Ok(false) => {
                log::info!(
                    "signature checks: host {FOREIGN_FUNCTION} for RS256/384/512 and ES256/384, \
                     pure Rust for PS256/384/512 and EdDSA"
                );
                true
            }
            other => {
                log::warn!(
                    "signature checks: pure Rust (host {FOREIGN_FUNCTION} did not refuse a forged \
                     signature in its self-test: {other:?})"
                );
                false
            }
        },
    }
}

/// One host call; `Ok(true)` only for an answer that decodes and says verified.
fn host_verifies(arguments: &[u8]) -> Result<bool, Status> {
    let answer = hostcalls::call_foreign_function(FOREIGN_FUNCTION, Some(arguments))?;
    Ok(
        host_wire::decode_result(answer.as_deref().unwrap_or_default())
            .is_some_and(|result| result.verified),
    )
}
