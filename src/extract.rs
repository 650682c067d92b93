//! Where tokens come from: headers with a prefix, or query parameters.

use crate::failure::Failure;
use crate::request::Request;

/// One place a provider's token may be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A header; `value_prefix` (e.g. `Bearer `) is stripped, compared case-insensitively.
    Header {
        /// Lower-case header name.
        name: String,
        /// Prefix before the token; empty for none.
        value_prefix: String,
    },
    /// A query parameter.
    Param {
        /// Parameter name.
        name: String,
    },
}

/// A token found in a request, borrowed from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundToken<'r> {
    /// The source it was found in.
    pub source: &'r TokenSource,
    /// The token text, prefix removed.
    pub value: std::borrow::Cow<'r, str>,
}

/// Finds every token sent in `sources`. An empty list means none was sent.
pub fn find_tokens<'r>(
    _sources: &'r [TokenSource],
    _request: &'r Request,
) -> Result<Vec<FoundToken<'r>>, Failure> {
    Ok(Vec::new())
}
