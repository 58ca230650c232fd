//! The ledger's Ed25519 key: generation, the key file, and the public `vkey`.
//!
//! Formats follow the signed-note ecosystem (C2SP signed-note, Go's `sumdb/note`):
//!
//! - key id: the first four bytes of `SHA-256(name || 0x0A || 0x01 || public key)`;
//! - public key (`vkey`): `<name>+<key id, 8 hex digits>+<base64(0x01 || public key)>`;
//! - key file: `PRIVATE+KEY+<name>+<key id>+<base64(0x01 || 32-byte seed)>` and a newline,
//!   mode 0600, refused if group or others can read it.

use std::fmt;
use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Signature type byte of plain Ed25519 in signed notes.
const ED25519: u8 = 0x01;
const PRIVATE_PREFIX: &str = "PRIVATE+KEY+";

/// A source of random bytes (passed in, so key generation is testable).
pub trait Randomness {
    /// Fill `buf` with cryptographically secure random bytes.
    fn fill(&mut self, buf: &mut [u8]) -> Result<()>;
}

/// The operating system's CSPRNG (`getrandom`).
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRandomness;

impl Randomness for OsRandomness {
    fn fill(&mut self, buf: &mut [u8]) -> Result<()> {
        getrandom::fill(buf).map_err(|e| Error::Key(format!("cannot read system randomness: {e}")))
    }
}

/// Check a signed-note key name: non-empty, no whitespace, no `+`.
pub fn check_key_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
    {
        return Err(Error::Key(format!(
            "invalid key name `{name}`: it must be non-empty, without spaces or `+`"
        )));
    }
    Ok(())
}

/// `SHA-256(name || 0x0A || 0x01 || public key)[:4]`, big-endian.
pub fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ED25519]);
    h.update(public);
    let digest = h.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// A ledger's public key: what an auditor pins to verify checkpoints and receipts.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_vkey())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_vkey())
    }
}

impl PublicKey {
    /// Parse a `vkey` (`name+hex-id+base64`).
    pub fn parse_vkey(text: &str) -> Result<Self> {
        let text = text.trim();
        let bad = |why: &str| Error::Key(format!("invalid public key `{text}`: {why}"));
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected `name+keyid+base64`"));
        };
        check_key_name(name)?;
        let id = parse_key_id(id_hex).ok_or_else(|| bad("key id is not 8 hex digits"))?;
        let raw = B64.decode(b64).map_err(|_| bad("key is not base64"))?;
        let Some((&alg, key)) = raw.split_first() else {
            return Err(bad("key is empty"));
        };
        if alg != ED25519 {
            return Err(bad("not an ed25519 key"));
        }
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| bad("ed25519 key is not 32 bytes"))?;
        let verifying =
            VerifyingKey::from_bytes(&key).map_err(|_| bad("not a valid ed25519 point"))?;
        if verifying.is_weak() {
            return Err(bad("weak ed25519 key"));
        }
        if key_id(name, &key) != id {
            return Err(bad("key id does not match the key"));
        }
        Ok(Self {
            name: name.to_owned(),
            id,
            key: verifying,
        })
    }

    /// Read a `vkey` from a file (the first non-empty line), or parse `text` itself when it
    /// looks like a key rather than a path.
    pub fn from_arg(arg: &str) -> Result<Self> {
        if arg.contains('+') && !Path::new(arg).exists() {
            return Self::parse_vkey(arg);
        }
        let text = crate::read_input(Path::new(arg), 64 << 10)
            .map_err(|e| Error::io("cannot read public key", arg, e))?;
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("");
        if line.starts_with(PRIVATE_PREFIX) {
            return Ok(LedgerKey::parse_private(line)?.public());
        }
        Self::parse_vkey(line)
    }

    /// The `vkey` text.
    pub fn to_vkey(&self) -> String {
        let mut raw = Vec::with_capacity(33);
        raw.push(ED25519);
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.id, B64.encode(raw))
    }

    /// Key name (the ledger's origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Key id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Key id as 8 hex digits.
    pub fn id_hex(&self) -> String {
        format!("{:08x}", self.id)
    }

    /// The raw 32-byte Ed25519 public key.
    pub fn bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Verify an Ed25519 signature over `message` (strict RFC 8032 verification).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(sig) = <[u8; 64]>::try_from(signature) else {
            return false;
        };
        self.key
            .verify_strict(message, &Signature::from_bytes(&sig))
            .is_ok()
    }
}

