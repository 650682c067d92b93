//! The token cache: one JSON file that only its owner can read or write (mode 0600, in a
//! directory of mode 0700), replaced whole through a temporary file and a rename, so a reader
//! never sees half a file. It holds access and refresh tokens, the DPoP keys they are bound to,
//! and which authorization server each resource named.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One token, as cached.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CachedToken {
    pub access_token: String,
    /// `Bearer` or `DPoP`, as the token endpoint said.
    pub token_type: String,
    /// Seconds since the epoch; unknown when neither the response nor the token says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The private key a DPoP-bound token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_key: Option<String>,
}

impl CachedToken {
    /// Whether the token is still good for `margin` seconds after `now`. A token of unknown
    /// lifetime is used until the server refuses it.
    pub fn is_fresh(&self, now: u64, margin: u64) -> bool {
        self.expires_at
            .is_none_or(|expires_at| now.saturating_add(margin) < expires_at)
    }

    /// Whether requests must carry a DPoP proof with it.
    pub fn is_dpop_bound(&self) -> bool {
        self.token_type.eq_ignore_ascii_case("DPoP")
    }
}

#[derive(Serialize, Deserialize, Default)]
struct CacheFile {
    #[serde(default)]
    tokens: BTreeMap<String, CachedToken>,
    /// A resource's origin → the authorization server its metadata named.
    #[serde(default)]
    issuers: BTreeMap<String, String>,
}

/// The cache, in memory and (unless disabled) on disk.
pub struct Cache {
    path: Option<PathBuf>,
    file: CacheFile,
}

impl Cache {
    /// `$XDG_CACHE_HOME/kserve-auth/tokens.json`, else `~/.cache/kserve-auth/tokens.json`.
    pub fn default_path() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|home| PathBuf::from(home).join(".cache"))
            })?;
        Some(base.join("kserve-auth").join("tokens.json"))
    }

    /// The cache at `path`, or one kept only in memory when `path` is `None`. A file that cannot
    /// be read as a cache is left alone and replaced on the next write, with a warning.
    pub fn open(path: Option<PathBuf>) -> Cache {
        let file = path
            .as_deref()
            .and_then(|path| match fs::read(path) {
                Ok(bytes) => {
                    warn_if_shared(path);
                    serde_json::from_slice(&bytes)
                        .map_err(|error| {
                            eprintln!(
                                "kserve-auth: {} is not a token cache ({error}); starting a new one",
                                path.display()
                            )
                        })
                        .ok()
                }
                Err(_) => None,
            })
            .unwrap_or_default();
        Cache { path, file }
    }

    pub fn get(&self, key: &str) -> Option<&CachedToken> {
        self.file.tokens.get(key)
    }

    /// Stores `token` under `key` and writes the file.
    pub fn put(&mut self, key: &str, token: CachedToken) -> Result<(), String> {
        self.file.tokens.insert(key.to_owned(), token);
        self.save()
    }

    /// Forgets the token under `key` and writes the file.
    pub fn remove(&mut self, key: &str) -> Result<(), String> {
        if self.file.tokens.remove(key).is_some() {
            self.save()?;
        }
        Ok(())
    }

    /// The authorization server the resource at `origin` named last time.
    pub fn issuer_of(&self, origin: &str) -> Option<&str> {
        self.file.issuers.get(origin).map(String::as_str)
    }

    pub fn remember_issuer(&mut self, origin: &str, issuer: &str) -> Result<(), String> {
        if self.issuer_of(origin) == Some(issuer) {
            return Ok(());
        }
        self.file
            .issuers
            .insert(origin.to_owned(), issuer.to_owned());
        self.save()
    }

    fn save(&self) -> Result<(), String> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let fail = |error: std::io::Error| format!("token cache {}: {error}", path.display());
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(fail)?;
        }
        let text = serde_json::to_vec_pretty(&self.file).map_err(|e| fail(e.into()))?;
        let temporary = path.with_extension(format!("tmp{}", std::process::id()));
        let _ = fs::remove_file(&temporary);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(fail)?;
        file.write_all(&text)
            .and_then(|()| file.sync_all())
            .map_err(fail)?;
        fs::rename(&temporary, path).map_err(fail)
    }
}

fn warn_if_shared(path: &Path) {
    if let Ok(metadata) = fs::metadata(path) {
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            eprintln!(
                "kserve-auth: warning: {} has mode {mode:o}; others can read its tokens (it is \
                 rewritten with mode 600)",
                path.display()
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn token(expires_at: Option<u64>) -> CachedToken {
        CachedToken {
            access_token: "a".into(),
            token_type: "Bearer".into(),
            expires_at,
            refresh_token: Some("r".into()),
            dpop_key: None,
        }
    }

    // Fresh means: more than the margin before expiry; exactly at the margin is stale.
    #[test]
    fn freshness_boundaries() {
        assert!(token(Some(1_000)).is_fresh(939, 60));
        assert!(!token(Some(1_000)).is_fresh(940, 60));
        assert!(!token(Some(1_000)).is_fresh(1_000, 0));
        assert!(token(None).is_fresh(u64::MAX, 60));
    }

    // The file is created with mode 0600 in a 0700 directory, and read back.
    #[test]
    fn file_is_private_and_round_trips() {
        let dir = std::env::temp_dir().join(format!("kserve-auth-cache-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let path = dir.join("sub").join("tokens.json");
        let mut cache = Cache::open(Some(path.clone()));
        cache.put("k", token(Some(5))).unwrap();
        cache
            .remember_issuer("http://127.0.0.1:1", "http://127.0.0.1:2")
            .unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(dir.join("sub")).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        let again = Cache::open(Some(path.clone()));
        assert_eq!(again.get("k"), Some(&token(Some(5))));
        assert_eq!(
            again.issuer_of("http://127.0.0.1:1"),
            Some("http://127.0.0.1:2")
        );
        let mut again = again;
        again.remove("k").unwrap();
        assert_eq!(Cache::open(Some(path)).get("k"), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
