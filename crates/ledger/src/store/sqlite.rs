//! The embedded default store: one SQLite file in WAL mode with `synchronous=FULL`.
//!
//! Any number of writer processes share the file. None holds a lock between commits; each
//! commit is one `BEGIN IMMEDIATE` transaction, which takes SQLite's write lock for its
//! duration, waiting for another writer's commit to finish (polling every 100 µs, up to
//! [`WRITE_LOCK_TIMEOUT`]). Readers open the database with `SQLITE_OPEN_READ_ONLY` and
//! `query_only`, so `verify`, `show` and `export` cannot change it.
//!
//! Cold start is on the path of every `remit run`, so a writer's connection does as little as
//! it can: no lock file, one `PRAGMA synchronous` (the only per-connection setting durability
//! needs; WAL mode is persistent, set once at creation and only read back after), cached
//! statements, and no
//! write-ahead-log checkpoint when it closes — two `fsync`s and the next run's re-creation
//! of the log (two more) saved. The log is folded back into the database by SQLite's
//! automatic checkpoints, and at close once it is larger than [`CLOSE_CHECKPOINT_BYTES`],
//! which bounds what the next opener reads to rebuild the log's index.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::config::DbConfig;
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::{
    CheckpointRow, EventRow, Head, Meta, Query, RowRef, Store, Txn, WRITE_LOCK_TIMEOUT,
    meta_from_pairs, meta_pairs,
};
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
    note TEXT NOT NULL,
    kept INTEGER NOT NULL CHECK (kept IN (0, 1))
) STRICT;
-- Pruning finds the (at most one) transient checkpoint without walking the history.
CREATE INDEX IF NOT EXISTS checkpoints_transient ON checkpoints (size) WHERE kept = 0;
";

const COLUMNS: &str = "seq, time, task, agent, kind, body, nodes";

/// The head in one statement. At most one transient checkpoint exists (the head), so the
/// newest kept one is found within the last two rows of the primary key.
const HEAD: &str = "SELECT size, time, note, kept,
        (SELECT MAX(seq) FROM events),
        (SELECT time FROM checkpoints WHERE kept = 1 ORDER BY size DESC LIMIT 1)
    FROM checkpoints ORDER BY size DESC LIMIT 1";

/// A write-ahead log larger than this is checkpointed into the database (and truncated) when
/// a writer closes. A `remit run` adds 3 to 5 pages, so this folds the log about every 15
/// runs (two `fsync`s at that close, one more at the next commit), and a first opener
/// re-indexes at most about 60 pages (under 0.2 ms; about 3 µs a page).
pub const CLOSE_CHECKPOINT_BYTES: u64 = 256 << 10;

/// How long a writer closing waits for the lock to fold a large log back (then leaves it to
/// the next one).
const CLOSE_CHECKPOINT_WAIT: Duration = Duration::from_millis(50);

/// A ledger in a SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    write: bool,
    /// How long the busy handler waits for a lock, in milliseconds.
    busy_limit: Arc<AtomicU64>,
    /// Read as immutable (no log, no locks): the file read and what it looked like when
    /// opened, to tell whether a writer changed it under the reader.
    unlocked: Option<(PathBuf, FileStamp)>,
}

/// What identifies one state of a file: a writer folding its log into the database changes
/// its modification time (and often its size).
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
    changed: (i64, i64),
}

impl FileStamp {
    fn of(path: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path)?;
        Ok(Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            modified: meta.modified().ok(),
            changed: (meta.ctime(), meta.ctime_nsec()),
        })
    }
}

