//! Which rule covers a request: its method and path.

use crate::config::{PathMatch, Rule};
use crate::request::model;

/// The first rule whose match fits `method` and `path` (query and fragment already removed).
///
/// The model a path addresses is read at most once, and only when a model rule is reached.
pub fn find_rule<'c>(rules: &'c [Rule], method: &str, path: &str) -> Option<&'c Rule> {
    let mut model: Option<Option<model::ModelPath>> = None;
    rules.iter().find(|rule| {
        if !rule.methods.is_empty() && !rule.methods.iter().any(|m| m == method) {
            return false;
        }
        match &rule.path_match {
            PathMatch::Prefix(prefix) => path.starts_with(prefix.as_str()),
            PathMatch::Exact(exact) => path == exact,
            PathMatch::Model(pattern) => model
                .get_or_insert_with(|| model::parse(path))
                .as_ref()
                .is_some_and(|found| pattern.matches(&found.name)),
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::config::Requirement;
    use crate::request::model::ModelPattern;

    fn rule(path_match: PathMatch, requirement: Option<Requirement>) -> Rule {
        Rule {
            path_match,
            requirement,
            methods: Vec::new(),
            require_claims: Vec::new(),
        }
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
        let rule = find_rule(&rules, "GET", "/v2/health").unwrap();
        assert_eq!(rule.path_match, PathMatch::Prefix("/v2/health".into()));
        assert_eq!(rule.requirement, None);
    }

    // A prefix rule covers every path below it.
    #[test]
    fn prefix_covers_longer_paths() {
        let rules = kserve_rules();
        let rule = find_rule(&rules, "GET", "/v2/health/ready").unwrap();
        assert_eq!(rule.path_match, PathMatch::Prefix("/v2/health".into()));
    }

    // An exact rule fits only the identical path; longer paths fall through to later rules.
    #[test]
    fn exact_matches_only_equal_path() {
        let rules = kserve_rules();
        let rule = find_rule(&rules, "GET", "/metrics").unwrap();
        assert_eq!(rule.path_match, PathMatch::Exact("/metrics".into()));
        let rule = find_rule(&rules, "GET", "/metrics/x").unwrap();
        assert_eq!(rule.path_match, PathMatch::Prefix("/".into()));
        let rule = find_rule(&rules, "GET", "/metric").unwrap();
        assert_eq!(rule.path_match, PathMatch::Prefix("/".into()));
    }

    // Paths no rule covers give no rule (the configuration prevents this with a final "/" rule).
    #[test]
    fn no_rule_fits() {
        let rules = vec![exact("/a", None), prefix("/b", None)];
        assert!(find_rule(&rules, "GET", "/c").is_none());
        assert!(find_rule(&[], "GET", "/").is_none());
    }

    // Matching is case-sensitive, as HTTP paths are.
    #[test]
    fn matching_is_case_sensitive() {
        let rules = vec![prefix("/v2/health", None), exact("/metrics", None)];
        assert!(find_rule(&rules, "GET", "/V2/health").is_none());
        assert!(find_rule(&rules, "GET", "/Metrics").is_none());
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
            let found = find_rule(&rules, "POST", path).unwrap();
            assert!(matches!(found.path_match, PathMatch::Model(_)), "{path}");
        }
        for path in [
            "/v1/models/fraudulent:predict",
            "/v2/models/fraud-v2/infer",
            "/v2/health/ready",
            "/openai/v1/completions",
        ] {
            let found = find_rule(&rules, "POST", path).unwrap();
            assert_eq!(found.path_match, PathMatch::Prefix("/".into()), "{path}");
        }
    }

    // A glob rule covers every model with its prefix.
    #[test]
    fn glob_model_rule() {
        let rules = vec![model("team-*"), prefix("/", None)];
        let covered = |path| {
            find_rule(&rules, "POST", path)
                .unwrap()
                .requirement
                .is_some()
        };
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
            find_rule(&rules, "GET", "/v2/models/m")
                .unwrap()
                .requirement,
            None
        );
        assert_eq!(
            find_rule(&rules, "HEAD", "/v2/models/m")
                .unwrap()
                .requirement,
            None
        );
        assert!(find_rule(&rules, "POST", "/v2/models/m/infer")
            .unwrap()
            .requirement
            .is_some());
        assert!(find_rule(&rules, "get", "/v2/models/m")
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
        let requirement = |path| find_rule(&rules, "POST", path).unwrap().requirement.clone();
        assert_eq!(
            requirement("/inference.GRPCInferenceService/ServerLive"),
            None
        );
        assert_eq!(
            requirement("/inference.GRPCInferenceService/ModelInfer"),
            Some(Requirement::Provider(1))
        );
    }
}
