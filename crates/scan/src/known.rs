//! Exact matching of known secret values in every common encoding, for egress DLP and
//! output redaction.
//!
//! Each value is expanded into the byte strings it becomes when encoded — base64 at each of
//! the three byte alignments it can have inside a longer encoded text (standard and
//! URL-safe alphabets), percent-encoding (upper and lower case escapes, `+` for spaces),
//! hex (both cases) and JSON string escaping. The first [`ANCHOR`] bytes of every form go
//! into one Aho-Corasick automaton, so a body is searched once whatever the number of
//! secrets; where one of them starts, the whole forms are compared there. An automaton of
//! the whole forms would find the same, but a task's identity token in its thirteen forms
//! makes one of some ten thousand states, a millisecond to build at every task's start; the
//! anchors make one of a few hundred.

use aho_corasick::{AhoCorasick, AhoCorasickKind, Input, MatchKind};
use base64::Engine as _;
use std::sync::{Arc, OnceLock};

use crate::ScanError;

/// How many leading bytes of each encoded form the automaton looks for. Long enough that
/// ordinary text almost never holds one (a secret's first 32 characters), short enough that
/// the automaton stays small.
const ANCHOR: usize = 32;

/// Bytes a search may compare at anchors, per byte searched (plus [`WORK_FLOOR`]), before it
/// switches to an automaton of the whole forms. Only a secret that repeats itself, in input
/// made to match its anchor over and over, comes near: then each step may compare a whole
/// form, and the switch keeps the search linear.
const WORK_PER_BYTE: usize = 16;
const WORK_FLOOR: usize = 1 << 20;

/// How a known secret appeared in the searched bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    /// As is.
    Raw,
    /// Inside standard base64 (any alignment).
    Base64,
    /// Inside URL-safe base64 (any alignment).
    Base64Url,
    /// Percent-encoded (`%2F` or `%2f`; `+` for space).
    UrlEncoded,
    /// Hex, lower or upper case.
    Hex,
    /// Escaped inside a JSON string.
    JsonEscaped,
}

/// Where a known secret was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownMatch {
    /// Index of the secret in the values given to [`KnownSecrets::new`].
    pub secret: usize,
    /// The form it was found in.
    pub encoding: Encoding,
    /// Byte offset of the match.
    pub start: usize,
    /// Byte offset just past the match.
    pub end: usize,
}

/// A set of exact secret values to find. Cheap to clone: the automaton and its tables are
/// shared, so every field a redactor checks does not copy the secrets' encoded forms.
#[derive(Clone)]
pub struct KnownSecrets {
    /// Finds where any form may start: its first [`ANCHOR`] bytes.
    matcher: Option<AhoCorasick>,
    /// Every encoded form, longest first (so the first that matches at a place is the
    /// longest there); also tells whether a stream's tail may begin one.
    patterns: Arc<[Vec<u8>]>,
    /// Per pattern: which secret and which encoding.
    variants: Arc<[(usize, Encoding)]>,
    /// An automaton of the whole forms, built the first time a search compares too much at
    /// anchors (`None` if it cannot be built: the search then goes on comparing).
    whole: Arc<OnceLock<Option<AhoCorasick>>>,
    longest: usize,
    ignored: Arc<[usize]>,
    count: usize,
}

impl std::fmt::Debug for KnownSecrets {
    // Never the values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnownSecrets")
            .field("secrets", &self.count)
            .field("patterns", &self.variants.len())
            .field("ignored", &self.ignored)
            .finish()
    }
}

impl KnownSecrets {
    /// Values shorter than this are not matched (they would match ordinary text); see
    /// [`KnownSecrets::ignored`].
    pub const MIN_LEN: usize = 8;

