//! The rule file format, as written in `rules/*.toml` and in user rule files.
//!
//! This module is compiled twice: into the crate (to load user rule files at run time) and into
//! `build.rs` (to check the built-in rules and turn them into static data, so that start-up
//! parses nothing). It therefore depends on `serde` and `toml` only.

use serde::Deserialize;

/// Names a rule may give in `validator = "…"`. Each is implemented in `validate.rs`.
pub(crate) const VALIDATORS: &[&str] = &[
    "github-crc32",
    "npm-crc32",
    "jwt",
    "pem-body",
    "pypi-macaroon",
    "url-credentials",
    "basic-auth",
    "docker-auth",
    "aws-access-key",
    "gcp-service-account",
    "base64-pem",
];

/// Severities, lowest first.
pub(crate) const SEVERITIES: &[&str] = &["low", "medium", "high", "critical"];

/// The longest keyword a rule may declare: keywords are literal anchors, not patterns.
const MAX_KEYWORD: usize = 64;

/// A whole rule file: `[[rule]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    #[serde(default)]
    pub(crate) rule: Vec<toml::Spanned<RawRule>>,
}

/// One `[[rule]]` table, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    /// Stable identifier, `[a-z0-9-]+`; findings and baselines refer to it.
    pub(crate) id: String,
    /// One line for humans.
    pub(crate) description: String,
    /// `low`, `medium`, `high` (default) or `critical`.
    #[serde(default = "default_severity")]
    pub(crate) severity: String,
    /// Literals (ASCII, matched case-insensitively) of which at least one must occur near a
    /// match; the pattern only runs around their occurrences.
    pub(crate) keywords: Vec<String>,
    /// Regular expression over bytes (ASCII classes). The secret is the group named `secret`,
    /// else group 1, else the whole match.
    pub(crate) pattern: String,
    /// Minimum Shannon entropy of the secret, in bits per byte.
    #[serde(default)]
    pub(crate) entropy: Option<f64>,
    /// A check in code that a candidate must pass (a checksum, a decodable structure…).
    #[serde(default)]
    pub(crate) validator: Option<String>,
    /// Free-form values (passwords in assignments): apply the placeholder, reference, hash
    /// and UUID filters, and yield to a more specific rule on the same bytes.
    #[serde(default)]
    pub(crate) generic: bool,
    /// The match may span lines (PEM blocks); the pattern then sees up to 32 KiB after the
    /// keyword instead of one line.
    #[serde(default)]
    pub(crate) multiline: bool,
    /// Texts that must produce a finding of this rule.
    #[serde(rename = "match", default)]
    pub(crate) matches: Vec<String>,
    /// Texts that must not produce a finding of this rule.
    #[serde(default)]
    pub(crate) not_match: Vec<String>,
}

fn default_severity() -> String {
    "high".to_owned()
}

/// A rule file problem, with the 1-based line it was found on.
#[derive(Debug)]
pub(crate) struct FileError {
    pub(crate) line: usize,
    pub(crate) message: String,
}

/// A parsed rule with the line its table starts on.
#[derive(Debug)]
pub(crate) struct LocatedRule {
    pub(crate) line: usize,
    pub(crate) rule: RawRule,
}

/// 1-based line of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Parse and check a rule file. `check_pattern` compiles a pattern (the crate and `build.rs`
/// use different regex front ends) and returns its error as one line.
pub(crate) fn parse(
    text: &str,
    check_pattern: &dyn Fn(&str) -> Result<(), String>,
) -> Result<Vec<LocatedRule>, FileError> {
    let file: RawFile = toml::from_str(text).map_err(|err| FileError {
        line: err.span().map_or(1, |span| line_of(text, span.start)),
        message: err.message().trim().replace('\n', " "),
    })?;
    let mut out: Vec<LocatedRule> = Vec::with_capacity(file.rule.len());
    for spanned in file.rule {
        let line = line_of(text, spanned.span().start);
        let rule = spanned.into_inner();
        let fail = |message: String| FileError { line, message };
        check_rule(&rule, check_pattern).map_err(fail)?;
        if let Some(prev) = out.iter().find(|r| r.rule.id == rule.id) {
            return Err(FileError {
                line,
                message: format!(
                    "duplicate rule id `{}` (first on line {})",
                    rule.id, prev.line
                ),
            });
        }
        out.push(LocatedRule { line, rule });
    }
    Ok(out)
}

fn check_rule(
    rule: &RawRule,
    check_pattern: &dyn Fn(&str) -> Result<(), String>,
) -> Result<(), String> {
    let id = &rule.id;
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!(
            "rule id `{id}` must be lowercase letters, digits and `-`"
        ));
    }
    if rule.description.trim().is_empty() || rule.description.contains('\n') {
        return Err(format!(
            "rule `{id}`: description must be one non-empty line"
        ));
    }
    if !SEVERITIES.contains(&rule.severity.as_str()) {
        return Err(format!(
            "rule `{id}`: unknown severity `{}` (expected one of {})",
            rule.severity,
            SEVERITIES.join(", ")
        ));
    }
    if rule.keywords.is_empty() {
        return Err(format!("rule `{id}`: at least one keyword is required"));
    }
    for keyword in &rule.keywords {
        if keyword.len() < 3 || keyword.len() > MAX_KEYWORD || !keyword.is_ascii() {
            return Err(format!(
                "rule `{id}`: keyword `{keyword}` must be 3 to {MAX_KEYWORD} ASCII characters"
            ));
        }
    }
    if rule.pattern.is_empty() {
        return Err(format!("rule `{id}`: pattern is empty"));
    }
    check_pattern(&rule.pattern).map_err(|err| format!("rule `{id}`: bad pattern: {err}"))?;
    if let Some(entropy) = rule.entropy
        && !(0.0..=8.0).contains(&entropy)
    {
        return Err(format!(
            "rule `{id}`: entropy {entropy} is outside 0..=8 bits per byte"
        ));
    }
    if let Some(validator) = &rule.validator
        && !VALIDATORS.contains(&validator.as_str())
    {
        return Err(format!(
            "rule `{id}`: unknown validator `{validator}` (known: {})",
            VALIDATORS.join(", ")
        ));
    }
    if rule.matches.is_empty() || rule.not_match.is_empty() {
        return Err(format!(
            "rule `{id}`: needs at least one `match` and one `not_match` example"
        ));
    }
    Ok(())
}
