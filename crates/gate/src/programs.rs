//! Identities of the programs a remit's command rules name, so a rule holds however the
//! program is reached: under another name, through a symlink, or as a copy.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// One binary a rule's program name resolves to.
#[derive(Debug, Clone)]
struct Binary {
    name: String,
    path: PathBuf,
    dev: u64,
    ino: u64,
    size: u64,
    digest: Option<[u8; 32]>,
}

/// The binaries of every program a remit's rules name.
#[derive(Debug, Clone, Default)]
pub struct ProgramIndex {
    binaries: Vec<Binary>,
    files: HashMap<String, Vec<PathBuf>>,
}

impl ProgramIndex {
    /// Resolve each name in the search directories (every match, and the real file behind
    /// each symlink).
    pub fn build(names: &[&str], search: &[PathBuf]) -> ProgramIndex {
        let mut index = ProgramIndex::default();
        for name in names {
            let mut files: Vec<PathBuf> = Vec::new();
            for dir in search {
                let candidate = dir.join(name);
                let Ok(meta) = std::fs::metadata(&candidate) else {
                    continue;
                };
                if !meta.is_file() {
                    continue;
                }
                let real = std::fs::canonicalize(&candidate).unwrap_or_else(|_| candidate.clone());
                for path in [candidate, real.clone()] {
                    if !files.contains(&path) {
                        files.push(path);
                    }
                }
                if !index
                    .binaries
                    .iter()
                    .any(|b| b.dev == meta.dev() && b.ino == meta.ino() && b.name == *name)
                {
                    index.binaries.push(Binary {
                        name: (*name).to_owned(),
                        path: real,
                        dev: meta.dev(),
                        ino: meta.ino(),
                        size: meta.size(),
                        digest: None,
                    });
                }
            }
            index.files.insert((*name).to_owned(), files);
        }
        index
    }

    /// Index the system's dynamic loaders under the name `ld.so`, so a copy of one (or a
    /// link, or its contents in a memfd) is known as the loader whatever it is called.
    pub fn add_loaders(&mut self) {
        for dir in [
            "/lib64",
            "/lib",
            "/usr/lib64",
            "/usr/lib",
            "/lib/x86_64-linux-gnu",
            "/usr/lib/x86_64-linux-gnu",
            "/lib/aarch64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu",
        ] {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else {
                    continue;
                };
                if !remit_policy::commands::is_loader(name) {
                    continue;
                }
                let Ok(meta) = std::fs::metadata(entry.path()) else {
                    continue;
                };
                if !meta.is_file()
                    || self
                        .binaries
                        .iter()
                        .any(|b| b.dev == meta.dev() && b.ino == meta.ino() && b.name == "ld.so")
                {
                    continue;
                }
                let real = std::fs::canonicalize(entry.path()).unwrap_or_else(|_| entry.path());
                self.binaries.push(Binary {
                    name: "ld.so".to_owned(),
                    path: real,
                    dev: meta.dev(),
                    ino: meta.ino(),
                    size: meta.size(),
                    digest: None,
                });
            }
        }
    }

    /// The host files a name resolved to.
    pub fn files_of(&self, name: &str) -> &[PathBuf] {
        self.files.get(name).map(Vec::as_slice).unwrap_or_default()
    }

    /// Names whose binary is this file: same inode, or (for a file of the same size) the
    /// same contents. `open` is only called when a content comparison is needed; `None` when
    /// one was needed and the file could not be read: it may be a copy of any of them, and
    /// the caller refuses it.
    pub fn identify<R: Read>(
        &mut self,
        dev: u64,
        ino: u64,
        size: u64,
        open: impl FnOnce() -> Option<R>,
    ) -> Option<Vec<String>> {
        let mut names: Vec<String> = self
            .binaries
            .iter()
            .filter(|b| b.dev == dev && b.ino == ino)
            .map(|b| b.name.clone())
            .collect();
        if !names.is_empty() || !self.binaries.iter().any(|b| b.size == size) {
            return Some(names);
        }
        let digest = hash(open()?)?;
        for binary in self.binaries.iter_mut().filter(|b| b.size == size) {
            if binary.digest.is_none() {
                binary.digest = std::fs::File::open(&binary.path).ok().and_then(hash);
            }
            if binary.digest == Some(digest) && !names.contains(&binary.name) {
                names.push(binary.name.clone());
            }
        }
        Some(names)
    }
}

fn hash<R: Read>(mut reader: R) -> Option<[u8; 32]> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(_) => return None,
        }
    }
    Some(hasher.finalize().into())
}

/// Whether a path lies under any of `roots`.
pub fn under_any(path: &Path, roots: &[PathBuf]) -> bool {
    roots.iter().any(|r| path.starts_with(r))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A file as large as a program a rule names is compared by contents; one that cannot be
    /// read for it is not taken for "no such program" (it may be a copy): `None`, refused.
    #[test]
    fn a_file_that_cannot_be_compared_is_not_passed() {
        let mut index = ProgramIndex::build(&["true"], &[PathBuf::from("/usr/bin")]);
        let meta = std::fs::metadata("/usr/bin/true").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("innocent");
        std::fs::copy("/usr/bin/true", &copy).unwrap();
        let copied = std::fs::metadata(&copy).unwrap();
        let (dev, ino, size) = (copied.dev(), copied.ino(), copied.size());
        assert_eq!(
            index.identify(dev, ino, size, || std::fs::File::open(&copy).ok()),
            Some(vec!["true".to_owned()])
        );
        assert_eq!(
            index.identify(dev, ino, size, || None::<std::fs::File>),
            None,
            "an unreadable file of the same size"
        );
        // The twins: the program itself by inode, another size without reading.
        assert_eq!(
            index.identify(
                meta.dev(),
                meta.ino(),
                meta.size(),
                || None::<std::fs::File>
            ),
            Some(vec!["true".to_owned()])
        );
        assert_eq!(
            index.identify(dev, ino, size + 1, || None::<std::fs::File>),
            Some(vec![])
        );
    }
}
