//! Task receipts: an in-toto Statement (v1) in a DSSE envelope, signed with the ledger key.
//!
//! The receipt summarises one task from the ledger itself (who authorized it, under which
//! remit and identity, what it could reach, what it did, what was denied and approved) and
//! carries the task's `task_end` event with its inclusion proof and the signed checkpoint it
//! leads to. It verifies offline against the ledger's public key alone; given the ledger too,
//! the summary is recomputed from the ledger and must match exactly.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use remit_types::event::{EventBody, Permission, ReachableSecret, RemitRef, TaskEnd, Verdict};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::hex;
use crate::key::{LedgerKey, PublicKey};
use crate::note::SignedCheckpoint;
use crate::reader::{InclusionBundle, LedgerReader, StoredEvent};
use crate::store::Query;

/// in-toto Statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The remit receipt predicate type.
pub const PREDICATE_TYPE: &str = "urn:remit:task-receipt:v1";
/// DSSE payload type of in-toto statements.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// A DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Envelope {
    /// The payload's media type.
    pub payload_type: String,
    /// The payload, base64.
    pub payload: String,
    /// Signatures over `PAE(payloadType, payload)`.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One DSSE signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSignature {
    /// `<key name>+<key id>`, as in the ledger's `vkey`.
    pub keyid: String,
    /// Ed25519 signature, base64.
    pub sig: String,
}

impl Envelope {
    /// Pretty JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| Error::Encode(e.to_string()))
    }

    /// Write the receipt to a new file (pretty JSON), refusing to overwrite one.
    ///
    /// The file is not `fsync`ed: a receipt is derived from the ledger, whose events and
    /// checkpoint are durable before it is built, and `remit ledger receipt` signs it again
    /// from them. A receipt cut short by a crash fails to parse; it never verifies.
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        use std::io::Write;
        let mut text = self.to_json()?;
        text.push('\n');
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Error::io("cannot create receipt", path, e))?;
        file.write_all(text.as_bytes())
            .map_err(|e| Error::io("cannot write receipt", path, e))
    }

    /// Parse a receipt file's text.
    pub fn parse(text: &str) -> Result<Self> {
        serde_json::from_str(text)
            .map_err(|e| Error::Receipt(format!("not a receipt envelope: {e}")))
    }
}

/// DSSE pre-authentication encoding.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// in-toto Statement v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub type_: String,
    /// What the receipt is about: the task's `task_end` event, and the workspace diff.
    pub subject: Vec<Subject>,
    /// [`PREDICATE_TYPE`].
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The receipt.
    pub predicate: Receipt,
}

/// in-toto subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    /// Name of the subject.
    pub name: String,
    /// Digests (`sha256`).
    pub digest: BTreeMap<String, String>,
}

/// The remit task receipt predicate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// What the ledger says about the task.
    pub summary: Summary,
    /// Where in the ledger, with proof.
    pub ledger: LedgerProof,
}

/// A task, summarised from its ledger events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// Task id.
    pub task: String,
    /// Agent name.
    pub agent: String,
    /// Accountable human.
    pub owner: String,
    /// Who requested the run.
    pub requester: String,
    /// The remit in force.
    pub remit: RemitRef,
    /// The task's workload identity.
    pub identity: String,
    /// When the run was authorized.
    pub started: String,
    /// When the task ended.
    pub ended: String,
    /// How it ended.
    pub end: TaskEnd,
    /// Permissions active.
    pub permissions: Vec<Permission>,
    /// Secrets reachable at start (names and locations only).
    pub secrets_reachable: Vec<ReachableSecret>,
    /// Containment layers accepted as degraded.
    pub degraded: Vec<String>,
    /// Effects decided, by effect kind and decision.
    pub effects: BTreeMap<String, BTreeMap<String, u64>>,
    /// Effect outcomes: `performed`, `failed`.
    pub outcomes: BTreeMap<String, u64>,
    /// Processes started, by decision.
    pub execs: BTreeMap<String, u64>,
    /// Every denial.
    pub denials: Vec<Denial>,
    /// Every approval request and how it was answered.
    pub approvals: Vec<Approval>,
    /// Every violation.
    pub violations: Vec<ViolationSummary>,
    /// Credentials: `issued`, `revoked`.
    pub credentials: BTreeMap<String, u64>,
    /// SHA-256 of the workspace diff, from the last `file_changes` event.
    pub workspace_diff_sha256: Option<String>,
    /// Number of ledger events of the task.
    pub events: u64,
}

