//! PostgreSQL dynamic roles: a login role per lease, made when the task starts and dropped
//! when the lease ends.
//!
//! Issue, in one transaction on the admin connection (a role with `CREATEROLE`, read from
//! the vault secret the grant names):
//!
//! ```sql
//! CREATE ROLE "remit_<lease>" LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE
//!     NOREPLICATION NOBYPASSRLS CONNECTION LIMIT <n> VALID UNTIL '<expiry>'
//!     PASSWORD 'SCRAM-SHA-256$…';          -- the verifier, computed here: no clear password
//! GRANT CONNECT ON DATABASE "<db>" TO "remit_<lease>";
//! GRANT USAGE ON SCHEMA "<s>" TO …;  GRANT SELECT ON ALL TABLES IN SCHEMA "<s>" TO …;
//! ```
//!
//! (`read_write` adds `INSERT, UPDATE, DELETE` and sequence `USAGE, SELECT`; `tables`
//! narrows to single tables.) The task gets `postgresql://remit_<lease>:<password>@host/db`.
//!
//! Revoke: `ALTER ROLE … NOLOGIN` (no new session can start), terminate every session of
//! the role and wait until they are gone (`VALID UNTIL` alone leaves open sessions running),
//! `REASSIGN OWNED BY … TO CURRENT_USER`, `DROP OWNED BY …`, `DROP ROLE`. A role that is
//! already gone is a success. Many leases are revoked in one batch per server.
//!
//! The connection is made without TLS (a Unix socket or loopback, as the admin connection
//! string says); call these from a blocking context, not from inside an async runtime.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postgres::config::Host;
use postgres::{Client, Config, NoTls};
use remit_identity::clock::rfc3339;
use remit_identity::jws::b64url;
use remit_identity::seal::random_bytes;
use remit_types::credentials::{DbAccess, PostgresGrant};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{Backend, BackendError, Draft, Handle, Issued, from_handle, from_scope, to_handle};
use crate::lease::Lease;
use crate::secret::SecretValue;
use crate::store::Vault;

/// How long revocation waits for terminated sessions to go away.
const SESSION_WAIT: Duration = Duration::from_secs(10);
/// Roles dropped per statement when revoking many.
const BATCH: usize = 250;

/// What a PostgreSQL lease grants (its scope): the grant, as the remit wrote it.
pub type PostgresScope = PostgresGrant;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PgHandle {
    admin: String,
    database: Option<String>,
    role: String,
}

/// The role name of a lease: `remit_<the lease id's hex>`.
pub fn role_name(lease_id: &str) -> String {
    format!(
        "remit_{}",
        lease_id
            .trim_start_matches("lease-")
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase()
    )
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn classify(e: &postgres::Error) -> BackendError {
    // Errors the server answered are refusals; anything else (connection refused, closed,
    // timed out) may pass: it is retried.
    match e.as_db_error() {
        Some(db) => BackendError::Refused(format!("postgresql: {}", db.message())),
        None => BackendError::Unavailable(format!("postgresql unavailable: {e}")),
    }
}

/// The PostgreSQL backend. It keeps one admin connection per admin secret and database.
pub struct PostgresBackend {
    vault: Arc<Vault>,
    clients: Mutex<HashMap<String, Client>>,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend").finish_non_exhaustive()
    }
}

