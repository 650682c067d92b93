//! The host side of key fetches and of the DPoP replay check: shared data and HTTP callouts, for
//! the core's [`FetchCoordinator`](crate::keys::coordinator::FetchCoordinator) and
//! [`ReplayGuard`](crate::decision::replay).

use std::time::Duration;

use proxy_wasm::hostcalls;

use super::host;
use crate::config::HttpFetch;
use crate::keys::coordinator::FetchHost;
use crate::keys::shared::{SharedData, WriteError};

/// The host's shared data. Failures are logged here, where the host's own words are known; the
/// callers fall back (a fetch without a lease) or fail closed (a DPoP proof is refused).
pub struct HostSharedData;

impl SharedData for HostSharedData {
    fn shared_get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String> {
        host::shared_data(key).map_err(|error| {
            log::warn!("shared data unavailable: {error}");
            error.to_string()
        })
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError> {
        host::set_shared_data(key, value, cas).map_err(|error| {
            if error.is_cas_mismatch() {
                WriteError::CasMismatch
            } else {
                log::warn!("cannot write shared data: {error}");
                WriteError::Refused(error.to_string())
            }
        })
    }
}

/// The host, as the fetch coordinator uses it: when shared data fails, key fetches are not
/// shared between VMs, and each VM fetches for itself.
pub struct HostFetch;

impl SharedData for HostFetch {
    fn shared_get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String> {
        HostSharedData.shared_get(key)
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError> {
        HostSharedData.shared_set(key, value, cas)
    }
}

impl FetchHost for HostFetch {
    fn dispatch(&mut self, request: &HttpFetch) -> Result<u32, String> {
        let headers = vec![
            (":method", "GET"),
            (":path", request.path.as_str()),
            (":authority", request.authority.as_str()),
            ("accept", "application/json"),
        ];
        hostcalls::dispatch_http_call(
            &request.cluster,
            headers,
            None,
            vec![],
            Duration::from_millis(request.timeout_ms),
        )
        .map_err(|status| {
            log::warn!(
                "cannot fetch keys through cluster {:?}: {status:?}",
                request.cluster
            );
            format!("{status:?}")
        })
    }
}
