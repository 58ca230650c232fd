//! Read-only access to a ledger: events, checkpoints, proofs.

use remit_types::event::Event;
use serde::{Deserialize, Serialize};

use crate::canonical;
use crate::error::{Error, Result};
use crate::hex;
use crate::key::PublicKey;
use crate::merkle::{self, Hash};
use crate::note::SignedCheckpoint;
use crate::store::{CheckpointRow, Location, Meta, Query, Store, StoreNodes};

/// An event as stored: its exact bytes (the Merkle leaf) and their decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// The canonical JSON, byte for byte as hashed.
    pub bytes: Vec<u8>,
    /// The decoded event.
    pub event: Event,
}

/// A read-only view of a ledger. Opening one never modifies the ledger.
pub struct LedgerReader {
    store: Box<dyn Store>,
    meta: Meta,
    recorded_key: PublicKey,
    /// Inside [`LedgerReader::snapshot`].
    in_snapshot: bool,
}

impl std::fmt::Debug for LedgerReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerReader")
            .field("store", &self.store.describe())
            .field("origin", &self.meta.origin)
            .finish_non_exhaustive()
    }
}

impl LedgerReader {
    /// Open the ledger at `location` read-only.
    pub fn open(location: &Location) -> Result<Self> {
        Self::from_store(location.open_read()?)
    }

    /// Wrap an already open store.
    pub fn from_store(mut store: Box<dyn Store>) -> Result<Self> {
        let meta = store.read_meta()?.ok_or_else(|| Error::Store {
            store: store.describe(),
            detail: "not a remit ledger (empty database)".into(),
        })?;
        let recorded_key = PublicKey::parse_vkey(&meta.vkey).map_err(|e| Error::Store {
            store: store.describe(),
            detail: format!("recorded public key is unreadable: {e}"),
        })?;
        if recorded_key.name() != meta.origin {
            return Err(Error::Store {
                store: store.describe(),
                detail: format!(
                    "recorded key `{}` does not belong to ledger `{}`",
                    recorded_key.name(),
                    meta.origin
                ),
            });
        }
        Ok(Self {
            store,
            meta,
            recorded_key,
            in_snapshot: false,
        })
    }

    /// Run `read` on one consistent snapshot of the ledger: writers may append meanwhile, and
    /// none of it shows. Nested calls share the outer snapshot. A ledger read without locks
    /// (see [`LedgerReader::settled`]) that a writer changed meanwhile is read again.
    pub fn snapshot<T>(&mut self, mut read: impl FnMut(&mut Self) -> Result<T>) -> Result<T> {
        if self.in_snapshot {
            return read(self);
        }
        let mut attempts = 0;
        loop {
            self.store.begin_snapshot()?;
            self.in_snapshot = true;
            let result = read(self);
            self.in_snapshot = false;
            let ended = self.store.end_snapshot();
            attempts += 1;
            if self.store.reopen_if_changed()? {
                if attempts < 3 {
                    continue;
                }
                return Err(self.changed());
            }
            let value = result?;
            return ended.map(|()| value);
        }
    }

    /// Check, after reads made outside [`LedgerReader::snapshot`], that they are whole. A
    /// SQLite ledger that no writer had open is read as immutable (no log, no locks, no file
    /// created); a writer that starts meanwhile and folds its log into the file changes it
    /// under the reader. Then this is an error that says to read again.
    pub fn settled(&mut self) -> Result<()> {
        if self.store.reopen_if_changed()? {
            return Err(self.changed());
        }
        Ok(())
    }

    fn changed(&self) -> Error {
        Error::Store {
            store: self.store.describe(),
            detail: "a writer changed the file while it was read; what was read may be incomplete, read it again".into(),
        }
    }

    /// What the store says about the ledger.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The ledger's origin.
    pub fn origin(&self) -> &str {
        &self.meta.origin
    }

    /// The public key recorded in the ledger. Whoever can write the ledger can change it:
    /// pin the key you expect (`--key`) to verify against something an attacker cannot edit.
    pub fn recorded_key(&self) -> &PublicKey {
        &self.recorded_key
    }

    /// A short description of the store.
    pub fn describe(&self) -> String {
        self.store.describe()
    }

