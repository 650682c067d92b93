//! One trusted issuer: `providers.<name>` into a [`Provider`], with its token sources, claim
//! headers and identity policy. Header names it sets are checked against every token source.

use std::time::Duration;

use serde_json::Value;

use super::binding::{self, SenderBinding};
use super::key_source::{compile_key_source, KeySource};
use super::node::{algorithm_list, child_path, quoted, ConfigError, Node, Object};
use super::{identity, preset};

use crate::jose::alg::Alg;
use crate::policy::identity::{IdentityPolicy, IAP_EMAIL_HEADER, IAP_HEADER_PREFIX, IAP_ID_HEADER};
use crate::policy::token_policy::{normal_token_type, TokenPolicy};
use crate::request::extract::TokenSource;
use crate::request::{header_name_has_prefix, same_header_name};

/// Index of a provider in [`Config::providers`].
pub type ProviderId = usize;

/// One trusted token issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// The key under `providers`.
    pub name: String,
    /// Exact value the token's `iss` must have; the one OIDC discovery uses.
    pub issuer: String,
    /// Other accepted `iss` values (Google ID tokens use two spellings of one issuer).
    pub alternate_issuers: Vec<String>,
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
    /// How many verified tokens are remembered; 0 turns the cache off.
    pub jwt_cache_size: usize,
    /// Accepted `typ` header values in normal form (lower case, without `application/`);
    /// empty accepts any.
    pub allowed_types: Vec<String>,
    /// Accepted `azp` claim values; empty accepts any, and a token without `azp`.
    pub allowed_authorized_parties: Vec<String>,
    /// Checks on the verified identity (`email_verified`, domains, users) and identity headers.
    pub identity: IdentityPolicy,
    /// Whether, and which claims, the filter records in Envoy filter state.
    pub filter_state: Option<FilterState>,
    /// DPoP and certificate binding of its tokens.
    pub binding: SenderBinding,
}

impl Provider {
    /// What this provider demands of a token before any key is involved.
    pub fn token_policy(&self) -> TokenPolicy<'_> {
        TokenPolicy {
            issuer: &self.issuer,
            alternate_issuers: &self.alternate_issuers,
            audiences: &self.audiences,
            algorithms: &self.algorithms,
            allowed_types: &self.allowed_types,
            allowed_authorized_parties: &self.allowed_authorized_parties,
            clock_skew_seconds: self.clock_skew_seconds,
            max_lifetime_seconds: self.max_lifetime_seconds,
            require_expiration: self.require_expiration,
        }
    }

    /// Whether this provider reads its token from header `name` (as any upstream would spell it).
    pub fn reads_token_from(&self, name: &str) -> bool {
        self.token_sources.iter().any(|source| {
            matches!(source, TokenSource::Header { name: read, .. } if same_header_name(read, name))
        })
    }

    /// Every header this provider sets upstream from a verified token.
    pub fn set_header_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .claim_to_headers
            .iter()
            .map(|mapping| mapping.header_name.as_str())
            .collect();
        names.extend(self.forward_payload_header.as_deref());
        if self.identity.iap_identity_headers {
            names.extend([IAP_EMAIL_HEADER, IAP_ID_HEADER]);
        }
        names
    }
}

/// Copy one claim into one upstream header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimToHeader {
    /// Lower-case header name.
    pub header_name: String,
    /// Claim path: `["realm_access", "roles"]` for `realm_access.roles`.
    pub claim_path: Vec<String>,
}

/// Where a provider records the verified identity in Envoy filter state, for access logs and
/// Envoy RBAC: no header travels upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterState {
    /// `(property, claim path)` pairs, `sub` first; the property name is what the filter writes
    /// (Envoy stores it as `wasm.<property>`).
    pub claims: Vec<(String, Vec<String>)>,
}

/// The header and prefix a DPoP-bound token is sent with.
pub const DPOP_SCHEME_HEADER: &str = "authorization";
pub const DPOP_SCHEME_PREFIX: &str = "DPoP ";

/// Prefix of every filter state property the filter writes.
pub const FILTER_STATE_PREFIX: &str = "kserve_auth.";
/// The property holding the accepting provider's name.
pub const FILTER_STATE_PROVIDER: &str = "kserve_auth.provider";
/// The property holding the token's `sub`.
pub const FILTER_STATE_SUBJECT: &str = "kserve_auth.sub";