impl PostgresBackend {
    /// A backend reading admin connection strings from `vault`.
    pub fn new(vault: Arc<Vault>) -> PostgresBackend {
        PostgresBackend {
            vault,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn config(&self, admin: &str, database: Option<&str>) -> Result<Config, BackendError> {
        let dsn = self
            .vault
            .get(admin)
            .map_err(|e| BackendError::Invalid(e.to_string()))?;
        let text = dsn.expose_str().ok_or_else(|| {
            BackendError::Invalid(format!("vault secret `{admin}` is not a connection string"))
        })?;
        // Never quote the parse error: it may echo the string, password included.
        let mut config = Config::from_str(text.trim()).map_err(|_| {
            BackendError::Invalid(format!(
                "vault secret `{admin}` is not a PostgreSQL connection string"
            ))
        })?;
        if let Some(db) = database {
            config.dbname(db);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.application_name("remit-vault");
        Ok(config)
    }

    /// Run `f` on the admin connection for (`admin`, `database`), connecting if needed; a
    /// broken connection is dropped so the next call reconnects.
    fn with_client<T>(
        &self,
        admin: &str,
        database: Option<&str>,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, BackendError> {
        let key = format!("{admin}\0{}", database.unwrap_or(""));
        let mut clients = match self.clients.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if clients.get(&key).is_none_or(Client::is_closed) {
            let config = self.config(admin, database)?;
            let client = config.connect(NoTls).map_err(|e| classify(&e))?;
            clients.insert(key.clone(), client);
        }
        let Some(client) = clients.get_mut(&key) else {
            return Err(BackendError::Unavailable(
                "postgresql: no connection".into(),
            ));
        };
        match f(client) {
            Ok(v) => Ok(v),
            Err(e) => {
                if e.as_db_error().is_none() || client.is_closed() {
                    clients.remove(&key);
                }
                Err(classify(&e))
            }
        }
    }

    /// The connection string the task gets.
    fn task_url(
        &self,
        grant: &PostgresGrant,
        role: &str,
        password: &str,
        database: &str,
    ) -> Result<String, BackendError> {
        let config = self.config(&grant.admin, grant.database.as_deref())?;
        let host = match (&grant.host, config.get_hosts().first()) {
            (Some(h), _) => h.clone(),
            (None, Some(Host::Tcp(h))) => h.clone(),
            (None, Some(Host::Unix(p))) => p.display().to_string(),
            (None, None) => "localhost".to_owned(),
        };
        let port = grant
            .port
            .or_else(|| config.get_ports().first().copied())
            .unwrap_or(5432);
        let db = percent(database);
        Ok(if host.starts_with('/') {
            format!(
                "postgresql://{role}:{password}@/{db}?host={}&port={port}",
                percent(&host)
            )
        } else if host.contains(':') {
            format!("postgresql://{role}:{password}@[{host}]:{port}/{db}")
        } else {
            format!("postgresql://{role}:{password}@{host}:{port}/{db}")
        })
    }

    fn revoke_group(
        &self,
        admin: &str,
        database: Option<&str>,
        roles: &[String],
    ) -> Result<(), BackendError> {
        let base = self.config(admin, database)?;
        self.with_client(admin, database, |client| {
            let existing: Vec<String> = client
                .query(
                    "SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1)",
                    &[&roles],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
            if !existing.is_empty() {
                // Ending a role's sessions and dropping what it owns both need the role's
                // privileges: an admin that is not a superuser (only `CREATEROLE`) gets them
                // by becoming a member of the role it made (it may grant that membership).
                let mut sql = String::new();
                for role in &existing {
                    sql.push_str(&format!(
                        "ALTER ROLE {r} NOLOGIN; GRANT {r} TO CURRENT_USER;",
                        r = ident(role)
                    ));
                }
                client.batch_execute(&sql)?;
            }
            // No new session can start now; end the ones that run, and wait for them.
            let deadline = Instant::now() + SESSION_WAIT;
            loop {
                let live = client
                    .query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE usename = ANY($1) AND pid <> pg_backend_pid()",
                        &[&roles],
                    )?
                    .len();
                if live == 0 || Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            if !existing.is_empty() {
                let list = existing
                    .iter()
                    .map(|r| ident(r))
                    .collect::<Vec<_>>()
                    .join(", ");
                // A role may log in to any database that lets `PUBLIC` connect (`postgres`,
                // by default) and own something there (a large object; a function where
                // `PUBLIC` may create). `DROP OWNED` reaches one database: drop there first,
                // or `DROP ROLE` fails, the lease stays open and what was planted lives on.
                // No session of the roles is left and none may start: the list is final.
                let others: Vec<String> = client
                    .query(
                        "SELECT DISTINCT d.datname::text FROM pg_shdepend s
                         JOIN pg_database d ON d.oid = s.dbid
                         JOIN pg_roles r ON r.oid = s.refobjid
                         WHERE s.refclassid = 'pg_authid'::regclass
                           AND r.rolname = ANY($1) AND d.datname <> current_database()
                         ORDER BY 1",
                        &[&existing],
                    )?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                for other in &others {
                    let mut there = base.clone().dbname(other).connect(NoTls)?;
                    there.batch_execute(&format!("DROP OWNED BY {list}"))?;
                    there.close()?;
                }
                // What the role made dies with it. Handing it to the admin instead (`REASSIGN
                // OWNED`) would make a `SECURITY DEFINER` function a task planted in a schema
                // open to `PUBLIC` run as the admin for whoever calls it next.
                let mut tx = client.transaction()?;
                tx.batch_execute(&format!(
                    "DROP OWNED BY {list}; DROP ROLE IF EXISTS {list};"
                ))?;
                tx.commit()?;
            }
            Ok(())
        })?;
        // The sessions must be gone, or the lease stays open and is retried.
        let left: i64 = self.with_client(admin, database, |client| {
            client
                .query_one(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE usename = ANY($1)",
                    &[&roles],
                )
                .map(|r| r.get(0))
        })?;
        if left > 0 {
            return Err(BackendError::Unavailable(format!(
                "postgresql: {left} session(s) of the role(s) did not end within {}s",
                SESSION_WAIT.as_secs()
            )));
        }
        Ok(())
    }
}

fn percent(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn grant_sql(grant: &PostgresGrant, role: &str) -> String {
    let role = ident(role);
    let (tables, sequences) = match grant.access {
        DbAccess::ReadOnly => ("SELECT", None),
        DbAccess::ReadWrite => ("SELECT, INSERT, UPDATE, DELETE", Some("USAGE, SELECT")),
    };
    let mut sql = String::new();
    if grant.tables.is_empty() {
        for schema in &grant.schemas {
            let s = ident(schema);
            sql.push_str(&format!("GRANT USAGE ON SCHEMA {s} TO {role};"));
            sql.push_str(&format!(
                "GRANT {tables} ON ALL TABLES IN SCHEMA {s} TO {role};"
            ));
            if let Some(seq) = sequences {
                sql.push_str(&format!(
                    "GRANT {seq} ON ALL SEQUENCES IN SCHEMA {s} TO {role};"
                ));
            }
        }
    } else {
        let mut schemas: Vec<&str> = Vec::new();
        for table in &grant.tables {
            let (schema, name) = table.split_once('.').unwrap_or(("public", table));
            if !schemas.contains(&schema) {
                schemas.push(schema);
                sql.push_str(&format!(
                    "GRANT USAGE ON SCHEMA {} TO {role};",
                    ident(schema)
                ));
            }
            sql.push_str(&format!(
                "GRANT {tables} ON TABLE {}.{} TO {role};",
                ident(schema),
                ident(name)
            ));
        }
    }
    sql
}

impl Backend for PostgresBackend {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn prepare(&self, draft: &Draft<'_>) -> Result<Handle, BackendError> {
        let grant: PostgresScope = from_scope(draft.scope)?;
        to_handle(&PgHandle {
            admin: grant.admin,
            database: grant.database,
            role: role_name(draft.id),
        })
    }

    fn issue(&self, draft: &Draft<'_>, handle: &mut Handle) -> Result<Issued, BackendError> {
        let scope: PostgresScope = from_scope(draft.scope)?;
        let grant = &scope;
        let h: PgHandle = from_handle(handle)?;
        let mut raw = Zeroizing::new([0u8; 24]);
        let mut salt = [0u8; 16];
        random_bytes(raw.as_mut())
            .and_then(|()| random_bytes(&mut salt))
            .map_err(|e| BackendError::Invalid(e.to_string()))?;
        let password = Zeroizing::new(b64url(raw.as_ref()));
        let verifier = super::scram::verifier(password.as_bytes(), &salt, super::scram::ITERATIONS);
        let until = rfc3339(draft.expires);
        let create = format!(
            "CREATE ROLE {} LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION \
             NOBYPASSRLS CONNECTION LIMIT {} VALID UNTIL {} PASSWORD {}",
            ident(&h.role),
            grant.connection_limit,
            literal(&until),
            literal(&verifier)
        );
        let grants = grant_sql(grant, &h.role);
        let role = h.role.clone();
        let sequences_of_tables = grant.access == DbAccess::ReadWrite && !grant.tables.is_empty();
        let database = self.with_client(&h.admin, h.database.as_deref(), |client| {
            let mut tx = client.transaction()?;
            let database: String = tx.query_one("SELECT current_database()::text", &[])?.get(0);
            tx.batch_execute(&create)?;
            tx.batch_execute(&format!(
                "GRANT CONNECT ON DATABASE {} TO {};{grants}",
                ident(&database),
                ident(&role)
            ))?;
            if sequences_of_tables {
                // Named tables: their own sequences (serial and identity columns) only.
                for table in &grant.tables {
                    let (schema, name) = table.split_once('.').unwrap_or(("public", table));
                    let rows = tx.query(
                        "SELECT quote_ident(sn.nspname) || '.' || quote_ident(s.relname)
                         FROM pg_class s
                         JOIN pg_namespace sn ON sn.oid = s.relnamespace
                         JOIN pg_depend d ON d.objid = s.oid AND d.deptype IN ('a', 'i')
                         JOIN pg_class t ON t.oid = d.refobjid
                         JOIN pg_namespace tn ON tn.oid = t.relnamespace
                         WHERE s.relkind = 'S' AND tn.nspname = $1 AND t.relname = $2",
                        &[&schema, &name],
                    )?;
                    for row in rows {
                        let sequence: String = row.get(0);
                        tx.batch_execute(&format!(
                            "GRANT USAGE, SELECT ON SEQUENCE {sequence} TO {}",
                            ident(&role)
                        ))?;
                    }
                }
            }
            tx.commit()?;
            Ok(database)
        })?;
        let url = Zeroizing::new(self.task_url(grant, &h.role, &password, &database)?);
        Ok(Issued {
            value: Some(SecretValue::new(url.as_bytes().to_vec())),
            detail: Some(format!("role {} on {database}", h.role)),
            lookup: None,
        })
    }

    fn revoke(&self, _lease: &Lease, handle: &[u8]) -> Result<(), BackendError> {
        let h: PgHandle = from_handle(handle)?;
        self.revoke_group(&h.admin, h.database.as_deref(), &[h.role])
    }

    fn revoke_many(&self, items: &[(&Lease, &[u8])]) -> Vec<Result<(), BackendError>> {
        let mut results: Vec<Option<Result<(), BackendError>>> = vec![None; items.len()];
        // (admin secret, database) → (item index, role)
        type Groups = HashMap<(String, Option<String>), Vec<(usize, String)>>;
        let mut groups: Groups = HashMap::new();
        for (i, (_, handle)) in items.iter().enumerate() {
            match from_handle::<PgHandle>(handle) {
                Ok(h) => groups
                    .entry((h.admin, h.database))
                    .or_default()
                    .push((i, h.role)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        for ((admin, database), members) in groups {
            for chunk in members.chunks(BATCH) {
                let roles: Vec<String> = chunk.iter().map(|(_, r)| r.clone()).collect();
                match self.revoke_group(&admin, database.as_deref(), &roles) {
                    Ok(()) => {
                        for (i, _) in chunk {
                            results[*i] = Some(Ok(()));
                        }
                    }
                    // The server refused the batch: find out which roles fail. (When it
                    // cannot be reached, trying each role alone would only wait longer.)
                    Err(BackendError::Refused(_)) if chunk.len() > 1 => {
                        for (i, role) in chunk {
                            results[*i] = Some(self.revoke_group(
                                &admin,
                                database.as_deref(),
                                std::slice::from_ref(role),
                            ));
                        }
                    }
                    Err(e) => {
                        for (i, _) in chunk {
                            results[*i] = Some(Err(e.clone()));
                        }
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(BackendError::Invalid("not revoked".into()))))
            .collect()
    }
}
