//! The proxy-wasm ABI's serialisation of a header map, read and written without trusting it: a
//! count, a length pair per entry, then each name and value followed by a NUL byte. Names and
//! values are bytes; nothing here assumes UTF-8.

/// Header names and values as the host gave them, in its order.
pub type HeaderPairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The entries of a serialised map, borrowed from it, or `None` when the lengths do not fit the
/// buffer. An empty buffer is an empty map.
pub fn parse(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let (count, mut rest) = read_u32(bytes)?;
    let count = usize::try_from(count).ok()?;
    // Each entry needs 8 bytes of lengths and 2 NULs: a count the buffer cannot hold is refused
    // before anything is allocated for it.
    if count > rest.len() / 10 {
        return None;
    }
    let mut lengths = Vec::with_capacity(count);
    for _ in 0..count {
        let (name_len, after_name) = read_u32(rest)?;
        let (value_len, after_value) = read_u32(after_name)?;
        lengths.push((
            usize::try_from(name_len).ok()?,
            usize::try_from(value_len).ok()?,
        ));
        rest = after_value;
    }
    let mut entries = Vec::with_capacity(count);
    for (name_len, value_len) in lengths {
        let (name, after_name) = take_terminated(rest, name_len)?;
        let (value, after_value) = take_terminated(after_name, value_len)?;
        entries.push((name, value));
        rest = after_value;
    }
    Some(entries)
}

/// Serialises `entries` the way the host reads a map.
pub fn serialize(entries: &[(String, String)]) -> Vec<u8> {
    let size: usize = entries
        .iter()
        .map(|(name, value)| 10 + name.len() + value.len())
        .sum();
    let mut out = Vec::with_capacity(4 + size);
    out.extend_from_slice(&length(entries.len()));
    for (name, value) in entries {
        out.extend_from_slice(&length(name.len()));
        out.extend_from_slice(&length(value.len()));
    }
    for (name, value) in entries {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out
}

/// A length as the ABI's little-endian u32. Header names and values are far below 4 GiB; a
/// longer one would be cut to `u32::MAX`, which the host then refuses as a bad argument.
fn length(len: usize) -> [u8; 4] {
    u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes()
}

fn read_u32(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<4>()?;
    Some((u32::from_le_bytes(*head), rest))
}

/// `len` bytes followed by a NUL, and what comes after the NUL.
fn take_terminated(bytes: &[u8], len: usize) -> Option<(&[u8], &[u8])> {
    let (field, rest) = bytes.split_at_checked(len)?;
    let (&terminator, rest) = rest.split_first()?;
    (terminator == 0).then_some((field, rest))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn pairs(entries: &[(&str, &str)]) -> Vec<(String, String)> {
        entries
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    // What the filter serialises reads back unchanged, empty names and values included.
    #[test]
    fn round_trip() {
        let entries = pairs(&[(":status", "200"), ("x", ""), ("", "v"), ("a", "b\u{e9}")]);
        let bytes = serialize(&entries);
        let parsed = parse(&bytes).unwrap();
        let back: Vec<(String, String)> = parsed
            .iter()
            .map(|(n, v)| {
                (
                    String::from_utf8(n.to_vec()).unwrap(),
                    String::from_utf8(v.to_vec()).unwrap(),
                )
            })
            .collect();
        assert_eq!(back, entries);
        assert_eq!(parse(&[]), Some(vec![]));
        assert_eq!(parse(&serialize(&[])), Some(vec![]));
    }

    // Values are bytes: any byte, 0xFF included, comes through as it was.
    #[test]
    fn values_are_bytes() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(&4u32.to_le_bytes());
        bytes.extend_from_slice(b"x-a\0caf\xff\0");
        assert_eq!(parse(&bytes), Some(vec![(&b"x-a"[..], &b"caf\xff"[..])]));
    }

    // Every truncation of a valid map, a missing NUL, and lengths or counts past the end are
    // refused, never read out of bounds.
    #[test]
    fn malformed_maps_are_refused() {
        let good = serialize(&pairs(&[("name", "value"), ("n2", "v2")]));
        for len in 1..good.len() {
            assert_eq!(parse(&good[..len]), None, "truncated to {len}");
        }
        let mut no_nul = good.clone();
        let last = no_nul.len() - 1;
        no_nul[last] = b'x';
        assert_eq!(parse(&no_nul), None);
        let mut huge_count = good.clone();
        huge_count[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(&huge_count), None);
        let mut huge_len = good;
        huge_len[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(&huge_len), None);
    }
}
