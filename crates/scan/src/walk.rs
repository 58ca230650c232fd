//! Scanning files and directory trees: a parallel walk (ripgrep's `ignore` crate), binary,
//! size and file-type skips, and one reused read buffer per thread.
//!
//! Files are read in chunks into that buffer rather than memory-mapped: a mapping needs
//! `unsafe` (the file can change under it), this crate forbids `unsafe`, and from the page
//! cache a `read` into a warm 1 MiB buffer costs a few percent of the scan, while bounding
//! memory on any file size.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::engine::{BUFFER, StreamOutcome};
use crate::rules::Severity;
use crate::{Finding, ReachableSecret, ScanError, Scanner};

/// The default size above which a file is skipped with a note.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 256 * 1024 * 1024;

/// How to walk and read files.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Skip (with a note) files larger than this many bytes; `None` scans any size.
    /// Default: 256 MiB.
    pub max_file_size: Option<u64>,
    /// Worker threads; 0 uses the available parallelism. Default: 0.
    pub threads: usize,
    /// Honour `.gitignore`, `.ignore` and git's exclude files. Default: true. A workspace
    /// pre-scan must not (see [`ScanOptions::reachable`]): an ignored `.env` is still there
    /// for an agent to read.
    pub respect_ignore_files: bool,
    /// Follow symbolic links (loops are detected and noted). Default: false, and a link is
    /// noted instead.
    pub follow_symlinks: bool,
    /// Counters the caller can poll to show progress.
    pub progress: Option<Arc<Progress>>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            max_file_size: Some(DEFAULT_MAX_FILE_SIZE),
            threads: 0,
            respect_ignore_files: true,
            follow_symlinks: false,
            progress: None,
        }
    }
}

impl ScanOptions {
    /// Options for "which secrets can this task reach": every file, ignore files or not.
    pub fn reachable() -> Self {
        Self {
            respect_ignore_files: false,
            ..Self::default()
        }
    }
}

/// Live counters of a running scan.
#[derive(Debug, Default)]
pub struct Progress {
    files: AtomicU64,
    bytes: AtomicU64,
}

