//! The egress proxy as an adapter in front of the gate: every request the proxy reads is an
//! effect the gate decides (and records durably before it goes out); what the proxy
//! observes (bytes, timings, blocked secrets, broken connections) goes to the ledger.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use remit_egress::{EgressEvent, EgressGate, GateDecision};
use remit_types::effect::Effect;

use crate::gate::{Authorized, Gate, Outcome};

/// The gate, as the egress proxy sees it. It is made before the gate exists (the proxy's
/// environment goes into the sandbox spec) and bound to it once the task's ledger is open;
/// until then every request is refused.
#[derive(Default)]
pub struct EgressAdapter {
    gate: OnceLock<Arc<Gate>>,
    /// How long a request may wait for a human's approval.
    wait: OnceLock<Duration>,
    /// Authorized requests and tunnels not yet reported done, by the proxy's id for them.
    open: Mutex<HashMap<u64, Authorized>>,
    /// The task's leases: a credential is injected only while its lease is open.
    leases: OnceLock<Arc<remit_vault::TaskCredentials>>,
    /// Checks the git tokens the task presents (its git leases), for this task.
    git_tokens: OnceLock<(remit_vault::backend::git::GitTokenVerifier, String)>,
}

impl std::fmt::Debug for EgressAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressAdapter").finish_non_exhaustive()
    }
}

impl EgressAdapter {
    /// Bind the adapter to the task's gate.
    pub fn bind(&self, gate: Arc<Gate>, wait: Duration) {
        let _ = self.gate.set(gate);
        let _ = self.wait.set(wait);
    }

    /// The task's leases (set before the proxy serves).
    pub fn set_leases(&self, leases: Arc<remit_vault::TaskCredentials>) {
        let _ = self.leases.set(leases);
    }

    /// Check git tokens against `vault`'s leases; only `task`'s own are accepted.
    pub fn set_git_tokens(&self, vault: Arc<remit_vault::Vault>, task: &str) {
        let _ = self.git_tokens.set((
            remit_vault::backend::git::GitTokenVerifier::new(vault),
            task.to_owned(),
        ));
    }

    /// Record whatever was authorized but never reported done (the task ended first).
    pub fn close(&self) {
        let Some(gate) = self.gate.get() else { return };
        let open: Vec<Authorized> = self
            .open
            .lock()
            .map(|mut m| m.drain().map(|(_, a)| a).collect())
            .unwrap_or_default();
        for authorized in open {
            gate.performed(authorized, "outcome unknown: the task ended");
        }
    }
}

impl EgressAdapter {
    /// The gate's decision on `effect`; an allowed request or tunnel (`request`: the proxy's
    /// id for it) stays open until the proxy reports how it ended.
    async fn decide_as(&self, request: Option<u64>, effect: Effect) -> GateDecision {
        let Some(gate) = self.gate.get() else {
            return GateDecision::Deny {
                policy: "remit".into(),
                reason: "the task is not ready for network access yet".into(),
            };
        };
        let wait = self.wait.get().copied().unwrap_or(Duration::ZERO);
        // A credential is used only under an open lease: checked before the policy, in
        // memory. The refusal is recorded like any other.
        if let Effect::SecretUse { name, .. } = &effect {
            let lease = match self.leases.get() {
                Some(leases) => leases
                    .check(name, std::time::SystemTime::now())
                    .map_err(|e| e.to_string()),
                None => Err(format!("credential `{name}` was not leased to this task")),
            };
            if let Err(reason) = lease {
                gate.refuse(&effect, "lease", &reason);
                return GateDecision::Deny {
                    policy: "lease".into(),
                    reason,
                };
            }
        }
        match gate.request(effect, wait).await {
            Outcome::Authorized(authorized) => {
                if let Err(e) = gate.begin(&authorized).await {
                    gate.failed(authorized, &format!("not recorded: {e}"));
                    return GateDecision::Deny {
                        policy: "ledger".into(),
                        reason: format!(
                            "the request was not sent: its record could not be made durable ({e})"
                        ),
                    };
                }
                match request {
                    // The request's outcome arrives later, as an observation.
                    Some(id) => {
                        self.open
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(id, authorized);
                    }
                    // Pushes, publishes and secret uses are part of a request: done now.
                    None => gate.performed(authorized, "allowed at the egress gate"),
                }
                GateDecision::Allow
            }
            Outcome::Denied { policy, reason } => GateDecision::Deny { policy, reason },
            Outcome::Pending { approval } => GateDecision::Deny {
                policy: "approval".into(),
                reason: format!("approval {approval} was not given in time"),
            },
        }
    }

    /// The open request or tunnel the proxy reports under `id`.
    fn take(&self, id: u64) -> Option<Authorized> {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)
    }
}

