//! Full verification of a ledger: recompute the tree from the stored events and check it
//! against every signed checkpoint.
//!
//! Nothing stored is trusted: the sequence, each event's header against its indexed columns,
//! each leaf hash and stored subtree hash against the recomputation, each checkpoint's
//! signature and root. Given checkpoints saved earlier (`--against`), the ledger must extend
//! them: a ledger rewritten from genesis, or truncated below them, fails.

use crate::canonical::Header;
use crate::error::{Error, Result};
use crate::key::PublicKey;
use crate::merkle::{self, Frontier, Hash};
use crate::note::SignedCheckpoint;
use crate::reader::LedgerReader;
use crate::store::Query;

/// What to verify against.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// The public key to trust. `None`: the key recorded in the ledger, which proves integrity
    /// only against someone who cannot also replace that key.
    pub key: Option<PublicKey>,
    /// Signed checkpoints saved earlier (note texts) that the ledger must be consistent with.
    pub against: Vec<String>,
}

/// Which key a verification trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// The caller pinned the key.
    Pinned,
    /// The key recorded in the ledger itself.
    Recorded,
}

/// A ledger that verified.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// The ledger's origin.
    pub origin: String,
    /// The key that verified every checkpoint.
    pub key: PublicKey,
    /// Where that key came from.
    pub key_source: KeySource,
    /// Events checked.
    pub events: u64,
    /// Stored checkpoints checked.
    pub checkpoints: usize,
    /// Root of the whole ledger.
    pub root: Hash,
    /// The latest stored checkpoint.
    pub latest: SignedCheckpoint,
    /// Sizes of the `--against` checkpoints the ledger is consistent with.
    pub against: Vec<u64>,
}

struct Target {
    size: u64,
    root: Hash,
    /// `true` for a checkpoint given by the caller.
    external: bool,
}

/// Verify the whole ledger, as of one snapshot (writers may go on appending). `Err(Error::Verify(..))`
/// names what is wrong (and the first bad event when it can be pinned); other errors mean the
/// ledger could not be read.
pub fn verify(reader: &mut LedgerReader, options: &VerifyOptions) -> Result<VerifyReport> {
    reader.snapshot(|reader| verify_snapshot(reader, options))
}

