//! The chokepoint: every effect of a task is identified, decided, approved where the policy
//! says so, recorded durably, performed, and its outcome recorded.
//!
//! ```text
//! effect ─► task identity ─► policy (allow | deny | needs-approval)
//!        ─► approval (bound to the effect's digest, single use, expiring)
//!        ─► ledger: "about to perform" durable ─► perform ─► ledger: outcome
//! ```
//!
//! Adapters (the exec observer, the agent socket's typed actions; later egress, git, MCP,
//! code mode) turn what an agent does into an [`Effect`] and call [`Gate::request`]; only the
//! gate can mint an [`Authorized`], and performing an effect takes one, so an adapter cannot
//! perform what was not decided.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use remit_policy::commands::ExecFacts;
use remit_policy::engine::{Decision, Engine, Principal, Requirement, Situation};
use remit_types::effect::Effect;
use remit_types::event::{
    ApprovalCancelled, ApprovalDenied, ApprovalExpired, ApprovalGranted, ApprovalRequested,
    EffectFailed, EffectPerformed, EffectRef, EffectStarted, EventBody, Verdict, Violation,
};
use serde::Serialize;
use tokio::sync::Notify;

use crate::journal::Journal;
use crate::record::rfc3339;

/// Where time comes from (passed in, so approvals and expiry are testable without sleeping).
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> SystemTime;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Proof that the gate decided an effect may be performed now. Only the gate makes one; it is
/// consumed by performing.
///
/// It holds the effect's quota slot, reserved when the gate decided (under the same lock as
/// the decision, so concurrent requests cannot all see the same unused quota). Reporting the
/// effect with [`Gate::performed`] turns the slot into a use; [`Gate::failed`] does the same
/// once the effect's start was recorded ([`Gate::begin`]), because it may have crossed the
/// boundary, and gives the slot back otherwise. Dropped without a report, it gives the slot
/// back when the effect never started and counts it as used when it did.
#[derive(Debug)]
pub struct Authorized {
    effect: Effect,
    id: String,
    /// Whether the effect may have crossed the boundary (its start was recorded).
    started: AtomicBool,
    slot: Option<Slot>,
    /// Where an outcome goes if the token is dropped unreported after its start.
    journal: Abandon,
    /// This token among all of the gate's (effect ids repeat: they are digests).
    serial: u64,
    /// The gate's state, where a started effect is listed until it has an outcome.
    state: Slot,
}

/// The journal an [`Authorized`] dropped unreported writes its failure to.
struct Abandon(Arc<dyn Journal>);

impl std::fmt::Debug for Abandon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Abandon")
    }
}

/// A reserved quota slot: one effect of its kind in progress.
struct Slot(Arc<Mutex<State>>);

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Slot")
    }
}

impl Authorized {
    /// The effect it authorizes.
    pub fn effect(&self) -> &Effect {
        &self.effect
    }

    /// The effect's id in the ledger.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The effect did not start after all (its program could not be started): a failure
    /// reported now gives its quota slot back.
    pub(crate) fn not_started(&self) {
        self.started.store(false, Ordering::SeqCst);
    }

    /// Whether this effect's outcome is still to be recorded by whoever reports it: not when
    /// it started and the task's end recorded its failure already ([`Gate::close`]). Takes
    /// it off the list of started effects.
    fn outcome_due(&self) -> bool {
        let listed = lock_state(&self.state.0)
            .started
            .remove(&self.serial)
            .is_some();
        listed || !self.started.load(Ordering::SeqCst)
    }

    /// Settle the quota slot: a use when `used`, given back otherwise. Once.
    fn settle(&mut self, used: bool) {
        let Some(Slot(state)) = self.slot.take() else {
            return;
        };
        let mut state = lock_state(&state);
        let kind = self.effect.kind();
        if let Some(n) = state.in_flight.get_mut(kind) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.in_flight.remove(kind);
            }
        }
        if used {
            *state.performed.entry(kind.to_owned()).or_default() += 1;
        }
    }
}

impl Drop for Authorized {
    fn drop(&mut self) {
        let started = self.started.load(Ordering::SeqCst);
        self.settle(started);
        // Started and never reported (its caller went away: a cancelled call, a dropped
        // connection): nothing stays started in the ledger without an outcome.
        if started && !self.id.is_empty() && self.outcome_due() {
            self.journal
                .0
                .observe(EventBody::EffectFailed(EffectFailed {
                    effect_id: std::mem::take(&mut self.id),
                    error: "abandoned: its caller went away before reporting how it ended".into(),
                }));
        }
    }
}

