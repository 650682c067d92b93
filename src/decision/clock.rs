//! The clock as the core sees it: one reading per request, passed in, never read here.

/// The clock, in two resolutions: token times are whole seconds, key timers milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Milliseconds since the Unix epoch.
    pub ms: u64,
}

impl Now {
    /// Whole seconds since the Unix epoch.
    pub fn seconds(self) -> u64 {
        self.ms / 1000
    }
}