impl SqliteStore {
    /// Open (creating the file if needed) for writing. Takes no lock: commits take SQLite's
    /// write lock one at a time.
    pub fn open_write(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io("cannot create directory", dir, e))?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags).map_err(|e| err(path, e))?;
        let busy_limit = Arc::new(AtomicU64::new(millis(WRITE_LOCK_TIMEOUT)));
        poll_when_busy(&mut conn, Arc::clone(&busy_limit)).map_err(|e| err(path, e))?;
        // The log is checkpointed by SQLite as it grows and by `close` when large, not at every
        // close (see the module docs).
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
            .map_err(|e| err(path, e))?;
        // INVARIANT: `synchronous` is per connection and FULL is what makes a commit durable
        // in WAL mode (the log is synced at every commit).
        conn.execute_batch("PRAGMA synchronous = FULL")
            .map_err(|e| err(path, e))?;
        Ok(Self {
            conn,
            path: path.to_owned(),
            write: true,
            busy_limit,
            unlocked: None,
        })
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
        // SQLite opens the file a link leads to, and looks for its log beside that file.
        let real =
            std::fs::canonicalize(path).map_err(|e| Error::io("cannot open ledger", path, e))?;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut wal = real.as_os_str().to_owned();
        wal.push("-wal");
        let (conn, unlocked) = if Path::new(&wal).exists() {
            // A writer is running, or left its log: read through the log.
            (Connection::open_with_flags(&real, flags), None)
        } else {
            // No log: no writer had the ledger open (a writer's connection creates the log
            // when it opens the ledger, and never deletes it; only a checkpoint by the last
            // connection of some other SQLite client does), so open as immutable: reading
            // creates no WAL or shared-memory files (and works on read-only media). It also
            // takes no lock: a writer that starts meanwhile and folds its log into the file
            // changes it under the reader, which [`Store::reopen_if_changed`] tells.
            let stamp =
                FileStamp::of(&real).map_err(|e| Error::io("cannot open ledger", path, e))?;
            (
                Connection::open_with_flags(
                    immutable_uri(&real),
                    flags | OpenFlags::SQLITE_OPEN_URI,
                ),
                Some((real, stamp)),
            )
        };
        let mut conn = conn.map_err(|e| err(path, e))?;
        let busy_limit = Arc::new(AtomicU64::new(5000));
        poll_when_busy(&mut conn, Arc::clone(&busy_limit)).map_err(|e| err(path, e))?;
        conn.execute_batch("PRAGMA query_only = 1")
            .map_err(|e| err(path, e))?;
        Ok(Self {
            conn,
            path: path.to_owned(),
            write: false,
            busy_limit,
            unlocked,
        })
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

    /// Make sure the file is in WAL mode, which is persistent: set once at creation, only
    /// checked afterwards (`set`: switch without asking). Readers rely on it: a ledger without
    /// a `-wal` file has no writer, so they may open it immutable.
    fn ensure_wal(&self, set: bool) -> Result<()> {
        let query = |sql: &str| -> Result<String> {
            self.conn
                .query_row(sql, [], |r| r.get(0))
                .map_err(|e| self.err(e))
        };
        let mut mode = if set {
            String::new()
        } else {
            query("PRAGMA journal_mode")?
        };
        let deadline = Instant::now() + WRITE_LOCK_TIMEOUT;
        while !mode.eq_ignore_ascii_case("wal") {
            // Switching needs the file to itself. A connection creating the ledger at the
            // same moment makes SQLite fail at once rather than call the busy handler (which
            // could deadlock the two): try again.
            match self
                .conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            {
                Ok(m) => mode = m,
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if f.code == rusqlite::ErrorCode::DatabaseBusy && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(self.err(e)),
            }
        }
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(self.fail(format!("cannot switch to wal mode (got `{mode}`)")));
        }
        Ok(())
    }

    /// The metadata rows, `None` when there is no `meta` table.
    fn meta_pairs(conn: &Connection) -> rusqlite::Result<Option<Vec<(String, String)>>> {
        let mut stmt = match conn.prepare_cached("SELECT key, value FROM meta") {
            Ok(stmt) => stmt,
            Err(e) if no_such_table(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let pairs = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Some(pairs))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Wait for a lock by polling every 100 µs (every millisecond after the first second), up to
/// the limit in `limit_ms`. SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25 … ms,
/// which leaves the lock idle for most of a contended commit, and lets a writer that
/// commits back to back keep it. (Writers also step aside after a commit when others are
/// active: see the writer's `HANDOFF`.)
fn poll_when_busy(conn: &mut Connection, limit_ms: Arc<AtomicU64>) -> rusqlite::Result<()> {
    let mut started = Instant::now();
    conn.busy_handler(Some(move |count: i32| {
        if count == 0 {
            started = Instant::now();
        }
        let waited = started.elapsed();
        if waited >= Duration::from_millis(limit_ms.load(Ordering::Relaxed)) {
            return false;
        }
        std::thread::sleep(if waited < Duration::from_secs(1) {
            Duration::from_micros(100)
        } else {
            Duration::from_millis(1)
        });
        true
    }))
}

fn no_such_table(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(_, Some(msg)) if msg.starts_with("no such table"))
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

fn err(path: &Path, e: rusqlite::Error) -> Error {
    let detail = match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase => {
            "not a sqlite database (or the file is corrupted or encrypted)".to_owned()
        }
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DatabaseCorrupt => {
            "the database file is corrupted or truncated".to_owned()
        }
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DatabaseBusy => {
            "another process kept the ledger locked; gave up waiting".to_owned()
        }
        other => one_line(other),
    };
    Error::Store {
        store: format!("`{}`", path.display()),
        detail,
    }
}

fn to_i64(path: &Path, value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| Error::Store {
        store: format!("`{}`", path.display()),
        detail: format!("sequence number {value} is too large"),
    })
}

