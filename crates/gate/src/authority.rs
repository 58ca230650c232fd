//! A task's authority: its identity token and its credential leases, minted and leased when it
//! starts and revoked when it ends — or, if this supervisor dies, by the next one, which
//! revokes what dead supervisors left open before it starts anything.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use remit_identity::{Identity, SystemClock as IdentityClock, TaskIdentityRequest, TaskToken};
use remit_ledger::Ledger;
use remit_types::remit::Remit;
use remit_vault::{Broker, RevokeReason, TaskCredentials, TaskRef, Vault};

use crate::run::RunError;

/// The identity and leases of one task. Dropped without [`Authority::end`] (a start that
/// failed half-way), it revokes everything with reason `task_start_failed`.
pub struct Authority {
    task: String,
    agent: String,
    identity: Arc<Identity>,
    /// The vault, when this home has one or the remit needs it.
    pub vault: Option<Arc<Vault>>,
    broker: Option<Arc<Broker>>,
    leases: Option<Arc<TaskCredentials>>,
    minted: bool,
    ended: bool,
    /// Things that went wrong without stopping the task (a stuck revocation of an earlier
    /// crash), one line each.
    pub notes: Vec<String>,
    /// Tasks whose supervisor died, whose identity tokens were revoked here.
    pub orphans: Vec<String>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("task", &self.task)
            .field("leases", &self.leases.as_ref().map(|l| l.leases.len()))
            .finish_non_exhaustive()
    }
}

/// Whether `remit` grants any credential (a lease per grant).
pub fn grants_credentials(remit: &Remit) -> bool {
    let c = &remit.credentials;
    !remit.network.credentials.is_empty()
        || !c.postgres.is_empty()
        || !c.git.is_empty()
        || !c.github.is_empty()
}

fn refused(e: remit_vault::VaultError) -> RunError {
    match e {
        remit_vault::VaultError::AgentRefused {
            name,
            status,
            reason,
        } => RunError::Agent(name, status, reason),
        other => RunError::Credentials(other.to_string()),
    }
}

impl Authority {
    /// Open the identity store and, when there is one or `remit` needs it, the vault; refuse a
    /// suspended or revoked agent; revoke what crashed supervisors left open.
    pub fn begin(
        home: &Path,
        ledger: &Ledger,
        remit: &Remit,
        agent: &str,
        task: &str,
    ) -> Result<Authority, RunError> {
        let mut notes = Vec::new();
        let needs_vault = grants_credentials(remit) || remit_vault::vault_db_path(home).exists();
        let (vault, broker) = if needs_vault {
            let vault = Arc::new(
                Vault::open_home(home, Arc::new(remit_identity::SystemClock))
                    .map_err(|e| RunError::Credentials(e.to_string()))?,
            );
            vault.admit(agent).map_err(refused)?;
            let broker = Arc::new(Broker::new(Arc::clone(&vault), Arc::new(ledger.clone())));
            match broker.recover() {
                Ok(report) => {
                    for (lease, why) in &report.failed {
                        notes.push(format!(
                            "lease {lease} left open by an earlier crash could not be revoked ({why}); see `remit doctor`"
                        ));
                    }
                    if let Some(e) = report.record_error {
                        notes.push(format!("revocations after a crash were not recorded: {e}"));
                    }
                }
                Err(e) => notes.push(format!(
                    "leases left open by an earlier crash could not be checked: {e}"
                )),
            }
            (Some(vault), Some(broker))
        } else {
            (None, None)
        };
        let identity = Arc::new(
            Identity::open_home(home, Arc::new(IdentityClock))
                .map_err(|e| RunError::Credentials(format!("the identity store: {e}")))?,
        );
        let orphans = match identity.recover_orphans() {
            Ok(tasks) => tasks,
            Err(e) => {
                notes.push(format!(
                    "identity tokens of crashed tasks could not be revoked: {e}"
                ));
                Vec::new()
            }
        };
        Ok(Authority {
            task: task.to_owned(),
            agent: agent.to_owned(),
            identity,
            vault,
            broker,
            leases: None,
            minted: false,
            ended: false,
            notes,
            orphans,
        })
    }

    /// Mint the task's identity token.
    pub fn mint(&mut self, request: &TaskIdentityRequest<'_>) -> Result<TaskToken, RunError> {
        let token = self
            .identity
            .mint(request)
            .map_err(|e| RunError::Credentials(format!("cannot mint the task's identity: {e}")))?;
        self.minted = true;
        Ok(token)
    }

    /// Lease everything `remit` grants (all or nothing). `None` when it grants nothing.
    pub fn lease(
        &mut self,
        remit: &Remit,
        lifetime: Duration,
    ) -> Result<Option<Arc<TaskCredentials>>, RunError> {
        if !grants_credentials(remit) {
            return Ok(None);
        }
        let Some(broker) = &self.broker else {
            return Err(RunError::Credentials("the vault is not open".into()));
        };
        let task = TaskRef {
            task: self.task.clone(),
            agent: self.agent.clone(),
        };
        let leases = broker.issue_for_task(&task, remit, lifetime).map_err(|e| {
            RunError::Credentials(format!("cannot lease the task's credentials: {e}"))
        })?;
        let leases = Arc::new(leases);
        self.leases = Some(Arc::clone(&leases));
        Ok(Some(leases))
    }

    /// The leases, if any.
    pub fn leases(&self) -> Option<&Arc<TaskCredentials>> {
        self.leases.as_ref()
    }

    /// The broker, if the vault is open.
    pub fn broker(&self) -> Option<&Arc<Broker>> {
        self.broker.as_ref()
    }

    /// Revoke the task's leases and identity. Returns what could not be done, one line each
    /// (it stays recorded as pending and is retried by the next supervisor).
    pub fn end(&mut self, reason: RevokeReason) -> Vec<String> {
        if self.ended {
            return Vec::new();
        }
        self.ended = true;
        let mut problems = Vec::new();
        if self.leases.is_some()
            && let Some(broker) = &self.broker
        {
            match broker.revoke_task(&self.task, &reason) {
                Ok(report) => {
                    for (lease, why) in &report.failed {
                        problems.push(format!(
                            "lease {lease} could not be revoked ({why}); it stays open and is retried (see `remit doctor`)"
                        ));
                    }
                    if let Some(e) = report.record_error {
                        problems.push(format!("a revocation was not recorded: {e}"));
                    }
                }
                Err(e) => problems.push(format!("the task's leases could not be revoked: {e}")),
            }
        }
        if self.minted {
            let result = if reason == RevokeReason::TaskEnd {
                // A normal end: if this is lost in a crash, the next supervisor revokes it
                // (the token's owner is gone), so it does not wait for the disk.
                self.identity.end_task(&self.task)
            } else {
                self.identity.revoke_task(&self.task, reason.as_str())
            };
            if let Err(e) = result {
                problems.push(format!("the task's identity could not be revoked: {e}"));
            }
        }
        problems
    }
}

impl Drop for Authority {
    fn drop(&mut self) {
        if !self.ended {
            let _ = self.end(RevokeReason::TaskStartFailed);
        }
    }
}
