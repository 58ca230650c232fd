//! Where the gate records what happens: the ledger, through a small trait so the gate's
//! logic is testable with an in-memory journal.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use remit_types::event::{EventBody, NewEvent};

/// The gate's record.
pub trait Journal: Send + Sync {
    /// Record an observation (group-committed, never blocks on the disk).
    fn observe(&self, body: EventBody);

    /// Record an event and resolve once it is durable. An effect waits for this before it
    /// proceeds; an error means it must not proceed.
    fn durable(
        &self,
        body: EventBody,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;

    /// Record the task's last events, together, and end the journal: everything recorded is
    /// durable when this returns. The ledger commits the last events with the checkpoint it
    /// keeps for them, in one transaction (one `fsync`) unless an earlier commit is still
    /// on its way; nothing can be recorded afterwards.
    fn finish(&self, last: Vec<EventBody>) -> Result<(), String>;

    /// Block until everything recorded so far is durable; `Err` when it cannot be (what it
    /// was to precede must then not happen).
    fn settle(&self) -> Result<(), String>;

    /// The first failure the journal had, if any (a gate fails closed on it).
    fn failure(&self) -> Option<String>;
}

/// The ledger as the gate's journal, for one task.
pub struct LedgerJournal {
    ledger: remit_ledger::Ledger,
    task: String,
    agent: String,
    failure: Mutex<Option<String>>,
}

impl std::fmt::Debug for LedgerJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerJournal")
            .field("task", &self.task)
            .finish()
    }
}

impl LedgerJournal {
    /// Record `task`'s events, run by `agent`, in `ledger`.
    pub fn new(ledger: remit_ledger::Ledger, task: &str, agent: &str) -> LedgerJournal {
        LedgerJournal {
            ledger,
            task: task.to_owned(),
            agent: agent.to_owned(),
            failure: Mutex::new(None),
        }
    }

    /// The ledger.
    pub fn ledger(&self) -> &remit_ledger::Ledger {
        &self.ledger
    }

    fn event(&self, body: EventBody) -> NewEvent {
        NewEvent::new(self.task.clone(), self.agent.clone(), body)
    }

    fn fail(&self, error: String) -> String {
        if let Ok(mut f) = self.failure.lock()
            && f.is_none()
        {
            *f = Some(error.clone());
        }
        error
    }
}

impl Journal for LedgerJournal {
    fn observe(&self, body: EventBody) {
        if let Err(e) = self.ledger.append(self.event(body)) {
            self.fail(e.to_string());
        }
    }

    fn durable(
        &self,
        body: EventBody,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        let pending = self.ledger.append_durable(self.event(body));
        Box::pin(async move {
            match pending {
                Ok(durable) => durable
                    .await
                    .map(drop)
                    .map_err(|e| self.fail(e.to_string())),
                Err(e) => Err(self.fail(e.to_string())),
            }
        })
    }

    fn finish(&self, last: Vec<EventBody>) -> Result<(), String> {
        let events: Vec<NewEvent> = last.into_iter().map(|body| self.event(body)).collect();
        self.ledger
            .finish(events)
            .map(drop)
            .map_err(|e| self.fail(e.to_string()))
    }

    fn settle(&self) -> Result<(), String> {
        self.ledger.flush().map_err(|e| self.fail(e.to_string()))
    }

    fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }
}

/// A journal in memory (tests).
#[derive(Debug, Default, Clone)]
pub struct MemoryJournal {
    events: Arc<Mutex<Vec<(EventBody, bool)>>>,
}

impl MemoryJournal {
    /// Every event so far, with whether it was recorded durably.
    pub fn events(&self) -> Vec<(EventBody, bool)> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl Journal for MemoryJournal {
    fn observe(&self, body: EventBody) {
        if let Ok(mut e) = self.events.lock() {
            e.push((body, false));
        }
    }

    fn durable(
        &self,
        body: EventBody,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        if let Ok(mut e) = self.events.lock() {
            e.push((body, true));
        }
        Box::pin(async { Ok(()) })
    }

    fn finish(&self, last: Vec<EventBody>) -> Result<(), String> {
        if let Ok(mut e) = self.events.lock() {
            e.extend(last.into_iter().map(|body| (body, true)));
        }
        Ok(())
    }

    fn settle(&self) -> Result<(), String> {
        if let Ok(mut e) = self.events.lock() {
            for (_, durable) in e.iter_mut() {
                *durable = true;
            }
        }
        Ok(())
    }

    fn failure(&self) -> Option<String> {
        None
    }
}

/// A journal that keeps secrets out of the record: command lines and effect attributes go
/// through the scanner (and the task's known secrets) before they reach the inner journal.
/// Until the scanner is built, events wait in order; a durable event waits for it.
pub struct RedactingJournal<J: Journal> {
    inner: Arc<J>,
    redactor: crate::secrets::LazyScanner,
    queue: Mutex<Vec<EventBody>>,
}

impl<J: Journal> std::fmt::Debug for RedactingJournal<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedactingJournal").finish_non_exhaustive()
    }
}

impl<J: Journal> RedactingJournal<J> {
    /// Redact what goes into `inner`.
    pub fn new(inner: Arc<J>, redactor: crate::secrets::LazyScanner) -> RedactingJournal<J> {
        RedactingJournal {
            inner,
            redactor,
            queue: Mutex::new(Vec::new()),
        }
    }

