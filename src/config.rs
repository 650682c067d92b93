//! Plugin configuration: the JSON a user writes, validated and compiled into [`Config`].
//!
//! Field names follow Envoy's jwt_authn v3 API in its JSON form. Every error names the field it
//! is about, as a dotted path (`providers.keycloak.audiences`).

use crate::extract::TokenSource;
use crate::jwks::Alg;

/// Index of a provider in [`Config::providers`].
pub type ProviderId = usize;

/// A validated configuration. Built only by [`Config::from_json`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Providers in name order; a [`ProviderId`] indexes this vector.
    pub providers: Vec<Provider>,
    /// Rules in configuration order; the first whose match fits the path wins.
    pub rules: Vec<Rule>,
    /// Header names (lower-case) the filter sets upstream. Client copies are removed from every
    /// request, public ones included, so the upstream can trust them.
    pub managed_headers: Vec<String>,
    /// How many requests one worker may hold paused while signing keys load.
    pub max_waiting_requests: usize,
}

/// One trusted token issuer.
#[derive(Debug, Clone)]
pub struct Provider {
    /// The key under `providers`.
    pub name: String,
    /// Exact value the token's `iss` must have.
    pub issuer: String,
    /// The token's `aud` must contain one of these.
    pub audiences: Vec<String>,
    /// Algorithms a token may use with this provider.
    pub algorithms: Vec<Alg>,
    /// Where the signing keys come from.
    pub keys: KeySource,
    /// Where this provider's tokens are looked for.
    pub token_sources: Vec<TokenSource>,
    /// Keep the token header on the request sent upstream.
    pub forward: bool,
    /// Header that receives the verified payload (base64url, as received).
    pub forward_payload_header: Option<String>,
    /// Claims copied into upstream headers.
    pub claim_to_headers: Vec<ClaimToHeader>,
    /// Allowed clock difference for `exp`, `nbf` and `iat`, in seconds.
    pub clock_skew_seconds: u64,
    /// Longest accepted `exp - iat` (or `exp - nbf`), in seconds.
    pub max_lifetime_seconds: Option<u64>,
    /// Refuse tokens without `exp`.
    pub require_expiration: bool,
}

/// An HTTP GET the filter makes through an Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpFetch {
    /// Envoy cluster the callout goes through.
    pub cluster: String,
    /// `:authority` sent.
    pub authority: String,
    /// `:path` sent (path and query).
    pub path: String,
    /// Callout timeout in milliseconds.
    pub timeout_ms: u64,
}

/// Where a provider's signing keys come from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A JWKS URL fetched through a cluster and cached.
    Remote {
        /// The JWKS request.
        jwks: HttpFetch,
        /// How long a fetched key set is used before it is refreshed, in seconds.
        cache_duration_seconds: u64,
    },
    /// The JWKS URL is read from `<issuer>/.well-known/openid-configuration`, then fetched
    /// through the same cluster.
    Discovery {
        /// The discovery document request.
        discovery: HttpFetch,
        /// How long a fetched key set is used before it is refreshed, in seconds.
        cache_duration_seconds: u64,
    },
    /// A JWKS given inline; never refreshed.
    Local {
        /// The JWKS JSON text.
        jwks: String,
    },
}

/// Copy one claim into one upstream header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimToHeader {
    /// Lower-case header name.
    pub header_name: String,
    /// Claim path: `["realm_access", "roles"]` for `realm_access.roles`.
    pub claim_path: Vec<String>,
}

/// One entry of `rules`.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Which paths the rule covers.
    pub path_match: PathMatch,
    /// What a request on those paths must present; `None` makes them public.
    pub requirement: Option<Requirement>,
}

/// How a rule matches the request path (query excluded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// The path starts with this.
    Prefix(String),
    /// The path equals this.
    Exact(String),
}

/// What must be presented, as in jwt_authn's `JwtRequirement`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// A valid token from this provider.
    Provider(ProviderId),
    /// At least one of these.
    Any(Vec<Requirement>),
    /// All of these.
    All(Vec<Requirement>),
    /// No token at all is fine; a token that is present must be valid for some provider.
    AllowMissing,
    /// Always allowed; a valid token's claims are still forwarded.
    AllowMissingOrFailed,
}

/// A configuration that cannot be used, with the field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the offending field, e.g. `providers.keycloak.audiences`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid configuration: {}: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Parses and validates the plugin configuration.
    pub fn from_json(_json: &[u8]) -> Result<Config, ConfigError> {
        Err(ConfigError {
            field: "(root)".into(),
            message: "not implemented".into(),
        })
    }

    /// Looks a provider up by name.
    pub fn provider_id(&self, name: &str) -> Option<ProviderId> {
        self.providers.iter().position(|p| p.name == name)
    }
}
