//! The matching engine.
//!
//! One Aho-Corasick pass finds every rule keyword in the input (case-insensitively). Only
//! around a keyword does a rule's regular expression run, and only over a bounded window:
//! the keyword's line (at most 1 KiB before and 3 KiB after it), or 32 KiB after it for
//! multi-line rules (PEM blocks). A rule's regex is compiled the first time one of its
//! keywords occurs, so start-up costs one automaton build, not 150 regex compilations.
//!
//! Input arrives in chunks (a file is never read whole): each round scans the keyword hits
//! of one chunk, with enough of the previous chunk kept before it and of the next after it
//! that every window is complete.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::{Arc, OnceLock};

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use regex_automata::meta;
use regex_automata::util::syntax;

use crate::ScanError;
use crate::finding::{Fingerprint, preview};
use crate::rules::{Rule, Rules};
use crate::validate;

/// How far before a keyword a single-line window may start.
const LINE_BACK: usize = 1024;
/// How far after a keyword a single-line window may end.
const LINE_FORWARD: usize = 3 * 1024;
/// How far after a keyword a multi-line window ends.
const MULTI_FORWARD: usize = 32 * 1024;
/// Bytes of the previous chunk kept before the next round's first hit.
const KEEP_BACK: usize = LINE_BACK + 1024;
/// Bytes after the last hit of a round that must already be in the buffer.
const NEED_FORWARD: usize = MULTI_FORWARD + 1024;
/// New bytes read per round.
pub(crate) const CHUNK: usize = 1024 * 1024;
/// Size of a reusable read buffer.
pub(crate) const BUFFER: usize = CHUNK + KEEP_BACK + NEED_FORWARD;
/// Bytes inspected for a NUL to call a file binary (as git and ripgrep do).
const BINARY_PROBE: usize = 8 * 1024;

/// Compile a rule pattern the way the engine runs it: over bytes, ASCII classes, with
/// bounded automaton sizes.
pub(crate) fn compile(pattern: &str) -> Result<meta::Regex, String> {
    meta::Regex::builder()
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .configure(
            meta::Config::new()
                .utf8_empty(false)
                .nfa_size_limit(Some(4 * 1024 * 1024))
                .onepass_size_limit(Some(64 * 1024))
                // Windows are at most a few KiB: a small lazy-DFA cache suffices, and with
                // ~240 rules on every thread the caches are most of the memory used.
                .hybrid_cache_capacity(64 * 1024)
                .backtrack(false)
                .dfa(false),
        )
        .build(pattern)
        .map_err(|err| match err.syntax_error() {
            // The parser's message spans lines (pattern, caret, text); keep the text.
            Some(syntax) => {
                let text = syntax.to_string();
                let last = text.lines().last().unwrap_or_default();
                last.trim_start_matches("error: ").to_owned()
            }
            None => err.to_string().replace('\n', " "),
        })
}

/// A compiled rule set, cheap to clone and share between threads.
#[derive(Clone)]
pub struct Scanner {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("rules", &self.inner.rules.len())
            .field("keywords", &self.inner.keyword_rules.len())
            .finish()
    }
}

struct Inner {
    rules: Rules,
    regexes: Vec<OnceLock<Option<Compiled>>>,
    keywords: Option<Keywords>,
    /// Rules to run for each keyword (by automaton pattern id).
    keyword_rules: Vec<Box<[u32]>>,
    longest_keyword: usize,
}

/// The keyword automaton, in two forms with the same pattern ids: one for small inputs
/// (every command's output), cheap to have, and an Aho-Corasick DFA, about three times faster
/// to run but a few milliseconds to build, made once a scanner has read [`DFA_AFTER`] bytes.
/// The small form of the built-in rules was made when remit was built
/// ([`crate::keyword_dfa`]); other rules get a contiguous NFA (well under a millisecond).
struct Keywords {
    small: Small,
    dfa: OnceLock<Option<AhoCorasick>>,
    patterns: Vec<String>,
    lens: Vec<usize>,
    scanned: std::sync::atomic::AtomicU64,
}

