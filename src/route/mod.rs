//! Alertmanager's label matchers (`=`, `!=`, `=~`, `!~`) and the route tree that picks receivers.
//!
//! The tree behaves as Alertmanager's: children are tried in order, the first that matches
//! wins unless it says `continue: true`, a node with no matching child is itself the result,
//! and a route without `receiver` inherits its parent's.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use regex::Regex;
use serde::Deserialize;

/// How a matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    NotEq,
    Re,
    NotRe,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::NotEq => "!=",
            Op::Re => "=~",
            Op::NotRe => "!~",
        }
    }
}

/// One `name op "value"` condition on an alert's labels.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: Op,
    pub value: String,
    /// The compiled, anchored regex for `=~` and `!~`.
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

/// Why a matcher did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    #[error("matcher {0:?}: expected `name op value` with op one of = != =~ !~")]
    Syntax(String),
    #[error("matcher {0:?}: invalid label name")]
    LabelName(String),
    #[error("matcher {0:?}: unterminated or badly escaped quoted value")]
    Quote(String),
    #[error("matcher {input:?}: invalid regex: {reason}")]
    Regex { input: String, reason: String },
}

impl Matcher {
    pub fn new(name: &str, op: Op, value: &str) -> Result<Matcher, MatcherError> {
        let regex = match op {
            Op::Re | Op::NotRe => Some(
                regex::RegexBuilder::new(&format!("^(?:{value})$"))
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| MatcherError::Regex {
                        input: format!("{name}{}{value:?}", op.as_str()),
                        // The regex crate's message spans lines; keep the last, which says what.
                        reason: e
                            .to_string()
                            .lines()
                            .last()
                            .unwrap_or("invalid")
                            .trim()
                            .trim_start_matches("error: ")
                            .to_string(),
                    })?,
            ),
            Op::Eq | Op::NotEq => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            regex,
        })
    }

    /// Parses Alertmanager's matcher syntax: `severity="critical"`, `team=~"db|infra"`,
    /// `env!=dev`, `"quoted name"="x"`.
    pub fn parse(input: &str) -> Result<Matcher, MatcherError> {
        let s = input.trim();
        let syntax = || MatcherError::Syntax(input.to_string());
        let (name, rest) = if let Some(q) = s.strip_prefix('"') {
            let (name, used) = unquote(q).ok_or_else(|| MatcherError::Quote(input.to_string()))?;
            (name, &q[used..])
        } else {
            let end = s.find(['=', '!', ' ', '\t']).ok_or_else(syntax)?;
            let name = &s[..end];
            if !is_label_name(name) {
                return Err(MatcherError::LabelName(input.to_string()));
            }
            (name.to_string(), &s[end..])
        };
        if name.is_empty() {
            return Err(MatcherError::LabelName(input.to_string()));
        }
        let rest = rest.trim_start();
        let (op, rest) = if let Some(r) = rest.strip_prefix("=~") {
            (Op::Re, r)
        } else if let Some(r) = rest.strip_prefix("!~") {
            (Op::NotRe, r)
        } else if let Some(r) = rest.strip_prefix("!=") {
            (Op::NotEq, r)
        } else if let Some(r) = rest.strip_prefix('=') {
            (Op::Eq, r)
        } else {
            return Err(syntax());
        };
        let rest = rest.trim();
        let value = if let Some(q) = rest.strip_prefix('"') {
            let (v, used) = unquote(q).ok_or_else(|| MatcherError::Quote(input.to_string()))?;
            if !q[used..].trim().is_empty() {
                return Err(MatcherError::Quote(input.to_string()));
            }
            v
        } else {
            if rest.contains('"') {
                return Err(MatcherError::Quote(input.to_string()));
            }
            rest.to_string()
        };
        Matcher::new(&name, op, &value)
    }

    /// Whether the labels satisfy this matcher; a missing label is the empty string.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.name).map(String::as_str).unwrap_or("");
        match (self.op, &self.regex) {
            (Op::Eq, _) => v == self.value,
            (Op::NotEq, _) => v != self.value,
            (Op::Re, Some(re)) => re.is_match(v),
            (Op::NotRe, Some(re)) => !re.is_match(v),
            // Constructed only through `new`, which always compiles regex ops.
            (Op::Re | Op::NotRe, None) => false,
        }
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Matcher::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Reads a double-quoted string body (after the opening quote) with Go-style escapes; returns
/// the value and the bytes consumed including the closing quote.
fn unquote(s: &str) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, i + 1)),
            '\\' => match chars.next()?.1 {
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                'n' => out.push('\n'),
                't' => out.push('\t'),
                _ => return None,
            },
            c => out.push(c),
        }
    }
    None
}

