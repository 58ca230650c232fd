//! The broker: issues leases through backends, records them, and revokes them — at task
//! end, at expiry, on kill, on agent suspension or revocation, and after a crash.
//!
//! The lease table is the source of truth and is written *before* anything exists outside
//! it: a lease is stored `issuing` (with its sealed revocation handle and its owner, this
//! process) before the backend creates the credential, and asked to be revoked (its
//! `revoke_reason` set) before the backend is told. A revocation that fails keeps the lease
//! open with the error and a next attempt time; [`Broker::stuck`] and `remit doctor` list
//! it, and [`Broker::retry_pending`] / [`Broker::recover`] try again. Nothing is dropped
//! silently.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use remit_identity::ProcessIdentity;
use remit_identity::clock::{Clock, from_unix_millis, unix_millis};
use remit_identity::seal::random_bytes;
use remit_types::event::{CredentialIssued, CredentialRevoked, EventBody, NewEvent, Violation};
use rusqlite::{TransactionBehavior, params};

use crate::backend::git::GitBackend;
use crate::backend::github::GithubBackend;
use crate::backend::postgres::PostgresBackend;
use crate::backend::static_secret::StaticBackend;
use crate::backend::{Backend, BackendError, Draft, Handle};
use crate::error::{Result, VaultError};
use crate::lease::{COLUMNS, Delivery, Lease, LeaseState, RevokeReason, TaskRef, row_to_lease};
use crate::recorder::LeaseRecorder;
use crate::secret::SecretValue;
use crate::store::{Vault, valid_name};

/// How revocation retries a backend that is unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts within one call (at least 1).
    pub attempts: u32,
    /// Wait after the first failure; doubled after each.
    pub first_delay: Duration,
    /// Longest wait between attempts.
    pub max_delay: Duration,
    /// When a lease whose attempts all failed is due again ([`Broker::retry_pending`]).
    pub later: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, 100 ms doubling to at most 2 s (about 1.5 s in all), again after 30 s.
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            later: Duration::from_secs(30),
        }
    }
}

/// What to lease.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseSpec {
    /// The credential's name in the remit.
    pub name: String,
    /// The backend kind.
    pub backend: String,
    /// The backend's grant, as JSON (stored; never a secret).
    pub scope: serde_json::Value,
    /// Where it may be used (hosts), if bound.
    pub destination: Option<String>,
    /// How the task gets it.
    pub delivery: Delivery,
    /// How long it lives.
    pub ttl: Duration,
}

/// A lease just issued, with its value (if the backend hands one out).
#[derive(Debug)]
pub struct IssuedLease {
    /// The lease.
    pub lease: Lease,
    /// The credential (`None` for static secrets, injected from their own source).
    pub value: Option<SecretValue>,
}

/// What a revocation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevokeReport {
    /// Leases revoked by this call.
    pub revoked: Vec<String>,
    /// Leases whose revocation failed (lease id, error): still open, retried later,
    /// listed by [`Broker::stuck`].
    pub failed: Vec<(String, String)>,
    /// The ledger could not record some of it (the revocations themselves happened).
    pub record_error: Option<String>,
}

impl RevokeReport {
    /// Whether everything asked for was revoked and recorded.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty() && self.record_error.is_none()
    }

    fn merge(&mut self, other: RevokeReport) {
        self.revoked.extend(other.revoked);
        self.failed.extend(other.failed);
        if self.record_error.is_none() {
            self.record_error = other.record_error;
        }
    }
}

