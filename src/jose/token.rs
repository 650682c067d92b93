//! A compact JWS, parsed strictly from the raw received text. Nothing here is trusted yet.
//!
//! Parsing is cheap and does no cryptography. It is deliberately at least as strict as
//! jwt-simple's token reader (the library the pure-Rust signature path once went through, and
//! still the reference its tests compare with): whatever passes here, jwt-simple can also read.
//! Both signature paths start from this parse, so they reach the same verdict.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::failure::Failure;
use crate::jose::alg::Alg;
use crate::jose::json::{self, StrictJsonError};

/// Tokens longer than this are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 8192;

/// base64url without padding, canonical only: `=`, `+`, `/`, whitespace and non-zero trailing
/// bits are errors, so one byte string has exactly one accepted encoding.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Decodes canonical unpadded base64url (the JOSE encoding); anything else gives `None`.
pub fn decode_base64url(text: &str) -> Option<Vec<u8>> {
    BASE64URL.decode(text).ok()
}

/// The protected header fields the filter uses. `jku`, `x5u`, `x5c` and `jwk` are never used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The signing algorithm; only supported, asymmetric ones parse.
    pub alg: Alg,
    /// `kid`, when present.
    pub kid: Option<String>,
    /// `typ`, when present.
    pub typ: Option<String>,
    /// The embedded public key (`jwk`) of a DPoP proof; always `None` for an access token, whose
    /// embedded key is never trusted.
    pub jwk: Option<Value>,
}

/// The registered claims, type-checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegisteredClaims {
    /// `iss`
    pub iss: Option<String>,
    /// `aud`, a string or an array of strings, as a list.
    pub aud: Vec<String>,
    /// `exp`
    pub exp: Option<NumericDate>,
    /// `nbf`
    pub nbf: Option<NumericDate>,
    /// `iat`
    pub iat: Option<NumericDate>,
}

/// An RFC 7519 NumericDate: seconds since the epoch, which may have a fraction. The fraction is
/// kept to the nanosecond, rounded up, so a fraction never reads as zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct NumericDate {
    /// Whole seconds.
    pub seconds: u64,
    /// Fraction of a second in nanoseconds, below 1,000,000,000.
    pub nanos: u32,
}

impl NumericDate {
    /// A whole-second date.
    pub fn whole(seconds: u64) -> NumericDate {
        NumericDate { seconds, nanos: 0 }
    }

    /// The last whole second not after this instant. "Expired once `now > exp`" judged on whole
    /// seconds is exact with it: `now > s + f` holds for an integer `now` exactly when `now > s`.
    pub fn floor(self) -> u64 {
        self.seconds
    }

    /// The first whole second not before this instant. "Not valid while `nbf > now`" judged on
    /// whole seconds is exact with it: `s + f > now` holds exactly when `ceil > now`.
    pub fn ceil(self) -> u64 {
        self.seconds.saturating_add(u64::from(self.nanos > 0))
    }

    /// Whether `self - start` is more than `max` seconds, exactly.
    pub fn exceeds_after(self, start: NumericDate, max: u64) -> bool {
        let nanos =
            |date: NumericDate| u128::from(date.seconds) * 1_000_000_000 + u128::from(date.nanos);
        nanos(self).saturating_sub(nanos(start)) > u128::from(max) * 1_000_000_000
    }
}

/// A parsed, not yet verified token.
#[derive(Debug, Clone)]
pub struct Token<'a> {
    /// The whole token as received.
    pub raw: &'a str,
    /// `header.payload` exactly as received: what the signature covers.
    pub signing_input: &'a str,
    /// The header segment as received (base64url).
    pub header_segment: &'a str,
    /// The payload segment as received (base64url), for `forward_payload_header`.
    pub payload_segment: &'a str,
    /// The decoded header.
    pub header: Header,
    /// The registered claims.
    pub registered: RegisteredClaims,
    /// Every claim, for headers and rules.
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// The decoded signature bytes.
    pub signature: Vec<u8>,
}

/// Which kind of JWT is parsed: they differ in one header member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An access or identity token: an embedded `jwk` object is refused, as jwt_authn refuses it.
    Token,
    /// A DPoP proof, whose header must carry the client's public key as a `jwk` object.
    Proof,
}

/// Parses a compact JWS strictly: three base64url segments without padding, JSON objects without
/// repeated member names, a supported `alg`, no `crit`, no nested token.
pub fn parse(raw: &str) -> Result<Token<'_>, Failure> {
    parse_as(raw, Kind::Token)
}

