//! What the VMs of one Envoy (one per worker thread, plus the main thread's) share about a key
//! source, through the host's shared data: a lease that lets one VM fetch while the others wait,
//! and the result of the last fetch, which the others adopt instead of fetching themselves.
//!
//! Values are small binary records with a version byte, so a VM running another build of the
//! filter reads a record it does not understand as absent rather than misreading it.

use crate::config::{HttpFetch, KeySource};

const RECORD_VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + 8 + 8 + 8 + 1;

/// Shared-data key under which a key source's fetch result is published; `None` for inline
/// keys, which need no fetch. Sources that fetch the same URL through the same cluster share it.
pub fn result_key(source: &KeySource) -> Option<String> {
    let (kind, fetch): (&str, &HttpFetch) = match source {
        KeySource::Remote { jwks, .. } => ("jwks", jwks),
        KeySource::Discovery { discovery, .. } => ("discovery", discovery),
        KeySource::Local { .. } => return None,
    };
    Some(format!(
        "kserve_auth.v1.{kind}.{}.{}{}",
        fetch.cluster, fetch.authority, fetch.path
    ))
}

/// The lease key that goes with a result key.
pub fn lease_key(result_key: &str) -> String {
    format!("{result_key}.lease")
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
    /// Binary form for shared data.
    pub fn encode(&self) -> Vec<u8> {
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
        out
    }

    /// Reads a record; anything malformed or of another version is `None`.
    pub fn decode(bytes: &[u8]) -> Option<FetchRecord> {
        let (&version, rest) = bytes.split_first()?;
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

/// Reads a lease; a malformed value counts as free.
pub fn decode_lease(bytes: &[u8]) -> u64 {
    read_u64(bytes).map_or(0, |(deadline, _)| deadline)
}

fn read_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*head), rest))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn record(result: Result<Vec<u8>, String>) -> FetchRecord {
        FetchRecord {
            sequence: 7,
            fetched_at_ms: 1_700_000_000_123,
            unknown_kid_refetch_ms: 1_700_000_000_000,
            result,
        }
    }

    #[test]
    fn records_round_trip() {
        // What one VM publishes, another reads back unchanged.
        for r in [
            record(Ok(br#"{"keys":[]}"#.to_vec())),
            record(Err("HTTP status 503".into())),
            record(Ok(Vec::new())),
        ] {
            assert_eq!(FetchRecord::decode(&r.encode()), Some(r));
        }
    }

    #[test]
    fn malformed_records_read_as_absent() {
        // A truncated or foreign value is ignored, never misread.
        let good = record(Ok(b"{}".to_vec())).encode();
        for len in 0..HEADER_LEN {
            assert_eq!(FetchRecord::decode(&good[..len]), None, "length {len}");
        }
        let mut other_version = good.clone();
        other_version[0] = 2;
        assert_eq!(FetchRecord::decode(&other_version), None);
        let mut bad_flag = good;
        bad_flag[HEADER_LEN - 1] = 9;
        assert_eq!(FetchRecord::decode(&bad_flag), None);
    }

    #[test]
    fn leases_round_trip_and_garbage_is_free() {
        // A lease nobody can read must not block fetching forever.
        assert_eq!(decode_lease(&encode_lease(42)), 42);
        assert_eq!(decode_lease(b"xy"), 0);
    }

    #[test]
    fn sources_fetching_the_same_url_share_a_key_and_others_do_not() {
        // Two providers on one JWKS share one fetch; another cluster or path is another source.
        let fetch = |cluster: &str, path: &str| HttpFetch {
            cluster: cluster.into(),
            authority: "idp:8080".into(),
            path: path.into(),
            timeout_ms: 5000,
        };
        let remote = |f| KeySource::Remote {
            jwks: f,
            cache_duration_seconds: 600,
        };
        let a = result_key(&remote(fetch("idp", "/certs")));
        assert_eq!(a, result_key(&remote(fetch("idp", "/certs"))));
        assert_ne!(a, result_key(&remote(fetch("other", "/certs"))));
        assert_ne!(a, result_key(&remote(fetch("idp", "/certs2"))));
        assert_eq!(
            result_key(&KeySource::Local {
                jwks: String::new()
            }),
            None
        );
        assert_eq!(lease_key("k"), "k.lease");
    }
}