enum Small {
    Compiled(&'static crate::keyword_dfa::Static),
    Nfa(AhoCorasick),
}

/// What [`Keywords::searcher`] chose for one region.
enum Searcher<'a> {
    Compiled(&'a crate::keyword_dfa::Static, &'a [usize]),
    Automaton(&'a AhoCorasick),
}

impl Searcher<'_> {
    /// The first keyword occurrence in `haystack[from..]`: its start and keyword index.
    fn find(&self, haystack: &[u8], from: usize) -> Option<(usize, usize)> {
        match self {
            Searcher::Compiled(dfa, lens) => dfa.find(haystack, from, lens),
            Searcher::Automaton(ac) => ac
                .find(aho_corasick::Input::new(haystack).range(from..))
                .map(|hit| (hit.start(), hit.pattern().as_usize())),
        }
    }
}

/// Bytes scanned before the keyword DFA is built.
const DFA_AFTER: u64 = 512 * 1024;

impl Keywords {
    fn build(
        kind: AhoCorasickKind,
        patterns: &[String],
    ) -> Result<AhoCorasick, aho_corasick::BuildError> {
        AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostFirst)
            .kind(Some(kind))
            .build(patterns)
    }

    /// The automaton to search `len` more bytes with.
    fn searcher(&self, len: usize) -> Searcher<'_> {
        use std::sync::atomic::Ordering;
        let before = self.scanned.fetch_add(len as u64, Ordering::Relaxed);
        if before.saturating_add(len as u64) >= DFA_AFTER
            && let Some(dfa) = self
                .dfa
                .get_or_init(|| Self::build(AhoCorasickKind::DFA, &self.patterns).ok())
        {
            return Searcher::Automaton(dfa);
        }
        match &self.small {
            Small::Compiled(dfa) => Searcher::Compiled(dfa, &self.lens),
            Small::Nfa(nfa) => Searcher::Automaton(nfa),
        }
    }
}

/// A rule's compiled pattern and the groups that hold the secret.
struct Compiled {
    regex: meta::Regex,
    /// Groups named `secret`, `secret2`, …: the first that participates is the secret.
    secret_groups: Vec<usize>,
}

impl Compiled {
    fn new(pattern: &str) -> Option<Self> {
        let regex = compile(pattern).ok()?;
        let secret_groups = regex
            .group_info()
            .pattern_names(regex_automata::PatternID::ZERO)
            .enumerate()
            .filter(|(_, name)| name.is_some_and(|n| n.starts_with("secret")))
            .map(|(index, _)| index)
            .collect();
        Some(Self {
            regex,
            secret_groups,
        })
    }
}

/// A match before it is placed on a line: absolute byte range and identity.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub(crate) rule: u32,
    pub(crate) start: u64,
    pub(crate) end: u64,
    /// Length of the whole match (context included): on the same bytes, more context wins.
    pub(crate) matched: u32,
    pub(crate) fingerprint: Fingerprint,
    pub(crate) preview: String,
}

/// A candidate placed on a line.
#[derive(Debug, Clone)]
pub(crate) struct Located {
    pub(crate) candidate: Candidate,
    pub(crate) line: u64,
    pub(crate) column: u64,
}

/// Per-thread scratch space, reused across inputs.
#[derive(Debug)]
pub(crate) struct State {
    /// Per rule: absolute offset up to which its windows were already searched.
    scanned_until: Vec<u64>,
    candidates: Vec<Candidate>,
    /// (rule, start) of candidates emitted in the previous round, to drop repeats.
    previous: Vec<(u32, u64)>,
    /// Capture slots per rule, allocated on first use.
    captures: Vec<Option<regex_automata::util::captures::Captures>>,
}

impl State {
    pub(crate) fn new(rules: usize) -> Self {
        Self {
            scanned_until: vec![0; rules],
            candidates: Vec::new(),
            previous: Vec::new(),
            captures: (0..rules).map(|_| None).collect(),
        }
    }

    fn reset(&mut self) {
        self.scanned_until.fill(0);
        self.candidates.clear();
        self.previous.clear();
    }
}

/// What reading a stream found besides secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamOutcome {
    /// Scanned to the end.
    Scanned {
        /// Bytes read.
        bytes: u64,
        /// Some line was longer than a whole chunk (scanned in windows).
        long_line: bool,
    },
    /// A NUL byte near the start: not scanned.
    Binary,
}

impl Scanner {
    /// Build a scanner for `rules`. Regexes are compiled lazily, on first use.
    pub fn new(rules: Rules) -> Result<Self, ScanError> {
        let kept = kept_keywords(&rules)?;
        Self::with_keywords(rules, kept, None)
    }

