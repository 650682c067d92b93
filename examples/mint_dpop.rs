//! Mints what the benchmark's DPoP row sends: one RS256 access token bound (`cnf.jkt`) to a fresh
//! ES256 client key, and one DPoP proof per request, each with its own `jti`, for `GET <url>`.
//!
//! Writes `tokens-dpop.txt` into the output folder: a first line `dpop-token <token>`, then one
//! proof per line, one per request (`bench/wrk/requests.lua` reads this form). Proofs are only
//! accepted for a few minutes and only once, so this runs right before the row, every time.
//!
//! Usage: `cargo run --example mint_dpop -- --out target/bench --count 50000
//!         --url http://dpop.bench.local/ --issuer https://issuer.bench.local
//!         --audience kserve-bench`

use std::error::Error;
use std::fs;
use std::path::PathBuf;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::*;
use kserve_auth_filter::jose::thumbprint::{access_token_hash, key_thumbprint};
use p256::ecdsa::signature::Signer;
use serde_json::{json, Value};

/// The RSA test key the benchmark's JWKS publishes (see `mint_tokens`).
const RSA_PEM: &str = include_str!("../tests/fixtures/keys/rsa-2048-a.pem");
const RS256_KID: &str = "bench-rs256";

struct Options {
    out: PathBuf,
    count: usize,
    url: String,
    issuer: String,
    audience: String,
}

fn parse_args() -> Result<Options, Box<dyn Error>> {
    let mut options = Options {
        out: PathBuf::from("target/bench"),
        count: 50_000,
        url: "http://dpop.bench.local/".to_string(),
        issuer: "https://issuer.bench.local".to_string(),
        audience: "kserve-bench".to_string(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--out" => options.out = PathBuf::from(value),
            "--count" => options.count = value.parse()?,
            "--url" => options.url = value,
            "--issuer" => options.issuer = value,
            "--audience" => options.audience = value,
            _ => return Err(format!("unknown option {flag}").into()),
        }
    }
    Ok(options)
}

fn main() -> Result<(), Box<dyn Error>> {
    let options = parse_args()?;
    let client = ES256KeyPair::generate();
    let signing_key = p256::ecdsa::SigningKey::from_slice(&client.to_bytes())?;
    let point = client.public_key().public_key().to_bytes_uncompressed();
    let jwk = json!({"kty": "EC", "crv": "P-256",
                     "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                     "y": URL_SAFE_NO_PAD.encode(&point[33..65])});
    let thumbprint = key_thumbprint(jwk.as_object().ok_or("JWK is an object")?)?;

    let bound = json!({"cnf": {"jkt": thumbprint}});
    let claims = Claims::with_custom_claims(bound, Duration::from_hours(1))
        .with_issuer(&options.issuer)
        .with_audience(&options.audience)
        .with_subject("bench-dpop-client");
    let token = RS256KeyPair::from_pem(RSA_PEM)?
        .with_key_id(RS256_KID)
        .sign(claims)?;

    let header =
        URL_SAFE_NO_PAD.encode(json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}).to_string());
    let ath = access_token_hash(&token);
    let now = Clock::now_since_epoch().as_secs();
    let run = now;
    let mut text = String::with_capacity(token.len() + options.count * 400);
    text.push_str("dpop-token ");
    text.push_str(&token);
    text.push('\n');
    for index in 0..options.count {
        let proof_claims: Value = json!({"htm": "GET", "htu": options.url, "iat": now,
                                         "jti": format!("{run}-{index}"), "ath": ath});
        let input = format!(
            "{header}.{}",
            URL_SAFE_NO_PAD.encode(proof_claims.to_string())
        );
        let signature: p256::ecdsa::Signature = signing_key.sign(input.as_bytes());
        text.push_str(&input);
        text.push('.');
        text.push_str(&URL_SAFE_NO_PAD.encode(signature.to_bytes()));
        text.push('\n');
    }
    fs::create_dir_all(&options.out)?;
    let path = options.out.join("tokens-dpop.txt");
    let temporary = path.with_extension("tmp");
    fs::write(&temporary, text)?;
    fs::rename(&temporary, &path)?;
    println!(
        "minted {} DPoP proofs for GET {} into {}",
        options.count,
        options.url,
        path.display()
    );
    Ok(())
}
