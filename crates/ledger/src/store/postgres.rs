//! The PostgreSQL store, for a fleet: same tables as SQLite, prefixed `ledger_`.
//!
//! One ledger per schema: put several ledgers in one database by giving each connection its
//! own `search_path` (`options=-csearch_path=node1`). Any number of writers share a ledger:
//! each commit is one `READ COMMITTED` transaction that first takes
//! `LOCK TABLE ledger_events IN EXCLUSIVE MODE` (so commits of one ledger run one at a time
//! while readers go on, and ledgers in other schemas are not held up), waiting at most
//! [`WRITE_LOCK_TIMEOUT`]; the lock goes with the transaction, and with the connection of a
//! writer that dies. Readers run every transaction `READ ONLY`. Commits are durable with
//! PostgreSQL's defaults (`fsync = on`, `synchronous_commit = on`). Statements are prepared
//! once per connection.

use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{Client, NoTls, Statement};

use super::{
    CheckpointRow, EventRow, Head, Meta, Query, RowRef, Store, Txn, WRITE_LOCK_TIMEOUT,
    meta_from_pairs, meta_pairs, redact_url,
};
use crate::error::{Error, Result, one_line};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ledger_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_events (
    seq   BIGINT PRIMARY KEY CHECK (seq >= 0),
    time  TEXT NOT NULL,
    task  TEXT NOT NULL,
    agent TEXT NOT NULL,
    kind  TEXT NOT NULL,
    body  TEXT NOT NULL,
    nodes BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_events_task ON ledger_events (task, seq);
CREATE TABLE IF NOT EXISTS ledger_checkpoints (
    size BIGINT PRIMARY KEY CHECK (size >= 0),
    time TEXT NOT NULL,
    note TEXT NOT NULL,
    kept BOOLEAN NOT NULL
);
-- Pruning finds the (at most one) transient checkpoint without walking the history.
CREATE INDEX IF NOT EXISTS ledger_checkpoints_transient ON ledger_checkpoints (size) WHERE NOT kept;
";

const COLUMNS: &str = "seq, time, task, agent, kind, body, nodes";

/// The head in one statement (see the SQLite store).
const HEAD: &str = "SELECT size, time, note, kept,
        (SELECT MAX(seq) FROM ledger_events),
        (SELECT time FROM ledger_checkpoints WHERE kept ORDER BY size DESC LIMIT 1)
    FROM ledger_checkpoints ORDER BY size DESC LIMIT 1";

/// A commit's writes in one round trip: the events, the pruning of transient checkpoints
/// below the new one, the new one.
const APPEND: &str = "WITH events AS (
        INSERT INTO ledger_events (seq, time, task, agent, kind, body, nodes)
        SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $6::text[], $7::bytea[])
    ), pruned AS (
        DELETE FROM ledger_checkpoints WHERE NOT kept AND size < $8
    )
    INSERT INTO ledger_checkpoints (size, time, note, kept) VALUES ($8, $9, $10, $11)";

/// A ledger in PostgreSQL.
pub struct PgStore {
    client: Client,
    url: String,
    write: bool,
    statements: HashMap<&'static str, Statement>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgStore({})", self.url)
    }
}

fn db_error(store: &str, e: &postgres::Error) -> Error {
    let detail = match e.as_db_error() {
        Some(db) => one_line(format!("{}: {}", db.severity(), db.message())),
        None => one_line(e),
    };
    Error::Store {
        store: store.to_owned(),
        detail,
    }
}

/// A statement prepared once per connection.
fn prepared(
    client: &mut Client,
    statements: &mut HashMap<&'static str, Statement>,
    sql: &'static str,
) -> std::result::Result<Statement, postgres::Error> {
    if let Some(stmt) = statements.get(sql) {
        return Ok(stmt.clone());
    }
    let stmt = client.prepare(sql)?;
    statements.insert(sql, stmt.clone());
    Ok(stmt)
}

fn to_i64(store: &str, value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| Error::Store {
        store: store.to_owned(),
        detail: format!("sequence number {value} is too large"),
    })
}

fn to_u64(store: &str, value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| Error::Store {
        store: store.to_owned(),
        detail: format!("negative sequence number {value}"),
    })
}

