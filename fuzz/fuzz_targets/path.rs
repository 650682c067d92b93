//! Path normalization against a reference decoder: whenever the filter accepts a path, the path
//! its rules match is the received path fully percent-decoded with dot segments removed, and the
//! path it sends upstream, decoded by the model server, is that same path. A difference would be a
//! path that one rule judges and the model server reads as another.

#![no_main]

use kserve_auth_filter::request::path;
use libfuzzer_sys::fuzz_target;

/// Every `%XX` decoded, as Starlette (`unquote`) and most servers do; other bytes as they are.
fn reference_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// RFC 3986 §5.2.4 dot-segment removal with empty segments merged, on decoded bytes.
fn reference_segments(decoded: &[u8]) -> Option<Vec<u8>> {
    let mut segments: Vec<&[u8]> = Vec::new();
    for segment in decoded.split(|b| *b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => {
                segments.pop()?;
            }
            other => segments.push(other),
        }
    }
    let trailing = decoded.ends_with(b"/") || decoded.ends_with(b"/.") || decoded.ends_with(b"/..");
    let mut out = Vec::new();
    for segment in &segments {
        out.push(b'/');
        out.extend_from_slice(segment);
    }
    if out.is_empty() || (trailing && !segments.is_empty()) {
        out.push(b'/');
    }
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(normalized) = path::normalize(raw) else {
        return;
    };
    let path_only = &raw[..raw.find(['?', '#']).unwrap_or(raw.len())];
    let expected = reference_segments(&reference_decode(path_only))
        .expect("an accepted path never climbs above the root");
    assert_eq!(
        normalized.decoded.as_bytes(),
        expected.as_slice(),
        "rules match another path than the reference reads in {raw:?}"
    );
    assert_eq!(
        reference_decode(&normalized.upstream),
        expected,
        "the model server would read another path than the rules matched in {raw:?}"
    );
    for segment in normalized.decoded.split('/') {
        assert!(
            segment != "."
                && segment != ".."
                && !segment.starts_with(".;")
                && !segment.starts_with("..;"),
            "a dot segment survived in {raw:?}"
        );
    }
    assert!(
        !normalized.decoded.contains('\\'),
        "a backslash survived in {raw:?}"
    );
});
