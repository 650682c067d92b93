//! `kserve-auth`: for operators, checks a kserve-auth-filter configuration before it is deployed
//! and explains a decision, with the filter's own code, so it judges as the filter does; for
//! callers, gets tokens and calls a protected model with them.
//!
//! ```text
//! kserve-auth check FILE...
//! kserve-auth explain --config FILE --token TOKEN|- [--method M] [--url URL] [--header K:V]...
//!                     [--jwks FILE] [--data BODY|@FILE] [--at SECONDS] [--json]
//! kserve-auth token [--issuer URL] [--flow F] [--client-id ID] [--scope S] [--audience A] ...
//! kserve-auth curl URL [-X M] [-H K:V]... [-d DATA | --data-binary @FILE] [-i] [token options]
//! ```
//!
//! `check`: each file is a plugin configuration (JSON or YAML), an Envoy bootstrap (every wasm
//! filter running this plugin is checked), or Istio manifests (every `WasmPlugin`'s
//! `pluginConfig`). Errors name the field and make the exit status 1; warnings name legal but
//! risky choices.

mod cache;
mod challenge;
mod check;
mod curl;
mod device;
mod document;
mod dpop;
mod explain;
mod http;
mod oauth;
mod resource;
mod secret;
mod token;

use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kserve-auth",
    version,
    about = "Checks kserve-auth-filter configurations, explains its decisions, and calls the models it protects"
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
    /// Runs the filter's decision on one request and prints each check and the answer.
    Explain {
        /// The plugin configuration (or an Envoy bootstrap or WasmPlugin holding one).
        #[arg(long)]
        config: PathBuf,
        /// The token, or `-` to read it from standard input; it is never printed.
        #[arg(long)]
        token: String,
        #[arg(long, default_value = "GET")]
        method: String,
        #[arg(long, default_value = "http://localhost/")]
        url: String,
        /// A request header, `Name: value`; `$TOKEN` in the value stands for the token.
        #[arg(long = "header")]
        headers: Vec<String>,
        /// A JWKS file used as every provider's signing keys.
        #[arg(long)]
        jwks: Option<PathBuf>,
        /// The request body, or `@FILE`: for rules on the model an OpenAI-compatible or V2 gRPC
        /// body names.
        #[arg(long)]
        data: Option<String>,
        /// The time to judge at, in seconds since the epoch (default: now).
        #[arg(long)]
        at: Option<u64>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Gets a token (from the cache while fresh) and prints only the access token.
    Token {
        #[command(flatten)]
        options: token::TokenOptions,
    },
    /// Calls a protected URL with a token, following the server's 401 to get one.
    Curl(curl::CurlOptions),
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
        Command::Explain {
            config,
            token,
            method,
            url,
            headers,
            jwks,
            data,
            at,
            json,
        } => match run_explain(config, token, method, url, headers, jwks, data, at, json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("kserve-auth explain: {message}");
                ExitCode::from(2)
            }
        },
        Command::Token { options } => {
            let http = match http::Client::new(&options.tls) {
                Ok(http) => http,
                Err(message) => {
                    eprintln!("kserve-auth token: {message}");
                    return ExitCode::FAILURE;
                }
            };
            let mut tokens = token::Tokens {
                cache: options.open_cache(),
                options,
                http: &http,
            };
            match tokens.get(None, false) {
                Ok(token) => {
                    println!("{}", token.access_token);
                    ExitCode::SUCCESS
                }
                Err(message) => {
                    eprintln!("kserve-auth token: {message}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Curl(options) => {
            let include = options.include;
            match curl::run(options) {
                Ok(response) => {
                    if let Err(error) = curl::print(&response, include) {
                        eprintln!("kserve-auth curl: {error}");
                        return ExitCode::FAILURE;
                    }
                    // As `curl --fail-with-body`: the body is printed, and the status shows.
                    if response.status >= 400 {
                        ExitCode::from(22)
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(message) => {
                    eprintln!("kserve-auth curl: {message}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run_explain(
    config: PathBuf,
    token: String,
    method: String,
    url: String,
    headers: Vec<String>,
    jwks: Option<PathBuf>,
    data: Option<String>,
    at: Option<u64>,
    json: bool,
) -> Result<(), String> {
    let read =
        |path: &PathBuf| fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()));
    let documents = document::parse(&read(&config)?)?;
    let configuration = document::configurations(&documents)
        .into_iter()
        .next()
        .ok_or_else(|| format!("{}: no plugin configuration found", config.display()))?
        .configuration?;
    let token = if token == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("standard input: {e}"))?;
        text.trim().to_owned()
    } else {
        token
    };
    let headers = http::parse_headers(&headers, "--header")?;
    let at = at.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    let body = match data.as_deref().map(|d| (d, d.strip_prefix('@'))) {
        Some((_, Some(path))) => Some(fs::read(path).map_err(|e| format!("--data @{path}: {e}"))?),
        Some((text, None)) => Some(text.as_bytes().to_vec()),
        None => None,
    };
    let question = explain::Question {
        configuration,
        jwks: jwks.as_ref().map(read).transpose()?,
        token,
        method,
        url,
        headers,
        body,
        at,
    };
    let explanation = explain::explain(&question)?;
    if json {
        println!("{}", explanation.to_json());
    } else {
        for line in explanation.to_text() {
            println!("{line}");
        }
    }
    Ok(())
}