fn count_from_max(store: &str, max: Option<i64>) -> Result<u64> {
    match max {
        None => Ok(0),
        Some(max) => to_u64(store, max)?
            .checked_add(1)
            .ok_or_else(|| Error::Store {
                store: store.to_owned(),
                detail: "sequence number overflow".into(),
            }),
    }
}

impl PgStore {
    /// Connect. A reader makes its session read-only; a writer takes no lock until it commits.
    pub fn connect(url: &str, write: bool) -> Result<Self> {
        let shown = redact_url(url);
        let client = Client::connect(url, NoTls).map_err(|e| Error::Store {
            store: format!("`{shown}`"),
            detail: format!("cannot connect: {}", one_line(&e)),
        })?;
        let mut store = Self {
            client,
            url: shown,
            write,
            statements: HashMap::new(),
        };
        if !write {
            store
                .client
                .batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                .map_err(|e| store.err(e))?;
        }
        Ok(store)
    }

    fn err(&self, e: postgres::Error) -> Error {
        db_error(&self.describe(), &e)
    }

    fn fail(&self, detail: String) -> Error {
        Error::Store {
            store: self.describe(),
            detail,
        }
    }

    fn stmt(&mut self, sql: &'static str) -> Result<Statement> {
        prepared(&mut self.client, &mut self.statements, sql).map_err(|e| self.err(e))
    }

    fn has_table(&mut self, name: &str) -> Result<bool> {
        let stmt = self.stmt("SELECT to_regclass($1) IS NOT NULL")?;
        let row = self
            .client
            .query_one(&stmt, &[&name])
            .map_err(|e| self.err(e))?;
        row.try_get(0).map_err(|e| self.err(e))
    }

    fn row(&self, row: &postgres::Row) -> Result<EventRow> {
        let get = || -> std::result::Result<EventRow, postgres::Error> {
            let seq: i64 = row.try_get(0)?;
            let body: &str = row.try_get(5)?;
            let nodes: &[u8] = row.try_get(6)?;
            Ok(EventRow {
                seq: seq as u64,
                time: row.try_get(1)?,
                task: row.try_get(2)?,
                agent: row.try_get(3)?,
                kind: row.try_get(4)?,
                body: body.as_bytes().to_vec(),
                nodes: nodes.to_vec(),
            })
        };
        get().map_err(|e| self.err(e))
    }

    fn checkpoint_row(&self, row: &postgres::Row) -> Result<CheckpointRow> {
        checkpoint_row(&self.describe(), row)
    }

    /// Run `body` between `start` (which opens the transaction) and `COMMIT`, rolling back on
    /// any error.
    fn in_transaction<T>(
        &mut self,
        start: &str,
        ends_with_head: bool,
        body: impl FnOnce(&mut PgTxn<'_>) -> Result<T>,
    ) -> Result<T> {
        let shown = self.describe();
        let messages = match self.client.simple_query(start) {
            Ok(messages) => messages,
            Err(e) => {
                // A statement after `START` failed (a lock timeout): end the aborted
                // transaction.
                let _ = self.client.batch_execute("ROLLBACK");
                return Err(db_error(&shown, &e));
            }
        };
        // `start` may end with the head query: its answer saves a round trip under the lock.
        let prefetched = messages.iter().find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(row) if ends_with_head => {
                Some(head_from_text(&shown, row))
            }
            _ => None,
        });
        let prefetched = match prefetched.transpose() {
            Ok(head) => head,
            Err(e) => {
                let _ = self.client.batch_execute("ROLLBACK");
                return Err(e);
            }
        };
        let mut txn = PgTxn {
            client: &mut self.client,
            statements: &mut self.statements,
            store: &shown,
            prefetched,
        };
        match body(&mut txn) {
            Ok(value) => {
                self.client
                    .batch_execute("COMMIT")
                    .map_err(|e| db_error(&shown, &e))?;
                Ok(value)
            }
            Err(e) => {
                // The connection may be gone; the server rolls back then anyway.
                let _ = self.client.batch_execute("ROLLBACK");
                Err(e)
            }
        }
    }
}