    fn clean(&self, body: EventBody) -> EventBody {
        let redact = |text: &str| self.redactor.redact(text);
        match body {
            EventBody::Exec(mut exec) => {
                exec.argv = exec.argv.iter().map(|a| redact(a)).collect();
                exec.cwd = redact(&exec.cwd);
                EventBody::Exec(exec)
            }
            // Names the task chose (a file or directory named after a secret) and text that
            // repeats what failed.
            EventBody::FileChanges(mut changes) => {
                changes.paths = changes.paths.iter().map(|p| redact(p)).collect();
                EventBody::FileChanges(changes)
            }
            EventBody::TaskEnd(mut end) => {
                end.detail = end.detail.map(|d| redact(&d));
                EventBody::TaskEnd(end)
            }
            EventBody::Decision(mut d) => {
                d.effect.attributes = d
                    .effect
                    .attributes
                    .iter()
                    .map(|(k, v)| (k.clone(), redact(v)))
                    .collect();
                d.effect.target = redact(&d.effect.target);
                EventBody::Decision(d)
            }
            EventBody::ApprovalRequested(mut a) => {
                a.effect.attributes = a
                    .effect
                    .attributes
                    .iter()
                    .map(|(k, v)| (k.clone(), redact(v)))
                    .collect();
                a.effect.target = redact(&a.effect.target);
                EventBody::ApprovalRequested(a)
            }
            EventBody::EffectStarted(mut e) => {
                e.effect.attributes = e
                    .effect
                    .attributes
                    .iter()
                    .map(|(k, v)| (k.clone(), redact(v)))
                    .collect();
                e.effect.target = redact(&e.effect.target);
                EventBody::EffectStarted(e)
            }
            // Free text that may repeat what failed (a spawn error repeats the argv, a
            // helper its standard error): cleaned like the attributes.
            EventBody::EffectFailed(mut f) => {
                f.error = redact(&f.error);
                EventBody::EffectFailed(f)
            }
            EventBody::EffectPerformed(mut p) => {
                p.outcome = redact(&p.outcome);
                EventBody::EffectPerformed(p)
            }
            EventBody::Violation(mut v) => {
                v.detail = redact(&v.detail);
                EventBody::Violation(v)
            }
            EventBody::ApprovalDenied(mut d) => {
                d.reason = d.reason.map(|r| redact(&r));
                EventBody::ApprovalDenied(d)
            }
            other => other,
        }
    }

    /// Move queued events to the inner journal if the scanner is ready (or `wait`).
    fn drain(&self, wait: bool) {
        if !wait && self.redactor.try_get().is_none() {
            return;
        }
        let queued: Vec<EventBody> = self
            .queue
            .lock()
            .map(|mut q| std::mem::take(&mut *q))
            .unwrap_or_default();
        for body in queued {
            self.inner.observe(self.clean(body));
        }
    }
}

impl<J: Journal> Journal for RedactingJournal<J> {
    fn observe(&self, body: EventBody) {
        self.drain(false);
        if self.redactor.try_get().is_none()
            && let Ok(mut q) = self.queue.lock()
        {
            q.push(body);
            return;
        }
        self.inner.observe(self.clean(body));
    }

    fn durable(
        &self,
        body: EventBody,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        self.drain(true);
        let body = self.clean(body);
        self.inner.durable(body)
    }

    fn finish(&self, last: Vec<EventBody>) -> Result<(), String> {
        self.drain(true);
        self.inner
            .finish(last.into_iter().map(|body| self.clean(body)).collect())
    }

    fn settle(&self) -> Result<(), String> {
        self.drain(true);
        self.inner.settle()
    }

    fn failure(&self) -> Option<String> {
        self.inner.failure()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use remit_types::event::{EffectFailed, Violation};

    #[test]
    fn free_text_is_redacted_too() {
        let token = "tok-0123456789-abcdefghijklmnopqrstuvwxyz";
        let lazy = crate::secrets::LazyScanner::start();
        lazy.set_known(&[token.as_bytes().to_vec()]);
        let inner = Arc::new(MemoryJournal::default());
        let journal = RedactingJournal::new(Arc::clone(&inner), lazy);
        journal
            .finish(vec![
                EventBody::EffectFailed(EffectFailed {
                    effect_id: "e1".into(),
                    error: format!("cannot run `nosuchprog {token}`: not found"),
                }),
                EventBody::Violation(Violation {
                    category: "egress".into(),
                    effect_id: None,
                    rule: None,
                    detail: format!("sent {token} to the wrong host"),
                    blocked: true,
                }),
                EventBody::FileChanges(remit_types::event::FileChanges {
                    added: 1,
                    modified: 0,
                    deleted: 0,
                    diff_sha256: None,
                    paths: vec![format!("A {token}"), "A plain.txt".into()],
                    paths_omitted: 0,
                }),
                // The harmless twin: text without a secret is kept as it was.
                EventBody::EffectFailed(EffectFailed {
                    effect_id: "e2".into(),
                    error: "cannot run `nosuchprog`: not found".into(),
                }),
            ])
            .unwrap();
        let recorded = serde_json::to_string(
            &inner
                .events()
                .into_iter()
                .map(|(e, _)| e)
                .collect::<Vec<_>>(),
        )
        .unwrap();
        assert!(!recorded.contains(token), "{recorded}");
        assert!(
            recorded.contains("cannot run `nosuchprog`: not found"),
            "{recorded}"
        );
        assert!(recorded.contains("cannot run `nosuchprog "), "{recorded}");
        assert!(recorded.contains("A plain.txt"), "{recorded}");
    }
}