/// Parses a DPoP proof as strictly as [`parse`] a token, except that the header may embed a key
/// (`jwk`), which only the proof's own check reads.
pub fn parse_proof(raw: &str) -> Result<Token<'_>, Failure> {
    parse_as(raw, Kind::Proof)
}

fn parse_as(raw: &str, kind: Kind) -> Result<Token<'_>, Failure> {
    if raw.len() > MAX_TOKEN_BYTES {
        return Err(Failure::TooLong);
    }
    let mut segments = raw.split('.');
    let (Some(header_segment), Some(payload_segment), Some(signature_segment), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        // Two segments is a truncated token, five a JWE: neither is a JWS.
        return Err(Failure::BadFormat);
    };
    if header_segment.is_empty() || payload_segment.is_empty() {
        return Err(Failure::BadFormat);
    }

    let header_object = decode_object(header_segment, Failure::BadHeaderJson)?;
    let header = parse_header(&header_object, kind)?;

    let claims = decode_object(payload_segment, Failure::BadPayloadJson)?;
    let registered = parse_registered_claims(&claims)?;

    let signature = decode_base64url(signature_segment)
        .filter(|bytes| !bytes.is_empty())
        .ok_or(Failure::BadSignatureEncoding)?;

    let signing_input = raw
        .get(..header_segment.len() + 1 + payload_segment.len())
        .ok_or(Failure::BadFormat)?;

    Ok(Token {
        raw,
        signing_input,
        header_segment,
        payload_segment,
        header,
        registered,
        claims,
        signature,
    })
}

/// Decodes one segment into a JSON object; `failure` covers bad base64, bad JSON and non-objects.
fn decode_object(segment: &str, failure: Failure) -> Result<Map<String, Value>, Failure> {
    let bytes = decode_base64url(segment).ok_or(failure)?;
    match json::parse_strict(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(failure),
        Err(StrictJsonError::DuplicateName(_)) => Err(Failure::DuplicateName),
        Err(StrictJsonError::Syntax(_)) => Err(failure),
    }
}

fn parse_header(header: &Map<String, Value>, kind: Kind) -> Result<Header, Failure> {
    let alg = match header.get("alg") {
        Some(Value::String(name)) => Alg::from_name(name).ok_or(Failure::AlgNotAllowed)?,
        _ => return Err(Failure::BadHeaderJson),
    };
    // No extension is understood, so any `crit`, even an empty list, is refused (RFC 7515 §4.1.11).
    if header.contains_key("crit") {
        return Err(Failure::CritNotSupported);
    }
    // RFC 7797 unencoded payloads change what the signature covers; only the default is accepted.
    if header
        .get("b64")
        .is_some_and(|b64| *b64 != Value::Bool(true))
    {
        return Err(Failure::CritNotSupported);
    }
    match header.get("cty") {
        None => {}
        Some(Value::String(cty)) if cty.eq_ignore_ascii_case("JWT") => {
            return Err(Failure::NestedToken)
        }
        Some(Value::String(_)) => {}
        Some(_) => return Err(Failure::BadHeaderJson),
    }
    let typ = match header.get("typ") {
        None => None,
        Some(Value::String(typ)) if is_jwt_type(typ) => Some(typ.clone()),
        Some(_) => return Err(Failure::BadType),
    };
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(Failure::BadHeaderJson),
    };
    check_members_jwt_simple_reads(header, kind)?;
    let jwk = match kind {
        Kind::Proof => header.get("jwk").cloned(),
        Kind::Token => None,
    };
    Ok(Header { alg, kid, typ, jwk })
}

/// `JWT`, or a media type ending in `+jwt` (`at+jwt`, RFC 9068), compared ASCII
/// case-insensitively. jwt-simple refuses any other `typ`, and so does the filter.
fn is_jwt_type(typ: &str) -> bool {
    let bytes = typ.as_bytes();
    typ.eq_ignore_ascii_case("JWT")
        || bytes
            .len()
            .checked_sub(4)
            .and_then(|start| bytes.get(start..))
            .is_some_and(|suffix| suffix.eq_ignore_ascii_case(b"+jwt"))
}