/// A denied effect or command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Denial {
    /// Ledger event.
    pub seq: u64,
    /// Effect kind (`exec` for commands).
    pub kind: String,
    /// What was denied.
    pub target: String,
    /// Policy or rule that denied.
    pub policy: Option<String>,
    /// Reason given.
    pub reason: String,
}

/// An approval request and its answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// Effect id.
    pub effect_id: String,
    /// Effect kind.
    pub kind: String,
    /// Effect target.
    pub target: String,
    /// `pending`, `granted`, `denied`, `expired` or `cancelled` (still open when the task was
    /// killed or ended: never decided, or granted and never used).
    pub status: String,
    /// Approvers who granted.
    pub granted_by: Vec<String>,
    /// Approvers who refused.
    pub denied_by: Vec<String>,
}

/// A violation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViolationSummary {
    /// Ledger event.
    pub seq: u64,
    /// Category.
    pub category: String,
    /// Detail.
    pub detail: String,
    /// Whether it was blocked.
    pub blocked: bool,
}

/// The ledger evidence of a receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerProof {
    /// The ledger's origin.
    pub origin: String,
    /// The signing key (`vkey`), for information: verify against a key you pinned.
    pub vkey: String,
    /// Inclusion of the task's `task_end` event in the checkpoint signed at task end.
    pub task_end: InclusionBundle,
}

/// Summarise a task from the ledger.
pub fn summarize_task(reader: &mut LedgerReader, task: &str) -> Result<(Summary, StoredEvent)> {
    let query = Query {
        task: Some(task.to_owned()),
        ..Query::default()
    };
    let mut builder = Builder::default();
    reader.scan(&query, &mut |stored| {
        builder.add(stored);
        Ok(true)
    })?;
    builder.finish(task)
}

#[derive(Default)]
struct Builder {
    events: u64,
    authorized: Option<(String, remit_types::event::RunAuthorized, String)>,
    end: Option<StoredEvent>,
    effects: BTreeMap<String, BTreeMap<String, u64>>,
    effect_kinds: BTreeMap<String, (String, String)>,
    outcomes: BTreeMap<String, u64>,
    execs: BTreeMap<String, u64>,
    denials: Vec<Denial>,
    approvals: Vec<Approval>,
    /// How many distinct approvers each of `approvals` needs (1 when its request was not
    /// recorded).
    required: Vec<u32>,
    violations: Vec<ViolationSummary>,
    credentials: BTreeMap<String, u64>,
    diff: Option<String>,
}