fn checkpoint_row(store: &str, row: &postgres::Row) -> Result<CheckpointRow> {
    let e = |e: postgres::Error| db_error(store, &e);
    let size: i64 = row.try_get(0).map_err(e)?;
    Ok(CheckpointRow {
        size: u64::try_from(size).map_err(|_| Error::Store {
            store: store.to_owned(),
            detail: format!("negative checkpoint size {size}"),
        })?,
        time: row.try_get(1).map_err(e)?,
        note: row.try_get(2).map_err(e)?,
        kept: row.try_get(3).map_err(e)?,
    })
}

/// A transaction on a PostgreSQL ledger.
struct PgTxn<'a> {
    client: &'a mut Client,
    statements: &'a mut HashMap<&'static str, Statement>,
    store: &'a str,
    /// The head, read by the statement that took the lock.
    prefetched: Option<Head>,
}

/// The head from the text columns of [`HEAD`] (the simple-query protocol answers in text).
fn head_from_text(store: &str, row: &postgres::SimpleQueryRow) -> Result<Head> {
    let bad = |what: &str| Error::Store {
        store: store.to_owned(),
        detail: format!("unreadable {what} in the ledger head"),
    };
    let text =
        |i: usize, what: &str| -> Result<Option<&str>> { row.try_get(i).map_err(|_| bad(what)) };
    let number = |i: usize, what: &str| -> Result<Option<u64>> {
        match text(i, what)? {
            None => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|_| bad(what)),
        }
    };
    let max = number(4, "sequence number")?;
    Ok(Head {
        events: match max {
            None => 0,
            Some(max) => max.checked_add(1).ok_or_else(|| bad("sequence number"))?,
        },
        checkpoint: Some(CheckpointRow {
            size: number(0, "checkpoint size")?.ok_or_else(|| bad("checkpoint size"))?,
            time: text(1, "checkpoint time")?
                .ok_or_else(|| bad("checkpoint time"))?
                .to_owned(),
            note: text(2, "checkpoint")?
                .ok_or_else(|| bad("checkpoint"))?
                .to_owned(),
            kept: match text(3, "checkpoint mark")? {
                Some("t") => true,
                Some("f") => false,
                _ => return Err(bad("checkpoint mark")),
            },
        }),
        kept_time: text(5, "kept checkpoint time")?.map(str::to_owned),
    })
}

impl PgTxn<'_> {
    fn stmt(&mut self, sql: &'static str) -> Result<Statement> {
        prepared(self.client, self.statements, sql).map_err(|e| db_error(self.store, &e))
    }

    fn err(&self, e: postgres::Error) -> Error {
        db_error(self.store, &e)
    }
}

