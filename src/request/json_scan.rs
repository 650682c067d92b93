//! The `model` member of a JSON request body, found as the body streams in: the
//! OpenAI-compatible API names the model there (`{"model": "llama-3-8b", "messages": [...]}`).
//!
//! The scanner reads each byte once and keeps only what it needs: its position in the JSON
//! structure, the name of the top-level member being read (at most a few bytes of it), and the
//! model name. A `model` after a long `messages` array costs no memory for the array. Only the
//! top-level object's members count: a `model` inside `messages` or `tools` is skipped with
//! everything else that is nested.
//!
//! It reads the body as the model server's JSON parser (Python's) does where that matters:
//! member names and the model name are unescaped (`"m\u006fdel"` is `model`), and because that
//! parser keeps the last of two members with one name, a second top-level `model` is refused
//! rather than guessed. What it does not check (number syntax, say) the model server's parser
//! refuses on its own, so no body both passes here and names another model there.

/// Longest model name accepted, in bytes.
pub const MAX_MODEL_BYTES: usize = 512;
/// How many bytes of a top-level member name are kept: enough to tell `model` from the rest.
const KEY_PREFIX_BYTES: usize = 8;

/// Why a body cannot name a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonBodyError {
    /// Not a JSON object, or not well-formed where the scanner looks.
    NotAnObject,
    /// The top-level `model` is not a string (or is longer than [`MAX_MODEL_BYTES`], or not
    /// valid UTF-8).
    ModelNotAString,
    /// Two top-level `model` members.
    RepeatedModel,
    /// The object ended without a top-level `model`.
    NoModel,
}

/// Where the scanner is in the JSON text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the top-level `{` (a UTF-8 byte order mark and whitespace allowed).
    Start,
    /// Inside the top-level object, before a member name or `}`.
    BeforeKey,
    /// Inside a top-level member name.
    Key(Escape),
    /// After a top-level member name, before `:`.
    AfterKey,
    /// After `:`, before the value.
    BeforeValue,
    /// Inside the `model` string.
    ModelValue(Escape),
    /// Inside another top-level value (or something nested in one).
    Skipping(Escape),
    /// After a top-level value, before `,` or `}`.
    AfterValue,
    /// After the top-level object's `}`.
    Done,
}

/// Where a string's escape sequence is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    /// Not in an escape.
    None,
    /// After `\`.
    Backslash,
    /// Reading the hex digits of `\u`: how many are read, and their value so far.
    Unicode(u8, u16),
}

/// Finds the top-level `model` member of a JSON object fed to it in pieces.
#[derive(Debug, Clone)]
pub struct JsonModelScanner {
    state: State,
    /// Nesting depth inside a skipped value: 0 for a scalar or string at the top level.
    depth: usize,
    /// Whether the skipped value is a string, or a scalar (a number or literal).
    in_string: bool,
    /// The start of the member name being read, unescaped, and whether it was longer.
    key: Vec<u8>,
    key_overflow: bool,
    /// The model name being read, unescaped (UTF-8 bytes), or read.
    value: Vec<u8>,
    /// A high surrogate waiting for its low half.
    high_surrogate: Option<u16>,
    /// The model name, once its string closed.
    model: Option<String>,
    /// Bytes seen, and how many of them were a byte order mark.
    offset: usize,
    bom_bytes: usize,
    failed: Option<JsonBodyError>,
}

impl Default for JsonModelScanner {
    fn default() -> JsonModelScanner {
        JsonModelScanner::new()
    }
}

