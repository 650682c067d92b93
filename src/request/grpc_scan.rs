//! The model a KServe V2 gRPC request names: field 1 (`model_name`, or `name`) of the first
//! message of `ModelInfer`, `ModelReady` and `ModelMetadata`, read as the body streams in.
//!
//! A gRPC body is a sequence of frames: one flag byte (1 for a compressed message), a four-byte
//! big-endian length, then the protobuf message. The reader walks the message's fields by their
//! wire types, skipping the others (a large `raw_input_contents` costs no memory), and keeps only
//! field 1. Protobuf parsers keep the last of two values of one field, so a second field 1 is
//! refused rather than guessed.

use super::json_scan::MAX_MODEL_BYTES;

/// Why a gRPC body cannot name a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcBodyError {
    /// The first frame is compressed: the filter does not decompress.
    Compressed,
    /// The first message is longer than the configured limit.
    TooLarge,
    /// Not a well-formed frame and message, or field 1 is not a length-delimited UTF-8 string
    /// of at most [`MAX_MODEL_BYTES`].
    Malformed,
    /// Field 1 appears twice.
    RepeatedModel,
    /// The message has no field 1.
    NoModel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the five-byte frame prefix: how many bytes are read.
    Prefix(usize),
    /// Reading a field's tag varint: its value so far and its shift.
    Tag(u64, u32),
    /// Reading a length varint, for field `field` (wire type 2).
    Length { field: u64, value: u64, shift: u32 },
    /// Reading a varint value to skip: its shift so far.
    SkipVarint(u32),
    /// Skipping this many bytes.
    Skip(u64),
    /// Reading field 1's bytes: how many are left.
    Model(u64),
    /// The first message has been read.
    Done,
}

/// Finds field 1 of the first message of a gRPC request body fed to it in pieces.
#[derive(Debug, Clone)]
pub struct GrpcModelScanner {
    state: State,
    /// Largest first message accepted, in bytes.
    max_message_bytes: u64,
    prefix: [u8; 5],
    /// Bytes of the message still to read.
    remaining: u64,
    value: Vec<u8>,
    model: Option<String>,
    failed: Option<GrpcBodyError>,
}

impl GrpcModelScanner {
    /// A scanner at the start of a body whose first message may be up to `max_message_bytes`.
    pub fn new(max_message_bytes: u64) -> GrpcModelScanner {
        GrpcModelScanner {
            state: State::Prefix(0),
            max_message_bytes,
            prefix: [0; 5],
            remaining: 0,
            value: Vec::new(),
            model: None,
            failed: None,
        }
    }

    /// The model name, as soon as field 1 has been read.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// Whether the first message has been read whole.
    pub fn is_complete(&self) -> bool {
        self.state == State::Done
    }

