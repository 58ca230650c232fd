//! remit-ledger: the tamper-evident, durable-before-effect audit log of remit.
//!
//! Every event of a task (its authorization, each process it started, each effect the gate
//! decided, approvals, credentials, violations, its end) is appended as canonical JSON
//! ([`remit_types::event`]) to an RFC 6962 Merkle tree whose heads are signed as C2SP
//! checkpoints with the supervisor's Ed25519 key. Anyone holding the public key can check,
//! offline, that an event is in the log ([`reader::InclusionBundle`]), that the log only ever
//! grew ([`merkle::verify_consistency`]), that nothing in it was edited, removed, reordered or
//! inserted ([`verify::verify`]), and that a task's signed receipt matches it
//! ([`receipt::verify_receipt`]).
//!
//! - **Durable before effect.** [`Ledger::append_durable`] returns a [`Durable`] that resolves
//!   only once the event is committed (`fsync`ed); the gate performs an effect after that.
//!   Observations use [`Ledger::append`] and are group-committed without blocking.
//! - **Many writers, one ledger, no server.** Every `remit run` is its own process with its
//!   own [`Ledger`]; all of them append to the same store. Each commit is one transaction
//!   holding the store's write lock for one `fsync`: it reads the head, reloads the tree
//!   frontier only if another writer appended since, numbers the events, and signs a
//!   checkpoint in the same transaction. Sequence numbers are therefore known only at commit.
//! - **Group commit.** Each [`Ledger`] has one writer thread that commits up to 1,000 queued
//!   events per transaction, starting as soon as events are queued.
//! - **Stores.** SQLite (WAL, `synchronous=FULL`) by default; PostgreSQL behind the same
//!   [`store::Store`] trait.
//!
//! # The writer's API
//!
//! ```text
//! Ledger::open(location: Location, key: LedgerKey, clock: Arc<dyn Clock>, options: Options) -> Result<Ledger>
//! Ledger::open_home(home: &Path, clock: Arc<dyn Clock>, options: Options) -> Result<Ledger>
//! Ledger::append(&self, event: NewEvent) -> Result<()>              // queued, never waits for the disk
//! Ledger::append_durable(&self, event: NewEvent) -> Result<Durable>
//!     Durable::wait(&self) -> Result<u64>                             // blocks; the committed seq
//!     Durable::wait_timeout(&self, timeout: Duration) -> Result<Option<u64>>
//!     impl Future for Durable { type Output = Result<u64>; }          // `.await` from async code
//!     Durable::seq(&self) -> Option<u64>                              // the seq if durable now
//! Ledger::flush(&self) -> Result<()>                                  // this handle's events durable
//! Ledger::checkpoint(&self) -> Result<SignedCheckpoint>               // … and a kept checkpoint over them
//! Ledger::close(&self) -> Result<Option<SignedCheckpoint>>            // flush, keep, stop the writer
//! Ledger::receipt(&self, task: &str) -> Result<Envelope>              // after task_end is durable
//! Ledger::reader(&self) -> Result<LedgerReader>
//! ```
//!
//! `append` returns `()`: an observation has no sequence number until its commit, and nothing
//! waits on it. Events appended through one `Ledger` are committed in their append order, and
//! their times never go backwards; events of different processes interleave in commit order.
//! Any commit failure (including waiting longer than [`store::WRITE_LOCK_TIMEOUT`] for another
//! writer) fails every later call with [`Error::WriterFailed`]: fail closed.
//!
//! Not goals: this crate does not decide anything (the gate does), does not hide events from
//! whoever can read the store (events name secrets, never hold them), and cannot stop an
//! attacker who holds the signing key from writing a new history; pin the public key and keep
//! checkpoints elsewhere (`remit ledger checkpoint`) to catch a rewrite.
//!
//! ```
//! use std::sync::Arc;
//! use remit_ledger::{FixedClock, Ledger, LedgerKey, LedgerReader, Location, Options, verify};
//! use remit_types::event::{Exec, NewEvent, Verdict};
//!
//! # fn main() -> Result<(), remit_ledger::Error> {
//! let dir = tempfile::tempdir().map_err(|e| remit_ledger::Error::Invalid(e.to_string()))?;
//! let location = Location::Sqlite(dir.path().join("ledger.db"));
//! let key = LedgerKey::from_seed("example.com/ledger", [7; 32])?;
//! let ledger = Ledger::open(location.clone(), key.clone(), Arc::new(FixedClock::epoch_2026()), Options::default())?;
//!
//! let exec = Exec {
//!     argv: vec!["cargo".into(), "test".into()],
//!     cwd: "/workspace".into(),
//!     pid: 7,
//!     ppid: 1,
//!     decision: Verdict::Allow,
//!     rule: None,
//! };
//! ledger.append(NewEvent::new("t-1", "ci-fixer", exec.clone()))?; // observation
//! let seq = ledger.append_durable(NewEvent::new("t-1", "ci-fixer", exec))?.wait()?; // gate
//! ledger.close()?;
//!
//! let mut reader = LedgerReader::open(&location)?;
//! let report = verify::verify(&mut reader, &verify::VerifyOptions { key: Some(key.public()), against: vec![] })?;
//! assert_eq!(report.events, 2);
//! let proof = reader.prove(seq, &key.public())?;
//! proof.verify(&key.public())?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod canonical;
pub mod clock;
pub mod error;
pub mod export;
pub mod hex;
pub mod key;
pub mod merkle;
pub mod note;
pub mod reader;
pub mod receipt;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod verify;
mod writer;

pub use clock::{Clock, FixedClock, SystemClock};
pub use error::{Error, Result, VerifyFailure};
pub use key::{LedgerKey, OsRandomness, PublicKey, Randomness};
pub use note::{Checkpoint, SignedCheckpoint};
pub use reader::{InclusionBundle, LedgerReader, StoredEvent};
pub use receipt::{Envelope, build_receipt, verify_receipt};
pub use store::{Location, Query};
pub use writer::{Durable, Ledger, MAX_EVENTS, Options};

/// Read a small input file (a key, a checkpoint, a proof, a receipt) of at most `max` bytes:
/// a larger one (`/dev/zero`, a log given by mistake) is refused, not read into memory.
pub fn read_input(path: &std::path::Path, max: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {max} bytes"),
        ));
    }
    Ok(text)
}

/// A fresh ledger name (origin and key name): `remit.local/ledger/<16 random hex digits>`.
pub fn new_origin(rng: &mut dyn Randomness) -> Result<String> {
    let mut id = [0u8; 8];
    rng.fill(&mut id)?;
    Ok(format!("remit.local/ledger/{}", hex::encode(&id)))
}
