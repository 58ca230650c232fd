//! A writer that removes secrets from a byte stream before passing it on.
//!
//! Bytes are passed on as soon as no secret can still be forming in them. Only the tail that
//! could be the start of a secret is held back: the trailing run of non-blank bytes (a token
//! being written, at most 4 KiB), the length of the longest known secret's encoded form
//! minus one, and an unterminated `-----BEGIN` line. Everything before is scanned — with up
//! to 1 KiB of already-written bytes kept as look-behind, so that `PASSWORD=` written in one
//! call still qualifies the value written in the next — redacted and written.
//!
//! A PEM private key is removed whole: from its BEGIN line until its END line, however long,
//! nothing of it is written.

use std::io::{self, Write};

use crate::engine::State;
use crate::{KnownSecrets, Scanner};

/// Already-written bytes kept for the patterns' look-behind.
const CONTEXT: usize = 1024;
/// The longest token held back while it may still be growing.
const TOKEN_HOLD: usize = 4096;
/// Pending bytes that trigger a scan without waiting for `flush`.
const PROCESS_AT: usize = 16 * 1024;
/// Bytes kept while inside a private key, to see an END marker split across writes.
const END_HOLD: usize = 63;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    Rule(u32),
    Known,
    PrivateKey,
}

/// An [`io::Write`] adapter that redacts detected and known secrets.
///
/// `flush` writes everything that can no longer be part of a secret and flushes the inner
/// writer; [`RedactingWriter::finish`] (or drop) writes the rest. Secrets are replaced by
/// `[REDACTED:<rule id>]`, `[REDACTED:known-secret]` or `[REDACTED:private-key]`.
pub struct RedactingWriter<W: Write> {
    inner: Option<W>,
    scanner: Option<Scanner>,
    state: Option<State>,
    known: Option<KnownSecrets>,
    buf: Vec<u8>,
    /// `buf[..emitted]` was already written (kept as look-behind).
    emitted: usize,
    /// Inside a private key block whose END line has not arrived.
    in_key: bool,
    redactions: u64,
}

impl<W: Write> std::fmt::Debug for RedactingWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedactingWriter")
            .field("pending", &(self.buf.len() - self.emitted))
            .field("in_private_key", &self.in_key)
            .field("redactions", &self.redactions)
            .finish_non_exhaustive()
    }
}

impl<W: Write> RedactingWriter<W> {
    /// Redact what `scanner` detects and what `known` lists (either may be `None`).
    pub fn new(inner: W, scanner: Option<Scanner>, known: Option<KnownSecrets>) -> Self {
        let state = scanner.as_ref().map(Scanner::new_state);
        Self {
            inner: Some(inner),
            scanner,
            state,
            known,
            buf: Vec::new(),
            emitted: 0,
            in_key: false,
            redactions: 0,
        }
    }

    /// How many secrets were redacted so far.
    pub fn redactions(&self) -> u64 {
        self.redactions
    }

    /// The inner writer.
    pub fn get_ref(&self) -> Option<&W> {
        self.inner.as_ref()
    }