pub(super) const MIN_MAX_LIFETIME: Duration = Duration::from_secs(1);
pub(super) const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 60;
pub(super) const MAX_CLOCK_SKEW_SECONDS: u64 = 3600;
/// Headers whose removal or replacement would break the request itself.
pub(super) const RESERVED_HEADERS: [&str; 4] =
    ["host", "content-length", "transfer-encoding", "connection"];
/// Verified tokens remembered per provider unless configured otherwise, as in jwt_authn.
pub(super) const DEFAULT_JWT_CACHE_SIZE: usize = 10_000;
/// Upper bound on the verified-token cache, so a typo cannot exhaust the VM's memory.
pub(super) const MAX_JWT_CACHE_SIZE: u64 = 1_000_000;
pub(super) const PROVIDER_FIELDS: [&str; 18] = [
    "issuer",
    "audiences",
    "remote_jwks",
    "local_jwks",
    "oidc_discovery",
    "from_headers",
    "from_params",
    "forward",
    "forward_payload_header",
    "claim_to_headers",
    "clock_skew_seconds",
    "max_lifetime",
    "require_expiration",
    "algorithms",
    "jwt_cache_config",
    "allowed_types",
    "allowed_authorized_parties",
    "filter_state",
];
/// The IAP identity headers are a family (`x-goog-authenticated-user-*`): when a provider sets
/// them, every member a client sends is removed, so no provider may read its token from one.
pub(super) fn compile_header_prefixes(providers: &[Provider]) -> Result<Vec<String>, ConfigError> {
    if !providers.iter().any(|p| p.identity.iap_identity_headers) {
        return Ok(Vec::new());
    }
    let prefix = IAP_HEADER_PREFIX;
    for provider in providers {
        let erased = provider.token_sources.iter().any(
            |source| matches!(source, TokenSource::Header { name, .. } if header_name_has_prefix(name, prefix)),
        );
        if erased {
            return Err(ConfigError::new(
                format!("providers.{}.from_headers", provider.name),
                format!(
                    "reads a token from a \"{prefix}*\" header, which the filter removes from \
                     every request because iap_identity_headers is on; use another header name"
                ),
            ));
        }
    }
    Ok(vec![prefix.to_owned()])
}

/// A header a provider sets upstream, with the field that configured it.
pub(super) struct ManagedHeader {
    name: String,
    path: String,
}

pub(super) fn compile_providers(
    node: &Node<'_>,
) -> Result<(Vec<Provider>, Vec<String>), ConfigError> {
    let object = node.members()?;
    if object.map.is_empty() {
        return Err(node.error("must define at least one provider"));
    }
    let mut compiled = Vec::with_capacity(object.map.len());
    for name in object.map.keys() {
        if name.is_empty() {
            return Err(node.error("provider names must not be empty"));
        }
        let provider = object.required(name)?;
        compiled.push(compile_provider(name, &provider)?);
    }
    // The map's own order depends on serde_json features; ProviderId must not.
    compiled.sort_by(|(a, _), (b, _)| a.name.cmp(&b.name));

    let mut managed_headers: Vec<String> = Vec::new();
    for header in compiled.iter().flat_map(|(_, headers)| headers) {
        let token_owner = compiled
            .iter()
            .find(|(provider, _)| provider.reads_token_from(&header.name));
        if let Some((owner, _)) = token_owner {
            return Err(ConfigError::new(
                header.path.clone(),
                format!(
                    "\"{}\" is a header provider {} reads tokens from; the filter removes the \
                     headers it sets from every incoming request, so the credential would be \
                     erased; use another header name",
                    header.name,
                    quoted(&owner.name)
                ),
            ));
        }
        if !managed_headers.contains(&header.name) {
            managed_headers.push(header.name.clone());
        }
    }
    let providers = compiled.into_iter().map(|(provider, _)| provider).collect();
    Ok((providers, managed_headers))
}