/// jwt-simple reads these header members into fixed types and refuses the whole token when one
/// does not fit (an embedded `jwk` object, for instance). The filter never uses them, but refuses
/// the same tokens, on either signature path.
fn check_members_jwt_simple_reads(header: &Map<String, Value>, kind: Kind) -> Result<(), Failure> {
    for name in ["jku", "jwk", "x5u", "x5t", "x5t#S256"] {
        if name == "jwk" && kind == Kind::Proof {
            continue;
        }
        if !matches!(
            header.get(name),
            None | Some(Value::Null | Value::String(_))
        ) {
            return Err(Failure::BadHeaderJson);
        }
    }
    match header.get("x5c") {
        None | Some(Value::Null) => {}
        Some(Value::Array(chain)) if chain.iter().all(Value::is_string) => {}
        Some(_) => return Err(Failure::BadHeaderJson),
    }
    match header.get("salt") {
        None | Some(Value::Null) => {}
        Some(Value::String(salt)) if decode_base64url(salt).is_some() => {}
        Some(_) => return Err(Failure::BadHeaderJson),
    }
    Ok(())
}

fn parse_registered_claims(claims: &Map<String, Value>) -> Result<RegisteredClaims, Failure> {
    let iss = string_claim(claims, "iss")?;
    // Not used by the checks, but jwt-simple reads them as strings, and a claim whose type is
    // wrong is refused here as there.
    for name in ["sub", "jti", "nonce"] {
        string_claim(claims, name)?;
    }
    let aud = match claims.get("aud") {
        None => Vec::new(),
        Some(Value::String(aud)) => vec![aud.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or(Failure::BadClaimType)?,
        Some(_) => return Err(Failure::BadClaimType),
    };
    Ok(RegisteredClaims {
        iss,
        aud,
        exp: time_claim(claims, "exp")?,
        nbf: time_claim(claims, "nbf")?,
        iat: time_claim(claims, "iat")?,
    })
}

fn string_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<String>, Failure> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.clone())),
        Some(_) => Err(Failure::BadClaimType),
    }
}

/// A NumericDate claim. RFC 7519 allows a fraction (`1767225600.5`), as jwt_authn does.
fn time_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<NumericDate>, Failure> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(number)) => {
            // Capped at i64::MAX, as jwt_authn does: a time no signed 64-bit clock can hold
            // is a malformed claim, not a token that never expires.
            if let Some(seconds) = number.as_u64() {
                if i64::try_from(seconds).is_err() {
                    return Err(Failure::BadClaimType);
                }
                return Ok(Some(NumericDate::whole(seconds)));
            }
            if number.is_i64() {
                return Err(Failure::NegativeTime);
            }
            fractional_date(number.as_f64().ok_or(Failure::BadClaimType)?).map(Some)
        }
        Some(_) => Err(Failure::BadClaimType),
    }
}

