//! Ledger event schema (canonical JSON, versioned).
//!
//! Every event the ledger records is an [`Event`]: a small envelope (schema version, sequence
//! number, time, task, agent) around an [`EventBody`] whose `kind` names what happened. The
//! ledger stores and hashes the RFC 8785 canonical JSON of the whole [`Event`], so the bytes
//! an auditor sees in an export are exactly the bytes in the Merkle tree.
//!
//! Callers build a [`NewEvent`] (task, agent, body); the ledger fills in `schema`, `seq` and
//! `time` when it accepts the event.
//!
//! Rules that hold for every field below:
//! - times are RFC 3339 strings in UTC with a `Z` suffix (`2026-11-23T14:46:00.123456Z`);
//! - digests are lowercase hex SHA-256 (64 characters) unless a field says otherwise;
//! - secrets are named and located, never included: no field ever carries a secret value;
//! - `Option` fields serialise as `null` when absent (they are never omitted), so every event of
//!   a kind has the same keys.
//!
//! Changing the meaning of a field, or adding one, bumps [`SCHEMA_VERSION`]: readers refuse
//! unknown fields so a signed record can never carry data an older verifier silently skips.
//! A new `kind` leaves the version alone: a reader that does not know it refuses the event by
//! its kind, and the events of every kind it knows mean what they meant.
//!
//! ```
//! use remit_types::event::{EventBody, Exec, NewEvent, Verdict};
//!
//! let event = NewEvent::new(
//!     "t-7f3a",
//!     "ci-fixer",
//!     Exec {
//!         argv: vec!["cargo".into(), "test".into()],
//!         cwd: "/workspace".into(),
//!         pid: 412,
//!         ppid: 1,
//!         decision: Verdict::Allow,
//!         rule: None,
//!     },
//! );
//! assert_eq!(event.body.kind(), "exec");
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The schema version written into every event (`schema`).
pub const SCHEMA_VERSION: u32 = 1;

/// One ledger record, exactly as stored and hashed (as canonical JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Schema version of this record ([`SCHEMA_VERSION`] when written by this build).
    pub schema: u32,
    /// Position of the event in the ledger, from 0, without gaps. It is also the index of the
    /// event's leaf in the Merkle tree and the `EVENT_ID` of `remit ledger prove`.
    pub seq: u64,
    /// When the ledger accepted the event (RFC 3339, UTC), read from the ledger's clock.
    pub time: String,
    /// Task id the event belongs to (`-` for events outside any task, such as agent lifecycle).
    pub task: String,
    /// Name of the registered agent the task runs.
    pub agent: String,
    /// What happened.
    pub body: EventBody,
}

/// An event as a caller hands it to the ledger, before it has a sequence number and a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    /// Task id (see [`Event::task`]).
    pub task: String,
    /// Agent name (see [`Event::agent`]).
    pub agent: String,
    /// What happened.
    pub body: EventBody,
}

impl NewEvent {
    /// An event of `task` run by `agent`.
    pub fn new(
        task: impl Into<String>,
        agent: impl Into<String>,
        body: impl Into<EventBody>,
    ) -> Self {
        Self {
            task: task.into(),
            agent: agent.into(),
            body: body.into(),
        }
    }
}

/// What happened, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum EventBody {
    /// A task was authorized to run (the first event of a task).
    RunAuthorized(RunAuthorized),
    /// A process started inside the sandbox (an observation; group-committed).
    Exec(Exec),
    /// The policy decided on an effect.
    Decision(Decision),
    /// A human approval was requested for an effect.
    ApprovalRequested(ApprovalRequested),
    /// An approver granted an approval.
    ApprovalGranted(ApprovalGranted),
    /// An approver denied an approval.
    ApprovalDenied(ApprovalDenied),
    /// An approval request expired unanswered.
    ApprovalExpired(ApprovalExpired),
    /// An approval still open when the task was killed or ended: never decided, or granted
    /// and never used.
    ApprovalCancelled(ApprovalCancelled),
    /// An effect is about to be performed. Written durably *before* the effect proceeds.
    EffectStarted(EffectStarted),
    /// An effect was performed.
    EffectPerformed(EffectPerformed),
    /// An effect was attempted and failed.
    EffectFailed(EffectFailed),
    /// A just-in-time credential (lease) was issued.
    CredentialIssued(CredentialIssued),
    /// A credential (lease) was revoked.
    CredentialRevoked(CredentialRevoked),
    /// Summary of the changes a task made to its workspace.
    FileChanges(FileChanges),
    /// Something the agent tried that the boundary stopped or flagged.
    Violation(Violation),
    /// The task ended (the last event of a task).
    TaskEnd(TaskEnd),
}

