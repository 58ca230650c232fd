//! Where leases are recorded: the ledger, through a small trait.
//!
//! Every lease is recorded durably when issued (`credential_issued`, before the task gets
//! it) and when revoked (`credential_revoked`); a revocation that keeps failing is recorded
//! as a `violation` of category `credential_revocation_failed`, and stays open.

use std::sync::Mutex;

use remit_types::event::NewEvent;

/// Records lease events. [`remit_ledger::Ledger`] implements it; the supervisor may pass its
/// own ledger handle.
pub trait LeaseRecorder: Send + Sync {
    /// Record `events` in order; return once all of them are durable. An error means they
    /// may not be recorded.
    fn record(&self, events: Vec<NewEvent>) -> Result<(), String>;
}

impl LeaseRecorder for remit_ledger::Ledger {
    fn record(&self, events: Vec<NewEvent>) -> Result<(), String> {
        let mut pending = Vec::with_capacity(events.len());
        for event in events {
            pending.push(self.append_durable(event).map_err(|e| e.to_string())?);
        }
        for durable in pending {
            durable.wait().map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// An in-memory recorder (tests, dry runs). It can be told to fail.
#[derive(Debug, Default)]
pub struct MemoryRecorder {
    events: Mutex<Vec<NewEvent>>,
    failing: Mutex<Option<String>>,
}

impl MemoryRecorder {
    /// Everything recorded so far.
    pub fn events(&self) -> Vec<NewEvent> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Make every later `record` fail with `error` (`None`: succeed again).
    pub fn fail_with(&self, error: Option<&str>) {
        if let Ok(mut f) = self.failing.lock() {
            *f = error.map(str::to_owned);
        }
    }
}

impl LeaseRecorder for MemoryRecorder {
    fn record(&self, events: Vec<NewEvent>) -> Result<(), String> {
        if let Ok(f) = self.failing.lock()
            && let Some(error) = f.as_ref()
        {
            return Err(error.clone());
        }
        match self.events.lock() {
            Ok(mut all) => {
                all.extend(events);
                Ok(())
            }
            Err(_) => Err("the recorder is poisoned".into()),
        }
    }
}
