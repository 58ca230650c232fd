//! The one error type of the ledger: one variant per failing step, one-line messages.

use std::path::PathBuf;

/// Everything that can go wrong in the ledger.
///
/// Messages are one line, lowercase, with user values in backticks. A verification that
/// finds the ledger altered is [`Error::Verify`]; every other variant means the question
/// could not be answered (an I/O error, a malformed input, a closed writer).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read, written or created.
    #[error("{action} `{path}`: {cause}")]
    Io {
        /// What was being done (`cannot read key file`).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause (in the message, not also as the error's source: a chain printed whole
        /// would say it twice).
        cause: std::io::Error,
    },
    /// The store (SQLite or PostgreSQL) failed or holds something this build cannot read.
    #[error("ledger {store}: {detail}")]
    Store {
        /// Which store (`` `/var/lib/remit/ledger.db` `` or `postgres `db@host``).
        store: String,
        /// What failed, one line.
        detail: String,
    },
    /// A key or key file is malformed, unsafe or does not match.
    #[error("{0}")]
    Key(String),
    /// A signed note or checkpoint is malformed, or its signature does not verify.
    #[error("{0}")]
    Note(String),
    /// A Merkle proof is malformed or does not verify.
    #[error("{0}")]
    Proof(String),
    /// The ledger was altered or is inconsistent; `seq` names the first bad event when known.
    #[error("{0}")]
    Verify(VerifyFailure),
    /// A receipt is malformed or does not verify.
    #[error("{0}")]
    Receipt(String),
    /// An event, task or checkpoint that was asked for is not in the ledger.
    #[error("{0}")]
    NotFound(String),
    /// An event could not be encoded as canonical JSON.
    #[error("cannot encode event as canonical json: {0}")]
    Encode(String),
    /// The writer has been closed: nothing more can be appended.
    #[error("ledger is closed: no more events can be appended")]
    Closed,
    /// The writer failed to make events durable; the ledger refuses further appends.
    #[error("ledger writer failed, events after seq {durable} are not durable: {detail}")]
    WriterFailed {
        /// Events with `seq < durable` are durable.
        durable: u64,
        /// The first failure, one line.
        detail: String,
    },
    /// Invalid argument from the caller (an out-of-range size, an unknown format).
    #[error("{0}")]
    Invalid(String),
}

/// What a verification found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyFailure {
    /// The first event found bad, if the failure can be pinned to one event.
    pub seq: Option<u64>,
    /// What is wrong, one line (without the `event N:` prefix).
    pub reason: String,
}

impl std::fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "ledger altered at event {seq}: {}", self.reason),
            None => write!(f, "ledger verification failed: {}", self.reason),
        }
    }
}

impl Error {
    pub(crate) fn verify(seq: Option<u64>, reason: impl Into<String>) -> Self {
        Self::Verify(VerifyFailure {
            seq,
            reason: reason.into(),
        })
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            cause: source,
        }
    }

    /// `true` when the error says the ledger (or a receipt or proof) failed verification, as
    /// opposed to an error that prevented checking.
    pub fn is_verification_failure(&self) -> bool {
        matches!(
            self,
            Self::Verify(_) | Self::Proof(_) | Self::Receipt(_) | Self::Note(_)
        )
    }
}

/// Flatten a foreign error message onto one line.
pub(crate) fn one_line(message: impl std::fmt::Display) -> String {
    let text = message.to_string();
    let mut out = String::with_capacity(text.len());
    for (i, line) in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(line);
    }
    out
}

/// Crate-wide result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
