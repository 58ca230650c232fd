//! Secrets around a task: which it can reach when it starts (a cached pre-scan of the
//! workspace and the granted paths), and keeping them out of what it emits (a scanner
//! built in the background for redaction).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use remit_scan::{KnownSecrets, Scanner, Severity};
use serde::{Deserialize, Serialize};

/// Largest file the pre-scan reads (bigger files are noted and skipped).
const MAX_FILE: u64 = 8 << 20;
/// Most entries the pre-scan visits.
const MAX_ENTRIES: usize = 200_000;

/// A secret the task can reach.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Reachable {
    /// The rule that found it.
    pub rule: String,
    /// Its severity (`low`, `medium`, `high`, `critical`).
    pub severity: String,
    /// `path:line`.
    pub location: String,
    /// Fingerprint of rule and value.
    pub fingerprint: String,
}

/// What the pre-scan found.
#[derive(Debug, Clone, Default)]
pub struct Prescan {
    /// Every reachable secret.
    pub reachable: Vec<Reachable>,
    /// Files skipped (too large, unreadable) and other notes.
    pub notes: Vec<String>,
    /// Files read this time (the rest came from the cache).
    pub scanned: usize,
    /// Every regular file of the first root (the workspace) as the walk saw it: path relative
    /// to it → (inode, size, mtime in ns). See [`crate::changes::Baseline::from_listing`].
    pub listing: BTreeMap<String, (u64, u64, i128)>,
    /// Whether the walk stopped before the end.
    pub truncated: bool,
}

impl Prescan {
    /// The most severe level found.
    pub fn max_level(&self) -> Option<remit_types::remit::SecretLevel> {
        use remit_types::remit::SecretLevel;
        self.reachable
            .iter()
            .map(|r| match r.severity.as_str() {
                "critical" => SecretLevel::Critical,
                "high" => SecretLevel::High,
                "medium" => SecretLevel::Medium,
                _ => SecretLevel::Low,
            })
            .max()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Cache {
    files: BTreeMap<String, CachedFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedFile {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    found: Vec<Reachable>,
}

fn severity_name(s: Severity) -> String {
    s.to_string().to_lowercase()
}

/// Scan `roots` for secrets, reading only files that changed since the cache at `cache`
/// was written (by path, device, inode, size and modification time). Paths in `hidden` are
/// masked in the task, so nothing under them is scanned or reported (inside the workspace
/// they are still listed, for the file-changes baseline). Single-threaded: it may run before
/// the sandbox is created. The scanner is built only if a file must be read.
pub fn prescan(roots: &[PathBuf], hidden: &[PathBuf], cache: &Path) -> Prescan {
    let hidden: std::collections::HashSet<&Path> = hidden.iter().map(PathBuf::as_path).collect();
    let mut old: Cache = std::fs::read(cache)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut new = Cache::default();
    let mut out = Prescan::default();
    let mut scanner: Option<Scanner> = None;
    let mut seen = 0usize;
    // Hidden paths are masked in the task: nothing under them is scanned or reported. Inside
    // the workspace they are still listed, since the listing is the baseline the task's
    // file changes are measured against, and that comparison sees the host's files.
    let in_workspace = |p: &Path| roots.first().is_some_and(|w| p.starts_with(w));
    let mut stack: Vec<(PathBuf, bool)> = roots
        .iter()
        .map(|r| (r.clone(), hidden.iter().any(|h| r.starts_with(h))))
        .filter(|(r, masked)| !masked || in_workspace(r))
        .collect();
    while let Some((dir, dir_masked)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            out.notes.push(format!("cannot read `{}`", dir.display()));
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_ENTRIES {
                out.notes
                    .push(format!("stopped after {MAX_ENTRIES} entries"));
                out.truncated = true;
                stack.clear();
                break;
            }
            let path = entry.path();
            let masked = dir_masked || hidden.contains(path.as_path());
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                // A git directory holds history (compressed, scanned by `remit scan --git`),
                // not files the task reads as text.
                if entry.file_name() != ".git" && (!masked || in_workspace(&path)) {
                    stack.push((path, masked));
                }
                continue;
            }
            let mtime_ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
            if let Some(workspace) = roots.first()
                && let Ok(rel) = path.strip_prefix(workspace)
            {
                out.listing.insert(
                    rel.to_string_lossy().into_owned(),
                    (meta.ino(), meta.size(), mtime_ns),
                );
            }
            if !meta.is_file() || masked {
                continue;
            }
            let key = path.to_string_lossy().into_owned();
            if let Some(hit) = old.files.remove(&key)
                && hit.dev == meta.dev()
                && hit.ino == meta.ino()
                && hit.size == meta.size()
                && hit.mtime_ns == mtime_ns
            {
                out.reachable.extend(hit.found.iter().cloned());
                new.files.insert(key, hit);
                continue;
            }
            if meta.size() > MAX_FILE {
                out.notes.push(format!(
                    "`{}` is larger than {} MiB; not scanned",
                    path.display(),
                    MAX_FILE >> 20
                ));
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                out.notes.push(format!("cannot read `{}`", path.display()));
                continue;
            };
            out.scanned += 1;
            if scanner.is_none() {
                match Scanner::builtin() {
                    Ok(s) => scanner = Some(s),
                    Err(e) => {
                        out.notes.push(format!("the scanner could not start: {e}"));
                        return out;
                    }
                }
            }
            let found: Vec<Reachable> = scanner
                .as_ref()
                .map(|s| s.scan_bytes(&bytes))
                .unwrap_or_default()
                .into_iter()
                .map(|f| Reachable {
                    rule: f.rule.to_string(),
                    severity: severity_name(f.severity),
                    location: format!("{}:{}", path.display(), f.line),
                    fingerprint: f.fingerprint.to_string(),
                })
                .collect();
            out.reachable.extend(found.iter().cloned());
            new.files.insert(
                key,
                CachedFile {
                    dev: meta.dev(),
                    ino: meta.ino(),
                    size: meta.size(),
                    mtime_ns,
                    found,
                },
            );
        }
    }
    out.reachable.sort();
    out.reachable.dedup();
    if out.scanned > 0 || !old.files.is_empty() {
        if let Some(parent) = cache.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        if let Ok(bytes) = serde_json::to_vec(&new) {
            let tmp = cache.with_extension("tmp");
            if std::fs::write(&tmp, bytes).is_ok() {
                let _ = std::fs::rename(tmp, cache);
            }
        }
    }
    out
}

/// A scanner built on another thread, ready later; redaction waits for it. The task's known
/// secrets, set once they exist, are matched alongside.
#[derive(Clone, Default)]
pub struct LazyScanner {
    inner: Arc<(Mutex<Option<Option<Scanner>>>, Condvar)>,
    /// `None` until values are set; then the matcher, or why it could not be built.
    known: Arc<Mutex<Option<Result<KnownSecrets, String>>>>,
}

impl std::fmt::Debug for LazyScanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyScanner").finish_non_exhaustive()
    }
}