pub(super) fn compile_provider(
    name: &str,
    node: &Node<'_>,
) -> Result<(Provider, Vec<ManagedHeader>), ConfigError> {
    let expanded = preset::expand(node)?;
    let node = match &expanded {
        Some(value) => &Node {
            value,
            path: node.path.clone(),
        },
        None => node,
    };
    let fields: Vec<&str> = PROVIDER_FIELDS
        .into_iter()
        .chain(identity::FIELDS)
        .chain(binding::FIELDS)
        .chain([preset::FIELD])
        .collect();
    let object = node.object(&fields)?;
    let issuer_node = object.required("issuer")?;
    let (issuer, alternate_issuers) = compile_issuers(&issuer_node)?;
    let audiences = object
        .required("audiences")?
        .non_empty_array()?
        .iter()
        .map(|audience| audience.non_empty_string().map(str::to_owned))
        .collect::<Result<Vec<_>, _>>()?;
    let keys = compile_key_source(&object, &issuer_node)?;
    let binding = binding::compile(&object)?;
    let mut token_sources = compile_token_sources(&object)?;
    // RFC 9449 §7.1: a DPoP-bound token travels as `Authorization: DPoP <token>`.
    let dpop_source = TokenSource::Header {
        name: DPOP_SCHEME_HEADER.to_owned(),
        value_prefix: DPOP_SCHEME_PREFIX.to_owned(),
    };
    if binding.dpop.is_some() && !token_sources.contains(&dpop_source) {
        token_sources.push(dpop_source);
    }
    let forward = match object.get("forward") {
        None => false,
        Some(node) => node.boolean()?,
    };

    let mut managed = Vec::new();
    let forward_payload_header = match object.get("forward_payload_header") {
        None => None,
        Some(node) => {
            let header = header_name(&node)?;
            managed.push(ManagedHeader {
                name: header.clone(),
                path: node.path,
            });
            Some(header)
        }
    };
    let mut claim_to_headers = Vec::new();
    if let Some(list) = object.get("claim_to_headers") {
        for item in list.array()? {
            let entry = item.object(&["header_name", "claim_name"])?;
            let header_node = entry.required("header_name")?;
            let header = header_name(&header_node)?;
            if let Some(earlier) = managed.iter().find(|m| m.name == header) {
                return Err(header_node.error(format!(
                    "\"{header}\" is already set by {}; one header holds one value",
                    earlier.path
                )));
            }
            let claim_path = claim_path(&entry.required("claim_name")?)?;
            managed.push(ManagedHeader {
                name: header.clone(),
                path: header_node.path,
            });
            claim_to_headers.push(ClaimToHeader {
                header_name: header,
                claim_path,
            });
        }
    }

    let clock_skew_seconds = match object.get("clock_skew_seconds") {
        None => DEFAULT_CLOCK_SKEW_SECONDS,
        Some(node) => {
            let seconds = node.unsigned()?;
            if seconds > MAX_CLOCK_SKEW_SECONDS {
                return Err(node.error(format!("must be at most {MAX_CLOCK_SKEW_SECONDS}")));
            }
            seconds
        }
    };
    let max_lifetime_seconds = match object.get("max_lifetime") {
        None => None,
        Some(node) => {
            let lifetime = node.duration()?;
            if lifetime < MIN_MAX_LIFETIME {
                return Err(node.error("must be at least \"1s\""));
            }
            // Token times are whole seconds, so rounding down keeps the exact same limit.
            Some(lifetime.as_secs())
        }
    };
    let require_expiration = match object.get("require_expiration") {
        None => true,
        Some(node) => node.boolean()?,
    };
    let algorithms = algorithm_list(&object, "algorithms", "algorithm", "supported")?;

    let jwt_cache_size = match object.get("jwt_cache_config") {
        None => DEFAULT_JWT_CACHE_SIZE,
        Some(node) => {
            let cache = node.object(&["jwt_cache_size"])?;
            match cache.get("jwt_cache_size") {
                None => DEFAULT_JWT_CACHE_SIZE,
                Some(size) => {
                    let entries = size.unsigned()?;
                    if entries > MAX_JWT_CACHE_SIZE {
                        return Err(size.error(format!("must be at most {MAX_JWT_CACHE_SIZE}")));
                    }
                    // Bounded above, so the conversion cannot fail on any target.
                    usize::try_from(entries).unwrap_or(0)
                }
            }
        }
    };

    let allowed_types = match object.get("allowed_types") {
        None => Vec::new(),
        Some(list) => {
            let mut types = Vec::new();
            for item in list.non_empty_array()? {
                let typ = token_type(&item)?;
                if !types.contains(&typ) {
                    types.push(typ);
                }
            }
            types
        }
    };
    let allowed_authorized_parties = match object.get("allowed_authorized_parties") {
        None => Vec::new(),
        Some(list) => {
            let mut parties: Vec<String> = Vec::new();
            for item in list.non_empty_array()? {
                let party = item.non_empty_string()?;
                if !parties.iter().any(|p| p == party) {
                    parties.push(party.to_owned());
                }
            }
            parties
        }
    };
    let filter_state = object
        .get("filter_state")
        .map(|node| compile_filter_state(&node))
        .transpose()?;
    let identity = identity::compile(&object)?;
    if identity.iap_identity_headers {
        for header in [IAP_EMAIL_HEADER, IAP_ID_HEADER] {
            let path = child_path(&object.path, "iap_identity_headers");
            if let Some(earlier) = managed.iter().find(|m| m.name == header) {
                return Err(ConfigError::new(
                    earlier.path.clone(),
                    format!("\"{header}\" is already set by {path}; one header holds one value"),
                ));
            }
            managed.push(ManagedHeader {
                name: header.to_owned(),
                path,
            });
        }
    }

    let provider = Provider {
        name: name.to_owned(),
        issuer,
        alternate_issuers,
        audiences,
        algorithms,
        keys,
        token_sources,
        forward,
        forward_payload_header,
        claim_to_headers,
        clock_skew_seconds,
        max_lifetime_seconds,
        require_expiration,
        jwt_cache_size,
        allowed_types,
        allowed_authorized_parties,
        identity,
        filter_state,
        binding,
    };
    Ok((provider, managed))
}

