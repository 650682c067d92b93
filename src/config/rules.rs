//! `rules` into [`Rule`]s: what each matches, which tokens it requires, and the claims they must
//! carry.

use super::node::{quoted, ConfigError, Node};
use super::provider::{claim_path, is_token_char, Provider, ProviderId};

use crate::policy::claims::{self, ClaimCondition, ClaimTest};
use crate::request::header_matcher::{HeaderMatcher, HeaderTest, HEADER_TESTS};
use crate::request::host::HostPattern;
use crate::request::model::ModelPattern;
use crate::request::{header_name_has_prefix, same_header_name};

/// One entry of `rules`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Which paths the rule covers.
    pub path_match: PathMatch,
    /// What a request on those paths must present; `None` makes them public.
    pub requirement: Option<Requirement>,
    /// Methods the rule covers; empty covers every method.
    pub methods: Vec<String>,
    /// Hosts the rule covers; empty covers every host.
    pub hosts: Vec<HostPattern>,
    /// Header conditions that must all hold; empty imposes none.
    pub headers: Vec<HeaderMatcher>,
    /// Conditions the verified token's claims must meet, after `requirement` passed.
    pub require_claims: Vec<ClaimCondition>,
}

/// How a rule matches the request path (query excluded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// The path starts with this.
    Prefix(String),
    /// The path equals this.
    Exact(String),
    /// The path is a KServe V1 or V2 REST path of a model this pattern fits.
    Model(ModelPattern),
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

/// Deep enough for any sensible policy; bounds the recursion over untrusted nesting.
pub(super) const MAX_REQUIREMENT_DEPTH: usize = 8;
pub(super) const RULE_FIELDS: [&str; 3] = ["match", "requires", "require_claims"];
pub(super) const MATCH_KINDS: [&str; 3] = ["prefix", "path", "model"];
pub(super) const MATCH_FIELDS: [&str; 6] =
    ["prefix", "path", "model", "methods", "hosts", "headers"];
pub(super) const REQUIREMENT_KINDS: [&str; 5] = [
    "provider_name",
    "requires_any",
    "requires_all",
    "allow_missing",
    "allow_missing_or_failed",
];

/// Header names the filter sets (`managed`) or owns by prefix (`managed_prefixes`): a rule may
/// not match on them, since at decision time they still hold whatever the client sent.
pub(super) struct ManagedHeaders<'a> {
    pub names: &'a [String],
    pub prefixes: &'a [String],
}

pub(super) fn compile_rules(
    node: &Node<'_>,
    providers: &[Provider],
    managed: &ManagedHeaders<'_>,
) -> Result<Vec<Rule>, ConfigError> {
    let items = node.non_empty_array()?;
    let mut rules = Vec::with_capacity(items.len());
    let mut match_paths = Vec::with_capacity(items.len());
    for item in &items {
        let entry = item.object(&RULE_FIELDS)?;
        let match_node = entry.required("match")?;
        let (path_match, match_path) = compile_path_match(&match_node)?;
        let methods = compile_methods(&match_node)?;
        let hosts = compile_hosts(&match_node)?;
        let headers = compile_header_matchers(&match_node, managed)?;
        let requirement = match entry.get("requires") {
            None => None,
            Some(requires) => Some(compile_requirement(&requires, providers, 1)?),
        };
        let require_claims = match entry.get("require_claims") {
            None => Vec::new(),
            Some(_) if requirement.is_none() => {
                return Err(entry.error(
                    "require_claims needs \"requires\" in the same rule: the claims come from \
                     the token it verifies",
                ))
            }
            Some(list) => compile_require_claims(&list)?,
        };
        rules.push(Rule {
            path_match,
            requirement,
            methods,
            hosts,
            headers,
            require_claims,
        });
        match_paths.push(match_path);
    }
    let catch_all = PathMatch::Prefix("/".into());
    let is_catch_all = |rule: &Rule| {
        rule.path_match == catch_all
            && rule.methods.is_empty()
            && rule.hosts.is_empty()
            && rule.headers.is_empty()
    };
    let last = rules.len().saturating_sub(1);
    for (index, rule) in rules.iter().enumerate() {
        if index < last && is_catch_all(rule) {
            return Err(ConfigError::new(
                match_paths.get(index).cloned().unwrap_or_default(),
                "matches every request, so the rules after it would never apply; only the last \
                 rule may match {\"prefix\": \"/\"} with no methods, hosts or headers",
            ));
        }
    }
    if !rules.last().is_some_and(is_catch_all) {
        return Err(node.error(
            "the last rule must match {\"prefix\": \"/\"} (for every method, host and header) \
             so that no request is left without a rule; end the list with it (with \"requires\" \
             to protect every other path)",
        ));
    }
    Ok(rules)
}

