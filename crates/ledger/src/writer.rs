//! The writer: one thread per open [`Ledger`] that owns a store connection, hashes,
//! group-commits and signs checkpoints; any number of them, in any number of processes, append
//! to the same ledger.
//!
//! Callers never touch the store directly. [`Ledger::append`] stamps an event with its time,
//! queues it and returns at once; [`Ledger::append_durable`] does the same and returns a [`Durable`]
//! handle that resolves, with the event's sequence number, once the event is committed
//! (blocking with [`Durable::wait`], or `.await` from async code); [`Ledger::append_batch`]
//! queues a group at once and resolves when its last event is. Sequence numbers are
//! assigned at commit, because only then does a writer know where the tree ends: other
//! processes append to it too.
//!
//! The writer takes up to [`Options::max_batch`] queued events and commits them in one
//! transaction that holds the store's write lock: it reads the head, and if another writer
//! appended since this one last committed, reloads the tree frontier (the `O(log n)` stored
//! roots of the perfect subtrees; never when nothing changed), checks it against the head's
//! signed checkpoint, numbers and hashes the events, stores them with their subtree hashes,
//! and signs and stores a checkpoint of the new head. While it commits, new events queue up
//! for the next transaction, so under load one `fsync` covers many events and when idle an
//! event is committed at once.
//!
//! The connection and the tree are one [`Engine`] behind a mutex, and whoever holds it
//! commits. A caller that blocks until its events are durable ([`Durable::wait`],
//! [`Ledger::flush`], [`Ledger::checkpoint`]) while the writer thread is idle takes it and
//! commits the queued work itself, the same way the thread would: a durable event then costs
//! its commit, not also a wake-up of the writer thread and another of the caller. An `.await`
//! never commits (no `fsync` on an async executor); the thread does it.
//!
//! Every commit signs a checkpoint in the same transaction: there is never a committed event
//! that no signature covers, so an event that shows up uncovered was not written by a writer,
//! and writers refuse to build on it. Most of these checkpoints are transient: the next commit
//! of any writer deletes every transient checkpoint smaller than its own. A commit keeps its
//! checkpoint in the history when the newest kept one in the store is older than
//! [`Options::checkpoint_interval`] (so the history has one at least every second while events
//! flow, whichever writers append them), when it holds a `task_end`, on
//! [`Ledger::checkpoint`] and at [`Ledger::close`]. Kept checkpoints are never deleted.
//!
//! Writers take turns: PostgreSQL queues lock waiters in order; SQLite's waiters poll, so a
//! writer that has seen other writers' commits in the last second pauses briefly after each
//! of its own before taking the lock again (`HANDOFF`), so the lock goes round rather than
//! back to the writer that just had it. A writer alone never pauses.
//!
//! A failed commit stops the writer: every waiting and future caller gets
//! [`Error::WriterFailed`] and no effect waiting on durability may proceed.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use remit_types::event::{EventBody, NewEvent, SCHEMA_VERSION};

use crate::canonical;
use crate::clock::{Clock, format_time, parse_time};
use crate::error::{Error, Result, one_line};
use crate::key::{LedgerKey, PublicKey};
use crate::merkle::{self, Frontier, Hash};
use crate::note::{Checkpoint, SignedCheckpoint};
use crate::reader::LedgerReader;
use crate::store::{CheckpointRow, EventRow, Head, LAYOUT_VERSION, Location, Meta, Store, Txn};

/// Most events a ledger can hold: 2^53, the largest integer canonical JSON keeps exact.
pub const MAX_EVENTS: u64 = 1 << 53;

/// How long a writer that shares the ledger with active writers waits after a commit before
/// it takes the write lock again: more than one poll of a waiting SQLite writer (see
/// [`crate::store::sqlite`]), so the lock goes round instead of back to whoever just had it.
const HANDOFF: Duration = Duration::from_micros(250);

/// Other writers count as active this long after this one last saw one of their commits.
const OTHERS_ACTIVE: Duration = Duration::from_secs(1);

/// Tuning of the writer. The defaults are the documented guarantees.
#[derive(Debug, Clone)]
pub struct Options {
    /// Most events committed in one transaction (default 1,000).
    pub max_batch: usize,
    /// Longest time between two checkpoints kept in the history while events flow
    /// (default 1 s), measured from the newest kept checkpoint in the store, whichever writer
    /// kept it. Every commit is signed regardless; this sets the history's density.
    pub checkpoint_interval: Duration,
    /// Queued events beyond which `append` waits for the writer (default 100,000): bounded
    /// memory instead of an unbounded queue when the disk cannot keep up.
    pub max_pending: usize,
    /// Longest time an observation (an event nobody waits for) waits for company before
    /// the writer commits it (default 5 ms): the events a short task observes then share one
    /// commit, and one `fsync`, with its end. A durable event, a batch, [`Ledger::flush`],
    /// [`Ledger::checkpoint`], [`Ledger::close`] or a full batch commits what is queued at
    /// once. Zero commits every event as soon as the writer is free.
    pub linger: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_batch: 1000,
            checkpoint_interval: Duration::from_secs(1),
            max_pending: 100_000,
            linger: Duration::from_millis(5),
        }
    }
}

/// After queuing: tell the writer thread, so that it starts its wait for company (an
/// observation is committed within a linger). A durable event (or group) queued into an
/// empty queue is not announced: its handle commits it in the caller's thread, or wakes the
/// writer, when waited on, polled, asked or dropped; the next append announces it anyway.
fn announce(shared: &Shared, state: &mut State, was_empty: bool, durable: bool) {
    if was_empty && durable {
        state.unannounced = true;
    } else if was_empty || state.unannounced {
        state.unannounced = false;
        shared.work.notify_one();
    }
}

/// Where a durable event's sequence number lands once it is committed.
type SeqSlot = Arc<AtomicU64>;