    /// Reads the next piece of the body. An error is final.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), GrpcBodyError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        let mut rest = bytes;
        while !rest.is_empty() && self.state != State::Done {
            match self.step(rest) {
                Ok(used) => rest = rest.get(used..).unwrap_or_default(),
                Err(error) => {
                    self.failed = Some(error);
                    return Err(error);
                }
            }
        }
        Ok(())
    }

    /// The verdict at the end of the body.
    pub fn finish(&self) -> Result<&str, GrpcBodyError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        match (&self.state, &self.model) {
            (State::Done, Some(model)) => Ok(model),
            (State::Done, None) => Err(GrpcBodyError::NoModel),
            _ => Err(GrpcBodyError::Malformed),
        }
    }

    /// Consumes from the start of `bytes`; returns how many bytes it used (at least one).
    fn step(&mut self, bytes: &[u8]) -> Result<usize, GrpcBodyError> {
        let Some(&byte) = bytes.first() else {
            return Ok(0);
        };
        match self.state {
            State::Prefix(read) => {
                if let Some(slot) = self.prefix.get_mut(read) {
                    *slot = byte;
                }
                if read + 1 < self.prefix.len() {
                    self.state = State::Prefix(read + 1);
                    return Ok(1);
                }
                match self.prefix[0] {
                    0 => {}
                    1 => return Err(GrpcBodyError::Compressed),
                    _ => return Err(GrpcBodyError::Malformed),
                }
                let length = u32::from_be_bytes([
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ]);
                self.remaining = u64::from(length);
                if self.remaining > self.max_message_bytes {
                    return Err(GrpcBodyError::TooLarge);
                }
                self.state = self.next_field();
                Ok(1)
            }
            State::Tag(value, shift) => {
                self.take_message_byte()?;
                let (value, done) = varint_step(value, shift, byte)?;
                if !done {
                    self.state = State::Tag(value, shift + 7);
                    return Ok(1);
                }
                // Field numbers run from 1 to 2^29 - 1, and a key fits 32 bits.
                let field = value >> 3;
                if field == 0 || value > u64::from(u32::MAX) {
                    return Err(GrpcBodyError::Malformed);
                }
                self.state = match (field, value & 7) {
                    (1, _) if self.model.is_some() => return Err(GrpcBodyError::RepeatedModel),
                    (1, 2) => State::Length {
                        field,
                        value: 0,
                        shift: 0,
                    },
                    (1, _) => return Err(GrpcBodyError::Malformed),
                    (_, 0) => State::SkipVarint(0),
                    (_, 1) => State::Skip(8),
                    (_, 2) => State::Length {
                        field,
                        value: 0,
                        shift: 0,
                    },
                    (_, 5) => State::Skip(4),
                    _ => return Err(GrpcBodyError::Malformed),
                };
                self.settle();
                Ok(1)
            }
            State::Length {
                field,
                value,
                shift,
            } => {
                self.take_message_byte()?;
                let (value, done) = varint_step(value, shift, byte)?;
                if !done {
                    self.state = State::Length {
                        field,
                        value,
                        shift: shift + 7,
                    };
                    return Ok(1);
                }
                if value > self.remaining {
                    return Err(GrpcBodyError::Malformed);
                }
                if field == 1 {
                    if value > MAX_MODEL_BYTES as u64 {
                        return Err(GrpcBodyError::Malformed);
                    }
                    self.value.clear();
                    self.state = State::Model(value);
                } else {
                    self.state = State::Skip(value);
                }
                self.settle();
                Ok(1)
            }
            State::SkipVarint(shift) => {
                self.take_message_byte()?;
                let (_, done) = varint_step(0, shift, byte)?;
                self.state = if done {
                    self.next_field()
                } else {
                    State::SkipVarint(shift + 7)
                };
                Ok(1)
            }
            State::Skip(left) => {
                let available = bytes.len() as u64;
                let used = left.min(available).min(self.remaining);
                self.remaining -= used;
                let left = left - used;
                self.state = State::Skip(left);
                self.settle();
                // `used` is at most `bytes.len()`, so it fits.
                Ok(usize::try_from(used).unwrap_or(bytes.len()).max(1))
            }
            State::Model(left) => {
                let available = bytes.len() as u64;
                let used = left.min(available);
                let taken = usize::try_from(used).unwrap_or(0);
                self.value
                    .extend_from_slice(bytes.get(..taken).unwrap_or_default());
                self.remaining -= used;
                let left = left - used;
                if left == 0 {
                    let name = String::from_utf8(std::mem::take(&mut self.value))
                        .map_err(|_| GrpcBodyError::Malformed)?;
                    if name.is_empty() {
                        return Err(GrpcBodyError::NoModel);
                    }
                    self.model = Some(name);
                    self.state = self.next_field();
                } else {
                    self.state = State::Model(left);
                }
                Ok(taken.max(1))
            }
            State::Done => Ok(bytes.len()),
        }
    }

    /// One byte of the message consumed by a tag or varint.
    fn take_message_byte(&mut self) -> Result<(), GrpcBodyError> {
        self.remaining = self
            .remaining
            .checked_sub(1)
            .ok_or(GrpcBodyError::Malformed)?;
        Ok(())
    }

    /// The state after a field: the next tag, or the end of the message.
    fn next_field(&self) -> State {
        if self.remaining == 0 {
            State::Done
        } else {
            State::Tag(0, 0)
        }
    }

    /// A skip or field of zero bytes left ends at once.
    fn settle(&mut self) {
        match self.state {
            State::Skip(0) => self.state = self.next_field(),
            State::Model(0) => {
                // An empty field 1 names no model.
                self.failed = Some(GrpcBodyError::NoModel);
                self.state = State::Done;
            }
            _ => {}
        }
    }
}

