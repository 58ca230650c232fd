//! The built-in keywords' automaton, made when remit is built.
//!
//! Building an Aho-Corasick automaton for the 300-odd built-in keywords took 0.7–1 ms of
//! every scanner's start (every task builds one to redact its records). `build.rs` makes a
//! complete DFA instead, over byte classes with ASCII case folded, and the binary carries its
//! transition table; [`Static::find`] walks it one byte at a time. Used for small inputs, as
//! the contiguous NFA was; large ones still go to the faster DFA built on demand.
//!
//! The search answers what a leftmost-first, ASCII-case-insensitive Aho-Corasick search
//! answers, because no keyword is a substring of another (`crate::absorb`): the first match
//! to end is then also the one that starts leftmost. A property test holds the two equal.

/// A complete DFA for a set of lowercase keywords, none a substring of another. Made by
/// `build.rs` (and the tests); the library itself only searches.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Built {
    /// Byte (case folded) to class; class 0 is every byte no keyword has.
    pub(crate) classes: [u8; 256],
    /// Classes per state.
    pub(crate) stride: usize,
    /// `next[state * stride + class]`. States from `first_match` on end a keyword.
    pub(crate) next: Vec<u16>,
    /// The first state that ends a keyword.
    pub(crate) first_match: u16,
    /// The keyword each matching state ends (`state - first_match`).
    pub(crate) matches: Vec<u16>,
}

/// Build the DFA. `None` when a keyword is empty, one is a substring of another, or the
/// states would not fit 16 bits.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn build(keywords: &[&str]) -> Option<Built> {
    if keywords.is_empty() || keywords.iter().any(|k| k.is_empty()) {
        return None;
    }
    for (i, a) in keywords.iter().enumerate() {
        for (j, b) in keywords.iter().enumerate() {
            if i != j && b.contains(a) {
                return None;
            }
        }
    }
    let mut classes = [0u8; 256];
    let mut count = 1usize;
    for byte in keywords.iter().flat_map(|k| k.bytes()) {
        let byte = byte.to_ascii_lowercase();
        if classes[byte as usize] == 0 {
            classes[byte as usize] = u8::try_from(count).ok()?;
            count += 1;
        }
    }
    for byte in 0..=255u8 {
        classes[byte as usize] = classes[byte.to_ascii_lowercase() as usize];
    }
    let stride = count;
    // The trie, in the order states are made; `ends[s]` is the keyword state `s` completes.
    let mut child: Vec<Vec<Option<usize>>> = vec![vec![None; stride]];
    let mut ends: Vec<Option<usize>> = vec![None];
    for (index, keyword) in keywords.iter().enumerate() {
        let mut state = 0;
        for byte in keyword.bytes() {
            let class = classes[byte.to_ascii_lowercase() as usize] as usize;
            state = match child[state][class] {
                Some(next) => next,
                None => {
                    child.push(vec![None; stride]);
                    ends.push(None);
                    let next = child.len() - 1;
                    child[state][class] = Some(next);
                    next
                }
            };
        }
        ends[state] = Some(index);
    }
    // Complete transitions in breadth-first order: a state's failure is shallower than it.
    let states = child.len();
    let mut delta = vec![0usize; states * stride];
    let mut fail = vec![0usize; states];
    let mut queue = std::collections::VecDeque::new();
    for class in 0..stride {
        if let Some(next) = child[0][class] {
            delta[class] = next;
            queue.push_back(next);
        }
    }
    while let Some(state) = queue.pop_front() {
        for class in 0..stride {
            let via_fail = delta[fail[state] * stride + class];
            match child[state][class] {
                Some(next) => {
                    fail[next] = via_fail;
                    delta[state * stride + class] = next;
                    queue.push_back(next);
                }
                None => delta[state * stride + class] = via_fail,
            }
        }
    }
    // Number states so that those ending a keyword come last (one comparison per byte).
    let mut order: Vec<usize> = (0..states).filter(|&s| ends[s].is_none()).collect();
    let first_match = order.len();
    order.extend((0..states).filter(|&s| ends[s].is_some()));
    let mut id = vec![0u16; states];
    for (new, &old) in order.iter().enumerate() {
        id[old] = u16::try_from(new).ok()?;
    }
    let mut next = vec![0u16; states * stride];
    for (new, &old) in order.iter().enumerate() {
        for class in 0..stride {
            next[new * stride + class] = id[delta[old * stride + class]];
        }
    }
    let matches = order[first_match..]
        .iter()
        .map(|&s| ends[s].and_then(|k| u16::try_from(k).ok()))
        .collect::<Option<Vec<u16>>>()?;
    Some(Built {
        classes,
        stride,
        next,
        first_match: u16::try_from(first_match).ok()?,
        matches,
    })
}

#[cfg_attr(not(test), allow(dead_code))]
impl Built {
    /// The transition table as the binary carries it (little-endian `u16`s).
    pub(crate) fn next_bytes(&self) -> Vec<u8> {
        self.next.iter().flat_map(|n| n.to_le_bytes()).collect()
    }
}