/// An event encoded for the queue (outside the state lock).
struct Encoded {
    task: String,
    agent: String,
    kind: &'static str,
    body: Vec<u8>,
    task_end: bool,
}

impl Encoded {
    fn new(event: NewEvent) -> Result<Self> {
        Ok(Self {
            task_end: matches!(event.body, EventBody::TaskEnd(_)),
            kind: event.body.kind(),
            body: canonical::body_json(&event.body)?,
            task: event.task,
            agent: event.agent,
        })
    }
}

fn encode_all(events: impl IntoIterator<Item = NewEvent>) -> Result<Vec<Encoded>> {
    events.into_iter().map(Encoded::new).collect()
}

struct Pending {
    time: String,
    task: String,
    agent: String,
    kind: &'static str,
    body: Vec<u8>,
    task_end: bool,
    /// Set for `append_durable`.
    seq: Option<SeqSlot>,
}

/// What callers and the writer thread share. Events are counted in the order this handle
/// accepted them ("tickets"); the writer commits them in that order.
#[derive(Default)]
struct State {
    queue: VecDeque<Pending>,
    /// Events accepted so far.
    appended: u64,
    /// The first `committed` accepted events are committed.
    committed: u64,
    /// The first `kept_through` accepted events are covered by a kept checkpoint (`None`
    /// before this handle kept any).
    kept_through: Option<u64>,
    /// A caller wants the first `retain_wanted` accepted events covered by a kept checkpoint.
    retain_wanted: Option<u64>,
    /// Tree size at open or at this writer's latest commit.
    tree_size: u64,
    /// The head at open or at this writer's latest commit.
    latest: Option<SignedCheckpoint>,
    /// The newest checkpoint this writer kept (or marked kept).
    retained: Option<SignedCheckpoint>,
    closing: bool,
    /// Somebody waits for the first `urgent_through` accepted events: commit them at once.
    urgent_through: u64,
    /// When the oldest queued event was queued (`None` while the queue is empty).
    first_queued: Option<Instant>,
    /// The queue holds durable events the writer thread was not told of: their handles
    /// commit them (or wake it) when waited on, and the next append wakes it.
    unannounced: bool,
    /// The first commit failure; set once, never cleared.
    failed: Option<String>,
    wakers: Vec<Waker>,
}

impl State {
    /// A kept checkpoint is wanted that covers more than what is kept.
    fn retain_pending(&self) -> Option<u64> {
        self.retain_wanted
            .filter(|&wanted| self.kept_through.is_none_or(|kept| kept < wanted))
    }
}