    fn with_keywords(
        rules: Rules,
        kept: Vec<(String, Vec<u32>)>,
        compiled: Option<&'static crate::keyword_dfa::Static>,
    ) -> Result<Self, ScanError> {
        let (keywords, keyword_rules, longest_keyword) = build_keywords(kept, compiled)?;
        let regexes = (0..rules.len()).map(|_| OnceLock::new()).collect();
        Ok(Self {
            inner: Arc::new(Inner {
                rules,
                regexes,
                keywords,
                keyword_rules,
                longest_keyword,
            }),
        })
    }

    /// A scanner with the built-in rules (their keywords were chosen when remit was built).
    pub fn builtin() -> Result<Self, ScanError> {
        let kept = crate::rules::BUILTIN_KEYWORDS
            .iter()
            .map(|(keyword, ids)| ((*keyword).to_owned(), ids.to_vec()))
            .collect();
        Self::with_keywords(
            Rules::builtin(),
            kept,
            Some(&crate::rules::BUILTIN_KEYWORD_DFA),
        )
    }

    /// The rules this scanner runs.
    pub fn rules(&self) -> &Rules {
        &self.inner.rules
    }

    pub(crate) fn rule(&self, index: u32) -> &Rule {
        &self.inner.rules.rules[index as usize]
    }

    /// Compile every rule's regex now (the first scan otherwise pays for the rules it needs).
    /// Returns the ids of rules whose pattern does not compile.
    pub fn compile_all(&self) -> Vec<String> {
        (0..self.inner.rules.len())
            .filter(|&i| self.regex(i).is_none())
            .map(|i| self.inner.rules.rules[i].id.to_string())
            .collect()
    }

    fn regex(&self, index: usize) -> Option<&Compiled> {
        self.inner.regexes[index]
            .get_or_init(|| Compiled::new(&self.inner.rules.rules[index].pattern))
            .as_ref()
    }

    pub(crate) fn new_state(&self) -> State {
        State::new(self.inner.rules.len())
    }

    /// Scan an in-memory buffer. Findings have no path; lines and columns are 1-based.
    pub fn scan_bytes(&self, data: &[u8]) -> Vec<crate::Finding> {
        let mut state = self.new_state();
        let mut out = Vec::new();
        self.scan_buffer(data, &mut state, &mut |located| {
            out.push(self.finding(located, None, None));
        });
        out
    }

    /// Scan a stream in bounded memory (about 1 MiB). Binary content is scanned too.
    pub fn scan_reader(&self, mut reader: impl Read) -> io::Result<Vec<crate::Finding>> {
        let mut state = self.new_state();
        let mut buf = vec![0u8; BUFFER];
        let mut out = Vec::new();
        self.scan_stream(&mut reader, &mut buf, &mut state, false, &mut |located| {
            out.push(self.finding(located, None, None));
        })?;
        Ok(out)
    }

    pub(crate) fn finding(
        &self,
        located: Located,
        path: Option<&std::path::Path>,
        commit: Option<&str>,
    ) -> crate::Finding {
        let rule = self.rule(located.candidate.rule);
        crate::Finding {
            rule: rule.id.clone(),
            severity: rule.severity,
            path: path.map(std::path::Path::to_path_buf),
            commit: commit.map(str::to_owned),
            line: located.line,
            column: located.column,
            start: located.candidate.start,
            end: located.candidate.end,
            fingerprint: located.candidate.fingerprint,
            preview: located.candidate.preview,
        }
    }

    /// Candidates (absolute ranges, no lines) of a whole buffer.
    pub(crate) fn candidates(&self, data: &[u8], state: &mut State) -> Vec<Candidate> {
        state.reset();
        self.scan_region(data, 0, 0, data.len(), state);
        finish_round(self, state);
        std::mem::take(&mut state.candidates)
    }

    pub(crate) fn scan_buffer(
        &self,
        data: &[u8],
        state: &mut State,
        emit: &mut dyn FnMut(Located),
    ) {
        state.reset();
        self.scan_region(data, 0, 0, data.len(), state);
        finish_round(self, state);
        let mut locator = Locator::new(0, 0, 0);
        for candidate in state.candidates.drain(..) {
            let (line, column) = locator.locate(data, candidate.start);
            emit(Located {
                candidate,
                line,
                column,
            });
        }
    }

