//! The embedded default store: one SQLite file in WAL mode with `synchronous=FULL`.
//!
//! The writer holds an exclusive `flock` on `<ledger>.writer-lock` (SQLite's own locks are
//! per transaction; the ledger needs one writer for its whole life). Readers open the database
//! with `SQLITE_OPEN_READ_ONLY` and `query_only`, so `verify`, `show` and `export` cannot
//! change it.

use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::{CheckpointRow, EventRow, Meta, Query, RowRef, Store};
use crate::error::{Error, Result, one_line};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS events (
    seq   INTEGER PRIMARY KEY,
    time  TEXT NOT NULL,
    task  TEXT NOT NULL,
    agent TEXT NOT NULL,
    kind  TEXT NOT NULL,
    body  TEXT NOT NULL,
    nodes BLOB NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS events_task ON events (task, seq);
CREATE TABLE IF NOT EXISTS checkpoints (
    size INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    note TEXT NOT NULL
) STRICT;
";

const COLUMNS: &str = "seq, time, task, agent, kind, body, nodes";

/// A ledger in a SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    /// Held for the writer's lifetime; `None` for readers.
    _lock: Option<File>,
}

impl SqliteStore {
    /// Open (creating if needed) for writing, and take the writer lock.
    pub fn open_write(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io("cannot create directory", dir, e))?;
        }
        let lock_path = lock_path(path);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io("cannot open writer lock", &lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Store {
                    store: format!("`{}`", path.display()),
                    detail: "another process is writing this ledger".into(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io("cannot lock", lock_path, e));
            }
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| err(path, e))?;
        let store = Self {
            conn,
            path: path.to_owned(),
            _lock: Some(lock),
        };
        store
            .conn
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA busy_timeout = 5000;",
            )
            .map_err(|e| store.err(e))?;
        // journal_mode answers with the mode in force; make sure WAL took.
        let mode: String = store
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(|e| store.err(e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(store.fail(format!("cannot switch to wal mode (got `{mode}`)")));
        }
        Ok(store)
    }

    /// Open an existing ledger read-only.
    pub fn open_read(path: &Path) -> Result<Self> {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => {
                return Err(Error::Invalid(format!(
                    "ledger `{}` is not a file",
                    path.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(format!(
                    "no ledger at `{}`",
                    path.display()
                )));
            }
            Err(e) => return Err(Error::io("cannot open ledger", path, e)),
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let conn = if Path::new(&wal).exists() {
            // A writer is running (or crashed): read through its WAL.
            Connection::open_with_flags(path, flags)
        } else {
            // Closed cleanly: open as immutable so that reading creates no WAL or shared-memory
            // files next to the ledger (and works on read-only media).
            Connection::open_with_flags(immutable_uri(path), flags | OpenFlags::SQLITE_OPEN_URI)
        }
        .map_err(|e| err(path, e))?;
        let store = Self {
            conn,
            path: path.to_owned(),
            _lock: None,
        };
        store
            .conn
            .execute_batch("PRAGMA query_only = 1; PRAGMA busy_timeout = 5000;")
            .map_err(|e| store.err(e))?;
        Ok(store)
    }

    fn err(&self, e: rusqlite::Error) -> Error {
        err(&self.path, e)
    }

    fn fail(&self, detail: String) -> Error {
        Error::Store {
            store: self.describe(),
            detail,
        }
    }

    fn has_table(&self, name: &str) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [name],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
            .map_err(|e| self.err(e))
    }

    fn row(&self, row: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
        let seq: i64 = row.get(0)?;
        Ok(EventRow {
            seq: seq as u64,
            time: row.get(1)?,
            task: row.get(2)?,
            agent: row.get(3)?,
            kind: row.get(4)?,
            body: row.get_ref(5)?.as_bytes()?.to_vec(),
            nodes: row.get_ref(6)?.as_bytes()?.to_vec(),
        })
    }
}

/// `file:` URI of `path` with `immutable=1`, percent-encoding everything but unreserved bytes.
fn immutable_uri(path: &Path) -> String {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    #[cfg(unix)]
    let bytes = {
        use std::os::unix::ffi::OsStrExt;
        absolute.as_os_str().as_bytes().to_vec()
    };
    #[cfg(not(unix))]
    let bytes = absolute.to_string_lossy().replace('\\', "/").into_bytes();
    let mut uri = String::from("file:");
    for &b in &bytes {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?immutable=1");
    uri
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".writer-lock");
    path.with_file_name(name)
}

