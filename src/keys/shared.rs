//! What the VMs of one Envoy (one per worker thread, plus the main thread's) share about a key
//! source, through the host's shared data: a lease that lets one VM fetch while the others wait,
//! and the result of the last fetch, which the others adopt instead of fetching themselves.
//!
//! Trust boundary: every plugin loaded into VMs with the same `vm_id` shares one shared-data
//! space, and Istio gives every WasmPlugin the same (empty) `vm_id`. A co-resident plugin is
//! trusted code, but its bugs must not become this filter's keys. So key names are a digest of
//! this configuration and the whole source identity (no two sources or configurations share one
//! by accident), and every record carries a tag over its content keyed by the same digest: a value
//! that another plugin or another build wrote reads as absent, never as keys. Sequence numbers and
//! times are bounded, so no value can stop sharing for good.
//!
//! Values are small binary records with a version byte, so a VM running another build of the
//! filter reads a record it does not understand as absent rather than misreading it.

use crate::config::{HttpFetch, KeySource};

/// A shared-data write that did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// Another VM wrote the key since it was read.
    CasMismatch,
    /// The host refused, for this reason.
    Refused(String),
}

/// The host's shared data: one key-value space for every VM of one Envoy, with compare-and-swap.
pub trait SharedData {
    /// A shared-data value and its compare-and-swap token; `(None, None)` when absent.
    fn shared_get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String>;
    /// Writes a shared-data value; with `cas`, only if nobody wrote it since that token.
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), WriteError>;
}

const RECORD_VERSION: u8 = 2;
const HEADER_LEN: usize = 1 + 8 + 8 + 8 + 1;
const TAG_LEN: usize = 16;
/// Largest sequence number a record may carry: far beyond any number of fetches, far below
/// `u64::MAX`, so numbering never saturates.
pub const MAX_SEQUENCE: u64 = 1 << 53;
/// A lease lasting longer than this from now was not written by this filter (fetch timeouts are
/// at most 60 s): it is ignored rather than obeyed.
pub const MAX_LEASE_MS: u64 = 120_000;
/// A record from further in the future than this is not trusted (clocks of one host's VMs agree).
const MAX_CLOCK_AHEAD_MS: u64 = 60_000;

/// Where one key source's fetch result and fetch lease live in shared data, for one
/// configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// Key of the published fetch result.
    pub result_key: String,
    /// Key of the fetch lease.
    pub lease_key: String,
    /// Keys the records' tags: SHA-256 of the configuration and the source identity.
    scope: [u8; 32],
}

/// The shared-data channel of a key source under the configuration whose bytes hash to
/// `configuration_digest`; `None` for inline keys, which need no fetch. Providers of one
/// configuration that fetch the same URL through the same cluster share a channel.
pub fn channel(configuration_digest: &[u8; 32], source: &KeySource) -> Option<Channel> {
    let (kind, fetch): (&str, &HttpFetch) = match source {
        KeySource::Remote { jwks, .. } => ("jwks", jwks),
        KeySource::Discovery { discovery, .. } => ("discovery", discovery),
        KeySource::Local { .. } => return None,
    };
    let mut hash = hmac_sha256::Hash::new();
    hash.update(b"kserve_auth shared-data channel v2\0");
    hash.update(configuration_digest);
    // Each part with its length, so no two identities run together into one.
    for part in [kind, &fetch.cluster, &fetch.authority, &fetch.path] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    let scope = hash.finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let name: String = scope
        .iter()
        .take(16)
        .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]])
        .map(char::from)
        .collect();
    let result_key = format!("kserve_auth.v2.{kind}.{name}");
    Some(Channel {
        lease_key: format!("{result_key}.lease"),
        result_key,
        scope,
    })
}

impl Channel {
    fn tag(&self, content: &[u8]) -> [u8; TAG_LEN] {
        let mut hash = hmac_sha256::Hash::new();
        hash.update(self.scope);
        hash.update(content);
        let digest = hash.finalize();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&digest[..TAG_LEN]);
        tag
    }
}

/// The outcome of one fetch, as published for the other VMs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRecord {
    /// Increases with every publication, so a VM adopts each result once.
    pub sequence: u64,
    /// When the fetch finished, in milliseconds since the epoch; adopted keys expire relative
    /// to it, not to when a VM read the record.
    pub fetched_at_ms: u64,
    /// Latest unknown-`kid` refetch, so the 30-second limit holds across VMs.
    pub unknown_kid_refetch_ms: u64,
    /// The JWKS document, or why the fetch failed.
    pub result: Result<Vec<u8>, String>,
}