fn lock_state(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// What became of a request.
#[derive(Debug)]
pub enum Outcome {
    /// Decided and recorded: perform it with this token, then report with
    /// [`Gate::performed`] or [`Gate::failed`].
    Authorized(Authorized),
    /// Refused.
    Denied {
        /// The deciding policy.
        policy: String,
        /// Why, for the agent.
        reason: String,
    },
    /// Still waiting for approval when the caller's wait ran out.
    Pending {
        /// The approval to ask about later.
        approval: String,
    },
}

/// Most approvals of one task waiting for a human at once; a request past it is denied.
pub const MAX_OPEN_APPROVALS: usize = 32;
/// Most approvals of one task kept (decided ones beyond it are forgotten, oldest first).
const MAX_KEPT_APPROVALS: usize = 1000;

/// The state of one approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ApprovalState {
    /// Waiting for approvers.
    Pending,
    /// Every requirement is met; the effect may be performed once.
    Approved,
    /// A human refused.
    Denied {
        /// Who.
        by: String,
        /// Why.
        reason: Option<String>,
    },
    /// Nobody decided in time.
    Expired,
    /// The effect was performed with it; it cannot be used again.
    Used,
    /// The task was killed or ended first.
    Cancelled {
        /// Why.
        reason: String,
    },
}

/// One approval a human gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    /// The approver (OS user on the host).
    pub approver: String,
    /// When (RFC 3339).
    pub at: String,
    /// Why, if they said.
    pub reason: Option<String>,
}

/// Everything an approver needs to decide, derived by the gate (not written by the agent).
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalView {
    /// Approval id.
    pub id: String,
    /// Task.
    pub task: String,
    /// Agent.
    pub agent: String,
    /// The agent's owner.
    pub owner: String,
    /// The human who started the task.
    pub requester: String,
    /// Effect kind.
    pub kind: String,
    /// The effect, in one line.
    pub effect: String,
    /// The effect's fields.
    pub details: serde_json::Value,
    /// The effect's digest, which the approval is bound to.
    pub digest: String,
    /// Policies that require the approval, with their reasons.
    pub policies: Vec<String>,
    /// What approving enables.
    pub enables: String,
    /// Who may approve, and how many must.
    pub requirements: Vec<RequirementView>,
    /// Approvals given so far.
    pub grants: Vec<Grant>,
    /// When it was requested (RFC 3339).
    pub requested: String,
    /// When it expires (RFC 3339).
    pub expires: String,
    /// Its state.
    #[serde(flatten)]
    pub state: ApprovalState,
}

/// A requirement as shown to people.
#[derive(Debug, Clone, Serialize)]
pub struct RequirementView {
    /// Requirement id.
    pub id: String,
    /// Users or groups; empty means any human.
    pub by: Vec<String>,
    /// How many distinct approvers.
    pub count: u32,
    /// Approvals counted toward it so far.
    pub have: u32,
}

struct PendingApproval {
    id: String,
    effect: Effect,
    digest: String,
    requirements: Vec<Requirement>,
    policies: Vec<String>,
    requested: SystemTime,
    expires: SystemTime,
    grants: Vec<Grant>,
    state: ApprovalState,
    notify: Arc<Notify>,
}

/// A denial the agent can list.
#[derive(Debug, Clone, Serialize)]
pub struct DenialView {
    /// When (RFC 3339).
    pub time: String,
    /// Effect kind.
    pub kind: String,
    /// The effect, in one line.
    pub effect: String,
    /// The deciding policy.
    pub policy: String,
    /// Why.
    pub reason: String,
}

/// Counters the gate keeps for the task's end.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Counters {
    /// Effects decided (execs excluded).
    pub effects: u64,
    /// Effects or commands refused.
    pub denials: u64,
    /// Approvals requested.
    pub approvals: u64,
    /// Violations recorded.
    pub violations: u64,
}

#[derive(Default)]
struct State {
    approvals: Vec<PendingApproval>,
    /// Effects performed (or attempted), by kind (quotas).
    performed: HashMap<String, u64>,
    /// Effects authorized and not reported yet, by kind: each holds a quota slot.
    in_flight: HashMap<String, u64>,
    /// Effects started and not reported yet, by token serial: the task's end records them as
    /// failed, so no start stays without an outcome (a script stuck past the task's end).
    started: HashMap<u64, String>,
    /// The next token's serial.
    next_serial: u64,
    denials: Vec<DenialView>,
    counters: Counters,
    kill_reason: Option<String>,
    next: u64,
}

impl State {
    /// Effects of `kind` performed plus those in progress: what counts against a quota.
    fn quota_used(&self, kind: &str) -> u64 {
        self.performed.get(kind).copied().unwrap_or(0)
            + self.in_flight.get(kind).copied().unwrap_or(0)
    }
}

/// What a decision made under the lock leads to.
enum Step {
    /// Allowed, with its quota slot reserved.
    Allow(Vec<String>, Slot),
    /// Refused: policy, reason.
    Deny(String, String),
    /// Needs approval: requirements, policies.
    Approve(Vec<Requirement>, Vec<String>),
}

/// Why an approval operation failed. Every message is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    /// No such approval in this task.
    #[error("no approval `{0}`")]
    Unknown(String),
    /// Already decided.
    #[error("approval `{0}` is {1}; it cannot be decided again")]
    Decided(String, String),
    /// The human may not approve this.
    #[error("`{0}` may not approve `{1}` (approvers: {2})")]
    NotAnApprover(String, String, String),
    /// The same human twice.
    #[error("`{0}` already approved `{1}`; it needs {2} distinct approvers")]
    Twice(String, String, u32),
    /// The task's own user tried.
    #[error("the task itself cannot approve its own requests")]
    SelfApproval,
}