fn from_i64(path: &Path, value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| Error::Store {
        store: format!("`{}`", path.display()),
        detail: format!("negative sequence number {value}"),
    })
}

/// One past `max`, the highest sequence number (`None`: no events).
fn count_from_max(path: &Path, max: Option<i64>) -> Result<u64> {
    match max {
        None => Ok(0),
        Some(max) => from_i64(path, max)?
            .checked_add(1)
            .ok_or_else(|| Error::Store {
                store: format!("`{}`", path.display()),
                detail: "sequence number overflow".into(),
            }),
    }
}

/// A transaction on a SQLite ledger.
struct SqliteTxn<'a> {
    conn: &'a Connection,
    path: &'a Path,
}

impl SqliteTxn<'_> {
    fn err(&self, e: rusqlite::Error) -> Error {
        err(self.path, e)
    }
}

/// Events inserted by one run of the multi-row insert statement (7 parameters each, well below
/// SQLite's limit of 32,766).
const INSERT_ROWS: usize = 50;

/// `INSERT INTO events … VALUES (…), (…), …` for `rows` events, parameters numbered in order.
fn insert_sql(rows: usize) -> String {
    let mut sql =
        String::from("INSERT INTO events (seq, time, task, agent, kind, body, nodes) VALUES ");
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str("(?, ?, ?, ?, ?, ?, ?)");
    }
    sql
}

impl SqliteTxn<'_> {
    /// Bind `event` to parameters `at + 1 ..= at + 7` of an insert statement.
    fn bind_event(
        &self,
        stmt: &mut rusqlite::CachedStatement<'_>,
        at: usize,
        event: &EventRow,
    ) -> Result<()> {
        let body = std::str::from_utf8(&event.body)
            .map_err(|_| Error::Encode(format!("event {} is not utf-8", event.seq)))?;
        let seq = to_i64(self.path, event.seq)?;
        (|| {
            stmt.raw_bind_parameter(at + 1, seq)?;
            stmt.raw_bind_parameter(at + 2, event.time.as_str())?;
            stmt.raw_bind_parameter(at + 3, event.task.as_str())?;
            stmt.raw_bind_parameter(at + 4, event.agent.as_str())?;
            stmt.raw_bind_parameter(at + 5, event.kind.as_str())?;
            stmt.raw_bind_parameter(at + 6, body)?;
            stmt.raw_bind_parameter(at + 7, event.nodes.as_slice())
        })()
        .map_err(|e| self.err(e))
    }
}

