//! Scanning git history: the lines each commit added.
//!
//! History is read with libgit2 (the `git2` crate, libgit2 built from its bundled source):
//! every commit reachable from the asked revisions (every ref by default) is diffed against
//! its first parent with no context lines, as `git log -p -U0` shows it, and the added lines
//! of each hunk are scanned as one block. Merge commits show no diff, as in `git log -p`.
//! The repository is untrusted: libgit2 runs no external diff driver, textconv filter, hook
//! or pager, and reads no global or system configuration that could change what it shows.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::walk::Progress;
use crate::{Report, ScanError, Scanner};

/// What history to scan.
#[derive(Debug, Clone, Default)]
pub struct GitOptions {
    /// Commits to scan, as revisions (`main`, `v1.0..HEAD`, `^old`). Empty means every
    /// commit reachable from any ref and `HEAD`. Default: empty.
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
        let git = |e: git2::Error| fail(e.message().to_owned());
        if !repo.exists() {
            return Err(ScanError::Path(
                repo.to_owned(),
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        let repository = git2::Repository::open(repo).map_err(git)?;
        let mut walk = repository.revwalk().map_err(git)?;
        walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME)
            .map_err(git)?;
        if options.revisions.is_empty() {
            // `--all`: every ref that leads to a commit, and HEAD (detached or not).
            for reference in repository.references().map_err(git)?.flatten() {
                if let Ok(commit) = reference.peel_to_commit() {
                    walk.push(commit.id()).map_err(git)?;
                }
            }
            if let Ok(head) = repository.head()
                && let Ok(commit) = head.peel_to_commit()
            {
                walk.push(commit.id()).map_err(git)?;
            }
        } else {
            for revision in &options.revisions {
                if revision.contains("..") {
                    walk.push_range(revision)
                        .map_err(|e| fail(format!("bad revision `{revision}`: {}", e.message())))?;
                    continue;
                }
                let (hide, name) = match revision.strip_prefix('^') {
                    Some(name) => (true, name),
                    None => (false, revision.as_str()),
                };
                let commit = repository
                    .revparse_single(name)
                    .and_then(|o| o.peel_to_commit())
                    .map_err(|e| fail(format!("bad revision `{revision}`: {}", e.message())))?;
                if hide {
                    walk.hide(commit.id()).map_err(git)?;
                } else {
                    walk.push(commit.id()).map_err(git)?;
                }
            }
        }
        let mut parser = Parser::new(self, options.progress.clone());
        for oid in walk {
            let commit = repository.find_commit(oid.map_err(git)?).map_err(git)?;
            if commit.parent_count() > 1 {
                continue;
            }
            let tree = commit.tree().map_err(git)?;
            let parent = match commit.parent_count() {
                0 => None,
                _ => Some(commit.parent(0).and_then(|p| p.tree()).map_err(git)?),
            };
            let mut diff_options = git2::DiffOptions::new();
            diff_options
                .context_lines(0)
                .ignore_submodules(true)
                .skip_binary_check(false);
            let diff = repository
                .diff_tree_to_tree(parent.as_ref(), Some(&tree), Some(&mut diff_options))
                .map_err(git)?;
            parser.commit = commit.id().to_string();
            parser.path = None;
            diff.print(git2::DiffFormat::Patch, |delta, _hunk, line| {
                parser.line(&delta, &line);
                true
            })
            .map_err(git)?;
            parser.flush();
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
            block: Block::default(),
        }
    }

    /// One line of a commit's patch: file and hunk headers end the current block; an added
    /// line joins it.
    fn line(&mut self, delta: &git2::DiffDelta<'_>, line: &git2::DiffLine<'_>) {
        match line.origin() {
            'F' => {
                self.flush();
                self.path = match delta.status() {
                    git2::Delta::Deleted => None,
                    _ => delta.new_file().path().map(Path::to_path_buf),
                };
                if self.path.is_some() {
                    self.report.files += 1;
                    if let Some(progress) = &self.progress {
                        progress.add(1, 0);
                    }
                }
            }
            'H' => self.flush(),
            '+' => {
                let content = line.content();
                let content = content.strip_suffix(b"\n").unwrap_or(content);
                self.block.text.extend_from_slice(content);
                self.block.text.push(b'\n');
                self.block
                    .lines
                    .push(line.new_lineno().map_or(0, u64::from));
            }
            _ => {}
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
    }
}
