//! Errors: one variant per failing step, each a one-line message.

use std::io;
use std::path::PathBuf;

/// Why a token was refused. Every message says what was wrong, never what the token holds
/// beyond its public claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts, bad JSON, or fields of the wrong type.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// Longer than any token remit mints.
    #[error("token is longer than {0} bytes")]
    TooLong(usize),
    /// `alg` is not ES256 (or a header JWT-SVID forbids is present).
    #[error("unsupported token header: {0}")]
    Header(String),
    /// The header names no key.
    #[error("the token names no signing key (`kid`)")]
    MissingKid,
    /// No key with that id is trusted (never ours, or retired and pruned).
    #[error("unknown signing key `{0}`")]
    UnknownKey(String),
    /// The signature does not match.
    #[error("bad signature")]
    BadSignature,
    /// `exp` has passed.
    #[error("token expired at {0}")]
    Expired(String),
    /// `iat` is in the future.
    #[error("token issued in the future ({0})")]
    IssuedInFuture(String),
    /// `iss` is not this issuer.
    #[error("token issuer `{got}` is not `{want}`")]
    WrongIssuer {
        /// The token's `iss`.
        got: String,
        /// The expected issuer.
        want: String,
    },
    /// `aud` lacks the expected audience (or is empty).
    #[error("token is not for audience `{0}`")]
    WrongAudience(String),
    /// `sub` is not a task's SPIFFE ID in this trust domain, or disagrees with the claims.
    #[error("bad subject: {0}")]
    BadSubject(String),
    /// The task ended or was killed: remit no longer honours its tokens.
    #[error("token of task `{task}` was revoked ({reason})")]
    Revoked {
        /// The task.
        task: String,
        /// Why.
        reason: String,
    },
}

/// Anything remit-identity can fail at.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A trust domain with characters SPIFFE does not allow.
    #[error("invalid trust domain `{0}`: use lowercase letters, digits, `.`, `-` and `_`")]
    BadTrustDomain(String),
    /// An agent name or task id that cannot be a SPIFFE path segment.
    #[error("invalid {0} `{1}` for a SPIFFE ID: use letters, digits, `.`, `-` and `_`")]
    BadSegment(&'static str, String),
    /// A malformed SPIFFE ID.
    #[error("invalid SPIFFE ID: {0}")]
    BadSpiffeId(String),
    /// An issuer that is not an `https://` (or `http://`) URL without query or fragment.
    #[error("invalid issuer `{0}`: use an `https://` URL without query or fragment")]
    BadIssuer(String),
    /// A directory could not be created.
    #[error("cannot create `{0}`: {1}")]
    CreateDir(PathBuf, io::Error),
    /// A key file could not be read.
    #[error("cannot read key file `{0}`: {1}")]
    ReadKey(PathBuf, io::Error),
    /// A key file could not be written.
    #[error("cannot write key file `{0}`: {1}")]
    WriteKey(PathBuf, io::Error),
    /// A key file readable by group or others.
    #[error("key file `{0}` is readable by others (mode {1:o}); run `chmod 600` on it")]
    KeyFileMode(PathBuf, u32),
    /// A key file whose content is not a remit master key.
    #[error("key file `{0}` is not a remit master key: {1}")]
    BadKeyFile(PathBuf, String),
    /// Sealed data from another master key.
    #[error(
        "sealed with master key `{sealed_with}`, but the key in use is `{in_use}`: wrong key file"
    )]
    WrongMasterKey {
        /// Key id recorded in the sealed data.
        sealed_with: String,
        /// Key id of the key in use.
        in_use: String,
    },
    /// Sealed data that does not authenticate (tampered, truncated, or moved to another name).
    #[error("sealed {0} does not authenticate: it was altered or belongs elsewhere")]
    Unseal(String),
    /// A token lifetime out of range.
    #[error("a task token lives between 1s and 31 days, not `{0}`")]
    BadLifetime(String),
    /// The operating system's random generator failed.
    #[error("cannot read system randomness")]
    Random,
    /// A cryptographic operation failed.
    #[error("{0}")]
    Crypto(String),
    /// The identity store failed.
    #[error("identity store `{0}`: {1}")]
    Store(PathBuf, rusqlite::Error),
    /// A file in the store could not be secured.
    #[error("cannot secure `{0}`: {1}")]
    Permissions(PathBuf, io::Error),
    /// A stored record that does not parse.
    #[error("identity store `{0}`: corrupt record: {1}")]
    Corrupt(PathBuf, String),
    /// A token was refused.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// Results of this crate.
pub type Result<T, E = IdentityError> = std::result::Result<T, E>;
