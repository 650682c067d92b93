//! The host calls whose answers carry data from outside (request headers, callout answers, shared
//! data) or whose status the host may legitimately refuse, made on the proxy-wasm ABI directly.
//!
//! The SDK's wrappers for these calls panic where a host answer is unexpected: `get_map` unwraps
//! `String::from_utf8` on every header name and value, and nearly every wrapper ends in
//! `panic!("unexpected status")`. With `panic = "abort"` a panic traps the VM, and every later
//! request on that worker fails until Envoy restarts it, so one odd byte from a client or a key
//! server would take a worker down. Here every answer is bytes, every map is parsed with bounds
//! checks ([`crate::request::header_map`]), and every status the host returns is an `Err`, never a panic.
//!
//! The SDK calls the glue still makes, and why each cannot panic on what a client or a key
//! server sends, are listed in docs/hardening.md ("Host calls").

use std::ptr::{null, null_mut};

use crate::request::header_map::{self, HeaderPairs};

/// `proxy_wasm::types::MapType::HttpRequestHeaders`.
pub const REQUEST_HEADERS: u32 = 0;
/// `proxy_wasm::types::MapType::HttpCallResponseHeaders`.
pub const CALLOUT_RESPONSE_HEADERS: u32 = 6;
/// `proxy_wasm::types::BufferType::HttpCallResponseBody`.
pub const CALLOUT_RESPONSE_BODY: u32 = 4;
/// `proxy_wasm::types::BufferType::HttpRequestBody`.
pub const REQUEST_BODY: u32 = 0;
/// `proxy_wasm::types::BufferType::HttpResponseBody`.
pub const RESPONSE_BODY: u32 = 1;
/// `proxy_wasm::types::MapType::HttpResponseHeaders`.
pub const RESPONSE_HEADERS: u32 = 2;
/// `proxy_wasm::types::BufferType::PluginConfiguration`.
pub const PLUGIN_CONFIGURATION: u32 = 7;
/// `proxy_wasm::types::StreamType::HttpRequest`.
const STREAM_HTTP_REQUEST: u32 = 0;

const STATUS_OK: u32 = 0;
const STATUS_NOT_FOUND: u32 = 1;
const STATUS_SERIALIZATION_FAILURE: u32 = 3;
const STATUS_CAS_MISMATCH: u32 = 8;

/// A status other than success, as the host returned it (proxy-wasm ABI numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub u32);

impl HostError {
    /// Whether a shared-data write lost a compare-and-swap race.
    pub fn is_cas_mismatch(self) -> bool {
        self.0 == STATUS_CAS_MISMATCH
    }
}

impl std::fmt::Display for HostError {
    /// The ABI's number: 1 NotFound, 2 BadArgument, 3 SerializationFailure, 4 ParseFailure,
    /// 7 Empty, 8 CasMismatch, 10 InternalFailure, 12 Unimplemented.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host status {}", self.0)
    }
}

fn check(status: u32) -> Result<(), HostError> {
    if status == STATUS_OK {
        Ok(())
    } else {
        Err(HostError(status))
    }
}

// The SDK declares the same imports with its own enums for arguments and status; these take and
// return the ABI's plain integers so that no value the host returns can be an invalid enum.
#[allow(clashing_extern_declarations)]
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_close_stream(stream_type: u32) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_get_log_level(return_level: *mut u32) -> u32;
}

/// Takes ownership of a buffer the host allocated through the SDK's `proxy_on_memory_allocate`
/// (a boxed slice of exactly `size` bytes).
///
/// # Safety
/// `data` must be null or a pointer the host just returned with `size`.
unsafe fn owned(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        Vec::new()
    } else {
        // SAFETY: per the contract above, the allocation holds `size` initialised bytes with
        // capacity `size`, as the SDK's allocator made it.
        unsafe { Vec::from_raw_parts(data, size, size) }
    }
}

/// Every pair of a header map, as bytes, in the host's order. A map whose serialisation does not
/// parse is an error, never a panic.
pub fn header_pairs(map_type: u32) -> Result<HeaderPairs, HostError> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer and a size into the two out-parameters.
    let status = unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) };
    check(status)?;
    // SAFETY: `data`/`size` come straight from the host call above.
    let bytes = unsafe { owned(data, size) };
    let pairs = header_map::parse(&bytes).ok_or(HostError(STATUS_SERIALIZATION_FAILURE))?;
    Ok(pairs
        .into_iter()
        .map(|(name, value)| (name.to_vec(), value.to_vec()))
        .collect())
}

/// Removes every value of a response header.
pub fn remove_response_header(name: &str) -> Result<(), HostError> {
    // SAFETY: pointer and length of a live `str`.
    check(unsafe { proxy_remove_header_map_value(RESPONSE_HEADERS, name.as_ptr(), name.len()) })
}

/// Replaces bytes `start..start + size` of a host buffer with `data`.
pub fn set_buffer(
    buffer_type: u32,
    start: usize,
    size: usize,
    data: &[u8],
) -> Result<(), HostError> {
    // SAFETY: pointer and length of a live slice.
    check(unsafe { proxy_set_buffer_bytes(buffer_type, start, size, data.as_ptr(), data.len()) })
}

/// Removes every value of a request header.
pub fn remove_request_header(name: &str) -> Result<(), HostError> {
    // SAFETY: pointer and length of a live `str`.
    check(unsafe { proxy_remove_header_map_value(REQUEST_HEADERS, name.as_ptr(), name.len()) })
}

