//! What a scan reports. A finding never holds the secret: only where it is, a fingerprint
//! and a redacted preview.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use crate::rules::Severity;

/// A stable, non-reversible identifier of a secret under a rule: the first 128 bits of
/// SHA-256 over a domain tag, the rule id and the secret. The same secret found again (in
/// another file, on another line, in another commit) has the same fingerprint, which is what
/// baselines and the ledger key on.
///
/// It is unsalted so that baselines are portable; a low-entropy password can therefore be
/// confirmed by guessing. Treat fingerprints as sensitive metadata, not as public.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint([u8; 16]);

impl Fingerprint {
    /// Fingerprint of `secret` under `rule_id`.
    pub fn new(rule_id: &str, secret: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"remit-scan/v1\0");
        hasher.update(rule_id.as_bytes());
        hasher.update(b"\0");
        hasher.update(secret);
        let digest = hasher.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        Self(out)
    }

    /// Parse the 32-hex-digit form.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl serde::Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A preview that shows what kind of value was found, not the value: a short public prefix
/// of a structured token (`ghp_…`, `AKIA…`) and the length. Generic values show nothing.
pub(crate) fn preview(secret: &[u8], generic: bool) -> String {
    let len = secret.len();
    let shown = if generic || len < 20 {
        0
    } else {
        // Up to 4 leading printable ASCII bytes: vendors' fixed prefixes, never more than
        // a fifth of the value.
        secret
            .iter()
            .take(4.min(len / 5))
            .take_while(|b| b.is_ascii_graphic())
            .count()
    };
    let head = String::from_utf8_lossy(&secret[..shown]);
    format!("{head}…({len} bytes)")
}

/// One detected secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// The rule that matched.
    pub rule: Arc<str>,
    /// The rule's severity.
    pub severity: Severity,
    /// The file, when the input was a file (relative to the scanned root as given).
    pub path: Option<PathBuf>,
    /// The commit that added the line, in history scans.
    pub commit: Option<String>,
    /// 1-based line of the secret's first byte.
    pub line: u64,
    /// 1-based column (in characters) of the secret's first byte.
    pub column: u64,
    /// Byte offset of the secret in the input (in history scans: in the added lines).
    pub start: u64,
    /// Byte offset just past the secret.
    pub end: u64,
    /// Stable fingerprint of rule and secret.
    pub fingerprint: Fingerprint,
    /// Redacted preview; never the whole value.
    pub preview: String,
}

/// What a ledger records about a reachable secret: which rule, where, and which value (as a
/// fingerprint).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct ReachableSecret {
    /// The rule that matched.
    pub rule: String,
    /// Its severity.
    pub severity: Severity,
    /// Where it is (empty for a byte buffer).
    pub path: String,
    /// Which secret.
    pub fingerprint: Fingerprint,
}

impl Finding {
    /// The ledger view of this finding.
    pub fn reachable(&self) -> ReachableSecret {
        ReachableSecret {
            rule: self.rule.to_string(),
            severity: self.severity,
            path: self
                .path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            fingerprint: self.fingerprint,
        }
    }
}
