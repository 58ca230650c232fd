//! Leases: what a task was given, for how long, and whether it was taken back.

use std::time::SystemTime;

use remit_identity::ProcessIdentity;
use remit_identity::clock::{from_unix_millis, rfc3339};
use serde::Serialize;

/// The task a lease belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRef {
    /// Task id.
    pub task: String,
    /// Agent name.
    pub agent: String,
}

/// Where a lease stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    /// Being created: the backend may or may not hold a credential yet (a crash here is
    /// cleaned up by recovery).
    Issuing,
    /// Live (or being revoked: see [`Lease::revoke_reason`]).
    Open,
    /// Revoked.
    Revoked,
}

impl LeaseState {
    pub(crate) fn parse(text: &str) -> Option<LeaseState> {
        match text {
            "issuing" => Some(LeaseState::Issuing),
            "open" => Some(LeaseState::Open),
            "revoked" => Some(LeaseState::Revoked),
            _ => None,
        }
    }

    /// `issuing` / `open` / `revoked`.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseState::Issuing => "issuing",
            LeaseState::Open => "open",
            LeaseState::Revoked => "revoked",
        }
    }
}

/// How the task gets a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// The proxy injects it; the task holds a phantom.
    Injected,
    /// The task's environment holds it.
    Env,
}

impl Delivery {
    /// `injected` / `env`, as in `credential_issued` events.
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Injected => "injected",
            Delivery::Env => "env",
        }
    }
}

/// Why a lease is revoked (the `reason` of `credential_revoked`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeReason {
    /// The task ended.
    TaskEnd,
    /// Its TTL passed.
    Expired,
    /// The task was killed.
    Killed,
    /// Its agent was suspended.
    AgentSuspended,
    /// Its agent was revoked.
    AgentRevoked,
    /// The supervisor that held it died; a later one revoked it.
    RecoveredAfterCrash,
    /// The task could not start (something else failed to issue).
    TaskStartFailed,
    /// Revoked by hand.
    Manual,
}

impl RevokeReason {
    /// The recorded spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            RevokeReason::TaskEnd => "task_end",
            RevokeReason::Expired => "expired",
            RevokeReason::Killed => "killed",
            RevokeReason::AgentSuspended => "agent_suspended",
            RevokeReason::AgentRevoked => "agent_revoked",
            RevokeReason::RecoveredAfterCrash => "recovered_after_crash",
            RevokeReason::TaskStartFailed => "task_start_failed",
            RevokeReason::Manual => "manual",
        }
    }
}

/// A lease as stored. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    /// Lease id (`lease-<16 hex>`).
    pub id: String,
    /// The task.
    pub task: String,
    /// The task's agent.
    pub agent: String,
    /// The credential's name in the remit.
    pub name: String,
    /// The backend (`static`, `postgres`, `git`, `github`, …).
    pub backend: String,
    /// What it grants (backend-specific JSON; never a secret).
    pub scope: serde_json::Value,
    /// Where it may be used, if bound to destinations.
    pub destination: Option<String>,
    /// How the task gets it.
    pub delivery: Delivery,
    /// Issued at.
    #[serde(serialize_with = "ser_time")]
    pub issued: SystemTime,
    /// Expires at.
    #[serde(serialize_with = "ser_time")]
    pub expires: SystemTime,
    /// State.
    pub state: LeaseState,
    /// A non-secret description of what the backend made (a role name).
    pub detail: Option<String>,
    /// The supervisor that holds it.
    #[serde(skip)]
    pub owner: ProcessIdentity,
    /// Why it is being (or was) revoked.
    pub revoke_reason: Option<String>,
    /// Failed revocation attempts.
    pub attempts: u32,
    /// The last revocation error.
    pub last_error: Option<String>,
    /// When it was revoked.
    #[serde(serialize_with = "ser_opt_time")]
    pub revoked: Option<SystemTime>,
}

fn ser_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

fn ser_opt_time<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&rfc3339(*t)),
        None => s.serialize_none(),
    }
}

impl Lease {
    /// Whether it is live at `now`: open, not expired, no revocation pending.
    pub fn is_live(&self, now: SystemTime) -> bool {
        self.state == LeaseState::Open && self.revoke_reason.is_none() && now < self.expires
    }

    /// Whether a revocation was asked for and has not succeeded.
    pub fn revocation_pending(&self) -> bool {
        self.state != LeaseState::Revoked && self.revoke_reason.is_some()
    }
}

/// The columns [`row_to_lease`] reads, in order.
pub(crate) const COLUMNS: &str = "id, task, agent, name, backend, scope, destination, delivery, \
     issued, expires, state, detail, owner_pid, owner_start, owner_boot, revoke_reason, \
     attempts, last_error, revoked";

pub(crate) fn row_to_lease(r: &rusqlite::Row<'_>) -> rusqlite::Result<Lease> {
    let bad = |i: usize, what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("bad {what}").into(),
        )
    };
    let scope: String = r.get(5)?;
    let delivery: String = r.get(7)?;
    let state: String = r.get(10)?;
    Ok(Lease {
        id: r.get(0)?,
        task: r.get(1)?,
        agent: r.get(2)?,
        name: r.get(3)?,
        backend: r.get(4)?,
        scope: serde_json::from_str(&scope).map_err(|_| bad(5, "scope"))?,
        destination: r.get(6)?,
        delivery: match delivery.as_str() {
            "injected" => Delivery::Injected,
            "env" => Delivery::Env,
            _ => return Err(bad(7, "delivery")),
        },
        issued: from_unix_millis(r.get(8)?),
        expires: from_unix_millis(r.get(9)?),
        state: LeaseState::parse(&state).ok_or_else(|| bad(10, "state"))?,
        detail: r.get(11)?,
        owner: ProcessIdentity {
            pid: r.get(12)?,
            start: r.get::<_, i64>(13)?.max(0) as u64,
            boot: r.get(14)?,
        },
        revoke_reason: r.get(15)?,
        attempts: r.get::<_, i64>(16)?.clamp(0, i64::from(u32::MAX)) as u32,
        last_error: r.get(17)?,
        revoked: r.get::<_, Option<i64>>(18)?.map(from_unix_millis),
    })
}