impl FetchRecord {
    /// Binary form for shared data on `channel`, tagged.
    pub fn encode(&self, channel: &Channel) -> Vec<u8> {
        let payload: &[u8] = match &self.result {
            Ok(body) => body,
            Err(reason) => reason.as_bytes(),
        };
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.push(RECORD_VERSION);
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.fetched_at_ms.to_be_bytes());
        out.extend_from_slice(&self.unknown_kid_refetch_ms.to_be_bytes());
        out.push(u8::from(self.result.is_ok()));
        out.extend_from_slice(payload);
        let tag = channel.tag(&out);
        out.extend_from_slice(&tag);
        out
    }

    /// Reads a record published on `channel` as of `now_ms`. Anything malformed, of another
    /// version, tagged for another channel, numbered past [`MAX_SEQUENCE`] or dated in the future
    /// is `None`.
    pub fn decode(bytes: &[u8], channel: &Channel, now_ms: u64) -> Option<FetchRecord> {
        let (content, tag) = bytes.split_at_checked(bytes.len().checked_sub(TAG_LEN)?)?;
        if channel.tag(content) != tag {
            return None;
        }
        let (&version, rest) = content.split_first()?;
        if version != RECORD_VERSION {
            return None;
        }
        let (sequence, rest) = read_u64(rest)?;
        let (fetched_at_ms, rest) = read_u64(rest)?;
        let (unknown_kid_refetch_ms, rest) = read_u64(rest)?;
        let (&ok, payload) = rest.split_first()?;
        let result = match ok {
            1 => Ok(payload.to_vec()),
            0 => Err(String::from_utf8_lossy(payload).into_owned()),
            _ => return None,
        };
        if sequence == 0
            || sequence > MAX_SEQUENCE
            || fetched_at_ms > now_ms.saturating_add(MAX_CLOCK_AHEAD_MS)
        {
            return None;
        }
        Some(FetchRecord {
            sequence,
            fetched_at_ms,
            unknown_kid_refetch_ms,
            result,
        })
    }
}

/// A lease's value: the instant it lapses, in milliseconds since the epoch. 0 means free.
pub fn encode_lease(deadline_ms: u64) -> [u8; 8] {
    deadline_ms.to_be_bytes()
}

/// Reads a lease as of `now_ms`: the instant it lapses. A malformed value, or one further ahead
/// than any lease this filter takes, counts as free.
pub fn decode_lease(bytes: &[u8], now_ms: u64) -> u64 {
    match read_u64(bytes) {
        Some((deadline, [])) if deadline <= now_ms.saturating_add(MAX_LEASE_MS) => deadline,
        _ => 0,
    }
}