/// `filter_state`: `{}` records the provider and `sub`; `claims` adds
/// `[{"key": ..., "claim_name": ...}]`, each under `kserve_auth.<key>`.
fn compile_filter_state(node: &Node<'_>) -> Result<FilterState, ConfigError> {
    let object = node.object(&["claims"])?;
    let mut claims = vec![(FILTER_STATE_SUBJECT.to_owned(), vec!["sub".to_owned()])];
    let Some(list) = object.get("claims") else {
        return Ok(FilterState { claims });
    };
    for item in list.non_empty_array()? {
        let entry = item.object(&["key", "claim_name"])?;
        let key_node = entry.required("key")?;
        let key = key_node.non_empty_string()?;
        if !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        {
            return Err(key_node.error(format!(
                "{} is not a key; use letters, digits, \"_\" and \"-\"",
                quoted(key)
            )));
        }
        let property = format!("{FILTER_STATE_PREFIX}{key}");
        if property == FILTER_STATE_PROVIDER || property == FILTER_STATE_SUBJECT {
            return Err(key_node.error(format!(
                "{} is reserved: the filter always records the provider and sub",
                quoted(key)
            )));
        }
        if claims.iter().any(|(existing, _)| *existing == property) {
            return Err(key_node.error(format!("{} appears twice", quoted(key))));
        }
        claims.push((property, claim_path(&entry.required("claim_name")?)?));
    }
    Ok(FilterState { claims })
}

/// A configured `typ` in the normal form [`normal_token_type`] gives; only the types a token
/// can carry (`JWT`, `*+jwt`) are accepted, since any other could never match.
pub(super) fn token_type(node: &Node<'_>) -> Result<String, ConfigError> {
    let raw = node.non_empty_string()?;
    let typ = normal_token_type(raw);
    if typ != "jwt" && !(typ.len() > 4 && typ.ends_with("+jwt")) {
        return Err(node.error(format!(
            "{} can never match: tokens are accepted only with typ \"JWT\" or a type ending \
             in \"+jwt\" (\"at+jwt\")",
            quoted(raw)
        )));
    }
    Ok(typ)
}

