//! Compile the reviewed rule files under `rules/` into static data.
//!
//! A bad rule file fails the build with its file and line, and the binary parses no TOML at
//! start-up (`remit scan` runs on every command's output, so start-up time matters). Examples
//! stay in the TOML: the test suite checks them; they are not compiled in.

use std::fmt::Write as _;
use std::path::Path;

#[path = "src/rulefile.rs"]
#[allow(dead_code, unreachable_pub)]
mod rulefile;

#[path = "src/absorb.rs"]
mod absorb;

#[path = "src/keyword_dfa.rs"]
#[allow(dead_code, unreachable_pub)]
mod keyword_dfa;

fn check_pattern(pattern: &str) -> Result<(), String> {
    regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(pattern)
        .map(|_| ())
        .map_err(|err| err.to_string().replace('\n', " "))
}

fn main() {
    println!("cargo::rerun-if-changed=rules");
    println!("cargo::rerun-if-changed=src/rulefile.rs");
    println!("cargo::rerun-if-changed=src/absorb.rs");
    println!("cargo::rerun-if-changed=src/keyword_dfa.rs");
    let dir = Path::new("rules");
    let mut files: Vec<_> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect(),
        Err(err) => fail(&format!("cannot read `rules/`: {err}")),
    };
    files.sort();
    let mut out = String::from("pub(crate) static BUILTIN: &[BuiltinRule] = &[\n");
    let mut seen: Vec<(String, String)> = Vec::new();
    // Each lowercased keyword with the indexes (in `BUILTIN`'s order) of the rules naming it.
    let mut by_keyword: std::collections::HashMap<String, Vec<u32>> =
        std::collections::HashMap::new();
    for path in &files {
        println!("cargo::rerun-if-changed={}", path.display());
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) => fail(&format!("cannot read `rules/{name}`: {err}")),
        };
        let rules = match rulefile::parse(&text, &check_pattern) {
            Ok(rules) => rules,
            Err(err) => fail(&format!("rules/{name}:{}: {}", err.line, err.message)),
        };
        for located in rules {
            let r = &located.rule;
            if let Some((_, other)) = seen.iter().find(|(id, _)| *id == r.id) {
                fail(&format!(
                    "rules/{name}:{}: rule id `{}` is already defined in `rules/{other}`",
                    located.line, r.id
                ));
            }
            seen.push((r.id.clone(), name.clone()));
            let Ok(index) = u32::try_from(seen.len() - 1) else {
                fail("too many rules");
            };
            for keyword in &r.keywords {
                let entry = by_keyword.entry(keyword.to_ascii_lowercase()).or_default();
                if !entry.contains(&index) {
                    entry.push(index);
                }
            }
            let _ = writeln!(
                out,
                "    BuiltinRule {{ id: {:?}, file: {:?}, line: {}, description: {:?}, \
                 severity: {:?}, keywords: &{:?}, pattern: {:?}, entropy: {:?}, \
                 validator: {:?}, generic: {:?}, multiline: {:?} }},",
                r.id,
                name,
                located.line,
                r.description,
                r.severity,
                r.keywords,
                r.pattern,
                r.entropy,
                r.validator,
                r.generic,
                r.multiline,
            );
        }
    }
    out.push_str("];\n");
    // The keyword automaton's input for the built-in rules, as the engine would choose it.
    out.push_str("pub(crate) static BUILTIN_KEYWORDS: &[(&str, &[u32])] = &[\n");
    let kept = absorb::absorb(by_keyword);
    for (keyword, ids) in &kept {
        let _ = writeln!(out, "    ({keyword:?}, &{ids:?}),");
    }
    out.push_str("];\n");
    let Some(out_dir) = std::env::var_os("OUT_DIR") else {
        fail("OUT_DIR is not set");
    };
    // Their automaton, made now rather than at every start.
    let words: Vec<&str> = kept.iter().map(|(k, _)| k.as_str()).collect();
    let Some(dfa) = keyword_dfa::build(&words) else {
        fail("the built-in keywords make no automaton (one is empty or inside another)");
    };
    if let Err(err) = std::fs::write(
        Path::new(&out_dir).join("keyword_dfa.bin"),
        dfa.next_bytes(),
    ) {
        fail(&format!("cannot write the keyword automaton: {err}"));
    }
    let _ = writeln!(
        out,
        "pub(crate) static BUILTIN_KEYWORD_DFA: crate::keyword_dfa::Static = \
         crate::keyword_dfa::Static {{ classes: {:?}, stride: {}, \
         next: include_bytes!(concat!(env!(\"OUT_DIR\"), \"/keyword_dfa.bin\")), \
         first_match: {}, matches: &{:?} }};",
        dfa.classes, dfa.stride, dfa.first_match, dfa.matches
    );
    if let Err(err) = std::fs::write(Path::new(&out_dir).join("builtin_rules.rs"), out) {
        fail(&format!("cannot write the compiled rules: {err}"));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}
