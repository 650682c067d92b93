//! The gRPC model reader against prost's decoding of the first message: whenever the reader names
//! a model, prost decodes the message and sees that same `model_name`. The body is fed in pieces
//! whose sizes come from the input too.

#![no_main]

use kserve_auth_filter::request::grpc_scan::GrpcModelScanner;
use libfuzzer_sys::fuzz_target;
use prost::Message;

/// What every V2 request the reader covers shares: field 1, the model's name. Other fields are
/// unknown here, and prost skips them.
#[derive(Clone, PartialEq, Message)]
struct NamedRequest {
    #[prost(string, tag = "1")]
    model_name: String,
}

const LIMIT: u64 = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&piece, body)) = data.split_first() else {
        return;
    };
    let piece = usize::from(piece % 16) + 1;
    let mut scanner = GrpcModelScanner::new(LIMIT);
    let mut fed = Ok(());
    for chunk in body.chunks(piece) {
        fed = scanner.feed(chunk);
        if fed.is_err() {
            break;
        }
    }
    let Ok(()) = fed else {
        return;
    };
    let Ok(model) = scanner.finish() else {
        return;
    };
    // The reader named a model: the frame is uncompressed, within the limit, and complete.
    assert_eq!(body.first(), Some(&0));
    let length = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
    assert!(length as u64 <= LIMIT);
    let message = &body[5..5 + length];
    let decoded = NamedRequest::decode(message).expect("prost decodes what the reader read");
    assert_eq!(decoded.model_name, model);
});
