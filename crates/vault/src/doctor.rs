//! What `remit doctor` reports about credentials: leases stuck open.

use std::path::Path;

use remit_identity::sqlite::{self, Durability};
use serde::Serialize;

use crate::broker::stuck_in;
use crate::error::{Result, VaultError};
use crate::lease::{COLUMNS, Lease, LeaseState, row_to_lease};
use crate::store::vault_db_path;

/// A lease that needs attention, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StuckLease {
    /// The lease.
    pub lease: Lease,
    /// Why it is listed, one line.
    pub why: String,
}

/// Leases of `home` that are stuck: a revocation that keeps failing, a supervisor that died
/// holding them (until the next supervisor recovers them), or open a minute past expiry.
/// Reads the lease table only (no master key needed); an absent vault has none.
pub fn stuck_leases(home: &Path) -> Result<Vec<StuckLease>> {
    let path = vault_db_path(home);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let conn = sqlite::open(&path, Durability::Full)?;
    let leases: Vec<Lease> = {
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM leases WHERE state != 'revoked' ORDER BY issued, rowid"
            ))
            .map_err(|e| VaultError::Store(path.clone(), e))?;
        let rows = stmt
            .query_map([], row_to_lease)
            .map_err(|e| VaultError::Store(path.clone(), e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| VaultError::Store(path.clone(), e))?
    };
    let now = std::time::SystemTime::now();
    Ok(stuck_in(&leases, now)?
        .into_iter()
        .map(|lease| {
            let why = if let Some(error) = &lease.last_error {
                format!(
                    "revocation ({}) failed {} time(s): {error}",
                    lease.revoke_reason.as_deref().unwrap_or("requested"),
                    lease.attempts
                )
            } else if !lease.owner.is_alive() {
                format!(
                    "its supervisor (pid {}) is gone; the next `remit run` revokes it",
                    lease.owner.pid
                )
            } else if lease.state == LeaseState::Open {
                "expired but still open".to_owned()
            } else {
                "being issued".to_owned()
            };
            StuckLease { lease, why }
        })
        .collect())
}