/// The gate of one task.
pub struct Gate {
    engine: Engine,
    principal: Principal,
    journal: Arc<dyn Journal>,
    clock: Arc<dyn Clock>,
    approval_timeout: Duration,
    state: Arc<Mutex<State>>,
    killed: AtomicBool,
    killed_notify: Notify,
    closed: AtomicBool,
    closed_notify: Notify,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("task", &self.principal.task)
            .finish()
    }
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn effect_ref(effect: &Effect, id: &str) -> EffectRef {
    let (kind, target, attributes): (String, String, BTreeMap<String, String>) = match effect {
        Effect::Exec { argv, cwd } => (
            "exec".into(),
            argv.first().cloned().unwrap_or_default(),
            [
                ("argv".to_owned(), argv.join(" ")),
                ("cwd".to_owned(), cwd.clone()),
            ]
            .into(),
        ),
        Effect::HttpRequest {
            host,
            port,
            method,
            path,
        } => (
            "http.request".into(),
            format!("{host}:{port}"),
            [
                ("method".to_owned(), method.clone()),
                ("path".to_owned(), path.clone()),
            ]
            .into(),
        ),
        Effect::GitPush {
            remote,
            reference,
            old,
            new,
            force,
            new_branch,
        } => (
            "git.push".into(),
            reference.clone(),
            [
                ("remote".to_owned(), remote.clone()),
                ("old".to_owned(), old.clone()),
                ("new".to_owned(), new.clone()),
                ("force".to_owned(), force.to_string()),
                ("new_branch".to_owned(), new_branch.to_string()),
            ]
            .into(),
        ),
        Effect::SecretUse { name, destination } => (
            "secret.use".into(),
            name.clone(),
            [("destination".to_owned(), destination.clone())].into(),
        ),
        Effect::Action { kind, args, .. } => (format!("action.{kind}"), kind.clone(), args.clone()),
        Effect::ToolCall {
            via,
            tool,
            args,
            script,
        } => {
            let mut attributes: BTreeMap<String, String> = args
                .iter()
                .map(|(k, v)| (format!("arg.{k}"), v.clone()))
                .collect();
            attributes.insert("via".to_owned(), via.clone());
            if !script.is_empty() {
                attributes.insert("script".to_owned(), script.clone());
            }
            ("tool.call".into(), tool.clone(), attributes)
        }
    };
    EffectRef {
        id: id.to_owned(),
        kind,
        target,
        attributes,
    }
}

fn random_id(prefix: &str) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let mut bytes = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    let mut out = String::from(prefix);
    for b in bytes {
        out.push(char::from(ALPHABET[usize::from(b & 31)]));
    }
    out
}

/// A program start as the command a shell would run: the path executed, with `exec -a
/// NAME` before it when the name the program is given (`argv[0]`, the caller's choice) is
/// not the path's own. What an approver sees, and what the approval is bound to, is what
/// runs — never a name the task picked to look harmless.
fn exec_argv(facts: &ExecFacts) -> Vec<String> {
    let name = facts.argv.first().map(String::as_str).unwrap_or("");
    let own = facts.path.rsplit('/').next().unwrap_or(&facts.path);
    let mut argv = Vec::with_capacity(facts.argv.len() + 3);
    if name != own && name != facts.path {
        argv.extend(["exec".to_owned(), "-a".to_owned(), name.to_owned()]);
    }
    argv.push(facts.path.clone());
    argv.extend(facts.argv.iter().skip(1).cloned());
    argv
}

impl Gate {
    /// A gate for one task.
    pub fn new(
        engine: Engine,
        principal: Principal,
        journal: Arc<dyn Journal>,
        clock: Arc<dyn Clock>,
        approval_timeout: Duration,
    ) -> Gate {
        Gate {
            engine,
            principal,
            journal,
            clock,
            approval_timeout,
            state: Arc::new(Mutex::new(State::default())),
            killed: AtomicBool::new(false),
            killed_notify: Notify::new(),
            closed: AtomicBool::new(false),
            closed_notify: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock_state(&self.state)
    }

    /// The task's principal.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The policy engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The journal.
    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.journal
    }

    /// Whether the task was killed (every later effect is refused).
    pub fn killed(&self) -> Option<String> {
        self.lock().kill_reason.clone()
    }

