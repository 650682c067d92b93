//! Which rule covers a request: its host, method, path and headers.

use crate::config::{Config, HostIndex, PathMatch, Rule};
use crate::request::{model, Request};

/// The first rule whose match fits `request`, whose path (query and fragment removed, normalized)
/// is `path`.
///
/// The host index narrows the rules to those that may cover the request's host, in configuration
/// order; the rest of each candidate's match is tested here. The model a path addresses is read
/// at most once, and only when a model rule is reached.
pub fn find_rule<'c>(config: &'c Config, request: &Request, path: &str) -> Option<&'c Rule> {
    first_rule(&config.rules, &config.host_index, request, path)
}

fn first_rule<'r>(
    rules: &'r [Rule],
    index: &HostIndex,
    request: &Request,
    path: &str,
) -> Option<&'r Rule> {
    let mut model: Option<Option<model::ModelPath>> = None;
    let position = index.first_fitting(&request.authority, rules.len(), |position| {
        rules
            .get(position)
            .is_some_and(|rule| fits_request(rule, request, path, &mut model))
    })?;
    rules.get(position)
}

/// Whether `rule`'s method, path and header conditions fit (its hosts are the index's business).
fn fits_request(
    rule: &Rule,
    request: &Request,
    path: &str,
    model: &mut Option<Option<model::ModelPath>>,
) -> bool {
    if !rule.methods.is_empty() && !rule.methods.contains(&request.method) {
        return false;
    }
    let path_fits = match &rule.path_match {
        PathMatch::Prefix(prefix) => path.starts_with(prefix.as_str()),
        PathMatch::Exact(exact) => path == exact,
        PathMatch::Model(pattern) => model
            .get_or_insert_with(|| model::parse(path))
            .as_ref()
            .is_some_and(|found| pattern.matches(&found.name)),
    };
    path_fits && rule.headers.iter().all(|matcher| matcher.matches(request))
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

    fn find<'r>(rules: &'r [Rule], method: &str, path: &str) -> Option<&'r Rule> {
        let index = HostIndex::build(rules);
        first_rule(rules, &index, &request(method, "models.test", &[]), path)
    }

    fn position_for(rules: &[Rule], request: &Request, path: &str) -> Option<usize> {
        let index = HostIndex::build(rules);
        let found = first_rule(rules, &index, request, path)?;
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
            "/openai/v1/completions",
        ] {
            let found = find(&rules, "POST", path).unwrap();
            assert_eq!(found.path_match, PathMatch::Prefix("/".into()), "{path}");
        }
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
