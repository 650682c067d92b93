//! Which rule covers a request: its host, method, path and headers, and for requests that name
//! their model in the body, that model once the body has been read.

use super::reply::is_grpc;
use crate::config::{Config, HostIndex, PathMatch, Rule};
use crate::request::body::{body_protocol, BodyProtocol};
use crate::request::host::host_of;
use crate::request::{model, Request};

/// Where routing a request ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed<'c> {
    /// This rule covers it.
    Rule(&'c Rule),
    /// A model rule may cover it, but the model is in the body, not read yet.
    NeedsBody(BodyProtocol),
    /// No rule does (the configuration's catch-all makes this a bug).
    NoRule,
}

/// The first rule whose match fits `request`, whose path (query and fragment removed, normalized)
/// is `path`.
///
/// The host index narrows the rules to those that may cover the request's host, in configuration
/// order; the rest of each candidate's match is tested here. The model a request addresses is
/// read at most once, and only when a model rule is reached: from the path, or for the
/// OpenAI-compatible API and V2 gRPC from the body ([`Request::body_model`]). While that body is
/// unread, the first model rule whose other conditions fit stops the search: which rule covers
/// the request then depends on the body.
pub fn find_rule<'c>(config: &'c Config, request: &Request, path: &str) -> Routed<'c> {
    first_rule(
        &config.rules,
        &config.host_index,
        request,
        path,
        &config.body.openai_prefixes,
    )
}

/// The rules a request whose model is in its unread body may be covered by, in configuration
/// order: every model rule whose other conditions fit, up to and including the first rule that
/// fits whatever the model (the catch-all at the latest). A plain scan: it runs only for such
/// requests, before their body is read.
pub fn body_candidates<'c>(config: &'c Config, request: &Request, path: &str) -> Vec<&'c Rule> {
    let host = host_of(&request.authority);
    let mut addressed = None;
    let mut candidates = Vec::new();
    for rule in &config.rules {
        if !rule.hosts.is_empty() && !rule.hosts.iter().any(|pattern| pattern.matches(&host)) {
            continue;
        }
        match fits_request(
            rule,
            request,
            path,
            &mut addressed,
            &config.body.openai_prefixes,
        ) {
            Fit::No => {}
            Fit::IfBodyNames(_) => candidates.push(rule),
            Fit::Yes => {
                candidates.push(rule);
                break;
            }
        }
    }
    candidates
}

/// The model a request addresses, as far as it is known.
#[derive(Debug)]
enum Addressed {
    /// In the path, or read from the body.
    Model(String),
    /// In a body not read yet.
    Unread(BodyProtocol),
    /// No single model.
    None,
}

fn first_rule<'r>(
    rules: &'r [Rule],
    index: &HostIndex,
    request: &Request,
    path: &str,
    openai_prefixes: &[String],
) -> Routed<'r> {
    let mut addressed: Option<Addressed> = None;
    let mut unread = None;
    let position = index.first_fitting(&request.authority, rules.len(), |position| {
        let Some(rule) = rules.get(position) else {
            return false;
        };
        let fits = fits_request(rule, request, path, &mut addressed, openai_prefixes);
        match fits {
            Fit::Yes => true,
            Fit::No => false,
            Fit::IfBodyNames(protocol) => {
                unread = Some(protocol);
                true
            }
        }
    });
    match (position.and_then(|position| rules.get(position)), unread) {
        (Some(_), Some(protocol)) => Routed::NeedsBody(protocol),
        (Some(rule), None) => Routed::Rule(rule),
        (None, _) => Routed::NoRule,
    }
}

fn addressed_model(request: &Request, path: &str, openai_prefixes: &[String]) -> Addressed {
    if let Some(found) = model::parse(path) {
        return Addressed::Model(found.name);
    }
    let Some(protocol) = body_protocol(&request.method, path, is_grpc(request), openai_prefixes)
    else {
        return Addressed::None;
    };
    match &request.body_model {
        Some(name) => Addressed::Model(name.clone()),
        None => Addressed::Unread(protocol),
    }
}

enum Fit {
    Yes,
    No,
    /// Everything fits but the model, which the unread body names.
    IfBodyNames(BodyProtocol),
}