impl EgressGate for EgressAdapter {
    async fn decide(&self, effect: Effect) -> GateDecision {
        self.decide_as(None, effect).await
    }

    async fn decide_request(&self, id: u64, effect: Effect) -> GateDecision {
        self.decide_as(Some(id), effect).await
    }

    fn git_token(
        &self,
        token: &str,
        repository: &str,
        access: remit_egress::GitTokenAccess<'_>,
    ) -> Result<(), String> {
        use remit_vault::backend::git::GitAccess;
        let Some((verifier, task)) = self.git_tokens.get() else {
            return Err("this task holds no git token remit issued".into());
        };
        let refs: Vec<&str> = match access {
            remit_egress::GitTokenAccess::Push(refs) => refs.iter().map(String::as_str).collect(),
            remit_egress::GitTokenAccess::Fetch => Vec::new(),
        };
        let access = match access {
            remit_egress::GitTokenAccess::Fetch => GitAccess::Fetch,
            remit_egress::GitTokenAccess::Push(_) => GitAccess::Push(&refs),
        };
        let why = match verifier.verify(token, repository, access) {
            Ok(grant) if grant.task == *task => return Ok(()),
            Ok(grant) => format!(
                "this git token belongs to another task (`{}`); use the one in this task's environment",
                grant.task
            ),
            Err(e) => e.to_string(),
        };
        if let Some(gate) = self.gate.get() {
            gate.violation("credentials.git", &why, Some("credentials.git"));
        }
        Err(why)
    }

    fn observe(&self, event: EgressEvent) {
        let Some(gate) = self.gate.get() else { return };
        match event {
            EgressEvent::Request(r) => {
                let authorized = self.take(r.id);
                // Refused after the gate allowed it (a budget, a secret in the body, a git
                // token, a push ref) before it went out: not performed.
                if let Some(denial) = r.denied.as_ref().filter(|_| !r.sent) {
                    if let Some(authorized) = authorized {
                        gate.failed(
                            authorized,
                            &format!(
                                "refused by `{}` before it was sent: {}",
                                denial.policy, denial.reason
                            ),
                        );
                    }
                    return;
                }
                // Refused once it had gone out (a secret further into a streamed body, an
                // answer withheld from the task, an origin that broke off): the origin may
                // have received and acted on it, so it is performed, and the record says how
                // it ended and how much of the body went.
                if let Some(denial) = &r.denied {
                    if let Some(authorized) = authorized {
                        gate.performed_with(
                            authorized,
                            &format!(
                                "sent, then refused by `{}` (status {} to the task): {}",
                                denial.policy, r.status, denial.reason
                            ),
                            Some(r.request_bytes),
                            Some(r.response_bytes),
                        );
                    }
                    return;
                }
                if let Some(authorized) = authorized {
                    let outcome = match &r.error {
                        Some(e) => format!("status {} ({e})", r.status),
                        None => format!("status {} in {} µs", r.status, r.duration_us),
                    };
                    gate.performed_with(
                        authorized,
                        &outcome,
                        Some(r.request_bytes),
                        Some(r.response_bytes),
                    );
                }
            }
            EgressEvent::Violation(v) => {
                gate.violation(
                    "egress",
                    &format!(
                        "{} to {}:{}: {}",
                        v.method.as_deref().unwrap_or("connection"),
                        v.host,
                        v.port,
                        v.reason
                    ),
                    Some(&v.policy),
                );
            }
            EgressEvent::ConnectionError(e) => {
                gate.journal()
                    .observe(remit_types::event::EventBody::Violation(
                        remit_types::event::Violation {
                            category: "egress.connection".into(),
                            effect_id: None,
                            rule: None,
                            detail: format!(
                                "{:?} {}: {}",
                                e.stage,
                                e.host.as_deref().unwrap_or("?"),
                                e.error
                            ),
                            blocked: false,
                        },
                    ));
            }
            EgressEvent::Tunnel(t) => {
                let Some(authorized) = self.take(t.id) else {
                    return;
                };
                match (&t.upstream, &t.error) {
                    // Refused or failed before anything was connected: nothing was sent.
                    (None, error) => gate.failed(
                        authorized,
                        error.as_deref().unwrap_or("the tunnel was not opened"),
                    ),
                    (Some(addr), error) => gate.performed_with(
                        authorized,
                        &match error {
                            Some(e) => {
                                format!("tunnel to {addr} cut after {} µs: {e}", t.duration_us)
                            }
                            None => format!("tunnel to {addr} closed after {} µs", t.duration_us),
                        },
                        Some(t.bytes_up),
                        Some(t.bytes_down),
                    ),
                }
            }
            _ => {}
        }
    }
}