impl EventBody {
    /// Every `kind` value, in schema order.
    pub const KINDS: [&'static str; 16] = [
        "run_authorized",
        "exec",
        "decision",
        "approval_requested",
        "approval_granted",
        "approval_denied",
        "approval_expired",
        "approval_cancelled",
        "effect_started",
        "effect_performed",
        "effect_failed",
        "credential_issued",
        "credential_revoked",
        "file_changes",
        "violation",
        "task_end",
    ];

    /// The `kind` tag of this body, as it appears in the JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RunAuthorized(_) => "run_authorized",
            Self::Exec(_) => "exec",
            Self::Decision(_) => "decision",
            Self::ApprovalRequested(_) => "approval_requested",
            Self::ApprovalGranted(_) => "approval_granted",
            Self::ApprovalDenied(_) => "approval_denied",
            Self::ApprovalExpired(_) => "approval_expired",
            Self::ApprovalCancelled(_) => "approval_cancelled",
            Self::EffectStarted(_) => "effect_started",
            Self::EffectPerformed(_) => "effect_performed",
            Self::EffectFailed(_) => "effect_failed",
            Self::CredentialIssued(_) => "credential_issued",
            Self::CredentialRevoked(_) => "credential_revoked",
            Self::FileChanges(_) => "file_changes",
            Self::Violation(_) => "violation",
            Self::TaskEnd(_) => "task_end",
        }
    }

    /// The id of the effect this event is about, if it is about one.
    pub fn effect_id(&self) -> Option<&str> {
        match self {
            Self::Decision(d) => Some(&d.effect.id),
            Self::ApprovalRequested(a) => Some(&a.effect.id),
            Self::ApprovalGranted(a) => Some(&a.effect_id),
            Self::ApprovalDenied(a) => Some(&a.effect_id),
            Self::ApprovalExpired(a) => Some(&a.effect_id),
            Self::ApprovalCancelled(a) => Some(&a.effect_id),
            Self::EffectStarted(e) => Some(&e.effect.id),
            Self::EffectPerformed(e) => Some(&e.effect_id),
            Self::EffectFailed(e) => Some(&e.effect_id),
            Self::CredentialIssued(c) => c.effect_id.as_deref(),
            Self::Violation(v) => v.effect_id.as_deref(),
            Self::RunAuthorized(_)
            | Self::Exec(_)
            | Self::CredentialRevoked(_)
            | Self::FileChanges(_)
            | Self::TaskEnd(_) => None,
        }
    }
}

macro_rules! into_body {
    ($($variant:ident),* $(,)?) => {
        $(impl From<$variant> for EventBody {
            fn from(value: $variant) -> Self {
                Self::$variant(value)
            }
        })*
    };
}

into_body!(
    RunAuthorized,
    Exec,
    Decision,
    ApprovalRequested,
    ApprovalGranted,
    ApprovalDenied,
    ApprovalExpired,
    ApprovalCancelled,
    EffectStarted,
    EffectPerformed,
    EffectFailed,
    CredentialIssued,
    CredentialRevoked,
    FileChanges,
    Violation,
    TaskEnd,
);

/// The answer of a policy (or of a command rule) to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The request may proceed.
    Allow,
    /// The request is refused.
    Deny,
    /// The request waits for a human approval.
    NeedsApproval,
}

impl Verdict {
    /// The JSON spelling (`allow`, `deny`, `needs_approval`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::NeedsApproval => "needs_approval",
        }
    }
}

/// The remit a task runs under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemitRef {
    /// Name of the remit (its file stem or its `[agent] name`).
    pub name: String,
    /// SHA-256 of the remit file's bytes, lowercase hex.
    pub sha256: String,
}

/// One permission the remit grants, as active for the task.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permission {
    /// Area of the grant: `filesystem.write`, `filesystem.read`, `network`, `command`,
    /// `credential`, `git.push`, `action.publish`, …
    pub kind: String,
    /// What it applies to: a path, `host:port`, an argv prefix, a ref pattern, a credential name.
    pub target: String,
    /// Conditions that narrow it (`methods=GET`, `approve=2 of release-managers`), if any.
    pub condition: Option<String>,
}

