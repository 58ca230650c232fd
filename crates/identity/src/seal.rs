//! The master key and sealing at rest.
//!
//! remit keeps one 256-bit master key per home (`$REMIT_HOME/master.key`, mode 0600, refused
//! when group or others can read it). Everything secret that remit stores — task signing
//! keys, vault secrets, revocation handles of leases — is sealed with it: AES-256-GCM with a
//! fresh 96-bit random nonce, and the record's context (`identity key <kid>`, `secret <name>
//! v3`) as associated data, so a sealed value moved to another row does not open.
//!
//! Sealed bytes: `0x01 || key id (4 bytes) || nonce (12) || ciphertext || tag (16)`. The key
//! id (the first 4 bytes of `SHA-256("remit master key" || key)`) lets a wrong key file be
//! named as such instead of failing as "tampered".
//!
//! Key file: one line, `remit-master-key-v1 <base64 of the 32 bytes>`.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{IdentityError, Result};

const VERSION: u8 = 1;
const HEADER: &str = "remit-master-key-v1";
const TAG_LEN: usize = 16;

/// Where a home keeps its master key.
pub fn master_key_path(home: &Path) -> PathBuf {
    home.join("master.key")
}

/// Fill `buf` from the operating system's CSPRNG.
pub fn random_bytes(buf: &mut [u8]) -> Result<()> {
    SystemRandom::new()
        .fill(buf)
        .map_err(|_| IdentityError::Random)
}

/// The master key. Zeroed in memory when dropped; its `Debug` shows only its id.
pub struct MasterKey {
    key: Zeroizing<[u8; 32]>,
    id: [u8; 4],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.id())
    }
}

fn key_id(key: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(b"remit master key");
    h.update(key);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl MasterKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        let key = Zeroizing::new(bytes);
        let id = key_id(&key);
        MasterKey { key, id }
    }

    /// A fresh random key.
    pub fn generate() -> Result<MasterKey> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        random_bytes(bytes.as_mut())?;
        Ok(MasterKey::from_bytes(*bytes))
    }

    /// The key's id: 8 hex digits, safe to print.
    pub fn id(&self) -> String {
        hex(&self.id)
    }

    /// Read a key file (refused when group or others may read it).
    pub fn load(path: &Path) -> Result<MasterKey> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| IdentityError::ReadKey(path.into(), e))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(IdentityError::KeyFileMode(path.into(), mode));
        }
        let text = Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| IdentityError::ReadKey(path.into(), e))?,
        );
        let bad = |why: &str| IdentityError::BadKeyFile(path.into(), why.to_owned());
        let encoded = text
            .trim()
            .strip_prefix(HEADER)
            .ok_or_else(|| bad("it does not start with `remit-master-key-v1`"))?
            .trim();
        let raw = Zeroizing::new(
            B64.decode(encoded)
                .map_err(|_| bad("the key is not base64"))?,
        );
        let bytes: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| bad("the key is not 32 bytes"))?;
        Ok(MasterKey::from_bytes(bytes))
    }

    /// Read the key file, creating it (mode 0600, its directory 0700) when there is none.
    /// Two processes creating it at once end up with the same key: the file appears
    /// complete or not at all.
    pub fn load_or_create(path: &Path) -> Result<MasterKey> {
        match MasterKey::load(path) {
            Ok(key) => return Ok(key),
            Err(IdentityError::ReadKey(_, e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let key = MasterKey::generate()?;
        match key.save_new(path) {
            Ok(()) => Ok(key),
            Err(IdentityError::WriteKey(_, e)) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                MasterKey::load(path)
            }
            Err(e) => Err(e),
        }
    }

    /// Write the key to a new file (never replacing one): mode 0600, written whole, then
    /// linked into place.
    pub fn save_new(&self, path: &Path) -> Result<()> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| IdentityError::CreateDir(dir.into(), e))?;
        let mut nonce = [0u8; 8];
        random_bytes(&mut nonce)?;
        let tmp = dir.join(format!(".master.key.{}", hex(&nonce)));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            let line = Zeroizing::new(format!("{HEADER} {}\n", B64.encode(self.key.as_ref())));
            file.write_all(line.as_bytes())?;
            file.sync_all()?;
            std::fs::hard_link(&tmp, path)
        };
        let result = write();
        let _ = std::fs::remove_file(&tmp);
        result.map_err(|e| IdentityError::WriteKey(path.into(), e))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn aead(&self) -> Result<LessSafeKey> {
        let unbound = UnboundKey::new(&AES_256_GCM, self.key.as_ref())
            .map_err(|_| IdentityError::Crypto("cannot load the master key".into()))?;
        Ok(LessSafeKey::new(unbound))
    }

    /// Seal `plaintext`, bound to `context`.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce)?;
        let mut buf = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_LEN));
        buf.extend_from_slice(plaintext);
        let aad = aad(context);
        self.aead()?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_slice()),
                &mut *buf,
            )
            .map_err(|_| IdentityError::Crypto("cannot seal".into()))?;
        let mut out = Vec::with_capacity(1 + 4 + NONCE_LEN + buf.len());
        out.push(VERSION);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Open what [`MasterKey::seal`] sealed with the same `context`.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let header = 1 + 4 + NONCE_LEN;
        if sealed.len() < header + TAG_LEN || sealed[0] != VERSION {
            return Err(IdentityError::Unseal(context.to_owned()));
        }
        if sealed[1..5] != self.id {
            return Err(IdentityError::WrongMasterKey {
                sealed_with: hex(&sealed[1..5]),
                in_use: self.id(),
            });
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[5..header]);
        let mut buf = Zeroizing::new(sealed[header..].to_vec());
        let aad = aad(context);
        let len = self
            .aead()?
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_slice()),
                &mut buf,
            )
            .map_err(|_| IdentityError::Unseal(context.to_owned()))?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

fn aad(context: &str) -> Vec<u8> {
    let mut out = b"remit-seal-v1\0".to_vec();
    out.extend_from_slice(context.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_refusals() {
        let key = MasterKey::from_bytes([7; 32]);
        let sealed = key.seal("secret a v1", b"hunter2hunter2").unwrap();
        assert_eq!(
            &*key.open("secret a v1", &sealed).unwrap(),
            b"hunter2hunter2"
        );
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert!(matches!(
            key.open("secret b v1", &sealed),
            Err(IdentityError::Unseal(_))
        ));
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(key.open("secret a v1", &tampered).is_err());
        let other = MasterKey::from_bytes([8; 32]);
        let err = other.open("secret a v1", &sealed).unwrap_err().to_string();
        assert!(err.contains("wrong key file"), "{err}");
        assert!(!format!("{key:?}").contains("0707"));
    }

    #[test]
    fn key_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("home/master.key");
        let a = MasterKey::load_or_create(&path).unwrap();
        let b = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(a.id(), b.id());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            MasterKey::load(&path),
            Err(IdentityError::KeyFileMode(..))
        ));
    }
}