fn verify_snapshot(reader: &mut LedgerReader, options: &VerifyOptions) -> Result<VerifyReport> {
    let (key, key_source) = match &options.key {
        Some(key) => (key.clone(), KeySource::Pinned),
        None => (reader.recorded_key().clone(), KeySource::Recorded),
    };
    if key.name() != reader.origin() {
        return Err(Error::verify(
            None,
            format!(
                "ledger is named `{}` but the trusted key is for `{}`",
                reader.origin(),
                key.name()
            ),
        ));
    }
    if reader.recorded_key() != &key {
        return Err(Error::verify(
            None,
            format!(
                "ledger records key `{}` but the trusted key is `{}`: the ledger was re-keyed or rewritten",
                reader.recorded_key(),
                key
            ),
        ));
    }

    // Each stored checkpoint is opened as it is read: what is kept of it is its size and root
    // (and the latest whole), not its note.
    let mut targets = Vec::new();
    let mut latest = None;
    let mut stored = 0usize;
    reader.each_checkpoint(&mut |row| {
        let signed = SignedCheckpoint::open(&row.note, &key).map_err(|e| {
            Error::verify(
                row.size.checked_sub(1),
                format!("stored checkpoint at size {}: {e}", row.size),
            )
        })?;
        if signed.checkpoint.size != row.size {
            return Err(Error::verify(
                None,
                format!(
                    "stored checkpoint row says size {} but the signed note says {}",
                    row.size, signed.checkpoint.size
                ),
            ));
        }
        targets.push(Target {
            size: row.size,
            root: signed.checkpoint.root,
            external: false,
        });
        latest = Some(signed);
        stored += 1;
        Ok(())
    })?;
    if stored == 0 {
        return Err(Error::verify(
            None,
            "the ledger has no signed checkpoint (they were deleted)",
        ));
    }
    let mut against = Vec::new();
    for (i, note) in options.against.iter().enumerate() {
        let signed = SignedCheckpoint::open(note, &key).map_err(|e| {
            Error::verify(
                None,
                format!("checkpoint {} given to verify against: {e}", i + 1),
            )
        })?;
        against.push(signed.checkpoint.size);
        targets.push(Target {
            size: signed.checkpoint.size,
            root: signed.checkpoint.root,
            external: true,
        });
    }
    targets.sort_by_key(|t| t.size);
    let Some(latest) = latest else {
        return Err(Error::verify(None, "the ledger has no signed checkpoint"));
    };

    let mut walk = Walk {
        frontier: Frontier::new(),
        completed: Vec::with_capacity(64),
        next: 0,
        targets: &targets,
        target: 0,
        last_good: 0,
        last_good_external: 0,
    };
    walk.check_targets()?;
    let query = Query::default();
    // Each event's form (canonical JSON of a kind and fields this build knows) is checked on
    // a second thread, in batches, while this one reads and hashes: the two take about as
    // long, and a ledger is verified on two cores in a little more than half the time of one.
    let (batches, received) = std::sync::mpsc::sync_channel::<Vec<(u64, Vec<u8>)>>(4);
    std::thread::scope(|scope| -> Result<()> {
        let checker = scope.spawn(move || -> Option<Error> {
            for batch in received {
                for (seq, body) in batch {
                    if let Err(e) = check_form(seq, &body) {
                        return Some(e);
                    }
                }
            }
            None
        });
        let mut batch = Vec::with_capacity(FORM_BATCH);
        let walked = reader.store().scan(&query, &mut |row| {
            walk.event(
                row.seq,
                row.body,
                row.nodes,
                [row.time, row.task, row.agent, row.kind],
            )?;
            batch.push((row.seq, row.body.to_vec()));
            if batch.len() == FORM_BATCH
                && batches
                    .send(std::mem::replace(
                        &mut batch,
                        Vec::with_capacity(FORM_BATCH),
                    ))
                    .is_err()
            {
                // The checker stopped at a bad event: it is the first one.
                return Ok(false);
            }
            Ok(true)
        });
        if !batch.is_empty() {
            let _ = batches.send(batch);
        }
        drop(batches);
        // The checker has seen every event before the one this thread stopped at (if any):
        // a bad form it found comes first.
        match checker.join() {
            Ok(Some(form)) => Err(form),
            Ok(None) => walked,
            Err(_) => Err(Error::verify(None, "the event checker failed")),
        }
    })?;
    let size = walk.next;
    let hidden = reader.store().rows_below_zero()?;
    if hidden > 0 {
        return Err(Error::verify(
            None,
            format!(
                "{hidden} stored row{} a negative sequence number, which no reader shows: added outside the ledger writer",
                if hidden == 1 { " has" } else { "s have" }
            ),
        ));
    }
    if let Some(t) = targets.iter().find(|t| t.size > size) {
        let whose = if t.external {
            "a checkpoint given to verify against"
        } else {
            "a stored signed checkpoint"
        };
        return Err(Error::verify(
            Some(size),
            format!(
                "the ledger ends after {size} events but {whose} covers {}: events were removed from the end",
                t.size
            ),
        ));
    }
    if latest.checkpoint.size < size {
        return Err(Error::verify(
            Some(latest.checkpoint.size),
            format!(
                "events {}..{} are not covered by any signed checkpoint: they were added outside the ledger writer",
                latest.checkpoint.size,
                size - 1
            ),
        ));
    }
    Ok(VerifyReport {
        origin: reader.origin().to_owned(),
        key,
        key_source,
        events: size,
        checkpoints: stored,
        root: walk.frontier.root(),
        latest,
        against,
    })
}

/// Events handed to the form checker at a time.
const FORM_BATCH: usize = 1024;

/// Every reader decodes an event strictly and hashes exactly its bytes: a stored event with a
/// field, a kind or a form no writer makes would pass `verify` and fail every reader, or mean
/// to one reader what it does not to another.
fn check_form(seq: u64, body: &[u8]) -> Result<()> {
    crate::canonical::check_schema(body).map_err(|why| {
        Error::verify(
            Some(seq),
            format!(
                "content is not canonical JSON of an event this build knows ({why}): not written by a ledger writer"
            ),
        )
    })
}

struct Walk<'a> {
    frontier: Frontier,
    completed: Vec<Hash>,
    /// Next expected sequence number.
    next: u64,
    targets: &'a [Target],
    target: usize,
    /// Largest checkpoint size verified so far.
    last_good: u64,
    /// Largest size of a checkpoint given by the caller verified so far: the ledger's own
    /// checkpoints say nothing about a ledger rewritten by whoever holds the key.
    last_good_external: u64,
}

