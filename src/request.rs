//! The parts of an HTTP request the core looks at, copied once from the host.

/// A request as the core sees it. Header names are lower-case, as HTTP/2 and Envoy give them.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `:method`
    pub method: String,
    /// `:path`, raw: path plus query, as received.
    pub path: String,
    /// `:authority`
    pub authority: String,
    /// Every header in arrival order; a name may repeat.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// All values of one header, in arrival order. `name` must be lower-case.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path without query or fragment.
    pub fn path_only(&self) -> &str {
        let end = self.path.find(['?', '#']).unwrap_or(self.path.len());
        &self.path[..end]
    }

    /// The raw query string (without `?`), if any; a fragment is cut off.
    pub fn query(&self) -> Option<&str> {
        let start = self.path.find('?')? + 1;
        let rest = &self.path[start..];
        Some(rest.split('#').next().unwrap_or(rest))
    }
}