/// A secret the agent could reach when the task started. Never its value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReachableSecret {
    /// The detection rule or the credential name that identifies it (`aws-access-key`,
    /// `vault:anthropic-api-key`).
    pub rule: String,
    /// Where it is: `path:line` in the workspace, an environment variable name, a mount.
    pub location: String,
    /// A fingerprint that lets two sightings be matched without revealing the secret: the first
    /// 16 hex digits of SHA-256 over a per-installation salt and the value.
    pub fingerprint: String,
}

/// The effect an event is about: what would cross (or crossed) the boundary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EffectRef {
    /// Id of the effect, shared by its decision, approvals, start and outcome events (the gate
    /// uses the effect's request digest).
    pub id: String,
    /// Effect kind: `http.request`, `git.push`, `secret.use`, `exec`, `mcp.call`,
    /// `action.publish`, …
    pub kind: String,
    /// Main object of the effect: `host:port` for network, the ref for a push, the secret name.
    pub target: String,
    /// Further typed request fields as strings (`method`, `path`, `force`, `destination`); never
    /// request bodies, headers with credentials, or secret values.
    pub attributes: BTreeMap<String, String>,
}

/// `run_authorized`: who started the task, under which remit, with what authority.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunAuthorized {
    /// The human (or service) that requested the run.
    pub requester: String,
    /// The human accountable for the agent.
    pub owner: String,
    /// The remit in force.
    pub remit: RemitRef,
    /// The task's workload identity (SPIFFE ID,
    /// `spiffe://<trust-domain>/agent/<agent>/task/<task>`).
    pub identity: String,
    /// When the task's authority expires (RFC 3339), if it has a TTL.
    pub expires: Option<String>,
    /// Permissions active for the task.
    pub permissions: Vec<Permission>,
    /// Secrets reachable from the sandbox when it started (names and locations only).
    pub secrets_reachable: Vec<ReachableSecret>,
    /// Containment layers the remit asked for that this host could not enforce and that the
    /// remit explicitly accepted (`dangerously_*`); empty when every layer holds.
    pub degraded: Vec<String>,
}

/// `exec`: a process started inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exec {
    /// Argument vector, `argv[0]` first, as the process passed it.
    pub argv: Vec<String>,
    /// Working directory, as seen inside the sandbox.
    pub cwd: String,
    /// Process id, in the sandbox's pid namespace.
    pub pid: u32,
    /// Parent process id, in the sandbox's pid namespace.
    pub ppid: u32,
    /// What the command rules decided.
    pub decision: Verdict,
    /// The command rule that decided, if one matched.
    pub rule: Option<String>,
}

/// `decision`: the policy's answer for an effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// The effect decided on.
    pub effect: EffectRef,
    /// The answer.
    pub decision: Verdict,
    /// Id of the policy that decided (for a deny, the forbidding policy), if any.
    pub policy: Option<String>,
    /// The reason, as told to the agent.
    pub reason: String,
}

/// `approval_requested`: a human must confirm an effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRequested {
    /// The effect awaiting approval (the approval is bound to its id).
    pub effect: EffectRef,
    /// Who may approve: users or groups.
    pub approvers: Vec<String>,
    /// How many distinct approvals are needed.
    pub required: u32,
    /// When the request expires (RFC 3339), if it does.
    pub expires: Option<String>,
}

/// `approval_granted`: one approver said yes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalGranted {
    /// Id of the approved effect.
    pub effect_id: String,
    /// Identity of the approver (never the agent's own identity).
    pub approver: String,
}

/// `approval_denied`: one approver said no.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalDenied {
    /// Id of the refused effect.
    pub effect_id: String,
    /// Identity of the approver.
    pub approver: String,
    /// Why, if the approver said.
    pub reason: Option<String>,
}

/// `approval_expired`: nobody answered in time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalExpired {
    /// Id of the effect whose approval expired.
    pub effect_id: String,
}

/// `approval_cancelled`: the task was killed or ended while the approval was still open
/// (nobody had decided, or it was granted and not used): it can never be used now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalCancelled {
    /// Id of the effect whose approval was cancelled.
    pub effect_id: String,
    /// Why (`task killed: wall-clock limit reached`, `the task ended`).
    pub reason: String,
}