    /// Scan `reader` through `buf` (of [`BUFFER`] bytes), chunk by chunk.
    pub(crate) fn scan_stream(
        &self,
        reader: &mut dyn Read,
        buf: &mut [u8],
        state: &mut State,
        binary_check: bool,
        emit: &mut dyn FnMut(Located),
    ) -> io::Result<StreamOutcome> {
        state.reset();
        let cap = buf.len();
        let mut filled = 0usize;
        let mut base = 0u64;
        let mut from = 0usize;
        let mut eof = false;
        let mut lines_before = 0u64;
        let mut line_start = 0u64;
        let mut long_line = false;
        loop {
            while filled < cap && !eof {
                match reader.read(&mut buf[filled..cap]) {
                    Ok(0) => eof = true,
                    Ok(n) => filled += n,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) => return Err(err),
                }
            }
            if base == 0
                && binary_check
                && memchr::memchr(0, &buf[..filled.min(BINARY_PROBE)]).is_some()
            {
                return Ok(StreamOutcome::Binary);
            }
            // INVARIANT: when not at EOF the buffer is full, and BUFFER > NEED_FORWARD.
            let to = if eof { filled } else { filled - NEED_FORWARD };
            if to - from >= CHUNK / 2 && memchr::memchr(b'\n', &buf[from..to]).is_none() {
                long_line = true;
            }
            let data = &buf[..filled];
            self.scan_region(data, base, from, to, state);
            finish_round(self, state);
            let mut locator = Locator::new(base, lines_before, line_start);
            state.previous.clear();
            for candidate in state.candidates.drain(..) {
                let (line, column) = locator.locate(data, candidate.start);
                state.previous.push((candidate.rule, candidate.start));
                emit(Located {
                    candidate,
                    line,
                    column,
                });
            }
            if eof {
                return Ok(StreamOutcome::Scanned {
                    bytes: base + filled as u64,
                    long_line,
                });
            }
            // Keep KEEP_BACK bytes before the next round's first hit.
            let keep = to - KEEP_BACK;
            let dropped = &buf[..keep];
            let newlines = count_newlines(dropped);
            if newlines > 0 {
                lines_before += newlines;
                if let Some(pos) = memchr::memrchr(b'\n', dropped) {
                    line_start = base + pos as u64 + 1;
                }
            }
            buf.copy_within(keep..filled, 0);
            filled -= keep;
            base += keep as u64;
            from = to - keep;
        }
    }

    /// Run the rules of every keyword hit starting in `from..to` of `data` (whose first byte
    /// is at absolute offset `base`), collecting candidates in `state`.
    fn scan_region(&self, data: &[u8], base: u64, from: usize, to: usize, state: &mut State) {
        let Some(keywords) = &self.inner.keywords else {
            return;
        };
        let searcher = keywords.searcher(to.saturating_sub(from));
        let limit = (to + self.inner.longest_keyword).min(data.len());
        let mut pos = from;
        while pos < to {
            let Some((start, keyword)) = searcher.find(&data[..limit], pos) else {
                break;
            };
            if start >= to {
                break;
            }
            // INVARIANT: no keyword is a substring of another (build_keywords), so restarting
            // one byte later finds every occurrence of every keyword.
            pos = start + 1;
            let absolute = base + start as u64;
            for &rule in self.inner.keyword_rules[keyword].iter() {
                let r = rule as usize;
                if absolute < state.scanned_until[r] {
                    continue;
                }
                let multiline = self.inner.rules.rules[r].multiline;
                let (ws, we) = window(data, start, multiline);
                state.scanned_until[r] = base + we as u64;
                self.run_rule(rule, data, base, ws, we, state);
            }
        }
    }

    fn run_rule(&self, rule: u32, data: &[u8], base: u64, ws: usize, we: usize, state: &mut State) {
        let Some(compiled) = self.regex(rule as usize) else {
            return;
        };
        let re = &compiled.regex;
        let spec = &self.inner.rules.rules[rule as usize];
        let slot = &mut state.captures[rule as usize];
        let caps = slot.get_or_insert_with(|| re.create_captures());
        let mut at = ws;
        while at < we {
            let input = regex_automata::Input::new(data).range(at..we);
            re.search_captures(&input, caps);
            let Some(m) = caps.get_match() else {
                break;
            };
            let span = compiled
                .secret_groups
                .iter()
                .find_map(|&g| caps.get_group(g))
                .unwrap_or_else(|| m.span());
            let secret = &data[span.range()];
            let key = &data[m.start()..span.start.max(m.start())];
            if accept(spec, secret, &data[m.range()], key) {
                state.candidates.push(Candidate {
                    rule,
                    start: base + span.start as u64,
                    end: base + span.end as u64,
                    matched: u32::try_from(m.len()).unwrap_or(u32::MAX),
                    fingerprint: Fingerprint::new(&spec.id, secret),
                    preview: preview(secret, spec.generic),
                });
            }
            at = if m.end() > m.start() {
                m.end()
            } else {
                m.end() + 1
            };
        }
    }
}

