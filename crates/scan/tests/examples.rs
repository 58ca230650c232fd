//! Every rule's examples, in isolation (as a user rule file is checked at load) and against
//! the whole built-in set (where rules compete for the same bytes).

use remit_scan::Rules;

use crate::support::{rule_files, scanner};

#[derive(serde::Deserialize)]
struct File {
    rule: Vec<Example>,
}

#[derive(serde::Deserialize)]
struct Example {
    id: String,
    #[serde(rename = "match")]
    matches: Vec<String>,
    not_match: Vec<String>,
}

#[test]
fn every_rule_file_loads_and_its_examples_hold_in_isolation() {
    for (name, text) in rule_files() {
        if let Err(err) = Rules::from_toml(&name, &text) {
            panic!("{err}");
        }
    }
}

#[test]
fn examples_hold_against_the_whole_rule_set() {
    let scanner = scanner();
    let mut failures = Vec::new();
    for (name, text) in rule_files() {
        let file: File = toml::from_str(&text).expect("parse");
        for rule in file.rule {
            for (i, example) in rule.matches.iter().enumerate() {
                // Alone, at the end of a line, and between other lines.
                for text in [
                    example.clone(),
                    format!("{example}\n"),
                    format!("first line\n{example}\r\nlast line\n"),
                ] {
                    let found = scanner.scan_bytes(text.as_bytes());
                    if !found.iter().any(|f| *f.rule == *rule.id) {
                        let got: Vec<_> = found.iter().map(|f| f.rule.to_string()).collect();
                        failures.push(format!(
                            "{name}: `{}` match {}: found {got:?}",
                            rule.id,
                            i + 1
                        ));
                    }
                }
            }
            for (i, example) in rule.not_match.iter().enumerate() {
                let found = scanner.scan_bytes(example.as_bytes());
                if found.iter().any(|f| *f.rule == *rule.id) {
                    failures.push(format!("{name}: `{}` not_match {} matched", rule.id, i + 1));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn at_least_150_formats_and_every_rule_is_built_in() {
    let builtin = Rules::builtin();
    assert!(builtin.len() >= 150, "only {} rules", builtin.len());
    let mut from_files = 0;
    for (name, text) in rule_files() {
        let rules = Rules::from_toml(&name, &text).expect("load");
        for rule in rules.iter() {
            let compiled = builtin.get(rule.id()).expect("built-in");
            assert_eq!(compiled.pattern(), rule.pattern());
            from_files += 1;
        }
    }
    assert_eq!(from_files, builtin.len());
    assert!(scanner().compile_all().is_empty());
}