    /// Resolves once the task is killed.
    pub async fn wait_killed(&self) {
        loop {
            let notified = self.killed_notify.notified();
            if self.killed.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    /// The kill switch: refuse every future effect, cancel open approvals (pending, or
    /// granted and not used), wake whoever waits. The caller then kills the processes.
    pub fn kill(&self, reason: &str) {
        let mut state = self.lock();
        if state.kill_reason.is_none() {
            state.kill_reason = Some(reason.to_owned());
        }
        let cancelled = Self::cancel_open(&mut state, &format!("task killed: {reason}"));
        drop(state);
        self.record_cancelled(cancelled);
        self.killed.store(true, Ordering::SeqCst);
        self.killed_notify.notify_waiters();
    }

    /// Cancel every open approval (pending, or granted and not used): the task cannot use
    /// it any more. Returns what to record, `(effect id, reason)`.
    fn cancel_open(state: &mut State, reason: &str) -> Vec<(String, String)> {
        let mut cancelled = Vec::new();
        for approval in &mut state.approvals {
            if matches!(
                approval.state,
                ApprovalState::Pending | ApprovalState::Approved
            ) {
                approval.state = ApprovalState::Cancelled {
                    reason: reason.to_owned(),
                };
                approval.notify.notify_waiters();
                cancelled.push((approval.digest.clone(), reason.to_owned()));
            }
        }
        cancelled
    }

    /// Record approvals cancelled by [`Gate::kill`] or [`Gate::close`], so the ledger and the
    /// receipt do not show them open for ever.
    fn record_cancelled(&self, cancelled: Vec<(String, String)>) {
        for (effect_id, reason) in cancelled {
            self.journal
                .observe(EventBody::ApprovalCancelled(ApprovalCancelled {
                    effect_id,
                    reason,
                }));
        }
    }

    fn situation(&self, state: &State, effect: &Effect, digest: &str) -> Situation {
        let now = self.clock.now();
        let mut approvals = BTreeSet::new();
        for approval in state
            .approvals
            .iter()
            .filter(|a| a.digest == digest && a.state == ApprovalState::Approved && a.expires > now)
        {
            for requirement in &approval.requirements {
                approvals.insert(requirement.id.clone());
            }
        }
        Situation {
            unix: unix(self.clock.now()),
            approvals,
            quota_used: state.quota_used(effect.kind()),
        }
    }

    /// Decide a program start now (no waiting). Used by the exec observer on every `execve`.
    pub fn decide_exec(&self, facts: &ExecFacts, cwd: &str) -> Decision {
        if let Some(reason) = self.killed() {
            return Decision::Deny {
                policy: "kill-switch".into(),
                reason: format!("the task was killed ({reason})"),
            };
        }
        // No approval counts on this path: an approved program start must go through
        // `request_exec`, which uses the approval up (once) under the gate's lock. Counted
        // here, an approval would let every identical `execve` through until then.
        let situation = Situation {
            unix: unix(self.clock.now()),
            approvals: BTreeSet::new(),
            quota_used: self.lock().quota_used("exec"),
        };
        self.engine
            .decide_exec(&self.principal, facts, cwd, &situation)
    }

    /// Note an exec denial for the agent's denial list.
    pub fn note_denial(&self, effect: &Effect, policy: &str, reason: &str) {
        let mut state = self.lock();
        state.counters.denials += 1;
        state.denials.push(DenialView {
            time: rfc3339(self.clock.now()),
            kind: effect.kind().to_owned(),
            effect: effect.describe(),
            policy: policy.to_owned(),
            reason: reason.to_owned(),
        });
        if state.denials.len() > 1000 {
            state.denials.remove(0);
        }
    }

    /// Ask for an effect. Waits up to `wait` for an approval when one is needed; returns
    /// `Pending` when the wait runs out first (the approval stays open until it expires).
    pub async fn request(&self, effect: Effect, wait: Duration) -> Outcome {
        self.request_with(effect, None, wait).await
    }

    /// Ask for a program start that needs approval, deciding with everything the exec
    /// observer knows (the binary's identity, its interpreter), not just its argv.
    pub async fn request_exec(&self, facts: ExecFacts, cwd: &str, wait: Duration) -> Outcome {
        let effect = Effect::Exec {
            argv: exec_argv(&facts),
            cwd: cwd.to_owned(),
        };
        self.request_with(effect, Some(facts), wait).await
    }

    async fn request_with(
        &self,
        effect: Effect,
        facts: Option<ExecFacts>,
        wait: Duration,
    ) -> Outcome {
        let digest = effect.digest(&self.principal.task);
        let deadline = tokio::time::Instant::now() + wait;
        // An approval granted for this effect is decided again once; if that still asks for
        // an approval (the policy now wants more, say at another time of day), the request
        // is refused rather than looped on.
        let mut approved_retries = 0u8;
        loop {
            // Decide and, when allowed, reserve in one critical section: the quota slot, the
            // approval consumed and the kill switch are all read and changed under the lock
            // the decision was made under, so concurrent requests see each other.
            let step = {
                let mut state = self.lock();
                if let Some(reason) = state.kill_reason.clone() {
                    drop(state);
                    return self.deny(
                        &effect,
                        &digest,
                        "kill-switch",
                        &format!("the task was killed ({reason})"),
                    );
                }
                let situation = self.situation(&state, &effect, &digest);
                let decision = match (self.engine.check_request(&effect), &facts, &effect) {
                    (Ok(()), Some(facts), Effect::Exec { cwd, .. }) => {
                        self.engine
                            .decide_exec(&self.principal, facts, cwd, &situation)
                    }
                    (Ok(()), _, _) => self.engine.decide(&self.principal, &effect, &situation),
                    (Err(e), _, _) => Decision::Deny {
                        policy: "remit".into(),
                        reason: e.to_string(),
                    },
                };
                match decision {
                    Decision::Allow { policies } => {
                        Step::Allow(policies, self.reserve(&mut state, &effect, &digest))
                    }
                    Decision::Deny { policy, reason } => {
                        let kind = effect.kind();
                        let reason = if policy == format!("actions.{kind}.quota") {
                            format!(
                                "{reason} ({} performed, {} in progress)",
                                state.performed.get(kind).copied().unwrap_or(0),
                                state.in_flight.get(kind).copied().unwrap_or(0)
                            )
                        } else {
                            reason
                        };
                        Step::Deny(policy, reason)
                    }
                    Decision::NeedsApproval {
                        requirements,
                        policies,
                    } => Step::Approve(requirements, policies),
                }
            };
            match step {
                Step::Allow(policies, slot) => {
                    return self.authorize(effect, &digest, &policies, slot);
                }
                Step::Deny(policy, reason) => {
                    return self.deny(&effect, &digest, &policy, &reason);
                }
                Step::Approve(requirements, policies) => {
                    let (id, notify, state) =
                        self.open_approval(&effect, &digest, requirements, policies);
                    match state {
                        ApprovalState::Pending => {}
                        ApprovalState::Approved if approved_retries == 0 => {
                            approved_retries += 1;
                            continue;
                        }
                        ApprovalState::Approved => {
                            return self.deny(
                                &effect,
                                &digest,
                                "approval",
                                &format!(
                                    "approval `{id}` does not cover what the policy asks for now; ask again"
                                ),
                            );
                        }
                        ApprovalState::Denied { by, reason } => {
                            return self.deny(
                                &effect,
                                &digest,
                                "approval",
                                &format!(
                                    "{by} denied approval `{id}`{}",
                                    reason.map(|r| format!(": {r}")).unwrap_or_default()
                                ),
                            );
                        }
                        ApprovalState::Expired => {
                            return self.deny(
                                &effect,
                                &digest,
                                "approval",
                                &format!("approval `{id}` expired with nobody deciding"),
                            );
                        }
                        ApprovalState::Cancelled { reason } if id.is_empty() => {
                            // None was opened.
                            return self.deny(&effect, &digest, "approval", &reason);
                        }
                        ApprovalState::Used | ApprovalState::Cancelled { .. } => {
                            return self.deny(
                                &effect,
                                &digest,
                                "approval",
                                &format!("approval `{id}` can no longer be used"),
                            );
                        }
                    }
                    let notified = notify.notified();
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        return Outcome::Pending { approval: id };
                    }
                    let expires_in = self.expires_in(&id).unwrap_or(Duration::ZERO);
                    let until = (deadline - now).min(expires_in + Duration::from_millis(5));
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep(until) => { self.expire_due(); }
                    }
                }
            }
        }
    }

