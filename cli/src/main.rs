//! `kserve-auth`: checks a kserve-auth-filter configuration before it is deployed, with the
//! filter's own configuration compiler, so a configuration it passes is one the filter loads.
//!
//! ```text
//! kserve-auth check FILE...
//! ```
//!
//! Each file is a plugin configuration (JSON or YAML), an Envoy bootstrap (every wasm filter
//! running this plugin is checked), or Istio manifests (every `WasmPlugin`'s `pluginConfig`).
//! Errors name the field and make the exit status 1; warnings name legal but risky choices.

mod check;
mod document;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kserve-auth",
    version,
    about = "Checks kserve-auth-filter configurations"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validates plugin configurations, Envoy bootstraps and Istio WasmPlugin manifests.
    Check {
        /// The files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check { files } => {
            let mut failed = false;
            for file in &files {
                let report = check::check_file(file);
                for line in &report.lines {
                    println!("{line}");
                }
                failed |= report.failed;
            }
            if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}
