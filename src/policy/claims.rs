//! Claims of a verified token: lookup by path, and the `require_claims` conditions a rule puts
//! on them.

use serde_json::{Map, Value};

/// The operator names a condition may use, in documentation order.
pub const OPERATORS: [&str; 5] = ["has", "has_word", "equals", "one_of", "ends_with"];

/// One entry of a rule's `require_claims`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimCondition {
    /// Claim path: `["realm_access", "roles"]` for `realm_access.roles`.
    pub claim_path: Vec<String>,
    /// What the claim's value must satisfy.
    pub test: ClaimTest,
}

/// What a claim's value must satisfy. A missing claim satisfies nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimTest {
    /// An array containing this value, or a scalar equal to it.
    Has(Value),
    /// A space-delimited string (OAuth `scope`) containing this word exactly, or an array with
    /// it as an element.
    HasWord(String),
    /// Exactly this value.
    Equals(Value),
    /// A scalar equal to one of these values.
    OneOf(Vec<Value>),
    /// A string ending with this suffix.
    EndsWith(String),
}

/// Why an operand cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperandError {
    /// The offending element, when the operand is a list.
    pub index: Option<usize>,
    /// What is wrong with it.
    pub message: String,
}

impl OperandError {
    fn new(message: impl Into<String>) -> OperandError {
        OperandError {
            index: None,
            message: message.into(),
        }
    }
}

/// A JSON string, number or boolean: the values a claim condition compares against.
fn scalar(value: &Value) -> Result<Value, OperandError> {
    match value {
        Value::String(text) if text.is_empty() => Err(OperandError::new("must not be empty")),
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(value.clone()),
        _ => Err(OperandError::new(
            "expected a string, a number or a boolean",
        )),
    }
}

fn non_empty_string(value: &Value) -> Result<String, OperandError> {
    match value {
        Value::String(text) if text.is_empty() => Err(OperandError::new("must not be empty")),
        Value::String(text) => Ok(text.clone()),
        _ => Err(OperandError::new("expected a string")),
    }
}