/// Issues and revokes leases. One per supervisor process; it is `Sync`.
pub struct Broker {
    vault: Arc<Vault>,
    backends: BTreeMap<String, Arc<dyn Backend>>,
    recorder: Arc<dyn LeaseRecorder>,
    clock: Arc<dyn Clock>,
    owner: ProcessIdentity,
    retry: RetryPolicy,
    ended: Arc<Mutex<HashSet<String>>>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("backends", &self.backends.keys().collect::<Vec<_>>())
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

fn new_id() -> Result<String> {
    let mut raw = [0u8; 8];
    random_bytes(&mut raw)?;
    Ok(format!(
        "lease-{}",
        raw.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

impl Broker {
    /// A broker over `vault` with the standard backends (`static`, `postgres`, `git`,
    /// `github`), recording in `recorder`, owned by this process.
    pub fn new(vault: Arc<Vault>, recorder: Arc<dyn LeaseRecorder>) -> Broker {
        let clock = Arc::clone(vault.clock());
        let mut broker = Broker {
            vault: Arc::clone(&vault),
            backends: BTreeMap::new(),
            recorder,
            clock,
            owner: ProcessIdentity::current(),
            retry: RetryPolicy::default(),
            ended: Arc::new(Mutex::new(HashSet::new())),
        };
        broker.register(Arc::new(StaticBackend));
        broker.register(Arc::new(PostgresBackend::new(Arc::clone(&vault))));
        broker.register(Arc::new(GitBackend));
        broker.register(Arc::new(GithubBackend::new(vault)));
        broker
    }

    /// Add (or replace) a backend.
    pub fn register(&mut self, backend: Arc<dyn Backend>) {
        self.backends.insert(backend.kind().to_owned(), backend);
    }

    /// Use another retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Broker {
        self.retry = RetryPolicy {
            attempts: retry.attempts.max(1),
            ..retry
        };
        self
    }

    /// The vault.
    pub fn vault(&self) -> &Arc<Vault> {
        &self.vault
    }

    pub(crate) fn ended_set(&self) -> Arc<Mutex<HashSet<String>>> {
        Arc::clone(&self.ended)
    }

    fn mark_ended(&self, ids: impl IntoIterator<Item = String>) {
        if let Ok(mut ended) = self.ended.lock() {
            ended.extend(ids);
        }
    }

    /// Issue a lease for `task`. On success the lease is open, recorded durably in the
    /// ledger, and its value (if any) is the caller's to hand to the task. On failure
    /// nothing stays valid: whatever the backend made is revoked.
    pub fn issue(&self, task: &TaskRef, spec: &LeaseSpec) -> Result<IssuedLease> {
        if !valid_name(&spec.name) {
            return Err(VaultError::BadName(spec.name.clone()));
        }
        if spec.ttl.is_zero() {
            return Err(VaultError::BadTtl(spec.name.clone()));
        }
        let backend = self
            .backends
            .get(&spec.backend)
            .ok_or_else(|| VaultError::NoBackend(spec.backend.clone()))?;
        let issue_err = |error: BackendError| VaultError::Issue {
            name: spec.name.clone(),
            backend: spec.backend.clone(),
            error,
        };
        let id = new_id()?;
        let issued = from_unix_millis(unix_millis(self.clock.now()));
        let expires = issued.checked_add(spec.ttl).unwrap_or(issued);
        let draft = Draft {
            id: &id,
            task,
            name: &spec.name,
            scope: &spec.scope,
            issued,
            expires,
        };
        let mut handle = backend.prepare(&draft).map_err(issue_err)?;
        let prepared = handle.clone();
        let sealed = self.vault.seal_handle(&id, &handle)?;
        let scope_text = spec.scope.to_string();
        {
            let conn = self.vault.db();
            conn.execute(
                "INSERT INTO leases (id, task, agent, name, backend, scope, destination, delivery,
                     issued, expires, state, handle, owner_pid, owner_start, owner_boot)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'issuing', ?11, ?12, ?13, ?14)",
                params![
                    id,
                    task.task,
                    task.agent,
                    spec.name,
                    spec.backend,
                    scope_text,
                    spec.destination,
                    spec.delivery.as_str(),
                    unix_millis(issued),
                    unix_millis(expires),
                    sealed,
                    self.owner.pid,
                    self.owner.start as i64,
                    self.owner.boot
                ],
            )
            .map_err(|e| self.vault.err(e))?;
        }
        let outcome = match backend.issue(&draft, &mut handle) {
            Ok(outcome) => outcome,
            Err(e) => {
                // It may have made something before failing: take it back (or leave it
                // pending, reported, for the retries).
                if handle != prepared {
                    let _ = self.store_handle(&id, &handle);
                }
                self.abandon(&id);
                return Err(issue_err(e));
            }
        };
        // A handle that grew (a token that revokes itself) is durable before anything
        // else can fail.
        let store = if handle != prepared {
            self.store_handle(&id, &handle)
        } else {
            Ok(())
        };
        let event = NewEvent::new(
            task.task.clone(),
            task.agent.clone(),
            CredentialIssued {
                lease: id.clone(),
                name: spec.name.clone(),
                destination: spec.destination.clone(),
                delivery: spec.delivery.as_str().to_owned(),
                expires: remit_ledger::clock::format_time(expires),
                effect_id: None,
            },
        );
        if let Err(e) = store.and_then(|()| {
            self.recorder
                .record(vec![event])
                .map_err(|e| VaultError::Record(id.clone(), e))
        }) {
            self.abandon(&id);
            return Err(e);
        }
        {
            // Not fsynced on its own: were it lost with the machine, the lease would stay
            // `issuing` under a dead owner, and recovery would revoke it (fail closed).
            let conn = self.vault.db();
            let result = relaxed(&conn, |conn| {
                // Only a lease no one has begun to revoke: a revocation that started before
                // the backend made anything may have found nothing to take back.
                conn.execute(
                    "UPDATE leases SET state = 'open', lookup = ?2, detail = ?3
                     WHERE id = ?1 AND state = 'issuing' AND revoke_reason IS NULL",
                    params![id, outcome.lookup, outcome.detail],
                )
            });
            match result {
                Err(e) => {
                    drop(conn);
                    self.abandon(&id);
                    return Err(self.vault.err(e));
                }
                Ok(0) => {
                    // Being revoked, or revoked (its agent suspended or revoked, by another
                    // process perhaps), since before the backend made anything: that
                    // revocation may have found nothing, and forgets the handle it read. Store
                    // the one in hand (sealed anew, so a revocation still under way no longer
                    // finds the handle it read, and leaves the lease to this one) and open the
                    // lease again, so what was made is revoked (or stays open, retried, if
                    // that fails); hand nothing out.
                    drop(conn);
                    let reopened = self.vault.seal_handle(&id, &handle).and_then(|sealed| {
                        self.vault
                            .db()
                            .execute(
                                "UPDATE leases SET state = 'open', handle = ?2, revoked = NULL,
                                     revoke_reason = COALESCE(revoke_reason, ?3)
                                 WHERE id = ?1",
                                params![id, sealed, RevokeReason::TaskStartFailed.as_str()],
                            )
                            .map_err(|e| self.vault.err(e))
                    });
                    if reopened.is_ok()
                        && let Ok(lease) = self.lease(&id)
                    {
                        let _ =
                            self.revoke_leases(vec![lease], &RevokeReason::TaskStartFailed, true);
                    }
                    return Err(VaultError::RevokedWhileIssuing(id));
                }
                Ok(_) => {}
            }
        }
        let lease = self.lease(&id)?;
        Ok(IssuedLease {
            lease,
            value: outcome.value,
        })
    }

    fn store_handle(&self, id: &str, handle: &Handle) -> Result<()> {
        let sealed = self.vault.seal_handle(id, handle)?;
        self.vault
            .db()
            .execute(
                "UPDATE leases SET handle = ?2 WHERE id = ?1",
                params![id, sealed],
            )
            .map_err(|e| self.vault.err(e))?;
        Ok(())
    }

    /// Revoke a lease that failed to issue, without recording it as issued.
    fn abandon(&self, id: &str) {
        if let Ok(lease) = self.lease(id) {
            let _ = self.revoke_leases(vec![lease], &RevokeReason::TaskStartFailed, false);
        }
    }

    /// Read the state of leases `ids` from the vault's database and count as ended those
    /// that are no longer open (revoked by another process, `remit agent suspend` say), so the
    /// proxy stops injecting them ([`crate::TaskCredentials::check`]). A lease that cannot be
    /// read counts as ended: a check that errors is a refusal. Returns the ids newly ended.
    pub fn refresh_ended(&self, ids: &[String]) -> Vec<String> {
        let mut newly = Vec::new();
        for id in ids {
            let open = matches!(self.lease(id), Ok(lease) if lease.state == LeaseState::Open);
            let known = self.ended.lock().map(|e| e.contains(id)).unwrap_or(true);
            if !open && !known {
                newly.push(id.clone());
            }
        }
        if !newly.is_empty() {
            self.mark_ended(newly.clone());
        }
        newly
    }

    /// One lease.
    pub fn lease(&self, id: &str) -> Result<Lease> {
        self.query(
            &format!("SELECT {COLUMNS} FROM leases WHERE id = ?1"),
            &[&id],
        )?
        .into_iter()
        .next()
        .ok_or_else(|| VaultError::NoLease(id.to_owned()))
    }

    fn query(&self, sql: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<Lease>> {
        let conn = self.vault.db();
        let mut stmt = conn.prepare_cached(sql).map_err(|e| self.vault.err(e))?;
        let rows = stmt
            .query_map(args, row_to_lease)
            .map_err(|e| self.vault.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.vault.err(e))
    }

    /// Leases of `task` (all states).
    pub fn task_leases(&self, task: &str) -> Result<Vec<Lease>> {
        self.query(
            &format!("SELECT {COLUMNS} FROM leases WHERE task = ?1 ORDER BY issued, rowid"),
            &[&task],
        )
    }

    /// Leases not yet revoked (of `agent`, or of everyone).
    pub fn live_leases(&self, agent: Option<&str>) -> Result<Vec<Lease>> {
        self.query(
            &format!(
                "SELECT {COLUMNS} FROM leases WHERE state != 'revoked'
                 AND (?1 IS NULL OR agent = ?1) ORDER BY issued, rowid"
            ),
            &[&agent],
        )
    }

    /// Leases that need a human's attention: revocations that keep failing, leases of a
    /// dead supervisor not yet recovered, leases open past their expiry.
    pub fn stuck(&self) -> Result<Vec<Lease>> {
        stuck_in(&self.live_leases(None)?, self.clock.now())
    }

    /// When the next open lease of `task` expires (the supervisor wakes then and calls
    /// [`Broker::revoke_expired`]).
    pub fn next_expiry(&self, task: &str) -> Result<Option<SystemTime>> {
        let conn = self.vault.db();
        let at: Option<i64> = conn
            .query_row(
                "SELECT MIN(expires) FROM leases WHERE task = ?1 AND state = 'open'",
                [task],
                |r| r.get(0),
            )
            .map_err(|e| self.vault.err(e))?;
        Ok(at.map(from_unix_millis))
    }

    /// Revoke one lease; `false` when it was already revoked.
    pub fn revoke(&self, id: &str, reason: &RevokeReason) -> Result<bool> {
        let lease = self.lease(id)?;
        if lease.state == LeaseState::Revoked {
            return Ok(false);
        }
        let report = self.revoke_leases(vec![lease], reason, true);
        match report.failed.first() {
            Some((_, e)) => Err(VaultError::Revoke(id.to_owned(), e.clone())),
            None => Ok(!report.revoked.is_empty()),
        }
    }

    /// Revoke every lease of `task` (task end: [`RevokeReason::TaskEnd`]; kill:
    /// [`RevokeReason::Killed`]).
    pub fn revoke_task(&self, task: &str, reason: &RevokeReason) -> Result<RevokeReport> {
        let leases = self.query(
            &format!(
                "SELECT {COLUMNS} FROM leases WHERE task = ?1 AND state != 'revoked' ORDER BY rowid"
            ),
            &[&task],
        )?;
        Ok(self.revoke_leases(leases, reason, true))
    }

    /// Revoke every lease of every task of `agent` at once (suspension, revocation).
    pub fn revoke_agent(&self, agent: &str, reason: &RevokeReason) -> Result<RevokeReport> {
        let leases = self.live_leases(Some(agent))?;
        Ok(self.revoke_leases(leases, reason, true))
    }

    /// Revoke every open lease whose TTL has passed (any owner's).
    pub fn revoke_expired(&self) -> Result<RevokeReport> {
        let now = unix_millis(self.clock.now());
        let leases = self.query(
            &format!(
                "SELECT {COLUMNS} FROM leases WHERE state = 'open' AND expires <= ?1 ORDER BY rowid"
            ),
            &[&now],
        )?;
        Ok(self.revoke_leases(leases, &RevokeReason::Expired, true))
    }

    /// Try again the revocations that failed and are due.
    pub fn retry_pending(&self) -> Result<RevokeReport> {
        self.retry_pending_in(None)
    }

    /// [`Broker::retry_pending`] for the leases of `task` alone: its supervisor calls it while
    /// the task runs, so a revocation that failed then (at a lease's TTL, or asked by another
    /// process) is tried again within the task, not only at its end.
    pub fn retry_pending_of(&self, task: &str) -> Result<RevokeReport> {
        self.retry_pending_in(Some(task))
    }

    fn retry_pending_in(&self, task: Option<&str>) -> Result<RevokeReport> {
        let now = unix_millis(self.clock.now());
        let leases = self.query(
            &format!(
                "SELECT {COLUMNS} FROM leases WHERE state != 'revoked' AND revoke_reason IS NOT NULL
                 AND (next_attempt IS NULL OR next_attempt <= ?1) AND (?2 IS NULL OR task = ?2)
                 ORDER BY rowid"
            ),
            &[&now, &task],
        )?;
        let mut report = RevokeReport::default();
        let mut by_reason: BTreeMap<String, Vec<Lease>> = BTreeMap::new();
        for lease in leases {
            by_reason
                .entry(lease.revoke_reason.clone().unwrap_or_default())
                .or_default()
                .push(lease);
        }
        for (reason, leases) in by_reason {
            report.merge(self.revoke_leases_as(leases, &reason, true));
        }
        Ok(report)
    }

    /// Crash recovery; call it when a supervisor starts, before it accepts work. Revokes
    /// every lease whose owning supervisor is dead (`recovered_after_crash`), every open
    /// lease past its TTL (`expired`), and retries pending revocations that are due.
    pub fn recover(&self) -> Result<RevokeReport> {
        let now = self.clock.now();
        let mut orphans = Vec::new();
        let mut expired = Vec::new();
        for lease in self.live_leases(None)? {
            if lease.revoke_reason.is_some() {
                continue; // retry_pending below
            }
            if !lease.owner.is_alive() {
                orphans.push(lease);
            } else if lease.state == LeaseState::Open && now >= lease.expires {
                expired.push(lease);
            }
        }
        let mut report = self.revoke_leases(orphans, &RevokeReason::RecoveredAfterCrash, true);
        report.merge(self.revoke_leases(expired, &RevokeReason::Expired, true));
        report.merge(self.retry_pending()?);
        Ok(report)
    }

    fn revoke_leases(
        &self,
        leases: Vec<Lease>,
        reason: &RevokeReason,
        record: bool,
    ) -> RevokeReport {
        self.revoke_leases_as(leases, reason.as_str(), record)
    }

    fn revoke_leases_as(&self, leases: Vec<Lease>, reason: &str, record: bool) -> RevokeReport {
        let mut report = RevokeReport::default();
        if leases.is_empty() {
            return report;
        }
        let now = unix_millis(self.clock.now());
        self.mark_ended(leases.iter().map(|l| l.id.clone()));
        // 1. The intent: from now on the lease is being revoked, whatever happens. Not
        // fsynced on its own (the outcome below is): lost with the machine, the lease is
        // still open under a dead owner, and recovery revokes it again (idempotent).
        let handles: Vec<Option<Vec<u8>>> = {
            let mut conn = self.vault.db();
            let result = relaxed_mut(&mut conn, |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mut handles = Vec::with_capacity(leases.len());
                {
                    let mut mark = tx.prepare_cached(
                        "UPDATE leases SET revoke_reason = COALESCE(revoke_reason, ?2),
                             revoke_requested = COALESCE(revoke_requested, ?3)
                         WHERE id = ?1 AND state != 'revoked'",
                    )?;
                    let mut get = tx.prepare_cached("SELECT handle FROM leases WHERE id = ?1")?;
                    for lease in &leases {
                        mark.execute(params![lease.id, reason, now])?;
                        handles
                            .push(get.query_row([&lease.id], |r| r.get::<_, Option<Vec<u8>>>(0))?);
                    }
                }
                tx.commit()?;
                Ok::<_, rusqlite::Error>(handles)
            });
            match result {
                Ok(h) => h,
                Err(e) => {
                    let error = format!("cannot mark for revocation: {}", self.vault.err(e));
                    report.failed = leases
                        .iter()
                        .map(|l| (l.id.clone(), error.clone()))
                        .collect();
                    return report;
                }
            }
        };
        // 2. The backends, grouped, with retries.
        let mut opened: Vec<Option<SecretValue>> = Vec::with_capacity(leases.len());
        let mut errors: Vec<Option<String>> = vec![None; leases.len()];
        for (i, (lease, sealed)) in leases.iter().zip(&handles).enumerate() {
            match sealed {
                Some(sealed) => match self.vault.open_handle(&lease.id, sealed) {
                    Ok(h) => opened.push(Some(h)),
                    Err(e) => {
                        errors[i] = Some(e.to_string());
                        opened.push(None);
                    }
                },
                None => opened.push(Some(SecretValue::new(b"{}".to_vec()))),
            }
        }
        let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, lease) in leases.iter().enumerate() {
            if errors[i].is_none() {
                groups.entry(lease.backend.as_str()).or_default().push(i);
            }
        }
        let mut done = vec![false; leases.len()];
        for (kind, members) in groups {
            let Some(backend) = self.backends.get(kind) else {
                for i in members {
                    errors[i] = Some(format!("no credential backend `{kind}` is registered"));
                }
                continue;
            };
            let mut pending = members;
            let mut delay = self.retry.first_delay;
            for attempt in 0..self.retry.attempts {
                let items: Vec<(&Lease, &[u8])> = pending
                    .iter()
                    .filter_map(|&i| opened[i].as_ref().map(|h| (&leases[i], h.expose())))
                    .collect();
                let results = backend.revoke_many(&items);
                let mut again = Vec::new();
                for (&i, result) in pending.iter().zip(results) {
                    match result {
                        Ok(()) => {
                            done[i] = true;
                            errors[i] = None;
                        }
                        Err(e @ BackendError::Unavailable(_)) => {
                            errors[i] = Some(e.to_string());
                            again.push(i);
                        }
                        Err(e) => errors[i] = Some(e.to_string()),
                    }
                }
                if again.is_empty() || attempt + 1 == self.retry.attempts {
                    break;
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(self.retry.max_delay);
                pending = again;
            }
        }
        // 3. What succeeded is revoked (and its handle forgotten); what failed stays open.
        // The durable record of a revocation is the ledger's (step 4); this row, lost with
        // the machine, would make recovery revoke again (idempotent) and record it twice.
        let later =
            now.saturating_add(i64::try_from(self.retry.later.as_millis()).unwrap_or(i64::MAX));
        let mut changed: Vec<&Lease> = Vec::new();
        let mut failed: Vec<(&Lease, String)> = Vec::new();
        {
            let mut conn = self.vault.db();
            let result = relaxed_mut(&mut conn, |conn| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                {
                    // Only if the handle is still the one revoked: an issue that found its
                    // lease being revoked stores what it made meanwhile, and revokes that.
                    let mut ok = tx.prepare_cached(
                        "UPDATE leases SET state = 'revoked', revoked = ?2, handle = NULL,
                             last_error = NULL, next_attempt = NULL
                         WHERE id = ?1 AND state != 'revoked' AND handle IS ?3",
                    )?;
                    let mut bad = tx.prepare_cached(
                        "UPDATE leases SET attempts = attempts + 1, last_error = ?2, next_attempt = ?3
                         WHERE id = ?1 AND state != 'revoked'",
                    )?;
                    for (i, lease) in leases.iter().enumerate() {
                        if done[i] {
                            if ok.execute(params![lease.id, now, handles[i]])? > 0 {
                                changed.push(lease);
                            }
                        } else {
                            let error = errors[i].clone().unwrap_or_else(|| "not revoked".into());
                            bad.execute(params![lease.id, error, later])?;
                            failed.push((lease, error));
                        }
                    }
                }
                tx.commit()
            });
            if let Err(e) = result {
                let error = format!("cannot store the revocation: {}", self.vault.err(e));
                report.failed = leases
                    .iter()
                    .map(|l| (l.id.clone(), error.clone()))
                    .collect();
                return report;
            }
        }
        // 4. The record.
        let mut events = Vec::new();
        for lease in &changed {
            report.revoked.push(lease.id.clone());
            if record {
                events.push(NewEvent::new(
                    lease.task.clone(),
                    lease.agent.clone(),
                    EventBody::CredentialRevoked(CredentialRevoked {
                        lease: lease.id.clone(),
                        name: lease.name.clone(),
                        reason: reason.to_owned(),
                    }),
                ));
            }
        }
        for (lease, error) in &failed {
            report.failed.push((lease.id.clone(), error.clone()));
            events.push(NewEvent::new(
                lease.task.clone(),
                lease.agent.clone(),
                EventBody::Violation(Violation {
                    category: "credential_revocation_failed".into(),
                    effect_id: None,
                    rule: Some(lease.id.clone()),
                    detail: format!(
                        "lease `{}` on `{}` ({}) could not be revoked ({reason}) after {} attempt(s): {error}; it stays open and is retried",
                        lease.id,
                        lease.name,
                        lease.backend,
                        self.retry.attempts
                    ),
                    blocked: false,
                }),
            ));
        }
        if !events.is_empty()
            && let Err(e) = self.recorder.record(events)
        {
            report.record_error = Some(e);
        }
        report
    }
}

/// Run `f` with `synchronous = NORMAL` (a commit survives the process, not the machine),
/// then back to `FULL`.
fn relaxed<T>(
    conn: &rusqlite::Connection,
    f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.execute_batch("PRAGMA synchronous = NORMAL")?;
    let result = f(conn);
    let back = conn.execute_batch("PRAGMA synchronous = FULL");
    let value = result?;
    back?;
    Ok(value)
}

fn relaxed_mut<T>(
    conn: &mut rusqlite::Connection,
    f: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.execute_batch("PRAGMA synchronous = NORMAL")?;
    let result = f(conn);
    let back = conn.execute_batch("PRAGMA synchronous = FULL");
    let value = result?;
    back?;
    Ok(value)
}

/// The leases among `leases` that need attention at `now`.
pub(crate) fn stuck_in(leases: &[Lease], now: SystemTime) -> Result<Vec<Lease>> {
    Ok(leases
        .iter()
        .filter(|l| {
            l.state != LeaseState::Revoked
                && (l.last_error.is_some()
                    || !l.owner.is_alive()
                    || (l.state == LeaseState::Open && now >= l.expires + Duration::from_secs(60)))
        })
        .cloned()
        .collect())
}
