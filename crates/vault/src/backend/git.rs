//! Git tokens for the local or self-hosted case: a random bearer token per lease, scoped to
//! one repository and the ref patterns a push may update, checked by
//! [`GitTokenVerifier::verify`] (the egress git inspection, or a self-hosted server that
//! asks remit). Only the token's SHA-256 is stored; revoking the lease is revoking the
//! token.
//!
//! The task presents it as `Authorization: Bearer rgt_…`, or as the password of HTTP basic
//! authentication (what git credential helpers send):
//! `git -c http.extraHeader="Authorization: Bearer $WIDGETS_GIT_TOKEN" push`.

use std::sync::Arc;

use base64::Engine as _;
use remit_identity::clock::unix_millis;
use remit_identity::jws::b64url;
use remit_identity::seal::random_bytes;
use remit_types::credentials::GitTokenGrant;
use remit_types::network::glob_match;
use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Backend, BackendError, Draft, Handle, Issued, from_scope, to_handle};
use crate::lease::{COLUMNS, Lease, LeaseState, row_to_lease};
use crate::secret::SecretValue;
use crate::store::Vault;

/// The prefix of every remit git token.
pub const TOKEN_PREFIX: &str = "rgt_";

/// What a git token lease grants (its scope).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitScope {
    /// The repository, normalised ([`normalize_repository`]).
    pub repository: String,
    /// Ref patterns a push may update; empty: fetch only.
    pub push: Vec<String>,
}

impl GitScope {
    /// The scope of a remit grant.
    pub fn of(grant: &GitTokenGrant) -> GitScope {
        GitScope {
            repository: normalize_repository(&grant.repository),
            push: grant.push.iter().map(|p| p.0.clone()).collect(),
        }
    }
}

/// `https://Git.Internal:443/acme/widgets.git/` → `https://git.internal/acme/widgets`.
pub fn normalize_repository(url: &str) -> String {
    let url = url.trim();
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let scheme = scheme.to_ascii_lowercase();
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut host = authority.to_ascii_lowercase();
    let default_port = if scheme == "http" { ":80" } else { ":443" };
    if let Some(stripped) = host.strip_suffix(default_port) {
        host = stripped.to_owned();
    }
    let mut path = path.trim_end_matches('/');
    path = path.strip_suffix(".git").unwrap_or(path);
    format!("{scheme}://{host}/{path}")
}

/// The token in an `Authorization` header value: `Bearer <token>`, or the password (or
/// user) of `Basic <base64>` that is a remit git token.
pub fn token_from_authorization(value: &str) -> Option<String> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, pass) = text.split_once(':')?;
        return [pass, user]
            .into_iter()
            .find(|t| t.starts_with(TOKEN_PREFIX))
            .map(str::to_owned);
    }
    None
}

fn lookup_of(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The git token backend.
#[derive(Debug, Default)]
pub struct GitBackend;

impl Backend for GitBackend {
    fn kind(&self) -> &'static str {
        "git"
    }

    fn prepare(&self, draft: &Draft<'_>) -> Result<Handle, BackendError> {
        let _: GitScope = from_scope(draft.scope)?;
        to_handle(&serde_json::json!({}))
    }

    fn issue(&self, draft: &Draft<'_>, _handle: &mut Handle) -> Result<Issued, BackendError> {
        let scope: GitScope = from_scope(draft.scope)?;
        let mut raw = zeroize::Zeroizing::new([0u8; 32]);
        random_bytes(raw.as_mut()).map_err(|e| BackendError::Invalid(e.to_string()))?;
        let token = zeroize::Zeroizing::new(format!("{TOKEN_PREFIX}{}", b64url(raw.as_ref())));
        Ok(Issued {
            lookup: Some(lookup_of(&token)),
            value: Some(SecretValue::new(token.as_bytes().to_vec())),
            detail: Some(format!(
                "{}{}",
                scope.repository,
                if scope.push.is_empty() {
                    " (fetch)".to_owned()
                } else {
                    format!(" (push {})", scope.push.join(", "))
                }
            )),
        })
    }

    fn revoke(&self, _lease: &Lease, _handle: &[u8]) -> Result<(), BackendError> {
        // The token is valid only while its lease is open: marking it revoked revokes it.
        Ok(())
    }
}

/// What a git request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitAccess<'a> {
    /// Fetch or clone (`git-upload-pack`, info/refs).
    Fetch,
    /// Update these refs (`git-receive-pack`).
    Push(&'a [&'a str]),
}