impl Progress {
    /// Files scanned so far.
    pub fn files(&self) -> u64 {
        self.files.load(Ordering::Relaxed)
    }
    /// Bytes scanned so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
    pub(crate) fn add(&self, files: u64, bytes: u64) {
        self.files.fetch_add(files, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// Something the scan could not (fully) look at.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Note {
    /// The file or directory.
    pub path: PathBuf,
    /// What happened.
    #[serde(flatten)]
    pub kind: NoteKind,
}

/// Why a path was skipped or handled specially.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "note", rename_all = "kebab-case")]
pub enum NoteKind {
    /// A NUL byte in the first 8 KiB: not text, not scanned.
    Binary,
    /// Larger than the size limit: not scanned.
    TooLarge {
        /// The file's size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Could not be opened or read.
    Unreadable {
        /// The error, one line.
        error: String,
    },
    /// A symbolic link, not followed.
    Symlink,
    /// A symbolic link loop, not followed.
    SymlinkLoop,
    /// Not a regular file (a FIFO, socket or device): never opened, so never waited on.
    NotRegular,
    /// A line longer than 512 KiB: scanned in windows around keywords.
    LongLine,
}

impl NoteKind {
    /// Whether this is an error (the path could not be read) rather than a deliberate skip.
    pub fn is_error(&self) -> bool {
        matches!(self, Self::Unreadable { .. } | Self::SymlinkLoop)
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.kind {
            NoteKind::Binary => write!(f, "`{path}`: skipped: binary file"),
            NoteKind::TooLarge { size, limit } => {
                write!(
                    f,
                    "`{path}`: skipped: {size} bytes is over the {limit}-byte limit"
                )
            }
            NoteKind::Unreadable { error } => write!(f, "`{path}`: cannot read: {error}"),
            NoteKind::Symlink => write!(f, "`{path}`: skipped: symbolic link not followed"),
            NoteKind::SymlinkLoop => write!(f, "`{path}`: skipped: symbolic link loop"),
            NoteKind::NotRegular => write!(f, "`{path}`: skipped: not a regular file"),
            NoteKind::LongLine => {
                write!(
                    f,
                    "`{path}`: very long line, scanned in windows around keywords"
                )
            }
        }
    }
}

/// The result of scanning paths or history.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Report {
    /// Findings, ordered by path and offset.
    pub findings: Vec<Finding>,
    /// Paths skipped or handled specially, ordered by path.
    pub notes: Vec<Note>,
    /// Files (or, in history scans, file changes) scanned.
    pub files: u64,
    /// Bytes scanned.
    pub bytes: u64,
}

impl Report {
    /// The ledger view: one entry per (rule, path, fingerprint), sorted.
    pub fn reachable(&self) -> Vec<ReachableSecret> {
        let mut out: Vec<ReachableSecret> = self.findings.iter().map(Finding::reachable).collect();
        out.sort();
        out.dedup();
        out
    }

    /// The highest severity found, if any.
    pub fn max_severity(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// How many findings are at `level` or above (for "refuse to start above a level").
    pub fn count_at_least(&self, level: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity >= level).count()
    }

    pub(crate) fn sort(&mut self) {
        self.findings
            .sort_by(|a, b| (&a.path, a.start, &a.rule).cmp(&(&b.path, b.start, &b.rule)));
        self.notes.sort_by(|a, b| a.path.cmp(&b.path));
    }
}

#[derive(Default)]
struct Shared {
    findings: Vec<Finding>,
    notes: Vec<Note>,
}

impl Scanner {
    /// Scan files and directory trees. A path that does not exist is an error; anything
    /// unreadable inside a tree is a [`Note`].
    pub fn scan_paths<P: AsRef<Path>>(
        &self,
        paths: &[P],
        options: &ScanOptions,
    ) -> Result<Report, ScanError> {
        let Some((first, rest)) = paths.split_first() else {
            return Ok(Report::default());
        };
        for path in paths {
            let path = path.as_ref();
            std::fs::symlink_metadata(path).map_err(|err| ScanError::Path(path.to_owned(), err))?;
        }
        let mut builder = ignore::WalkBuilder::new(first.as_ref());
        for path in rest {
            builder.add(path.as_ref());
        }
        let respect = options.respect_ignore_files;
        builder
            .hidden(false)
            .ignore(respect)
            .git_ignore(respect)
            .git_global(respect)
            .git_exclude(respect)
            .parents(respect)
            .require_git(true)
            .follow_links(options.follow_symlinks)
            .threads(options.threads)
            .filter_entry(|entry| entry.file_name() != ".git");
        let shared = Mutex::new(Shared::default());
        let files = AtomicU64::new(0);
        let bytes = AtomicU64::new(0);
        let walker = builder.build_parallel();
        walker.run(|| {
            let mut worker = Worker {
                scanner: self,
                options,
                buf: Vec::new(),
                state: self.new_state(),
                shared: &shared,
                files: &files,
                bytes: &bytes,
            };
            Box::new(move |result| {
                worker.visit(result);
                ignore::WalkState::Continue
            })
        });
        let shared = shared
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut report = Report {
            findings: shared.findings,
            notes: shared.notes,
            files: files.load(Ordering::Relaxed),
            bytes: bytes.load(Ordering::Relaxed),
        };
        report.sort();
        Ok(report)
    }
}

struct Worker<'a> {
    scanner: &'a Scanner,
    options: &'a ScanOptions,
    buf: Vec<u8>,
    state: crate::engine::State,
    shared: &'a Mutex<Shared>,
    files: &'a AtomicU64,
    bytes: &'a AtomicU64,
}

impl Worker<'_> {
    fn note(&self, path: &Path, kind: NoteKind) {
        let path = clean(path);
        if let Ok(mut shared) = self.shared.lock() {
            shared.notes.push(Note { path, kind });
        }
    }