impl Builder {
    fn add(&mut self, stored: StoredEvent) {
        self.events += 1;
        let event = &stored.event;
        match &event.body {
            EventBody::RunAuthorized(r) => {
                if self.authorized.is_none() {
                    self.authorized = Some((event.agent.clone(), r.clone(), event.time.clone()));
                }
            }
            EventBody::Exec(e) => {
                *self
                    .execs
                    .entry(e.decision.as_str().to_owned())
                    .or_default() += 1;
                if e.decision == Verdict::Deny {
                    self.denials.push(Denial {
                        seq: event.seq,
                        kind: "exec".into(),
                        target: e.argv.join(" "),
                        policy: e.rule.clone(),
                        reason: "command denied".into(),
                    });
                }
            }
            EventBody::Decision(d) => {
                self.effect_kinds.insert(
                    d.effect.id.clone(),
                    (d.effect.kind.clone(), d.effect.target.clone()),
                );
                *self
                    .effects
                    .entry(d.effect.kind.clone())
                    .or_default()
                    .entry(d.decision.as_str().to_owned())
                    .or_default() += 1;
                if d.decision == Verdict::Deny {
                    self.denials.push(Denial {
                        seq: event.seq,
                        kind: d.effect.kind.clone(),
                        target: d.effect.target.clone(),
                        policy: d.policy.clone(),
                        reason: d.reason.clone(),
                    });
                }
            }
            EventBody::ApprovalRequested(a) => {
                self.effect_kinds.insert(
                    a.effect.id.clone(),
                    (a.effect.kind.clone(), a.effect.target.clone()),
                );
                self.approvals.push(Approval {
                    effect_id: a.effect.id.clone(),
                    kind: a.effect.kind.clone(),
                    target: a.effect.target.clone(),
                    status: "pending".into(),
                    granted_by: Vec::new(),
                    denied_by: Vec::new(),
                });
                self.required.push(a.required.max(1));
            }
            EventBody::ApprovalGranted(a) => {
                let index = self.approval(&a.effect_id);
                let required = self.required[index] as usize;
                let approval = &mut self.approvals[index];
                approval.granted_by.push(a.approver.clone());
                // Granted once enough distinct approvers said yes, not at the first of them.
                let mut distinct = approval.granted_by.clone();
                distinct.sort();
                distinct.dedup();
                if approval.status == "pending" && distinct.len() >= required {
                    approval.status = "granted".into();
                }
            }
            EventBody::ApprovalDenied(a) => {
                let index = self.approval(&a.effect_id);
                let approval = &mut self.approvals[index];
                approval.denied_by.push(a.approver.clone());
                approval.status = "denied".into();
            }
            EventBody::ApprovalExpired(a) => {
                // Never decided, or granted and left unused until it expired.
                let index = self.approval(&a.effect_id);
                let approval = &mut self.approvals[index];
                if approval.status == "pending" || approval.status == "granted" {
                    approval.status = "expired".into();
                }
            }
            EventBody::ApprovalCancelled(a) => {
                let index = self.approval(&a.effect_id);
                let approval = &mut self.approvals[index];
                if approval.status == "pending" || approval.status == "granted" {
                    approval.status = "cancelled".into();
                }
            }
            EventBody::EffectStarted(e) => {
                self.effect_kinds.insert(
                    e.effect.id.clone(),
                    (e.effect.kind.clone(), e.effect.target.clone()),
                );
            }
            EventBody::EffectPerformed(_) => {
                *self.outcomes.entry("performed".into()).or_default() += 1
            }
            EventBody::EffectFailed(_) => *self.outcomes.entry("failed".into()).or_default() += 1,
            EventBody::CredentialIssued(_) => {
                *self.credentials.entry("issued".into()).or_default() += 1
            }
            EventBody::CredentialRevoked(_) => {
                *self.credentials.entry("revoked".into()).or_default() += 1
            }
            EventBody::FileChanges(f) => {
                if f.diff_sha256.is_some() {
                    self.diff.clone_from(&f.diff_sha256);
                }
            }
            EventBody::Violation(v) => self.violations.push(ViolationSummary {
                seq: event.seq,
                category: v.category.clone(),
                detail: v.detail.clone(),
                blocked: v.blocked,
            }),
            EventBody::TaskEnd(_) => {
                if self.end.is_none() {
                    self.end = Some(stored);
                }
            }
        }
    }