impl Txn for SqliteTxn<'_> {
    fn head(&mut self) -> Result<Head> {
        type HeadRow = (i64, String, String, bool, Option<i64>, Option<String>);
        let row: Option<HeadRow> = self
            .conn
            .prepare_cached(HEAD)
            .and_then(|mut stmt| {
                stmt.query_row([], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })
                .optional()
            })
            .map_err(|e| self.err(e))?;
        match row {
            Some((size, time, note, kept, max, kept_time)) => Ok(Head {
                events: count_from_max(self.path, max)?,
                checkpoint: Some(CheckpointRow {
                    size: from_i64(self.path, size)?,
                    time,
                    note,
                    kept,
                }),
                kept_time,
            }),
            None => {
                let max: Option<i64> = self
                    .conn
                    .query_row("SELECT MAX(seq) FROM events", [], |r| r.get(0))
                    .map_err(|e| self.err(e))?;
                Ok(Head {
                    events: count_from_max(self.path, max)?,
                    checkpoint: None,
                    kept_time: None,
                })
            }
        }
    }

    fn nodes(&mut self, seq: u64) -> Result<Option<Vec<u8>>> {
        nodes(self.conn, self.path, seq)
    }

    fn append(&mut self, events: &[EventRow], checkpoint: &CheckpointRow) -> Result<()> {
        let e = |x| err(self.path, x);
        // Full chunks go through one cached multi-row statement each (one statement run per
        // `INSERT_ROWS` events instead of one per event), the rest one by one.
        let mut chunks = events.chunks_exact(INSERT_ROWS);
        if chunks.len() > 0 {
            let mut insert = self
                .conn
                .prepare_cached(&insert_sql(INSERT_ROWS))
                .map_err(e)?;
            for chunk in &mut chunks {
                for (i, event) in chunk.iter().enumerate() {
                    self.bind_event(&mut insert, i * 7, event)?;
                }
                insert.raw_execute().map_err(e)?;
            }
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut insert = self.conn.prepare_cached(&insert_sql(1)).map_err(e)?;
            for event in rest {
                self.bind_event(&mut insert, 0, event)?;
                insert.raw_execute().map_err(e)?;
            }
        }
        let size = to_i64(self.path, checkpoint.size)?;
        self.conn
            .prepare_cached("DELETE FROM checkpoints WHERE kept = 0 AND size < ?1")
            .and_then(|mut s| s.execute([size]))
            .map_err(e)?;
        self.conn
            .prepare_cached(
                "INSERT INTO checkpoints (size, time, note, kept) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    size,
                    checkpoint.time,
                    checkpoint.note,
                    checkpoint.kept
                ])
            })
            .map_err(e)?;
        Ok(())
    }

    fn keep(&mut self, size: u64) -> Result<()> {
        let size_i = to_i64(self.path, size)?;
        let changed = self
            .conn
            .prepare_cached("UPDATE checkpoints SET kept = 1 WHERE size = ?1")
            .and_then(|mut s| s.execute([size_i]))
            .map_err(|e| self.err(e))?;
        if changed != 1 {
            return Err(Error::Store {
                store: format!("`{}`", self.path.display()),
                detail: format!("no checkpoint of size {size} to keep"),
            });
        }
        Ok(())
    }
}

fn nodes(conn: &Connection, path: &Path, seq: u64) -> Result<Option<Vec<u8>>> {
    let seq = to_i64(path, seq)?;
    let mut stmt = conn
        .prepare_cached("SELECT nodes FROM events WHERE seq = ?1")
        .map_err(|e| err(path, e))?;
    stmt.query_row([seq], |r| Ok(r.get_ref(0)?.as_bytes()?.to_vec()))
        .optional()
        .map_err(|e| err(path, e))
}

