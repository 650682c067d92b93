//! The `kserve-auth` program, as the tests run it.

use std::path::{Path, PathBuf};

use super::envoy::existing;

/// The program: `$KSERVE_AUTH_BIN`, else the release build (`make build`).
pub fn kserve_auth_bin() -> PathBuf {
    existing(
        "KSERVE_AUTH_BIN",
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/kserve-auth"),
        "run `make build` (or set KSERVE_AUTH_BIN to the built kserve-auth)",
    )
}