    /// The index of the latest approval of `effect_id` (made if none was recorded).
    fn approval(&mut self, effect_id: &str) -> usize {
        match self
            .approvals
            .iter()
            .rposition(|a| a.effect_id == effect_id)
        {
            Some(index) => index,
            None => {
                // An answer without a recorded request still belongs in the receipt.
                let (kind, target) = self
                    .effect_kinds
                    .get(effect_id)
                    .cloned()
                    .unwrap_or_default();
                self.approvals.push(Approval {
                    effect_id: effect_id.to_owned(),
                    kind,
                    target,
                    status: "pending".into(),
                    granted_by: Vec::new(),
                    denied_by: Vec::new(),
                });
                self.required.push(1);
                self.approvals.len() - 1
            }
        }
    }

    fn finish(self, task: &str) -> Result<(Summary, StoredEvent)> {
        let (agent, authorized, started) = self.authorized.ok_or_else(|| {
            Error::NotFound(format!(
                "task `{task}` has no `run_authorized` event in the ledger"
            ))
        })?;
        let end = self.end.ok_or_else(|| {
            Error::NotFound(format!("task `{task}` has not ended (no `task_end` event)"))
        })?;
        let EventBody::TaskEnd(task_end) = &end.event.body else {
            return Err(Error::Invalid(
                "internal error: task end is not a task_end event".into(),
            ));
        };
        let summary = Summary {
            task: task.to_owned(),
            agent,
            owner: authorized.owner,
            requester: authorized.requester,
            remit: authorized.remit,
            identity: authorized.identity,
            started,
            ended: end.event.time.clone(),
            end: task_end.clone(),
            permissions: authorized.permissions,
            secrets_reachable: authorized.secrets_reachable,
            degraded: authorized.degraded,
            effects: self.effects,
            outcomes: self.outcomes,
            execs: self.execs,
            denials: self.denials,
            approvals: self.approvals,
            violations: self.violations,
            credentials: self.credentials,
            workspace_diff_sha256: self.diff,
            events: self.events,
        };
        Ok((summary, end))
    }
}

/// Build and sign the receipt of `task` from the ledger. The task's `task_end` event must be
/// covered by a stored checkpoint (the writer keeps one at every task end).
pub fn build_receipt(reader: &mut LedgerReader, key: &LedgerKey, task: &str) -> Result<Envelope> {
    let public = key.public();
    if public.name() != reader.origin() {
        return Err(Error::Key(format!(
            "key `{}` is not the key of ledger `{}`",
            public.name(),
            reader.origin()
        )));
    }
    let (summary, end) = summarize_task(reader, task)?;
    let checkpoint = reader.checkpoint_covering(end.event.seq + 1, &public)?;
    let bundle = reader.prove_at(end.event.seq, &checkpoint)?;
    let mut subject = vec![Subject {
        name: format!("remit-task:{task}"),
        digest: BTreeMap::from([(
            "sha256".to_owned(),
            hex::encode(&Sha256::digest(&end.bytes)),
        )]),
    }];
    if let Some(diff) = &summary.workspace_diff_sha256 {
        subject.push(Subject {
            name: "workspace-diff".into(),
            digest: BTreeMap::from([("sha256".to_owned(), diff.clone())]),
        });
    }
    let statement = Statement {
        type_: STATEMENT_TYPE.into(),
        subject,
        predicate_type: PREDICATE_TYPE.into(),
        predicate: Receipt {
            summary,
            ledger: LedgerProof {
                origin: reader.origin().to_owned(),
                vkey: public.to_vkey(),
                task_end: bundle,
            },
        },
    };
    let payload =
        serde_json_canonicalizer::to_vec(&statement).map_err(|e| Error::Encode(e.to_string()))?;
    let sig = key.sign(&pae(PAYLOAD_TYPE, &payload));
    Ok(Envelope {
        payload_type: PAYLOAD_TYPE.into(),
        payload: B64.encode(&payload),
        signatures: vec![EnvelopeSignature {
            keyid: format!("{}+{}", public.name(), public.id_hex()),
            sig: B64.encode(sig),
        }],
    })
}

