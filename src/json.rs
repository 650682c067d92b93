//! Strict JSON: like serde_json, but an object that repeats a member name is an error.