fn err(path: &Path, e: rusqlite::Error) -> Error {
    let detail = match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase => {
            "not a sqlite database (or the file is corrupted or encrypted)".to_owned()
        }
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DatabaseCorrupt => {
            "the database file is corrupted or truncated".to_owned()
        }
        other => one_line(other),
    };
    Error::Store {
        store: format!("`{}`", path.display()),
        detail,
    }
}

fn to_i64(store: &SqliteStore, value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| store.fail(format!("sequence number {value} is too large")))
}

fn from_i64(store: &SqliteStore, value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| store.fail(format!("negative sequence number {value}")))
}

impl Store for SqliteStore {
    fn describe(&self) -> String {
        format!("`{}`", self.path.display())
    }

    fn read_meta(&mut self) -> Result<Option<Meta>> {
        if !self.has_table("meta")? {
            if self.has_table("events")? {
                return Err(self.fail("not a remit ledger (no metadata)".into()));
            }
            return Ok(None);
        }
        let mut stmt = self
            .conn
            .prepare("SELECT key, value FROM meta")
            .map_err(|e| self.err(e))?;
        let pairs: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| err(&self.path, e))?;
        drop(stmt);
        if pairs.is_empty() {
            return Ok(None);
        }
        meta_from_pairs(&pairs).map(Some).map_err(|d| self.fail(d))
    }

    fn create(&mut self, meta: &Meta) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| err(&self.path, e))?;
        tx.execute_batch(SCHEMA).map_err(|e| err(&self.path, e))?;
        for (key, value) in meta_pairs(meta) {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                params![key, value],
            )
            .map_err(|e| err(&self.path, e))?;
        }
        tx.commit().map_err(|e| err(&self.path, e))
    }

    fn size(&mut self) -> Result<u64> {
        let max: Option<i64> = self
            .conn
            .query_row("SELECT MAX(seq) FROM events", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        match max {
            None => Ok(0),
            Some(max) => from_i64(self, max)?
                .checked_add(1)
                .ok_or_else(|| self.fail("sequence number overflow".into())),
        }
    }

    fn append(
        &mut self,
        events: &[EventRow],
        checkpoint: &CheckpointRow,
        prune_above: u64,
    ) -> Result<()> {
        let mut seqs = Vec::with_capacity(events.len());
        for e in events {
            seqs.push(to_i64(self, e.seq)?);
        }
        let cp_size = to_i64(self, checkpoint.size)?;
        let prune = to_i64(self, prune_above)?;
        let path = self.path.clone();
        let e = |x| err(&path, x);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO events (seq, time, task, agent, kind, body, nodes)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(e)?;
            for (event, seq) in events.iter().zip(seqs) {
                let body = std::str::from_utf8(&event.body)
                    .map_err(|_| Error::Encode(format!("event {} is not utf-8", event.seq)))?;
                insert
                    .execute(params![
                        seq,
                        event.time,
                        event.task,
                        event.agent,
                        event.kind,
                        body,
                        event.nodes
                    ])
                    .map_err(e)?;
            }
            tx.prepare_cached("DELETE FROM checkpoints WHERE size > ?1")
                .and_then(|mut s| s.execute([prune]))
                .map_err(e)?;
            tx.prepare_cached(
                "INSERT OR REPLACE INTO checkpoints (size, time, note) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut s| s.execute(params![cp_size, checkpoint.time, checkpoint.note]))
            .map_err(e)?;
        }
        tx.commit().map_err(e)
    }

    fn event(&mut self, seq: u64) -> Result<Option<EventRow>> {
        let seq = to_i64(self, seq)?;
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM events WHERE seq = ?1"))
            .map_err(|e| err(&self.path, e))?;
        let row = stmt
            .query_row([seq], |r| self.row(r))
            .optional()
            .map_err(|e| err(&self.path, e))?;
        Ok(row)
    }

    fn nodes(&mut self, seq: u64) -> Result<Option<Vec<u8>>> {
        let seq = to_i64(self, seq)?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT nodes FROM events WHERE seq = ?1")
            .map_err(|e| err(&self.path, e))?;
        stmt.query_row([seq], |r| Ok(r.get_ref(0)?.as_bytes()?.to_vec()))
            .optional()
            .map_err(|e| err(&self.path, e))
    }

    fn scan(
        &mut self,
        query: &Query,
        visit: &mut dyn FnMut(RowRef<'_>) -> Result<bool>,
    ) -> Result<()> {
        let mut sql = format!("SELECT {COLUMNS} FROM events WHERE seq >= ?");
        let mut args: Vec<Value> = vec![Value::Integer(to_i64(self, query.from_seq)?)];
        if let Some(task) = &query.task {
            sql.push_str(" AND task = ?");
            args.push(Value::Text(task.clone()));
        }
        if let Some(agent) = &query.agent {
            sql.push_str(" AND agent = ?");
            args.push(Value::Text(agent.clone()));
        }
        if !query.kinds.is_empty() {
            sql.push_str(" AND kind IN (");
            for (i, kind) in query.kinds.iter().enumerate() {
                sql.push_str(if i == 0 { "?" } else { ", ?" });
                args.push(Value::Text(kind.clone()));
            }
            sql.push(')');
        }
        if let Some(since) = &query.since {
            sql.push_str(" AND time >= ?");
            args.push(Value::Text(since.clone()));
        }
        sql.push_str(" ORDER BY seq");
        if let Some(limit) = query.limit {
            sql.push_str(" LIMIT ?");
            args.push(Value::Integer(to_i64(self, limit)?));
        }
        let mut stmt = self.conn.prepare(&sql).map_err(|e| err(&self.path, e))?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(args))
            .map_err(|e| err(&self.path, e))?;
        while let Some(row) = rows.next().map_err(|e| err(&self.path, e))? {
            let borrowed = (|| -> rusqlite::Result<RowRef<'_>> {
                let seq: i64 = row.get(0)?;
                Ok(RowRef {
                    seq: seq as u64,
                    time: row.get_ref(1)?.as_str()?,
                    task: row.get_ref(2)?.as_str()?,
                    agent: row.get_ref(3)?.as_str()?,
                    kind: row.get_ref(4)?.as_str()?,
                    body: row.get_ref(5)?.as_bytes()?,
                    nodes: row.get_ref(6)?.as_bytes()?,
                })
            })()
            .map_err(|e| err(&self.path, e))?;
            if !visit(borrowed)? {
                break;
            }
        }
        Ok(())
    }

    fn checkpoints(&mut self) -> Result<Vec<CheckpointRow>> {
        if !self.has_table("checkpoints")? {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare("SELECT size, time, note FROM checkpoints ORDER BY size")
            .map_err(|e| err(&self.path, e))?;
        let rows: Vec<(i64, String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| err(&self.path, e))?;
        drop(stmt);
        rows.into_iter()
            .map(|(size, time, note)| {
                Ok(CheckpointRow {
                    size: from_i64(self, size)?,
                    time,
                    note,
                })
            })
            .collect()
    }

    fn latest_checkpoint(&mut self) -> Result<Option<CheckpointRow>> {
        self.checkpoint_query(
            "SELECT size, time, note FROM checkpoints ORDER BY size DESC LIMIT 1",
            None,
        )
    }

    fn checkpoint_covering(&mut self, size: u64) -> Result<Option<CheckpointRow>> {
        self.checkpoint_query(
            "SELECT size, time, note FROM checkpoints WHERE size >= ?1 ORDER BY size LIMIT 1",
            Some(to_i64(self, size)?),
        )
    }
}

