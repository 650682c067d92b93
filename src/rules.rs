//! Which rule covers a request path.

use crate::config::{PathMatch, Rule};

/// The first rule whose match fits `path` (query and fragment already removed).
pub fn find_rule<'c>(rules: &'c [Rule], path: &str) -> Option<&'c Rule> {
    rules.iter().find(|rule| match &rule.path_match {
        PathMatch::Prefix(prefix) => path.starts_with(prefix.as_str()),
        PathMatch::Exact(exact) => path == exact,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::config::Requirement;

    fn prefix(p: &str, requirement: Option<Requirement>) -> Rule {
        Rule {
            path_match: PathMatch::Prefix(p.into()),
            requirement,
        }
    }

    fn exact(p: &str, requirement: Option<Requirement>) -> Rule {
        Rule {
            path_match: PathMatch::Exact(p.into()),
            requirement,
        }
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
        let rule = find_rule(&rules, "/v2/health").unwrap();
        assert_eq!(rule.path_match, PathMatch::Prefix("/v2/health".into()));
        assert_eq!(rule.requirement, None);
    }

    // A prefix rule covers every path below it.
    #[test]
    fn prefix_covers_longer_paths() {
        let rules = kserve_rules();
        let rule = find_rule(&rules, "/v2/health/ready").unwrap();
        assert_eq!(rule.path_match, PathMatch::Prefix("/v2/health".into()));
    }

    // An exact rule fits only the identical path; longer paths fall through to later rules.
    #[test]
    fn exact_matches_only_equal_path() {
        let rules = kserve_rules();
        let rule = find_rule(&rules, "/metrics").unwrap();
        assert_eq!(rule.path_match, PathMatch::Exact("/metrics".into()));
        let rule = find_rule(&rules, "/metrics/x").unwrap();
        assert_eq!(rule.path_match, PathMatch::Prefix("/".into()));
        let rule = find_rule(&rules, "/metric").unwrap();
        assert_eq!(rule.path_match, PathMatch::Prefix("/".into()));
    }

    // Paths no rule covers give no rule (the configuration prevents this with a final "/" rule).
    #[test]
    fn no_rule_fits() {
        let rules = vec![exact("/a", None), prefix("/b", None)];
        assert!(find_rule(&rules, "/c").is_none());
        assert!(find_rule(&[], "/").is_none());
    }

    // Matching is case-sensitive, as HTTP paths are.
    #[test]
    fn matching_is_case_sensitive() {
        let rules = vec![prefix("/v2/health", None), exact("/metrics", None)];
        assert!(find_rule(&rules, "/V2/health").is_none());
        assert!(find_rule(&rules, "/Metrics").is_none());
    }
}