/// A NumericDate that JSON wrote with a fraction or an exponent. The f64 holds the written value
/// as closely as any parser does; its fractional part is exact.
fn fractional_date(value: f64) -> Result<NumericDate, Failure> {
    // 2^63: the first value past i64::MAX that an f64 can hold.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if value < 0.0 {
        return Err(Failure::NegativeTime);
    }
    if !value.is_finite() || value >= LIMIT {
        return Err(Failure::BadClaimType);
    }
    let whole = value.trunc();
    let fraction = value - whole;
    // In range by the checks above; `as` saturates and is exact for an integral f64 below 2^63.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let seconds = whole as u64;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let nanos = if fraction > 0.0 {
        ((fraction * 1e9).ceil() as u32).clamp(1, 999_999_999)
    } else {
        0
    };
    Ok(NumericDate { seconds, nanos })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn b64(bytes: &str) -> String {
        BASE64URL.encode(bytes)
    }

    /// A token with this header and payload JSON and a dummy signature.
    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.{}", b64(header), b64(payload), b64("signature"))
    }

    fn with_payload(payload: &str) -> String {
        token(r#"{"alg":"RS256"}"#, payload)
    }

    fn with_header(header: &str) -> String {
        token(header, r#"{"iss":"i"}"#)
    }

    fn header_of(header: &str) -> Header {
        parse(&with_header(header)).unwrap().header
    }

    fn claims_of(payload: &str) -> RegisteredClaims {
        parse(&with_payload(payload)).unwrap().registered
    }

    fn failure(raw: &str) -> Failure {
        parse(raw).expect_err("token should be refused")
    }

    // A well-formed token parses, with every field taken from the raw text.
    #[test]
    fn valid_token() {
        let header = r#"{"alg":"ES256","kid":"k1","typ":"at+jwt"}"#;
        let payload = r#"{"iss":"https://issuer","aud":["a","b"],"sub":"s","exp":2000,"nbf":1000,"iat":1000,"scope":"x"}"#;
        let raw = token(header, payload);
        let parsed = parse(&raw).unwrap();
        assert_eq!(parsed.raw, raw);
        let (h, rest) = raw.split_once('.').unwrap();
        let (p, _) = rest.split_once('.').unwrap();
        assert_eq!(parsed.signing_input, format!("{h}.{p}"));
        assert_eq!(parsed.payload_segment, p);
        assert_eq!(
            parsed.header,
            Header {
                alg: Alg::ES256,
                kid: Some("k1".into()),
                typ: Some("at+jwt".into()),
                jwk: None,
            }
        );
        assert_eq!(
            parsed.registered,
            RegisteredClaims {
                iss: Some("https://issuer".into()),
                aud: vec!["a".into(), "b".into()],
                exp: Some(NumericDate::whole(2000)),
                nbf: Some(NumericDate::whole(1000)),
                iat: Some(NumericDate::whole(1000)),
            }
        );
        assert_eq!(parsed.claims["scope"], "x");
        assert_eq!(parsed.signature, b"signature");
    }

    // A string `aud` becomes a one-element list; no registered claim is required to parse.
    #[test]
    fn string_audience_and_absent_claims() {
        let registered = claims_of(r#"{"aud":"a"}"#);
        assert_eq!(registered.aud, vec!["a".to_string()]);
        assert_eq!(registered.iss, None);
        assert_eq!(registered.exp, None);
        let registered = claims_of("{}");
        assert_eq!(registered, RegisteredClaims::default());
    }

    // Length is checked before anything else: an over-long garbage string is TooLong.
    #[test]
    fn too_long() {
        let raw = "x".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(failure(&raw), Failure::TooLong);
        let padded = format!(
            "{}{}",
            with_payload("{}"),
            "A".repeat(MAX_TOKEN_BYTES + 1 - with_payload("{}").len())
        );
        assert_eq!(failure(&padded), Failure::TooLong);
    }

    // Anything but exactly three segments is BadFormat, including a five-segment JWE.
    #[test]
    fn segment_count() {
        let valid = with_payload("{}");
        assert_eq!(failure(""), Failure::BadFormat);
        assert_eq!(failure("abc"), Failure::BadFormat);
        assert_eq!(
            failure(&valid[..valid.rfind('.').unwrap()]),
            Failure::BadFormat
        );
        assert_eq!(failure(&format!("{valid}.")), Failure::BadFormat);
        assert_eq!(failure(&format!("{valid}.x")), Failure::BadFormat);
        let jwe = "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d";
        assert_eq!(failure(jwe), Failure::BadFormat);
    }

    // An empty header or payload segment is BadFormat; an empty signature is a bad signature.
    #[test]
    fn empty_segments() {
        let h = b64(r#"{"alg":"RS256"}"#);
        let p = b64("{}");
        assert_eq!(failure(&format!(".{p}.c2ln")), Failure::BadFormat);
        assert_eq!(failure(&format!("{h}..c2ln")), Failure::BadFormat);
        assert_eq!(failure(&format!("{h}.{p}.")), Failure::BadSignatureEncoding);
        assert_eq!(failure(".."), Failure::BadFormat);
    }

    // Only canonical unpadded base64url is accepted in the header.
    #[test]
    fn header_base64_is_strict() {
        let valid = with_payload("{}");
        let (h, rest) = valid.split_once('.').unwrap();
        // Padding.
        assert_eq!(failure(&format!("{h}=.{rest}")), Failure::BadHeaderJson);
        // Whitespace.
        assert_eq!(failure(&format!(" {h}.{rest}")), Failure::BadHeaderJson);
        assert_eq!(failure(&format!("{h}\n.{rest}")), Failure::BadHeaderJson);
        // Standard alphabet: this header encodes with '+' or '/' there.
        let std =
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(r#"{"alg":"RS256","x":">>>"}"#);
        assert!(std.contains('+') || std.contains('/'));
        assert_eq!(failure(&format!("{std}.{rest}")), Failure::BadHeaderJson);
        // Non-canonical trailing bits: the last character of a one-byte tail carries 4 unused bits.
        let canonical = b64(r#"{"alg":"RS256"} "#);
        assert!(canonical.ends_with('A'));
        let tweaked = format!("{}B", &canonical[..canonical.len() - 1]);
        assert!(parse(&format!("{canonical}.{rest}")).is_ok());
        assert_eq!(
            failure(&format!("{tweaked}.{rest}")),
            Failure::BadHeaderJson
        );
        // Impossible length.
        assert_eq!(failure(&format!("{h}A.{rest}")), Failure::BadHeaderJson);
    }

    // Non-canonical trailing bits are refused in every segment.
    #[test]
    fn trailing_bits_are_refused() {
        assert_eq!(decode_base64url("e30").unwrap(), b"{}");
        assert_eq!(decode_base64url("e31"), None);
        let h = b64(r#"{"alg":"RS256"}"#);
        assert_eq!(failure(&format!("{h}.e31.c2ln")), Failure::BadPayloadJson);
        // "YQ" is "a"; "YR" sets one of the 4 unused bits of the one-byte tail.
        assert_eq!(decode_base64url("YQ").unwrap(), b"a");
        assert_eq!(decode_base64url("YR"), None);
        assert_eq!(
            failure(&format!("{h}.e30.YR")),
            Failure::BadSignatureEncoding
        );
        assert_eq!(
            failure(&format!("{h}.e30.YQ==")),
            Failure::BadSignatureEncoding
        );
        assert_eq!(
            failure(&format!("{h}.e30.Y+Q")),
            Failure::BadSignatureEncoding
        );
    }

    // Header JSON problems are BadHeaderJson; a header that is not an object is too.
    #[test]
    fn header_json() {
        assert_eq!(failure(&with_header("{")), Failure::BadHeaderJson);
        assert_eq!(failure(&with_header(r#"["alg"]"#)), Failure::BadHeaderJson);
        assert_eq!(failure(&with_header(r#""RS256""#)), Failure::BadHeaderJson);
        assert_eq!(
            failure(&with_header(r#"{"alg":"RS256"}x"#)),
            Failure::BadHeaderJson
        );
    }

    // Payload base64 and JSON problems are BadPayloadJson; the payload must be an object.
    #[test]
    fn payload_json() {
        let h = b64(r#"{"alg":"RS256"}"#);
        assert_eq!(failure(&format!("{h}.e30=.c2ln")), Failure::BadPayloadJson);
        assert_eq!(failure(&format!("{h}.!!!!.c2ln")), Failure::BadPayloadJson);
        assert_eq!(failure(&with_payload("foo")), Failure::BadPayloadJson);
        assert_eq!(failure(&with_payload("[1]")), Failure::BadPayloadJson);
        assert_eq!(failure(&with_payload("1")), Failure::BadPayloadJson);
        assert_eq!(failure(&with_payload(r#"{"a":1"#)), Failure::BadPayloadJson);
    }

    // A signature segment that is not canonical base64url is BadSignatureEncoding.
    #[test]
    fn signature_encoding() {
        let valid = with_payload("{}");
        let prefix = &valid[..valid.rfind('.').unwrap()];
        for bad in ["c2ln=", "c2l/", "c2l+", "c2l n", "c", "%%%%"] {
            assert_eq!(
                failure(&format!("{prefix}.{bad}")),
                Failure::BadSignatureEncoding,
                "{bad}"
            );
        }
    }

    // Repeated member names in header or payload are DuplicateName, at any depth.
    #[test]
    fn duplicate_names() {
        assert_eq!(
            failure(&with_header(r#"{"alg":"RS256","alg":"none"}"#)),
            Failure::DuplicateName
        );
        assert_eq!(
            failure(&with_payload(r#"{"iss":"a","iss":"b"}"#)),
            Failure::DuplicateName
        );
        assert_eq!(
            failure(&with_payload(r#"{"x":{"y":1,"y":2}}"#)),
            Failure::DuplicateName
        );
    }

    // `alg` is required and must be a string; unsupported algorithms are AlgNotAllowed.
    #[test]
    fn alg() {
        assert_eq!(failure(&with_header("{}")), Failure::BadHeaderJson);
        assert_eq!(
            failure(&with_header(r#"{"alg":256}"#)),
            Failure::BadHeaderJson
        );
        assert_eq!(
            failure(&with_header(r#"{"alg":null}"#)),
            Failure::BadHeaderJson
        );
        for name in [
            "none", "None", "HS256", "HS512", "RSA-OAEP", "ES512", "ES256K", "rs256", "Ed25519", "",
        ] {
            let header = format!(r#"{{"alg":"{name}"}}"#);
            assert_eq!(
                failure(&with_header(&header)),
                Failure::AlgNotAllowed,
                "{name}"
            );
        }
        for alg in Alg::ALL {
            let header = format!(r#"{{"alg":"{}"}}"#, alg.name());
            assert_eq!(header_of(&header).alg, alg);
        }
    }

    // Any `crit`, even an empty list or a non-list, is CritNotSupported.
    #[test]
    fn crit() {
        for crit in [r#"[]"#, r#"["exp"]"#, r#""b64""#, "null"] {
            let header = format!(r#"{{"alg":"RS256","crit":{crit}}}"#);
            assert_eq!(
                failure(&with_header(&header)),
                Failure::CritNotSupported,
                "{crit}"
            );
        }
    }

    // `b64` other than true is CritNotSupported; `b64: true` is the default and fine.
    #[test]
    fn b64_member() {
        for b64 in ["false", r#""false""#, "0", "null"] {
            let header = format!(r#"{{"alg":"RS256","b64":{b64}}}"#);
            assert_eq!(
                failure(&with_header(&header)),
                Failure::CritNotSupported,
                "{b64}"
            );
        }
        assert!(parse(&with_header(r#"{"alg":"RS256","b64":true}"#)).is_ok());
    }

    // `cty: JWT` in any case is a nested token; other string content types are fine.
    #[test]
    fn cty() {
        for cty in ["JWT", "jwt", "Jwt"] {
            let header = format!(r#"{{"alg":"RS256","cty":"{cty}"}}"#);
            assert_eq!(
                failure(&with_header(&header)),
                Failure::NestedToken,
                "{cty}"
            );
        }
        assert!(parse(&with_header(r#"{"alg":"RS256","cty":"json"}"#)).is_ok());
        assert_eq!(
            failure(&with_header(r#"{"alg":"RS256","cty":1}"#)),
            Failure::BadHeaderJson
        );
    }

    // `typ` must be JWT or end in +jwt, case-insensitively; anything else is BadType.
    #[test]
    fn typ() {
        for typ in [
            "JWT",
            "jwt",
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "+jwt",
        ] {
            let header = format!(r#"{{"alg":"RS256","typ":"{typ}"}}"#);
            assert_eq!(header_of(&header).typ.as_deref(), Some(typ));
        }
        for typ in [
            r#""JOSE""#,
            r#""dpop""#,
            r#""jwt+at""#,
            r#""JW""#,
            r#""""#,
            r#""jwt ""#,
            "1",
            "null",
            r#"["JWT"]"#,
        ] {
            let header = format!(r#"{{"alg":"RS256","typ":{typ}}}"#);
            assert_eq!(failure(&with_header(&header)), Failure::BadType, "{typ}");
        }
    }

    // `kid` must be a string when present.
    #[test]
    fn kid() {
        let header = header_of(r#"{"alg":"RS256","kid":"k"}"#);
        assert_eq!(header.kid.as_deref(), Some("k"));
        for kid in ["1", "null", r#"["k"]"#, r#"{"k":1}"#] {
            let header = format!(r#"{{"alg":"RS256","kid":{kid}}}"#);
            assert_eq!(
                failure(&with_header(&header)),
                Failure::BadHeaderJson,
                "{kid}"
            );
        }
    }

    // jku, x5u, jwk and x5c are ignored when jwt-simple can read them, refused when it cannot.
    #[test]
    fn key_location_members() {
        let ignored = r#"{"alg":"RS256","jku":"https://evil","x5u":"https://evil","jwk":null,"x5c":["MIIB"],"x5t":"abc"}"#;
        let header = header_of(ignored);
        assert_eq!(header.kid, None);
        for member in [
            r#""jwk":{"kty":"EC"}"#,
            r#""x5c":"MIIB""#,
            r#""x5c":[1]"#,
            r#""jku":1"#,
            r#""x5u":{}"#,
            r#""x5t#S256":[]"#,
            r#""salt":"!""#,
        ] {
            let header = format!(r#"{{"alg":"RS256",{member}}}"#);
            assert_eq!(
                failure(&with_header(&header)),
                Failure::BadHeaderJson,
                "{member}"
            );
        }
    }

    // A DPoP proof may embed its key; a token parsed as a token still may not.
    #[test]
    fn only_proofs_embed_a_key() {
        let token = with_header(r#"{"alg":"RS256","typ":"dpop+jwt","jwk":{"kty":"EC"}}"#);
        assert_eq!(failure(&token), Failure::BadHeaderJson);
        let proof = parse_proof(&token).unwrap();
        assert_eq!(proof.header.typ.as_deref(), Some("dpop+jwt"));
        let other = with_header(r#"{"alg":"RS256","jwk":{"kty":"EC"},"x5c":"MIIB"}"#);
        assert_eq!(parse_proof(&other).err(), Some(Failure::BadHeaderJson));
    }

    // iss, sub, jti and nonce must be strings; aud a string or a list of strings.
    #[test]
    fn claim_types() {
        for claim in [
            r#""iss":1"#,
            r#""iss":null"#,
            r#""sub":["s"]"#,
            r#""jti":{}"#,
            r#""nonce":true"#,
            r#""aud":1"#,
            r#""aud":null"#,
            r#""aud":{"a":1}"#,
            r#""aud":["a",1]"#,
            r#""aud":[["a"]]"#,
        ] {
            let payload = format!("{{{claim}}}");
            assert_eq!(
                failure(&with_payload(&payload)),
                Failure::BadClaimType,
                "{claim}"
            );
        }
        assert_eq!(claims_of(r#"{"aud":[]}"#).aud, Vec::<String>::new());
    }

    // Times must be non-negative integers: negatives are NegativeTime, the rest BadClaimType.
    #[test]
    fn time_claims() {
        for name in ["exp", "nbf", "iat"] {
            for value in ["-1", "-9223372036854775808", "-1.5", "-0.5", "-1e3"] {
                let payload = format!(r#"{{"{name}":{value}}}"#);
                assert_eq!(
                    failure(&with_payload(&payload)),
                    Failure::NegativeTime,
                    "{payload}"
                );
            }
            for value in [
                r#""1000""#,
                "null",
                "true",
                "[1]",
                "18446744073709551616",
                "18446744073709551615",
                "9223372036854775808",
                "9.3e18",
            ] {
                let payload = format!(r#"{{"{name}":{value}}}"#);
                assert_eq!(
                    failure(&with_payload(&payload)),
                    Failure::BadClaimType,
                    "{payload}"
                );
            }
            // The largest time a signed 64-bit clock holds, as in jwt_authn.
            let payload = format!(r#"{{"{name}":9223372036854775807}}"#);
            assert!(parse(&with_payload(&payload)).is_ok());
        }
        let registered = claims_of(r#"{"exp":0,"nbf":0,"iat":0}"#);
        assert_eq!(registered.exp, Some(NumericDate::whole(0)));
    }

    // RFC 7519 NumericDates may have a fraction or an exponent: kept to the nanosecond, with the
    // whole-second floor and ceiling that the time checks use.
    #[test]
    fn fractional_times() {
        let date = |text: &str| claims_of(&format!(r#"{{"exp":{text}}}"#)).exp.unwrap();
        let half = date("1767225600.5");
        assert_eq!(
            half,
            NumericDate {
                seconds: 1_767_225_600,
                nanos: 500_000_000
            }
        );
        assert_eq!((half.floor(), half.ceil()), (1_767_225_600, 1_767_225_601));
        assert_eq!(date("1.0"), NumericDate::whole(1));
        assert_eq!(date("1e3"), NumericDate::whole(1000));
        assert_eq!(date("1.5e3"), NumericDate::whole(1500));
        // A fraction too small for a nanosecond still counts: never rounded to a whole second.
        let tiny = date("1000.0000000001");
        assert_eq!((tiny.floor(), tiny.ceil()), (1000, 1001));
        assert!(date("100.5").exceeds_after(NumericDate::whole(0), 100));
        assert!(!date("100.5").exceeds_after(date("0.5"), 100));
        assert!(!date("100").exceeds_after(NumericDate::whole(0), 100));
    }

    // The signing input is the raw received text, byte for byte.
    #[test]
    fn signing_input_is_raw() {
        let raw = with_payload(r#"{ "iss" : "i" }"#);
        let parsed = parse(&raw).unwrap();
        assert!(raw.starts_with(parsed.signing_input));
        assert_eq!(
            parsed.signing_input.len() + 1 + "c2lnbmF0dXJl".len(),
            raw.len()
        );
        assert_eq!(&raw[parsed.signing_input.len()..], ".c2lnbmF0dXJl");
    }
}
