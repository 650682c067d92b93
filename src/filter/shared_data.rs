//! Host shared data for key fetches: the lease that lets one VM fetch a key source while the
//! others wait, and the published result they adopt.

use super::host;
use crate::keys::shared::{self, Channel, FetchRecord};

/// Who fetches a key source now.
pub enum Lease {
    /// This VM: it must fetch and then publish.
    Acquired,
    /// Another VM, until this instant (milliseconds since the epoch).
    HeldUntil(u64),
}

/// Tries to take the fetch lease of `channel` until `deadline_ms`. When the host's shared data
/// fails, this VM fetches on its own: an extra fetch beats requests that never get keys.
pub fn acquire(channel: &Channel, now_ms: u64, deadline_ms: u64) -> Lease {
    let key = &channel.lease_key;
    for _ in 0..3 {
        let (value, cas) = match host::shared_data(key) {
            Ok(found) => found,
            Err(error) => {
                log::warn!("shared data unavailable ({error}); fetching without a lease");
                return Lease::Acquired;
            }
        };
        let held_until = value
            .as_deref()
            .map_or(0, |value| shared::decode_lease(value, now_ms));
        if held_until > now_ms {
            return Lease::HeldUntil(held_until);
        }
        match host::set_shared_data(key, &shared::encode_lease(deadline_ms), cas) {
            Ok(()) => return Lease::Acquired,
            // Another VM changed the lease between our read and write: read it again.
            Err(error) if error.is_cas_mismatch() => continue,
            Err(error) => {
                log::warn!("cannot take the fetch lease ({error}); fetching without it");
                return Lease::Acquired;
            }
        }
    }
    Lease::HeldUntil(deadline_ms)
}

/// Whether nobody holds the lease of `channel` at `now_ms`: released or lapsed. `false` when
/// shared data cannot be read, so a waiting VM keeps waiting until its own deadline.
pub fn lease_free(channel: &Channel, now_ms: u64) -> bool {
    match host::shared_data(&channel.lease_key) {
        Ok((value, _)) => {
            value
                .as_deref()
                .map_or(0, |value| shared::decode_lease(value, now_ms))
                <= now_ms
        }
        Err(_) => false,
    }
}

/// Extends a lease this VM holds (a discovery fetch is followed by the JWKS fetch).
pub fn extend(channel: &Channel, deadline_ms: u64) {
    let lease = shared::encode_lease(deadline_ms);
    if let Err(error) = host::set_shared_data(&channel.lease_key, &lease, None) {
        log::debug!("cannot extend the fetch lease: {error}");
    }
}

/// Frees a lease so the next due fetch, by any VM, can start at once.
pub fn release(channel: &Channel) {
    if let Err(error) = host::set_shared_data(&channel.lease_key, &shared::encode_lease(0), None) {
        log::debug!("cannot release the fetch lease: {error}");
    }
}

/// The last result published on `channel` that reads as this filter's own record.
pub fn read(channel: &Channel, now_ms: u64) -> Option<FetchRecord> {
    let (value, _) = host::shared_data(&channel.result_key).ok()?;
    FetchRecord::decode(&value?, channel, now_ms)
}

/// Publishes this VM's fetch result. `make` builds the record from the sequence currently
/// published, so concurrent publishers never reuse a number.
pub fn publish(channel: &Channel, now_ms: u64, mut make: impl FnMut(u64) -> Option<FetchRecord>) {
    for _ in 0..3 {
        let (value, cas) = match host::shared_data(&channel.result_key) {
            Ok(found) => found,
            Err(error) => {
                log::warn!("cannot publish keys to other workers: {error}");
                return;
            }
        };
        let last = value
            .as_deref()
            .and_then(|value| FetchRecord::decode(value, channel, now_ms))
            .map_or(0, |record| record.sequence);
        let Some(record) = make(last) else {
            return;
        };
        match host::set_shared_data(&channel.result_key, &record.encode(channel), cas) {
            Ok(()) => return,
            Err(error) if error.is_cas_mismatch() => continue,
            Err(error) => {
                log::warn!("cannot publish keys to other workers: {error}");
                return;
            }
        }
    }
    log::warn!("could not publish keys to other workers after 3 attempts");
}