    fn expires_in(&self, id: &str) -> Option<Duration> {
        let state = self.lock();
        let approval = state.approvals.iter().find(|a| a.id == id)?;
        Some(
            approval
                .expires
                .duration_since(self.clock.now())
                .unwrap_or(Duration::ZERO),
        )
    }

    /// Open (or find) the approval for this exact effect.
    fn open_approval(
        &self,
        effect: &Effect,
        digest: &str,
        requirements: Vec<Requirement>,
        policies: Vec<String>,
    ) -> (String, Arc<Notify>, ApprovalState) {
        self.expire_due();
        let mut state = self.lock();
        if let Some(existing) = state.approvals.iter().rev().find(|a| {
            a.digest == digest
                && !matches!(
                    a.state,
                    ApprovalState::Used | ApprovalState::Cancelled { .. }
                )
        }) {
            // A request already open for the same effect is the same approval; a decided one
            // is reported once and then a new request opens a new approval.
            let answer = (
                existing.id.clone(),
                Arc::clone(&existing.notify),
                existing.state.clone(),
            );
            if matches!(
                answer.2,
                ApprovalState::Denied { .. } | ApprovalState::Expired
            ) {
                let id = answer.0.clone();
                if let Some(a) = state.approvals.iter_mut().find(|a| a.id == id) {
                    a.state = ApprovalState::Cancelled {
                        reason: "reported to the task".into(),
                    };
                }
            }
            return answer;
        }
        let open = state
            .approvals
            .iter()
            .filter(|a| a.state == ApprovalState::Pending)
            .count();
        if open >= MAX_OPEN_APPROVALS {
            // A flood of requests would bury the one that matters in the approvers' list.
            return (
                String::new(),
                Arc::new(Notify::new()),
                ApprovalState::Cancelled {
                    reason: format!(
                        "{open} approvals of this task are waiting for a human already; ask again once they are decided"
                    ),
                },
            );
        }
        // Decided approvals are kept for the approvers' `--all` view, the oldest dropped
        // past a bound.
        if state.approvals.len() >= MAX_KEPT_APPROVALS
            && let Some(oldest) = state
                .approvals
                .iter()
                .position(|a| !matches!(a.state, ApprovalState::Pending | ApprovalState::Approved))
        {
            state.approvals.remove(oldest);
        }
        state.next += 1;
        // Unique among this task's approvals even if randomness failed: a human must never
        // approve one effect under another's id.
        let mut id = random_id("ap-");
        if state.approvals.iter().any(|a| a.id == id) {
            id = format!("{id}-{}", state.next);
        }
        let now = self.clock.now();
        let expires = now + self.approval_timeout;
        let notify = Arc::new(Notify::new());
        let approvers: Vec<String> = requirements
            .iter()
            .flat_map(|r| {
                if r.by.is_empty() {
                    vec!["any human".to_owned()]
                } else {
                    r.by.clone()
                }
            })
            .collect();
        let required = requirements.iter().map(|r| r.count).max().unwrap_or(1);
        state.counters.approvals += 1;
        state.approvals.push(PendingApproval {
            id: id.clone(),
            effect: effect.clone(),
            digest: digest.to_owned(),
            requirements,
            policies,
            requested: now,
            expires,
            grants: Vec::new(),
            state: ApprovalState::Pending,
            notify: Arc::clone(&notify),
        });
        drop(state);
        self.journal
            .observe(EventBody::ApprovalRequested(ApprovalRequested {
                effect: effect_ref(effect, digest),
                approvers,
                required,
                expires: Some(rfc3339(expires)),
            }));
        (id, notify, ApprovalState::Pending)
    }

