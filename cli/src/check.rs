//! `kserve-auth check`: each configuration a file holds, compiled by the filter's own compiler,
//! with the legal choices an operator should see twice.

use std::fs;
use std::path::Path;

use kserve_auth_filter::config::{Config, PathMatch, Requirement};
use kserve_auth_filter::request::extract::TokenSource;

use crate::document::{self, Found};

/// What `check` prints for one file, and whether it failed.
pub struct Report {
    pub lines: Vec<String>,
    pub failed: bool,
}

/// Checks every plugin configuration in `file`.
pub fn check_file(file: &Path) -> Report {
    let name = file.display().to_string();
    let mut report = Report {
        lines: Vec::new(),
        failed: false,
    };
    let text = match fs::read_to_string(file) {
        Ok(text) => text,
        Err(error) => {
            report.fail(format!("{name}: cannot read: {error}"));
            return report;
        }
    };
    let documents = match document::parse(&text) {
        Ok(documents) => documents,
        Err(error) => {
            report.fail(format!("{name}: {error}"));
            return report;
        }
    };
    let found = document::configurations(&documents);
    if found.is_empty() {
        report.fail(format!(
            "{name}: no kserve-auth plugin configuration, Envoy wasm filter running it, or \
             WasmPlugin found"
        ));
        return report;
    }
    for configuration in &found {
        check_one(&name, configuration, &mut report);
    }
    if !report.failed {
        report
            .lines
            .push(format!("{name}: ok ({} configuration(s))", found.len()));
    }
    report
}

impl Report {
    fn fail(&mut self, line: String) {
        self.failed = true;
        self.lines.push(line);
    }

    fn warn(&mut self, place: &str, message: impl AsRef<str>) {
        self.lines
            .push(format!("{place}: warning: {}", message.as_ref()));
    }
}

fn check_one(file: &str, found: &Found, report: &mut Report) {
    let place = if found.location.is_empty() {
        file.to_owned()
    } else {
        format!("{file}: {}", found.location)
    };
    let text = match &found.configuration {
        Ok(text) => text,
        Err(error) => {
            report.fail(format!("{place}: {error}"));
            return;
        }
    };
    let config = match Config::from_json(text.as_bytes()) {
        Ok(config) => config,
        Err(error) => {
            report.fail(format!("{place}: {error}"));
            return;
        }
    };
    if let Some(policy) = &found.failure_policy {
        if policy.eq_ignore_ascii_case("FAIL_OPEN") {
            report.fail(format!(
                "{place}: the failure policy is {policy}: a VM that fails would let every \
                 request through; use FAIL_RELOAD (Envoy) or FAIL_RELOAD/FAIL_CLOSE (Istio)"
            ));
        }
    }
    warnings(&place, &config, found, report);
}

fn warnings(place: &str, config: &Config, found: &Found, report: &mut Report) {
    for rule in &config.rules {
        let catch_all = matches!(&rule.path_match, PathMatch::Prefix(prefix) if prefix == "/");
        if catch_all
            && rule.hosts.is_empty()
            && rule.headers.is_empty()
            && rule.methods.is_empty()
            && rule.requirement.is_none()
        {
            report.warn(place, "the catch-all rule (prefix \"/\") is public: every path no earlier rule names needs no token");
        }
    }
    for (id, provider) in config.providers.iter().enumerate() {
        if !config
            .rules
            .iter()
            .filter_map(|rule| rule.requirement.as_ref())
            .any(|requirement| uses(requirement, id))
        {
            report.warn(
                place,
                format!(
                    "providers.{} is used by no rule (only by allow_missing ones, if any)",
                    provider.name
                ),
            );
        }
        if provider
            .token_sources
            .iter()
            .any(|source| matches!(source, TokenSource::Param { .. }))
        {
            report.warn(
                place,
                format!(
                    "providers.{}.from_params: tokens in URLs end up in access logs and browser \
                     history",
                    provider.name
                ),
            );
        }
        if provider.forward {
            report.warn(
                place,
                format!(
                    "providers.{}.forward is true: the token reaches the model server",
                    provider.name
                ),
            );
        }
    }
    if config.has_model_rules && found.holds_headers == Some(false) {
        report.warn(
            place,
            "model rules with the wasm filter lacking allow_on_headers_stop_iteration: true: \
             requests that name their model in the body are refused after 10 s",
        );
    }
}

/// Whether `requirement` asks for provider `id` anywhere (any_provider requirements count).
fn uses(requirement: &Requirement, id: usize) -> bool {
    match requirement {
        Requirement::Provider(provider) => *provider == id,
        Requirement::Any(children) | Requirement::All(children) => {
            children.iter().any(|child| uses(child, id))
        }
        Requirement::AllowMissing | Requirement::AllowMissingOrFailed => true,
    }
}