impl Txn for PgTxn<'_> {
    fn head(&mut self) -> Result<Head> {
        if let Some(head) = self.prefetched.take() {
            return Ok(head);
        }
        let stmt = self.stmt(HEAD)?;
        let row = self.client.query_opt(&stmt, &[]).map_err(|e| self.err(e))?;
        match row {
            Some(row) => {
                let max: Option<i64> = row.try_get(4).map_err(|e| self.err(e))?;
                Ok(Head {
                    events: count_from_max(self.store, max)?,
                    checkpoint: Some(checkpoint_row(self.store, &row)?),
                    kept_time: row.try_get(5).map_err(|e| self.err(e))?,
                })
            }
            None => {
                let stmt = self.stmt("SELECT MAX(seq) FROM ledger_events")?;
                let row = self.client.query_one(&stmt, &[]).map_err(|e| self.err(e))?;
                let max: Option<i64> = row.try_get(0).map_err(|e| self.err(e))?;
                Ok(Head {
                    events: count_from_max(self.store, max)?,
                    checkpoint: None,
                    kept_time: None,
                })
            }
        }
    }

    fn nodes(&mut self, seq: u64) -> Result<Option<Vec<u8>>> {
        let seq = to_i64(self.store, seq)?;
        let stmt = self.stmt("SELECT nodes FROM ledger_events WHERE seq = $1")?;
        let row = self
            .client
            .query_opt(&stmt, &[&seq])
            .map_err(|e| self.err(e))?;
        match row {
            None => Ok(None),
            Some(r) => {
                let nodes: &[u8] = r.try_get(0).map_err(|e| self.err(e))?;
                Ok(Some(nodes.to_vec()))
            }
        }
    }

    fn nodes_of(&mut self, seqs: &[u64]) -> Result<Vec<Option<Vec<u8>>>> {
        let wanted = seqs
            .iter()
            .map(|&seq| to_i64(self.store, seq))
            .collect::<Result<Vec<i64>>>()?;
        let stmt = self.stmt("SELECT seq, nodes FROM ledger_events WHERE seq = ANY($1::int8[])")?;
        let rows = self
            .client
            .query(&stmt, &[&wanted])
            .map_err(|e| self.err(e))?;
        let mut found = vec![None; seqs.len()];
        for row in &rows {
            let seq: i64 = row.try_get(0).map_err(|e| self.err(e))?;
            let nodes: &[u8] = row.try_get(1).map_err(|e| self.err(e))?;
            if let Some(i) = wanted.iter().position(|&w| w == seq) {
                found[i] = Some(nodes.to_vec());
            }
        }
        Ok(found)
    }

    fn append(&mut self, events: &[EventRow], checkpoint: &CheckpointRow) -> Result<()> {
        let mut seqs = Vec::with_capacity(events.len());
        let mut bodies = Vec::with_capacity(events.len());
        for e in events {
            seqs.push(to_i64(self.store, e.seq)?);
            bodies.push(
                std::str::from_utf8(&e.body)
                    .map_err(|_| Error::Encode(format!("event {} is not utf-8", e.seq)))?,
            );
        }
        let times: Vec<&str> = events.iter().map(|e| e.time.as_str()).collect();
        let tasks: Vec<&str> = events.iter().map(|e| e.task.as_str()).collect();
        let agents: Vec<&str> = events.iter().map(|e| e.agent.as_str()).collect();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        let nodes: Vec<&[u8]> = events.iter().map(|e| e.nodes.as_slice()).collect();
        let size = to_i64(self.store, checkpoint.size)?;
        let stmt = self.stmt(APPEND)?;
        self.client
            .execute(
                &stmt,
                &[
                    &seqs,
                    &times,
                    &tasks,
                    &agents,
                    &kinds,
                    &bodies,
                    &nodes,
                    &size,
                    &checkpoint.time,
                    &checkpoint.note,
                    &checkpoint.kept,
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn keep(&mut self, size: u64) -> Result<()> {
        let size_i = to_i64(self.store, size)?;
        let stmt = self.stmt("UPDATE ledger_checkpoints SET kept = true WHERE size = $1")?;
        let changed = self
            .client
            .execute(&stmt, &[&size_i])
            .map_err(|e| self.err(e))?;
        if changed != 1 {
            return Err(Error::Store {
                store: self.store.to_owned(),
                detail: format!("no checkpoint of size {size} to keep"),
            });
        }
        Ok(())
    }
}

impl Store for PgStore {
    fn describe(&self) -> String {
        format!("`{}`", self.url)
    }

    fn read_meta(&mut self) -> Result<Option<Meta>> {
        let mut retried = false;
        let rows = loop {
            match self.client.query("SELECT key, value FROM ledger_meta", &[]) {
                Ok(rows) => break rows,
                Err(e) if e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) => {
                    // One look at all three tables: another process may be creating the
                    // ledger right now, and then all three appear at once.
                    let row = self
                        .client
                        .query_one(
                            "SELECT to_regclass('ledger_meta') IS NOT NULL,
                                    to_regclass('ledger_events') IS NOT NULL
                                    OR to_regclass('ledger_checkpoints') IS NOT NULL",
                            &[],
                        )
                        .map_err(|e| self.err(e))?;
                    let meta: bool = row.try_get(0).map_err(|e| self.err(e))?;
                    let others: bool = row.try_get(1).map_err(|e| self.err(e))?;
                    if meta && !retried {
                        retried = true;
                        continue;
                    }
                    if others {
                        return Err(self.fail("not a remit ledger (no metadata)".into()));
                    }
                    return Ok(None);
                }
                Err(e) => return Err(self.err(e)),
            }
        };
        let mut pairs = Vec::with_capacity(rows.len());
        for row in &rows {
            pairs.push((
                row.try_get::<_, String>(0).map_err(|e| self.err(e))?,
                row.try_get::<_, String>(1).map_err(|e| self.err(e))?,
            ));
        }
        if pairs.is_empty() {
            return Ok(None);
        }
        meta_from_pairs(&pairs).map(Some).map_err(|d| self.fail(d))
    }

    fn create(&mut self, meta: &Meta, genesis: &CheckpointRow) -> Result<Meta> {
        if !self.write {
            return Err(self.fail("opened read-only, refusing to write".into()));
        }
        // Concurrent `CREATE TABLE IF NOT EXISTS` can fail in PostgreSQL; creators of one
        // schema's ledger take turns.
        let start = "START TRANSACTION ISOLATION LEVEL READ COMMITTED;
            SELECT pg_advisory_xact_lock(hashtext('remit-ledger:' || coalesce(current_schema(), '')));";
        let shown = self.describe();
        self.in_transaction(start, false, |txn| {
            txn.client
                .batch_execute(SCHEMA)
                .map_err(|e| db_error(&shown, &e))?;
            let rows = txn
                .client
                .query("SELECT key, value FROM ledger_meta", &[])
                .map_err(|e| db_error(&shown, &e))?;
            if !rows.is_empty() {
                let mut pairs = Vec::with_capacity(rows.len());
                for row in &rows {
                    pairs.push((
                        row.try_get::<_, String>(0)
                            .map_err(|e| db_error(&shown, &e))?,
                        row.try_get::<_, String>(1)
                            .map_err(|e| db_error(&shown, &e))?,
                    ));
                }
                return meta_from_pairs(&pairs).map_err(|detail| Error::Store {
                    store: shown.clone(),
                    detail,
                });
            }
            for (key, value) in meta_pairs(meta) {
                txn.client
                    .execute(
                        "INSERT INTO ledger_meta (key, value) VALUES ($1, $2)",
                        &[&key, &value],
                    )
                    .map_err(|e| db_error(&shown, &e))?;
            }
            txn.append(&[], genesis)?;
            Ok(meta.clone())
        })
    }

    fn size(&mut self) -> Result<u64> {
        let stmt = self.stmt("SELECT MAX(seq) FROM ledger_events")?;
        let row = self.client.query_one(&stmt, &[]).map_err(|e| self.err(e))?;
        let max: Option<i64> = row.try_get(0).map_err(|e| self.err(e))?;
        count_from_max(&self.describe(), max)
    }

    fn rows_below_zero(&mut self) -> Result<u64> {
        let stmt = self.stmt("SELECT COUNT(*) FROM ledger_events WHERE seq < 0")?;
        let row = self.client.query_one(&stmt, &[]).map_err(|e| self.err(e))?;
        let n: i64 = row.try_get(0).map_err(|e| self.err(e))?;
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
        let start = if write {
            // READ COMMITTED: every statement after the lock sees what the writers before
            // committed (a REPEATABLE READ snapshot would be taken before the lock is held).
            format!(
                "START TRANSACTION ISOLATION LEVEL READ COMMITTED;
                 SET LOCAL lock_timeout = '{}ms';
                 LOCK TABLE ledger_events IN EXCLUSIVE MODE;
                 {HEAD}",
                WRITE_LOCK_TIMEOUT.as_millis()
            )
        } else {
            "START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY".to_owned()
        };
        self.in_transaction(&start, write, |txn| body(txn))
    }

    fn lock_is_fair(&self) -> bool {
        true
    }

    fn begin_snapshot(&mut self) -> Result<()> {
        self.client
            .batch_execute("START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .map_err(|e| self.err(e))
    }

    fn end_snapshot(&mut self) -> Result<()> {
        self.client.batch_execute("COMMIT").map_err(|e| self.err(e))
    }

    fn event(&mut self, seq: u64) -> Result<Option<EventRow>> {
        let seq = to_i64(&self.describe(), seq)?;
        let stmt = self.stmt(
            "SELECT seq, time, task, agent, kind, body, nodes FROM ledger_events WHERE seq = $1",
        )?;
        let row = self
            .client
            .query_opt(&stmt, &[&seq])
            .map_err(|e| self.err(e))?;
        row.map(|r| self.row(&r)).transpose()
    }

    fn nodes(&mut self, seq: u64) -> Result<Option<Vec<u8>>> {
        let shown = self.describe();
        PgTxn {
            client: &mut self.client,
            statements: &mut self.statements,
            store: &shown,
            prefetched: None,
        }
        .nodes(seq)
    }

    fn scan(
        &mut self,
        query: &Query,
        visit: &mut dyn FnMut(RowRef<'_>) -> Result<bool>,
    ) -> Result<()> {
        // Page through the result with keyset pagination so a million-event scan stays in
        // bounded memory without holding a cursor open.
        const PAGE: u64 = 8192;
        let shown = self.describe();
        let mut from_seq = query.from_seq;
        let mut remaining = query.limit;
        loop {
            let page = remaining.map_or(PAGE, |r| r.min(PAGE));
            if page == 0 {
                return Ok(());
            }
            let mut sql = format!("SELECT {COLUMNS} FROM ledger_events WHERE seq >= $1");
            let from = to_i64(&shown, from_seq)?;
            let limit = to_i64(&shown, page)?;
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&from];
            if let Some(task) = &query.task {
                params.push(task);
                sql.push_str(&format!(" AND task = ${}", params.len()));
            }
            if let Some(agent) = &query.agent {
                params.push(agent);
                sql.push_str(&format!(" AND agent = ${}", params.len()));
            }
            if !query.kinds.is_empty() {
                params.push(&query.kinds);
                sql.push_str(&format!(" AND kind = ANY(${})", params.len()));
            }
            if let Some(since) = &query.since {
                params.push(since);
                sql.push_str(&format!(" AND time >= ${}", params.len()));
            }
            params.push(&limit);
            sql.push_str(&format!(" ORDER BY seq LIMIT ${}", params.len()));
            let rows = self.client.query(&sql, &params).map_err(|e| self.err(e))?;
            let count = rows.len() as u64;
            for row in &rows {
                let event = self.row(row)?;
                from_seq = event.seq.saturating_add(1);
                let borrowed = RowRef {
                    seq: event.seq,
                    time: &event.time,
                    task: &event.task,
                    agent: &event.agent,
                    kind: &event.kind,
                    body: &event.body,
                    nodes: &event.nodes,
                };
                if !visit(borrowed)? {
                    return Ok(());
                }
            }
            if count < page {
                return Ok(());
            }
            remaining = remaining.map(|r| r - count);
        }
    }

    fn each_checkpoint(
        &mut self,
        visit: &mut dyn FnMut(CheckpointRow) -> Result<()>,
    ) -> Result<()> {
        if !self.has_table("ledger_checkpoints")? {
            return Ok(());
        }
        // In pages by size, so that millions of them are never all held at once.
        let stmt = self.stmt(
            "SELECT size, time, note, kept FROM ledger_checkpoints WHERE size > $1 ORDER BY size LIMIT 4096",
        )?;
        let mut after: i64 = -1;
        loop {
            let rows = self
                .client
                .query(&stmt, &[&after])
                .map_err(|e| self.err(e))?;
            let Some(last) = rows.last() else {
                return Ok(());
            };
            after = last.try_get(0).map_err(|e| self.err(e))?;
            for row in &rows {
                visit(self.checkpoint_row(row)?)?;
            }
        }
    }

    fn latest_checkpoint(&mut self) -> Result<Option<CheckpointRow>> {
        let stmt = self.stmt(
            "SELECT size, time, note, kept FROM ledger_checkpoints ORDER BY size DESC LIMIT 1",
        )?;
        let row = self.client.query_opt(&stmt, &[]).map_err(|e| self.err(e))?;
        row.map(|r| self.checkpoint_row(&r)).transpose()
    }

    fn checkpoint_covering(&mut self, size: u64) -> Result<Option<CheckpointRow>> {
        let size = to_i64(&self.describe(), size)?;
        let stmt = self.stmt(
            "SELECT size, time, note, kept FROM ledger_checkpoints WHERE size >= $1 ORDER BY size LIMIT 1",
        )?;
        let row = self
            .client
            .query_opt(&stmt, &[&size])
            .map_err(|e| self.err(e))?;
        row.map(|r| self.checkpoint_row(&r)).transpose()
    }
}
