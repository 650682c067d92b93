//! Mints the signing keys and tokens that `bench/run.py` and `tests/e2e/memory.rs` load into Envoy
//! and wrk.
//!
//! Writes into the output folder:
//! - `jwks.json`: the public keys (RS256 from `tests/fixtures/keys/rsa-2048-a.pem`, and an ES256
//!   key generated on every run), given inline to both the plugin and Envoy's `jwt_authn`;
//! - `tokens-rs256.txt`, `tokens-es256.txt`: one compact JWT per line, each with its own `sub` and
//!   `jti`, so no two lines are the same token, and Keycloak-style realm roles (an array claim, for
//!   the benchmark rows that forward claims as headers);
//! - `meta.json`: what was minted and when it expires, so the driver can reuse fresh files.
//!
//! Usage: `cargo run --example mint_tokens -- --out target/bench --count 5000
//!         --issuer https://issuer.bench.local --audience kserve-bench --hours 12
//!         --algorithms rs256,es256`

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};

use jwt_simple::prelude::*;
use serde_json::{json, Value};

/// The RSA test key shared with the test suite; RSA key generation is too slow to repeat per run.
const RSA_PEM: &str = include_str!("../tests/fixtures/keys/rsa-2048-a.pem");

/// Key identifiers, as the JWKS and the token headers carry them.
const RS256_KID: &str = "bench-rs256";
const ES256_KID: &str = "bench-es256";

/// What to mint, all with defaults matching the benchmark's configuration.
pub struct Options {
    /// Output folder.
    pub out: PathBuf,
    /// Tokens per algorithm.
    pub count: usize,
    /// `iss` of every token.
    pub issuer: String,
    /// `aud` of every token.
    pub audience: String,
    /// Validity of every token.
    pub hours: u64,
    /// Which token files to write: `rs256`, `es256` or both.
    pub algorithms: Vec<String>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            out: PathBuf::from("target/bench"),
            count: 5000,
            issuer: "https://issuer.bench.local".to_string(),
            audience: "kserve-bench".to_string(),
            hours: 12,
            algorithms: vec!["rs256".to_string(), "es256".to_string()],
        }
    }
}

fn parse_args() -> Result<Options, Box<dyn Error>> {
    let mut options = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--out" => options.out = PathBuf::from(value),
            "--count" => options.count = value.parse()?,
            "--issuer" => options.issuer = value,
            "--audience" => options.audience = value,
            "--hours" => options.hours = value.parse()?,
            "--algorithms" => {
                options.algorithms = value.split(',').map(|a| a.trim().to_string()).collect()
            }
            _ => return Err(format!("unknown option {flag}").into()),
        }
    }
    Ok(options)
}

/// Realm roles every token carries, as Keycloak puts them in `realm_access.roles`.
const REALM_ROLES: [&str; 2] = ["model-reader", "fraud-predict"];

/// Claims for token number `index`: distinct `sub` and `jti`, shared issuer, audience and roles.
fn claims(options: &Options, alg: &str, index: usize) -> JWTClaims<Value> {
    let roles = json!({"realm_access": {"roles": REALM_ROLES}});
    Claims::with_custom_claims(roles, Duration::from_hours(options.hours))
        .with_issuer(&options.issuer)
        .with_audience(&options.audience)
        .with_subject(format!("bench-user-{index}"))
        .with_jwt_id(format!("{alg}-{index}"))
}

