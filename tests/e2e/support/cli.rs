//! The `kserve-auth` program, as the tests run it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::envoy::existing;

/// The program: `$KSERVE_AUTH_BIN`, else the release build (`make build`).
pub fn kserve_auth_bin() -> PathBuf {
    existing(
        "KSERVE_AUTH_BIN",
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/kserve-auth"),
        "run `make build` (or set KSERVE_AUTH_BIN to the built kserve-auth)",
    )
}

/// `kserve-auth` with `args`, its token cache at `cache`, and only the environment given plus
/// `PATH` (no secret leaks in from the test's own environment).
pub fn kserve_auth(args: &[&str], cache: &Path, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(kserve_auth_bin());
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("KSERVE_AUTH_CACHE", cache)
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    command
}

/// Runs [`kserve_auth`] to its end.
pub fn run_kserve_auth(args: &[&str], cache: &Path, env: &[(&str, &str)]) -> Output {
    kserve_auth(args, cache, env)
        .output()
        .unwrap_or_else(|e| panic!("run kserve-auth: {e}"))
}

/// Its standard output.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Its standard error.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
