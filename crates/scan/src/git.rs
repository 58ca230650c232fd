//! Scanning git history: the lines each commit added.
//!
//! History is read by streaming `git log -p -U0` from the git binary rather than through
//! gitoxide or libgit2. Both libraries would have to reproduce git's rename detection and
//! diff machinery to answer "which lines did this commit add", and both are large builds
//! (gitoxide with blob diffing is hundreds of crates; libgit2 is a C build) for a feature
//! that needs git to be installed anyway, since it scans a git repository. The git binary is
//! git's reference diff, streams with constant memory, and is fast. The repository is
//! untrusted, so everything in it that could run a program or reshape the output is
//! switched off: external diff drivers, textconv filters, pagers, colour, and signature
//! checks.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use crate::walk::Progress;
use crate::{Report, ScanError, Scanner};

/// What history to scan.
#[derive(Debug, Clone, Default)]
pub struct GitOptions {
    /// Commits to scan, as `git log` revision arguments (`main`, `v1.0..HEAD`). Empty means
    /// every commit reachable from any ref (`--all`). Default: empty.
    pub revisions: Vec<String>,
    /// Counters the caller can poll to show progress.
    pub progress: Option<Arc<Progress>>,
}

/// Added lines of one file in one hunk, concatenated, with each line's number.
#[derive(Default)]
struct Block {
    text: Vec<u8>,
    lines: Vec<u64>,
}

impl Scanner {
    /// Scan every line added by the commits of `repo` (see [`GitOptions`]). A finding's
    /// `path` is the file, `commit` the commit, `line` the line in that commit's version of
    /// the file; `start` and `end` are offsets within the hunk's added lines.
    pub fn scan_git(&self, repo: &Path, options: &GitOptions) -> Result<Report, ScanError> {
        let fail = |message: String| ScanError::Git(repo.to_owned(), message);
        if !repo.exists() {
            return Err(ScanError::Path(
                repo.to_owned(),
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        let mut command = Command::new("git");
        command
            .arg("-C")
            .arg(repo)
            .args([
                "--no-pager",
                "-c",
                "core.quotepath=off",
                "-c",
                "log.showSignature=false",
                "-c",
                "diff.noprefix=false",
                "-c",
                "diff.mnemonicPrefix=false",
                "log",
                "-p",
                "-U0",
                "--no-color",
                "--no-ext-diff",
                "--no-textconv",
                "--full-history",
                "--format=format:%x01%H",
            ])
            .env("GIT_PAGER", "cat")
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if options.revisions.is_empty() {
            command.arg("--all");
        } else {
            command.args(&options.revisions);
        }
        command.arg("--");
        let mut child = command
            .spawn()
            .map_err(|err| fail(format!("cannot run `git`: {err}")))?;
        let stderr = child.stderr.take();
        let errors = std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut stderr) = stderr {
                let _ = stderr.by_ref().take(64 * 1024).read_to_string(&mut text);
            }
            text
        });
        let Some(stdout) = child.stdout.take() else {
            return Err(fail("no output from `git log`".to_owned()));
        };
        let mut parser = Parser::new(self, options.progress.clone());
        let read = parser.run(BufReader::with_capacity(256 * 1024, stdout));
        let status = child
            .wait()
            .map_err(|err| fail(format!("`git log`: {err}")))?;
        let stderr = errors.join().unwrap_or_default();
        read.map_err(|err| fail(format!("reading `git log`: {err}")))?;
        if !status.success() {
            let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            return Err(fail(format!("`git log` failed: {}", first.trim())));
        }
        let mut report = parser.report;
        report.sort();
        Ok(report)
    }
}

struct Parser<'a> {
    scanner: &'a Scanner,
    state: crate::engine::State,
    progress: Option<Arc<Progress>>,
    report: Report,
    commit: String,
    path: Option<PathBuf>,
    /// Lines of the current hunk still to come: (removed, added).
    remaining: (u64, u64),
    next_line: u64,
    block: Block,
}

impl<'a> Parser<'a> {
    fn new(scanner: &'a Scanner, progress: Option<Arc<Progress>>) -> Self {
        Self {
            scanner,
            state: scanner.new_state(),
            progress,
            report: Report::default(),
            commit: String::new(),
            path: None,
            remaining: (0, 0),
            next_line: 0,
            block: Block::default(),
        }
    }