/// Signs tokens `0..count` with `sign`, split over the machine's cores.
fn sign_all<F>(count: usize, sign: F) -> Result<Vec<String>, String>
where
    F: Fn(usize) -> Result<String, String> + Sync,
{
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = count.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..count)
            .step_by(chunk)
            .map(|start| {
                let sign = &sign;
                scope.spawn(move || {
                    (start..count.min(start + chunk))
                        .map(sign)
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut tokens = Vec::with_capacity(count);
        for worker in workers {
            let part = worker
                .join()
                .map_err(|_| "a signing thread failed".to_string())??;
            tokens.extend(part);
        }
        Ok(tokens)
    })
}

/// Writes `lines` to `path`, one per line, through a temporary file so readers never see half.
fn write_lines(path: &Path, lines: &[String]) -> Result<(), Box<dyn Error>> {
    let mut text = lines.join("\n");
    text.push('\n');
    write_atomically(path, &text)
}

fn write_atomically(path: &Path, text: &str) -> Result<(), Box<dyn Error>> {
    let temporary = path.with_extension("tmp");
    fs::write(&temporary, text)?;
    fs::rename(&temporary, path)?;
    Ok(())
}

/// Whether `options.out` already holds what `options` asks for, valid for `min_validity_s` more.
pub fn fresh(options: &Options, min_validity_s: u64) -> bool {
    let Ok(text) = fs::read_to_string(options.out.join("meta.json")) else {
        return false;
    };
    let Ok(meta) = serde_json::from_str::<Value>(&text) else {
        return false;
    };
    let now = Clock::now_since_epoch().as_secs();
    let minted: Vec<&str> = meta["algorithms"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    meta["count"].as_u64().unwrap_or(0) >= options.count as u64
        && meta["issuer"] == options.issuer.as_str()
        && meta["audience"] == options.audience.as_str()
        && meta["expires_at"].as_u64().unwrap_or(0) > now + min_validity_s
        && options.algorithms.iter().all(|alg| {
            minted.contains(&alg.as_str())
                && options.out.join(format!("tokens-{alg}.txt")).is_file()
        })
        && options.out.join("jwks.json").is_file()
}

/// Mints keys and tokens into `options.out`.
pub fn mint(options: &Options) -> Result<(), Box<dyn Error>> {
    if options.count == 0 {
        return Err("--count must be at least 1".into());
    }
    if let Some(unknown) = options
        .algorithms
        .iter()
        .find(|a| !["rs256", "es256"].contains(&a.as_str()))
    {
        return Err(format!("unknown algorithm {unknown:?} (rs256, es256)").into());
    }
    fs::create_dir_all(&options.out)?;
    // Written last: while it is absent, readers know the other files may not belong together.
    let meta_path = options.out.join("meta.json");
    match fs::remove_file(&meta_path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error.into()),
        _ => {}
    }

    let rsa = RS256KeyPair::from_pem(RSA_PEM)?.with_key_id(RS256_KID);
    let ec = ES256KeyPair::generate().with_key_id(ES256_KID);

    let jwks = json!({
        "keys": [
            serde_json::from_str::<Value>(&rsa.public_key().to_jwk())?,
            serde_json::from_str::<Value>(&ec.public_key().to_jwk())?,
        ]
    });
    write_atomically(&options.out.join("jwks.json"), &jwks.to_string())?;

    for alg in &options.algorithms {
        let tokens = match alg.as_str() {
            "rs256" => sign_all(options.count, |i| {
                rsa.sign(claims(options, alg, i)).map_err(|e| e.to_string())
            })?,
            _ => sign_all(options.count, |i| {
                ec.sign(claims(options, alg, i)).map_err(|e| e.to_string())
            })?,
        };
        write_lines(&options.out.join(format!("tokens-{alg}.txt")), &tokens)?;
    }

    let now = Clock::now_since_epoch().as_secs();
    let meta = json!({
        "count": options.count,
        "issuer": options.issuer,
        "audience": options.audience,
        "algorithms": options.algorithms,
        "realm_roles": REALM_ROLES,
        "issued_at": now,
        "expires_at": now + options.hours * 3600,
    });
    write_atomically(&meta_path, &meta.to_string())?;
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let options = parse_args()?;
    mint(&options)?;
    println!(
        "minted {} tokens each ({}) into {}",
        options.count,
        options.algorithms.join(", "),
        options.out.display()
    );
    Ok(())
}