fn is_blank(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

const BYTE_ORDER_MARK: [u8; 3] = [0xef, 0xbb, 0xbf];

impl JsonModelScanner {
    /// A scanner at the start of a body.
    pub fn new() -> JsonModelScanner {
        JsonModelScanner {
            state: State::Start,
            depth: 0,
            in_string: false,
            key: Vec::with_capacity(KEY_PREFIX_BYTES),
            key_overflow: false,
            value: Vec::new(),
            high_surrogate: None,
            model: None,
            offset: 0,
            bom_bytes: 0,
            failed: None,
        }
    }

    /// The model name, as soon as its string has closed.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// Whether the top-level object has closed: nothing after it matters.
    pub fn is_complete(&self) -> bool {
        self.state == State::Done
    }

    /// Reads the next piece of the body. An error is final: later pieces change nothing.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), JsonBodyError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        let mut rest = bytes;
        while let Some((&byte, tail)) = rest.split_first() {
            // Inside a skipped value, most bytes change nothing: jump to the next one that may.
            let plain = self.plain_run(rest);
            if plain > 0 {
                self.offset = self.offset.saturating_add(plain);
                rest = rest.get(plain..).unwrap_or_default();
                continue;
            }
            if let Err(error) = self.step(byte) {
                self.failed = Some(error);
                return Err(error);
            }
            self.offset = self.offset.saturating_add(1);
            rest = tail;
        }
        Ok(())
    }

    /// How many bytes at the start of `bytes` a skipped value passes over without a change of
    /// state: in a string, up to a quote or backslash; between nested values, up to a quote or
    /// bracket.
    fn plain_run(&self, bytes: &[u8]) -> usize {
        if self.state != State::Skipping(Escape::None) {
            return 0;
        }
        let stops: &[u8] = if self.in_string {
            b"\"\\"
        } else if self.depth > 0 {
            b"\"{}[]"
        } else {
            return 0;
        };
        bytes
            .iter()
            .position(|byte| stops.contains(byte))
            .unwrap_or(bytes.len())
    }

    /// The verdict at the end of the body: the model, or why there is none.
    pub fn finish(&self) -> Result<&str, JsonBodyError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        match (&self.state, &self.model) {
            (State::Done, Some(model)) => Ok(model),
            (State::Done, None) => Err(JsonBodyError::NoModel),
            _ => Err(JsonBodyError::NotAnObject),
        }
    }

    fn step(&mut self, byte: u8) -> Result<(), JsonBodyError> {
        match self.state {
            State::Start => {
                // A UTF-8 byte order mark, whole and first, is skipped, as Python's parser does.
                if self.offset < BYTE_ORDER_MARK.len()
                    && self.bom_bytes == self.offset
                    && BYTE_ORDER_MARK.get(self.offset) == Some(&byte)
                {
                    self.bom_bytes += 1;
                    return Ok(());
                }
                if self.bom_bytes > 0 && self.bom_bytes < BYTE_ORDER_MARK.len() {
                    return Err(JsonBodyError::NotAnObject);
                }
                match byte {
                    b'{' => self.state = State::BeforeKey,
                    byte if is_blank(byte) => {}
                    _ => return Err(JsonBodyError::NotAnObject),
                }
            }
            State::BeforeKey => match byte {
                b'"' => {
                    self.key.clear();
                    self.key_overflow = false;
                    self.state = State::Key(Escape::None);
                }
                b'}' => self.state = State::Done,
                byte if is_blank(byte) => {}
                _ => return Err(JsonBodyError::NotAnObject),
            },
            State::Key(escape) => {
                let (next, decoded) = string_step(escape, byte, &mut self.high_surrogate)
                    .ok_or(JsonBodyError::NotAnObject)?;
                match next {
                    StringStep::Continue(escape) => {
                        self.state = State::Key(escape);
                        if let Some(decoded) = decoded {
                            self.push_key(decoded.as_slice());
                        }
                    }
                    StringStep::End => self.state = State::AfterKey,
                }
            }
            State::AfterKey => match byte {
                b':' => self.state = State::BeforeValue,
                byte if is_blank(byte) => {}
                _ => return Err(JsonBodyError::NotAnObject),
            },
            State::BeforeValue => {
                let is_model = !self.key_overflow && self.key == b"model";
                match byte {
                    byte if is_blank(byte) => {}
                    b'"' if is_model => {
                        if self.model.is_some() {
                            return Err(JsonBodyError::RepeatedModel);
                        }
                        self.value.clear();
                        self.state = State::ModelValue(Escape::None);
                    }
                    _ if is_model => {
                        return Err(if self.model.is_some() {
                            JsonBodyError::RepeatedModel
                        } else {
                            JsonBodyError::ModelNotAString
                        })
                    }
                    b'"' => {
                        self.in_string = true;
                        self.depth = 0;
                        self.state = State::Skipping(Escape::None);
                    }
                    b'{' | b'[' => {
                        self.in_string = false;
                        self.depth = 1;
                        self.state = State::Skipping(Escape::None);
                    }
                    b'}' | b']' | b',' | b':' => return Err(JsonBodyError::NotAnObject),
                    _ => {
                        // A number or a literal: it runs to the next delimiter.
                        self.in_string = false;
                        self.depth = 0;
                        self.state = State::Skipping(Escape::None);
                    }
                }
            }
            State::ModelValue(escape) => {
                let (next, decoded) = string_step(escape, byte, &mut self.high_surrogate)
                    .ok_or(JsonBodyError::ModelNotAString)?;
                if let Some(decoded) = decoded {
                    if self.value.len() + decoded.len > MAX_MODEL_BYTES {
                        return Err(JsonBodyError::ModelNotAString);
                    }
                    self.value.extend_from_slice(decoded.as_slice());
                }
                match next {
                    StringStep::Continue(escape) => self.state = State::ModelValue(escape),
                    StringStep::End => {
                        let name = String::from_utf8(std::mem::take(&mut self.value))
                            .map_err(|_| JsonBodyError::ModelNotAString)?;
                        self.model = Some(name);
                        self.state = State::AfterValue;
                    }
                }
            }
            State::Skipping(escape) => self.skip(escape, byte)?,
            State::AfterValue => match byte {
                b',' => self.state = State::BeforeKey,
                b'}' => self.state = State::Done,
                byte if is_blank(byte) => {}
                _ => return Err(JsonBodyError::NotAnObject),
            },
            State::Done => {
                if !is_blank(byte) {
                    return Err(JsonBodyError::NotAnObject);
                }
            }
        }
        Ok(())
    }

    /// One byte of a value that is not the model: strings are walked escape by escape so that a
    /// quote or bracket inside one never counts, brackets are counted, and a scalar ends at the
    /// first delimiter (which is then read as what follows the value).
    fn skip(&mut self, escape: Escape, byte: u8) -> Result<(), JsonBodyError> {
        if self.in_string {
            match (escape, byte) {
                (Escape::Backslash, _) => self.state = State::Skipping(Escape::None),
                (_, b'\\') => self.state = State::Skipping(Escape::Backslash),
                (_, b'"') => {
                    self.in_string = false;
                    if self.depth == 0 {
                        self.state = State::AfterValue;
                    }
                }
                _ => {}
            }
            return Ok(());
        }
        if self.depth == 0 {
            // A scalar at the top level.
            return match byte {
                b',' => {
                    self.state = State::BeforeKey;
                    Ok(())
                }
                b'}' => {
                    self.state = State::Done;
                    Ok(())
                }
                byte if is_blank(byte) => {
                    self.state = State::AfterValue;
                    Ok(())
                }
                b'"' | b'{' | b'[' | b']' | b':' => Err(JsonBodyError::NotAnObject),
                _ => Ok(()),
            };
        }
        match byte {
            b'"' => self.in_string = true,
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' => {
                self.depth -= 1;
                if self.depth == 0 {
                    self.state = State::AfterValue;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn push_key(&mut self, decoded: &[u8]) {
        if self.key.len() + decoded.len() > KEY_PREFIX_BYTES {
            self.key_overflow = true;
        } else {
            self.key.extend_from_slice(decoded);
        }
    }
}

/// What one byte of a string does.
enum StringStep {
    /// The string goes on, in this escape state.
    Continue(Escape),
    /// The closing quote.
    End,
}

/// The UTF-8 bytes one step of a string adds: up to four.
struct Decoded {
    bytes: [u8; 4],
    len: usize,
}

impl Decoded {
    fn byte(byte: u8) -> Option<Decoded> {
        Some(Decoded {
            bytes: [byte, 0, 0, 0],
            len: 1,
        })
    }

    fn as_slice(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

/// One byte of a JSON string being unescaped: the next state and the UTF-8 bytes it adds.
/// `None` for what JSON does not allow in a string (a control character, a bad escape, a lone
/// surrogate).
fn string_step(
    escape: Escape,
    byte: u8,
    high_surrogate: &mut Option<u16>,
) -> Option<(StringStep, Option<Decoded>)> {
    match escape {
        Escape::None => {
            if high_surrogate.is_some() && byte != b'\\' {
                return None;
            }
            match byte {
                b'"' => Some((StringStep::End, None)),
                b'\\' => Some((StringStep::Continue(Escape::Backslash), None)),
                0x00..=0x1f => None,
                byte => Some((StringStep::Continue(Escape::None), Decoded::byte(byte))),
            }
        }
        Escape::Backslash => {
            if high_surrogate.is_some() && byte != b'u' {
                return None;
            }
            let decoded = match byte {
                b'"' => b'"',
                b'\\' => b'\\',
                b'/' => b'/',
                b'b' => 0x08,
                b'f' => 0x0c,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'u' => return Some((StringStep::Continue(Escape::Unicode(0, 0)), None)),
                _ => return None,
            };
            Some((StringStep::Continue(Escape::None), Decoded::byte(decoded)))
        }
        Escape::Unicode(count, value) => {
            let digit = u16::from(char::from(byte).to_digit(16)? as u8);
            let value = value << 4 | digit;
            if count < 3 {
                return Some((
                    StringStep::Continue(Escape::Unicode(count + 1, value)),
                    None,
                ));
            }
            let text = match (high_surrogate.take(), value) {
                (None, 0xd800..=0xdbff) => {
                    *high_surrogate = Some(value);
                    return Some((StringStep::Continue(Escape::None), None));
                }
                (None, 0xdc00..=0xdfff) => return None,
                (None, unit) => char::from_u32(u32::from(unit))?,
                (Some(high), low @ 0xdc00..=0xdfff) => {
                    let code =
                        0x10000 + ((u32::from(high) - 0xd800) << 10) + (u32::from(low) - 0xdc00);
                    char::from_u32(code)?
                }
                (Some(_), _) => return None,
            };
            let mut bytes = [0u8; 4];
            let len = text.encode_utf8(&mut bytes).len();
            Some((
                StringStep::Continue(Escape::None),
                Some(Decoded { bytes, len }),
            ))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn scan(body: &[u8]) -> Result<String, JsonBodyError> {
        let mut scanner = JsonModelScanner::new();
        scanner.feed(body)?;
        scanner.finish().map(str::to_owned)
    }

    fn scan_in_pieces(body: &[u8], size: usize) -> Result<String, JsonBodyError> {
        let mut scanner = JsonModelScanner::new();
        for piece in body.chunks(size) {
            scanner.feed(piece)?;
        }
        scanner.finish().map(str::to_owned)
    }

    // The model is found wherever it is among the top-level members, and nested ones never count.
    #[test]
    fn top_level_model_only() {
        let cases: [(&[u8], &str); 6] = [
            (br#"{"model": "llama-a", "messages": []}"#, "llama-a"),
            (
                br#"{"messages": [{"role": "user", "content": "{\"model\": \"x\"}", "model": "y"}], "model": "llama-b"}"#,
                "llama-b",
            ),
            (
                br#"{"tools": [{"model": "nested"}], "n": 1, "stream": true, "x": null, "model":"m"}"#,
                "m",
            ),
            (b"\xef\xbb\xbf {\"model\":\"bom\"}", "bom"),
            (br#"{"m\u006fdel": "escaped-key"}"#, "escaped-key"),
            (br#"{"model": "caf\u00e9-\ud83d\ude00\/v1"}"#, "café-😀/v1"),
        ];
        for (body, model) in cases {
            assert_eq!(
                scan(body).as_deref(),
                Ok(model),
                "{}",
                String::from_utf8_lossy(body)
            );
            for size in [1, 2, 3, 7] {
                assert_eq!(scan_in_pieces(body, size).as_deref(), Ok(model));
            }
        }
    }

    // The model is known as soon as its string closes, before the rest of the body arrives.
    #[test]
    fn decides_early() {
        let mut scanner = JsonModelScanner::new();
        scanner
            .feed(br#"{"model": "llama-a", "messages": [{"role": "us"#)
            .unwrap();
        assert_eq!(scanner.model(), Some("llama-a"));
        assert!(!scanner.is_complete());
    }

    // A model after a long messages array: the array costs no memory.
    #[test]
    fn long_messages_before_the_model() {
        let message =
            r#"{"role": "user", "content": "lorem ipsum \"quoted\" [brackets] {braces}"},"#;
        let mut body = String::from(r#"{"messages": ["#);
        while body.len() < 200 * 1024 {
            body.push_str(message);
        }
        body.push_str(r#"{"role": "user", "content": "end"}], "model": "late"}"#);
        let mut scanner = JsonModelScanner::new();
        for piece in body.as_bytes().chunks(16 * 1024) {
            scanner.feed(piece).unwrap();
        }
        assert_eq!(scanner.finish(), Ok("late"));
        assert!(scanner.key.capacity() <= 64 && scanner.value.capacity() <= MAX_MODEL_BYTES);
    }

    // Each refusal has its reason.
    #[test]
    fn refusals() {
        let cases: [(&[u8], JsonBodyError); 12] = [
            (b"[]", JsonBodyError::NotAnObject),
            (b"\"model\"", JsonBodyError::NotAnObject),
            (b"", JsonBodyError::NotAnObject),
            (br#"{"model": "a""#, JsonBodyError::NotAnObject),
            (br#"{"model": 7}"#, JsonBodyError::ModelNotAString),
            (br#"{"model": null}"#, JsonBodyError::ModelNotAString),
            (br#"{"model": ["a"]}"#, JsonBodyError::ModelNotAString),
            (
                br#"{"model": "a", "model": "b"}"#,
                JsonBodyError::RepeatedModel,
            ),
            (
                br#"{"model": "a", "mod\u0065l": 1}"#,
                JsonBodyError::RepeatedModel,
            ),
            (br#"{"messages": []}"#, JsonBodyError::NoModel),
            (
                br#"{"model": "a"} {"model": "b"}"#,
                JsonBodyError::NotAnObject,
            ),
            (b"{\"model\": \"a\xff\"}", JsonBodyError::ModelNotAString),
        ];
        for (body, error) in cases {
            assert_eq!(scan(body), Err(error), "{}", String::from_utf8_lossy(body));
        }
        let long = format!(r#"{{"model": "{}"}}"#, "m".repeat(MAX_MODEL_BYTES + 1));
        assert_eq!(scan(long.as_bytes()), Err(JsonBodyError::ModelNotAString));
        assert_eq!(
            scan(br#"{"model": "\ud800"}"#),
            Err(JsonBodyError::ModelNotAString)
        );
        assert_eq!(
            scan(b"{\"model\": \"a\nb\"}"),
            Err(JsonBodyError::ModelNotAString)
        );
    }

    // An error is final.
    #[test]
    fn errors_stick() {
        let mut scanner = JsonModelScanner::new();
        assert_eq!(scanner.feed(b"x"), Err(JsonBodyError::NotAnObject));
        assert_eq!(
            scanner.feed(br#"{"model": "a"}"#),
            Err(JsonBodyError::NotAnObject)
        );
    }
}