/// `match.methods`: upper-case method names; absent means every method.
pub(super) fn compile_methods(match_node: &Node<'_>) -> Result<Vec<String>, ConfigError> {
    let Some(list) = match_node.members()?.get("methods") else {
        return Ok(Vec::new());
    };
    let mut methods: Vec<String> = Vec::new();
    for item in list.non_empty_array()? {
        let method = item.non_empty_string()?;
        if !method.chars().all(is_token_char) {
            return Err(item.error(format!("{} is not a method name", quoted(method))));
        }
        if method.chars().any(|c| c.is_ascii_lowercase()) {
            return Err(item.error(format!(
                "methods are case-sensitive and written in upper case; write {}",
                quoted(&method.to_ascii_uppercase())
            )));
        }
        if !methods.iter().any(|m| m == method) {
            methods.push(method.to_owned());
        }
    }
    Ok(methods)
}

/// `match.hosts`: host patterns; absent means every host.
pub(super) fn compile_hosts(match_node: &Node<'_>) -> Result<Vec<HostPattern>, ConfigError> {
    let Some(list) = match_node.members()?.get("hosts") else {
        return Ok(Vec::new());
    };
    let mut hosts: Vec<HostPattern> = Vec::new();
    for item in list.non_empty_array()? {
        let pattern = HostPattern::parse(item.string()?).map_err(|message| item.error(message))?;
        if !hosts.contains(&pattern) {
            hosts.push(pattern);
        }
    }
    Ok(hosts)
}

/// `match.headers`: a non-empty list of `{"name": ..., "exact" | "prefix" | "present": ...}`.
pub(super) fn compile_header_matchers(
    match_node: &Node<'_>,
    managed: &ManagedHeaders<'_>,
) -> Result<Vec<HeaderMatcher>, ConfigError> {
    let Some(list) = match_node.members()?.get("headers") else {
        return Ok(Vec::new());
    };
    let mut fields = vec!["name"];
    fields.extend(HEADER_TESTS);
    let mut matchers = Vec::new();
    for item in list.non_empty_array()? {
        let entry = item.object(&fields)?;
        let name_node = entry.required("name")?;
        let name = name_node.non_empty_string()?.to_ascii_lowercase();
        let is_token = |text: &str| !text.is_empty() && text.chars().all(is_token_char);
        if !(is_token(&name) || name.strip_prefix(':').is_some_and(is_token)) {
            return Err(name_node.error(format!("{} is not a header name", quoted(&name))));
        }
        if name == ":path" {
            return Err(name_node.error(
                "\":path\" is matched by \"prefix\", \"path\" or \"model\", which see the \
                 normalized path; a header matcher would see the raw one",
            ));
        }
        let managed_name = managed.names.iter().any(|m| same_header_name(m, &name))
            || managed
                .prefixes
                .iter()
                .any(|prefix| header_name_has_prefix(&name, prefix));
        if managed_name {
            return Err(name_node.error(format!(
                "{} is a header this filter sets upstream; at decision time it holds whatever \
                 the client sent, so a rule must not match on it",
                quoted(&name)
            )));
        }
        let tests: Vec<&str> = HEADER_TESTS
            .into_iter()
            .filter(|test| entry.map.contains_key(*test))
            .collect();
        let [test] = tests.as_slice() else {
            return Err(item.error(format!(
                "set exactly one of {} besides \"name\"",
                HEADER_TESTS.join(", ")
            )));
        };
        let operand = entry.required(test)?;
        let test = match *test {
            "exact" => HeaderTest::Exact(operand.string()?.to_owned()),
            "prefix" => HeaderTest::Prefix(operand.non_empty_string()?.to_owned()),
            _ => HeaderTest::Present(operand.boolean()?),
        };
        matchers.push(HeaderMatcher { name, test });
    }
    Ok(matchers)
}

/// `require_claims`: a non-empty list of `{"claim": ..., "<operator>": ...}`.
pub(super) fn compile_require_claims(node: &Node<'_>) -> Result<Vec<ClaimCondition>, ConfigError> {
    let mut fields = vec!["claim"];
    fields.extend(claims::OPERATORS);
    let mut conditions = Vec::new();
    for item in node.non_empty_array()? {
        let entry = item.object(&fields)?;
        let claim_path = claim_path(&entry.required("claim")?)?;
        let operators: Vec<&str> = claims::OPERATORS
            .into_iter()
            .filter(|operator| entry.map.contains_key(*operator))
            .collect();
        let [operator] = operators.as_slice() else {
            return Err(item.error(format!(
                "set exactly one operator of {}",
                claims::OPERATORS.join(", ")
            )));
        };
        let operand = entry.required(operator)?;
        let test = ClaimTest::parse(operator, operand.value).map_err(|error| {
            let path = match error.index {
                Some(index) => format!("{}[{index}]", operand.path),
                None => operand.path.clone(),
            };
            ConfigError::new(path, error.message)
        })?;
        conditions.push(ClaimCondition { claim_path, test });
    }
    Ok(conditions)
}