/// One node of the route tree, as written in the YAML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Receiver for alerts that stop here; inherited from the parent when absent.
    pub receiver: Option<String>,
    /// All must match for the route to match.
    #[serde(default)]
    pub matchers: Vec<Matcher>,
    /// Keep looking at later siblings after this route matched.
    #[serde(default, rename = "continue")]
    pub continue_: bool,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// On-call policy for the groups that stop here; inherited from the parent when absent.
    pub escalation_policy: Option<String>,
}

impl RouteConfig {
    pub(crate) fn validate(
        &self,
        at: &str,
        receivers: &HashSet<String>,
        root: bool,
        report: &mut dyn FnMut(String, String),
    ) {
        if root {
            if self.receiver.is_none() {
                report(
                    format!("{at}.receiver"),
                    "the root route needs a receiver (the default)".into(),
                );
            }
            if !self.matchers.is_empty() {
                report(
                    format!("{at}.matchers"),
                    "the root route must not have matchers".into(),
                );
            }
            if self.continue_ {
                report(
                    format!("{at}.continue"),
                    "the root route cannot have continue".into(),
                );
            }
        }
        if let Some(r) = &self.receiver
            && !receivers.contains(r)
        {
            report(format!("{at}.receiver"), format!("unknown receiver {r:?}"));
        }
        for (i, child) in self.routes.iter().enumerate() {
            child.validate(&format!("{at}.routes[{i}]"), receivers, false, report);
        }
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
    }

    /// The receivers an alert with these labels goes to, in route order, each once.
    pub fn receivers_for(&self, labels: &BTreeMap<String, String>) -> Vec<String> {
        self.targets_for(labels)
            .into_iter()
            .map(|(receiver, _)| receiver)
            .collect()
    }