impl SqliteStore {
    fn checkpoint_query(&mut self, sql: &str, arg: Option<i64>) -> Result<Option<CheckpointRow>> {
        let mut stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(|e| err(&self.path, e))?;
        let map = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(i64, String, String)> {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        };
        let row = match arg {
            Some(a) => stmt.query_row([a], map),
            None => stmt.query_row([], map),
        }
        .optional()
        .map_err(|e| err(&self.path, e))?;
        drop(stmt);
        row.map(|(size, time, note)| {
            Ok(CheckpointRow {
                size: from_i64(self, size)?,
                time,
                note,
            })
        })
        .transpose()
    }
}

pub(crate) fn meta_pairs(meta: &Meta) -> [(&'static str, String); 4] {
    [
        ("layout", meta.layout.to_string()),
        ("origin", meta.origin.clone()),
        ("vkey", meta.vkey.clone()),
        ("created", meta.created.clone()),
    ]
}

pub(crate) fn meta_from_pairs(pairs: &[(String, String)]) -> std::result::Result<Meta, String> {
    let get = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| format!("not a remit ledger (metadata has no `{key}`)"))
    };
    let layout = get("layout")?;
    let layout: u32 = layout
        .parse()
        .map_err(|_| format!("unreadable layout version `{layout}`"))?;
    if layout != super::LAYOUT_VERSION {
        return Err(format!(
            "ledger layout version {layout} is not supported by this build (expected {})",
            super::LAYOUT_VERSION
        ));
    }
    Ok(Meta {
        layout,
        origin: get("origin")?,
        vkey: get("vkey")?,
        created: get("created")?,
    })
}
