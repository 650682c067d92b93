//! Finds the rules that may cover a host without scanning every rule.
//!
//! A gateway in front of 1,000 InferenceServices has about 1,000 host rules. The index, built once
//! per configuration, gives for a host the rules whose `hosts` could fit it (exact hosts by a map
//! lookup, wildcard suffixes by one walk down a trie of reversed suffixes) plus every rule without
//! `hosts`. It hands them out in configuration order, so the first rule that fits is the same
//! rule a plain scan from the top finds: the index changes the cost, never the winner.

use super::rules::Rule;
use crate::request::host::{host_of, HostPattern};

/// Rule positions by host. Positions in every list are ascending.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostIndex {
    /// Whether any rule has `hosts`; when none has, every rule is a candidate for every host.
    enabled: bool,
    /// Exact hosts, sorted, each with its rules.
    exact: Vec<(String, Vec<usize>)>,
    wildcards: SuffixTrie,
    any_host: Vec<usize>,
}

impl HostIndex {
    /// The index of `rules`.
    pub fn build(rules: &[Rule]) -> HostIndex {
        let mut index = HostIndex::default();
        for (position, rule) in rules.iter().enumerate() {
            if rule.hosts.is_empty() {
                index.any_host.push(position);
                continue;
            }
            index.enabled = true;
            for host in &rule.hosts {
                match host {
                    HostPattern::Exact(exact) => {
                        match index
                            .exact
                            .binary_search_by(|(host, _)| host.as_str().cmp(exact))
                        {
                            Ok(found) => {
                                if let Some((_, list)) = index.exact.get_mut(found) {
                                    push_once(list, position);
                                }
                            }
                            Err(at) => index.exact.insert(at, (exact.clone(), vec![position])),
                        }
                    }
                    HostPattern::Wildcard(suffix) => index.wildcards.insert(suffix, position),
                }
            }
        }
        index
    }

    /// The first rule position, in configuration order, among the rules that may cover a request
    /// to `authority` for which `fits` holds. `rule_count` bounds the plain scan used when no rule
    /// has hosts, which then never reads the authority.
    pub fn first_fitting(
        &self,
        authority: &str,
        rule_count: usize,
        mut fits: impl FnMut(usize) -> bool,
    ) -> Option<usize> {
        if !self.enabled {
            return (0..rule_count).find(|&position| fits(position));
        }
        let host = host_of(authority);
        let host = host.as_ref();
        let mut lists: Vec<&[usize]> = Vec::with_capacity(4);
        lists.push(&self.any_host);
        if let Ok(found) = self
            .exact
            .binary_search_by(|(exact, _)| exact.as_str().cmp(host))
        {
            if let Some((_, list)) = self.exact.get(found) {
                lists.push(list);
            }
        }
        self.wildcards.collect(host, &mut lists);
        // A merge of the ascending lists: each candidate once, lowest position first.
        loop {
            let next = lists
                .iter()
                .filter_map(|list| list.first())
                .min()
                .copied()?;
            for list in &mut lists {
                if list.first() == Some(&next) {
                    *list = list.get(1..).unwrap_or_default();
                }
            }
            if fits(next) {
                return Some(next);
            }
        }
    }
}

/// Wildcard suffixes, stored reversed (`*.risk.svc` as `cvs.ksir.`), so that walking a host from
/// its last byte visits every suffix it ends with.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SuffixTrie {
    nodes: Vec<TrieNode>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct TrieNode {
    children: Vec<(u8, usize)>,
    /// Rules with a wildcard whose suffix ends at this node.
    rules: Vec<usize>,
}

impl Default for SuffixTrie {
    fn default() -> SuffixTrie {
        SuffixTrie {
            nodes: vec![TrieNode::default()],
        }
    }
}

impl SuffixTrie {
    /// Records that the rule at `position` has the wildcard `*<suffix>`.
    fn insert(&mut self, suffix: &str, position: usize) {
        let mut current = 0;
        for byte in suffix.bytes().rev() {
            current = match self.child(current, byte) {
                Some(child) => child,
                None => {
                    let child = self.nodes.len();
                    self.nodes.push(TrieNode::default());
                    if let Some(node) = self.nodes.get_mut(current) {
                        node.children.push((byte, child));
                    }
                    child
                }
            };
        }
        if let Some(node) = self.nodes.get_mut(current) {
            push_once(&mut node.rules, position);
        }
    }

    fn child(&self, node: usize, byte: u8) -> Option<usize> {
        let node = self.nodes.get(node)?;
        node.children
            .iter()
            .find(|(b, _)| *b == byte)
            .map(|(_, child)| *child)
    }

    /// Adds to `into` the rule list of every wildcard that fits `host`: its suffix ends the host,
    /// and what the `*` stands for is not empty and has no dot.
    fn collect<'t>(&'t self, host: &str, into: &mut Vec<&'t [usize]>) {
        let bytes = host.as_bytes();
        // The `*` part is host[..len - depth]; it has no dot once depth reaches this.
        let dot_free_from = host
            .find('.')
            .map_or(0, |first_dot| bytes.len() - first_dot);
        let mut current = 0;
        for (depth, byte) in bytes.iter().rev().enumerate() {
            let Some(child) = self.child(current, *byte) else {
                return;
            };
            current = child;
            let matched = depth + 1;
            if matched >= dot_free_from && matched < bytes.len() {
                if let Some(node) = self.nodes.get(current).filter(|n| !n.rules.is_empty()) {
                    into.push(&node.rules);
                }
            }
        }
    }
}