impl Walk<'_> {
    fn event(&mut self, seq: u64, body: &[u8], nodes: &[u8], columns: [&str; 4]) -> Result<()> {
        let expected = self.next;
        if seq != expected {
            return Err(Error::verify(
                Some(expected),
                format!("event {expected} is missing: the next stored event is {seq} (deleted)"),
            ));
        }
        let header: Header<'_> = serde_json::from_slice(body)
            .map_err(|e| Error::verify(Some(seq), format!("content is not a valid event ({e})")))?;
        if header.seq != seq {
            let (first, why) = if header.seq < seq {
                (
                    header.seq,
                    "an event was inserted at or before it, or it was copied or moved",
                )
            } else {
                (seq, "events were deleted or reordered")
            };
            return Err(Error::verify(
                Some(first),
                format!(
                    "event stored at {seq} records sequence number {}: {why}",
                    header.seq
                ),
            ));
        }
        if header.schema != remit_types::event::SCHEMA_VERSION {
            return Err(Error::verify(
                Some(seq),
                format!("unsupported event schema version {}", header.schema),
            ));
        }
        let [time, task, agent, kind] = columns;
        for (name, column, inside) in [
            ("time", time, &*header.time),
            ("task", task, &*header.task),
            ("agent", agent, &*header.agent),
            ("kind", kind, &*header.body.kind),
        ] {
            if column != inside {
                return Err(Error::verify(
                    Some(seq),
                    format!(
                        "indexed `{name}` is `{column}` but the event says `{inside}` (column edited)"
                    ),
                ));
            }
        }
        let leaf = merkle::leaf_hash(body);
        self.completed.clear();
        self.frontier.push(leaf, &mut self.completed);
        if nodes.get(..32) != Some(&leaf[..]) {
            return Err(Error::verify(
                Some(seq),
                "content does not match its recorded hash (event edited)",
            ));
        }
        if nodes.len() != self.completed.len() * 32 {
            return Err(Error::verify(
                Some(seq),
                "stored tree hashes do not match the recomputed tree (hashes edited or corrupted)",
            ));
        }
        if let Some(level) = self
            .completed
            .iter()
            .zip(nodes.chunks_exact(32))
            .position(|(a, b)| a[..] != *b)
        {
            // The subtree of 2^level events ending here differs from the one stored when it
            // was complete, while its right half matched (checked one level down): an event
            // of its left half was altered and its own stored hashes recomputed to match.
            // (Level 0, the leaf itself, was checked above.)
            let level = level.max(1);
            let first = seq + 1 - (1u64 << level);
            let last = seq - (1u64 << (level - 1));
            let which = if first == last {
                format!("event {first} was")
            } else {
                format!("one of events {first}..{last} was")
            };
            return Err(Error::verify(
                Some(first),
                format!(
                    "the tree hash stored with event {seq} does not cover the events before it: {which} altered and its own stored hashes recomputed"
                ),
            ));
        }
        self.next = seq + 1;
        self.check_targets()
    }

    /// Compare the recomputed root with every checkpoint at the current size.
    fn check_targets(&mut self) -> Result<()> {
        let size = self.frontier.size();
        while let Some(t) = self.targets.get(self.target) {
            if t.size != size {
                break;
            }
            if self.frontier.root() != t.root {
                if t.external {
                    // The ledger's own checkpoints were signed by whoever rewrote it: only
                    // the caller's earlier checkpoints tell where it still matches.
                    let first = self.last_good_external;
                    return Err(Error::verify(
                        Some(first),
                        format!(
                            "events {first}..{} do not match the checkpoint of {size} events given to verify against: the ledger was rewritten from event {first} or later",
                            size - 1
                        ),
                    ));
                }
                let reason = if size == 0 {
                    "the genesis checkpoint is not of an empty tree".to_owned()
                } else {
                    format!(
                        "events {}..{} do not match the checkpoint signed at size {size}: one of them was altered and its stored hashes recomputed",
                        self.last_good,
                        size - 1
                    )
                };
                let first = if size == 0 {
                    None
                } else {
                    Some(self.last_good)
                };
                return Err(Error::verify(first, reason));
            }
            self.last_good = size;
            if t.external {
                self.last_good_external = size;
            }
            self.target += 1;
        }
        Ok(())
    }
}
