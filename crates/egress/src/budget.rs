//! Byte budgets: one for the task, one per destination host. Bytes are charged as they
//! pass; a transfer that would exceed a budget is cut, and new requests are refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use remit_types::network::Budget;

/// The task's budgets.
#[derive(Debug, Default)]
pub(crate) struct Budgets {
    total: Option<u64>,
    per_host: Option<u64>,
    used: Arc<AtomicU64>,
    hosts: Mutex<HashMap<String, Arc<AtomicU64>>>,
}

/// What one transfer charges: the task's counter and its host's.
#[derive(Debug, Clone)]
pub(crate) struct Meter {
    host: String,
    total: Option<u64>,
    per_host: Option<u64>,
    used: Arc<AtomicU64>,
    host_used: Arc<AtomicU64>,
}

impl Budgets {
    pub(crate) fn new(budget: &Budget) -> Budgets {
        Budgets {
            total: budget.total.map(|b| b.0),
            per_host: budget.per_host.map(|b| b.0),
            ..Budgets::default()
        }
    }

    /// Whether any budget is set.
    pub(crate) fn limited(&self) -> bool {
        self.total.is_some() || self.per_host.is_some()
    }

    /// A meter for `host`, or why no more bytes may go there.
    pub(crate) fn meter(&self, host: &str) -> Result<Meter, String> {
        let host_used = match self.hosts.lock() {
            Ok(mut hosts) => {
                if hosts.len() > 65_536 && !hosts.contains_key(host) {
                    // Bounded memory: past this many hosts, new ones share one counter.
                    Arc::clone(hosts.entry("*".to_owned()).or_default())
                } else {
                    Arc::clone(hosts.entry(host.to_owned()).or_default())
                }
            }
            Err(_) => return Err("the budget counters are unavailable".into()),
        };
        let meter = Meter {
            host: host.to_owned(),
            total: self.total,
            per_host: self.per_host,
            used: Arc::clone(&self.used),
            host_used,
        };
        meter.charge(0)?;
        Ok(meter)
    }

    /// Bytes used by the task so far.
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

impl Meter {
    /// Charge `n` bytes; an error (the reason) when a budget is exceeded.
    pub(crate) fn charge(&self, n: u64) -> Result<(), String> {
        let total = self.used.fetch_add(n, Ordering::Relaxed).saturating_add(n);
        let host = self
            .host_used
            .fetch_add(n, Ordering::Relaxed)
            .saturating_add(n);
        if let Some(limit) = self.total
            && (total > limit || (n == 0 && total >= limit))
        {
            return Err(format!(
                "this task's network budget of {} is used up (network.budget.total); no more bytes may leave or arrive",
                remit_types::size::ByteSize(limit)
            ));
        }
        if let Some(limit) = self.per_host
            && (host > limit || (n == 0 && host >= limit))
        {
            return Err(format!(
                "this task's network budget of {} for `{}` is used up (network.budget.per_host); other hosts may still be reached",
                remit_types::size::ByteSize(limit),
                self.host
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use remit_types::size::ByteSize;

    #[test]
    fn budgets() {
        let b = Budgets::new(&Budget {
            total: Some(ByteSize(100)),
            per_host: Some(ByteSize(60)),
        });
        let a = b.meter("a").unwrap();
        assert!(a.charge(50).is_ok());
        assert!(a.charge(20).unwrap_err().contains("`a`"));
        assert!(b.meter("a").is_err());
        let c = b.meter("c").unwrap();
        assert!(c.charge(40).unwrap_err().contains("network.budget.total"));
        assert!(b.meter("d").is_err());
        assert_eq!(b.used(), 110);
    }
}