fn read_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*head), rest))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_123;

    fn record(result: Result<Vec<u8>, String>) -> FetchRecord {
        FetchRecord {
            sequence: 7,
            fetched_at_ms: NOW,
            unknown_kid_refetch_ms: NOW - 123,
            result,
        }
    }

    fn fetch(cluster: &str, authority: &str, path: &str) -> KeySource {
        KeySource::Remote {
            jwks: HttpFetch {
                cluster: cluster.into(),
                authority: authority.into(),
                path: path.into(),
                timeout_ms: 5000,
            },
            cache_duration_seconds: 600,
        }
    }

    fn test_channel() -> Channel {
        channel(&[1; 32], &fetch("idp", "idp:8080", "/certs")).unwrap()
    }

    #[test]
    fn records_round_trip() {
        // What one VM publishes, another reads back unchanged.
        let channel = test_channel();
        for r in [
            record(Ok(br#"{"keys":[]}"#.to_vec())),
            record(Err("HTTP status 503".into())),
            record(Ok(Vec::new())),
        ] {
            assert_eq!(
                FetchRecord::decode(&r.encode(&channel), &channel, NOW),
                Some(r)
            );
        }
    }

    #[test]
    fn malformed_records_read_as_absent() {
        // A truncated, altered or foreign value is ignored, never misread.
        let channel = test_channel();
        let good = record(Ok(b"{}".to_vec())).encode(&channel);
        for len in 0..good.len() {
            assert_eq!(
                FetchRecord::decode(&good[..len], &channel, NOW),
                None,
                "length {len}"
            );
        }
        for at in 0..good.len() {
            let mut altered = good.clone();
            altered[at] ^= 1;
            assert_eq!(
                FetchRecord::decode(&altered, &channel, NOW),
                None,
                "byte {at}"
            );
        }
    }

    #[test]
    fn a_record_for_another_channel_or_configuration_reads_as_absent() {
        // What another plugin (or this filter under another configuration) wrote is not keys.
        let mine = test_channel();
        let other_source = channel(&[1; 32], &fetch("idp", "idp:8080", "/other")).unwrap();
        let other_configuration = channel(&[2; 32], &fetch("idp", "idp:8080", "/certs")).unwrap();
        let r = record(Ok(b"{}".to_vec()));
        for other in [other_source, other_configuration] {
            assert_ne!(other.result_key, mine.result_key);
            assert_eq!(FetchRecord::decode(&r.encode(&other), &mine, NOW), None);
        }
    }

    #[test]
    fn sequence_and_time_are_bounded() {
        // A sequence at the top of the range would stop sharing for good; a record from the
        // future would keep keys past their time. Both read as absent.
        let channel = test_channel();
        for sequence in [0, MAX_SEQUENCE + 1, u64::MAX] {
            let r = FetchRecord {
                sequence,
                ..record(Ok(b"{}".to_vec()))
            };
            assert_eq!(
                FetchRecord::decode(&r.encode(&channel), &channel, NOW),
                None
            );
        }
        let future = FetchRecord {
            fetched_at_ms: NOW + MAX_CLOCK_AHEAD_MS + 1,
            ..record(Ok(b"{}".to_vec()))
        };
        assert_eq!(
            FetchRecord::decode(&future.encode(&channel), &channel, NOW),
            None
        );
        let r = FetchRecord {
            sequence: MAX_SEQUENCE,
            ..record(Ok(b"{}".to_vec()))
        };
        assert!(FetchRecord::decode(&r.encode(&channel), &channel, NOW).is_some());
    }

    #[test]
    fn leases_round_trip_and_garbage_is_free() {
        // A lease nobody can read, or one no fetch would take, must not block fetching.
        assert_eq!(decode_lease(&encode_lease(NOW + 42), NOW), NOW + 42);
        assert_eq!(decode_lease(b"xy", NOW), 0);
        assert_eq!(decode_lease(&encode_lease(u64::MAX), NOW), 0);
        assert_eq!(decode_lease(&encode_lease(NOW + MAX_LEASE_MS + 1), NOW), 0);
        let mut long = encode_lease(NOW).to_vec();
        long.push(0);
        assert_eq!(decode_lease(&long, NOW), 0);
    }

    #[test]
    fn channel_names_cannot_collide() {
        // `{cluster}.{authority}{path}` made cluster "jwks" with host "a.b" and cluster "jwks.a"
        // with host "b" one name; with each part length-prefixed under a digest they differ.
        // The same source under the same configuration is one channel.
        let config = [7; 32];
        let a = channel(&config, &fetch("jwks", "a.b", "/k")).unwrap();
        let b = channel(&config, &fetch("jwks.a", "b", "/k")).unwrap();
        assert_ne!(a.result_key, b.result_key);
        assert_eq!(
            Some(a.clone()),
            channel(&config, &fetch("jwks", "a.b", "/k"))
        );
        assert_ne!(a.lease_key, a.result_key);
        assert!(a.lease_key.starts_with(&a.result_key));
        assert_eq!(
            channel(
                &config,
                &KeySource::Local {
                    jwks: String::new()
                }
            ),
            None
        );
    }
}

/// Shared data in memory, for tests: handles made by [`MemorySharedData::clone_view`] see one
/// space, as the VMs of one Envoy do.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub(crate) mod memory {
    use super::{SharedData, WriteError};
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;

    type Hook = Box<dyn FnOnce()>;

    #[derive(Default)]
    struct Space {
        values: HashMap<String, (Vec<u8>, u32)>,
        next_cas: u32,
        hooks: Vec<(String, Hook)>,
    }

    /// One handle on an in-memory shared-data space.
    #[derive(Default)]
    pub(crate) struct MemorySharedData {
        space: Rc<RefCell<Space>>,
        /// Every read fails.
        pub(crate) fail_reads: bool,
        /// Every write is refused.
        pub(crate) refuse_writes: bool,
    }

    impl MemorySharedData {
        /// Another handle on the same space.
        pub(crate) fn clone_view(&self) -> MemorySharedData {
            MemorySharedData {
                space: Rc::clone(&self.space),
                fail_reads: false,
                refuse_writes: false,
            }
        }

        /// Whether nothing was ever written.
        pub(crate) fn is_empty(&self) -> bool {
            self.space.borrow().values.is_empty()
        }

        /// Runs `hook` just before the next write of `key` through any handle: another VM
        /// writing between this one's read and write.
        pub(crate) fn before_next_write(&self, key: String, hook: impl FnOnce() + 'static) {
            self.space.borrow_mut().hooks.push((key, Box::new(hook)));
        }
    }

    impl SharedData for MemorySharedData {
        fn shared_get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String> {
            if self.fail_reads {
                return Err("shared data is unavailable".into());
            }
            Ok(match self.space.borrow().values.get(key) {
                Some((value, cas)) => (Some(value.clone()), Some(*cas)),
                None => (None, None),
            })
        }

        fn shared_set(
            &mut self,
            key: &str,
            value: &[u8],
            cas: Option<u32>,
        ) -> Result<(), WriteError> {
            if self.refuse_writes {
                return Err(WriteError::Refused("write refused".into()));
            }
            let hook = {
                let mut space = self.space.borrow_mut();
                let position = space.hooks.iter().position(|(k, _)| k == key);
                position.map(|index| space.hooks.remove(index).1)
            };
            if let Some(hook) = hook {
                hook();
            }
            let mut space = self.space.borrow_mut();
            let current = space.values.get(key).map(|(_, cas)| *cas);
            if cas.is_some() && cas != current {
                return Err(WriteError::CasMismatch);
            }
            space.next_cas += 1;
            let next = space.next_cas;
            space.values.insert(key.to_owned(), (value.to_vec(), next));
            Ok(())
        }
    }
}

#[cfg(test)]
pub(crate) use memory::MemorySharedData;