/// Whether `rule`'s method, path and header conditions fit (its hosts are the index's business).
fn fits_request(
    rule: &Rule,
    request: &Request,
    path: &str,
    addressed: &mut Option<Addressed>,
    openai_prefixes: &[String],
) -> Fit {
    if !rule.methods.is_empty() && !rule.methods.contains(&request.method) {
        return Fit::No;
    }
    if !rule.headers.iter().all(|matcher| matcher.matches(request)) {
        return Fit::No;
    }
    let path_fits = match &rule.path_match {
        PathMatch::Prefix(prefix) => path.starts_with(prefix.as_str()),
        PathMatch::Exact(exact) => path == exact,
        PathMatch::Model(pattern) => {
            match addressed.get_or_insert_with(|| addressed_model(request, path, openai_prefixes)) {
                Addressed::Model(name) => pattern.matches(name),
                Addressed::Unread(protocol) => return Fit::IfBodyNames(*protocol),
                Addressed::None => false,
            }
        }
    };
    if path_fits {
        Fit::Yes
    } else {
        Fit::No
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::config::Requirement;
    use crate::request::header_matcher::{HeaderMatcher, HeaderTest};
    use crate::request::host::HostPattern;
    use crate::request::model::ModelPattern;

    fn rule(path_match: PathMatch, requirement: Option<Requirement>) -> Rule {
        Rule {
            path_match,
            requirement,
            methods: Vec::new(),
            hosts: Vec::new(),
            headers: Vec::new(),
            require_claims: Vec::new(),
        }
    }

    fn request(method: &str, authority: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: method.into(),
            authority: authority.into(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            ..Request::default()
        }
    }

    /// A configuration with one provider and a catch-all, whose rules a test replaces.
    fn test_config() -> crate::config::Config {
        crate::config::Config::from_json(
            br#"{"providers": {"p": {"issuer": "https://i", "audiences": ["a"],
                                     "local_jwks": {"inline_string": "{\"keys\": []}"}}},
                 "rules": [{"match": {"prefix": "/"}}]}"#,
        )
        .unwrap()
    }

    fn prefixes() -> Vec<String> {
        crate::config::BodySettings::default().openai_prefixes
    }

    fn routed<'r>(rules: &'r [Rule], request: &Request, path: &str) -> Routed<'r> {
        let index = HostIndex::build(rules);
        first_rule(rules, &index, request, path, &prefixes())
    }

    fn find<'r>(rules: &'r [Rule], method: &str, path: &str) -> Option<&'r Rule> {
        match routed(rules, &request(method, "models.test", &[]), path) {
            Routed::Rule(rule) => Some(rule),
            _ => None,
        }
    }

    fn position_for(rules: &[Rule], request: &Request, path: &str) -> Option<usize> {
        let Routed::Rule(found) = routed(rules, request, path) else {
            return None;
        };
        rules.iter().position(|rule| std::ptr::eq(rule, found))
    }

    fn prefix(p: &str, requirement: Option<Requirement>) -> Rule {
        rule(PathMatch::Prefix(p.into()), requirement)
    }

    fn exact(p: &str, requirement: Option<Requirement>) -> Rule {
        rule(PathMatch::Exact(p.into()), requirement)
    }

    fn model(pattern: &str) -> Rule {
        rule(
            PathMatch::Model(ModelPattern::parse(pattern).unwrap()),
            Some(Requirement::Provider(1)),
        )
    }

    fn kserve_rules() -> Vec<Rule> {
        vec![
            prefix("/v2/health", None),
            exact("/metrics", None),
            prefix("/", Some(Requirement::Provider(0))),
        ]
    }

    // The first fitting rule wins even when a later rule also fits.
    #[test]
    fn first_match_wins() {
        let rules = kserve_rules();
        let rule = find(&rules, "GET", "/v2/health").unwrap();
        assert_eq!(rule.path_match, PathMatch::Prefix("/v2/health".into()));
        assert_eq!(rule.requirement, None);
    }

    // A prefix rule covers every path below it.
    #[test]
    fn prefix_covers_longer_paths() {
        let rules = kserve_rules();
        let rule = find(&rules, "GET", "/v2/health/ready").unwrap();
        assert_eq!(rule.path_match, PathMatch::Prefix("/v2/health".into()));
    }

    // An exact rule fits only the identical path; longer paths fall through to later rules.
    #[test]
    fn exact_matches_only_equal_path() {
        let rules = kserve_rules();
        let rule = find(&rules, "GET", "/metrics").unwrap();
        assert_eq!(rule.path_match, PathMatch::Exact("/metrics".into()));
        let rule = find(&rules, "GET", "/metrics/x").unwrap();
        assert_eq!(rule.path_match, PathMatch::Prefix("/".into()));
        let rule = find(&rules, "GET", "/metric").unwrap();
        assert_eq!(rule.path_match, PathMatch::Prefix("/".into()));
    }

    // Paths no rule covers give no rule (the configuration prevents this with a final "/" rule).
    #[test]
    fn no_rule_fits() {
        let rules = vec![exact("/a", None), prefix("/b", None)];
        assert!(find(&rules, "GET", "/c").is_none());
        assert!(find(&[], "GET", "/").is_none());
    }

    // Matching is case-sensitive, as HTTP paths are.
    #[test]
    fn matching_is_case_sensitive() {
        let rules = vec![prefix("/v2/health", None), exact("/metrics", None)];
        assert!(find(&rules, "GET", "/V2/health").is_none());
        assert!(find(&rules, "GET", "/Metrics").is_none());
    }

    // A model rule covers that model's V1 and V2 paths, versions included, and no other model.
    #[test]
    fn model_rule_covers_its_model_only() {
        let rules = vec![model("fraud"), prefix("/", None)];
        for path in [
            "/v1/models/fraud:predict",
            "/v1/models/fraud:explain",
            "/v2/models/fraud/infer",
            "/v2/models/fraud/versions/2/infer",
            "/v2/models/fraud/ready",
        ] {
            let found = find(&rules, "POST", path).unwrap();
            assert!(matches!(found.path_match, PathMatch::Model(_)), "{path}");
        }
        for path in [
            "/v1/models/fraudulent:predict",
            "/v2/models/fraud-v2/infer",
            "/v2/health/ready",
            "/openai/v1/models",
        ] {
            let found = find(&rules, "POST", path).unwrap();
            assert_eq!(found.path_match, PathMatch::Prefix("/".into()), "{path}");
        }
    }

    // A model rule reached on an OpenAI-compatible or V2 gRPC path waits for the body; once the
    // body has named the model, it covers that model only.
    #[test]
    fn models_named_in_the_body() {
        let rules = vec![
            prefix("/v2/health", None),
            model("llama-a"),
            prefix("/", None),
        ];
        let mut chat = request("POST", "models.test", &[]);
        assert_eq!(
            routed(&rules, &chat, "/openai/v1/chat/completions"),
            Routed::NeedsBody(BodyProtocol::OpenAi)
        );
        assert_eq!(
            routed(&rules, &chat, "/v1/embeddings"),
            Routed::NeedsBody(BodyProtocol::OpenAi)
        );
        chat.body_model = Some("llama-a".into());
        assert_eq!(
            position_for(&rules, &chat, "/openai/v1/chat/completions"),
            Some(1)
        );
        chat.body_model = Some("llama-b".into());
        assert_eq!(
            position_for(&rules, &chat, "/openai/v1/chat/completions"),
            Some(2)
        );
        // A GET of the model list, or a path that is no endpoint, never waits for a body.
        let list = request("GET", "models.test", &[]);
        assert_eq!(position_for(&rules, &list, "/openai/v1/models"), Some(2));
        let grpc = request(
            "POST",
            "models.test",
            &[("content-type", "application/grpc")],
        );
        assert_eq!(
            routed(&rules, &grpc, "/inference.GRPCInferenceService/ModelInfer"),
            Routed::NeedsBody(BodyProtocol::Grpc)
        );
        // Without model rules, nothing waits for a body.
        let plain = vec![prefix("/", None)];
        assert_eq!(
            position_for(&plain, &request("POST", "m", &[]), "/v1/completions"),
            Some(0)
        );
    }

    // The candidates: every model rule whose other conditions fit, then the first rule that fits
    // whatever the model.
    #[test]
    fn body_candidates_end_at_the_first_rule_that_fits_anyway() {
        let mut only_get = model("llama-b");
        only_get.methods = vec!["GET".into()];
        let config = crate::config::Config {
            rules: vec![
                model("llama-a"),
                only_get,
                prefix("/openai/", Some(Requirement::Provider(0))),
                prefix("/", None),
            ],
            ..test_config()
        };
        let config = crate::config::Config {
            host_index: HostIndex::build(&config.rules),
            ..config
        };
        let chat = request("POST", "models.test", &[]);
        let candidates = body_candidates(&config, &chat, "/openai/v1/completions");
        let positions: Vec<usize> = candidates
            .iter()
            .map(|c| {
                config
                    .rules
                    .iter()
                    .position(|r| std::ptr::eq(r, *c))
                    .unwrap()
            })
            .collect();
        assert_eq!(positions, [0, 2]);
    }

    // A glob rule covers every model with its prefix.
    #[test]
    fn glob_model_rule() {
        let rules = vec![model("team-*"), prefix("/", None)];
        let covered = |path| find(&rules, "POST", path).unwrap().requirement.is_some();
        assert!(covered("/v2/models/team-a/infer"));
        assert!(covered("/v1/models/team-b:predict"));
        assert!(!covered("/v2/models/teams/infer"));
    }

    // A rule restricted to methods is skipped for other methods.
    #[test]
    fn methods_restrict_a_rule() {
        let mut get_only = prefix("/v2/models", None);
        get_only.methods = vec!["GET".into(), "HEAD".into()];
        let rules = vec![get_only, prefix("/", Some(Requirement::Provider(0)))];
        assert_eq!(
            find(&rules, "GET", "/v2/models/m").unwrap().requirement,
            None
        );
        assert_eq!(
            find(&rules, "HEAD", "/v2/models/m").unwrap().requirement,
            None
        );
        assert!(find(&rules, "POST", "/v2/models/m/infer")
            .unwrap()
            .requirement
            .is_some());
        assert!(find(&rules, "get", "/v2/models/m")
            .unwrap()
            .requirement
            .is_some());
    }

    // gRPC method paths are ordinary paths to prefix and exact rules.
    #[test]
    fn grpc_paths() {
        let rules = vec![
            exact("/inference.GRPCInferenceService/ServerLive", None),
            prefix(
                "/inference.GRPCInferenceService/",
                Some(Requirement::Provider(1)),
            ),
            prefix("/", Some(Requirement::Provider(0))),
        ];
        let requirement = |path| find(&rules, "POST", path).unwrap().requirement.clone();
        assert_eq!(
            requirement("/inference.GRPCInferenceService/ServerLive"),
            None
        );
        assert_eq!(
            requirement("/inference.GRPCInferenceService/ModelInfer"),
            Some(Requirement::Provider(1))
        );
    }

    fn hosts(mut rule: Rule, patterns: &[&str]) -> Rule {
        rule.hosts = patterns
            .iter()
            .map(|p| HostPattern::parse(p).unwrap())
            .collect();
        rule
    }

    // Two services, one model path: the host decides, and the other parts still apply.
    #[test]
    fn hosts_tell_services_apart() {
        let rules = vec![
            hosts(
                prefix("/v1/models/model", Some(Requirement::Provider(0))),
                &["model-risk.models.example.com"],
            ),
            hosts(
                prefix("/v1/models/model", Some(Requirement::Provider(1))),
                &["*-ads.models.example.com", "*.ads.svc.cluster.local"],
            ),
            prefix("/", None),
        ];
        let path = "/v1/models/model:predict";
        let at = |authority| position_for(&rules, &request("POST", authority, &[]), path);
        assert_eq!(at("model-risk.models.example.com"), Some(0));
        assert_eq!(at("MODEL-RISK.models.example.com:443"), Some(0));
        assert_eq!(at("model-ads.models.example.com"), Some(1));
        assert_eq!(at("model.ads.svc.cluster.local:8080"), Some(1));
        assert_eq!(at("model-other.models.example.com"), Some(2));
        assert_eq!(at("[::1]:8080"), Some(2));
        let other_path = position_for(
            &rules,
            &request("POST", "model-risk.models.example.com", &[]),
            "/v2/health",
        );
        assert_eq!(other_path, Some(2));
    }

    // Header conditions narrow a rule; a repeated header must fit with every value.
    #[test]
    fn headers_narrow_a_rule() {
        let mut canary = prefix("/", Some(Requirement::Provider(1)));
        canary.headers = vec![HeaderMatcher {
            name: "x-canary".into(),
            test: HeaderTest::Exact("true".into()),
        }];
        let rules = vec![canary, prefix("/", None)];
        let with = |headers: &[(&str, &str)]| {
            position_for(&rules, &request("GET", "models.test", headers), "/")
        };
        assert_eq!(with(&[("x-canary", "true")]), Some(0));
        assert_eq!(
            with(&[("x-canary", "true"), ("x-canary", "false")]),
            Some(1)
        );
        assert_eq!(with(&[]), Some(1));
    }
}
