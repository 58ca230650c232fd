//! Where events live: one trait, two stores (SQLite by default, PostgreSQL for a fleet).
//!
//! A store keeps three things: the events (canonical JSON, one row per sequence number, with a
//! few columns copied out of the JSON for filtering), for each event the hashes of the perfect
//! subtrees it completes (so proofs read `O(log n)` rows instead of rehashing the log), and
//! the signed checkpoints, each marked kept (part of the history) or transient (the head of
//! one commit, replaced by the next). It knows nothing about hashing or signing: the writer
//! computes, the store persists, and `verify` trusts none of what is stored.
//!
//! Many writer processes share one store. A writer holds no lock between commits: each commit
//! is one [`Store::transaction`] that takes the store's write lock for its duration (SQLite
//! `BEGIN IMMEDIATE`, PostgreSQL `LOCK TABLE … IN EXCLUSIVE MODE`), so inside it the
//! [`Txn::head`] it reads is the true head and nothing can interleave.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::merkle::{self, Hash, NodeSource};

#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sqlite;

/// Version of the storage layout (tables and columns), kept in the store's metadata.
///
/// 2: checkpoints carry `kept` (history point) or transient, so that several writer processes
/// can share a ledger. Layout 1 ledgers are refused.
pub const LAYOUT_VERSION: u32 = 2;

/// Longest a commit waits for another writer to release the store's write lock before it
/// fails (and with it the writer: fail closed). A commit holds the lock for one `fsync`.
pub const WRITE_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// One stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    /// Sequence number (leaf index).
    pub seq: u64,
    /// Copy of the event's `time`, for filtering.
    pub time: String,
    /// Copy of the event's `task`, for filtering.
    pub task: String,
    /// Copy of the event's `agent`, for filtering.
    pub agent: String,
    /// Copy of the event's `body.kind`, for filtering.
    pub kind: String,
    /// The event's canonical JSON: the Merkle leaf.
    pub body: Vec<u8>,
    /// Hashes of the perfect subtrees this leaf completes, level 0 (the leaf hash) first,
    /// 32 bytes each.
    pub nodes: Vec<u8>,
}

/// A stored event borrowed from the store while scanning (no copies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowRef<'a> {
    /// Sequence number.
    pub seq: u64,
    /// Indexed `time`.
    pub time: &'a str,
    /// Indexed `task`.
    pub task: &'a str,
    /// Indexed `agent`.
    pub agent: &'a str,
    /// Indexed `kind`.
    pub kind: &'a str,
    /// The canonical JSON.
    pub body: &'a [u8],
    /// Stored subtree hashes.
    pub nodes: &'a [u8],
}

impl RowRef<'_> {
    /// An owned copy.
    pub fn to_owned_row(&self) -> EventRow {
        EventRow {
            seq: self.seq,
            time: self.time.to_owned(),
            task: self.task.to_owned(),
            agent: self.agent.to_owned(),
            kind: self.kind.to_owned(),
            body: self.body.to_vec(),
            nodes: self.nodes.to_vec(),
        }
    }
}

/// One stored signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    /// Tree size it covers.
    pub size: u64,
    /// When it was signed (RFC 3339, from the signing writer's clock).
    pub time: String,
    /// The signed note.
    pub note: String,
    /// Part of the checkpoint history (never deleted); `false` for a transient head, which
    /// the next commit of any writer deletes.
    pub kept: bool,
}

/// The head of the ledger as a writer sees it inside its transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Number of events: one past the highest sequence number.
    pub events: u64,
    /// The checkpoint with the largest size.
    pub checkpoint: Option<CheckpointRow>,
    /// When the newest kept checkpoint was signed.
    pub kept_time: Option<String>,
}

/// What a store records about the ledger it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Storage layout version ([`LAYOUT_VERSION`]).
    pub layout: u32,
    /// The ledger's origin (its key name).
    pub origin: String,
    /// The public key checkpoints are signed with (`vkey`).
    pub vkey: String,
    /// When the ledger was created.
    pub created: String,
}