    /// The receivers an alert with these labels goes to, in route order, each once (where it
    /// is first reached), with the `escalation_policy` in force there (inherited like the
    /// receiver).
    pub fn targets_for(&self, labels: &BTreeMap<String, String>) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        self.walk(
            labels,
            (self.receiver.as_deref().unwrap_or(""), None),
            &mut out,
        );
        let mut seen = HashSet::new();
        out.retain(|(r, _)| seen.insert(r.clone()));
        out
    }

    fn walk(
        &self,
        labels: &BTreeMap<String, String>,
        inherited: (&str, Option<&str>),
        out: &mut Vec<(String, Option<String>)>,
    ) {
        let receiver = self.receiver.as_deref().unwrap_or(inherited.0);
        let policy = self.escalation_policy.as_deref().or(inherited.1);
        let mut matched = false;
        for child in &self.routes {
            if child.matches(labels) {
                matched = true;
                child.walk(labels, (receiver, policy), out);
                if !child.continue_ {
                    break;
                }
            }
        }
        if !matched {
            out.push((receiver.to_string(), policy.map(str::to_string)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_operator_and_quoting() {
        let m = Matcher::parse(r#"severity="critical""#).unwrap();
        assert_eq!(
            (m.name.as_str(), m.op, m.value.as_str()),
            ("severity", Op::Eq, "critical")
        );
        let m = Matcher::parse(r#" team =~ "db|infra" "#).unwrap();
        assert_eq!((m.op, m.value.as_str()), (Op::Re, "db|infra"));
        let m = Matcher::parse("env!=dev").unwrap();
        assert_eq!((m.op, m.value.as_str()), (Op::NotEq, "dev"));
        let m = Matcher::parse(r#"job!~"node.*""#).unwrap();
        assert_eq!(m.op, Op::NotRe);
        let m = Matcher::parse(r#"msg="say \"hi\"\\n""#).unwrap();
        assert_eq!(m.value, "say \"hi\"\\n");
        let m = Matcher::parse(r#""my label"="x""#).unwrap();
        assert_eq!(m.name, "my label");
        let m = Matcher::parse(r#"a="""#).unwrap();
        assert_eq!(m.value, "");
    }

    #[test]
    fn rejects_bad_matchers_with_reasons() {
        assert!(matches!(
            Matcher::parse("severity"),
            Err(MatcherError::Syntax(_))
        ));
        assert!(matches!(
            Matcher::parse("1abc=x"),
            Err(MatcherError::LabelName(_))
        ));
        assert!(matches!(
            Matcher::parse(r#"a="x"#),
            Err(MatcherError::Quote(_))
        ));
        assert!(matches!(
            Matcher::parse(r#"a="x" y"#),
            Err(MatcherError::Quote(_))
        ));
        let e = Matcher::parse(r#"a=~"(""#).unwrap_err().to_string();
        assert!(
            e.starts_with(r#"matcher "a=~\"(\"": invalid regex: "#),
            "{e}"
        );
    }

    #[test]
    fn regexes_are_anchored_and_missing_labels_are_empty() {
        let m = Matcher::parse(r#"team=~"db|infra""#).unwrap();
        assert!(m.matches(&labels(&[("team", "db")])));
        assert!(!m.matches(&labels(&[("team", "dbx")])));
        assert!(!m.matches(&labels(&[("team", "xdb")])));
        let m = Matcher::parse(r#"env!="dev""#).unwrap();
        assert!(m.matches(&labels(&[])));
        let m = Matcher::parse(r#"env="""#).unwrap();
        assert!(m.matches(&labels(&[])));
        let m = Matcher::parse(r#"env!~"dev|test""#).unwrap();
        assert!(m.matches(&labels(&[("env", "prod")])));
        assert!(!m.matches(&labels(&[("env", "dev")])));
    }

    fn tree() -> RouteConfig {
        yaml_serde::from_str(
            r#"
receiver: oncall
routes:
  - matchers: ['severity="critical"']
    receiver: managers
    continue: true
  - matchers: ['team=~"db|storage"', 'env!="dev"']
    receiver: dba
    routes:
      - matchers: ['service="backup"']
        receiver: backup
      - matchers: ['service="replica"']
  - matchers: ['team="web"']
"#,
        )
        .unwrap()
    }

    #[test]
    fn escalation_policy_is_inherited_down_the_tree_like_the_receiver() {
        let t: RouteConfig = yaml_serde::from_str(
            r#"
receiver: oncall
routes:
  - matchers: ['severity="critical"']
    escalation_policy: sre-critical
    continue: true
    routes:
      - matchers: ['team="db"']
        receiver: dba
      - matchers: ['team="web"']
        receiver: web
        escalation_policy: web-policy
  - matchers: ['team="db"']
    receiver: dba-chat
"#,
        )
        .unwrap();
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            t.targets_for(&labels(&[("severity", "critical"), ("team", "db")])),
            [
                ("dba".into(), some("sre-critical")),
                ("dba-chat".into(), None)
            ]
        );
        assert_eq!(
            t.targets_for(&labels(&[("severity", "critical"), ("team", "web")])),
            [("web".into(), some("web-policy"))]
        );
        assert_eq!(
            t.targets_for(&labels(&[("severity", "critical")])),
            [("oncall".into(), some("sre-critical"))]
        );
        assert_eq!(
            t.targets_for(&labels(&[("severity", "warning")])),
            [("oncall".into(), None)]
        );
    }

    #[test]
    fn route_tree_with_continue_inheritance_and_default() {
        let t = tree();
        assert_eq!(t.receivers_for(&labels(&[("alertname", "x")])), ["oncall"]);
        assert_eq!(
            t.receivers_for(&labels(&[("severity", "critical"), ("team", "db")])),
            ["managers", "dba"]
        );
        // As in Alertmanager: a matching `continue` route counts as a match, so the parent's
        // receiver is not added.
        assert_eq!(
            t.receivers_for(&labels(&[("severity", "critical")])),
            ["managers"]
        );
        assert_eq!(
            t.receivers_for(&labels(&[("team", "db"), ("env", "dev")])),
            ["oncall"]
        );
        assert_eq!(
            t.receivers_for(&labels(&[("team", "db"), ("service", "backup")])),
            ["backup"]
        );
        // A child route without a receiver inherits its parent's.
        assert_eq!(
            t.receivers_for(&labels(&[("team", "db"), ("service", "replica")])),
            ["dba"]
        );
        // The root's receiver is inherited by a matching route without one.
        assert_eq!(t.receivers_for(&labels(&[("team", "web")])), ["oncall"]);
    }
}