impl LazyScanner {
    /// Start building the scanner on a new thread.
    pub fn start() -> LazyScanner {
        let lazy = LazyScanner::default();
        let inner = Arc::clone(&lazy.inner);
        let spawned = std::thread::Builder::new()
            .name("remit-scanner".into())
            .spawn(move || {
                let scanner = Scanner::builtin().ok();
                crate::timing::mark("redaction scanner built");
                let (lock, ready) = &*inner;
                if let Ok(mut slot) = lock.lock() {
                    *slot = Some(scanner);
                }
                ready.notify_all();
            });
        if spawned.is_err()
            && let Ok(mut slot) = lazy.inner.0.lock()
        {
            *slot = Some(Scanner::builtin().ok());
        }
        lazy
    }

    /// Values that must never appear in output (the task's real credentials). Called once;
    /// the matcher is built here (about 0.1 ms for a task's identity token).
    pub fn set_known(&self, values: &[Vec<u8>]) {
        let values: Vec<&[u8]> = values
            .iter()
            .map(Vec::as_slice)
            .filter(|v| v.len() >= KnownSecrets::MIN_LEN)
            .collect();
        if values.is_empty() {
            return;
        }
        let built = KnownSecrets::new(values).map_err(|e| e.to_string());
        *self.known.lock().unwrap_or_else(|p| p.into_inner()) = Some(built);
    }

    /// The scanner, waiting for it if it is not built yet (`None` if it failed to build).
    pub fn get(&self) -> Option<Scanner> {
        let (lock, ready) = &*self.inner;
        let mut slot = lock.lock().ok()?;
        while slot.is_none() {
            slot = ready.wait(slot).ok()?;
        }
        slot.as_ref().and_then(Clone::clone)
    }

    /// The scanner if it is built (`Some(None)` if it failed to build), without waiting.
    pub fn try_get(&self) -> Option<Option<Scanner>> {
        let (lock, _) = &*self.inner;
        lock.lock().ok().and_then(|slot| slot.clone())
    }

    /// The known secrets: `Ok(None)` if none were set, an error if values were set but
    /// cannot be matched (then nothing may pass unchecked: output is withheld rather than
    /// let through).
    pub fn known(&self) -> Result<Option<KnownSecrets>, String> {
        match &*self.known.lock().unwrap_or_else(|p| p.into_inner()) {
            None => Ok(None),
            Some(known) => known.clone().map(Some),
        }
    }

    /// `text` with every detected and known secret replaced.
    pub fn redact(&self, text: &str) -> String {
        use std::io::Write as _;
        let Ok(known) = self.known() else {
            return "[REDACTED: output could not be checked]".into();
        };
        let mut writer = remit_scan::RedactingWriter::new(Vec::new(), self.get(), known);
        if writer.write_all(text.as_bytes()).is_err() {
            return "[REDACTED: output could not be checked]".into();
        }
        match writer.finish() {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(_) => "[REDACTED: output could not be checked]".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn known_secrets_set_are_redacted() {
        let token = b"eyJhbGciOiJFUzI1NiJ9.a-task-identity-token-0123456789".to_vec();
        let lazy = LazyScanner::start();
        // Twin: nothing set, nothing known (and no waiting).
        assert!(lazy.known().unwrap().is_none());
        // Too short to match safely: ignored, as before.
        lazy.set_known(&[b"short".to_vec()]);
        assert!(lazy.known().unwrap().is_none());
        lazy.set_known(std::slice::from_ref(&token));
        let known = lazy.known().unwrap().expect("the known secrets are built");
        let text = format!("leak: {} end", String::from_utf8_lossy(&token));
        assert!(known.find(text.as_bytes()).is_some());
        let redacted = lazy.redact(&text);
        assert!(
            !redacted.contains("a-task-identity-token"),
            "not redacted: {redacted}"
        );
        assert!(redacted.starts_with("leak: ") && redacted.ends_with(" end"));
        // Clones share the matcher.
        assert!(lazy.clone().known().unwrap().is_some());
    }

    #[test]
    fn known_secrets_that_cannot_be_matched_withhold_output() {
        let lazy = LazyScanner::start();
        // A matcher that could not be built: what it should have caught is withheld, never
        // let through unchecked.
        *lazy.known.lock().unwrap() = Some(Err("too large".into()));
        assert!(lazy.known().is_err());
        assert_eq!(
            lazy.redact("the secret itself"),
            "[REDACTED: output could not be checked]"
        );
    }
}