/// Which events a scan returns. Empty filters match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// First sequence number.
    pub from_seq: u64,
    /// Only this task.
    pub task: Option<String>,
    /// Only this agent.
    pub agent: Option<String>,
    /// Only these kinds.
    pub kinds: Vec<String>,
    /// Only events at or after this time (RFC 3339 UTC, as the ledger writes it).
    pub since: Option<String>,
    /// At most this many events.
    pub limit: Option<u64>,
}

/// Persistence for the ledger. Every method either does all it says or returns an error.
pub trait Store: Send {
    /// A short description for messages (`` `/path/ledger.db` ``).
    fn describe(&self) -> String;

    /// Read the metadata; `None` for an empty (new) store.
    fn read_meta(&mut self) -> Result<Option<Meta>>;

    /// Create the tables and write the metadata and the genesis checkpoint, in one
    /// transaction, unless another process created the ledger first. Returns the metadata in
    /// force (the other process's, if it won).
    fn create(&mut self, meta: &Meta, genesis: &CheckpointRow) -> Result<Meta>;

    /// Number of events: one past the highest sequence number.
    fn size(&mut self) -> Result<u64>;

    /// Rows stored with a negative sequence number: no writer makes one, and every scan
    /// starts at 0, so only `verify` looks for them.
    fn rows_below_zero(&mut self) -> Result<u64>;

    /// Run `body` in one transaction: holding the store's write lock when `write` (waiting up
    /// to [`WRITE_LOCK_TIMEOUT`] for it), else on one consistent read snapshot. Commits when
    /// `body` returns `Ok`: then everything it wrote survives a crash or power loss. On any
    /// error nothing it wrote is there.
    fn transaction(
        &mut self,
        write: bool,
        body: &mut dyn FnMut(&mut dyn Txn) -> Result<()>,
    ) -> Result<()>;

    /// From now until [`Store::end_snapshot`], every read sees the ledger as it was at the
    /// first of them, whatever writers commit meanwhile (SQLite: a read transaction;
    /// PostgreSQL: a `REPEATABLE READ` one). For readers, so that e.g. the checkpoints and the
    /// events `verify` reads belong together.
    fn begin_snapshot(&mut self) -> Result<()>;

    /// End what [`Store::begin_snapshot`] began.
    fn end_snapshot(&mut self) -> Result<()>;

    /// Whether what was read since the store was opened may be torn: a store read without
    /// locks (a SQLite ledger opened as immutable because no writer had it open) whose file a
    /// writer changed meanwhile. Such a store opens itself again (through the log the writer
    /// left) and returns `true`: the read must be done again. Stores that read under locks
    /// return `false`.
    fn reopen_if_changed(&mut self) -> Result<bool> {
        Ok(false)
    }

    /// One event.
    fn event(&mut self, seq: u64) -> Result<Option<EventRow>>;

    /// The stored subtree hashes of event `seq`.
    fn nodes(&mut self, seq: u64) -> Result<Option<Vec<u8>>>;