impl ClaimTest {
    /// Builds the test for `operator` (one of [`OPERATORS`]) with its operand.
    pub fn parse(operator: &str, operand: &Value) -> Result<ClaimTest, OperandError> {
        match operator {
            "has" => scalar(operand).map(ClaimTest::Has),
            "has_word" => {
                let word = non_empty_string(operand)?;
                if word.chars().any(char::is_whitespace) {
                    return Err(OperandError::new(
                        "must be a single word: has_word splits the claim at spaces, so a value \
                         with whitespace could never match",
                    ));
                }
                Ok(ClaimTest::HasWord(word))
            }
            "equals" => scalar(operand).map(ClaimTest::Equals),
            "one_of" => {
                let Value::Array(items) = operand else {
                    return Err(OperandError::new("expected an array of values"));
                };
                if items.is_empty() {
                    return Err(OperandError::new("must not be empty"));
                }
                items
                    .iter()
                    .enumerate()
                    .map(|(index, item)| {
                        scalar(item).map_err(|error| OperandError {
                            index: Some(index),
                            ..error
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(ClaimTest::OneOf)
            }
            "ends_with" => non_empty_string(operand).map(ClaimTest::EndsWith),
            _ => Err(OperandError::new(format!(
                "unknown operator; expected one of: {}",
                OPERATORS.join(", ")
            ))),
        }
    }

    /// Whether `value` satisfies the test.
    pub fn holds(&self, value: &Value) -> bool {
        match self {
            ClaimTest::Has(expected) => match value {
                Value::Array(items) => items.contains(expected),
                other => other == expected,
            },
            ClaimTest::HasWord(word) => match value {
                Value::String(words) => words.split(' ').any(|w| w == word),
                Value::Array(items) => items.iter().any(|item| item.as_str() == Some(word)),
                _ => false,
            },
            ClaimTest::Equals(expected) => value == expected,
            ClaimTest::OneOf(allowed) => allowed.contains(value),
            ClaimTest::EndsWith(suffix) => value
                .as_str()
                .is_some_and(|text| text.ends_with(suffix.as_str())),
        }
    }
}

impl ClaimCondition {
    /// Whether `claims` satisfy the condition; a missing claim never does.
    pub fn holds(&self, claims: &Map<String, Value>) -> bool {
        claim_at(claims, &self.claim_path).is_some_and(|value| self.test.holds(value))
    }

    /// The OAuth scope this condition requires, if it is one: a word (`has_word`) or element
    /// (`has`) of the `scope` claim, or an element of the `scp` claim.
    pub fn scope(&self) -> Option<&str> {
        let [claim] = self.claim_path.as_slice() else {
            return None;
        };
        if claim != "scope" && claim != "scp" {
            return None;
        }
        match &self.test {
            ClaimTest::HasWord(word) => Some(word),
            ClaimTest::Has(Value::String(word)) => Some(word),
            _ => None,
        }
    }
}

/// Looks a claim up by path (`["realm_access", "roles"]`).
///
/// A member whose name contains dots is found too, so that the dotted spelling works for it:
/// `kubernetes.io.namespace` reads `namespace` inside the Kubernetes claim `kubernetes.io`. At
/// each level the shortest run of segments that names a member (and leads to the rest) wins;
/// only the issuer, who signed the claims, could make two readings differ.
pub fn claim_at<'c>(claims: &'c Map<String, Value>, path: &[String]) -> Option<&'c Value> {
    let (first, rest) = path.split_first()?;
    if let Some(value) = claims.get(first) {
        let found = match rest {
            [] => Some(value),
            _ => value.as_object().and_then(|inner| claim_at(inner, rest)),
        };
        if found.is_some() {
            return found;
        }
    }
    // Rare: a name with dots. Join one more segment at a time.
    let mut name = first.clone();
    for (joined, segment) in rest.iter().enumerate() {
        name.push('.');
        name.push_str(segment);
        let Some(value) = claims.get(&name) else {
            continue;
        };
        let remaining = rest.get(joined + 1..).unwrap_or_default();
        let found = match remaining {
            [] => Some(value),
            _ => value
                .as_object()
                .and_then(|inner| claim_at(inner, remaining)),
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims() -> Map<String, Value> {
        json!({
            "sub": "svc-fraud",
            "email": "alice@example.com",
            "email_verified": true,
            "scope": "openid fraud:predict profile",
            "scp": ["models.read", "models.write"],
            "tier": 2,
            "realm_access": {"roles": ["fraud-predict", "offline_access"]},
            "resource_access": {"kserve-client": {"roles": ["churn-predict"]}},
            "https://example.com/claims.groups": ["ml-team"],
            "nested": {"a.b": {"c": "deep"}}
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn condition(path: &[&str], operator: &str, operand: Value) -> ClaimCondition {
        ClaimCondition {
            claim_path: path.iter().map(|s| s.to_string()).collect(),
            test: ClaimTest::parse(operator, &operand).unwrap(),
        }
    }

    fn holds(path: &[&str], operator: &str, operand: Value) -> bool {
        condition(path, operator, operand).holds(&claims())
    }

    // `has` finds an element of an array claim, or equals a scalar claim.
    // Dotted names: a claim whose name contains dots is reachable by the dotted spelling, as
    // Kubernetes' `kubernetes.io` claim is; the array spelling still reads it exactly.
    #[test]
    fn names_with_dots() {
        let claims = json!({
            "kubernetes.io": {"namespace": "risk",
                              "serviceaccount": {"name": "pipeline", "uid": "u-1"}},
            "https://example.com/roles": ["ml"],
            "a": {"b": 1},
            "a.b": 2
        });
        let claims = claims.as_object().unwrap();
        let at = |dotted: &str| {
            let path: Vec<String> = dotted.split('.').map(str::to_owned).collect();
            claim_at(claims, &path).cloned()
        };
        assert_eq!(at("kubernetes.io.namespace"), Some(json!("risk")));
        assert_eq!(
            at("kubernetes.io.serviceaccount.name"),
            Some(json!("pipeline"))
        );
        assert_eq!(at("https://example.com/roles"), Some(json!(["ml"])));
        assert_eq!(at("kubernetes.io.pod"), None);
        assert_eq!(at("kubernetes"), None);
        // The shortest name that leads somewhere wins.
        assert_eq!(at("a.b"), Some(json!(1)));
        let exact = ["kubernetes.io".to_owned(), "namespace".to_owned()];
        assert_eq!(claim_at(claims, &exact), Some(&json!("risk")));
    }

    #[test]
    fn has() {
        assert!(holds(
            &["realm_access", "roles"],
            "has",
            json!("fraud-predict")
        ));
        assert!(!holds(&["realm_access", "roles"], "has", json!("fraud")));
        assert!(holds(&["sub"], "has", json!("svc-fraud")));
        assert!(!holds(&["sub"], "has", json!("svc")));
        assert!(holds(&["tier"], "has", json!(2)));
    }

    // Dotted paths reach Keycloak's client roles; an array path reaches names with dots.
    #[test]
    fn nested_and_dotted_names() {
        assert!(holds(
            &["resource_access", "kserve-client", "roles"],
            "has",
            json!("churn-predict")
        ));
        assert!(holds(
            &["https://example.com/claims.groups"],
            "has",
            json!("ml-team")
        ));
        assert!(holds(&["nested", "a.b", "c"], "equals", json!("deep")));
    }

    // `has_word` matches whole space-delimited words only, and array elements.
    #[test]
    fn has_word_is_word_exact() {
        assert!(holds(&["scope"], "has_word", json!("fraud:predict")));
        assert!(holds(&["scope"], "has_word", json!("openid")));
        assert!(holds(&["scope"], "has_word", json!("profile")));
        assert!(!holds(&["scope"], "has_word", json!("fraud")));
        assert!(!holds(&["scope"], "has_word", json!("predict")));
        assert!(!holds(&["scope"], "has_word", json!("fraud:predict-all")));
        assert!(holds(&["scp"], "has_word", json!("models.read")));
        assert!(!holds(&["scp"], "has_word", json!("models")));
        assert!(!holds(&["tier"], "has_word", json!("2")));
    }

    // `equals` compares the whole value, type included.
    #[test]
    fn equals() {
        assert!(holds(&["email_verified"], "equals", json!(true)));
        assert!(!holds(&["email_verified"], "equals", json!("true")));
        assert!(holds(&["tier"], "equals", json!(2)));
        assert!(!holds(&["tier"], "equals", json!("2")));
        assert!(!holds(
            &["realm_access", "roles"],
            "equals",
            json!("fraud-predict")
        ));
    }

    // `one_of` accepts a scalar listed among the values, and never an array claim.
    #[test]
    fn one_of() {
        assert!(holds(&["sub"], "one_of", json!(["svc-churn", "svc-fraud"])));
        assert!(!holds(&["sub"], "one_of", json!(["svc-churn"])));
        assert!(!holds(
            &["realm_access", "roles"],
            "one_of",
            json!(["fraud-predict"])
        ));
    }

    // `ends_with` checks string suffixes; non-strings never match.
    #[test]
    fn ends_with() {
        assert!(holds(&["email"], "ends_with", json!("@example.com")));
        assert!(!holds(&["email"], "ends_with", json!("@example.org")));
        assert!(!holds(&["email"], "ends_with", json!("@evil-example.com")));
        assert!(!holds(&["tier"], "ends_with", json!("2")));
    }

    // A missing claim, or a path through a non-object, satisfies no operator.
    #[test]
    fn missing_claim_never_holds() {
        for (operator, operand) in [
            ("has", json!("x")),
            ("has_word", json!("x")),
            ("equals", json!("x")),
            ("one_of", json!(["x"])),
            ("ends_with", json!("x")),
        ] {
            assert!(!holds(&["absent"], operator, operand.clone()));
            assert!(!holds(&["sub", "inner"], operator, operand.clone()));
            assert!(!holds(&["realm_access", "roles", "0"], operator, operand));
        }
    }

    // Unknown operators and unusable operands are refused with a reason.
    #[test]
    fn bad_operands() {
        let error = ClaimTest::parse("contains", &json!("x")).unwrap_err();
        assert!(error
            .message
            .contains("unknown operator; expected one of: has, has_word"));
        for (operator, operand, needle) in [
            (
                "has",
                json!(null),
                "expected a string, a number or a boolean",
            ),
            (
                "has",
                json!(["a"]),
                "expected a string, a number or a boolean",
            ),
            ("has", json!(""), "must not be empty"),
            ("has_word", json!("a b"), "single word"),
            ("has_word", json!(1), "expected a string"),
            ("equals", json!({"a": 1}), "expected a string"),
            ("one_of", json!("a"), "expected an array"),
            ("one_of", json!([]), "must not be empty"),
            ("ends_with", json!(""), "must not be empty"),
        ] {
            let error = ClaimTest::parse(operator, &operand).unwrap_err();
            assert!(error.message.contains(needle), "{operator}: {error:?}");
            assert_eq!(error.index, None);
        }
        let error = ClaimTest::parse("one_of", &json!(["a", null])).unwrap_err();
        assert_eq!(error.index, Some(1));
    }

    // Scope conditions are recognised for the metadata document and the 403 challenge.
    #[test]
    fn scope_of_a_condition() {
        assert_eq!(
            condition(&["scope"], "has_word", json!("fraud:predict")).scope(),
            Some("fraud:predict")
        );
        assert_eq!(
            condition(&["scp"], "has", json!("models.read")).scope(),
            Some("models.read")
        );
        assert_eq!(condition(&["scope"], "equals", json!("a")).scope(), None);
        assert_eq!(condition(&["roles"], "has", json!("a")).scope(), None);
        assert_eq!(
            condition(&["x", "scope"], "has_word", json!("a")).scope(),
            None
        );
    }
}
