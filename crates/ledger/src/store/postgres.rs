//! The PostgreSQL store, for a fleet: same tables as SQLite, prefixed `ledger_`.
//!
//! One ledger per schema: put several ledgers in one database by giving each connection its
//! own `search_path` (`options=-csearch_path=node1`). The writer holds a session advisory lock
//! so two writers never interleave; readers run every transaction `READ ONLY`. Commits are
//! durable with PostgreSQL's defaults (`fsync = on`, `synchronous_commit = on`).

use postgres::types::ToSql;
use postgres::{Client, NoTls};

use super::{CheckpointRow, EventRow, Meta, Query, RowRef, Store, redact_url};
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
    note TEXT NOT NULL
);
";

const COLUMNS: &str = "seq, time, task, agent, kind, body, nodes";

/// Advisory lock key of the single ledger writer (ASCII `remitldg`).
const WRITER_LOCK: i64 = 0x7265_6d69_746c_6467;

/// A ledger in PostgreSQL.
pub struct PgStore {
    client: Client,
    url: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgStore({})", self.url)
    }
}

impl PgStore {
    /// Connect. A writer takes the advisory writer lock; a reader makes its session read-only.
    pub fn connect(url: &str, write: bool) -> Result<Self> {
        let shown = redact_url(url);
        let client = Client::connect(url, NoTls).map_err(|e| Error::Store {
            store: format!("`{shown}`"),
            detail: format!("cannot connect: {}", one_line(&e)),
        })?;
        let mut store = Self { client, url: shown };
        if write {
            let row = store
                .client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&WRITER_LOCK])
                .map_err(|e| store.err(e))?;
            let locked: bool = row.try_get(0).map_err(|e| store.err(e))?;
            if !locked {
                return Err(store.fail("another process is writing this ledger".into()));
            }
        } else {
            store
                .client
                .batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                .map_err(|e| store.err(e))?;
        }
        Ok(store)
    }

    fn err(&self, e: postgres::Error) -> Error {
        let detail = match e.as_db_error() {
            Some(db) => one_line(format!("{}: {}", db.severity(), db.message())),
            None => one_line(&e),
        };
        self.fail(detail)
    }

    fn fail(&self, detail: String) -> Error {
        Error::Store {
            store: self.describe(),
            detail,
        }
    }

    fn has_table(&mut self, name: &str) -> Result<bool> {
        let row = self
            .client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
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
        let size: i64 = row.try_get(0).map_err(|e| self.err(e))?;
        Ok(CheckpointRow {
            size: u64::try_from(size)
                .map_err(|_| self.fail(format!("negative checkpoint size {size}")))?,
            time: row.try_get(1).map_err(|e| self.err(e))?,
            note: row.try_get(2).map_err(|e| self.err(e))?,
        })
    }

    fn to_i64(&self, value: u64) -> Result<i64> {
        i64::try_from(value).map_err(|_| self.fail(format!("sequence number {value} is too large")))
    }
}

impl Store for PgStore {
    fn describe(&self) -> String {
        format!("`{}`", self.url)
    }

    fn read_meta(&mut self) -> Result<Option<Meta>> {
        if !self.has_table("ledger_meta")? {
            if self.has_table("ledger_events")? {
                return Err(self.fail("not a remit ledger (no metadata)".into()));
            }
            return Ok(None);
        }
        let rows = self
            .client
            .query("SELECT key, value FROM ledger_meta", &[])
            .map_err(|e| self.err(e))?;
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
        super::sqlite::meta_from_pairs(&pairs)
            .map(Some)
            .map_err(|d| self.fail(d))
    }

    fn create(&mut self, meta: &Meta) -> Result<()> {
        let shown = self.describe();
        let fail = |e: postgres::Error| Error::Store {
            store: shown.clone(),
            detail: one_line(&e),
        };
        let mut tx = self.client.transaction().map_err(fail)?;
        tx.batch_execute(SCHEMA).map_err(fail)?;
        for (key, value) in super::sqlite::meta_pairs(meta) {
            tx.execute(
                "INSERT INTO ledger_meta (key, value) VALUES ($1, $2)",
                &[&key, &value],
            )
            .map_err(fail)?;
        }
        tx.commit().map_err(fail)
    }

    fn size(&mut self) -> Result<u64> {
        let row = self
            .client
            .query_one("SELECT MAX(seq) FROM ledger_events", &[])
            .map_err(|e| self.err(e))?;
        let max: Option<i64> = row.try_get(0).map_err(|e| self.err(e))?;
        match max {
            None => Ok(0),
            Some(max) => u64::try_from(max)
                .ok()
                .and_then(|m| m.checked_add(1))
                .ok_or_else(|| self.fail(format!("bad sequence number {max}"))),
        }
    }