    pub(crate) fn store(&mut self) -> &mut dyn Store {
        self.store.as_mut()
    }

    /// Number of events.
    pub fn size(&mut self) -> Result<u64> {
        self.store.size()
    }

    /// One event, decoded.
    pub fn event(&mut self, seq: u64) -> Result<StoredEvent> {
        let row = self.store.event(seq)?.ok_or_else(|| {
            Error::NotFound(format!(
                "no event {seq} in ledger {}",
                self.store.describe()
            ))
        })?;
        let event = canonical::decode(&row.body).map_err(|e| Error::Store {
            store: self.store.describe(),
            detail: format!("event {seq}: {e}"),
        })?;
        Ok(StoredEvent {
            bytes: row.body,
            event,
        })
    }

    /// Visit the events matching `query`, decoded, in sequence order; `visit` returns `false`
    /// to stop.
    pub fn scan(
        &mut self,
        query: &Query,
        visit: &mut dyn FnMut(StoredEvent) -> Result<bool>,
    ) -> Result<()> {
        let describe = self.store.describe();
        self.store.scan(query, &mut |row| {
            let event = canonical::decode(row.body).map_err(|e| Error::Store {
                store: describe.clone(),
                detail: format!("event {}: {e}", row.seq),
            })?;
            visit(StoredEvent {
                bytes: row.body.to_vec(),
                event,
            })
        })
    }

    /// Stored checkpoints (signatures not checked).
    pub fn checkpoint_rows(&mut self) -> Result<Vec<CheckpointRow>> {
        let mut rows = Vec::new();
        self.store.each_checkpoint(&mut |row| {
            rows.push(row);
            Ok(())
        })?;
        Ok(rows)
    }

    /// Visit every stored checkpoint row, by size, one at a time.
    pub fn each_checkpoint(
        &mut self,
        visit: &mut dyn FnMut(CheckpointRow) -> Result<()>,
    ) -> Result<()> {
        self.store.each_checkpoint(visit)
    }

    /// The latest checkpoint, signature checked with `key`.
    pub fn latest_checkpoint(&mut self, key: &PublicKey) -> Result<SignedCheckpoint> {
        let row = self.store.latest_checkpoint()?.ok_or_else(|| {
            Error::NotFound(format!(
                "ledger {} has no checkpoint",
                self.store.describe()
            ))
        })?;
        SignedCheckpoint::open(&row.note, key)
    }

    /// The smallest stored checkpoint covering `size` events, signature checked with `key`.
    pub fn checkpoint_covering(&mut self, size: u64, key: &PublicKey) -> Result<SignedCheckpoint> {
        let row = self.store.checkpoint_covering(size)?.ok_or_else(|| {
            Error::NotFound(format!("no signed checkpoint covers {size} events yet"))
        })?;
        SignedCheckpoint::open(&row.note, key)
    }

    /// Root of the tree of the first `size` events, from stored subtree hashes.
    pub fn root_at(&mut self, size: u64) -> Result<Hash> {
        merkle::root_at(&mut StoreNodes::new(self.store.as_mut()), size)
    }

    /// Inclusion proof of event `seq` in the tree of `size` events.
    pub fn inclusion_proof(&mut self, seq: u64, size: u64) -> Result<Vec<Hash>> {
        merkle::inclusion_proof(&mut StoreNodes::new(self.store.as_mut()), seq, size)?.ok_or_else(
            || Error::NotFound(format!("event {seq} is not in a tree of {size} events")),
        )
    }

    /// Consistency proof between the trees of `old` and `new` events.
    pub fn consistency_proof(&mut self, old: u64, new: u64) -> Result<Vec<Hash>> {
        merkle::consistency_proof(&mut StoreNodes::new(self.store.as_mut()), old, new)?
            .ok_or_else(|| Error::Invalid(format!("old size {old} is larger than new size {new}")))
    }

    /// A self-contained proof that event `seq` is in the ledger, against the latest checkpoint
    /// (signed by `key`).
    pub fn prove(&mut self, seq: u64, key: &PublicKey) -> Result<InclusionBundle> {
        let checkpoint = self.latest_checkpoint(key)?;
        self.prove_at(seq, &checkpoint)
    }

