//! Mints the signing keys and tokens that `bench/run.py` loads into Envoy and wrk.
//!
//! Writes into the output folder:
//! - `jwks.json`: the public keys (RS256 from `tests/fixtures/keys/rsa-2048-a.pem`, and an ES256
//!   key generated on every run), given inline to both the plugin and Envoy's `jwt_authn`;
//! - `tokens-rs256.txt`, `tokens-es256.txt`: one compact JWT per line, each with its own `sub` and
//!   `jti`, so no two lines are the same token;
//! - `meta.json`: what was minted and when it expires, so the driver can reuse fresh files.
//!
//! Usage: `cargo run --example mint_tokens -- --out target/bench --count 5000
//!         --issuer https://issuer.bench.local --audience kserve-bench --hours 12`

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

/// Command-line options, all with defaults matching the benchmark's configuration.
struct Options {
    out: PathBuf,
    count: usize,
    issuer: String,
    audience: String,
    hours: u64,
}

fn parse_args() -> Result<Options, Box<dyn Error>> {
    let mut options = Options {
        out: PathBuf::from("target/bench"),
        count: 5000,
        issuer: "https://issuer.bench.local".to_string(),
        audience: "kserve-bench".to_string(),
        hours: 12,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--out" => options.out = PathBuf::from(value),
            "--count" => options.count = value.parse()?,
            "--issuer" => options.issuer = value,
            "--audience" => options.audience = value,
            "--hours" => options.hours = value.parse()?,
            _ => return Err(format!("unknown option {flag}").into()),
        }
    }
    if options.count == 0 {
        return Err("--count must be at least 1".into());
    }
    Ok(options)
}

/// Claims for token number `index`: distinct `sub` and `jti`, shared issuer and audience.
fn claims(options: &Options, alg: &str, index: usize) -> JWTClaims<NoCustomClaims> {
    Claims::create(Duration::from_hours(options.hours))
        .with_issuer(&options.issuer)
        .with_audience(&options.audience)
        .with_subject(format!("bench-user-{index}"))
        .with_jwt_id(format!("{alg}-{index}"))
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

fn main() -> Result<(), Box<dyn Error>> {
    let options = parse_args()?;
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

    let rs256 = (0..options.count)
        .map(|i| rsa.sign(claims(&options, "rs256", i)))
        .collect::<Result<Vec<_>, _>>()?;
    write_lines(&options.out.join("tokens-rs256.txt"), &rs256)?;

    let es256 = (0..options.count)
        .map(|i| ec.sign(claims(&options, "es256", i)))
        .collect::<Result<Vec<_>, _>>()?;
    write_lines(&options.out.join("tokens-es256.txt"), &es256)?;

    let now = Clock::now_since_epoch().as_secs();
    let meta = json!({
        "count": options.count,
        "issuer": options.issuer,
        "audience": options.audience,
        "issued_at": now,
        "expires_at": now + options.hours * 3600,
    });
    write_atomically(&meta_path, &meta.to_string())?;
    println!(
        "minted {} RS256 and {} ES256 tokens into {}",
        options.count,
        options.count,
        options.out.display()
    );
    Ok(())
}