/// Adds `position` unless it is already last: a rule listing two patterns that lead to the same
/// list is still one candidate.
fn push_once(list: &mut Vec<usize>, position: usize) {
    if list.last() != Some(&position) {
        list.push(position);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::config::rules::PathMatch;

    fn rule(hosts: &[&str]) -> Rule {
        Rule {
            path_match: PathMatch::Prefix("/".into()),
            requirement: None,
            methods: Vec::new(),
            hosts: hosts
                .iter()
                .map(|h| HostPattern::parse(h).unwrap())
                .collect(),
            headers: Vec::new(),
            require_claims: Vec::new(),
        }
    }

    /// The first rule a plain scan from the top finds.
    fn scan(rules: &[Rule], host: &str, fits: impl Fn(usize) -> bool) -> Option<usize> {
        (0..rules.len()).find(|&position| {
            let rule = &rules[position];
            (rule.hosts.is_empty() || rule.hosts.iter().any(|h| h.matches(host))) && fits(position)
        })
    }

    fn first(index: &HostIndex, rules: &[Rule], host: &str) -> Option<usize> {
        index.first_fitting(host, rules.len(), |_| true)
    }

    // Exact hosts, both wildcard forms and host-less rules, in configuration order.
    #[test]
    fn finds_the_first_rule_for_a_host() {
        let rules = vec![
            rule(&["fraud-risk.models.example.com"]),
            rule(&["*-risk.models.example.com"]),
            rule(&["*.risk.svc.cluster.local", "fraud-ads.models.example.com"]),
            rule(&[]),
        ];
        let index = HostIndex::build(&rules);
        let found = |authority: &str| first(&index, &rules, authority);
        assert_eq!(found("fraud-risk.models.example.com"), Some(0));
        assert_eq!(found("FRAUD-RISK.models.example.com:443"), Some(0));
        assert_eq!(found("churn-risk.models.example.com"), Some(1));
        assert_eq!(found("-risk.models.example.com"), Some(3));
        assert_eq!(found("fraud.risk.svc.cluster.local"), Some(2));
        assert_eq!(found("a.fraud.risk.svc.cluster.local"), Some(3));
        assert_eq!(found("fraud-ads.models.example.com"), Some(2));
        assert_eq!(found("unknown.example.com"), Some(3));
        assert_eq!(found("[::1]:8080"), Some(3));
    }

    // A host-less rule before host rules still wins for every host: order is kept.
    #[test]
    fn order_is_kept_across_lists() {
        let rules = vec![
            rule(&["a.example.com"]),
            rule(&[]),
            rule(&["*.example.com"]),
        ];
        let index = HostIndex::build(&rules);
        let position = index.first_fitting("b.example.com", rules.len(), |p| p != 1);
        assert_eq!(position, Some(2));
        let position = index.first_fitting("a.example.com", rules.len(), |p| p != 0);
        assert_eq!(position, Some(1));
    }

    /// SplitMix64: a seeded source, so a failing case can be replayed.
    struct Random(u64);
    impl Random {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    // Property: on random rule sets and hosts, the index and a plain first-match scan agree,
    // whichever rules the other parts of the match (here a random subset) rule out.
    #[test]
    fn index_agrees_with_a_plain_scan() {
        const LABELS: [&str; 5] = ["a", "b", "ab", "a-b", "risk"];
        const DOMAINS: [&str; 3] = ["example.com", "b.example.com", "svc"];
        let mut random = Random(0x5eed);
        let host = |random: &mut Random| {
            let mut labels: Vec<&str> = (0..random.below(3))
                .map(|_| LABELS[random.below(LABELS.len())])
                .collect();
            labels.push(DOMAINS[random.below(DOMAINS.len())]);
            labels.join(".")
        };
        for case in 0..2_000 {
            let rules: Vec<Rule> = (0..1 + random.below(12))
                .map(|_| {
                    let patterns: Vec<String> = (0..random.below(3))
                        .map(|_| {
                            let base = host(&mut random);
                            match random.below(3) {
                                0 => base,
                                1 => format!("*.{base}"),
                                _ => format!("*{}", &base[base.len().min(1 + random.below(3))..])
                                    .replace("*.", "*x."),
                            }
                        })
                        .filter(|p| HostPattern::parse(p).is_ok())
                        .collect();
                    let patterns: Vec<&str> = patterns.iter().map(String::as_str).collect();
                    rule(&patterns)
                })
                .collect();
            let index = HostIndex::build(&rules);
            for _ in 0..20 {
                let request_host = host(&mut random);
                let excluded = random.next();
                let fits = |position: usize| excluded >> (position % 64) & 1 == 0;
                let expected = scan(&rules, &request_host, fits);
                // The index alone decides hosts: `fits` here knows nothing of them.
                let got = index.first_fitting(&request_host, rules.len(), fits);
                assert_eq!(got, expected, "case {case}: {request_host} in {rules:?}");
            }
        }
    }
}
