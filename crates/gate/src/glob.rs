//! Glob patterns for `filesystem.hidden`: `*` (within one path component), `?`, and `**`
//! (any number of components). Matching is on `/`-separated relative paths.

/// Whether `pattern` matches `path` (both relative, `/`-separated).
pub fn matches(pattern: &str, path: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    let path: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match_components(&pattern, &path)
}

fn match_components(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|skip| match_components(rest, &path[skip..])),
        Some((first, rest)) => match path.split_first() {
            Some((name, path_rest)) => {
                match_name(first.as_bytes(), name.as_bytes()) && match_components(rest, path_rest)
            }
            None => false,
        },
    }
}

fn match_name(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|skip| match_name(rest, &name[skip..])),
        Some((b'?', rest)) => !name.is_empty() && match_name(rest, &name[1..]),
        Some((c, rest)) => name.first() == Some(c) && match_name(rest, &name[1..]),
    }
}

/// A pattern prepared for matching many paths.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    /// For `**/NAME`: the name pattern, which is all a path's last component must match.
    name_only: Option<String>,
}

impl Pattern {
    /// Prepare `pattern`.
    pub fn new(pattern: &str) -> Pattern {
        let name_only = pattern
            .strip_prefix("**/")
            .filter(|rest| !rest.is_empty() && !rest.contains('/') && *rest != "**")
            .map(str::to_owned);
        Pattern {
            text: pattern.to_owned(),
            name_only,
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether it matches `path` (relative, `/`-separated), whose last component is `name`.
    pub fn matches(&self, path: &str, name: &[u8]) -> bool {
        match &self.name_only {
            Some(glob) => match_name(glob.as_bytes(), name),
            None => matches(&self.text, path),
        }
    }
}

/// Whether a pattern has glob characters at all.
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns() {
        assert!(matches("**/.env*", ".env"));
        assert!(matches("**/.env*", "a/b/.env.local"));
        assert!(!matches("**/.env*", "a/env"));
        assert!(matches("secrets/*.pem", "secrets/a.pem"));
        assert!(!matches("secrets/*.pem", "secrets/x/a.pem"));
        assert!(matches("config/**", "config/a/b"));
        assert!(matches("?.key", "a.key"));
        assert!(!matches("?.key", "ab.key"));
    }

    #[test]
    fn prepared_patterns_agree() {
        use super::Pattern;
        for (pattern, path) in [
            ("**/.env*", ".env"),
            ("**/.env*", "a/b/.env.local"),
            ("**/.env*", "a/env"),
            ("**/.env*", "a/.env/b"),
            ("**/*.pem", "x/y.pem"),
            ("secrets/*.pem", "secrets/a.pem"),
            ("secrets/*.pem", "a/secrets/a.pem"),
            ("config/**", "config/a/b"),
        ] {
            let name = path.rsplit('/').next().unwrap_or_default();
            assert_eq!(
                Pattern::new(pattern).matches(path, name.as_bytes()),
                matches(pattern, path),
                "{pattern} {path}"
            );
        }
    }
}
