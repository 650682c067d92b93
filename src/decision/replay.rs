//! The DPoP replay check: every proof id (`jti`) accepted within its proof's lifetime is
//! remembered, and a second use is refused (RFC 9449 §11.1).
//!
//! The set lives in the host's shared data, so every worker of one Envoy sees it; replicas do not
//! share it. It is split into [`BUCKETS`] records, each holding at most `slots` entries (see
//! [`slots_for`]); an entry
//! is an 8-byte id (SHA-256 of the proof key's thumbprint and the `jti`, so two clients cannot
//! collide by choosing one `jti`) and the second after which the proof is stale anyway. Expired
//! entries are dropped when a record is written. A full record refuses new proofs (503) rather
//! than forgetting an id that could still be replayed: the set is bounded by count and by time,
//! and never fails open. Writes use compare-and-swap, so two workers accepting the same proof at
//! once cannot both succeed.
//!
//! The bucket count is fixed, not derived from the configuration, so a reload that changes
//! `replay_cache_size` still finds the ids accepted before it.

use crate::failure::Failure;
use crate::keys::shared::{SharedData, WriteError};

/// Records the set is split into: many small records, because each check copies one record out
/// of shared data and back (8 live entries, 128 bytes, on average at the default size).
pub const BUCKETS: usize = 4096;
const RECORD_VERSION: u8 = 1;
const ENTRY_LEN: usize = 16;
/// Compare-and-swap attempts before the check gives up (and refuses the proof).
const CAS_ATTEMPTS: usize = 4;

/// One accepted proof, to remember until `expires_at` (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProofUse<'a> {
    /// RFC 7638 thumbprint of the proof's key.
    pub key_thumbprint: &'a str,
    /// The proof's `jti`.
    pub jti: &'a str,
    /// When the proof stops being acceptable: its `iat` plus the window and the skew.
    pub expires_at: u64,
}

/// The shared-data key of bucket `index`.
pub fn bucket_key(index: usize) -> String {
    format!("kserve_auth.dpop_jti.v{RECORD_VERSION}.{index:04}")
}

/// Creates the buckets that do not exist yet. Run when a configuration with DPoP is loaded,
/// before requests: compare-and-swap protects only keys that exist, so a bucket created by a
/// request could overwrite another worker's first entry.
pub fn prepare(shared: &mut dyn SharedData) {
    let empty = [RECORD_VERSION];
    for index in 0..BUCKETS {
        let key = bucket_key(index);
        if let Ok((None, _)) = shared.shared_get(&key) {
            let _ = shared.shared_set(&key, &empty, None);
        }
    }
}

/// Remembers `proof` unless its id was seen before: `Ok` the first time, then
/// [`Failure::DpopProofReplayed`] until it expires. A full bucket, or shared data that cannot be
/// read or written, is [`Failure::DpopReplayCheckUnavailable`].
pub fn remember(
    shared: &mut dyn SharedData,
    proof: &ProofUse<'_>,
    slots: usize,
    now: u64,
) -> Result<(), Failure> {
    let (id, bucket) = identify(proof);
    let key = bucket_key(bucket);
    for _ in 0..CAS_ATTEMPTS {
        let (value, cas) = shared
            .shared_get(&key)
            .map_err(|_| Failure::DpopReplayCheckUnavailable)?;
        let mut entries = value.as_deref().map(decode).unwrap_or_default();
        entries.retain(|(_, expires_at)| *expires_at >= now);
        if entries.iter().any(|(seen, _)| *seen == id) {
            return Err(Failure::DpopProofReplayed);
        }
        if entries.len() >= slots {
            log::warn!(
                "DPoP replay set bucket {bucket} is full ({slots} live proof ids); raise \
                 dpop.replay_cache_size"
            );
            return Err(Failure::DpopReplayCheckUnavailable);
        }
        entries.push((id, proof.expires_at));
        match shared.shared_set(&key, &encode(&entries), cas) {
            Ok(()) => return Ok(()),
            Err(WriteError::CasMismatch) => continue,
            Err(WriteError::Refused(_)) => return Err(Failure::DpopReplayCheckUnavailable),
        }
    }
    Err(Failure::DpopReplayCheckUnavailable)
}

/// The id of a proof and its bucket.
fn identify(proof: &ProofUse<'_>) -> ([u8; 8], usize) {
    let mut hash = hmac_sha256::Hash::new();
    hash.update(b"kserve_auth dpop jti\0");
    hash.update((proof.key_thumbprint.len() as u64).to_be_bytes());
    hash.update(proof.key_thumbprint.as_bytes());
    hash.update(proof.jti.as_bytes());
    let digest = hash.finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    let bucket = usize::from(u16::from_be_bytes([digest[8], digest[9]])) % BUCKETS;
    (id, bucket)
}

/// A bucket's entries. A record this build did not write (another version, another plugin,
/// truncated) reads as empty: it is overwritten by the next accepted proof.
fn decode(bytes: &[u8]) -> Vec<([u8; 8], u64)> {
    let Some((&RECORD_VERSION, body)) = bytes.split_first() else {
        return Vec::new();
    };
    if body.len() % ENTRY_LEN != 0 {
        return Vec::new();
    }
    body.chunks_exact(ENTRY_LEN)
        .map(|entry| {
            let mut id = [0u8; 8];
            let mut expires_at = [0u8; 8];
            id.copy_from_slice(&entry[..8]);
            expires_at.copy_from_slice(&entry[8..]);
            (id, u64::from_be_bytes(expires_at))
        })
        .collect()
}

