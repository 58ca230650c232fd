//! The writer: one thread that owns the store, hashes, group-commits and signs checkpoints.
//!
//! Callers never touch the store. [`Ledger::append`] assigns a sequence number and a time,
//! queues the event and returns at once; [`Ledger::append_durable`] does the same and returns
//! a [`Durable`] handle that resolves once the event is committed (blocking with
//! [`Durable::wait`], or `.await` from async code). The writer takes up to
//! [`Options::max_batch`] queued events, appends their leaves to the Merkle tree, and commits
//! them in one transaction; while it commits, new events queue up for the next one, so under
//! load one `fsync` covers many events and when idle an event is committed at once.
//!
//! Every commit also signs a checkpoint of the new tree head, in the same transaction: there is
//! never a committed event that no signature covers, so an event that shows up uncovered was
//! not written by the writer. Most of these checkpoints are transient (the next commit replaces
//! it); one is kept in the ledger's checkpoint history at least every
//! [`Options::checkpoint_interval`] while events flow, and at every `task_end`, explicit
//! [`Ledger::checkpoint`] and [`Ledger::close`].
//!
//! A failed commit stops the writer: every waiting and future caller gets
//! [`Error::WriterFailed`] and no effect waiting on durability may proceed.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use remit_types::event::{EventBody, NewEvent, SCHEMA_VERSION};

use crate::canonical;
use crate::clock::{Clock, format_time};
use crate::error::{Error, Result, one_line};
use crate::key::{LedgerKey, PublicKey};
use crate::merkle::{self, Frontier, Hash};
use crate::note::{Checkpoint, SignedCheckpoint};
use crate::reader::LedgerReader;
use crate::store::{CheckpointRow, EventRow, LAYOUT_VERSION, Location, Meta, Store, StoreNodes};

/// Most events a ledger can hold: 2^53, the largest integer canonical JSON keeps exact.
pub const MAX_EVENTS: u64 = 1 << 53;

/// Tuning of the writer. The defaults are the documented guarantees.
#[derive(Debug, Clone)]
pub struct Options {
    /// Most events committed in one transaction (default 1,000).
    pub max_batch: usize,
    /// Longest time between two checkpoints kept in the history while events flow
    /// (default 1 s). Every commit is signed regardless; this sets the history's density.
    pub checkpoint_interval: Duration,
    /// Queued events beyond which `append` waits for the writer (default 100,000): bounded
    /// memory instead of an unbounded queue when the disk cannot keep up.
    pub max_pending: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_batch: 1000,
            checkpoint_interval: Duration::from_secs(1),
            max_pending: 100_000,
        }
    }
}

struct Pending {
    seq: u64,
    time: String,
    task: String,
    agent: String,
    kind: &'static str,
    body: Vec<u8>,
    task_end: bool,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Pending>,
    /// Next sequence number to hand out.
    next_seq: u64,
    /// Events with `seq < durable` are committed.
    durable: u64,
    /// Size covered by the latest committed checkpoint.
    checkpointed: u64,
    latest: Option<SignedCheckpoint>,
    /// The newest checkpoint kept in the history.
    retained: Option<SignedCheckpoint>,
    /// A caller wants the checkpoint covering at least this size kept in the history.
    retain_wanted: u64,
    closing: bool,
    /// The first commit failure; set once, never cleared.
    failed: Option<String>,
    wakers: Vec<Waker>,
}

struct Shared {
    state: Mutex<State>,
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
            durable: state.durable,
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

struct Inner {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
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
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            let mut state = self.shared.lock();
            state
                .failed
                .get_or_insert_with(|| "the writer thread panicked".to_owned());
        }
        let state = self.shared.lock();
        if let Some(err) = Shared::failure(&state) {
            return Err(err);
        }
        Ok(state.latest.clone())
    }
}