/// Why a git token was refused. The messages name what the task may do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitTokenError {
    /// Not a token remit issued.
    #[error("not a remit git token")]
    Unknown,
    /// Its lease ended.
    #[error("the git token of lease `{lease}` is no longer valid ({why})")]
    Ended {
        /// The lease.
        lease: String,
        /// `revoked (task_end)`, `expired`, …
        why: String,
    },
    /// Issued for another repository.
    #[error("this git token is for `{token_for}`, not `{asked}`")]
    WrongRepository {
        /// The token's repository.
        token_for: String,
        /// The repository asked for.
        asked: String,
    },
    /// A ref the token may not update.
    #[error("this git token may not push `{reference}`; it may push {allowed}")]
    RefNotAllowed {
        /// The ref.
        reference: String,
        /// What it may push.
        allowed: String,
    },
    /// The store could not be read (fail closed).
    #[error("cannot check the git token: {0}")]
    Store(String),
}

/// A git token that passed: what it allows, for the records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitTokenGrantInfo {
    /// The lease.
    pub lease: String,
    /// The task.
    pub task: String,
    /// The agent.
    pub agent: String,
    /// The credential's name.
    pub name: String,
    /// The scope.
    pub scope: GitScope,
}

/// Checks git tokens against the lease table (a verifier the egress proxy or the gate
/// calls per request).
#[derive(Debug, Clone)]
pub struct GitTokenVerifier {
    vault: Arc<Vault>,
}

impl GitTokenVerifier {
    /// A verifier over `vault`'s leases.
    pub fn new(vault: Arc<Vault>) -> GitTokenVerifier {
        GitTokenVerifier { vault }
    }

    /// Whether `token` may do `access` on `repository` now.
    pub fn verify(
        &self,
        token: &str,
        repository: &str,
        access: GitAccess<'_>,
    ) -> Result<GitTokenGrantInfo, GitTokenError> {
        if !token.starts_with(TOKEN_PREFIX) || token.len() > 128 {
            return Err(GitTokenError::Unknown);
        }
        let lease: Option<Lease> = self
            .vault
            .db()
            .query_row(
                &format!("SELECT {COLUMNS} FROM leases WHERE lookup = ?1 AND backend = 'git'"),
                [lookup_of(token)],
                row_to_lease,
            )
            .optional()
            .map_err(|e| GitTokenError::Store(e.to_string()))?;
        let lease = lease.ok_or(GitTokenError::Unknown)?;
        let now = self.vault.clock().now();
        if lease.state != LeaseState::Open || lease.revoke_reason.is_some() {
            return Err(GitTokenError::Ended {
                why: format!(
                    "revoked ({})",
                    lease
                        .revoke_reason
                        .as_deref()
                        .unwrap_or("issue did not finish")
                ),
                lease: lease.id,
            });
        }
        if unix_millis(now) >= unix_millis(lease.expires) {
            return Err(GitTokenError::Ended {
                lease: lease.id,
                why: "expired".into(),
            });
        }
        let scope: GitScope = serde_json::from_value(lease.scope.clone())
            .map_err(|e| GitTokenError::Store(e.to_string()))?;
        let asked = normalize_repository(repository);
        if asked != scope.repository {
            return Err(GitTokenError::WrongRepository {
                token_for: scope.repository,
                asked,
            });
        }
        if let GitAccess::Push(refs) = access {
            for reference in refs {
                if !scope.push.iter().any(|p| glob_match(p, reference)) {
                    return Err(GitTokenError::RefNotAllowed {
                        reference: (*reference).to_owned(),
                        allowed: if scope.push.is_empty() {
                            "nothing (fetch only)".into()
                        } else {
                            scope
                                .push
                                .iter()
                                .map(|p| format!("`{p}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        },
                    });
                }
            }
        }
        Ok(GitTokenGrantInfo {
            lease: lease.id,
            task: lease.task,
            agent: lease.agent,
            name: lease.name,
            scope,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_and_headers() {
        assert_eq!(
            normalize_repository("HTTPS://Git.Internal:443/acme/widgets.git/"),
            "https://git.internal/acme/widgets"
        );
        assert_eq!(
            normalize_repository("http://h:8080/a/b"),
            "http://h:8080/a/b"
        );
        assert_eq!(
            token_from_authorization("Bearer rgt_abc").as_deref(),
            Some("rgt_abc")
        );
        let basic = base64::engine::general_purpose::STANDARD.encode("x-token:rgt_xyz");
        assert_eq!(
            token_from_authorization(&format!("Basic {basic}")).as_deref(),
            Some("rgt_xyz")
        );
        assert_eq!(token_from_authorization("Basic !!"), None);
    }
}
