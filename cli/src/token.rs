//! Getting a token: from the cache while it is fresh, by its refresh token when it is not, and
//! otherwise by the configured flow (client credentials, device authorization, RFC 8693 token
//! exchange, or an external command).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use serde_json::Value;

use crate::cache::{Cache, CachedToken};
use crate::device;
use crate::dpop::DpopKey;
use crate::http::{Client, TlsOptions};
use crate::oauth::{self, ClientAuth, Endpoints, ACCESS_TOKEN_TYPE};
use crate::secret;

/// How to get a new token.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// `command` with `--token-command`, else `client-credentials` when a client secret is
    /// available, else `device`.
    Auto,
    /// OAuth client credentials (a service calling a model).
    ClientCredentials,
    /// Device authorization, RFC 8628 (a person at a terminal).
    Device,
    /// Renew the cached token with its refresh token, now.
    Refresh,
    /// RFC 8693 token exchange of a subject token for one with `--audience`.
    Exchange,
    /// Run `--token-command`, which prints a token or a JSON token response.
    Command,
}

/// Where tokens come from; shared by `token` and `curl`.
#[derive(Args, Clone, Debug)]
pub struct TokenOptions {
    /// The authorization server (issuer URL); its endpoints come from its discovery document.
    /// `curl` learns it from the resource's RFC 9728 metadata when not given, and accepts only
    /// this one when given.
    #[arg(long, env = "KSERVE_AUTH_ISSUER")]
    pub issuer: Option<String>,
    #[arg(long, value_enum, default_value_t = Flow::Auto)]
    pub flow: Flow,
    #[arg(long, env = "KSERVE_AUTH_CLIENT_ID")]
    pub client_id: Option<String>,
    /// The environment variable that holds the client secret.
    #[arg(
        long,
        value_name = "VARIABLE",
        default_value = "KSERVE_AUTH_CLIENT_SECRET"
    )]
    pub client_secret_env: String,
    /// A file that holds the client secret (instead of the variable).
    #[arg(long, value_name = "FILE")]
    pub client_secret_file: Option<PathBuf>,
    /// The scope to ask for.
    #[arg(long)]
    pub scope: Option<String>,
    /// The audience to ask for (token exchange; sent with other grants too).
    #[arg(long)]
    pub audience: Option<String>,
    /// An RFC 8707 resource indicator for token requests.
    #[arg(long, value_name = "URI")]
    pub resource_indicator: Option<String>,
    /// For `--flow exchange`: the environment variable that holds the subject token.
    #[arg(
        long,
        value_name = "VARIABLE",
        default_value = "KSERVE_AUTH_SUBJECT_TOKEN"
    )]
    pub subject_token_env: String,
    /// For `--flow exchange`: a file that holds the subject token.
    #[arg(long, value_name = "FILE")]
    pub subject_token_file: Option<PathBuf>,
    /// For `--flow exchange`: the subject token's type.
    #[arg(long, value_name = "URI", default_value = ACCESS_TOKEN_TYPE)]
    pub subject_token_type: String,
    /// For `--flow command`: a shell command that prints an access token, or a JSON token
    /// response (`access_token`, `expires_in`).
    #[arg(long, value_name = "COMMAND")]
    pub token_command: Option<String>,
    /// The token cache (default `$XDG_CACHE_HOME/kserve-auth/tokens.json`).
    #[arg(long, env = "KSERVE_AUTH_CACHE", value_name = "FILE")]
    pub cache: Option<PathBuf>,
    /// Keep tokens in memory only.
    #[arg(long)]
    pub no_cache: bool,
    /// Replace a cached token this many seconds before it expires.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub refresh_margin: u64,
    /// Ask for DPoP-bound tokens (RFC 9449), with a new Ed25519 key kept in the cache.
    #[arg(long)]
    pub dpop: bool,
    #[command(flatten)]
    pub tls: TlsOptions,
}

impl TokenOptions {
    /// The cache these options name.
    pub fn open_cache(&self) -> Cache {
        if self.no_cache {
            Cache::open(None)
        } else {
            Cache::open(self.cache.clone().or_else(Cache::default_path))
        }
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Gets tokens as the options say, through one cache.
pub struct Tokens<'a> {
    pub options: TokenOptions,
    pub http: &'a Client,
    pub cache: Cache,
}

impl Tokens<'_> {
    fn client_secret(&self) -> Result<Option<String>, String> {
        secret::read(
            &self.options.client_secret_env,
            self.options.client_secret_file.as_deref(),
        )
    }