/// The built-in keywords' DFA, as compiled into the binary.
#[derive(Debug)]
pub(crate) struct Static {
    pub(crate) classes: [u8; 256],
    pub(crate) stride: usize,
    /// Little-endian `u16` transitions.
    pub(crate) next: &'static [u8],
    pub(crate) first_match: u16,
    pub(crate) matches: &'static [u16],
}

impl Static {
    /// The first keyword occurrence in `haystack[from..]`: its start and keyword index.
    pub(crate) fn find(
        &self,
        haystack: &[u8],
        from: usize,
        lens: &[usize],
    ) -> Option<(usize, usize)> {
        let mut state = 0usize;
        for (at, &byte) in haystack.get(from..)?.iter().enumerate() {
            let cell = (state * self.stride + self.classes[byte as usize] as usize) * 2;
            let next = self.next.get(cell..cell + 2)?;
            state = u16::from_le_bytes([next[0], next[1]]) as usize;
            if state >= self.first_match as usize {
                let keyword = *self.matches.get(state - self.first_match as usize)? as usize;
                let end = from + at + 1;
                return Some((end - lens.get(keyword)?, keyword));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use aho_corasick::{AhoCorasick, Input, MatchKind};
    use proptest::prelude::*;

    fn builtin_words() -> Vec<&'static str> {
        crate::rules::BUILTIN_KEYWORDS
            .iter()
            .map(|(k, _)| *k)
            .collect()
    }

    fn reference(words: &[&str]) -> AhoCorasick {
        AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostFirst)
            .build(words)
            .unwrap()
    }

    /// A table made here, searched as the binary searches its own.
    fn leak(built: Built) -> &'static Static {
        Box::leak(Box::new(Static {
            classes: built.classes,
            stride: built.stride,
            next: Box::leak(built.next_bytes().into_boxed_slice()),
            first_match: built.first_match,
            matches: Box::leak(built.matches.into_boxed_slice()),
        }))
    }

    /// Every start position of `haystack` answers as the reference automaton does.
    fn same_as_reference(dfa: &Static, words: &[&str], ac: &AhoCorasick, haystack: &[u8]) {
        let lens: Vec<usize> = words.iter().map(|w| w.len()).collect();
        for from in 0..=haystack.len() {
            let want = ac
                .find(Input::new(haystack).range(from..))
                .map(|m| (m.start(), m.pattern().as_usize()));
            assert_eq!(
                dfa.find(haystack, from, &lens),
                want,
                "from {from} in {:?}",
                String::from_utf8_lossy(haystack)
            );
        }
    }

    #[test]
    fn the_compiled_table_is_what_build_makes() {
        let built = build(&builtin_words()).unwrap();
        let compiled = &crate::rules::BUILTIN_KEYWORD_DFA;
        assert_eq!(built.classes, compiled.classes);
        assert_eq!(built.stride, compiled.stride);
        assert_eq!(built.first_match, compiled.first_match);
        assert_eq!(built.matches, compiled.matches);
        assert_eq!(built.next_bytes(), compiled.next);
    }

    #[test]
    fn keywords_that_cannot_make_an_automaton_are_refused() {
        assert_eq!(build(&[]), None);
        assert_eq!(build(&["abc", ""]), None);
        assert_eq!(build(&["abc", "xabcx"]), None);
        assert_eq!(build(&["abc", "ab"]), None);
        assert!(build(&["abc", "bcd", "x"]).is_some());
    }

    #[test]
    fn overlapping_keywords_in_any_case() {
        let words = ["aab", "aba", "bab", "bba", "ca-", "-z"];
        let dfa = leak(build(&words).unwrap());
        let ac = reference(&words);
        for haystack in [
            &b"aaabababbbaab"[..],
            b"AaBaBbA-zCA-Z",
            b"",
            b"a",
            b"xxbbAxx",
            b"\xff\x00ABA\x80",
        ] {
            same_as_reference(dfa, &words, &ac, haystack);
        }
    }

    /// Haystacks built from keywords (whole, cut short, in mixed case) and other bytes.
    fn haystack() -> impl Strategy<Value = Vec<u8>> {
        let words = builtin_words();
        let n = words.len();
        let piece = prop_oneof![
            (0..n, any::<u64>()).prop_map(move |(i, flips)| {
                let word = builtin_words()[i];
                word.bytes()
                    .enumerate()
                    .map(|(j, b)| {
                        if flips >> (j % 64) & 1 == 1 {
                            b.to_ascii_uppercase()
                        } else {
                            b
                        }
                    })
                    .collect::<Vec<u8>>()
            }),
            (0..n, 0usize..8).prop_map(|(i, cut)| {
                let word = builtin_words()[i].as_bytes();
                word[..word.len().saturating_sub(cut + 1)].to_vec()
            }),
            proptest::collection::vec(any::<u8>(), 0..6),
            proptest::collection::vec(prop::sample::select(b"-_:=./ aeiostxyz09".to_vec()), 0..6),
        ];
        proptest::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn the_builtin_automaton_answers_as_aho_corasick(haystack in haystack()) {
            let words = builtin_words();
            let ac = reference(&words);
            same_as_reference(&crate::rules::BUILTIN_KEYWORD_DFA, &words, &ac, &haystack);
        }
    }
}