    /// A self-contained proof that event `seq` is in the tree of `checkpoint`.
    pub fn prove_at(&mut self, seq: u64, checkpoint: &SignedCheckpoint) -> Result<InclusionBundle> {
        let size = checkpoint.checkpoint.size;
        if seq >= size {
            return Err(Error::NotFound(format!(
                "event {seq} is not covered by the checkpoint of size {size}"
            )));
        }
        let stored = self.event(seq)?;
        let proof = self.inclusion_proof(seq, size)?;
        let event = String::from_utf8(stored.bytes)
            .map_err(|_| Error::Encode(format!("event {seq} is not utf-8")))?;
        Ok(InclusionBundle {
            format: InclusionBundle::FORMAT.to_owned(),
            origin: checkpoint.checkpoint.origin.clone(),
            seq,
            leaf_hash: hex::encode(&merkle::leaf_hash(event.as_bytes())),
            event,
            tree_size: size,
            proof: proof.iter().map(|h| hex::encode(h)).collect(),
            checkpoint: checkpoint.note.clone(),
        })
    }
}

/// An inclusion proof that verifies offline: the event, the audit path and the signed
/// checkpoint it leads to. Output of `remit ledger prove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionBundle {
    /// `remit-inclusion-proof/v1`.
    pub format: String,
    /// The ledger's origin.
    pub origin: String,
    /// The event's sequence number (its leaf index).
    pub seq: u64,
    /// The event's canonical JSON, exactly as hashed.
    pub event: String,
    /// `SHA-256(0x00 || event)`, hex.
    pub leaf_hash: String,
    /// Size of the tree the proof is for.
    pub tree_size: u64,
    /// Audit path, leaf side first, hex.
    pub proof: Vec<String>,
    /// The signed checkpoint of that tree.
    pub checkpoint: String,
}

impl InclusionBundle {
    /// Format tag of this version.
    pub const FORMAT: &'static str = "remit-inclusion-proof/v1";

    /// Check the proof against `key`: the checkpoint's signature, the event's hash and its
    /// audit path. Returns the decoded event.
    pub fn verify(&self, key: &PublicKey) -> Result<Event> {
        if self.format != Self::FORMAT {
            return Err(Error::Proof(format!(
                "unknown proof format `{}`",
                self.format
            )));
        }
        let checkpoint = SignedCheckpoint::open(&self.checkpoint, key)?;
        if checkpoint.checkpoint.origin != self.origin {
            return Err(Error::Proof(format!(
                "proof names ledger `{}` but its checkpoint is from `{}`",
                self.origin, checkpoint.checkpoint.origin
            )));
        }
        if checkpoint.checkpoint.size != self.tree_size {
            return Err(Error::Proof(format!(
                "proof is for a tree of {} events but its checkpoint covers {}",
                self.tree_size, checkpoint.checkpoint.size
            )));
        }
        let leaf = merkle::leaf_hash(self.event.as_bytes());
        if hex::encode(&leaf) != self.leaf_hash {
            return Err(Error::Proof(format!(
                "event {} does not match its leaf hash: the event text was altered",
                self.seq
            )));
        }
        let event =
            canonical::decode(self.event.as_bytes()).map_err(|e| Error::Proof(e.to_string()))?;
        if event.seq != self.seq {
            return Err(Error::Proof(format!(
                "proof is for event {} but the event records sequence number {}",
                self.seq, event.seq
            )));
        }
        let path = parse_path(&self.proof)?;
        merkle::verify_inclusion(
            &leaf,
            self.seq,
            self.tree_size,
            &path,
            &checkpoint.checkpoint.root,
        )
        .map_err(|e| Error::Proof(format!("inclusion proof of event {} fails: {e}", self.seq)))?;
        Ok(event)
    }
}

/// Decode a hex audit path.
pub(crate) fn parse_path(path: &[String]) -> Result<Vec<Hash>> {
    path.iter()
        .enumerate()
        .map(|(i, h)| {
            hex::decode_hash(h)
                .ok_or_else(|| Error::Proof(format!("proof hash {i} is not 32 bytes of hex")))
        })
        .collect()
}