/// The match and the path of its `prefix`/`path`/`model` field.
pub(super) fn compile_path_match(node: &Node<'_>) -> Result<(PathMatch, String), ConfigError> {
    let object = node.object(&MATCH_FIELDS)?;
    let kinds: Vec<(&str, Node<'_>)> = MATCH_KINDS
        .into_iter()
        .filter_map(|kind| object.get(kind).map(|value| (kind, value)))
        .collect();
    let [(kind, value)] = kinds.as_slice() else {
        return Err(node.error(format!("set exactly one of {}", MATCH_KINDS.join(", "))));
    };
    let exact = *kind == "path";
    if *kind == "model" {
        let pattern = ModelPattern::parse(value.string()?).map_err(|message| {
            value.error(format!(
                "{message}; a model pattern is a name (\"fraud\") or a prefix with a trailing \
                 \"*\" (\"team-*\")"
            ))
        })?;
        return Ok((PathMatch::Model(pattern), value.path.clone()));
    }
    let text = value.string()?;
    if !text.starts_with('/') {
        return Err(value.error(format!(
            "{} does not start with \"/\"; expected a path like \"/v2/health\"",
            quoted(text)
        )));
    }
    if text.contains(['?', '#']) {
        return Err(
            value.error("must not contain \"?\" or \"#\"; rules match the path without its query")
        );
    }
    let path_match = if exact {
        PathMatch::Exact(text.to_owned())
    } else {
        PathMatch::Prefix(text.to_owned())
    };
    Ok((path_match, value.path.clone()))
}

pub(super) fn compile_requirement(
    node: &Node<'_>,
    providers: &[Provider],
    depth: usize,
) -> Result<Requirement, ConfigError> {
    if depth > MAX_REQUIREMENT_DEPTH {
        return Err(node.error(format!(
            "requirements are nested more than {MAX_REQUIREMENT_DEPTH} levels deep"
        )));
    }
    let object = node.object(&REQUIREMENT_KINDS)?;
    let mut kinds = object.map.keys();
    let (Some(kind), None) = (kinds.next(), kinds.next()) else {
        return Err(node.error(format!(
            "set exactly one of {}",
            REQUIREMENT_KINDS.join(", ")
        )));
    };
    let value = object.required(kind)?;
    match kind.as_str() {
        "provider_name" => {
            let name = value.string()?;
            providers
                .iter()
                .position(|provider| provider.name == name)
                .map(Requirement::Provider)
                .ok_or_else(|| {
                    let defined: Vec<String> = providers.iter().map(|p| quoted(&p.name)).collect();
                    value.error(format!(
                        "no provider named {}; defined providers: {}",
                        quoted(name),
                        defined.join(", ")
                    ))
                })
        }
        "requires_any" | "requires_all" => {
            let requirements = value
                .object(&["requirements"])?
                .required("requirements")?
                .non_empty_array()?
                .iter()
                .map(|item| compile_requirement(item, providers, depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            if kind == "requires_any" {
                return Ok(Requirement::Any(requirements));
            }
            let all = Requirement::All(requirements);
            check_headers_disjoint(&all, providers).map_err(|message| value.error(message))?;
            Ok(all)
        }
        "allow_missing" => {
            value.object(&[])?;
            Ok(Requirement::AllowMissing)
        }
        _ => {
            value.object(&[])?;
            Ok(Requirement::AllowMissingOrFailed)
        }
    }
}

/// Under `requires_all` several tokens are accepted together, one from each branch, each setting
/// its own provider's headers. No header may be set from two branches: the model server would see
/// one identity's value under a name it reads as the other's. (Alternatives inside one branch,
/// `requires_any`, are never accepted together and may share header names.)
pub(super) fn check_headers_disjoint(
    requirement: &Requirement,
    providers: &[Provider],
) -> Result<(), String> {
    fn collect(requirement: &Requirement, into: &mut Vec<ProviderId>) {
        match requirement {
            Requirement::Provider(id) => into.push(*id),
            Requirement::Any(children) | Requirement::All(children) => {
                children.iter().for_each(|child| collect(child, into));
            }
            Requirement::AllowMissing | Requirement::AllowMissingOrFailed => {}
        }
    }
    let Requirement::All(branches) = requirement else {
        return Ok(());
    };
    let per_branch: Vec<Vec<ProviderId>> = branches
        .iter()
        .map(|branch| {
            let mut ids = Vec::new();
            collect(branch, &mut ids);
            ids
        })
        .collect();
    for (i, left) in per_branch.iter().enumerate() {
        for right in per_branch.get(i + 1..).unwrap_or_default() {
            for (first, second) in left
                .iter()
                .flat_map(|a| right.iter().map(move |b| (*a, *b)))
            {
                let (Some(first), Some(second)) = (providers.get(first), providers.get(second))
                else {
                    continue;
                };
                if first.filter_state.is_some() && second.filter_state.is_some() {
                    return Err(format!(
                        "providers {} and {} are accepted together here and both record the \
                         identity in filter state; turn filter_state off for one of them",
                        quoted(&first.name),
                        quoted(&second.name)
                    ));
                }
                let second_names = second.set_header_names();
                if let Some(name) = first.set_header_names().into_iter().find(|name| {
                    second_names
                        .iter()
                        .any(|other| same_header_name(name, other))
                }) {
                    return Err(format!(
                        "providers {} and {} are accepted together here and both set header \
                         \"{name}\"; give one of them another header name",
                        quoted(&first.name),
                        quoted(&second.name)
                    ));
                }
            }
        }
    }
    Ok(())
}