struct Shared {
    state: Mutex<State>,
    /// Taken by whoever commits; `None` once the writer stopped.
    engine: Mutex<Option<Engine>>,
    /// The writer waits here for work.
    work: Condvar,
    /// Appenders wait here for queue room.
    room: Condvar,
    /// Durability waiters wait here.
    done: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` half-updated in a way that
        // matters more than stopping; keep serving the error state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn failure(state: &State) -> Option<Error> {
        state.failed.as_ref().map(|detail| Error::WriterFailed {
            durable: state.tree_size,
            detail: detail.clone(),
        })
    }
}

/// A handle to an open ledger: cheap to clone and to share between threads. The writer stops
/// when [`Ledger::close`] is called or the last handle is dropped (after committing what was
/// queued).
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("location", &self.inner.location)
            .field("origin", &self.inner.key.name())
            .finish_non_exhaustive()
    }
}

/// The writer thread; it hands back its connection when it stopped cleanly.
type WriterThread = JoinHandle<Option<Box<dyn Store>>>;

struct Inner {
    shared: Arc<Shared>,
    thread: Mutex<Option<WriterThread>>,
    /// The writer's connection, once it stopped cleanly: the first reader after close uses
    /// it instead of opening another (a task's receipt is built right after its close).
    spare: Mutex<Option<Box<dyn Store>>>,
    clock: Arc<dyn Clock>,
    location: Location,
    key: LedgerKey,
    max_pending: usize,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Errors are already recorded in the shared state; nothing more to do on drop.
        let _ = self.shutdown();
    }
}

impl Inner {
    fn shutdown(&self) -> Result<Option<SignedCheckpoint>> {
        {
            let mut state = self.shared.lock();
            state.closing = true;
            self.shared.work.notify_all();
            self.shared.room.notify_all();
        }
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        match handle.map(JoinHandle::join) {
            Some(Ok(store)) => *self.spare.lock().unwrap_or_else(|p| p.into_inner()) = store,
            Some(Err(_)) => {
                let mut state = self.shared.lock();
                state
                    .failed
                    .get_or_insert_with(|| "the writer thread panicked".to_owned());
            }
            None => {}
        }
        let state = self.shared.lock();
        if let Some(err) = Shared::failure(&state) {
            return Err(err);
        }
        Ok(state.retained.clone().or_else(|| state.latest.clone()))
    }
}

impl Ledger {
    /// Open the ledger at `location` for writing, creating it (named after the key) if it does
    /// not exist, and start the writer thread. Other writers, in this process or others, may
    /// have it open too.
    ///
    /// Refuses a ledger created with another key, one whose latest checkpoint does not verify
    /// or does not match its stored tree, and one holding events no checkpoint covers.
    pub fn open(
        location: Location,
        key: LedgerKey,
        clock: Arc<dyn Clock>,
        options: Options,
    ) -> Result<Self> {
        let mut store = location.open_write()?;
        let public = key.public();
        let vkey = public.to_vkey();
        let mut created = None;
        let meta = match store.read_meta()? {
            Some(meta) => meta,
            None => {
                // A new ledger gets its genesis checkpoint (size 0, kept), pinning origin and
                // key, in the transaction that creates it.
                let genesis = sign(&key, &Frontier::new())?;
                let now = format_time(clock.now());
                let ours = Meta {
                    layout: LAYOUT_VERSION,
                    origin: key.name().to_owned(),
                    vkey: vkey.clone(),
                    created: now.clone(),
                };
                let row = CheckpointRow {
                    size: 0,
                    time: now,
                    note: genesis.note.clone(),
                    kept: true,
                };
                let meta = store.create(&ours, &row)?;
                if meta == ours {
                    created = Some(genesis);
                }
                meta
            }
        };
        if meta.vkey != vkey {
            return Err(Error::Key(format!(
                "ledger {} is signed by key `{}`, not by `{vkey}`",
                store.describe(),
                meta.vkey
            )));
        }
        let (frontier, head) = match created {
            // Ed25519 signatures are deterministic: a ledger created concurrently with the
            // same key and time has this very genesis note.
            Some(genesis) => (Frontier::new(), genesis),
            None => {
                let mut loaded = None;
                store.transaction(false, &mut |tx| {
                    let head = tx.head()?;
                    loaded = Some(load_head(tx, &head, &public)?);
                    Ok(())
                })?;
                loaded.ok_or_else(|| Error::Invalid("the ledger head was not read".into()))?
            }
        };
        let (frontier_size, latest) = (frontier.size(), head.clone());
        let engine = Engine {
            resume_at: None,
            store,
            core: Core {
                key: key.clone(),
                public,
                clock: Arc::clone(&clock),
                options: options.clone(),
                frontier,
                head,
                committed: 0,
                kept_through: None,
                others_seen: None,
                scratch: Vec::new(),
            },
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                tree_size: frontier_size,
                latest: Some(latest),
                ..State::default()
            }),
            engine: Mutex::new(Some(engine)),
            work: Condvar::new(),
            room: Condvar::new(),
            done: Condvar::new(),
        });
        let writer = Writer {
            shared: Arc::clone(&shared),
        };
        let thread = std::thread::Builder::new()
            .name("remit-ledger".into())
            .spawn(move || writer.run())
            .map_err(|e| Error::Store {
                store: location.describe(),
                detail: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                thread: Mutex::new(Some(thread)),
                spare: Mutex::new(None),
                clock,
                location,
                key,
                max_pending: options.max_pending.max(1),
            }),
        })
    }

    /// Open (or create) the ledger in `home`: `home/ledger.db` signed with `home/ledger.key`,
    /// creating the key (mode 0600, named `remit.local/ledger/<random>`) if there is none.
    /// `home` is usually [`crate::store::default_home`].
    pub fn open_home(
        home: &std::path::Path,
        clock: Arc<dyn Clock>,
        options: Options,
    ) -> Result<Self> {
        let mut rng = crate::key::OsRandomness;
        let key_path = home.join("ledger.key");
        let key = if key_path.exists() {
            LedgerKey::load(&key_path)?
        } else {
            let origin = crate::new_origin(&mut rng)?;
            LedgerKey::load_or_create(&key_path, &origin, &mut rng)?
        };
        Self::open(
            Location::Sqlite(home.join("ledger.db")),
            key,
            clock,
            options,
        )
    }

    /// Record an observation: stamp it with the time, queue it for the next group commit and
    /// return without waiting for the disk (its sequence number is assigned at commit). It
    /// waits only when more than [`Options::max_pending`] events are queued. Events of one
    /// `Ledger` are committed in the order they were appended.
    pub fn append(&self, event: NewEvent) -> Result<()> {
        self.enqueue(event, None).map(|_| ())
    }

    /// Record an event that gates an effect: the returned handle resolves, with the event's
    /// sequence number, once the event is durable. Perform the effect only after
    /// [`Durable::wait`] (or `.await`) returns `Ok`.
    pub fn append_durable(&self, event: NewEvent) -> Result<Durable> {
        let seq = Arc::new(AtomicU64::new(u64::MAX));
        let ticket = self.enqueue(event, Some(Arc::clone(&seq)))?;
        Ok(self.durable(ticket, seq))
    }

    /// The handle on the event queued as `ticket`, whose sequence number lands in `seq`.
    fn durable(&self, ticket: u64, seq: SeqSlot) -> Durable {
        Durable {
            ticket,
            seq,
            shared: Arc::clone(&self.inner.shared),
            nudged: AtomicBool::new(false),
        }
    }

    /// Record a group of events at once, in order, and return a handle that resolves, with
    /// the sequence number of the last one, once all of them are durable (`None` for an empty
    /// group). The events are queued together, with one time stamp, so no other event of this
    /// handle lands between them, and the writer commits them in one transaction (one
    /// `fsync`) when they fit in [`Options::max_batch`] and nothing else is queued before
    /// them; otherwise in as many as needed, each still all-or-nothing. Like
    /// [`Ledger::append`] it waits only while more than [`Options::max_pending`] events are
    /// queued, then queues the whole group.
    pub fn append_batch(
        &self,
        events: impl IntoIterator<Item = NewEvent>,
    ) -> Result<Option<Durable>> {
        let encoded = encode_all(events)?;
        if encoded.is_empty() {
            return Ok(None);
        }
        let seq = Arc::new(AtomicU64::new(u64::MAX));
        let mut state = self.wait_for_room()?;
        let ticket = self.queue_group(&mut state, encoded, &seq);
        Ok(Some(self.durable(ticket, seq)))
    }

    /// Record a group of last events, as [`Ledger::append_batch`] does, and close: the
    /// writer commits them, and keeps the checkpoint that covers them, in one transaction
    /// (one `fsync`) when they fit in [`Options::max_batch`] and no earlier commit is still
    /// to be made. Returns what [`Ledger::close`] returns.
    pub fn finish(
        &self,
        events: impl IntoIterator<Item = NewEvent>,
    ) -> Result<Option<SignedCheckpoint>> {
        let queued = encode_all(events).and_then(|encoded| {
            let seq = Arc::new(AtomicU64::new(u64::MAX));
            let mut state = self.wait_for_room()?;
            if !encoded.is_empty() {
                self.queue_group(&mut state, encoded, &seq);
            }
            // Under the same lock as the queueing: the writer cannot take the events
            // without seeing that they are the last.
            state.closing = true;
            Ok(())
        });
        let closed = self.inner.shutdown();
        queued.and(closed)
    }

    /// Queue a group of encoded events with one time stamp, the last one carrying `seq`;
    /// returns the last one's ticket. Somebody waits for them: the writer commits at once.
    fn queue_group(&self, state: &mut State, encoded: Vec<Encoded>, seq: &SeqSlot) -> u64 {
        let count = encoded.len() as u64;
        let first = state.appended;
        let was_empty = state.queue.is_empty();
        state.appended += count;
        let time = format_time(self.inner.clock.now());
        let last = encoded.len().saturating_sub(1);
        for (i, e) in encoded.into_iter().enumerate() {
            state.queue.push_back(Pending {
                time: time.clone(),
                task: e.task,
                agent: e.agent,
                kind: e.kind,
                body: e.body,
                task_end: e.task_end,
                seq: (i == last).then(|| Arc::clone(seq)),
            });
        }
        state.first_queued.get_or_insert_with(Instant::now);
        announce(&self.inner.shared, state, was_empty, true);
        first + count - 1
    }

    /// The state lock, once the queue has room (or the error that stops appends).
    fn wait_for_room(&self) -> Result<MutexGuard<'_, State>> {
        let shared = &self.inner.shared;
        let mut state = shared.lock();
        loop {
            if let Some(err) = Shared::failure(&state) {
                return Err(err);
            }
            if state.closing {
                return Err(Error::Closed);
            }
            if state.queue.len() < self.inner.max_pending {
                return Ok(state);
            }
            state = shared.room.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Queue an event; returns its ticket (its position among this handle's events). It may
    /// linger for company ([`Options::linger`]) until somebody waits for it: a durable
    /// event's handle, waited on, polled or asked, makes it urgent.
    fn enqueue(&self, event: NewEvent, seq: Option<SeqSlot>) -> Result<u64> {
        let e = Encoded::new(event)?;
        let shared = &self.inner.shared;
        let mut state = self.wait_for_room()?;
        let ticket = state.appended;
        state.appended += 1;
        // Read the clock under the lock so times never go backwards along this handle's events.
        let time = format_time(self.inner.clock.now());
        let was_empty = state.queue.is_empty();
        state.queue.push_back(Pending {
            time,
            task: e.task,
            agent: e.agent,
            kind: e.kind,
            body: e.body,
            task_end: e.task_end,
            seq,
        });
        if was_empty {
            state.first_queued = Some(Instant::now());
        }
        let durable = state.queue.back().is_some_and(|p| p.seq.is_some());
        announce(shared, &mut state, was_empty, durable);
        Ok(ticket)
    }

    /// Have every event appended so far committed now, without waiting for it: a later
    /// [`Ledger::flush`] then often finds the work done (the task's start record is urged
    /// while its sandbox is built, and flushed before its command runs).
    pub fn urge(&self) {
        let shared = &self.inner.shared;
        let mut state = shared.lock();
        state.urgent_through = state.urgent_through.max(state.appended);
        drop(state);
        shared.work.notify_one();
    }

    /// Wait until every event appended so far through this handle is durable.
    pub fn flush(&self) -> Result<()> {
        let shared = &self.inner.shared;
        let mut state = shared.lock();
        let target = state.appended;
        state.urgent_through = state.urgent_through.max(target);
        loop {
            if state.committed >= target {
                return Ok(());
            }
            if let Some(err) = Shared::failure(&state) {
                return Err(err);
            }
            let helped;
            (state, helped) = shared.help(state);
            if !helped {
                // The writer thread commits it (it may be lingering: it must hear it is
                // urgent now).
                shared.work.notify_one();
                state = shared.done.wait(state).unwrap_or_else(|p| p.into_inner());
            }
        }
    }

    /// Make every event appended so far through this handle durable, keep a checkpoint
    /// covering them in the ledger's checkpoint history, and return it. The checkpoint may
    /// also cover events of other writers.
    pub fn checkpoint(&self) -> Result<SignedCheckpoint> {
        let shared = &self.inner.shared;
        let mut state = shared.lock();
        let target = state.appended;
        if state.retain_wanted.is_none_or(|w| w < target) {
            state.retain_wanted = Some(target);
        }
        loop {
            if state.kept_through.is_some_and(|kept| kept >= target)
                && let Some(retained) = &state.retained
            {
                return Ok(retained.clone());
            }
            if let Some(err) = Shared::failure(&state) {
                return Err(err);
            }
            let helped;
            (state, helped) = shared.help(state);
            if !helped {
                shared.work.notify_one();
                state = shared.done.wait(state).unwrap_or_else(|p| p.into_inner());
            }
        }
    }

    /// Commit everything queued and stop the writer; the checkpoint covering this handle's
    /// last event is kept in the history. Further appends fail with [`Error::Closed`]. Returns
    /// that checkpoint (the head seen at open if nothing was appended).
    pub fn close(&self) -> Result<Option<SignedCheckpoint>> {
        self.inner.shutdown()
    }

    /// The checkpoint of the head at this writer's latest commit (or at open).
    pub fn latest_checkpoint(&self) -> Option<SignedCheckpoint> {
        self.inner.shared.lock().latest.clone()
    }

    /// Number of events in the ledger at this writer's latest commit (or at open), all
    /// durable. Other writers may have appended since.
    pub fn size(&self) -> u64 {
        self.inner.shared.lock().tree_size
    }

    /// Number of events appended through this handle and not yet committed.
    pub fn pending(&self) -> u64 {
        let state = self.inner.shared.lock();
        state.appended - state.committed
    }

    /// The ledger's public key.
    pub fn public_key(&self) -> PublicKey {
        self.inner.key.public()
    }

    /// The ledger's origin (its name in checkpoints).
    pub fn origin(&self) -> &str {
        self.inner.key.name()
    }

    /// Where the ledger is.
    pub fn location(&self) -> &Location {
        &self.inner.location
    }

    /// A read-only view on a separate connection (for proofs, `show`, receipts). Once this
    /// handle is closed, the first reader gets the writer's own connection, already open.
    pub fn reader(&self) -> Result<LedgerReader> {
        let spare = self
            .inner
            .spare
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match spare {
            Some(store) => LedgerReader::from_store(store),
            None => LedgerReader::open(&self.inner.location),
        }
    }

    /// Build and sign the receipt of `task`, whose `task_end` event must be durable (it is,
    /// once `append_durable(task_end)` resolved or `flush` returned): its commit kept a
    /// checkpoint.
    pub fn receipt(&self, task: &str) -> Result<crate::receipt::Envelope> {
        let mut reader = self.reader()?;
        crate::receipt::build_receipt(&mut reader, &self.inner.key, task)
    }
}

/// An event on its way to disk. Resolves to its sequence number once durable.
///
/// Waited on, polled or asked, it becomes urgent and is committed at once — by
/// [`Durable::wait`] in the caller's own thread when the writer thread is idle. Dropped, or
/// followed by another append, it is committed within [`Options::linger`] like any event;
/// an effect waits for it in any case.
pub struct Durable {
    ticket: u64,
    seq: SeqSlot,
    shared: Arc<Shared>,
    /// This handle has woken the writer thread.
    nudged: AtomicBool,
}

impl Clone for Durable {
    fn clone(&self) -> Self {
        Self {
            ticket: self.ticket,
            seq: Arc::clone(&self.seq),
            shared: Arc::clone(&self.shared),
            nudged: AtomicBool::new(false),
        }
    }
}

impl Drop for Durable {
    fn drop(&mut self) {
        // Nobody waits for it any more: the writer commits it all the same, within a linger.
        if !self.nudged.load(Ordering::Relaxed) {
            let state = self.shared.lock();
            if self.committed_seq(&state).is_none() && state.failed.is_none() {
                drop(state);
                self.nudge();
            }
        }
    }
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable")
            .field("seq", &self.committed_seq(&self.shared.lock()))
            .finish()
    }
}

impl Durable {
    /// The sequence number, once committed.
    fn committed_seq(&self, state: &State) -> Option<u64> {
        // INVARIANT: the writer stores the sequence number before it counts the event as
        // committed, under the same mutex this reads `committed` under.
        (state.committed > self.ticket).then(|| self.seq.load(Ordering::Relaxed))
    }

    /// Block until the event is durable and return its sequence number; `Err` if the writer
    /// failed first (the effect must then not proceed).
    pub fn wait(&self) -> Result<u64> {
        let mut state = self.shared.lock();
        loop {
            if let Some(seq) = self.committed_seq(&state) {
                return Ok(seq);
            }
            if let Some(err) = Shared::failure(&state) {
                return Err(err);
            }
            self.ask(&mut state);
            let helped;
            (state, helped) = self.shared.help(state);
            if !helped {
                self.nudge();
                state = self
                    .shared
                    .done
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner());
            }
        }
    }

    /// Like [`Durable::wait`], giving up after `timeout` (`Ok(None)`).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Option<u64>> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        self.ask(&mut state);
        self.nudge();
        loop {
            if let Some(seq) = self.committed_seq(&state) {
                return Ok(Some(seq));
            }
            if let Some(err) = Shared::failure(&state) {
                return Err(err);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            state = self
                .shared
                .done
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The event's sequence number if it is durable now.
    pub fn seq(&self) -> Option<u64> {
        let mut state = self.shared.lock();
        let seq = self.committed_seq(&state);
        if seq.is_none() {
            self.ask(&mut state);
            drop(state);
            self.nudge();
        }
        seq
    }

    /// Somebody waits for this event: it (and everything queued before it) is urgent.
    fn ask(&self, state: &mut State) {
        state.urgent_through = state.urgent_through.max(self.ticket + 1);
    }

    /// Wake the writer thread for this event (once per handle), after [`Durable::ask`].
    fn nudge(&self) {
        if !self.nudged.swap(true, Ordering::Relaxed) {
            self.shared.work.notify_one();
        }
    }

    /// Whether the event is durable now.
    pub fn is_durable(&self) -> bool {
        self.seq().is_some()
    }
}

impl Future for Durable {
    type Output = Result<u64>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.shared.lock();
        if let Some(seq) = self.committed_seq(&state) {
            return Poll::Ready(Ok(seq));
        }
        if let Some(err) = Shared::failure(&state) {
            return Poll::Ready(Err(err));
        }
        if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            state.wakers.push(cx.waker().clone());
        }
        self.ask(&mut state);
        self.nudge();
        Poll::Pending
    }
}

fn sign(key: &LedgerKey, frontier: &Frontier) -> Result<SignedCheckpoint> {
    SignedCheckpoint::sign(
        Checkpoint {
            origin: key.name().to_owned(),
            size: frontier.size(),
            root: frontier.root(),
        },
        key,
    )
}

fn damaged(why: String) -> Error {
    Error::verify(
        None,
        format!("{why}; refusing to append (run `remit ledger verify`)"),
    )
}

/// Check the head (its checkpoint's signature, that it covers every event, that the stored
/// tree leads to its root) and rebuild the tree frontier from the `O(log n)` stored roots of
/// its perfect subtrees.
fn load_head(
    tx: &mut dyn Txn,
    head: &Head,
    public: &PublicKey,
) -> Result<(Frontier, SignedCheckpoint)> {
    let size = head.events;
    let Some(row) = &head.checkpoint else {
        return Err(Error::verify(
            (size > 0).then_some(0),
            "the ledger has no signed checkpoint; refusing to append (run `remit ledger verify`)",
        ));
    };
    let signed = SignedCheckpoint::open(&row.note, public)
        .map_err(|e| damaged(format!("latest checkpoint does not verify: {e}")))?;
    let cp_size = signed.checkpoint.size;
    if cp_size != row.size {
        return Err(damaged(format!(
            "the latest checkpoint is stored at size {} but signed for {cp_size}",
            row.size
        )));
    }
    if cp_size > size {
        return Err(damaged(format!(
            "the latest checkpoint covers {cp_size} events but the ledger holds {size}"
        )));
    }
    if cp_size < size {
        // Every commit is signed in its own transaction, so a crash cannot leave events
        // uncovered: these were added by something other than a writer.
        return Err(Error::verify(
            Some(cp_size),
            format!(
                "events {cp_size}..{} are not covered by a signed checkpoint; refusing to append (run `remit ledger verify`)",
                size - 1
            ),
        ));
    }
    // The perfect subtrees of the tree, largest first, and the events that completed them.
    let mut roots = Vec::with_capacity(size.count_ones() as usize);
    let mut start = 0u64;
    for level in (0..64u32).rev() {
        let span = 1u64 << level;
        if size & span != 0 {
            roots.push((level, start + span - 1));
            start += span;
        }
    }
    let seqs: Vec<u64> = roots.iter().map(|&(_, last)| last).collect();
    let blobs = tx.nodes_of(&seqs)?;
    let mut stack = Vec::with_capacity(roots.len());
    for (&(level, last), blob) in roots.iter().zip(blobs) {
        let blob = blob.ok_or_else(|| {
            damaged(format!(
                "event {last} is missing (needed to continue the tree)"
            ))
        })?;
        let at = level as usize * 32;
        let node = blob
            .get(at..at + 32)
            .and_then(|s| <Hash>::try_from(s).ok())
            .ok_or_else(|| {
                damaged(format!(
                    "tree node at level {level} of event {last} is missing"
                ))
            })?;
        stack.push(node);
    }
    let frontier = Frontier::from_parts(size, stack)
        .ok_or_else(|| damaged("cannot rebuild the tree frontier".into()))?;
    if frontier.root() != signed.checkpoint.root {
        return Err(damaged(format!(
            "the stored tree does not match the latest checkpoint (size {cp_size})"
        )));
    }
    Ok((frontier, signed))
}

struct Writer {
    shared: Arc<Shared>,
}

/// The store connection and the writer's view of the tree. Whoever holds it commits: the
/// writer thread, or a caller about to block until its own events are durable while the
/// thread is idle ([`Shared::help`]).
struct Engine {
    store: Box<dyn Store>,
    core: Core,
    /// Not before then: other writers share the ledger and one may be waiting for the lock
    /// this one just released (`HANDOFF`). Callers do not help before then either.
    resume_at: Option<Instant>,
}

impl Engine {
    /// After a commit: whether to step aside before the next one.
    fn pause_after_commit(&mut self) {
        let others = !self.store.lock_is_fair()
            && self
                .core
                .others_seen
                .is_some_and(|seen| seen.elapsed() < OTHERS_ACTIVE);
        self.resume_at = others.then(|| Instant::now() + HANDOFF);
    }

    /// Time left before it may commit again.
    fn paused(&self) -> Option<Duration> {
        self.resume_at
            .and_then(|t| t.checked_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
    }
}

/// The writer's view of the tree, updated only after a transaction committed.
struct Core {
    key: LedgerKey,
    public: PublicKey,
    clock: Arc<dyn Clock>,
    options: Options,
    frontier: Frontier,
    /// The head checkpoint at this writer's latest commit (or at open): if the store's head is
    /// still this note, nobody appended since and `frontier` is current.
    head: SignedCheckpoint,
    /// Mirrors of [`State::committed`] and [`State::kept_through`], owned by the engine.
    committed: u64,
    kept_through: Option<u64>,
    /// When this writer last found that another one had committed since its own last commit.
    others_seen: Option<Instant>,
    scratch: Vec<Hash>,
}

/// A committed transaction, to publish.
struct Committed {
    /// How many queued events it committed.
    events: u64,
    checkpoint: SignedCheckpoint,
    kept: bool,
}

/// What a commit computed inside its transaction.
struct Staged {
    frontier: Frontier,
    first: u64,
    checkpoint: SignedCheckpoint,
    kept: bool,
}

enum Work {
    /// Commit these events; keep the resulting checkpoint if the flag says so.
    Batch(Vec<Pending>, bool),
    /// Keep the head checkpoint in the history (no new events).
    Retain,
    /// Stop: closing with an empty queue.
    Stop,
    /// Stop: a commit failed.
    Abort,
}

/// What to do next.
enum Decision {
    Now(Work),
    /// Nothing yet: wait for an appender (at most this long: an observation waiting for
    /// company).
    Wait(Option<Duration>),
}

/// Fails every waiter if a commit unwinds (in the writer thread or in a caller helping it),
/// so no effect waits forever on an event that will never be committed.
struct PanicGuard<'a>(&'a Shared);

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let wakers = {
            let mut state = self.0.lock();
            state
                .failed
                .get_or_insert_with(|| "the ledger writer panicked".to_owned());
            self.0.done.notify_all();
            self.0.room.notify_all();
            self.0.work.notify_all();
            std::mem::take(&mut state.wakers)
        };
        for waker in wakers {
            waker.wake();
        }
    }
}

impl Shared {
    fn engine(&self) -> MutexGuard<'_, Option<Engine>> {
        // A commit that panicked marked the ledger failed (`PanicGuard`): what follows only
        // reads that.
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A caller is about to block until its events are durable: if the writer thread is not
    /// committing right now, commit the queued work in this thread, sparing the hand-over to
    /// the writer and back (two thread wake-ups on every durable event's path). Returns the
    /// state lock again, and whether it committed anything.
    fn help<'a>(&'a self, mut state: MutexGuard<'a, State>) -> (MutexGuard<'a, State>, bool) {
        let Ok(mut slot) = self.engine.try_lock() else {
            // Busy (the writer commits, and will publish) or poisoned (failed).
            return (state, false);
        };
        let Some(engine) = slot.as_mut() else {
            return (state, false);
        };
        if engine.paused().is_some() {
            // Stepping aside for other writers: the writer thread commits after the pause.
            return (state, false);
        }
        let work = match engine.decide(self, &mut state) {
            Decision::Now(work @ (Work::Batch(..) | Work::Retain)) => work,
            // Stopping is the writer thread's (it hands back the connection).
            Decision::Now(Work::Stop | Work::Abort) | Decision::Wait(_) => return (state, false),
        };
        drop(state);
        // A panic in the commit fails the ledger (every waiter hears of it), not the caller,
        // which gets the error as it would from the writer thread.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match work {
            Work::Batch(batch, retain) => engine.commit(batch, retain),
            _ => engine.retain(),
        }))
        .unwrap_or_else(|_| Err(Error::Invalid("the ledger writer panicked".into())));
        engine.pause_after_commit();
        publish(self, &engine.core, result);
        drop(slot);
        let state = self.lock();
        if !state.queue.is_empty() {
            // Whatever was queued meanwhile is the writer thread's (it may be waiting for
            // work with no time limit).
            self.work.notify_one();
        }
        (state, true)
    }
}

impl Writer {
    /// Commit until closed; return the connection if everything was committed (for a reader
    /// to reuse), `None` after a failure.
    fn run(self) -> Option<Box<dyn Store>> {
        let shared = &*self.shared;
        let _guard = PanicGuard(shared);
        loop {
            let mut slot = shared.engine();
            let engine = slot.as_mut()?;
            if let Some(left) = engine.paused() {
                // Other writers commit too, and may be waiting for the lock this one just
                // released: step aside for a poll of theirs instead of taking it straight
                // back, so the lock goes round. A writer alone never waits here.
                drop(slot);
                std::thread::sleep(left);
                continue;
            }
            let mut state = shared.lock();
            let work = match engine.decide(shared, &mut state) {
                Decision::Now(work) => work,
                Decision::Wait(limit) => {
                    // Not holding the engine: a caller may commit meanwhile.
                    drop(slot);
                    drop(match limit {
                        Some(limit) => {
                            shared
                                .work
                                .wait_timeout(state, limit)
                                .unwrap_or_else(|p| p.into_inner())
                                .0
                        }
                        None => shared.work.wait(state).unwrap_or_else(|p| p.into_inner()),
                    });
                    continue;
                }
            };
            drop(state);
            let result = match work {
                Work::Batch(batch, retain) => engine.commit(batch, retain),
                Work::Retain => engine.retain(),
                Work::Stop => {
                    // Tidying up only; the ledger is complete without it.
                    let mut engine = slot.take()?;
                    let _ = engine.store.close();
                    return Some(engine.store);
                }
                Work::Abort => return None,
            };
            engine.pause_after_commit();
            let ok = publish(shared, &engine.core, result);
            drop(slot);
            if !ok {
                return None;
            }
        }
    }
}

/// Publish a result to waiters; `false` when the writer must stop.
fn publish(shared: &Shared, core: &Core, result: Result<Committed>) -> bool {
    let wakers;
    let ok;
    {
        let mut state = shared.lock();
        match result {
            Ok(done) => {
                state.committed = core.committed;
                state.tree_size = core.frontier.size().max(state.tree_size);
                if done.kept {
                    state.kept_through = core.kept_through;
                    state.retained = Some(done.checkpoint.clone());
                }
                if done.events > 0
                    || state
                        .latest
                        .as_ref()
                        .is_none_or(|l| l.checkpoint.size <= done.checkpoint.checkpoint.size)
                {
                    state.latest = Some(done.checkpoint);
                }
                ok = true;
            }
            Err(e) => {
                state.failed.get_or_insert_with(|| one_line(&e));
                ok = false;
            }
        }
        wakers = std::mem::take(&mut state.wakers);
        shared.done.notify_all();
        if !ok {
            shared.room.notify_all();
            shared.work.notify_all();
        }
    }
    for waker in wakers {
        waker.wake();
    }
    ok
}

impl Engine {
    /// What to do next, decided under the state lock; takes a batch off the queue only when
    /// it returns it.
    fn decide(&self, shared: &Shared, state: &mut State) -> Decision {
        let max_batch = self.core.options.max_batch.max(1);
        let linger = self.core.options.linger;
        let committed = self.core.committed;
        if state.failed.is_some() {
            return Decision::Now(Work::Abort);
        }
        let wanted = state.retain_pending();
        if wanted.is_some_and(|w| w <= committed) {
            // The wanted events are committed: keep the head covering them.
            return Decision::Now(Work::Retain);
        }
        if !state.queue.is_empty() {
            let urgent = state.closing
                || wanted.is_some()
                || state.urgent_through > committed
                || state.queue.len() >= max_batch;
            let waited = state.first_queued.map_or(linger, |t| t.elapsed());
            if !urgent && waited < linger {
                // Observations only: wait a little for company (or for somebody to wait
                // for them).
                return Decision::Wait(Some(linger - waited));
            }
            let n = state.queue.len().min(max_batch);
            let batch: Vec<Pending> = state.queue.drain(..n).collect();
            if state.queue.is_empty() {
                state.first_queued = None;
                state.unannounced = false;
            }
            let end = committed + n as u64;
            let retain =
                wanted.is_some_and(|w| w <= end) || (state.closing && state.queue.is_empty());
            shared.room.notify_all();
            return Decision::Now(Work::Batch(batch, retain));
        }
        if state.closing
            && committed > 0
            && self.core.kept_through.is_none_or(|kept| kept < committed)
        {
            return Decision::Now(Work::Retain);
        }
        if state.closing {
            return Decision::Now(Work::Stop);
        }
        Decision::Wait(None)
    }
    fn commit(&mut self, batch: Vec<Pending>, retain: bool) -> Result<Committed> {
        let Self { store, core, .. } = self;
        // The rows, but for what only the transaction knows (sequence numbers, the
        // canonical events and their tree nodes): the event's fields move, not copied.
        let events = batch.len() as u64;
        let mut slots = Vec::new();
        let mut task_end = false;
        let mut rows: Vec<EventRow> = Vec::with_capacity(batch.len());
        let mut bodies = Vec::with_capacity(batch.len());
        for (i, pending) in batch.into_iter().enumerate() {
            if let Some(slot) = pending.seq {
                slots.push((i as u64, slot));
            }
            task_end |= pending.task_end;
            bodies.push(pending.body);
            rows.push(EventRow {
                seq: 0,
                time: pending.time,
                task: pending.task,
                agent: pending.agent,
                kind: pending.kind.to_owned(),
                body: Vec::new(),
                nodes: Vec::new(),
            });
        }
        let mut staged = None;
        store.transaction(true, &mut |tx| {
            staged = Some(core.stage(tx, &mut rows, &bodies, task_end, retain)?);
            Ok(())
        })?;
        let staged = staged.ok_or_else(|| Error::Invalid("the commit staged nothing".into()))?;
        for (i, slot) in slots {
            slot.store(staged.first + i, Ordering::Relaxed);
        }
        core.frontier = staged.frontier;
        core.head = staged.checkpoint.clone();
        core.committed += events;
        if staged.kept {
            core.kept_through = Some(core.committed);
        }
        Ok(Committed {
            events,
            checkpoint: staged.checkpoint,
            kept: staged.kept,
        })
    }

    /// Keep the head checkpoint (which covers this writer's last commit) in the history.
    fn retain(&mut self) -> Result<Committed> {
        let Self { store, core, .. } = self;
        let mut kept = None;
        store.transaction(true, &mut |tx| {
            let head = tx.head()?;
            let Some(row) = &head.checkpoint else {
                return Err(damaged("the ledger's checkpoints are gone".into()));
            };
            if row.size < core.head.checkpoint.size || head.events != row.size {
                return Err(damaged(format!(
                    "the latest checkpoint covers {} of {} events, below this writer's last commit ({})",
                    row.size, head.events, core.head.checkpoint.size
                )));
            }
            let signed = if row.note == core.head.note {
                core.head.clone()
            } else {
                SignedCheckpoint::open(&row.note, &core.public)
                    .map_err(|e| damaged(format!("latest checkpoint does not verify: {e}")))?
            };
            if !row.kept {
                tx.keep(row.size)?;
            }
            kept = Some(signed);
            Ok(())
        })?;
        let checkpoint =
            kept.ok_or_else(|| Error::Invalid("the checkpoint was not kept".into()))?;
        core.kept_through = Some(core.committed);
        Ok(Committed {
            events: 0,
            checkpoint,
            kept: true,
        })
    }
}

impl Core {
    /// Inside the commit's transaction: number, hash and store `batch`, sign the new head.
    /// Changes nothing in `self` (the transaction may still fail).
    /// `rows` hold each event's time, task, agent and kind, `bodies` their canonical bodies.
    fn stage(
        &mut self,
        tx: &mut dyn Txn,
        rows: &mut [EventRow],
        bodies: &[Vec<u8>],
        task_end: bool,
        retain: bool,
    ) -> Result<Staged> {
        let head = tx.head()?;
        let current = head.checkpoint.as_ref().is_some_and(|row| {
            row.note == self.head.note
                && row.size == self.frontier.size()
                && head.events == row.size
        });
        if !current {
            self.others_seen = Some(Instant::now());
        }
        let mut frontier = if current {
            self.frontier.clone()
        } else {
            // Another writer appended since our last commit (or the ledger was tampered
            // with, which `load_head` refuses).
            load_head(tx, &head, &self.public)?.0
        };
        let first = frontier.size();
        let count = rows.len() as u64;
        if first.checked_add(count).is_none_or(|end| end > MAX_EVENTS) {
            // RFC 8785 numbers are IEEE doubles: beyond 2^53 a sequence number would not
            // survive canonical JSON exactly.
            return Err(Error::Invalid(format!(
                "the ledger is full ({MAX_EVENTS} events)"
            )));
        }
        for (i, (row, body)) in rows.iter_mut().zip(bodies).enumerate() {
            // Everything is recomputed on each try: a retried transaction may number the
            // events differently.
            row.seq = first + i as u64;
            canonical::assemble(
                &mut row.body,
                SCHEMA_VERSION,
                row.seq,
                &row.time,
                &row.task,
                &row.agent,
                body,
            )?;
            self.scratch.clear();
            frontier.push(merkle::leaf_hash(&row.body), &mut self.scratch);
            row.nodes = crate::store::nodes_blob(&self.scratch);
        }
        let now = self.clock.now();
        let kept = retain || task_end || self.interval_elapsed(head.kept_time.as_deref(), now);
        let checkpoint = sign(&self.key, &frontier)?;
        tx.append(
            rows,
            &CheckpointRow {
                size: frontier.size(),
                time: format_time(now),
                note: checkpoint.note.clone(),
                kept,
            },
        )?;
        Ok(Staged {
            frontier,
            first,
            checkpoint,
            kept,
        })
    }

    /// Whether the newest kept checkpoint in the store (signed at `kept_time`) is at least
    /// one interval old. A time that cannot be read, or lies ahead of this writer's clock,
    /// counts as old: one extra kept checkpoint restarts the cadence from now.
    fn interval_elapsed(&self, kept_time: Option<&str>, now: SystemTime) -> bool {
        let Some(kept) = kept_time.and_then(parse_time) else {
            return true;
        };
        now.duration_since(kept)
            .map_or(true, |age| age >= self.options.checkpoint_interval)
    }
}
