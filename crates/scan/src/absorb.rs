//! Which keywords the scanner's automaton holds. Shared by the build script, which runs it
//! on the built-in rules so that no start of remit pays for it, and the engine, which runs it
//! on custom rules.
//!
//! Keywords are lowercased and deduplicated by the caller. A keyword that contains another
//! is dropped in favour of the shorter one, whose hits then also run the longer one's rules:
//! any occurrence of the longer is an occurrence of the shorter on the same line, and no two
//! kept keywords can then match at the same position.

use std::collections::HashMap;

/// `keywords`: each distinct lowercased keyword with the indexes of the rules that name it.
/// Returns the kept keywords, shortest first (then in byte order), each with the sorted,
/// distinct indexes of the rules of every keyword it absorbed.
pub(crate) fn absorb(keywords: HashMap<String, Vec<u32>>) -> Vec<(String, Vec<u32>)> {
    let mut ordered: Vec<(String, Vec<u32>)> = keywords.into_iter().collect();
    ordered.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.0.cmp(&b.0)));
    let mut kept: Vec<(String, Vec<u32>)> = Vec::with_capacity(ordered.len());
    let mut index_of: HashMap<String, usize> = HashMap::new();
    for (keyword, rule_ids) in ordered {
        let bytes = keyword.as_bytes();
        let mut absorbed = None;
        'search: for len in 1..bytes.len() {
            for start in 0..=bytes.len() - len {
                if let Ok(sub) = std::str::from_utf8(&bytes[start..start + len])
                    && let Some(&k) = index_of.get(sub)
                {
                    absorbed = Some(k);
                    break 'search;
                }
            }
        }
        match absorbed.and_then(|k| kept.get_mut(k)) {
            Some((_, target)) => {
                for id in rule_ids {
                    if !target.contains(&id) {
                        target.push(id);
                    }
                }
            }
            None => {
                index_of.insert(keyword.clone(), kept.len());
                kept.push((keyword, rule_ids));
            }
        }
    }
    for (_, ids) in &mut kept {
        ids.sort_unstable();
        ids.dedup();
    }
    kept
}