/// One byte of a varint: the value so far, and whether it ended. More than 64 bits (a tenth byte
/// above 1, or an eleventh) is malformed, as protobuf decoders have it.
fn varint_step(value: u64, shift: u32, byte: u8) -> Result<(u64, bool), GrpcBodyError> {
    if shift > 63 || (shift == 63 && byte > 1) {
        return Err(GrpcBodyError::Malformed);
    }
    let value = value | (u64::from(byte & 0x7f) << shift);
    Ok((value, byte & 0x80 == 0))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn varint(mut value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    fn field_bytes(field: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = varint(field << 3 | 2);
        out.extend(varint(bytes.len() as u64));
        out.extend_from_slice(bytes);
        out
    }

    fn frame(flag: u8, message: &[u8]) -> Vec<u8> {
        let mut out = vec![flag];
        out.extend((message.len() as u32).to_be_bytes());
        out.extend_from_slice(message);
        out
    }

    fn scan(body: &[u8], piece: usize) -> Result<String, GrpcBodyError> {
        let mut scanner = GrpcModelScanner::new(1 << 20);
        for chunk in body.chunks(piece.max(1)) {
            scanner.feed(chunk)?;
        }
        scanner.finish().map(str::to_owned)
    }

    /// A ModelInferRequest: model_name (1), model_version (2), id (3), a varint, a fixed64, a
    /// fixed32, and raw_input_contents (7) of `raw` bytes, with field 1 where `model_at` says.
    fn infer_request(model: &str, model_at: usize, raw: usize) -> Vec<u8> {
        let mut fields = vec![
            field_bytes(2, b"1"),
            field_bytes(3, b"request-7"),
            [varint(4 << 3), varint(300)].concat(),
            [varint(5 << 3 | 1), vec![0; 8]].concat(),
            [varint(6 << 3 | 5), vec![0; 4]].concat(),
            field_bytes(7, &vec![0xab; raw]),
        ];
        fields.insert(model_at.min(fields.len()), field_bytes(1, model.as_bytes()));
        fields.concat()
    }

    // Field 1 is found wherever it is, in any split of the body.
    #[test]
    fn model_name_anywhere_among_the_fields() {
        for model_at in 0..=6 {
            let body = frame(0, &infer_request("fraud", model_at, 300));
            for piece in [1, 2, 5, 6, 64, body.len()] {
                assert_eq!(
                    scan(&body, piece).as_deref(),
                    Ok("fraud"),
                    "at {model_at}, {piece}"
                );
            }
        }
    }

    // The model is known before the large field after it arrives.
    #[test]
    fn decides_before_the_tensors() {
        let body = frame(0, &infer_request("fraud", 0, 100_000));
        let mut scanner = GrpcModelScanner::new(1 << 20);
        scanner.feed(&body[..20]).unwrap();
        assert_eq!(scanner.model(), Some("fraud"));
        assert!(!scanner.is_complete());
    }

    // Each refusal has its reason.
    #[test]
    fn refusals() {
        let message = infer_request("fraud", 0, 10);
        assert_eq!(
            scan(&frame(1, &message), 64),
            Err(GrpcBodyError::Compressed)
        );
        assert_eq!(scan(&frame(2, &message), 64), Err(GrpcBodyError::Malformed));
        let mut small = GrpcModelScanner::new(8);
        assert_eq!(
            small.feed(&frame(0, &message)),
            Err(GrpcBodyError::TooLarge)
        );
        let without = [field_bytes(2, b"1"), field_bytes(3, b"x")].concat();
        assert_eq!(scan(&frame(0, &without), 3), Err(GrpcBodyError::NoModel));
        let twice = [field_bytes(1, b"a"), field_bytes(1, b"b")].concat();
        assert_eq!(
            scan(&frame(0, &twice), 3),
            Err(GrpcBodyError::RepeatedModel)
        );
        let varint_one = [varint(1 << 3), varint(5)].concat();
        assert_eq!(
            scan(&frame(0, &varint_one), 3),
            Err(GrpcBodyError::Malformed)
        );
        let not_utf8 = field_bytes(1, b"\xff");
        assert_eq!(scan(&frame(0, &not_utf8), 3), Err(GrpcBodyError::Malformed));
        let empty = field_bytes(1, b"");
        assert_eq!(scan(&frame(0, &empty), 3), Err(GrpcBodyError::NoModel));
        // A field longer than its message.
        let mut overlong = field_bytes(7, &[0; 10]);
        overlong.truncate(5);
        assert_eq!(scan(&frame(0, &overlong), 3), Err(GrpcBodyError::Malformed));
        // A body that ends inside the first message.
        let full = frame(0, &message);
        assert_eq!(
            scan(&full[..full.len() - 1], 4),
            Err(GrpcBodyError::Malformed)
        );
        assert_eq!(scan(&[], 1), Err(GrpcBodyError::Malformed));
        let group = [varint(4 << 3 | 3)].concat();
        assert_eq!(scan(&frame(0, &group), 1), Err(GrpcBodyError::Malformed));
    }
}