    /// Refuse `effect` for a reason outside the policy (an ended lease): counted, listed among
    /// the task's denials and recorded as a `deny` decision by `policy`.
    pub fn refuse(&self, effect: &Effect, policy: &str, reason: &str) -> Outcome {
        let digest = effect.digest(&self.principal.task);
        self.deny(effect, &digest, policy, reason)
    }

    fn deny(&self, effect: &Effect, digest: &str, policy: &str, reason: &str) -> Outcome {
        self.note_denial(effect, policy, reason);
        {
            let mut state = self.lock();
            state.counters.effects += 1;
        }
        self.journal
            .observe(EventBody::Decision(remit_types::event::Decision {
                effect: effect_ref(effect, digest),
                decision: Verdict::Deny,
                policy: Some(policy.to_owned()),
                reason: reason.to_owned(),
            }));
        Outcome::Denied {
            policy: policy.to_owned(),
            reason: reason.to_owned(),
        }
    }

    /// Under the lock, for an allowed effect: count it, consume the approval that allowed it
    /// (single use) and reserve its quota slot.
    fn reserve(&self, state: &mut State, effect: &Effect, digest: &str) -> Slot {
        state.counters.effects += 1;
        for approval in state
            .approvals
            .iter_mut()
            .filter(|a| a.digest == digest && a.state == ApprovalState::Approved)
        {
            approval.state = ApprovalState::Used;
            approval.notify.notify_waiters();
        }
        *state.in_flight.entry(effect.kind().to_owned()).or_default() += 1;
        Slot(Arc::clone(&self.state))
    }

    fn authorize(&self, effect: Effect, digest: &str, policies: &[String], slot: Slot) -> Outcome {
        // Made first, so the slot is given back however this ends.
        let serial = {
            let mut state = self.lock();
            state.next_serial += 1;
            state.next_serial
        };
        let authorized = Authorized {
            id: digest.to_owned(),
            effect,
            started: AtomicBool::new(false),
            slot: Some(slot),
            journal: Abandon(Arc::clone(&self.journal)),
            serial,
            state: Slot(Arc::clone(&self.state)),
        };
        self.journal
            .observe(EventBody::Decision(remit_types::event::Decision {
                effect: effect_ref(&authorized.effect, digest),
                decision: Verdict::Allow,
                policy: policies.first().cloned(),
                reason: format!(
                    "allowed by {}",
                    if policies.is_empty() {
                        "policy".to_owned()
                    } else {
                        policies.join(", ")
                    }
                ),
            }));
        Outcome::Authorized(authorized)
    }

    /// Record that an authorized effect is about to be performed, and wait until that record
    /// is durable. Nothing crosses the boundary before this returns `Ok`.
    pub async fn begin(&self, authorized: &Authorized) -> Result<(), String> {
        let event = EventBody::EffectStarted(EffectStarted {
            effect: effect_ref(&authorized.effect, &authorized.id),
            lease: None,
        });
        self.journal.durable(event).await?;
        self.mark_started(authorized);
        Ok(())
    }

    /// List a started effect until its outcome is recorded.
    fn mark_started(&self, authorized: &Authorized) {
        authorized.started.store(true, Ordering::SeqCst);
        self.lock()
            .started
            .insert(authorized.serial, authorized.id.clone());
    }

    /// Record that an authorized effect is about to be performed, without waiting for the
    /// record to be durable (it follows the journal's group commit). Only for effects that
    /// stay inside the task's boundary — a read of the task's own workspace, its own status —
    /// where nothing outside depends on the record preceding the effect; anything that
    /// changes or sends something uses [`Gate::begin`].
    pub fn begin_observed(&self, authorized: &Authorized) {
        self.mark_started(authorized);
        self.journal
            .observe(EventBody::EffectStarted(EffectStarted {
                effect: effect_ref(&authorized.effect, &authorized.id),
                lease: None,
            }));
    }

    /// Record a performed effect and count it against its quota.
    pub fn performed(&self, authorized: Authorized, outcome: &str) {
        self.performed_with(authorized, outcome, None, None);
    }