    fn run(&mut self, mut reader: impl BufRead) -> std::io::Result<()> {
        let mut line = Vec::with_capacity(4096);
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            self.line(&line);
        }
        self.flush();
        Ok(())
    }

    fn line(&mut self, line: &[u8]) {
        if self.remaining != (0, 0) {
            match line.first() {
                Some(b'+') => {
                    self.remaining.1 = self.remaining.1.saturating_sub(1);
                    self.block.text.extend_from_slice(&line[1..]);
                    self.block.text.push(b'\n');
                    self.block.lines.push(self.next_line);
                    self.next_line += 1;
                    return;
                }
                Some(b'-') => {
                    self.remaining.0 = self.remaining.0.saturating_sub(1);
                    return;
                }
                Some(b'\\') => return, // "\ No newline at end of file"
                _ => {
                    // Malformed counts: fall through to header parsing.
                    self.remaining = (0, 0);
                }
            }
        }
        if line.first() == Some(&b'\\') {
            return;
        }
        self.flush();
        if let Some(commit) = line.strip_prefix(b"\x01") {
            self.commit = String::from_utf8_lossy(commit).into_owned();
            self.path = None;
        } else if line.starts_with(b"diff --git ") {
            self.path = None;
        } else if let Some(path) = line.strip_prefix(b"+++ ") {
            self.path = parse_path(path);
            if self.path.is_some() {
                self.report.files += 1;
                if let Some(progress) = &self.progress {
                    progress.add(1, 0);
                }
            }
        } else if line.starts_with(b"@@ ")
            && let Some((removed, added, start)) = parse_hunk(line)
        {
            self.remaining = (removed, added);
            self.next_line = start;
        }
    }

    fn flush(&mut self) {
        if self.block.text.is_empty() {
            return;
        }
        let block = std::mem::take(&mut self.block);
        self.report.bytes += block.text.len() as u64;
        if let Some(progress) = &self.progress {
            progress.add(0, block.text.len() as u64);
        }
        if let Some(path) = &self.path {
            let scanner = self.scanner;
            let mut found = Vec::new();
            scanner.scan_buffer(&block.text, &mut self.state, &mut |located| {
                found.push(located);
            });
            for located in found {
                let index = usize::try_from(located.line.saturating_sub(1)).unwrap_or(usize::MAX);
                let line = block.lines.get(index).copied().unwrap_or(located.line);
                let mut finding = scanner.finding(located, Some(path), Some(&self.commit));
                finding.line = line;
                self.report.findings.push(finding);
            }
        }
        self.block = Block {
            text: Vec::new(),
            lines: Vec::new(),
        };
    }
}

/// `@@ -a[,b] +c[,d] @@` → (b, d, c).
fn parse_hunk(line: &[u8]) -> Option<(u64, u64, u64)> {
    let text = std::str::from_utf8(line).ok()?;
    let mut parts = text.split(' ');
    parts.next()?; // @@
    let old = parts.next()?.strip_prefix('-')?;
    let new = parts.next()?.strip_prefix('+')?;
    let count = |range: &str| -> Option<(u64, u64)> {
        match range.split_once(',') {
            Some((start, len)) => Some((start.parse().ok()?, len.parse().ok()?)),
            None => Some((range.parse().ok()?, 1)),
        }
    };
    let (_, removed) = count(old)?;
    let (start, added) = count(new)?;
    Some((removed, added, start))
}

/// The path of a `+++ b/path` line; `None` for `/dev/null` (a deletion).
fn parse_path(raw: &[u8]) -> Option<PathBuf> {
    // git ends the line with a tab when the name has a space (as `diff -u` does); a name
    // that itself ends in a tab is quoted, so a raw trailing tab is never part of it.
    let raw = raw.strip_suffix(b"\t").unwrap_or(raw);
    let unquoted = if raw.first() == Some(&b'"') {
        unquote(raw)?
    } else {
        raw.to_vec()
    };
    let path = unquoted.strip_prefix(b"b/")?;
    Some(bytes_to_path(path))
}

#[cfg(unix)]
fn bytes_to_path(bytes: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt as _;
    PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
}

#[cfg(not(unix))]
fn bytes_to_path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(bytes).into_owned())
}

/// Undo git's C-style quoting of a path: `"b/a\tb\303\251"`.
fn unquote(raw: &[u8]) -> Option<Vec<u8>> {
    let inner = raw.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let b = inner[i];
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let next = *inner.get(i + 1)?;
        i += 2;
        out.push(match next {
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            b'a' => 0x07,
            b'b' => 0x08,
            b'f' => 0x0c,
            b'v' => 0x0b,
            b'0'..=b'7' => {
                let digits = inner.get(i - 1..i + 2)?;
                i += 2;
                let text = std::str::from_utf8(digits).ok()?;
                u8::from_str_radix(text, 8).ok()?
            }
            other => other,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hunk_headers() {
        assert_eq!(parse_hunk(b"@@ -0,0 +1,3 @@"), Some((0, 3, 1)));
        assert_eq!(parse_hunk(b"@@ -5 +7 @@ fn x()"), Some((1, 1, 7)));
    }

    #[test]
    fn quoted_paths() {
        assert_eq!(
            parse_path(b"\"b/a\\tb\\303\\251\""),
            Some(PathBuf::from("a\tb\u{e9}"))
        );
        assert_eq!(parse_path(b"/dev/null"), None);
    }
}
