//! Group orders and big-endian arithmetic for crafting ECDSA signatures at the edges (`s = n`,
//! the high-`s` twin `n - s`), and the DER form JOSE does not allow.

/// Order of the P-256 group, big-endian hex.
pub const P256_ORDER: &str = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
/// Order of the P-384 group, big-endian hex.
pub const P384_ORDER: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf\
                              581a0db248b0a77aecec196accc52973";

/// Bytes of a hex string.
pub fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// `a - b` for big-endian numbers of equal length with `a >= b`.
pub fn subtract(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; a.len()];
    let mut borrow = 0i16;
    for i in (0..a.len()).rev() {
        let mut digit = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = i16::from(digit < 0);
        if digit < 0 {
            digit += 256;
        }
        out[i] = digit as u8;
    }
    assert_eq!(borrow, 0);
    out
}

/// A JOSE `r || s` ECDSA signature re-encoded as ASN.1 DER (`SEQUENCE { INTEGER r, INTEGER s }`).
pub fn ecdsa_der(signature: &[u8]) -> Vec<u8> {
    let integer = |bytes: &[u8]| {
        let mut bytes = bytes.to_vec();
        while bytes.len() > 1 && bytes[0] == 0 && bytes[1] & 0x80 == 0 {
            bytes.remove(0);
        }
        if bytes[0] & 0x80 != 0 {
            bytes.insert(0, 0);
        }
        [vec![0x02, bytes.len() as u8], bytes].concat()
    };
    let half = signature.len() / 2;
    let body = [integer(&signature[..half]), integer(&signature[half..])].concat();
    [vec![0x30, body.len() as u8], body].concat()
}