    /// Build the matcher. Values shorter than [`KnownSecrets::MIN_LEN`] are ignored, and
    /// listed by [`KnownSecrets::ignored`] so that a caller can refuse them.
    pub fn new<I, V>(values: I) -> Result<Self, ScanError>
    where
        I: IntoIterator<Item = V>,
        V: AsRef<[u8]>,
    {
        let mut forms: Vec<(Vec<u8>, (usize, Encoding))> = Vec::new();
        let mut ignored = Vec::new();
        let mut seen: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
        let mut count = 0;
        for (index, value) in values.into_iter().enumerate() {
            count += 1;
            let value = value.as_ref();
            if value.len() < Self::MIN_LEN {
                ignored.push(index);
                continue;
            }
            for (encoding, form) in encodings(value) {
                if form.len() >= Self::MIN_LEN && seen.insert(form.clone()) {
                    forms.push((form, (index, encoding)));
                }
            }
        }
        // Longest first: at one place, the first form that matches is the longest there.
        forms.sort_by_key(|(form, _)| std::cmp::Reverse(form.len()));
        let (patterns, variants): (Vec<Vec<u8>>, Vec<(usize, Encoding)>) =
            forms.into_iter().unzip();
        let longest = patterns.first().map_or(0, Vec::len);
        let mut anchors: Vec<&[u8]> = patterns.iter().map(|p| &p[..p.len().min(ANCHOR)]).collect();
        anchors.sort_unstable();
        anchors.dedup();
        let matcher = if anchors.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    // Leftmost: the search reports the first place any anchor starts.
                    .match_kind(MatchKind::LeftmostFirst)
                    .kind(Some(AhoCorasickKind::ContiguousNFA))
                    .build(&anchors)
                    .map_err(|err| ScanError::Known(err.to_string()))?,
            )
        };
        Ok(Self {
            matcher,
            patterns: patterns.into(),
            variants: variants.into(),
            whole: Arc::default(),
            longest,
            ignored: ignored.into(),
            count,
        })
    }

    /// The longest form that starts at `at` in `haystack`, as a match; and how many bytes
    /// finding out compared, at most.
    fn longest_at(&self, haystack: &[u8], at: usize) -> (Option<KnownMatch>, usize) {
        let rest = &haystack[at..];
        let mut work = 0;
        for (i, p) in self.patterns.iter().enumerate() {
            if rest.len() < p.len() || rest.first() != p.first() {
                continue;
            }
            work += p.len();
            if rest.starts_with(p) {
                return (Some(self.found(i, at, at + p.len())), work);
            }
        }
        (None, work)
    }

    fn found(&self, pattern: usize, start: usize, end: usize) -> KnownMatch {
        let (secret, encoding) = self.variants[pattern];
        KnownMatch {
            secret,
            encoding,
            start,
            end,
        }
    }

    /// The automaton of the whole forms, leftmost-longest, built on first use.
    fn whole(&self) -> Option<&AhoCorasick> {
        self.whole
            .get_or_init(|| {
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .kind(Some(AhoCorasickKind::ContiguousNFA))
                    .build(self.patterns.iter())
                    .ok()
            })
            .as_ref()
    }

    /// The first known secret in `haystack`, in any encoding.
    pub fn find(&self, haystack: &[u8]) -> Option<KnownMatch> {
        self.find_iter(haystack).next()
    }

    /// Every non-overlapping known secret in `haystack`, leftmost-longest.
    pub fn find_iter<'a>(&'a self, haystack: &'a [u8]) -> impl Iterator<Item = KnownMatch> + 'a {
        let budget = haystack
            .len()
            .saturating_mul(WORK_PER_BYTE)
            .saturating_add(WORK_FLOOR);
        self.find_iter_comparing(haystack, budget)
    }

    /// [`KnownSecrets::find_iter`], comparing at most about `budget` bytes at anchors before
    /// going on with the automaton of whole forms.
    fn find_iter_comparing<'a>(
        &'a self,
        haystack: &'a [u8],
        mut budget: usize,
    ) -> impl Iterator<Item = KnownMatch> + 'a {
        let mut from = 0;
        std::iter::from_fn(move || {
            let ac = self.matcher.as_ref()?;
            while from < haystack.len() {
                if budget == 0
                    && let Some(whole) = self.whole()
                {
                    // Compared too much already: the rest in one linear pass.
                    let m = whole.find(Input::new(haystack).range(from..))?;
                    from = m.end();
                    return Some(self.found(m.pattern().as_usize(), m.start(), m.end()));
                }
                // The leftmost place an anchor starts; no form can start before it. Where no
                // whole form follows, look again one byte further.
                let at = ac.find(Input::new(haystack).range(from..))?.start();
                let (found, work) = self.longest_at(haystack, at);
                budget = budget.saturating_sub(work);
                if let Some(found) = found {
                    from = found.end;
                    return Some(found);
                }
                from = at + 1;
            }
            None
        })
    }

    /// The longest encoded form: a stream searched in chunks must carry over
    /// `longest() - 1` bytes between chunks.
    pub fn longest(&self) -> usize {
        self.longest
    }

    /// How many trailing bytes of `data` could be the start of a known secret that the next
    /// bytes complete: the longest suffix of `data` that is a proper prefix of a pattern. A
    /// stream holds back only these bytes, so ordinary output is never delayed.
    pub fn partial_tail(&self, data: &[u8]) -> usize {
        let window = self.longest.saturating_sub(1).min(data.len());
        let tail = &data[data.len() - window..];
        let mut best = 0;
        for pattern in self.patterns.iter() {
            let Some(&first) = pattern.first() else {
                continue;
            };
            // Candidate starts, leftmost first: the first that fits is the longest suffix.
            for at in memchr::memchr_iter(first, tail) {
                let suffix = &tail[at..];
                if suffix.len() <= best {
                    break;
                }
                if suffix.len() < pattern.len() && pattern.starts_with(suffix) {
                    best = suffix.len();
                    break;
                }
            }
        }
        best
    }

    /// Indexes of values too short to match.
    pub fn ignored(&self) -> &[usize] {
        &self.ignored
    }

    /// How many values were given.
    pub fn len(&self) -> usize {
        self.count
    }

    /// No values were given.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// The forms a value takes under each encoding.
