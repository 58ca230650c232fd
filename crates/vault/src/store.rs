//! The vault: secrets sealed at rest, in one SQLite file shared by every remit process of a
//! home (`$REMIT_HOME/vault/vault.db`, mode 0600, WAL, `synchronous = FULL`), together with
//! the lease table and the agents inventory.
//!
//! A secret row holds its name, version, times and `seal(value)`: AES-256-GCM under the
//! home's master key with `secret <name> v<version>` as associated data. The file never
//! holds a value in clear; values are read into [`SecretValue`]s, zeroed when dropped.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use remit_identity::clock::{Clock, from_unix_millis, rfc3339, unix_millis};
use remit_identity::seal::{MasterKey, master_key_path};
use remit_identity::sqlite::{self, Durability};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use crate::error::{Result, VaultError};
use crate::secret::SecretValue;

/// The largest secret value, in bytes.
pub const MAX_VALUE: usize = 64 * 1024;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    sealed BLOB NOT NULL,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    updated_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    id TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    agent TEXT NOT NULL,
    name TEXT NOT NULL,
    backend TEXT NOT NULL,
    scope TEXT NOT NULL,
    destination TEXT,
    delivery TEXT NOT NULL,
    issued INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('issuing', 'open', 'revoked')),
    handle BLOB,
    lookup TEXT,
    detail TEXT,
    owner_pid INTEGER NOT NULL,
    owner_start INTEGER NOT NULL,
    owner_boot TEXT NOT NULL,
    revoke_reason TEXT,
    revoke_requested INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    next_attempt INTEGER,
    revoked INTEGER
);
CREATE INDEX IF NOT EXISTS leases_task ON leases (task);
CREATE INDEX IF NOT EXISTS leases_live ON leases (state, expires) WHERE state != 'revoked';
CREATE INDEX IF NOT EXISTS leases_agent ON leases (agent, state);
CREATE UNIQUE INDEX IF NOT EXISTS leases_lookup ON leases (lookup) WHERE lookup IS NOT NULL;
CREATE TABLE IF NOT EXISTS agents (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    purpose TEXT,
    risk TEXT NOT NULL,
    default_remit TEXT,
    status TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'revoked')),
    status_by TEXT NOT NULL,
    status_at INTEGER NOT NULL,
    status_reason TEXT,
    created INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    last_task TEXT,
    last_task_at INTEGER
);
"#;

/// `$REMIT_HOME/vault/vault.db`.
pub fn vault_db_path(home: &Path) -> PathBuf {
    home.join("vault").join("vault.db")
}

/// Whether `name` may name a secret, a credential or an agent: letters, digits, `-` and
/// `_`, starting with a letter, at most 64 characters.
pub fn valid_name(name: &str) -> bool {
    remit_types::effect::valid_action_name(name)
}

/// A secret as listed: never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretInfo {
    /// Its name.
    pub name: String,
    /// Its version (1 when set, +1 at each rotation).
    pub version: i64,
    /// When it was first set (RFC 3339).
    pub created: String,
    /// When its value last changed (RFC 3339).
    pub updated: String,
    /// Who changed it last.
    pub updated_by: String,
}

/// The vault of one remit home. One per process is enough; it is `Sync`.
pub struct Vault {
    path: PathBuf,
    conn: Mutex<Connection>,
    master: MasterKey,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("path", &self.path)
            .field("master", &self.master)
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// Open the vault of `home` (creating the master key and the store when missing).
    pub fn open_home(home: &Path, clock: Arc<dyn Clock>) -> Result<Vault> {
        let master = MasterKey::load_or_create(&master_key_path(home))?;
        Vault::open(&vault_db_path(home), master, clock)
    }

