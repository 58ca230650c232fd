//! Rules: the built-in set compiled from `rules/*.toml`, and user rule files loaded at run time.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use crate::rulefile;
use crate::validate::Validator;

/// How bad a finding of a rule is. Ordered: `Low < Medium < High < Critical`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Test-mode keys, publishable keys, identifiers that need a paired secret.
    Low,
    /// Generic passwords and tokens whose scope is unknown.
    Medium,
    /// Live credentials of a known service.
    High,
    /// Credentials that usually grant broad control: cloud root keys, private keys.
    Critical,
}

impl Severity {
    /// The lowercase name used in rule files and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = RuleError;

    fn from_str(s: &str) -> Result<Self, RuleError> {
        Ok(match s {
            "low" => Self::Low,
            "medium" => Self::Medium,
            "high" => Self::High,
            "critical" => Self::Critical,
            other => return Err(RuleError::Severity(other.to_owned())),
        })
    }
}

/// Why a rule file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// The file could not be read.
    #[error("cannot read rule file `{0}`: {1}")]
    Read(PathBuf, std::io::Error),
    /// A syntax or content error, with the file and 1-based line.
    #[error("{origin}:{line}: {message}")]
    Invalid {
        /// The file name (or other origin) given to the loader.
        origin: String,
        /// 1-based line where the offending rule or value starts.
        line: usize,
        /// What is wrong, one line.
        message: String,
    },
    /// Two rules share an id.
    #[error("duplicate rule id `{0}`")]
    Duplicate(String),
    /// An unknown severity name.
    #[error("unknown severity `{0}` (expected low, medium, high or critical)")]
    Severity(String),
}

/// One detection rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub(crate) id: Arc<str>,
    pub(crate) description: Arc<str>,
    pub(crate) severity: Severity,
    pub(crate) keywords: Vec<Box<str>>,
    pub(crate) pattern: Box<str>,
    pub(crate) entropy: Option<f64>,
    pub(crate) validator: Option<Validator>,
    pub(crate) generic: bool,
    pub(crate) multiline: bool,
    /// `file:line` where the rule is defined.
    pub(crate) origin: Arc<str>,
}

impl Rule {
    /// Stable identifier (`github-pat-classic`).
    pub fn id(&self) -> &str {
        &self.id
    }
    /// One line for humans.
    pub fn description(&self) -> &str {
        &self.description
    }
    /// How bad a finding is.
    pub fn severity(&self) -> Severity {
        self.severity
    }
    /// Prefilter literals (matched case-insensitively).
    pub fn keywords(&self) -> impl Iterator<Item = &str> {
        self.keywords.iter().map(AsRef::as_ref)
    }
    /// The regular expression.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }
    /// `file:line` of the definition.
    pub fn origin(&self) -> &str {
        &self.origin
    }
    /// Whether the rule matches free-form values (and yields to specific rules).
    pub fn is_generic(&self) -> bool {
        self.generic
    }
}

/// The definition `build.rs` generates for each built-in rule.
#[derive(Debug)]
pub(crate) struct BuiltinRule {
    pub(crate) id: &'static str,
    pub(crate) file: &'static str,
    pub(crate) line: usize,
    pub(crate) description: &'static str,
    pub(crate) severity: &'static str,
    pub(crate) keywords: &'static [&'static str],
    pub(crate) pattern: &'static str,
    pub(crate) entropy: Option<f64>,
    pub(crate) validator: Option<&'static str>,
    pub(crate) generic: bool,
    pub(crate) multiline: bool,
}

include!(concat!(env!("OUT_DIR"), "/builtin_rules.rs"));

/// An ordered set of rules with unique ids.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub(crate) rules: Vec<Rule>,
}

impl Rules {
    /// The built-in rules (compiled in from `rules/*.toml`; nothing is parsed at run time).
    pub fn builtin() -> Self {
        let rules = BUILTIN
            .iter()
            .map(|b| Rule {
                id: b.id.into(),
                description: b.description.into(),
                // INVARIANT: build.rs rejected unknown severities and validators.
                severity: b.severity.parse().unwrap_or(Severity::High),
                keywords: b.keywords.iter().map(|k| (*k).into()).collect(),
                pattern: b.pattern.into(),
                entropy: b.entropy,
                validator: b.validator.and_then(Validator::from_name),
                generic: b.generic,
                multiline: b.multiline,
                origin: format!("rules/{}:{}", b.file, b.line).into(),
            })
            .collect();
        Self { rules }
    }

    /// No rules.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Parse a rule file. Every rule's `match` examples must produce a finding of that rule
    /// and its `not_match` examples must not; `origin` names the file in errors.
    pub fn from_toml(origin: &str, text: &str) -> Result<Self, RuleError> {
        let check = |pattern: &str| crate::engine::compile(pattern).map(|_| ());
        let located = rulefile::parse(text, &check).map_err(|err| RuleError::Invalid {
            origin: origin.to_owned(),
            line: err.line,
            message: err.message,
        })?;
        let mut rules = Vec::with_capacity(located.len());
        for item in located {
            let raw = item.rule;
            let invalid = |message: String| RuleError::Invalid {
                origin: origin.to_owned(),
                line: item.line,
                message,
            };
            let rule = Rule {
                id: raw.id.as_str().into(),
                description: raw.description.as_str().into(),
                severity: raw.severity.parse()?,
                keywords: raw.keywords.iter().map(|k| k.as_str().into()).collect(),
                pattern: raw.pattern.as_str().into(),
                entropy: raw.entropy,
                validator: raw.validator.as_deref().and_then(Validator::from_name),
                generic: raw.generic,
                multiline: raw.multiline,
                origin: format!("{origin}:{}", item.line).into(),
            };
            check_examples(&rule, &raw.matches, &raw.not_match).map_err(invalid)?;
            rules.push(rule);
        }
        Ok(Self { rules })
    }

    /// Read and parse a rule file (see [`Rules::from_toml`]).
    pub fn load(path: &Path) -> Result<Self, RuleError> {
        let text =
            std::fs::read_to_string(path).map_err(|err| RuleError::Read(path.to_owned(), err))?;
        Self::from_toml(&path.display().to_string(), &text)
    }

    /// Add `other`'s rules after these; ids must stay unique.
    pub fn extend(&mut self, other: Rules) -> Result<(), RuleError> {
        for rule in other.rules {
            if self.get(&rule.id).is_some() {
                return Err(RuleError::Duplicate(rule.id.to_string()));
            }
            self.rules.push(rule);
        }
        Ok(())
    }

    /// Keep only the rules for which `keep` is true.
    pub fn retain(&mut self, keep: impl FnMut(&Rule) -> bool) {
        self.rules.retain(keep);
    }

    /// The rule with this id.
    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| &*r.id == id)
    }

    /// All rules, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter()
    }

    /// How many rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// No rules at all.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// Run one rule alone over its examples.
fn check_examples(rule: &Rule, matches: &[String], not_match: &[String]) -> Result<(), String> {
    let scanner = crate::Scanner::new(Rules {
        rules: vec![rule.clone()],
    })
    .map_err(|err| err.to_string())?;
    for (i, example) in matches.iter().enumerate() {
        if scanner.scan_bytes(example.as_bytes()).is_empty() {
            return Err(format!(
                "rule `{}`: `match` example {} produces no finding",
                rule.id,
                i + 1
            ));
        }
    }
    for (i, example) in not_match.iter().enumerate() {
        if !scanner.scan_bytes(example.as_bytes()).is_empty() {
            return Err(format!(
                "rule `{}`: `not_match` example {} produces a finding",
                rule.id,
                i + 1
            ));
        }
    }
    Ok(())
}