fn parse_key_id(hex: &str) -> Option<u32> {
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

/// The ledger's signing key (held by the supervisor only).
#[derive(Clone)]
pub struct LedgerKey {
    name: String,
    id: u32,
    signing: SigningKey,
}

impl fmt::Debug for LedgerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the private half.
        write!(f, "LedgerKey({})", self.public().to_vkey())
    }
}

impl LedgerKey {
    /// A key named `name` from a 32-byte seed.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self> {
        check_key_name(name)?;
        let signing = SigningKey::from_bytes(&seed);
        let id = key_id(name, signing.verifying_key().as_bytes());
        Ok(Self {
            name: name.to_owned(),
            id,
            signing,
        })
    }

    /// A new random key named `name`.
    pub fn generate(name: &str, rng: &mut dyn Randomness) -> Result<Self> {
        let mut seed = [0u8; 32];
        rng.fill(&mut seed)?;
        Self::from_seed(name, seed)
    }

    /// Parse the key file text `PRIVATE+KEY+name+id+base64(0x01 || seed)`.
    pub fn parse_private(text: &str) -> Result<Self> {
        // Never echo the private text in an error.
        let bad = |why: &str| Error::Key(format!("invalid private key: {why}"));
        let rest = text
            .trim()
            .strip_prefix(PRIVATE_PREFIX)
            .ok_or_else(|| bad("expected `PRIVATE+KEY+name+keyid+base64`"))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected `PRIVATE+KEY+name+keyid+base64`"));
        };
        let id = parse_key_id(id_hex).ok_or_else(|| bad("key id is not 8 hex digits"))?;
        let raw = B64.decode(b64).map_err(|_| bad("key is not base64"))?;
        let Some((&alg, seed)) = raw.split_first() else {
            return Err(bad("key is empty"));
        };
        if alg != ED25519 {
            return Err(bad("not an ed25519 key"));
        }
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| bad("ed25519 seed is not 32 bytes"))?;
        let key = Self::from_seed(name, seed)?;
        if key.id != id {
            return Err(bad("key id does not match the key"));
        }
        Ok(key)
    }

    /// The key file text (secret!).
    pub fn to_private(&self) -> String {
        let mut raw = Vec::with_capacity(33);
        raw.push(ED25519);
        raw.extend_from_slice(self.signing.as_bytes());
        format!(
            "{PRIVATE_PREFIX}{}+{:08x}+{}",
            self.name,
            self.id,
            B64.encode(raw)
        )
    }

    /// Load a key file, refusing one that group or others can read.
    pub fn load(path: &Path) -> Result<Self> {
        check_private_mode(path)?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io("cannot read key file", path, e))?;
        Self::parse_private(&text)
            .map_err(|e| Error::Key(format!("key file `{}`: {e}", path.display())))
    }

    /// Write the key to a new file with mode 0600 (never overwrites).
    pub fn save_new(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io("cannot create directory", dir, e))?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options
            .open(path)
            .map_err(|e| Error::io("cannot create key file", path, e))?;
        let mut text = self.to_private();
        text.push('\n');
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io("cannot write key file", path, e))?;
        Ok(())
    }

    /// Load the key at `path`, or create one named `name` there if there is no file.
    pub fn load_or_create(path: &Path, name: &str, rng: &mut dyn Randomness) -> Result<Self> {
        match std::fs::symlink_metadata(path) {
            Ok(_) => Self::load(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate(name, rng)?;
                key.save_new(path)?;
                Ok(key)
            }
            Err(e) => Err(Error::io("cannot read key file", path, e)),
        }
    }

    /// Key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            name: self.name.clone(),
            id: self.id,
            key: self.signing.verifying_key(),
        }
    }

    /// Ed25519 signature over `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }
}

#[cfg(unix)]
fn check_private_mode(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| Error::io("cannot read key file", path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::Key(format!(
            "key file `{}` is readable by others (mode {mode:04o}); run `chmod 600` on it",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private_mode(_path: &Path) -> Result<()> {
    Ok(())
}