/// Whether a matched secret passes the rule's checks.
fn accept(rule: &Rule, secret: &[u8], matched: &[u8], key: &[u8]) -> bool {
    if secret.is_empty() || validate::is_placeholder(secret) {
        return false;
    }
    if let Some(floor) = rule.entropy
        && validate::entropy(secret) < floor
    {
        return false;
    }
    let quoted = matches!(key.last(), Some(b'"' | b'\'' | b'`'));
    if rule.generic
        && (!validate::generic_value_ok(secret, quoted) || !validate::generic_key_ok(key))
    {
        return false;
    }
    rule.validator.is_none_or(|v| v.check(secret, matched))
}

/// Sort the round's candidates, drop repeats from the previous round, exact duplicates (two
/// rules on the same bytes: the first rule wins) and generic candidates that overlap a
/// specific one.
fn finish_round(scanner: &Scanner, state: &mut State) {
    let cands = &mut state.candidates;
    if cands.is_empty() {
        return;
    }
    let generic = |c: &Candidate| scanner.rule(c.rule).generic;
    // On the same bytes: a specific rule beats a generic one, a validated one (a checksum, a
    // decoded structure) beats one that is not, and then more context beats less.
    let rank = |c: &Candidate| {
        let rule = scanner.rule(c.rule);
        let proven = rule.validator.is_some_and(|v| v.proves_format());
        // Generic rules are tried in file order (most specific context first).
        let context = if rule.generic {
            0
        } else {
            u32::MAX - c.matched
        };
        (rule.generic, !proven, context, c.rule)
    };
    cands.sort_by_key(|c| (c.start, c.end, rank(c)));
    let previous = &state.previous;
    cands.retain(|c| !previous.contains(&(c.rule, c.start)));
    cands.dedup_by(|later, earlier| later.start == earlier.start && later.end == earlier.end);
    let specific: Vec<(u64, u64)> = cands
        .iter()
        .filter(|c| !generic(c))
        .map(|c| (c.start, c.end))
        .collect();
    if specific.len() != cands.len() {
        cands.retain(|c| !generic(c) || !specific.iter().any(|&(s, e)| s < c.end && c.start < e));
    }
}

/// The window a rule's regex sees around a keyword at `at`.
fn window(data: &[u8], at: usize, multiline: bool) -> (usize, usize) {
    let lo = at.saturating_sub(LINE_BACK);
    let start = memchr::memrchr(b'\n', &data[lo..at]).map_or(lo, |i| lo + i + 1);
    let end = if multiline {
        (at + MULTI_FORWARD).min(data.len())
    } else {
        // The line's newline is inside the window: a pattern may end on "not a token byte".
        let hi = (at + LINE_FORWARD).min(data.len());
        memchr::memchr(b'\n', &data[at..hi]).map_or(hi, |i| at + i + 1)
    };
    (start, end)
}

fn count_newlines(data: &[u8]) -> u64 {
    // A plain loop: the compiler vectorises it, and it beats an iterator of positions.
    data.iter().filter(|&&b| b == b'\n').count() as u64
}

/// Turns absolute offsets (in increasing order) into 1-based lines and columns.
struct Locator {
    base: u64,
    index: usize,
    lines: u64,
    line_start: u64,
}

impl Locator {
    fn new(base: u64, lines_before: u64, line_start: u64) -> Self {
        Self {
            base,
            index: 0,
            lines: lines_before,
            line_start,
        }
    }

