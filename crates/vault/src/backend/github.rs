//! GitHub App installation tokens, narrowed to the remit.
//!
//! Issue: sign the app's JWT (RS256 with the app's private key from the vault; `iat` 60 s in
//! the past, `exp` 9 minutes ahead, `iss` the app), then
//! `POST {api}/app/installations/{installation}/access_tokens` with the remit's
//! `repositories` and `permissions`. GitHub answers `201` with the token; the answer is
//! checked to be no wider than asked (fail closed: otherwise the token is revoked at once).
//!
//! Revoke: `DELETE {api}/installation/token` authenticated with the token itself (`204`);
//! a `401` means it is already invalid, which is a success. The token is kept, sealed, in the
//! lease's handle until then, so a later process can revoke it after a crash. A crash
//! between GitHub's answer and the handle being stored leaves a token no one can revoke; it
//! expires within GitHub's hour.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use remit_identity::clock::unix_seconds;
use remit_identity::jws::RsaSigner;
use remit_types::credentials::GithubAppGrant;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::http::{self, Response};
use super::{Backend, BackendError, Draft, Handle, Issued, from_handle, from_scope, to_handle};
use crate::lease::Lease;
use crate::secret::SecretValue;
use crate::store::Vault;

const TIMEOUT: Duration = Duration::from_secs(15);
const API_VERSION: &str = "2022-11-28";

/// What a GitHub lease grants (its scope).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubScope {
    /// The vault secret with the app's private key.
    pub key: String,
    /// The app's id or client id.
    pub app: String,
    /// The installation.
    pub installation: u64,
    /// Repository names.
    pub repositories: Vec<String>,
    /// Permissions (`contents` → `read`).
    pub permissions: BTreeMap<String, String>,
    /// The API base URL.
    pub api: String,
}

impl GithubScope {
    /// The scope of a remit grant.
    pub fn of(grant: &GithubAppGrant) -> GithubScope {
        GithubScope {
            key: grant.key.clone(),
            app: grant.app.clone(),
            installation: grant.installation,
            repositories: grant.repositories.clone(),
            permissions: grant
                .permissions
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().to_owned()))
                .collect(),
            api: grant.api_url(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct GhHandle {
    api: String,
    token: Option<String>,
}

impl Drop for GhHandle {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            drop(Zeroizing::new(token));
        }
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: String,
    /// Absent: the token's permissions are unknown, and it is refused.
    #[serde(default)]
    permissions: Option<BTreeMap<String, String>>,
    /// Absent: the token may reach every repository of the installation; refused.
    #[serde(default)]
    repositories: Option<Vec<RepoAnswer>>,
}

impl Drop for TokenAnswer {
    fn drop(&mut self) {
        drop(Zeroizing::new(std::mem::take(&mut self.token)));
    }
}

#[derive(Deserialize)]
struct RepoAnswer {
    name: String,
}

fn level(permission: &str) -> u8 {
    match permission {
        "read" => 1,
        "write" => 2,
        "admin" => 3,
        _ => u8::MAX,
    }
}

/// The GitHub App backend.
#[derive(Debug)]
pub struct GithubBackend {
    vault: Arc<Vault>,
}

impl GithubBackend {
    /// A backend reading app keys from `vault`.
    pub fn new(vault: Arc<Vault>) -> GithubBackend {
        GithubBackend { vault }
    }