impl Store for SqliteStore {
    fn describe(&self) -> String {
        format!("`{}`", self.path.display())
    }

    fn read_meta(&mut self) -> Result<Option<Meta>> {
        let mut pairs = Self::meta_pairs(&self.conn).map_err(|e| self.err(e))?;
        if pairs.is_none() {
            // One look at all three tables: another process may be creating the ledger right
            // now, and then all three appear at once.
            let tables: Vec<String> = self
                .conn
                .prepare(
                    "SELECT name FROM sqlite_master WHERE type = 'table'
                     AND name IN ('meta', 'events', 'checkpoints')",
                )
                .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                .map_err(|e| self.err(e))?;
            if tables.iter().any(|t| t == "meta") {
                pairs = Self::meta_pairs(&self.conn).map_err(|e| self.err(e))?;
            } else if !tables.is_empty() {
                return Err(self.fail("not a remit ledger (no metadata)".into()));
            }
        }
        let Some(pairs) = pairs else {
            return Ok(None);
        };
        if pairs.is_empty() {
            return Ok(None);
        }
        let meta = meta_from_pairs(&pairs).map_err(|d| self.fail(d))?;
        if self.write {
            self.ensure_wal(false)?;
        }
        Ok(Some(meta))
    }

    fn create(&mut self, meta: &Meta, genesis: &CheckpointRow) -> Result<Meta> {
        if !self.write {
            return Err(self.fail("opened read-only, refusing to write".into()));
        }
        self.ensure_wal(true)?;
        let path = self.path.clone();
        let e = |x| err(&path, x);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e)?;
        tx.execute_batch(SCHEMA).map_err(e)?;
        // Another process may have created the ledger since we looked.
        let existing = Self::meta_pairs(&tx).map_err(e)?.unwrap_or_default();
        if !existing.is_empty() {
            drop(tx);
            return meta_from_pairs(&existing).map_err(|d| self.fail(d));
        }
        for (key, value) in meta_pairs(meta) {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                params![key, value],
            )
            .map_err(e)?;
        }
        SqliteTxn {
            conn: &tx,
            path: &path,
        }
        .append(&[], genesis)?;
        tx.commit().map_err(e)?;
        Ok(meta.clone())
    }

    fn size(&mut self) -> Result<u64> {
        let max: Option<i64> = self
            .conn
            .prepare_cached("SELECT MAX(seq) FROM events")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(|e| self.err(e))?;
        count_from_max(&self.path, max)
    }

    fn rows_below_zero(&mut self) -> Result<u64> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM events WHERE seq < 0")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(|e| self.err(e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn transaction(
        &mut self,
        write: bool,
        body: &mut dyn FnMut(&mut dyn Txn) -> Result<()>,
    ) -> Result<()> {
        if write && !self.write {
            return Err(self.fail("opened read-only, refusing to write".into()));
        }
        let path = self.path.clone();
        let behavior = if write {
            // Takes the write lock now, so the head read next is the true head.
            TransactionBehavior::Immediate
        } else {
            TransactionBehavior::Deferred
        };
        let tx = self
            .conn
            .transaction_with_behavior(behavior)
            .map_err(|e| err(&path, e))?;
        body(&mut SqliteTxn {
            conn: &tx,
            path: &path,
        })?;
        tx.commit().map_err(|e| err(&path, e))
    }

    fn begin_snapshot(&mut self) -> Result<()> {
        // A deferred transaction takes its snapshot at its first read and keeps it.
        self.conn
            .prepare_cached("BEGIN")
            .and_then(|mut s| s.execute([]))
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    fn reopen_if_changed(&mut self) -> Result<bool> {
        let Some((real, stamp)) = &self.unlocked else {
            return Ok(false);
        };
        match FileStamp::of(real) {
            Ok(now) if now == *stamp => Ok(false),
            _ => {
                // Through the log this time, if the writer left one.
                *self = Self::open_read(&self.path)?;
                Ok(true)
            }
        }
    }

    fn end_snapshot(&mut self) -> Result<()> {
        self.conn
            .prepare_cached("COMMIT")
            .and_then(|mut s| s.execute([]))
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    fn event(&mut self, seq: u64) -> Result<Option<EventRow>> {
        let seq = to_i64(&self.path, seq)?;
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
        nodes(&self.conn, &self.path, seq)
    }

    fn scan(
        &mut self,
        query: &Query,
        visit: &mut dyn FnMut(RowRef<'_>) -> Result<bool>,
    ) -> Result<()> {
        let mut sql = format!("SELECT {COLUMNS} FROM events WHERE seq >= ?");
        let mut args: Vec<Value> = vec![Value::Integer(to_i64(&self.path, query.from_seq)?)];
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
            // More than SQLite can count is no limit at all.
            args.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
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

    fn each_checkpoint(
        &mut self,
        visit: &mut dyn FnMut(CheckpointRow) -> Result<()>,
    ) -> Result<()> {
        if !self.has_table("checkpoints")? {
            return Ok(());
        }
        let mut stmt = self
            .conn
            .prepare("SELECT size, time, note, kept FROM checkpoints ORDER BY size")
            .map_err(|e| err(&self.path, e))?;
        let mut rows = stmt.query([]).map_err(|e| err(&self.path, e))?;
        while let Some(row) = rows.next().map_err(|e| err(&self.path, e))? {
            let (size, time, note, kept): (i64, String, String, bool) = (
                row.get(0).map_err(|e| err(&self.path, e))?,
                row.get(1).map_err(|e| err(&self.path, e))?,
                row.get(2).map_err(|e| err(&self.path, e))?,
                row.get(3).map_err(|e| err(&self.path, e))?,
            );
            visit(CheckpointRow {
                size: from_i64(&self.path, size)?,
                time,
                note,
                kept,
            })?;
        }
        Ok(())
    }

    fn latest_checkpoint(&mut self) -> Result<Option<CheckpointRow>> {
        self.checkpoint_query(
            "SELECT size, time, note, kept FROM checkpoints ORDER BY size DESC LIMIT 1",
            None,
        )
    }

    fn checkpoint_covering(&mut self, size: u64) -> Result<Option<CheckpointRow>> {
        self.checkpoint_query(
            "SELECT size, time, note, kept FROM checkpoints WHERE size >= ?1 ORDER BY size LIMIT 1",
            Some(to_i64(&self.path, size)?),
        )
    }

    fn close(&mut self) -> Result<()> {
        if !self.write {
            return Ok(());
        }
        let mut wal = self.path.as_os_str().to_owned();
        wal.push("-wal");
        let large = std::fs::metadata(&wal).is_ok_and(|m| m.len() > CLOSE_CHECKPOINT_BYTES);
        if !large {
            return Ok(());
        }
        // Fold the log into the database and truncate it, if no other writer or reader is in
        // the way right now; otherwise one of them will, later.
        self.busy_limit
            .store(millis(CLOSE_CHECKPOINT_WAIT), Ordering::Relaxed);
        let result = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(|e| self.err(e));
        self.busy_limit
            .store(millis(WRITE_LOCK_TIMEOUT), Ordering::Relaxed);
        result
    }
}

impl SqliteStore {
    fn checkpoint_query(&mut self, sql: &str, arg: Option<i64>) -> Result<Option<CheckpointRow>> {
        let mut stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(|e| err(&self.path, e))?;
        let map = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(i64, String, String, bool)> {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        };
        let row = match arg {
            Some(a) => stmt.query_row([a], map),
            None => stmt.query_row([], map),
        }
        .optional()
        .map_err(|e| err(&self.path, e))?;
        drop(stmt);
        row.map(|(size, time, note, kept)| {
            Ok(CheckpointRow {
                size: from_i64(&self.path, size)?,
                time,
                note,
                kept,
            })
        })
        .transpose()
    }
}