    fn locate(&mut self, data: &[u8], absolute: u64) -> (u64, u64) {
        let target = usize::try_from(absolute.saturating_sub(self.base))
            .unwrap_or(data.len())
            .min(data.len());
        if target > self.index {
            let piece = &data[self.index..target];
            let newlines = count_newlines(piece);
            if newlines > 0 {
                self.lines += newlines;
                if let Some(pos) = memchr::memrchr(b'\n', piece) {
                    self.line_start = self.base + (self.index + pos) as u64 + 1;
                }
            }
            self.index = target;
        }
        // Columns count characters: every byte that does not continue a UTF-8 sequence.
        let from = usize::try_from(self.line_start.saturating_sub(self.base)).unwrap_or(0);
        let before_buffer = self.base.saturating_sub(self.line_start);
        let chars = data[from.min(target)..target]
            .iter()
            .filter(|&&b| (b & 0xC0) != 0x80)
            .count() as u64;
        (self.lines + 1, before_buffer + chars + 1)
    }
}

/// The keyword automaton's input for `rules`: each kept keyword with its rules (see
/// [`crate::absorb`]).
fn kept_keywords(rules: &Rules) -> Result<Vec<(String, Vec<u32>)>, ScanError> {
    let mut by_keyword: HashMap<String, Vec<u32>> = HashMap::new();
    for (i, rule) in rules.rules.iter().enumerate() {
        let index = u32::try_from(i).map_err(|_| ScanError::TooManyRules)?;
        for keyword in &rule.keywords {
            let entry = by_keyword.entry(keyword.to_ascii_lowercase()).or_default();
            if !entry.contains(&index) {
                entry.push(index);
            }
        }
    }
    Ok(crate::absorb::absorb(by_keyword))
}

/// Build the keyword automaton from the kept keywords, or take the one made for them when
/// remit was built.
#[allow(clippy::type_complexity)]
fn build_keywords(
    kept: Vec<(String, Vec<u32>)>,
    compiled: Option<&'static crate::keyword_dfa::Static>,
) -> Result<(Option<Keywords>, Vec<Box<[u32]>>, usize), ScanError> {
    if kept.is_empty() {
        return Ok((None, Vec::new(), 0));
    }
    let longest = kept.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let patterns: Vec<String> = kept.iter().map(|(k, _)| k.clone()).collect();
    let small = match compiled {
        Some(dfa) => Small::Compiled(dfa),
        None => Small::Nfa(
            Keywords::build(AhoCorasickKind::ContiguousNFA, &patterns)
                .map_err(|err| ScanError::Keywords(err.to_string()))?,
        ),
    };
    let keywords = Keywords {
        small,
        dfa: OnceLock::new(),
        lens: patterns.iter().map(String::len).collect(),
        patterns,
        scanned: std::sync::atomic::AtomicU64::new(0),
    };
    let lists = kept
        .into_iter()
        .map(|(_, ids)| ids.into_boxed_slice())
        .collect();
    Ok((Some(keywords), lists, longest))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn keywords(scanner: &Scanner) -> (Vec<String>, Vec<Box<[u32]>>, usize) {
        let inner = &scanner.inner;
        (
            inner
                .keywords
                .as_ref()
                .map(|k| k.patterns.clone())
                .unwrap_or_default(),
            inner.keyword_rules.clone(),
            inner.longest_keyword,
        )
    }

    #[test]
    fn the_builtin_keywords_chosen_at_build_time_are_the_engines_choice() {
        let built = keywords(&Scanner::builtin().unwrap());
        let chosen = keywords(&Scanner::new(Rules::builtin()).unwrap());
        assert!(!built.0.is_empty());
        assert_eq!(built, chosen);
        // Absorption happened: fewer keywords than the rules name, none inside another.
        let named: std::collections::HashSet<String> = Rules::builtin()
            .rules
            .iter()
            .flat_map(|r| r.keywords.iter().map(|k| k.to_ascii_lowercase()))
            .collect();
        assert!(
            built.0.len() < named.len(),
            "{} of {}",
            built.0.len(),
            named.len()
        );
        for (i, a) in built.0.iter().enumerate() {
            for (j, b) in built.0.iter().enumerate() {
                assert!(i == j || !b.contains(a.as_str()), "`{b}` contains `{a}`");
            }
        }
    }
}