/// `issuer` is one string, or a list of accepted values whose first is the issuer proper.
pub(super) fn compile_issuers(node: &Node<'_>) -> Result<(String, Vec<String>), ConfigError> {
    if !matches!(node.value, Value::Array(_)) {
        return Ok((node.non_empty_string()?.to_owned(), Vec::new()));
    }
    let mut issuers: Vec<String> = Vec::new();
    for item in node.non_empty_array()? {
        let issuer = item.non_empty_string()?;
        if issuers.iter().any(|known| known == issuer) {
            return Err(item.error("is listed twice"));
        }
        issuers.push(issuer.to_owned());
    }
    let mut issuers = issuers.into_iter();
    let first = issuers.next().unwrap_or_default();
    Ok((first, issuers.collect()))
}

pub(super) fn compile_token_sources(object: &Object<'_>) -> Result<Vec<TokenSource>, ConfigError> {
    let mut sources = Vec::new();
    // As in jwt_authn, the Bearer default applies only when neither list is given: a provider
    // configured with only query parameters means only those.
    match object.get("from_headers") {
        None if object.get("from_params").is_none() => sources.push(TokenSource::Header {
            name: "authorization".into(),
            value_prefix: "Bearer ".into(),
        }),
        None => {}
        Some(list) => {
            for item in list.array()? {
                let entry = item.object(&["name", "value_prefix"])?;
                let name = header_name(&entry.required("name")?)?;
                let value_prefix = match entry.get("value_prefix") {
                    None => String::new(),
                    Some(prefix) => prefix.string()?.to_owned(),
                };
                let repeated = sources.iter().any(|source| {
                    matches!(source, TokenSource::Header { name: n, value_prefix: p }
                        if *n == name && p.eq_ignore_ascii_case(&value_prefix))
                });
                if repeated {
                    return Err(item.error("the same header and value_prefix are listed twice"));
                }
                sources.push(TokenSource::Header { name, value_prefix });
            }
        }
    }
    if let Some(list) = object.get("from_params") {
        for item in list.array()? {
            let source = TokenSource::Param {
                name: item.non_empty_string()?.to_owned(),
            };
            if sources.contains(&source) {
                return Err(item.error("the same parameter is listed twice"));
            }
            sources.push(source);
        }
    }
    if sources.is_empty() {
        return Err(ConfigError::new(
            child_path(&object.path, "from_headers"),
            "is empty and from_params lists nothing, so no token could ever be found; list at \
             least one header or query parameter",
        ));
    }
    Ok(sources)
}

pub(super) fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// A header name the filter reads, sets or removes, lower-cased.
pub(super) fn header_name(node: &Node<'_>) -> Result<String, ConfigError> {
    let raw = node.non_empty_string()?;
    if raw.starts_with(':') {
        return Err(node.error(format!(
            "pseudo-header {} cannot be used; expected a regular header name",
            quoted(raw)
        )));
    }
    if !raw.chars().all(is_token_char) {
        return Err(node.error(format!(
            "{} is not a valid header name; expected letters, digits and !#$%&'*+-.^_`|~",
            quoted(raw)
        )));
    }
    let name = raw.to_ascii_lowercase();
    if RESERVED_HEADERS.contains(&name.as_str()) {
        return Err(node.error(format!(
            "\"{name}\" cannot be used; the filter must not take over {}",
            RESERVED_HEADERS.join(", ")
        )));
    }
    Ok(name)
}

/// `"realm_access.roles"` or `["realm_access", "roles"]`; the array form allows dots in names.
pub(super) fn claim_path(node: &Node<'_>) -> Result<Vec<String>, ConfigError> {
    match node.value {
        Value::String(text) => {
            if text.is_empty() {
                return Err(node.error("must not be empty"));
            }
            let segments: Vec<String> = text.split('.').map(str::to_owned).collect();
            if segments.iter().any(String::is_empty) {
                return Err(node.error(format!(
                    "claim name {} has an empty segment; write nested claims as \"a.b\", or give \
                     an array of names ([\"a.b\"]) for a claim whose name contains dots",
                    quoted(text)
                )));
            }
            Ok(segments)
        }
        Value::Array(_) => node
            .non_empty_array()?
            .iter()
            .map(|segment| segment.non_empty_string().map(str::to_owned))
            .collect(),
        _ => Err(node.wrong_type("a claim name (\"realm_access.roles\") or an array of names")),
    }
}