    /// Record a performed effect with the bytes it moved.
    pub fn performed_with(
        &self,
        mut authorized: Authorized,
        outcome: &str,
        bytes_out: Option<u64>,
        bytes_in: Option<u64>,
    ) {
        authorized.settle(true);
        if !authorized.outcome_due() {
            authorized.id.clear();
            return;
        }
        self.journal
            .observe(EventBody::EffectPerformed(EffectPerformed {
                effect_id: std::mem::take(&mut authorized.id),
                outcome: outcome.to_owned(),
                bytes_out,
                bytes_in,
            }));
    }

    /// Record an effect that failed. Once its start was recorded ([`Gate::begin`]) it counts
    /// against its quota: it was attempted and may have crossed the boundary. A failure
    /// before that (the record could not be made durable, there was nothing to perform it
    /// with, its program could not be started) gives the quota slot back.
    pub fn failed(&self, mut authorized: Authorized, error: &str) {
        let started = authorized.started.load(Ordering::SeqCst);
        authorized.settle(started);
        if !authorized.outcome_due() {
            authorized.id.clear();
            return;
        }
        self.journal.observe(EventBody::EffectFailed(EffectFailed {
            effect_id: std::mem::take(&mut authorized.id),
            error: error.to_owned(),
        }));
    }

    /// Record a violation (something blocked that was not a plain policy denial).
    pub fn violation(&self, category: &str, detail: &str, rule: Option<&str>) {
        self.lock().counters.violations += 1;
        self.journal.observe(EventBody::Violation(Violation {
            category: category.to_owned(),
            effect_id: None,
            rule: rule.map(str::to_owned),
            detail: detail.to_owned(),
            blocked: true,
        }));
    }

    fn expire_due(&self) {
        let now = self.clock.now();
        let mut expired = Vec::new();
        {
            let mut state = self.lock();
            for approval in &mut state.approvals {
                // A granted approval left unused expires too: it is for the request as it was
                // asked, then.
                if matches!(
                    approval.state,
                    ApprovalState::Pending | ApprovalState::Approved
                ) && approval.expires <= now
                {
                    approval.state = ApprovalState::Expired;
                    approval.notify.notify_waiters();
                    expired.push(approval.digest.clone());
                }
            }
        }
        for digest in expired {
            self.journal
                .observe(EventBody::ApprovalExpired(ApprovalExpired {
                    effect_id: digest,
                }));
        }
    }

    /// Approve (`approve = true`) or deny an approval as `human` (an OS user on the host).
    pub fn decide_approval(
        &self,
        id: &str,
        human: &str,
        approve: bool,
        reason: Option<String>,
    ) -> Result<ApprovalView, ApprovalError> {
        self.expire_due();
        let now = self.clock.now();
        let mut state = self.lock();
        let Some(approval) = state.approvals.iter_mut().find(|a| a.id == id) else {
            return Err(ApprovalError::Unknown(id.to_owned()));
        };
        if approval.state != ApprovalState::Pending {
            let word = match &approval.state {
                ApprovalState::Approved => "approved already",
                ApprovalState::Denied { .. } => "denied",
                ApprovalState::Expired => "expired",
                ApprovalState::Used => "used",
                ApprovalState::Cancelled { .. } => "cancelled",
                ApprovalState::Pending => "pending",
            };
            return Err(ApprovalError::Decided(id.to_owned(), word.to_owned()));
        }
        let allowed: Vec<&Requirement> = approval
            .requirements
            .iter()
            .filter(|r| self.engine.may_approve(r, human))
            .collect();
        if allowed.is_empty() {
            let who: Vec<String> = approval
                .requirements
                .iter()
                .flat_map(|r| r.by.clone())
                .collect();
            return Err(ApprovalError::NotAnApprover(
                human.to_owned(),
                id.to_owned(),
                who.join(", "),
            ));
        }
        let digest = approval.digest.clone();
        if !approve {
            approval.state = ApprovalState::Denied {
                by: human.to_owned(),
                reason: reason.clone(),
            };
            approval.notify.notify_waiters();
            let view = self.view(approval);
            drop(state);
            self.journal
                .observe(EventBody::ApprovalDenied(ApprovalDenied {
                    effect_id: digest,
                    approver: human.to_owned(),
                    reason,
                }));
            return Ok(view);
        }
        if approval.grants.iter().any(|g| g.approver == human) {
            let count = approval
                .requirements
                .iter()
                .map(|r| r.count)
                .max()
                .unwrap_or(1);
            return Err(ApprovalError::Twice(human.to_owned(), id.to_owned(), count));
        }
        approval.grants.push(Grant {
            approver: human.to_owned(),
            at: rfc3339(now),
            reason: reason.clone(),
        });
        let satisfied = approval.requirements.iter().all(|r| {
            let have = approval
                .grants
                .iter()
                .filter(|g| self.engine.may_approve(r, &g.approver))
                .count();
            have >= r.count as usize
        });
        if satisfied {
            approval.state = ApprovalState::Approved;
            // To be used within one approval timeout of being granted, or it expires.
            approval.expires = now + self.approval_timeout;
            approval.notify.notify_waiters();
        }
        let view = self.view(approval);
        drop(state);
        self.journal
            .observe(EventBody::ApprovalGranted(ApprovalGranted {
                effect_id: digest,
                approver: human.to_owned(),
            }));
        Ok(view)
    }

