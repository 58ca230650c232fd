//! C2SP signed notes and tlog checkpoints.
//!
//! A checkpoint is the note text
//!
//! ```text
//! <origin>
//! <tree size, decimal>
//! <root hash, base64>
//! ```
//!
//! followed by a blank line and one signature line per signer:
//! `— <key name> base64(key id (4 bytes, big-endian) || Ed25519 signature over the text)`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::error::{Error, Result};
use crate::hex;
use crate::key::{LedgerKey, PublicKey};
use crate::merkle::Hash;

/// Most signatures a note may carry before it is refused (the spec asks for at least 16).
const MAX_SIGNATURES: usize = 64;
/// Largest note accepted.
const MAX_NOTE_BYTES: usize = 1 << 20;

/// Sign `text` (which must end in a newline) and return the whole signed note.
pub fn sign_note(text: &str, key: &LedgerKey) -> Result<String> {
    check_text(text)?;
    let public = key.public();
    let mut blob = Vec::with_capacity(68);
    blob.extend_from_slice(&public.id().to_be_bytes());
    blob.extend_from_slice(&key.sign(text.as_bytes()));
    Ok(format!(
        "{text}\n\u{2014} {} {}\n",
        key.name(),
        B64.encode(blob)
    ))
}

fn check_text(text: &str) -> Result<()> {
    if text.is_empty() || !text.ends_with('\n') {
        return Err(Error::Note("note text must end with a newline".into()));
    }
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(Error::Note("note text contains control characters".into()));
    }
    Ok(())
}

/// Check the signature of `key` on a signed note and return the note text.
///
/// Signatures by other keys are ignored, as the signed-note spec requires; a signature by
/// `key` that does not verify rejects the note.
pub fn open_note<'a>(note: &'a str, key: &PublicKey) -> Result<&'a str> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(Error::Note("signed note is too large".into()));
    }
    if note.chars().any(|c| c < ' ' && c != '\n') {
        return Err(Error::Note(
            "signed note contains control characters".into(),
        ));
    }
    let split = note.rfind("\n\n").ok_or_else(|| {
        Error::Note("malformed signed note: no blank line before the signatures".into())
    })?;
    let text = &note[..=split];
    let sigs = &note[split + 2..];
    if !sigs.ends_with('\n') {
        return Err(Error::Note(
            "malformed signed note: signature lines must end with a newline".into(),
        ));
    }
    let mut verified = false;
    let mut count = 0usize;
    for line in sigs.lines() {
        count += 1;
        if count > MAX_SIGNATURES {
            return Err(Error::Note("signed note has too many signatures".into()));
        }
        let rest = line
            .strip_prefix("\u{2014} ")
            .ok_or_else(|| Error::Note("malformed signature line in note".into()))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or_else(|| Error::Note("malformed signature line in note".into()))?;
        let blob = B64
            .decode(b64)
            .map_err(|_| Error::Note(format!("signature by `{name}` is not base64")))?;
        if blob.len() < 4 {
            return Err(Error::Note(format!("signature by `{name}` is too short")));
        }
        let id = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]);
        if name != key.name() || id != key.id() {
            continue;
        }
        if !key.verify(text.as_bytes(), &blob[4..]) {
            return Err(Error::Note(format!(
                "signature by `{name}` (key id {id:08x}) does not verify: the note was altered or signed by another key"
            )));
        }
        verified = true;
    }
    if !verified {
        return Err(Error::Note(format!(
            "note is not signed by key `{}` (key id {})",
            key.name(),
            key.id_hex()
        )));
    }
    Ok(text)
}

/// A tree head: origin, size and root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The ledger's name (also its key name).
    pub origin: String,
    /// Number of events covered.
    pub size: u64,
    /// RFC 6962 root over the first `size` events.
    pub root: Hash,
}

impl Checkpoint {
    /// The note text (three lines, newline-terminated).
    pub fn to_text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parse a checkpoint note text (extension lines are accepted and ignored).
    pub fn parse_text(text: &str) -> Result<Self> {
        let bad = |why: &str| Error::Note(format!("malformed checkpoint: {why}"));
        let mut lines = text.split('\n');
        let origin = lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| bad("no origin line"))?;
        let size_line = lines.next().ok_or_else(|| bad("no tree size line"))?;
        if size_line.is_empty()
            || !size_line.bytes().all(|b| b.is_ascii_digit())
            || (size_line.len() > 1 && size_line.starts_with('0'))
        {
            return Err(bad("tree size is not a decimal number"));
        }
        let size = size_line
            .parse::<u64>()
            .map_err(|_| bad("tree size is too large"))?;
        let root_line = lines.next().ok_or_else(|| bad("no root hash line"))?;
        let root: Hash = B64
            .decode(root_line)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| bad("root hash is not 32 bytes of base64"))?;
        let rest: Vec<&str> = lines.collect();
        // `text` ends in a newline, so the last piece is empty; extension lines are non-empty.
        if rest.last() != Some(&"") || rest[..rest.len() - 1].iter().any(|l| l.is_empty()) {
            return Err(bad("unexpected empty line"));
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }

    /// Root as lowercase hex.
    pub fn root_hex(&self) -> String {
        hex::encode(&self.root)
    }
}

/// A checkpoint with its signed note, signature checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The tree head.
    pub checkpoint: Checkpoint,
    /// The full signed note text.
    pub note: String,
}

impl SignedCheckpoint {
    /// Sign `checkpoint` with `key`.
    pub fn sign(checkpoint: Checkpoint, key: &LedgerKey) -> Result<Self> {
        let note = sign_note(&checkpoint.to_text(), key)?;
        Ok(Self { checkpoint, note })
    }

    /// Check the signature of `key` on `note` and parse the checkpoint. The origin must be the
    /// key's name.
    pub fn open(note: &str, key: &PublicKey) -> Result<Self> {
        let text = open_note(note, key)?;
        let checkpoint = Checkpoint::parse_text(text)?;
        if checkpoint.origin != key.name() {
            return Err(Error::Note(format!(
                "checkpoint is for ledger `{}`, not `{}`",
                checkpoint.origin,
                key.name()
            )));
        }
        Ok(Self {
            checkpoint,
            note: note.to_owned(),
        })
    }
}
