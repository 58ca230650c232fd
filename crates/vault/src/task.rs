//! Everything a task is granted, leased at once when it starts.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use remit_types::network::{CredentialSource, Injection};
use remit_types::remit::Remit;

use crate::backend::git::GitScope;
use crate::backend::github::GithubScope;
use crate::backend::static_secret::StaticScope;
use crate::broker::{Broker, LeaseSpec};
use crate::error::{Result, VaultError};
use crate::lease::{Delivery, Lease, LeaseState, RevokeReason, TaskRef};
use crate::secret::SecretValue;

/// GitHub's own limit on installation tokens.
const GITHUB_MAX: Duration = Duration::from_secs(3600);

/// A credential the egress proxy injects (the task holds a phantom in `env`).
#[derive(Debug)]
pub struct InjectedCredential {
    /// The credential's name.
    pub name: String,
    /// Its lease.
    pub lease: String,
    /// The variable that holds the phantom.
    pub env: Option<String>,
    /// The real value.
    pub value: SecretValue,
    /// Where it goes.
    pub inject: Injection,
}

/// Why a credential may not be used any more.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseEnded {
    /// The credential has no lease in this task.
    #[error("credential `{0}` was not leased to this task")]
    NoLease(String),
    /// The lease's TTL passed.
    #[error("the lease on credential `{0}` has expired; the task may no longer use it")]
    Expired(String),
    /// The lease was revoked.
    #[error("the lease on credential `{0}` was revoked; the task may no longer use it")]
    Revoked(String),
}

/// The leases of one task and what to hand it.
#[derive(Debug)]
pub struct TaskCredentials {
    /// The task.
    pub task: TaskRef,
    /// Every lease, in the order issued.
    pub leases: Vec<Lease>,
    /// Variables to set in the task's environment (connection strings, tokens). Values,
    /// not phantoms: never log them.
    pub env: Vec<(String, SecretValue)>,
    /// Credentials for the egress proxy to inject.
    pub injected: Vec<InjectedCredential>,
    ended: Arc<Mutex<HashSet<String>>>,
}

impl TaskCredentials {
    /// The lease of credential `name`.
    pub fn lease(&self, name: &str) -> Option<&Lease> {
        self.leases.iter().find(|l| l.name == name)
    }

    /// Whether credential `name` may still be used at `now` (the proxy asks before each
    /// injection of a static secret). In memory: no I/O.
    pub fn check(&self, name: &str, now: SystemTime) -> Result<(), LeaseEnded> {
        let lease = self
            .lease(name)
            .ok_or_else(|| LeaseEnded::NoLease(name.to_owned()))?;
        let ended = self
            .ended
            .lock()
            .map(|e| e.contains(&lease.id))
            .unwrap_or(true);
        // Past its TTL it has expired, whether or not the revocation at expiry has run yet.
        if now >= lease.expires {
            return Err(LeaseEnded::Expired(name.to_owned()));
        }
        if ended || lease.state != LeaseState::Open {
            return Err(LeaseEnded::Revoked(name.to_owned()));
        }
        Ok(())
    }

    /// When the first lease expires.
    pub fn next_expiry(&self) -> Option<SystemTime> {
        self.leases.iter().map(|l| l.expires).min()
    }

    /// The lease ids.
    pub fn lease_ids(&self) -> Vec<String> {
        self.leases.iter().map(|l| l.id.clone()).collect()
    }
}

fn source(from: &CredentialSource) -> (&'static str, String) {
    match from {
        CredentialSource::Env(v) => ("env", v.clone()),
        CredentialSource::File(f) => ("file", f.clone()),
        CredentialSource::Vault(s) => ("vault", s.clone()),
    }
}

fn json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| VaultError::Encode(e.to_string()))
}

impl Broker {
    /// Lease everything `remit` grants to `task`, for at most `lifetime` (the task's):
    /// a static lease per `[[network.credential]]`, and a lease per `[credentials.*]`
    /// grant. All or nothing: if one fails, those already issued are revoked.
    pub fn issue_for_task(
        &self,
        task: &TaskRef,
        remit: &Remit,
        lifetime: Duration,
    ) -> Result<TaskCredentials> {
        let credentials = &remit.credentials;
        let default_ttl = credentials
            .ttl
            .map(|s| s.0)
            .unwrap_or(lifetime)
            .min(lifetime);
        let ttl_of = |own: Option<remit_types::size::Span>| {
            own.map(|s| s.0).unwrap_or(default_ttl).min(lifetime)
        };
        let mut specs: Vec<(LeaseSpec, Option<String>, Option<Injection>)> = Vec::new();
        for c in &remit.network.credentials {
            let (kind, from) = source(&c.from);
            let hosts: Vec<String> = c.inject.hosts.iter().map(ToString::to_string).collect();
            specs.push((
                LeaseSpec {
                    name: c.name.clone(),
                    backend: "static".into(),
                    scope: json(&StaticScope {
                        source: kind.into(),
                        from,
                        hosts: hosts.clone(),
                    })?,
                    destination: Some(hosts.join(", ")),
                    delivery: Delivery::Injected,
                    ttl: default_ttl,
                },
                None,
                None,
            ));
        }
        for (name, grant) in &credentials.postgres {
            specs.push((
                LeaseSpec {
                    name: name.clone(),
                    backend: "postgres".into(),
                    scope: json(grant)?,
                    destination: grant.database.clone(),
                    delivery: Delivery::Env,
                    ttl: ttl_of(grant.ttl),
                },
                Some(grant.env_var(name)),
                None,
            ));
        }
        for (name, grant) in &credentials.git {
            let scope = GitScope::of(grant);
            specs.push((
                LeaseSpec {
                    name: name.clone(),
                    backend: "git".into(),
                    destination: Some(scope.repository.clone()),
                    scope: json(&scope)?,
                    delivery: Delivery::Env,
                    ttl: ttl_of(grant.ttl),
                },
                Some(grant.env_var(name)),
                None,
            ));
        }
        for (name, grant) in &credentials.github {
            let scope = GithubScope::of(grant);
            specs.push((
                LeaseSpec {
                    name: name.clone(),
                    backend: "github".into(),
                    destination: Some(match &grant.inject {
                        Some(inject) => inject
                            .hosts
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", "),
                        None => scope.api.clone(),
                    }),
                    scope: json(&scope)?,
                    delivery: if grant.inject.is_some() {
                        Delivery::Injected
                    } else {
                        Delivery::Env
                    },
                    ttl: ttl_of(grant.ttl).min(GITHUB_MAX),
                },
                Some(grant.env_var()),
                grant.inject.clone(),
            ));
        }

        let mut out = TaskCredentials {
            task: task.clone(),
            leases: Vec::new(),
            env: Vec::new(),
            injected: Vec::new(),
            ended: self.ended_set(),
        };
        for (spec, env, inject) in specs {
            match self.issue(task, &spec) {
                Ok(issued) => {
                    let id = issued.lease.id.clone();
                    out.leases.push(issued.lease);
                    match (issued.value, inject) {
                        (Some(value), Some(inject)) => out.injected.push(InjectedCredential {
                            name: spec.name.clone(),
                            lease: id,
                            env,
                            value,
                            inject,
                        }),
                        (Some(value), None) => {
                            if let Some(var) = env {
                                out.env.push((var, value));
                            }
                        }
                        (None, _) => {}
                    }
                }
                Err(e) => {
                    let issued: Vec<String> = out.lease_ids();
                    for id in issued {
                        let _ = self.revoke(&id, &RevokeReason::TaskStartFailed);
                    }
                    return Err(e);
                }
            }
        }
        Ok(out)
    }
}
