//! Requests that name their model in the body: the OpenAI-compatible API (JSON, `"model"`) and
//! KServe's V2 gRPC service (protobuf field 1), and the scanner that reads the name as the body
//! streams in.

use super::grpc_scan::{GrpcBodyError, GrpcModelScanner};
use super::json_scan::{JsonBodyError, JsonModelScanner};

/// The OpenAI-compatible endpoints whose request body names a model, after a configured prefix
/// (`/openai/v1/` in KServe, `/v1/` where the prefix is rewritten away).
pub const OPENAI_ENDPOINTS: [&str; 4] = ["chat/completions", "completions", "embeddings", "rerank"];

/// The V2 gRPC methods whose request's field 1 names a model.
pub const GRPC_MODEL_METHODS: [&str; 3] = [
    "/inference.GRPCInferenceService/ModelInfer",
    "/inference.GRPCInferenceService/ModelReady",
    "/inference.GRPCInferenceService/ModelMetadata",
];

/// How a request's body names its model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyProtocol {
    /// A JSON object's top-level `"model"`.
    OpenAi,
    /// Field 1 of the first gRPC message.
    Grpc,
}

/// The body protocol of a request to `path` (normalized, decoded, no query), if its body names
/// the model: `POST` to an OpenAI-compatible endpoint under one of `openai_prefixes`, or a gRPC
/// call of a V2 model method.
pub fn body_protocol(
    method: &str,
    path: &str,
    grpc: bool,
    openai_prefixes: &[String],
) -> Option<BodyProtocol> {
    if grpc {
        return GRPC_MODEL_METHODS
            .contains(&path)
            .then_some(BodyProtocol::Grpc);
    }
    if method != "POST" {
        return None;
    }
    openai_prefixes
        .iter()
        .filter_map(|prefix| path.strip_prefix(prefix.as_str()))
        .any(|endpoint| OPENAI_ENDPOINTS.contains(&endpoint))
        .then_some(BodyProtocol::OpenAi)
}

/// Why a body names no model the filter can judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// A JSON body's fault.
    Json(JsonBodyError),
    /// A gRPC body's fault.
    Grpc(GrpcBodyError),
    /// More than the limit arrived without a model.
    TooLarge,
}

/// Reads the model name from a body fed to it in pieces, counting what it read against a limit.
#[derive(Debug, Clone)]
pub struct BodyScanner {
    kind: Kind,
    read: u64,
    max_bytes: u64,
}

#[derive(Debug, Clone)]
enum Kind {
    Json(JsonModelScanner),
    Grpc(GrpcModelScanner),
}

impl BodyScanner {
    /// A scanner for `protocol` that gives up after `max_bytes` without a model.
    pub fn new(protocol: BodyProtocol, max_bytes: u64) -> BodyScanner {
        let kind = match protocol {
            BodyProtocol::OpenAi => Kind::Json(JsonModelScanner::new()),
            BodyProtocol::Grpc => Kind::Grpc(GrpcModelScanner::new(max_bytes)),
        };
        BodyScanner {
            kind,
            read: 0,
            max_bytes,
        }
    }

    /// Bytes read so far.
    pub fn read(&self) -> u64 {
        self.read
    }

    /// Reads the next piece. A body past the limit with no model yet is [`BodyError::TooLarge`];
    /// once the model is known, the rest is still read (a second model is an error) but no
    /// longer counted against the limit.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), BodyError> {
        let (within, beyond) = if self.model().is_none() {
            let allowance = self.max_bytes.saturating_sub(self.read);
            bytes.split_at(usize::try_from(allowance).map_or(bytes.len(), |a| a.min(bytes.len())))
        } else {
            (bytes, &[][..])
        };
        self.scan(within)?;
        if !beyond.is_empty() {
            if self.model().is_none() {
                return Err(BodyError::TooLarge);
            }
            self.scan(beyond)?;
        }
        Ok(())
    }

    fn scan(&mut self, bytes: &[u8]) -> Result<(), BodyError> {
        self.read = self.read.saturating_add(bytes.len() as u64);
        match &mut self.kind {
            Kind::Json(scanner) => scanner.feed(bytes).map_err(BodyError::Json),
            Kind::Grpc(scanner) => scanner.feed(bytes).map_err(BodyError::Grpc),
        }
    }

    /// The model, as soon as it has been read.
    pub fn model(&self) -> Option<&str> {
        match &self.kind {
            Kind::Json(scanner) => scanner.model(),
            Kind::Grpc(scanner) => scanner.model(),
        }
    }

    /// The verdict once the whole body has been read.
    pub fn finish(&self) -> Result<&str, BodyError> {
        match &self.kind {
            Kind::Json(scanner) => scanner.finish().map_err(BodyError::Json),
            Kind::Grpc(scanner) => scanner.finish().map_err(BodyError::Grpc),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn prefixes() -> Vec<String> {
        vec!["/openai/v1/".into(), "/v1/".into()]
    }

    // The known endpoints under each prefix, POST only; gRPC by method.
    #[test]
    fn which_requests_name_their_model_in_the_body() {
        let p = prefixes();
        for path in [
            "/openai/v1/chat/completions",
            "/openai/v1/completions",
            "/v1/embeddings",
            "/v1/rerank",
        ] {
            assert_eq!(
                body_protocol("POST", path, false, &p),
                Some(BodyProtocol::OpenAi)
            );
            assert_eq!(body_protocol("GET", path, false, &p), None);
        }
        for path in [
            "/openai/v1/models",
            "/v1/models/m:predict",
            "/openai/v1/chat/completion",
        ] {
            assert_eq!(body_protocol("POST", path, false, &p), None, "{path}");
        }
        assert_eq!(
            body_protocol(
                "POST",
                "/inference.GRPCInferenceService/ModelInfer",
                true,
                &p
            ),
            Some(BodyProtocol::Grpc)
        );
        assert_eq!(
            body_protocol(
                "POST",
                "/inference.GRPCInferenceService/ServerLive",
                true,
                &p
            ),
            None
        );
    }

    // The limit counts until the model is known, not after.
    #[test]
    fn limit_until_the_model_is_known() {
        let mut scanner = BodyScanner::new(BodyProtocol::OpenAi, 32);
        scanner.feed(br#"{"messages": ["#).unwrap();
        assert_eq!(
            scanner.feed(br#""aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "#),
            Err(BodyError::TooLarge)
        );
        // A model that ends past the limit, in the same piece, is too late too.
        let mut scanner = BodyScanner::new(BodyProtocol::OpenAi, 32);
        assert_eq!(
            scanner.feed(br#"{"messages": ["aaaaaaaaaaaaaaaaaaaa"], "model": "m"}"#),
            Err(BodyError::TooLarge)
        );
        let mut scanner = BodyScanner::new(BodyProtocol::OpenAi, 32);
        scanner.feed(br#"{"model": "m", "messages": ["#).unwrap();
        scanner.feed(&[b' '; 100]).unwrap();
        assert_eq!(scanner.model(), Some("m"));
    }
}