    fn append(
        &mut self,
        events: &[EventRow],
        checkpoint: &CheckpointRow,
        prune_above: u64,
    ) -> Result<()> {
        let mut seqs = Vec::with_capacity(events.len());
        let mut bodies = Vec::with_capacity(events.len());
        for e in events {
            seqs.push(self.to_i64(e.seq)?);
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
        let cp_size = self.to_i64(checkpoint.size)?;
        let prune = self.to_i64(prune_above)?;
        let shown = self.describe();
        let fail = |e: postgres::Error| Error::Store {
            store: shown.clone(),
            detail: match e.as_db_error() {
                Some(db) => one_line(format!("{}: {}", db.severity(), db.message())),
                None => one_line(&e),
            },
        };
        let mut tx = self.client.transaction().map_err(fail)?;
        if !events.is_empty() {
            tx.execute(
                "INSERT INTO ledger_events (seq, time, task, agent, kind, body, nodes)
                 SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[],
                                      $6::text[], $7::bytea[])",
                &[&seqs, &times, &tasks, &agents, &kinds, &bodies, &nodes],
            )
            .map_err(fail)?;
        }
        tx.execute("DELETE FROM ledger_checkpoints WHERE size > $1", &[&prune])
            .map_err(fail)?;
        tx.execute(
            "INSERT INTO ledger_checkpoints (size, time, note) VALUES ($1, $2, $3)
             ON CONFLICT (size) DO UPDATE SET time = EXCLUDED.time, note = EXCLUDED.note",
            &[&cp_size, &checkpoint.time, &checkpoint.note],
        )
        .map_err(fail)?;
        tx.commit().map_err(fail)
    }

    fn event(&mut self, seq: u64) -> Result<Option<EventRow>> {
        let seq = self.to_i64(seq)?;
        let row = self
            .client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM ledger_events WHERE seq = $1"),
                &[&seq],
            )
            .map_err(|e| self.err(e))?;
        row.map(|r| self.row(&r)).transpose()
    }

    fn nodes(&mut self, seq: u64) -> Result<Option<Vec<u8>>> {
        let seq = self.to_i64(seq)?;
        let row = self
            .client
            .query_opt("SELECT nodes FROM ledger_events WHERE seq = $1", &[&seq])
            .map_err(|e| self.err(e))?;
        match row {
            None => Ok(None),
            Some(r) => {
                let nodes: &[u8] = r.try_get(0).map_err(|e| self.err(e))?;
                Ok(Some(nodes.to_vec()))
            }
        }
    }

    fn scan(
        &mut self,
        query: &Query,
        visit: &mut dyn FnMut(RowRef<'_>) -> Result<bool>,
    ) -> Result<()> {
        // Page through the result with keyset pagination so a million-event scan stays in
        // bounded memory without holding a cursor open.
        const PAGE: u64 = 8192;
        let mut from_seq = query.from_seq;
        let mut remaining = query.limit;
        loop {
            let page = remaining.map_or(PAGE, |r| r.min(PAGE));
            if page == 0 {
                return Ok(());
            }
            let mut sql = format!("SELECT {COLUMNS} FROM ledger_events WHERE seq >= $1");
            let from = self.to_i64(from_seq)?;
            let limit = self.to_i64(page)?;
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

    fn checkpoints(&mut self) -> Result<Vec<CheckpointRow>> {
        if !self.has_table("ledger_checkpoints")? {
            return Ok(Vec::new());
        }
        let rows = self
            .client
            .query(
                "SELECT size, time, note FROM ledger_checkpoints ORDER BY size",
                &[],
            )
            .map_err(|e| self.err(e))?;
        rows.iter().map(|r| self.checkpoint_row(r)).collect()
    }

    fn latest_checkpoint(&mut self) -> Result<Option<CheckpointRow>> {
        let row = self
            .client
            .query_opt(
                "SELECT size, time, note FROM ledger_checkpoints ORDER BY size DESC LIMIT 1",
                &[],
            )
            .map_err(|e| self.err(e))?;
        row.map(|r| self.checkpoint_row(&r)).transpose()
    }

    fn checkpoint_covering(&mut self, size: u64) -> Result<Option<CheckpointRow>> {
        let size = self.to_i64(size)?;
        let row = self
            .client
            .query_opt(
                "SELECT size, time, note FROM ledger_checkpoints WHERE size >= $1 ORDER BY size LIMIT 1",
                &[&size],
            )
            .map_err(|e| self.err(e))?;
        row.map(|r| self.checkpoint_row(&r)).transpose()
    }
}
