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

    /// Everything recorded so far is durable when this returns.
    fn flush(&self) -> Result<(), String>;

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

    fn flush(&self) -> Result<(), String> {
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

    fn flush(&self) -> Result<(), String> {
        Ok(())
    }

    fn failure(&self) -> Option<String> {
        None
    }
}