/// A receipt that verified.
#[derive(Debug, Clone)]
pub struct VerifiedReceipt {
    /// The statement.
    pub statement: Statement,
    /// The checkpoint it carries.
    pub checkpoint: SignedCheckpoint,
    /// Whether it was also checked against the ledger.
    pub checked_against_ledger: bool,
}

/// Verify a receipt offline against `key`, and against the ledger when one is given.
pub fn verify_receipt(
    envelope: &Envelope,
    key: &PublicKey,
    ledger: Option<&mut LedgerReader>,
) -> Result<VerifiedReceipt> {
    if envelope.payload_type != PAYLOAD_TYPE {
        return Err(Error::Receipt(format!(
            "receipt payload type is `{}`, not `{PAYLOAD_TYPE}`",
            envelope.payload_type
        )));
    }
    let payload = B64
        .decode(&envelope.payload)
        .map_err(|_| Error::Receipt("receipt payload is not base64".into()))?;
    let keyid = format!("{}+{}", key.name(), key.id_hex());
    let message = pae(PAYLOAD_TYPE, &payload);
    let mut signed = false;
    for sig in envelope.signatures.iter().filter(|s| s.keyid == keyid) {
        let raw = B64
            .decode(&sig.sig)
            .map_err(|_| Error::Receipt("receipt signature is not base64".into()))?;
        if !key.verify(&message, &raw) {
            return Err(Error::Receipt(format!(
                "receipt signature by `{keyid}` does not verify: the receipt was altered"
            )));
        }
        signed = true;
    }
    if !signed {
        let others: Vec<&str> = envelope
            .signatures
            .iter()
            .map(|s| s.keyid.as_str())
            .collect();
        return Err(Error::Receipt(format!(
            "receipt is not signed by `{keyid}` (signed by `{}`): it is from another ledger or key",
            others.join("`, `")
        )));
    }
    let statement: Statement = serde_json::from_slice(&payload)
        .map_err(|e| Error::Receipt(format!("receipt statement is unreadable: {e}")))?;
    if statement.type_ != STATEMENT_TYPE || statement.predicate_type != PREDICATE_TYPE {
        return Err(Error::Receipt(format!(
            "not a remit receipt (statement `{}`, predicate `{}`)",
            statement.type_, statement.predicate_type
        )));
    }
    let proof = &statement.predicate.ledger;
    if proof.origin != key.name() {
        return Err(Error::Receipt(format!(
            "receipt is from ledger `{}`, not `{}`",
            proof.origin,
            key.name()
        )));
    }
    let end = proof
        .task_end
        .verify(key)
        .map_err(|e| Error::Receipt(format!("receipt's task-end proof: {e}")))?;
    let summary = &statement.predicate.summary;
    if end.task != summary.task || !matches!(end.body, EventBody::TaskEnd(_)) {
        return Err(Error::Receipt(format!(
            "receipt's proven event is not the end of task `{}`",
            summary.task
        )));
    }
    let digest = hex::encode(&Sha256::digest(proof.task_end.event.as_bytes()));
    let task_subject = format!("remit-task:{}", summary.task);
    if !statement
        .subject
        .iter()
        .any(|s| s.name == task_subject && s.digest.get("sha256") == Some(&digest))
    {
        return Err(Error::Receipt(
            "receipt subject does not match its task-end event".into(),
        ));
    }
    let checkpoint = SignedCheckpoint::open(&proof.task_end.checkpoint, key)?;
    let mut checked = false;
    if let Some(reader) = ledger {
        if reader.origin() != proof.origin {
            return Err(Error::Receipt(format!(
                "receipt is from ledger `{}`, but the ledger given is `{}`",
                proof.origin,
                reader.origin()
            )));
        }
        let size = reader.size()?;
        let cp = &checkpoint.checkpoint;
        if size < cp.size {
            return Err(Error::Receipt(format!(
                "receipt's checkpoint covers {} events but the ledger has only {size}: the ledger was truncated",
                cp.size
            )));
        }
        if reader.root_at(cp.size)? != cp.root {
            return Err(Error::Receipt(
                "the ledger does not match the receipt's checkpoint: the ledger was altered (run `remit ledger verify`)".into(),
            ));
        }
        let stored = reader.event(end.seq)?;
        if stored.bytes != proof.task_end.event.as_bytes() {
            return Err(Error::Receipt(format!(
                "ledger event {} differs from the receipt's task-end event",
                end.seq
            )));
        }
        let (recomputed, _) = summarize_task(reader, &summary.task)?;
        if &recomputed != summary {
            return Err(Error::Receipt(format!(
                "receipt summary of task `{}` differs from the ledger{}",
                summary.task,
                first_difference(&recomputed, summary)
            )));
        }
        checked = true;
    }
    Ok(VerifiedReceipt {
        statement,
        checkpoint,
        checked_against_ledger: checked,
    })
}