    /// Write everything still held back (redacted), flush, and return the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.process(true)?;
        let mut inner = self
            .inner
            .take()
            .ok_or_else(|| io::Error::other("redacting writer already finished"))?;
        inner.flush()?;
        Ok(inner)
    }

    fn label(&self, label: Label) -> Vec<u8> {
        match label {
            Label::Rule(index) => match &self.scanner {
                Some(scanner) => format!("[REDACTED:{}]", scanner.rule(index).id()).into_bytes(),
                None => b"[REDACTED]".to_vec(),
            },
            Label::Known => b"[REDACTED:known-secret]".to_vec(),
            Label::PrivateKey => b"[REDACTED:private-key]".to_vec(),
        }
    }

    fn process(&mut self, last: bool) -> io::Result<()> {
        let len = self.buf.len();
        if len == self.emitted {
            return Ok(());
        }
        let mut ranges: Vec<(usize, usize, Label)> = Vec::new();
        let open_key = self.private_keys(&mut ranges);
        if let (Some(scanner), Some(state)) = (&self.scanner, &mut self.state) {
            for c in scanner.candidates(&self.buf, state) {
                // INVARIANT: candidate offsets are within `buf`, which is in memory.
                let (start, end) = (c.start as usize, c.end as usize);
                if end > self.emitted {
                    ranges.push((start, end, Label::Rule(c.rule)));
                }
            }
        }
        if let Some(known) = &self.known {
            for m in known.find_iter(&self.buf) {
                if m.end > self.emitted {
                    ranges.push((m.start, m.end, Label::Known));
                }
            }
        }

        let mut cut = match (last, open_key) {
            (true, _) => len,
            // Inside a key: drop its bytes, keep a tail to see an END marker split in two.
            (false, Some(start)) => len.saturating_sub(END_HOLD).max(start),
            (false, None) => len.saturating_sub(self.hold()),
        }
        .max(self.emitted);
        let ranges = merge(ranges);
        for &(start, end, label) in &ranges {
            if open_key.is_some_and(|key| start >= key) {
                break;
            }
            if start < cut && end > cut {
                let complete = end < len || last || label == Label::PrivateKey;
                cut = if complete {
                    end
                } else {
                    start.max(self.emitted)
                };
            }
        }
        let ranges = match open_key {
            Some(start) => {
                let mut all = ranges;
                all.push((start, len, Label::PrivateKey));
                merge(all)
            }
            None => ranges,
        };
        let continuing = self.in_key;
        self.in_key = !last && open_key.is_some_and(|start| start < cut);

        let mut out = Vec::with_capacity(cut - self.emitted + 64);
        let mut at = self.emitted;
        for &(start, end, label) in &ranges {
            if start >= cut || end <= at {
                continue;
            }
            if start > at {
                out.extend_from_slice(&self.buf[at..start]);
            }
            // A range that began before `emitted` was labelled when it began, and so was a
            // key continued from the previous call.
            let continued = continuing && label == Label::PrivateKey && start == self.emitted;
            if start >= self.emitted && !continued {
                out.extend_from_slice(&self.label(label));
                self.redactions += 1;
            }
            at = end.min(cut);
        }
        if at < cut {
            out.extend_from_slice(&self.buf[at..cut]);
        }
        let inner = self
            .inner
            .as_mut()
            .ok_or_else(|| io::Error::other("redacting writer already finished"))?;
        inner.write_all(&out)?;

        let drop = cut.saturating_sub(CONTEXT);
        self.buf.drain(..drop);
        self.emitted = cut - drop;
        Ok(())
    }

    /// How many trailing bytes might still be the start of a secret.
    fn hold(&self) -> usize {
        let pending = &self.buf[self.emitted..];
        let known = self.known.as_ref().map_or(0, |k| k.partial_tail(pending));
        let token = pending
            .iter()
            .rev()
            .take(TOKEN_HOLD)
            .take_while(|b| !b.is_ascii_whitespace())
            .count();
        let line_start = memchr::memrchr(b'\n', pending).map_or(0, |p| p + 1);
        let begin = memchr::memmem::find(&pending[line_start..], b"-----BEGIN")
            .map_or(0, |p| pending.len() - (line_start + p));
        known.max(token).max(begin)
    }

    /// Add the complete private key blocks of the pending bytes to `ranges`; return the start
    /// of one whose END line has not arrived.
    fn private_keys(&self, ranges: &mut Vec<(usize, usize, Label)>) -> Option<usize> {
        let mut at = self.emitted;
        let mut open = if self.in_key {
            Some(self.emitted)
        } else {
            None
        };
        loop {
            match open {
                Some(start) => match key_marker(&self.buf[at..], b"-----END ") {
                    Some((_, end)) => {
                        ranges.push((start, at + end, Label::PrivateKey));
                        at += end;
                        open = None;
                    }
                    None => return Some(start),
                },
                None => match key_marker(&self.buf[at..], b"-----BEGIN ") {
                    Some((begin, end)) => {
                        open = Some(at + begin);
                        at += end;
                    }
                    None => return None,
                },
            }
        }
    }
}

/// A complete `<marker>… PRIVATE KEY…-----` line: (start, end) of the marker.
fn key_marker(data: &[u8], marker: &[u8]) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(pos) = memchr::memmem::find(&data[from..], marker) {
        let start = from + pos;
        let after = start + marker.len();
        let line_end = memchr::memchr(b'\n', &data[after..]).map_or(data.len(), |p| after + p);
        // `\n` escapes inside a JSON string end the header line too.
        let line_end =
            memchr::memmem::find(&data[after..line_end], b"\\n").map_or(line_end, |p| after + p);
        let line = &data[after..line_end];
        if let Some(close) = memchr::memmem::find(line, b"-----")
            && memchr::memmem::find(&line[..close], b"PRIVATE KEY").is_some()
        {
            return Some((start, after + close + 5));
        }
        from = after;
    }
    None
}

/// Sort and merge overlapping ranges; the earliest range's label wins (on a tie: a private
/// key, then a known secret, then a rule).
fn merge(mut ranges: Vec<(usize, usize, Label)>) -> Vec<(usize, usize, Label)> {
    let priority = |label: Label| match label {
        Label::PrivateKey => 0,
        Label::Known => 1,
        Label::Rule(_) => 2,
    };
    ranges.sort_by_key(|&(start, end, label)| (start, std::cmp::Reverse(end), priority(label)));
    let mut out: Vec<(usize, usize, Label)> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match out.last_mut() {
            Some(last) if range.0 < last.1 => last.1 = last.1.max(range.1),
            _ => out.push(range),
        }
    }
    out
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        for piece in data.chunks(PROCESS_AT) {
            self.buf.extend_from_slice(piece);
            if self.buf.len() - self.emitted >= PROCESS_AT {
                self.process(false)?;
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.process(false)?;
        match self.inner.as_mut() {
            Some(inner) => inner.flush(),
            None => Ok(()),
        }
    }
}

impl<W: Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        if self.inner.is_some() {
            // Best effort: a writer dropped without `finish` still writes its redacted tail.
            let _ = self.process(true);
            if let Some(inner) = self.inner.as_mut() {
                let _ = inner.flush();
            }
        }
    }
}
