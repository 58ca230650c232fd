//! remit-scan: find secrets, keep them out of output, and stop them at the boundary.
//!
//! An agent that can read a workspace can read the credentials left in it, and what it emits
//! (command output, logs, diffs, commits, HTTP bodies) is where they leak. This crate gives
//! remit three tools for that:
//!
//! - a **scanner** ([`Scanner`]): about 240 reviewed rules as data (`rules/*.toml`, compiled in at
//!   build time), an Aho-Corasick keyword prefilter over the whole input, rule regexes only in
//!   bounded windows around keyword hits, checksum and structure validators, and rejection of
//!   placeholders, documentation examples, references, hashes, UUIDs and lockfile digests.
//!   It scans buffers, streams, directory trees (in parallel, honouring `.gitignore` unless
//!   asked not to) and git history. A [`Finding`] holds a location, a [`Fingerprint`] and a
//!   redacted preview — never the secret.
//! - a **redacting writer** ([`RedactingWriter`]): an [`std::io::Write`] adapter that removes
//!   detected secrets and [`KnownSecrets`] from a byte stream, also when a secret is split
//!   across writes, holding back only as many bytes as a secret can be long.
//! - a **known-secret matcher** ([`KnownSecrets`]) for egress DLP: exact values in raw,
//!   base64 (every alignment, standard and URL-safe), URL-encoded, hex and JSON-escaped form.
//!
//! It is **not** a verifier: it never contacts a provider to check whether a credential is
//! live (that would send the secret somewhere). It is not a policy engine either: callers
//! decide what a finding means (refuse to start, redact, deny an egress request).
//!
//! # Example
//!
//! ```
//! use remit_scan::{KnownSecrets, RedactingWriter, Scanner, ScanOptions, Severity};
//!
//! let scanner = Scanner::builtin()?;
//!
//! // A buffer.
//! let findings = scanner.scan_bytes(b"export GITHUB_TOKEN=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\n");
//! assert_eq!(&*findings[0].rule, "github-pat-classic");
//! assert!(!findings[0].preview.contains("C3KCQypnDyzoGQmTr8gbw5XbkwrBJG"));
//!
//! // A workspace, before an agent starts: ignore files do not hide what the agent can read.
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join(".env"), "DB_PASSWORD=Zq8!mK2#vR7pLx\n")?;
//! let report = scanner.scan_paths(&[dir.path()], &ScanOptions::reachable())?;
//! assert_eq!(report.count_at_least(Severity::Medium), 1);
//! let for_the_ledger = report.reachable();
//! assert_eq!(for_the_ledger[0].rule, "generic-env-password");
//!
//! // Output: redact detected and known secrets, even split across writes.
//! let known = KnownSecrets::new(["s3cr3t-value-from-vault"])?;
//! let mut out = RedactingWriter::new(Vec::new(), Some(scanner.clone()), Some(known));
//! use std::io::Write as _;
//! out.write_all(b"connecting with s3cr3t-val")?;
//! out.write_all(b"ue-from-vault\n")?;
//! let shown = String::from_utf8(out.finish()?)?;
//! assert_eq!(shown, "connecting with [REDACTED:known-secret]\n");
//!
//! // Egress DLP: the same value, base64-encoded inside a request body.
//! let known = KnownSecrets::new(["s3cr3t-value-from-vault"])?;
//! assert!(known.find(b"{\"data\":\"czNjcjN0LXZhbHVlLWZyb20tdmF1bHQ=\"}").is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod absorb;
mod engine;
mod finding;
mod git;
mod keyword_dfa;
mod known;
mod redact;
mod rulefile;
mod rules;
mod validate;
mod walk;

pub use engine::Scanner;
pub use finding::{Finding, Fingerprint, ReachableSecret};
pub use git::GitOptions;
pub use known::{Encoding, KnownMatch, KnownSecrets};
pub use redact::RedactingWriter;
pub use rules::{Rule, RuleError, Rules, Severity};
pub use walk::{DEFAULT_MAX_FILE_SIZE, Note, NoteKind, Progress, Report, ScanOptions};

use std::path::PathBuf;

/// Why a scan could not run.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// A path given to scan does not exist or cannot be inspected.
    #[error("cannot scan `{0}`: {1}")]
    Path(PathBuf, std::io::Error),
    /// The keyword automaton could not be built.
    #[error("cannot build the keyword matcher: {0}")]
    Keywords(String),
    /// More rules than the engine indexes.
    #[error("too many rules")]
    TooManyRules,
    /// The known-secret matcher could not be built.
    #[error("cannot build the known-secret matcher: {0}")]
    Known(String),
    /// The history could not be read.
    #[error("git history of `{0}`: {1}")]
    Git(PathBuf, String),
    /// Reading a stream failed.
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
}