    fn visit(&mut self, result: Result<ignore::DirEntry, ignore::Error>) {
        let entry = match result {
            Ok(entry) => entry,
            Err(err) => {
                let (path, kind) = describe_walk_error(&err);
                self.note(&path, kind);
                return;
            }
        };
        let Some(file_type) = entry.file_type() else {
            return; // stdin, never produced here
        };
        if file_type.is_dir() {
            return;
        }
        if file_type.is_symlink() {
            self.note(entry.path(), NoteKind::Symlink);
            return;
        }
        if !file_type.is_file() {
            self.note(entry.path(), NoteKind::NotRegular);
            return;
        }
        self.scan_file(entry.path());
    }

    fn scan_file(&mut self, path: &Path) {
        let file = match open(path, self.options.follow_symlinks) {
            Ok(file) => file,
            Err(err) => {
                self.note(
                    path,
                    NoteKind::Unreadable {
                        error: one_line(&err),
                    },
                );
                return;
            }
        };
        let metadata = match file.metadata() {
            Ok(m) => m,
            Err(err) => {
                self.note(
                    path,
                    NoteKind::Unreadable {
                        error: one_line(&err),
                    },
                );
                return;
            }
        };
        if !metadata.is_file() {
            self.note(path, NoteKind::NotRegular);
            return;
        }
        if let Some(limit) = self.options.max_file_size
            && metadata.len() > limit
        {
            self.note(
                path,
                NoteKind::TooLarge {
                    size: metadata.len(),
                    limit,
                },
            );
            return;
        }
        if self.buf.len() != BUFFER {
            self.buf = vec![0u8; BUFFER];
        }
        let scanner = self.scanner;
        let mut found: Vec<Finding> = Vec::new();
        let display = clean(path);
        let mut reader = file;
        let outcome = scanner.scan_stream(
            &mut reader,
            &mut self.buf,
            &mut self.state,
            true,
            &mut |located| found.push(scanner.finding(located, Some(&display), None)),
        );
        match outcome {
            Ok(StreamOutcome::Binary) => self.note(path, NoteKind::Binary),
            Ok(StreamOutcome::Scanned { bytes, long_line }) => {
                self.files.fetch_add(1, Ordering::Relaxed);
                self.bytes.fetch_add(bytes, Ordering::Relaxed);
                if let Some(progress) = &self.options.progress {
                    progress.add(1, bytes);
                }
                if long_line {
                    self.note(path, NoteKind::LongLine);
                }
                if !found.is_empty()
                    && let Ok(mut shared) = self.shared.lock()
                {
                    shared.findings.append(&mut found);
                }
            }
            Err(err) => self.note(
                path,
                NoteKind::Unreadable {
                    error: one_line(&err),
                },
            ),
        }
    }
}

/// Open without blocking on a FIFO swapped in after the walk looked, without a controlling
/// terminal, and without following a symbolic link swapped in when links are not followed.
#[cfg(unix)]
fn open(path: &Path, follow: bool) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY;
    if !follow {
        flags |= libc::O_NOFOLLOW;
    }
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
}

#[cfg(not(unix))]
fn open(path: &Path, _follow: bool) -> io::Result<File> {
    File::open(path)
}

/// `./a/b` → `a/b`, so that paths read the same whether or not the root was `.`.
fn clean(path: &Path) -> PathBuf {
    path.strip_prefix(".")
        .map_or_else(|_| path.to_owned(), Path::to_path_buf)
}

fn one_line(err: &dyn fmt::Display) -> String {
    let text = err.to_string();
    text.lines().next().unwrap_or_default().to_owned()
}

fn describe_walk_error(err: &ignore::Error) -> (PathBuf, NoteKind) {
    match err {
        ignore::Error::WithPath { path, err } => {
            let (_, kind) = describe_walk_error(err);
            (path.clone(), kind)
        }
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            describe_walk_error(err)
        }
        ignore::Error::Loop { child, .. } => (child.clone(), NoteKind::SymlinkLoop),
        ignore::Error::Partial(errs) => {
            errs.first().map(describe_walk_error).unwrap_or_else(|| {
                (
                    PathBuf::new(),
                    NoteKind::Unreadable {
                        error: one_line(err),
                    },
                )
            })
        }
        other => (
            PathBuf::new(),
            NoteKind::Unreadable {
                error: one_line(other),
            },
        ),
    }
}