    /// Open the store at `path`, sealing with `master`.
    pub fn open(path: &Path, master: MasterKey, clock: Arc<dyn Clock>) -> Result<Vault> {
        let conn = sqlite::open(path, Durability::Full)?;
        conn.execute_batch(&format!("BEGIN IMMEDIATE;{SCHEMA}COMMIT;"))
            .map_err(|e| VaultError::Store(path.into(), e))?;
        Ok(Vault {
            path: path.to_owned(),
            conn: Mutex::new(conn),
            master,
            clock,
        })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub(crate) fn db(&self) -> MutexGuard<'_, Connection> {
        match self.conn.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub(crate) fn err(&self, e: rusqlite::Error) -> VaultError {
        VaultError::Store(self.path.clone(), e)
    }

    pub(crate) fn now_ms(&self) -> i64 {
        unix_millis(self.clock.now())
    }

    fn check(name: &str, value: &[u8]) -> Result<()> {
        if !valid_name(name) {
            return Err(VaultError::BadName(name.to_owned()));
        }
        if value.is_empty() {
            return Err(VaultError::BadValue(name.to_owned(), "empty"));
        }
        if value.len() > MAX_VALUE {
            return Err(VaultError::BadValue(name.to_owned(), "larger than 64 KiB"));
        }
        Ok(())
    }

    /// Set a secret (creating it, or replacing its value as a new version).
    pub fn set(&self, name: &str, value: &[u8], by: &str) -> Result<SecretInfo> {
        Vault::check(name, value)?;
        self.write(name, value, by, false)
    }

    /// Replace the value of an existing secret (a new version). Leases already issued keep
    /// what they were given until they end.
    pub fn rotate(&self, name: &str, value: &[u8], by: &str) -> Result<SecretInfo> {
        Vault::check(name, value)?;
        self.write(name, value, by, true)
    }

    fn write(&self, name: &str, value: &[u8], by: &str, must_exist: bool) -> Result<SecretInfo> {
        let now = self.now_ms();
        let mut conn = self.db();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| VaultError::Store(self.path.clone(), e))?;
        let current: Option<(i64, i64)> = tx
            .query_row(
                "SELECT version, created FROM secrets WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| VaultError::Store(self.path.clone(), e))?;
        if must_exist && current.is_none() {
            return Err(VaultError::NoSecret(name.to_owned()));
        }
        let version = current.map(|(v, _)| v + 1).unwrap_or(1);
        let created = current.map(|(_, c)| c).unwrap_or(now);
        let sealed = self.master.seal(&context(name, version), value)?;
        tx.execute(
            "INSERT INTO secrets (name, version, sealed, created, updated, updated_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (name) DO UPDATE SET version = excluded.version,
                 sealed = excluded.sealed, updated = excluded.updated,
                 updated_by = excluded.updated_by",
            params![name, version, sealed, created, now, by],
        )
        .map_err(|e| VaultError::Store(self.path.clone(), e))?;
        tx.commit()
            .map_err(|e| VaultError::Store(self.path.clone(), e))?;
        Ok(SecretInfo {
            name: name.to_owned(),
            version,
            created: rfc3339(from_unix_millis(created)),
            updated: rfc3339(from_unix_millis(now)),
            updated_by: by.to_owned(),
        })
    }

    /// A secret's value.
    pub fn get(&self, name: &str) -> Result<SecretValue> {
        if !valid_name(name) {
            return Err(VaultError::BadName(name.to_owned()));
        }
        let row: Option<(i64, Vec<u8>)> = self
            .db()
            .query_row(
                "SELECT version, sealed FROM secrets WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let (version, sealed) = row.ok_or_else(|| VaultError::NoSecret(name.to_owned()))?;
        Ok(SecretValue::from(
            self.master.open(&context(name, version), &sealed)?,
        ))
    }

    /// Every secret, by name (never their values).
    pub fn list(&self) -> Result<Vec<SecretInfo>> {
        let conn = self.db();
        let mut stmt = conn
            .prepare(
                "SELECT name, version, created, updated, updated_by FROM secrets ORDER BY name",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(SecretInfo {
                    name: r.get(0)?,
                    version: r.get(1)?,
                    created: rfc3339(from_unix_millis(r.get(2)?)),
                    updated: rfc3339(from_unix_millis(r.get(3)?)),
                    updated_by: r.get(4)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    /// Remove a secret; `false` when there was none.
    pub fn remove(&self, name: &str) -> Result<bool> {
        let n = self
            .db()
            .execute("DELETE FROM secrets WHERE name = ?1", [name])
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    /// Seal bytes for a lease record (revocation handles).
    pub(crate) fn seal_handle(&self, lease: &str, handle: &[u8]) -> Result<Vec<u8>> {
        Ok(self.master.seal(&format!("lease {lease}"), handle)?)
    }

    /// Open a lease record's handle.
    pub(crate) fn open_handle(&self, lease: &str, sealed: &[u8]) -> Result<SecretValue> {
        Ok(SecretValue::from(
            self.master.open(&format!("lease {lease}"), sealed)?,
        ))
    }
}

fn context(name: &str, version: i64) -> String {
    format!("secret {name} v{version}")
}