fn encode(entries: &[([u8; 8], u64)]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(1 + entries.len() * ENTRY_LEN);
    bytes.push(RECORD_VERSION);
    for (id, expires_at) in entries {
        bytes.extend_from_slice(id);
        bytes.extend_from_slice(&expires_at.to_be_bytes());
    }
    bytes
}

/// Entries per bucket for a set sized for `size` live proof ids: twice a bucket's share, plus 8.
/// Ids spread over the buckets unevenly (a Poisson spread around the share), and a full bucket
/// refuses proofs. With this slack, a bucket at the default size (a share of 8) is full with a
/// chance of 4 in a million when the set holds `size` live ids, and the set never holds more than
/// `2 × size + 8 × BUCKETS` ids.
pub fn slots_for(size: u64) -> usize {
    let share = usize::try_from(size.div_ceil(BUCKETS as u64)).unwrap_or(usize::MAX);
    share.saturating_mul(2).saturating_add(8)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::keys::shared::MemorySharedData;

    fn proof(jti: &str, expires_at: u64) -> ProofUse<'_> {
        ProofUse {
            key_thumbprint: "key-a",
            jti,
            expires_at,
        }
    }

    // The first use passes, a second is a replay until the proof expires, then the id is free.
    #[test]
    fn a_proof_id_is_accepted_once_within_its_lifetime() {
        let mut shared = MemorySharedData::default();
        assert_eq!(remember(&mut shared, &proof("j1", 165), 32, 100), Ok(()));
        assert_eq!(
            remember(&mut shared, &proof("j1", 165), 32, 165),
            Err(Failure::DpopProofReplayed)
        );
        assert_eq!(remember(&mut shared, &proof("j1", 230), 32, 166), Ok(()));
        // The same jti under another key is another proof.
        let other = ProofUse {
            key_thumbprint: "key-b",
            ..proof("j1", 230)
        };
        assert_eq!(remember(&mut shared, &other, 32, 166), Ok(()));
    }

    // Two workers see one set: a proof accepted by one is a replay to the other.
    #[test]
    fn workers_share_the_set() {
        let mut shared = MemorySharedData::default();
        prepare(&mut shared);
        let mut other_worker = shared.clone_view();
        assert_eq!(remember(&mut shared, &proof("j2", 200), 32, 100), Ok(()));
        assert_eq!(
            remember(&mut other_worker, &proof("j2", 200), 32, 100),
            Err(Failure::DpopProofReplayed)
        );
    }

    // A write that loses a compare-and-swap race reads again and sees the winner's id.
    #[test]
    fn a_lost_race_reads_again() {
        let mut shared = MemorySharedData::default();
        prepare(&mut shared);
        let (_, bucket) = identify(&proof("j3", 200));
        // Another worker records the same proof between this worker's read and write.
        shared.before_next_write(bucket_key(bucket), {
            let mut winner = shared.clone_view();
            move || {
                assert_eq!(remember(&mut winner, &proof("j3", 200), 32, 100), Ok(()));
            }
        });
        assert_eq!(
            remember(&mut shared, &proof("j3", 200), 32, 100),
            Err(Failure::DpopProofReplayed)
        );
    }

    // A full bucket refuses rather than forgets; expired entries make room again.
    #[test]
    fn a_full_bucket_fails_closed_until_entries_expire() {
        let mut shared = MemorySharedData::default();
        let target = identify(&proof("target", 0)).1;
        let mut same_bucket = (0..)
            .map(|n| format!("filler-{n}"))
            .filter(|jti| identify(&proof(jti, 0)).1 == target);
        for _ in 0..2 {
            let jti = same_bucket.next().unwrap();
            assert_eq!(remember(&mut shared, &proof(&jti, 150), 2, 100), Ok(()));
        }
        assert_eq!(
            remember(&mut shared, &proof("target", 160), 2, 100),
            Err(Failure::DpopReplayCheckUnavailable)
        );
        assert_eq!(remember(&mut shared, &proof("target", 260), 2, 151), Ok(()));
    }

    // Shared data that cannot be read or written refuses the proof.
    #[test]
    fn unavailable_shared_data_fails_closed() {
        let mut shared = MemorySharedData::default();
        shared.fail_reads = true;
        assert_eq!(
            remember(&mut shared, &proof("j4", 200), 32, 100),
            Err(Failure::DpopReplayCheckUnavailable)
        );
        let mut shared = MemorySharedData::default();
        shared.refuse_writes = true;
        assert_eq!(
            remember(&mut shared, &proof("j4", 200), 32, 100),
            Err(Failure::DpopReplayCheckUnavailable)
        );
    }

    // Records this build did not write read as empty; the encoding round-trips.
    #[test]
    fn records_round_trip_and_foreign_ones_read_as_empty() {
        let entries = vec![([1u8; 8], 7), ([2u8; 8], u64::MAX)];
        assert_eq!(decode(&encode(&entries)), entries);
        assert!(decode(&[]).is_empty());
        assert!(decode(&[9, 1, 2]).is_empty());
        assert!(decode(&[RECORD_VERSION, 1, 2, 3]).is_empty());
    }

    // Sizes spread over the fixed bucket count, with slack for an uneven spread.
    #[test]
    fn slots_per_bucket() {
        assert_eq!(slots_for(4096), 10);
        assert_eq!(slots_for(32_768), 24);
        assert_eq!(slots_for(32_769), 26);
        assert_eq!(slots_for(1_048_576), 520);
    }
}