    /// Visit matching events in sequence order; `visit` returns `false` to stop.
    fn scan(
        &mut self,
        query: &Query,
        visit: &mut dyn FnMut(RowRef<'_>) -> Result<bool>,
    ) -> Result<()>;

    /// Visit every checkpoint, by size, one at a time (a long-lived ledger has millions: they
    /// are not all held at once). An error from `visit` stops the visit and is returned.
    fn each_checkpoint(&mut self, visit: &mut dyn FnMut(CheckpointRow) -> Result<()>)
    -> Result<()>;

    /// The checkpoint with the largest size.
    fn latest_checkpoint(&mut self) -> Result<Option<CheckpointRow>>;

    /// The smallest checkpoint covering at least `size` events.
    fn checkpoint_covering(&mut self, size: u64) -> Result<Option<CheckpointRow>>;

    /// Whether waiting for the write lock queues writers in arrival order (PostgreSQL's lock
    /// manager does); if not (SQLite's writers poll), a writer steps aside briefly after each
    /// commit while others are active, so the lock goes round.
    fn lock_is_fair(&self) -> bool {
        false
    }

    /// Called once when the writer stops, after its last commit: a chance to tidy up (SQLite
    /// folds a large write-ahead log back into the database). Errors are not failures of the
    /// ledger and are ignored by the writer.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// What a writer can do inside a [`Store::transaction`].
pub trait Txn {
    /// The head: number of events, the largest checkpoint, the newest kept checkpoint's time.
    fn head(&mut self) -> Result<Head>;

    /// The stored subtree hashes of event `seq`.
    fn nodes(&mut self, seq: u64) -> Result<Option<Vec<u8>>>;

    /// The stored subtree hashes of each of `seqs` (what reloading the tree frontier reads);
    /// one round trip where that matters.
    fn nodes_of(&mut self, seqs: &[u64]) -> Result<Vec<Option<Vec<u8>>>> {
        seqs.iter().map(|&seq| self.nodes(seq)).collect()
    }

    /// Insert `events` and `checkpoint`, and delete every transient checkpoint smaller than
    /// `checkpoint` (kept ones are never deleted).
    fn append(&mut self, events: &[EventRow], checkpoint: &CheckpointRow) -> Result<()>;

    /// Mark the checkpoint of `size` kept.
    fn keep(&mut self, size: u64) -> Result<()>;
}

/// Where a ledger is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection string (`postgresql://…` or `host=… dbname=…`).
    Postgres(String),
}

impl Location {
    /// Open for reading only: the store refuses every write.
    pub fn open_read(&self) -> Result<Box<dyn Store>> {
        match self {
            Self::Sqlite(path) => Ok(Box::new(sqlite::SqliteStore::open_read(path)?)),
            Self::Postgres(url) => open_postgres(url, false),
        }
    }

    /// Open for writing. No lock is held between commits: any number of writers, in any
    /// number of processes, may have the same ledger open.
    pub fn open_write(&self) -> Result<Box<dyn Store>> {
        match self {
            Self::Sqlite(path) => Ok(Box::new(sqlite::SqliteStore::open_write(path)?)),
            Self::Postgres(url) => open_postgres(url, true),
        }
    }

    /// A short description for messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("`{}`", path.display()),
            Self::Postgres(url) => format!("`{}`", redact_url(url)),
        }
    }
}

#[cfg(feature = "postgres")]
fn open_postgres(url: &str, write: bool) -> Result<Box<dyn Store>> {
    Ok(Box::new(postgres::PgStore::connect(url, write)?))
}

#[cfg(not(feature = "postgres"))]
fn open_postgres(url: &str, _write: bool) -> Result<Box<dyn Store>> {
    Err(Error::Invalid(format!(
        "this build has no postgresql support (ledger `{}`)",
        redact_url(url)
    )))
}

/// Hide a password in a connection string for messages.
pub fn redact_url(url: &str) -> String {
    let secret = |key: &str| {
        let key = key.trim().to_ascii_lowercase();
        key == "password" || key == "sslpassword"
    };
    if let Some((scheme, rest)) = url.split_once("://") {
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let mut out = match rest.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or("");
                format!("{scheme}://{user}@{host}")
            }
            None => format!("{scheme}://{rest}"),
        };
        if let Some(query) = query {
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((key, _)) if secret(key) => format!("{key}=***"),
                    _ => param.to_owned(),
                })
                .collect();
            out.push('?');
            out.push_str(&params.join("&"));
        }
        return out;
    }
    // key = value pairs; a value may be quoted ('hunter 2', with \' and \\ inside).
    let mut out = String::with_capacity(url.len());
    let mut chars = url.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            out.push(c);
            chars.next();
            continue;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        let mut between = String::new();
        while let Some(&c) = chars.peek() {
            if c != '=' && !c.is_whitespace() {
                break;
            }
            between.push(c);
            chars.next();
            if c == '=' {
                while let Some(&c) = chars.peek() {
                    if !c.is_whitespace() {
                        break;
                    }
                    between.push(c);
                    chars.next();
                }
                break;
            }
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            value.push('\'');
            chars.next();
            while let Some(c) = chars.next() {
                value.push(c);
                if c == '\\' {
                    if let Some(escaped) = chars.next() {
                        value.push(escaped);
                    }
                } else if c == '\'' {
                    break;
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push_str(&key);
        out.push_str(&between);
        if secret(&key) && between.contains('=') {
            out.push_str("***");
        } else {
            out.push_str(&value);
        }
    }
    out
}

/// The ledger's default location: `$REMIT_HOME/ledger.db`, where `REMIT_HOME` defaults to
/// `$XDG_DATA_HOME/remit`, then `~/.local/share/remit`. `env` looks a variable up.
pub fn default_home(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let nonempty = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(home) = nonempty("REMIT_HOME") {
        return Some(PathBuf::from(home));
    }
    if let Some(data) = nonempty("XDG_DATA_HOME") {
        return Some(Path::new(&data).join("remit"));
    }
    nonempty("HOME").map(|home| Path::new(&home).join(".local/share/remit"))
}

/// Reads perfect-subtree hashes out of a store, for proofs.
pub(crate) struct StoreNodes<'a> {
    store: &'a mut dyn Store,
    cached: Option<(u64, Vec<u8>)>,
}