/// Sets a request header to one value, replacing any it had.
pub fn replace_request_header(name: &str, value: &str) -> Result<(), HostError> {
    // SAFETY: pointers and lengths of live `str`s.
    check(unsafe {
        proxy_replace_header_map_value(
            REQUEST_HEADERS,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

/// Writes a filter state property of the current stream; Envoy stores it as `wasm.<property>`.
/// `property` is one path segment (no NUL), so it goes to the host as it is.
pub fn set_filter_state(property: &str, value: &str) -> Result<(), HostError> {
    // SAFETY: pointers and lengths of live `str`s.
    check(unsafe {
        proxy_set_property(
            property.as_ptr(),
            property.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

/// A property of the current stream or connection, by its path segments
/// (`["connection", "sha256_peer_certificate_digest"]`); `None` when the host has no value.
pub fn property(path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
    // The ABI joins segments with NUL; segments here are fixed names without one.
    let joined = path.join("\0");
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: pointer and length of a live `String`; the host writes the two out-parameters.
    let status = unsafe { proxy_get_property(joined.as_ptr(), joined.len(), &mut data, &mut size) };
    if status == STATUS_NOT_FOUND {
        return Ok(None);
    }
    check(status)?;
    // SAFETY: `data`/`size` come straight from the host call above.
    Ok(Some(unsafe { owned(data, size) }))
}

/// Up to `max_size` bytes of a host buffer; empty when the host has none.
pub fn buffer(buffer_type: u32, max_size: usize) -> Result<Vec<u8>, HostError> {
    buffer_range(buffer_type, 0, max_size)
}

/// Up to `max_size` bytes of a host buffer from byte `start` on; empty when the host has none.
pub fn buffer_range(buffer_type: u32, start: usize, max_size: usize) -> Result<Vec<u8>, HostError> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer and a size into the two out-parameters.
    let status =
        unsafe { proxy_get_buffer_bytes(buffer_type, start, max_size, &mut data, &mut size) };
    if status == STATUS_NOT_FOUND {
        return Ok(Vec::new());
    }
    check(status)?;
    // SAFETY: `data`/`size` come straight from the host call above.
    Ok(unsafe { owned(data, size) })
}

/// Answers the current stream locally. `headers` are serialised as the ABI wants them.
pub fn send_local_response(
    status_code: u32,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<(), HostError> {
    let headers = header_map::serialize(headers);
    // SAFETY: pointers and lengths of live buffers; -1 means "not a gRPC status".
    check(unsafe {
        proxy_send_local_response(
            status_code,
            null(),
            0,
            if body.is_empty() {
                null()
            } else {
                body.as_ptr()
            },
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    })
}

/// Lets the current (effective) stream's request go on upstream.
pub fn resume_request() -> Result<(), HostError> {
    // SAFETY: no pointers.
    check(unsafe { proxy_continue_stream(STREAM_HTTP_REQUEST) })
}

/// Resets the current stream's request: what went upstream of it is abandoned.
pub fn close_request() -> Result<(), HostError> {
    // SAFETY: no pointers.
    check(unsafe { proxy_close_stream(STREAM_HTTP_REQUEST) })
}

/// A shared-data value and its compare-and-swap token; `(None, None)` when the key is absent.
pub fn shared_data(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let mut cas: u32 = 0;
    // SAFETY: key is a live `str`; the host writes into the three out-parameters.
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    if status == STATUS_NOT_FOUND {
        return Ok((None, None));
    }
    check(status)?;
    // SAFETY: `data`/`size` come straight from the host call above.
    let value = (!data.is_null()).then(|| unsafe { owned(data, size) });
    Ok((value, (cas != 0).then_some(cas)))
}

/// Writes a shared-data value; with `cas`, only if nobody wrote it since that token was read.
pub fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
    // SAFETY: pointers and lengths of live buffers.
    check(unsafe {
        proxy_set_shared_data(
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
            cas.unwrap_or(0),
        )
    })
}

/// The host clock in nanoseconds since the Unix epoch.
pub fn time_nanos() -> Result<u64, HostError> {
    let mut nanos: u64 = 0;
    // SAFETY: the host writes into the out-parameter.
    check(unsafe { proxy_get_current_time_nanoseconds(&mut nanos) })?;
    Ok(nanos)
}

/// The host's log level for this plugin as a `log` filter. Envoy reports spdlog's levels, which
/// go one past the SDK's enum: 6 is "off".
pub fn log_level() -> Result<log::LevelFilter, HostError> {
    let mut level: u32 = 0;
    // SAFETY: the host writes into the out-parameter.
    check(unsafe { proxy_get_log_level(&mut level) })?;
    Ok(match level {
        0 => log::LevelFilter::Trace,
        1 => log::LevelFilter::Debug,
        2 => log::LevelFilter::Info,
        3 => log::LevelFilter::Warn,
        4 => log::LevelFilter::Error,
        _ => log::LevelFilter::Off,
    })
}

/// Sets the `log` crate's level to the host's, so a record the host would discard is neither
/// formatted nor sent across the ABI: a refused request otherwise pays for a debug line nobody
/// reads. Called at configure time and on every tick, so a level changed through Envoy's admin
/// interface takes effect within one.
pub fn follow_host_log_level() {
    if let Ok(level) = log_level() {
        log::set_max_level(level);
    }
}