/// `effect_started`: the effect is about to be performed (durable before it proceeds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EffectStarted {
    /// The effect.
    pub effect: EffectRef,
    /// Lease id of the credential injected for it, if any.
    pub lease: Option<String>,
}

/// `effect_performed`: the effect happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EffectPerformed {
    /// Id of the effect.
    pub effect_id: String,
    /// Short outcome (`http 200`, `pushed 3f2a1c0..9be77d1`).
    pub outcome: String,
    /// Bytes sent toward the outside, if known.
    pub bytes_out: Option<u64>,
    /// Bytes received, if known.
    pub bytes_in: Option<u64>,
}

/// `effect_failed`: the effect was attempted and did not happen (or not completely).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EffectFailed {
    /// Id of the effect.
    pub effect_id: String,
    /// The error, one line.
    pub error: String,
}

/// `credential_issued`: a just-in-time credential was leased to the task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialIssued {
    /// Lease id.
    pub lease: String,
    /// Credential name from the remit (`anthropic`), never its value.
    pub name: String,
    /// Where it may be used (`api.anthropic.com`), if bound to a destination.
    pub destination: Option<String>,
    /// How the agent gets it: `injected` (the proxy adds it; the agent never sees it) or `env`.
    pub delivery: String,
    /// When the lease expires (RFC 3339).
    pub expires: String,
    /// The effect it was issued for, if bound to one action.
    pub effect_id: Option<String>,
}

/// `credential_revoked`: a lease ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialRevoked {
    /// Lease id.
    pub lease: String,
    /// Credential name.
    pub name: String,
    /// Why: `task_end`, `expired`, `killed`, `recovered_after_crash`, …
    pub reason: String,
}

/// `file_changes`: what the task changed in its workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileChanges {
    /// Files added.
    pub added: u64,
    /// Files modified.
    pub modified: u64,
    /// Files deleted.
    pub deleted: u64,
    /// SHA-256 of the workspace diff (the bytes of `git diff --binary` against the base), if
    /// a diff was taken.
    pub diff_sha256: Option<String>,
    /// Changed paths, relative to the workspace (possibly capped; see `paths_omitted`).
    pub paths: Vec<String>,
    /// Number of changed paths left out of `paths`.
    pub paths_omitted: u64,
}

/// `violation`: the boundary stopped or flagged something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Violation {
    /// What kind: `secret_egress`, `containment`, `self_approval`, `quota`, …
    pub category: String,
    /// The effect involved, if any.
    pub effect_id: Option<String>,
    /// The rule or policy that caught it, if any.
    pub rule: Option<String>,
    /// What happened, one line, with secret values redacted.
    pub detail: String,
    /// Whether the action was stopped (`false`: only flagged).
    pub blocked: bool,
}

/// Why a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The agent process exited by itself.
    Exited,
    /// Someone (or the kill switch) stopped it.
    Killed,
    /// Its time limit ran out.
    TimedOut,
    /// The supervisor stopped it because of an error.
    Error,
}

/// Counts the supervisor kept while the task ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskCounts {
    /// Processes started.
    pub execs: u64,
    /// Effects decided.
    pub effects: u64,
    /// Effects or commands denied.
    pub denials: u64,
    /// Approvals requested.
    pub approvals: u64,
    /// Violations recorded.
    pub violations: u64,
}

/// `task_end`: the task is over (the last event of a task).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskEnd {
    /// Exit status of the agent process, if it exited.
    pub exit_code: Option<i32>,
    /// Signal that ended it, if one did.
    pub signal: Option<i32>,
    /// Why the task ended.
    pub reason: EndReason,
    /// Free-text detail (`wall-clock limit of 40m reached`), if any.
    pub detail: Option<String>,
    /// The supervisor's counts.
    pub counts: TaskCounts,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_match_tags() {
        let bodies: Vec<EventBody> = vec![
            ApprovalExpired {
                effect_id: "e".into(),
            }
            .into(),
            ApprovalCancelled {
                effect_id: "e".into(),
                reason: "the task ended".into(),
            }
            .into(),
            TaskEnd {
                exit_code: Some(0),
                signal: None,
                reason: EndReason::Exited,
                detail: None,
                counts: TaskCounts::default(),
            }
            .into(),
        ];
        for body in bodies {
            assert!(EventBody::KINDS.contains(&body.kind()));
        }
    }
}