    /// The flow `auto` stands for.
    fn flow(&self) -> Result<Flow, String> {
        Ok(match self.options.flow {
            Flow::Auto if self.options.token_command.is_some() => Flow::Command,
            Flow::Auto if self.client_secret()?.is_some() => Flow::ClientCredentials,
            Flow::Auto => Flow::Device,
            flow => flow,
        })
    }

    /// A token for `issuer` (or `--issuer`): the cached one while fresh, unless `renew` (the
    /// server refused it); else a refreshed one; else a new one by the flow.
    pub fn get(&mut self, issuer: Option<&str>, renew: bool) -> Result<CachedToken, String> {
        let flow = self.flow()?;
        if flow == Flow::Command {
            return self.run_command(renew);
        }
        let issuer = issuer
            .or(self.options.issuer.as_deref())
            .ok_or("no authorization server: give --issuer")?
            .to_owned();
        let client_id = self
            .options
            .client_id
            .clone()
            .ok_or("no client: give --client-id (or set KSERVE_AUTH_CLIENT_ID)")?;
        let auth = ClientAuth {
            client_id: client_id.clone(),
            secret: self.client_secret()?,
        };
        let subject_token = if flow == Flow::Exchange {
            Some(
                secret::read(
                    &self.options.subject_token_env,
                    self.options.subject_token_file.as_deref(),
                )?
                .ok_or_else(|| {
                    format!(
                        "--flow exchange needs a subject token in ${} or --subject-token-file",
                        self.options.subject_token_env
                    )
                })?,
            )
        } else {
            None
        };
        let key = self.cache_key(&issuer, &client_id, subject_token.as_deref());
        let cached = self.cache.get(&key).cloned();
        if let Some(cached) = &cached {
            let margin = self.options.refresh_margin;
            if !renew && flow != Flow::Refresh && cached.is_fresh(now(), margin) {
                return Ok(cached.clone());
            }
        }
        let endpoints = oauth::discover(self.http, &issuer)?;
        if let Some(refresh_token) = cached.as_ref().and_then(|c| c.refresh_token.clone()) {
            let dpop_key = cached.as_ref().and_then(|c| c.dpop_key.clone());
            match self.refresh(&endpoints, &auth, &refresh_token, dpop_key) {
                Ok(token) => {
                    self.cache.put(&key, token.clone())?;
                    return Ok(token);
                }
                Err(failure) if flow == Flow::Refresh => return Err(failure),
                Err(failure) => {
                    eprintln!("kserve-auth: refreshing failed ({failure}); getting a new token");
                    self.cache.remove(&key)?;
                }
            }
        } else if flow == Flow::Refresh {
            return Err(format!(
                "no cached refresh token for client {client_id} at {issuer}: get a token first"
            ));
        }
        let dpop_key = if self.options.dpop {
            Some(DpopKey::generate()?)
        } else {
            None
        };
        let mut form: Vec<(&str, &str)> = Vec::new();
        let extra = [
            ("scope", self.options.scope.as_deref()),
            ("audience", self.options.audience.as_deref()),
            ("resource", self.options.resource_indicator.as_deref()),
        ];
        let response = match flow {
            Flow::Device => {
                form.extend(extra.iter().filter_map(|(n, v)| v.map(|v| (*n, v))));
                device::authorize(self.http, &endpoints, &auth, &form, dpop_key.as_ref(), &now)?
            }
            _ => {
                match flow {
                    Flow::Exchange => {
                        form.push((
                            "grant_type",
                            "urn:ietf:params:oauth:grant-type:token-exchange",
                        ));
                        form.push((
                            "subject_token",
                            subject_token.as_deref().unwrap_or_default(),
                        ));
                        form.push(("subject_token_type", &self.options.subject_token_type));
                        form.push(("requested_token_type", ACCESS_TOKEN_TYPE));
                    }
                    _ => {
                        if auth.secret.is_none() {
                            return Err(format!(
                                "--flow client-credentials needs a client secret in ${} or \
                                 --client-secret-file",
                                self.options.client_secret_env
                            ));
                        }
                        form.push(("grant_type", "client_credentials"));
                    }
                }
                form.extend(extra.iter().filter_map(|(n, v)| v.map(|v| (*n, v))));
                oauth::post(
                    self.http,
                    &endpoints.token,
                    &auth,
                    &form,
                    dpop_key.as_ref(),
                    now(),
                )
                .map_err(|failure| format!("{}: {failure}", endpoints.token))?
            }
        };
        let mut token = oauth::token_from(&response, now()).map_err(|f| f.to_string())?;
        token.dpop_key = bound_key(&token, dpop_key);
        self.cache.put(&key, token.clone())?;
        Ok(token)
    }

