//! Opening remit's small state databases (`identity.db`, `vault.db`) safely for many
//! processes at once: created mode 0600 in a 0700 directory before SQLite touches them, WAL
//! mode, a busy handler that polls instead of failing, and `IMMEDIATE` write transactions
//! (callers' job) so two writers never deadlock on a lock upgrade.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

/// How long a write waits for another process's transaction before failing.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Durability of commits on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous = FULL`: every commit is on disk when it returns.
    Full,
    /// `synchronous = NORMAL`: a commit survives the process crashing, not power loss.
    Normal,
}

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The directory or file could not be created or secured.
    #[error("cannot create `{0}`: {1}")]
    Create(std::path::PathBuf, std::io::Error),
    /// SQLite refused.
    #[error("cannot open `{0}`: {1}")]
    Sqlite(std::path::PathBuf, rusqlite::Error),
}

/// Open (creating if needed) the database at `path`.
pub fn open(path: &Path, durability: Durability) -> Result<Connection, OpenError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| OpenError::Create(dir.into(), e))?;
    }
    // Create the file ourselves so it is never readable by others, not even for a moment;
    // SQLite gives its -wal and -shm files the database file's permissions.
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| OpenError::Create(path.into(), e))?;
    let mode = std::fs::metadata(path)
        .map_err(|e| OpenError::Create(path.into(), e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| OpenError::Create(path.into(), e))?;
    }
    let sqlite = |e| OpenError::Sqlite(path.into(), e);
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite)?;
    poll_when_busy(&mut conn).map_err(sqlite)?;
    let deadline = Instant::now() + LOCK_TIMEOUT;
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)) {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => break,
            Ok(_) => {
                return Err(sqlite(rusqlite::Error::InvalidQuery));
            }
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::DatabaseBusy && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(sqlite(e)),
        }
    }
    conn.execute_batch(match durability {
        Durability::Full => "PRAGMA synchronous = FULL",
        Durability::Normal => "PRAGMA synchronous = NORMAL",
    })
    .map_err(sqlite)?;
    // Every commit is already durable in the log; folding the log back into the database
    // when the last connection closes would cost each short-lived supervisor two more
    // `fsync`s. SQLite folds it as it grows (every 1,000 pages) and on the next open.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )
    .map_err(sqlite)?;
    fold_long_log(&mut conn, path).map_err(sqlite)?;
    Ok(conn)
}

/// The log's size past which [`open`] folds it into the database and truncates it.
pub const FOLD_LOG_BYTES: u64 = 512 << 10;

/// A process that opens the database while no other has it open rebuilds the log's index by
/// reading and checksumming the whole log. And SQLite starts the log over only inside a
/// connection that saw it folded, which short-lived connections that never fold at close do
/// not: the log grows to SQLite's 1,000 pages (4 MiB, about 2 ms of every task's start).
/// So once it passes [`FOLD_LOG_BYTES`] (about every dozen tasks, at 7 to 10 pages each),
/// fold it and truncate it now; if another process is using it, leave it for a later open
/// rather than wait.
fn fold_long_log(conn: &mut Connection, path: &Path) -> rusqlite::Result<()> {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    if std::fs::metadata(&wal).is_ok_and(|m| m.len() > FOLD_LOG_BYTES) {
        conn.busy_handler(None::<fn(i32) -> bool>)?;
        // Busy is an answer here, not a failure: the log stays as it is.
        let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        poll_when_busy(conn)?;
    }
    Ok(())
}

/// Wait for another process's lock by polling every 100 µs (1 ms after the first second)
/// up to [`LOCK_TIMEOUT`]: SQLite's own handler sleeps in long steps and leaves the lock idle.
fn poll_when_busy(conn: &mut Connection) -> rusqlite::Result<()> {
    let mut started = Instant::now();
    conn.busy_handler(Some(move |count: i32| {
        if count == 0 {
            started = Instant::now();
        }
        let waited = started.elapsed();
        if waited >= LOCK_TIMEOUT {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn the_log_stays_short() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut conn = open(&path, Durability::Normal).unwrap();
        conn.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
            .unwrap();
        // Short-lived processes, each writing a few pages, as tasks do.
        for i in 0..400 {
            drop(conn);
            conn = open(&path, Durability::Normal).unwrap();
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .unwrap();
            tx.execute("INSERT INTO t (k, v) VALUES (?1, zeroblob(6000))", [i])
                .unwrap();
            tx.commit().unwrap();
        }
        let wal = std::fs::metadata(dir.path().join("state.db-wal"))
            .unwrap()
            .len();
        // 400 commits of two to three pages each would be over 3 MiB of log unfolded.
        let limit = FOLD_LOG_BYTES + 8 * (4096 + 24);
        assert!(wal <= limit, "log of {wal} bytes, more than {limit}");
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 400);
    }

    #[test]
    fn a_log_in_use_is_left_for_later() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let conn = open(&path, Durability::Normal).unwrap();
        conn.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
            .unwrap();
        for i in 0..120 {
            conn.execute("INSERT INTO t (k, v) VALUES (?1, zeroblob(6000))", [i])
                .unwrap();
        }
        let wal = dir.path().join("state.db-wal");
        let long = std::fs::metadata(&wal).unwrap().len();
        assert!(long > FOLD_LOG_BYTES, "{long}");
        // Another process reads from the log: folding it would have to wait for that reader.
        let mut reader = Connection::open(&path).unwrap();
        let snapshot = reader.transaction().unwrap();
        let seen: i64 = snapshot
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(seen, 120);
        // Opening does not wait for it (the lock timeout is 30 s) and leaves the log whole.
        let started = Instant::now();
        let other = open(&path, Durability::Normal).unwrap();
        assert!(started.elapsed() < LOCK_TIMEOUT / 3);
        assert!(std::fs::metadata(&wal).unwrap().len() >= long);
        drop(snapshot);
        drop(other);
        drop(conn);
        // Twin: with the reader gone, the next open folds and truncates it.
        let conn = open(&path, Durability::Normal).unwrap();
        assert!(std::fs::metadata(&wal).unwrap().len() <= FOLD_LOG_BYTES);
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 120);
    }
}