impl Ledger {
    /// Open the ledger at `location` for writing, creating it (named after the key) if it does
    /// not exist, and start the writer thread.
    ///
    /// Refuses a ledger created with another key, and one whose latest checkpoint does not
    /// match its stored tree. After a crash, the events that were committed but not yet covered
    /// by a checkpoint are checkpointed now.
    pub fn open(
        location: Location,
        key: LedgerKey,
        clock: Arc<dyn Clock>,
        options: Options,
    ) -> Result<Self> {
        let mut store = location.open_write()?;
        let public = key.public();
        let vkey = public.to_vkey();
        match store.read_meta()? {
            None => {
                store.create(&Meta {
                    layout: LAYOUT_VERSION,
                    origin: key.name().to_owned(),
                    vkey: vkey.clone(),
                    created: format_time(clock.now()),
                })?;
            }
            Some(meta) if meta.vkey != vkey => {
                return Err(Error::Key(format!(
                    "ledger {} is signed by key `{}`, not by `{vkey}`",
                    store.describe(),
                    meta.vkey
                )));
            }
            Some(_) => {}
        }
        let (frontier, latest) = recover(store.as_mut(), &public)?;
        let mut writer = Writer {
            store,
            key: key.clone(),
            clock: Arc::clone(&clock),
            frontier,
            options: options.clone(),
            retained_size: latest.as_ref().map_or(0, |c| c.checkpoint.size),
            retained_at: Instant::now(),
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                work: Condvar::new(),
                room: Condvar::new(),
                done: Condvar::new(),
            }),
            scratch: Vec::new(),
        };
        let mut latest = latest;
        if latest.is_none() {
            // A new ledger gets its genesis checkpoint (size 0), pinning origin and key.
            latest = Some(writer.checkpoint_only()?);
        }
        let size = writer.frontier.size();
        {
            let mut state = writer.shared.lock();
            state.next_seq = size;
            state.durable = size;
            state.checkpointed = latest.as_ref().map_or(0, |c| c.checkpoint.size);
            state.retained.clone_from(&latest);
            state.latest = latest;
        }
        let shared = Arc::clone(&writer.shared);
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

    /// Record an observation: queue it for the next group commit and return its sequence
    /// number without waiting for the disk. It waits only when more than
    /// [`Options::max_pending`] events are queued.
    pub fn append(&self, event: NewEvent) -> Result<u64> {
        let task_end = matches!(event.body, EventBody::TaskEnd(_));
        let kind = event.body.kind();
        let body = canonical::body_json(&event.body)?;
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
                break;
            }
            state = shared.room.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        let seq = state.next_seq;
        if seq >= MAX_EVENTS {
            // RFC 8785 numbers are IEEE doubles: beyond 2^53 a sequence number would not
            // survive canonical JSON exactly.
            return Err(Error::Invalid(format!(
                "the ledger is full ({MAX_EVENTS} events)"
            )));
        }
        state.next_seq = seq + 1;
        // Read the clock under the lock so times never go backwards along `seq`.
        let time = format_time(self.inner.clock.now());
        let was_empty = state.queue.is_empty();
        state.queue.push_back(Pending {
            seq,
            time,
            task: event.task,
            agent: event.agent,
            kind,
            body,
            task_end,
        });
        if was_empty {
            shared.work.notify_one();
        }
        Ok(seq)
    }

    /// Record an event that gates an effect: the returned handle resolves once the event is
    /// durable. Perform the effect only after [`Durable::wait`] (or `.await`) returns `Ok`.
    pub fn append_durable(&self, event: NewEvent) -> Result<Durable> {
        let seq = self.append(event)?;
        Ok(Durable {
            seq,
            shared: Arc::clone(&self.inner.shared),
        })
    }

    /// Wait until every event appended so far is durable.
    pub fn flush(&self) -> Result<()> {
        let shared = &self.inner.shared;
        let mut state = shared.lock();
        let target = state.next_seq;
        loop {
            if state.durable >= target {
                return Ok(());
            }
            if let Some(err) = Shared::failure(&state) {
                return Err(err);
            }
            state = shared.done.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Make every event appended so far durable, keep the checkpoint covering them in the
    /// ledger's checkpoint history, and return it.
    pub fn checkpoint(&self) -> Result<SignedCheckpoint> {
        let shared = &self.inner.shared;
        let mut state = shared.lock();
        let target = state.next_seq;
        if state.retain_wanted < target {
            state.retain_wanted = target;
            shared.work.notify_one();
        }
        loop {
            if let Some(retained) = &state.retained
                && retained.checkpoint.size >= target
            {
                return Ok(retained.clone());
            }
            if let Some(err) = Shared::failure(&state) {
                return Err(err);
            }
            state = shared.done.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Commit everything queued and stop the writer; the final checkpoint is kept in the
    /// history. Further appends fail with [`Error::Closed`]. Returns the final checkpoint.
    pub fn close(&self) -> Result<Option<SignedCheckpoint>> {
        self.inner.shutdown()
    }

    /// The latest committed checkpoint.
    pub fn latest_checkpoint(&self) -> Option<SignedCheckpoint> {
        self.inner.shared.lock().latest.clone()
    }

    /// Number of events accepted so far (durable or queued).
    pub fn size(&self) -> u64 {
        self.inner.shared.lock().next_seq
    }

    /// Number of durable events.
    pub fn durable_size(&self) -> u64 {
        self.inner.shared.lock().durable
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

    /// A read-only view on a separate connection (for proofs, `show`, receipts).
    pub fn reader(&self) -> Result<LedgerReader> {
        LedgerReader::open(&self.inner.location)
    }

    /// Build and sign the receipt of `task`, whose `task_end` event must be durable and
    /// checkpointed (it is, once `append_durable(task_end)` resolved).
    pub fn receipt(&self, task: &str) -> Result<crate::receipt::Envelope> {
        let mut reader = self.reader()?;
        crate::receipt::build_receipt(&mut reader, &self.inner.key, task)
    }
}

/// An event on its way to disk. Resolves to its sequence number once durable.
#[derive(Clone)]
pub struct Durable {
    seq: u64,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable").field("seq", &self.seq).finish()
    }
}

impl Durable {
    /// Sequence number of the event.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Block until the event is durable; `Err` if the writer failed first (the effect must
    /// then not proceed).
    pub fn wait(&self) -> Result<u64> {
        let mut state = self.shared.lock();
        loop {
            if state.durable > self.seq {
                return Ok(self.seq);
            }
            if let Some(err) = Shared::failure(&state) {
                return Err(err);
            }
            state = self
                .shared
                .done
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Like [`Durable::wait`], giving up after `timeout` (`Ok(None)`).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Option<u64>> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if state.durable > self.seq {
                return Ok(Some(self.seq));
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

    /// Whether the event is durable now.
    pub fn is_durable(&self) -> bool {
        self.shared.lock().durable > self.seq
    }
}

impl Future for Durable {
    type Output = Result<u64>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.shared.lock();
        if state.durable > self.seq {
            return Poll::Ready(Ok(self.seq));
        }
        if let Some(err) = Shared::failure(&state) {
            return Poll::Ready(Err(err));
        }
        if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            state.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Rebuild the frontier from stored nodes and check it against the latest checkpoint.
fn recover(
    store: &mut dyn Store,
    public: &PublicKey,
) -> Result<(Frontier, Option<SignedCheckpoint>)> {
    let size = store.size()?;
    let mut stack = Vec::with_capacity(64);
    {
        let mut nodes = StoreNodes::new(store);
        let mut start = 0u64;
        for level in (0..64u32).rev() {
            let span = 1u64 << level;
            if size & span != 0 {
                stack.push(merkle::NodeSource::node(&mut nodes, level, start >> level)?);
                start += span;
            }
        }
    }
    let frontier = Frontier::from_parts(size, stack).ok_or_else(|| Error::Store {
        store: store.describe(),
        detail: "cannot rebuild the tree frontier".into(),
    })?;
    let Some(row) = store.latest_checkpoint()? else {
        if size > 0 {
            return Err(Error::verify(
                Some(0),
                "the ledger has events but no signed checkpoint; refusing to append (run `remit ledger verify`)",
            ));
        }
        return Ok((frontier, None));
    };
    let damaged = |why: String| {
        Error::verify(
            None,
            format!("{why}; refusing to append (run `remit ledger verify`)"),
        )
    };
    let signed = SignedCheckpoint::open(&row.note, public)
        .map_err(|e| damaged(format!("latest checkpoint does not verify: {e}")))?;
    let cp_size = signed.checkpoint.size;
    if cp_size > size {
        return Err(damaged(format!(
            "the latest checkpoint covers {cp_size} events but the ledger holds {size}"
        )));
    }
    if cp_size < size {
        // Every commit is signed in its own transaction, so a crash cannot leave events
        // uncovered: these were added by something other than the writer.
        return Err(Error::verify(
            Some(cp_size),
            format!(
                "events {cp_size}..{} are not covered by a signed checkpoint; refusing to append (run `remit ledger verify`)",
                size - 1
            ),
        ));
    }
    let root = merkle::root_at(&mut StoreNodes::new(store), cp_size)?;
    if root != signed.checkpoint.root {
        return Err(damaged(format!(
            "the stored tree does not match the latest checkpoint (size {cp_size})"
        )));
    }
    Ok((frontier, Some(signed)))
}

struct Writer {
    store: Box<dyn Store>,
    key: LedgerKey,
    clock: Arc<dyn Clock>,
    frontier: Frontier,
    options: Options,
    /// Size of the newest checkpoint kept in the history.
    retained_size: u64,
    retained_at: Instant,
    shared: Arc<Shared>,
    scratch: Vec<Hash>,
}

enum Work {
    /// Commit these events; keep the resulting checkpoint if the flag says so.
    Batch(Vec<Pending>, bool),
    /// Keep the current head checkpoint in the history (no new events).
    Retain,
    /// Stop: closing with an empty queue.
    Stop,
    /// Stop: a commit failed.
    Abort,
}

/// Fails every waiter if the writer thread unwinds, so no effect waits forever on an event
/// that will never be committed.
struct PanicGuard(Arc<Shared>);

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let wakers = {
            let mut state = self.0.lock();
            state
                .failed
                .get_or_insert_with(|| "the writer thread panicked".to_owned());
            self.0.done.notify_all();
            self.0.room.notify_all();
            std::mem::take(&mut state.wakers)
        };
        for waker in wakers {
            waker.wake();
        }
    }
}

impl Writer {
    fn run(mut self) {
        let _guard = PanicGuard(Arc::clone(&self.shared));
        loop {
            let result = match self.next_work() {
                Work::Batch(batch, retain) => self.commit(batch, retain).map(Some),
                Work::Retain => {
                    self.retained_size = self.frontier.size();
                    self.retained_at = Instant::now();
                    Ok(None)
                }
                Work::Stop | Work::Abort => return,
            };
            if !self.publish(result) {
                return;
            }
        }
    }

    fn next_work(&mut self) -> Work {
        let max_batch = self.options.max_batch.max(1);
        let mut state = self.shared.lock();
        loop {
            if state.failed.is_some() {
                return Work::Abort;
            }
            let head = self.frontier.size();
            let retain_wanted = state.retain_wanted > self.retained_size;
            if retain_wanted && state.retain_wanted <= head {
                // The wanted checkpoint is the committed head: keep it before anything new
                // replaces it.
                return Work::Retain;
            }
            if !state.queue.is_empty() {
                let n = state.queue.len().min(max_batch);
                let batch: Vec<Pending> = state.queue.drain(..n).collect();
                let end = batch.last().map_or(0, |p| p.seq + 1);
                let retain = (retain_wanted && state.retain_wanted <= end)
                    || (state.closing && state.queue.is_empty());
                self.shared.room.notify_all();
                return Work::Batch(batch, retain);
            }
            if state.closing && head > self.retained_size {
                return Work::Retain;
            }
            if state.closing {
                return Work::Stop;
            }
            state = self
                .shared
                .work
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Publish a commit result to waiters; `false` when the writer must stop.
    fn publish(&mut self, result: Result<Option<SignedCheckpoint>>) -> bool {
        let wakers;
        let ok;
        {
            let mut state = self.shared.lock();
            match result {
                Ok(checkpoint) => {
                    state.durable = self.frontier.size();
                    if let Some(cp) = checkpoint {
                        state.checkpointed = cp.checkpoint.size;
                        state.latest = Some(cp);
                    }
                    if state.retained.as_ref().map_or(0, |c| c.checkpoint.size) < self.retained_size
                    {
                        state.retained = state.latest.clone();
                    }
                    ok = true;
                }
                Err(e) => {
                    state.failed.get_or_insert_with(|| one_line(&e));
                    ok = false;
                }
            }
            wakers = std::mem::take(&mut state.wakers);
            self.shared.done.notify_all();
            if !ok {
                self.shared.room.notify_all();
            }
        }
        for waker in wakers {
            waker.wake();
        }
        ok
    }

    fn commit(&mut self, batch: Vec<Pending>, retain: bool) -> Result<SignedCheckpoint> {
        let mut rows = Vec::with_capacity(batch.len());
        let mut task_end = false;
        for pending in batch {
            if pending.seq != self.frontier.size() {
                return Err(Error::Invalid(format!(
                    "internal sequence error: event {} queued at tree size {}",
                    pending.seq,
                    self.frontier.size()
                )));
            }
            let mut body = Vec::new();
            canonical::assemble(
                &mut body,
                SCHEMA_VERSION,
                pending.seq,
                &pending.time,
                &pending.task,
                &pending.agent,
                &pending.body,
            )?;
            self.scratch.clear();
            self.frontier
                .push(merkle::leaf_hash(&body), &mut self.scratch);
            task_end |= pending.task_end;
            rows.push(EventRow {
                seq: pending.seq,
                time: pending.time,
                task: pending.task,
                agent: pending.agent,
                kind: pending.kind.to_owned(),
                body,
                nodes: crate::store::nodes_blob(&self.scratch),
            });
        }
        let keep =
            retain || task_end || self.retained_at.elapsed() >= self.options.checkpoint_interval;
        let checkpoint = self.sign()?;
        let row = self.checkpoint_row(&checkpoint);
        // Drop the previous transient head (anything newer than the last kept checkpoint).
        self.store.append(&rows, &row, self.retained_size)?;
        if keep {
            self.retained_size = checkpoint.checkpoint.size;
            self.retained_at = Instant::now();
        }
        Ok(checkpoint)
    }

    fn sign(&self) -> Result<SignedCheckpoint> {
        SignedCheckpoint::sign(
            Checkpoint {
                origin: self.key.name().to_owned(),
                size: self.frontier.size(),
                root: self.frontier.root(),
            },
            &self.key,
        )
    }

    fn checkpoint_row(&self, cp: &SignedCheckpoint) -> CheckpointRow {
        CheckpointRow {
            size: cp.checkpoint.size,
            time: format_time(self.clock.now()),
            note: cp.note.clone(),
        }
    }

    /// Sign and keep a checkpoint of the current head without new events.
    fn checkpoint_only(&mut self) -> Result<SignedCheckpoint> {
        let cp = self.sign()?;
        let row = self.checkpoint_row(&cp);
        self.store.append(&[], &row, self.retained_size)?;
        self.retained_size = cp.checkpoint.size;
        self.retained_at = Instant::now();
        Ok(cp)
    }
}