    fn refresh(
        &self,
        endpoints: &Endpoints,
        auth: &ClientAuth,
        refresh_token: &str,
        dpop_key: Option<String>,
    ) -> Result<CachedToken, String> {
        let key = dpop_key.as_deref().map(DpopKey::from_stored).transpose()?;
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        let response = oauth::post(
            self.http,
            &endpoints.token,
            auth,
            &form,
            key.as_ref(),
            now(),
        )
        .map_err(|failure| failure.to_string())?;
        let mut token = oauth::token_from(&response, now()).map_err(|f| f.to_string())?;
        // RFC 6749 §6: the server may keep the refresh token; then the old one stays good.
        if token.refresh_token.is_none() {
            token.refresh_token = Some(refresh_token.to_owned());
        }
        token.dpop_key = bound_key(&token, key);
        Ok(token)
    }

    /// Runs `--token-command` through `sh -c`; its standard error passes through to ours.
    fn run_command(&mut self, renew: bool) -> Result<CachedToken, String> {
        let command = self
            .options
            .token_command
            .clone()
            .ok_or("--flow command needs --token-command")?;
        let key = format!("command {command}");
        if let Some(cached) = self.cache.get(&key) {
            if !renew && cached.is_fresh(now(), self.options.refresh_margin) {
                return Ok(cached.clone());
            }
        }
        let output = Command::new("sh")
            .args(["-c", &command])
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|error| format!("--token-command: {error}"))?;
        if !output.status.success() {
            return Err(format!("--token-command failed ({})", output.status));
        }
        let text = String::from_utf8(output.stdout)
            .map_err(|_| "--token-command printed something that is not UTF-8".to_owned())?;
        let text = text.trim();
        let token = if text.starts_with('{') {
            let response: Value = serde_json::from_str(text)
                .map_err(|error| format!("--token-command printed invalid JSON: {error}"))?;
            oauth::token_from(&response, now()).map_err(|f| format!("--token-command: {f}"))?
        } else if text.is_empty() || text.contains(char::is_whitespace) {
            return Err(
                "--token-command printed no token (one line, or a JSON token response)".into(),
            );
        } else {
            CachedToken {
                access_token: text.to_owned(),
                token_type: "Bearer".into(),
                expires_at: oauth::jwt_expiry(text),
                refresh_token: None,
                dpop_key: None,
            }
        };
        self.cache.put(&key, token.clone())?;
        Ok(token)
    }

    /// What a token is cached under: everything that makes it a different token.
    fn cache_key(&self, issuer: &str, client_id: &str, subject_token: Option<&str>) -> String {
        let options = &self.options;
        let mut key = format!(
            "{issuer} client={client_id} scope={} audience={} resource={} dpop={}",
            options.scope.as_deref().unwrap_or_default(),
            options.audience.as_deref().unwrap_or_default(),
            options.resource_indicator.as_deref().unwrap_or_default(),
            options.dpop,
        );
        if let Some(subject) = subject_token {
            // Which subject, without keeping the subject token itself.
            let digest = hmac_sha256::Hash::hash(subject.as_bytes());
            let short: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
            key.push_str(&format!(" subject={short}"));
        }
        key
    }
}

/// The key to keep with `token`: only when the server did bind it.
fn bound_key(token: &CachedToken, key: Option<DpopKey>) -> Option<String> {
    let key = key?;
    if token.is_dpop_bound() {
        Some(key.to_stored())
    } else {
        eprintln!(
            "kserve-auth: the authorization server issued a Bearer token, not a DPoP-bound one"
        );
        None
    }
}