    fn delete(&self, api: &str, token: &str) -> Result<(), BackendError> {
        let bearer = Zeroizing::new(format!("Bearer {token}"));
        let response = http::request(
            "DELETE",
            &format!("{api}/installation/token"),
            &[
                ("Accept", "application/vnd.github+json"),
                ("Authorization", &bearer),
                ("X-GitHub-Api-Version", API_VERSION),
            ],
            None,
            TIMEOUT,
        )
        .map_err(|e| BackendError::Unavailable(format!("github: {}", e.0)))?;
        match response.status {
            204 | 401 | 404 => Ok(()),
            s if s >= 500 || s == 429 => Err(BackendError::Unavailable(format!(
                "github answered {s} to the token revocation"
            ))),
            s => Err(BackendError::Refused(format!(
                "github answered {s} to the token revocation"
            ))),
        }
    }
}

fn message(response: &Response) -> String {
    serde_json::from_slice::<serde_json::Value>(&response.body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}

impl Backend for GithubBackend {
    fn kind(&self) -> &'static str {
        "github"
    }

    fn prepare(&self, draft: &Draft<'_>) -> Result<Handle, BackendError> {
        let scope: GithubScope = from_scope(draft.scope)?;
        to_handle(&GhHandle {
            api: scope.api,
            token: None,
        })
    }

    fn issue(&self, draft: &Draft<'_>, handle: &mut Handle) -> Result<Issued, BackendError> {
        let scope: GithubScope = from_scope(draft.scope)?;
        let pem = self
            .vault
            .get(&scope.key)
            .map_err(|e| BackendError::Invalid(e.to_string()))?;
        let signer = RsaSigner::from_pem(pem.expose())
            .map_err(|e| BackendError::Invalid(format!("vault secret `{}`: {e}", scope.key)))?;
        let now = unix_seconds(draft.issued);
        let claims = serde_json::json!({ "iat": now - 60, "exp": now + 540, "iss": scope.app });
        let jwt = Zeroizing::new(
            signer
                .sign(claims.to_string().as_bytes())
                .map_err(|e| BackendError::Invalid(e.to_string()))?,
        );
        let body = serde_json::json!({
            "repositories": scope.repositories,
            "permissions": scope.permissions,
        })
        .to_string();
        let bearer = Zeroizing::new(format!("Bearer {}", &*jwt));
        let response = http::request(
            "POST",
            &format!(
                "{}/app/installations/{}/access_tokens",
                scope.api, scope.installation
            ),
            &[
                ("Accept", "application/vnd.github+json"),
                ("Authorization", &bearer),
                ("X-GitHub-Api-Version", API_VERSION),
                ("Content-Type", "application/json"),
            ],
            Some(body.as_bytes()),
            TIMEOUT,
        )
        .map_err(|e| BackendError::Unavailable(format!("github: {}", e.0)))?;
        if response.status != 201 {
            return Err(BackendError::Refused(format!(
                "github answered {} to the token request: {}",
                response.status,
                message(&response)
            )));
        }
        let answer: TokenAnswer = serde_json::from_slice(&response.body)
            .map_err(|_| BackendError::Refused("github's answer has no token".into()))?;
        // Store the token before anything else can fail, so it can always be revoked.
        *handle = to_handle(&GhHandle {
            api: scope.api.clone(),
            token: Some(answer.token.clone()),
        })?;
        // An answer that does not say what the token can do is not trusted to be narrow.
        let (Some(permissions), Some(_)) = (&answer.permissions, &answer.repositories) else {
            let _ = self.delete(&scope.api, &answer.token);
            return Err(BackendError::Refused(
                "GitHub's answer did not list the token's permissions and repositories, so it may be wider than the remit grants; it was deleted".into(),
            ));
        };
        let wider = permissions.iter().find(|(k, v)| {
            scope
                .permissions
                .get(*k)
                .is_none_or(|asked| level(v) > level(asked))
        });
        let extra_repo = answer.repositories.as_ref().and_then(|repos| {
            repos
                .iter()
                .find(|r| !scope.repositories.contains(&r.name))
                .map(|r| r.name.clone())
        });
        if wider.is_some() || extra_repo.is_some() {
            let _ = self.delete(&scope.api, &answer.token);
            return Err(BackendError::Refused(match (wider, extra_repo) {
                (Some((k, v)), _) => format!(
                    "github granted `{k}: {v}`, more than the remit asks; the token was revoked"
                ),
                (None, Some(r)) => format!(
                    "github granted repository `{r}`, which the remit does not name; the token was revoked"
                ),
                (None, None) => String::new(),
            }));
        }
        Ok(Issued {
            value: Some(SecretValue::new(answer.token.as_bytes().to_vec())),
            detail: Some(format!(
                "installation {} on {}",
                scope.installation,
                scope.repositories.join(", ")
            )),
            lookup: None,
        })
    }

    fn revoke(&self, _lease: &Lease, handle: &[u8]) -> Result<(), BackendError> {
        let h: GhHandle = from_handle(handle)?;
        match &h.token {
            Some(token) => self.delete(&h.api, token),
            None => Ok(()),
        }
    }
}