fn first_difference(a: &Summary, b: &Summary) -> String {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(a), serde_json::to_value(b))
    else {
        return String::new();
    };
    a.iter()
        .find(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, _)| format!(" in `{k}`"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use remit_types::event::{
        ApprovalCancelled, ApprovalExpired, ApprovalGranted, ApprovalRequested, EffectRef, Event,
        EventBody, SCHEMA_VERSION,
    };

    use super::*;

    fn stored(seq: u64, body: EventBody) -> StoredEvent {
        StoredEvent {
            bytes: Vec::new(),
            event: Event {
                schema: SCHEMA_VERSION,
                seq,
                time: "2026-12-07T00:00:00Z".into(),
                task: "t".into(),
                agent: "a".into(),
                body,
            },
        }
    }

    /// One of two required approvers said yes, then nobody else did: the receipt says the
    /// approval expired, not that it was granted. A granted one left unused expires too; one
    /// still open when the task was killed is cancelled, a decided one stays as it was.
    #[test]
    fn an_approval_is_granted_only_once_enough_approvers_said_yes() {
        let requested = |id: &str, required: u32| {
            EventBody::ApprovalRequested(ApprovalRequested {
                effect: EffectRef {
                    id: id.into(),
                    kind: "publish".into(),
                    target: "pkg".into(),
                    attributes: Default::default(),
                },
                approvers: vec!["release".into()],
                required,
                expires: None,
            })
        };
        let granted = |id: &str, who: &str| {
            EventBody::ApprovalGranted(ApprovalGranted {
                effect_id: id.into(),
                approver: who.into(),
            })
        };
        let expired = |id: &str| {
            EventBody::ApprovalExpired(ApprovalExpired {
                effect_id: id.into(),
            })
        };
        let cancelled = |id: &str| {
            EventBody::ApprovalCancelled(ApprovalCancelled {
                effect_id: id.into(),
                reason: "task killed: wall-clock limit reached".into(),
            })
        };
        let mut b = Builder::default();
        for (seq, body) in [
            requested("two", 2),
            granted("two", "ana"),
            expired("two"),
            requested("both", 2),
            granted("both", "ana"),
            granted("both", "ana"),
            granted("both", "raj"),
            requested("unused", 1),
            granted("unused", "ana"),
            expired("unused"),
            requested("open", 1),
            cancelled("open"),
            requested("left", 1),
            granted("left", "raj"),
            cancelled("left"),
            cancelled("both"),
            cancelled("two"),
        ]
        .into_iter()
        .enumerate()
        {
            b.add(stored(seq as u64, body));
        }
        let status: Vec<(&str, &str)> = b
            .approvals
            .iter()
            .map(|a| (a.effect_id.as_str(), a.status.as_str()))
            .collect();
        assert_eq!(
            status,
            [
                ("two", "expired"),
                ("both", "cancelled"),
                ("unused", "expired"),
                ("open", "cancelled"),
                ("left", "cancelled")
            ]
        );
    }
}