    fn view(&self, a: &PendingApproval) -> ApprovalView {
        let enables = match &a.effect {
            Effect::Action { kind, .. } => {
                let run = self
                    .engine
                    .declared_actions()
                    .get(kind)
                    .map(|_| kind.clone())
                    .unwrap_or_default();
                format!(
                    "the task performs `{}` once (action `{run}`), with exactly these arguments",
                    a.effect.describe()
                )
            }
            Effect::Exec { argv, .. } => format!(
                "the task runs `{}` once, with exactly these arguments",
                argv.iter()
                    .map(|a| remit_types::effect::shell_word(a))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            other => format!("the task performs `{}` once", other.describe()),
        };
        ApprovalView {
            id: a.id.clone(),
            task: self.principal.task.clone(),
            agent: self.principal.agent.clone(),
            owner: self.principal.owner.clone(),
            requester: self.principal.requester.clone(),
            kind: a.effect.kind().to_owned(),
            effect: a.effect.describe(),
            details: serde_json::to_value(&a.effect).unwrap_or_default(),
            digest: a.digest.clone(),
            policies: a
                .policies
                .iter()
                .map(|p| {
                    let reason = self
                        .engine
                        .policies()
                        .iter()
                        .find(|i| &i.id == p)
                        .and_then(|i| i.reason.clone())
                        .unwrap_or_default();
                    format!("{p}: {reason}")
                })
                .collect(),
            enables,
            requirements: a
                .requirements
                .iter()
                .map(|r| RequirementView {
                    id: r.id.clone(),
                    by: r.by.clone(),
                    count: r.count,
                    have: a
                        .grants
                        .iter()
                        .filter(|g| self.engine.may_approve(r, &g.approver))
                        .count() as u32,
                })
                .collect(),
            grants: a.grants.clone(),
            requested: rfc3339(a.requested),
            expires: rfc3339(a.expires),
            state: a.state.clone(),
        }
    }

    /// Every approval of the task (pending first).
    pub fn approvals(&self) -> Vec<ApprovalView> {
        self.expire_due();
        let state = self.lock();
        let mut views: Vec<ApprovalView> = state.approvals.iter().map(|a| self.view(a)).collect();
        views.sort_by_key(|v| v.state != ApprovalState::Pending);
        views
    }

    /// One approval.
    pub fn approval(&self, id: &str) -> Option<ApprovalView> {
        self.expire_due();
        let state = self.lock();
        state
            .approvals
            .iter()
            .find(|a| a.id == id)
            .map(|a| self.view(a))
    }

    /// Wait until an approval leaves `Pending` or `wait` passes; returns its view.
    pub async fn wait_approval(&self, id: &str, wait: Duration) -> Option<ApprovalView> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notify = {
                let state = self.lock();
                let a = state.approvals.iter().find(|a| a.id == id)?;
                if a.state != ApprovalState::Pending {
                    return Some(self.view(a));
                }
                Arc::clone(&a.notify)
            };
            let notified = notify.notified();
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return self.approval(id);
            }
            let expires_in = self.expires_in(id).unwrap_or(Duration::ZERO);
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep((deadline - now).min(expires_in + Duration::from_millis(5))) => { self.expire_due(); }
            }
        }
    }

    /// The task's denials so far (newest last).
    pub fn denials(&self) -> Vec<DenialView> {
        self.lock().denials.clone()
    }

    /// The counters.
    pub fn counters(&self) -> Counters {
        self.lock().counters
    }

    /// Effects performed (or attempted), by kind.
    pub fn performed_counts(&self) -> BTreeMap<String, u64> {
        self.lock()
            .performed
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Effects authorized and not reported yet, by kind (each holds a quota slot).
    pub fn in_progress_counts(&self) -> BTreeMap<String, u64> {
        self.lock()
            .in_flight
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Cancel everything still open (the task is ending), recorded in the ledger: open
    /// approvals, and effects started without an outcome yet (recorded as failed; a report
    /// that comes later is not recorded: the task's end is its last event).
    pub fn close(&self, reason: &str) {
        let mut state = self.lock();
        let cancelled = Self::cancel_open(&mut state, reason);
        let mut unfinished: Vec<(u64, String)> = state.started.drain().collect();
        drop(state);
        self.record_cancelled(cancelled);
        unfinished.sort();
        for (_, effect_id) in unfinished {
            self.journal.observe(EventBody::EffectFailed(EffectFailed {
                effect_id,
                error: format!("{reason} before it finished"),
            }));
        }
        self.closed.store(true, Ordering::SeqCst);
        self.closed_notify.notify_waiters();
    }

    /// Resolves once the task has ended and [`Gate::close`] ran: nothing of the task is
    /// left running by then.
    pub async fn wait_closed(&self) {
        loop {
            let notified = self.closed_notify.notified();
            if self.closed.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}