impl<'a> StoreNodes<'a> {
    pub(crate) fn new(store: &'a mut dyn Store) -> Self {
        Self {
            store,
            cached: None,
        }
    }
}

impl NodeSource for StoreNodes<'_> {
    type Error = Error;

    fn node(&mut self, level: u32, index: u64) -> Result<Hash> {
        let seq = merkle::node_position(level, index).ok_or_else(|| {
            Error::Invalid(format!("tree node ({level}, {index}) is out of range"))
        })?;
        let blob = match &self.cached {
            Some((cached, blob)) if *cached == seq => blob,
            _ => {
                let blob = self.store.nodes(seq)?.ok_or_else(|| Error::Store {
                    store: self.store.describe(),
                    detail: format!("event {seq} is missing (needed for a proof)"),
                })?;
                &self.cached.insert((seq, blob)).1
            }
        };
        let start = level as usize * 32;
        blob.get(start..start + 32)
            .and_then(|s| <Hash>::try_from(s).ok())
            .ok_or_else(|| Error::Store {
                store: self.store.describe(),
                detail: format!("tree node at level {level} of event {seq} is missing"),
            })
    }
}

/// Concatenate node hashes into the stored blob.
pub(crate) fn nodes_blob(nodes: &[Hash]) -> Vec<u8> {
    let mut blob = Vec::with_capacity(nodes.len() * 32);
    for node in nodes {
        blob.extend_from_slice(node);
    }
    blob
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
    if layout < LAYOUT_VERSION {
        return Err(format!(
            "layout version {layout} is from an older remit; this build reads only layout {LAYOUT_VERSION} (move the old ledger aside and start a new one)"
        ));
    }
    if layout > LAYOUT_VERSION {
        return Err(format!(
            "layout version {layout} is from a newer remit; this build reads only layout {LAYOUT_VERSION}"
        ));
    }
    Ok(Meta {
        layout,
        origin: get("origin")?,
        vkey: get("vkey")?,
        created: get("created")?,
    })
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    /// A password never reaches a message, however the connection string gives it.
    #[test]
    fn passwords_are_redacted_in_every_form() {
        for (given, shown) in [
            (
                "postgresql://alice:hunter2@db.example/ledger",
                "postgresql://alice@db.example/ledger",
            ),
            (
                "postgresql://alice@db/ledger?password=hunter2&sslmode=require",
                "postgresql://alice@db/ledger?password=***&sslmode=require",
            ),
            (
                "postgres://db/ledger?sslmode=require&PASSWORD=hunter2",
                "postgres://db/ledger?sslmode=require&PASSWORD=***",
            ),
            ("postgresql://a:p@ss@db/ledger", "postgresql://a@db/ledger"),
            (
                "host=db password=hunter2 dbname=ledger",
                "host=db password=*** dbname=ledger",
            ),
            (
                "host=db password='hunter 2' dbname=ledger",
                "host=db password=*** dbname=ledger",
            ),
            (
                "host=db password = 'it\\'s secret' user=x",
                "host=db password = *** user=x",
            ),
            ("host=db dbname=ledger", "host=db dbname=ledger"),
        ] {
            let out = redact_url(given);
            assert_eq!(out, shown, "{given}");
            assert!(!out.contains("hunter") && !out.contains("secret"), "{out}");
        }
    }
}