fn encodings(value: &[u8]) -> Vec<(Encoding, Vec<u8>)> {
    let mut out = vec![(Encoding::Raw, value.to_vec())];
    for (encoding, engine) in [
        (
            Encoding::Base64,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
        ),
        (
            Encoding::Base64Url,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ),
    ] {
        for shift in 0..3usize {
            // The value preceded by `shift` bytes of something else: only the characters
            // whose six bits all come from the value are fixed.
            let mut shifted = vec![0u8; shift];
            shifted.extend_from_slice(value);
            let encoded = engine.encode(&shifted).into_bytes();
            let first = (8 * shift).div_ceil(6);
            let last = (8 * (shift + value.len())) / 6;
            if last > first && last <= encoded.len() {
                out.push((encoding, encoded[first..last].to_vec()));
            }
        }
    }
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    if !value.iter().all(|&b| unreserved(b)) {
        for (upper, plus) in [(true, false), (false, false), (true, true)] {
            let mut form = Vec::with_capacity(value.len() * 3);
            for &b in value {
                if unreserved(b) {
                    form.push(b);
                } else if plus && b == b' ' {
                    form.push(b'+');
                } else {
                    let hex = if upper {
                        format!("%{b:02X}")
                    } else {
                        format!("%{b:02x}")
                    };
                    form.extend_from_slice(hex.as_bytes());
                }
            }
            out.push((Encoding::UrlEncoded, form));
        }
    }
    let lower: String = value.iter().map(|b| format!("{b:02x}")).collect();
    out.push((Encoding::Hex, lower.to_ascii_uppercase().into_bytes()));
    out.push((Encoding::Hex, lower.into_bytes()));
    if value
        .iter()
        .any(|&b| matches!(b, b'"' | b'\\' | b'/') || b < 0x20)
    {
        let mut json = Vec::with_capacity(value.len() + 8);
        let mut json_slash = Vec::with_capacity(value.len() + 8);
        for &b in value {
            let escaped: Option<&[u8]> = match b {
                b'"' => Some(b"\\\""),
                b'\\' => Some(b"\\\\"),
                b'\n' => Some(b"\\n"),
                b'\r' => Some(b"\\r"),
                b'\t' => Some(b"\\t"),
                _ => None,
            };
            match escaped {
                Some(e) => {
                    json.extend_from_slice(e);
                    json_slash.extend_from_slice(e);
                }
                None if b < 0x20 => {
                    let e = format!("\\u{b:04x}");
                    json.extend_from_slice(e.as_bytes());
                    json_slash.extend_from_slice(e.as_bytes());
                }
                None if b == b'/' => {
                    json.push(b);
                    json_slash.extend_from_slice(b"\\/");
                }
                None => {
                    json.push(b);
                    json_slash.push(b);
                }
            }
        }
        out.push((Encoding::JsonEscaped, json));
        out.push((Encoding::JsonEscaped, json_slash));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the anchored search must equal: one automaton over every whole form,
    /// leftmost-longest.
    fn every_form(known: &KnownSecrets, haystack: &[u8]) -> Vec<KnownMatch> {
        if known.patterns.is_empty() {
            return Vec::new();
        }
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(known.patterns.iter())
            .expect("build");
        ac.find_iter(haystack)
            .map(|m| {
                let (secret, encoding) = known.variants[m.pattern().as_usize()];
                KnownMatch {
                    secret,
                    encoding,
                    start: m.start(),
                    end: m.end(),
                }
            })
            .collect()
    }

    /// Haystack pieces: noise, a whole secret in some form, or the start of one that stops
    /// short (its anchor without the rest).
    fn piece(secrets: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
        let noise =
            proptest::collection::vec(prop::sample::select(b"ab/+=\\\" \n%2F".to_vec()), 0..40);
        (
            noise,
            any::<prop::sample::Index>(),
            any::<prop::sample::Index>(),
            0..4u8,
            1..200usize,
        )
            .prop_map(move |(noise, which, form, how, cut)| {
                let secret = which.get(&secrets);
                let forms = encodings(secret);
                let (_, form) = form.get(&forms);
                match how {
                    0 => noise,
                    1 | 2 => form.clone(),
                    _ => form[..cut.min(form.len())].to_vec(),
                }
            })
    }

    /// One to four secrets over a narrow alphabet, some of them a prefix or an extension of
    /// the first or a long run of one byte: forms that start alike, escapes.
    fn related_secrets() -> impl Strategy<Value = Vec<Vec<u8>>> {
        let bytes = |len: std::ops::Range<usize>| {
            proptest::collection::vec(prop::sample::select(b"aaab/\" \\".to_vec()), len)
        };
        let derived = (0..4u8, 8..80usize, bytes(1..40), bytes(8..80));
        (bytes(8..80), proptest::collection::vec(derived, 0..4)).prop_map(|(first, more)| {
            let mut secrets = vec![first.clone()];
            for (how, cut, tail, other) in more {
                secrets.push(match how {
                    0 => first[..cut.min(first.len())].to_vec(),
                    1 => [first.clone(), tail].concat(),
                    // A run longer than an anchor: anchors that start one byte apart.
                    2 => [vec![b'a'; 30 + cut % 8], tail].concat(),
                    _ => other,
                });
            }
            secrets
        })
    }

    #[test]
    fn a_secret_that_repeats_itself_is_still_searched_in_linear_time() {
        // Every byte of the input starts the secret's anchor, and its first 999 bytes; none
        // holds the whole secret but the last.
        let secret = [vec![b'a'; 1000], b"b".to_vec()].concat();
        let known = KnownSecrets::new([&secret]).expect("build");
        let haystack = [vec![b'a'; 200_000], secret.clone()].concat();
        let found: Vec<KnownMatch> = known.find_iter(&haystack).collect();
        assert_eq!(found, every_form(&known, &haystack));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].start, 200_000);
        assert!(
            known.whole.get().is_some(),
            "the search switched to the automaton of whole forms"
        );
        // Ordinary input never needs it.
        let plain = KnownSecrets::new([&secret]).expect("build");
        let text = b"nothing secret here, aaaa and b".repeat(1000);
        assert_eq!(plain.find_iter(&text).count(), 0);
        assert!(plain.whole.get().is_none());
    }

    proptest! {
        #[test]
        fn anchored_search_finds_what_a_search_of_every_form_finds(
            (secrets, haystack) in related_secrets().prop_flat_map(|secrets| {
                let pieces = proptest::collection::vec(piece(secrets.clone()), 0..12);
                (Just(secrets), pieces.prop_map(|p| p.concat()))
            })
        ) {
            let known = KnownSecrets::new(&secrets).expect("build");
            let expected = every_form(&known, &haystack);
            let found: Vec<KnownMatch> = known.find_iter(&haystack).collect();
            prop_assert_eq!(&found, &expected);
            // Switching to the automaton of whole forms at once, or part way, changes nothing.
            for budget in [0, 40, 400] {
                let found: Vec<KnownMatch> = known.find_iter_comparing(&haystack, budget).collect();
                prop_assert_eq!(&found, &expected, "budget {}", budget);
            }
        }
    }

    #[test]
    fn base64_every_alignment() {
        let secret = b"correct-horse-battery";
        let known = KnownSecrets::new([secret]).expect("build");
        for prefix in ["", "a", "ab", "abc"] {
            let mut plain = prefix.as_bytes().to_vec();
            plain.extend_from_slice(secret);
            plain.extend_from_slice(b" and more");
            let encoded = base64::engine::general_purpose::STANDARD.encode(&plain);
            let found = known.find(encoded.as_bytes()).expect("found");
            assert_eq!(found.encoding, Encoding::Base64, "prefix {prefix:?}");
        }
    }
}
