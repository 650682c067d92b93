//! The host side of key fetches: shared data and HTTP callouts, for the core's
//! [`FetchCoordinator`](crate::keys::coordinator::FetchCoordinator).

use std::time::Duration;

use proxy_wasm::hostcalls;

use super::host;
use crate::config::HttpFetch;
use crate::keys::coordinator::{FetchHost, WriteError};

/// The host, as the fetch coordinator uses it. Failures are logged here, where the host's own
/// words are known; the coordinator falls back (fetching without a lease, not publishing).
pub struct HostFetch;

impl FetchHost for HostFetch {
    fn shared_get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String> {
        host::shared_data(key).map_err(|error| {
            log::warn!("shared data unavailable ({error}); key fetches are not shared");
            error.to_string()
        })
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError> {
        host::set_shared_data(key, value, cas).map_err(|error| {
            if error.is_cas_mismatch() {
                WriteError::CasMismatch
            } else {
                log::warn!("cannot write shared data ({error}); key fetches are not shared");
                WriteError::Refused(error.to_string())
            }
        })
    }

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
