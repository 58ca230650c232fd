//! The remits the documentation shows are real remits: every TOML block of the README and
//! `docs/*.md` loads with `remit policy check` (compiled, validated against the schema, its
//! `[[test]]` entries passing), except blocks whose first line says they are not a remit
//! (an MCP client's configuration, a scanner rules file).

use std::path::Path;

use crate::support::{World, show};

#[test]
fn every_remit_in_the_docs_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut pages = vec![root.join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);

    let w = World::new();
    let mut checked = 0;
    let mut failures = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        let mut block: Option<(usize, String)> = None;
        for (i, line) in text.lines().enumerate() {
            match &mut block {
                None if line.trim_start() == "```toml" => block = Some((i + 2, String::new())),
                None => {}
                Some(_) if line.trim_start() == "```" => {
                    let (first, toml) = block.take().unwrap();
                    if toml
                        .lines()
                        .next()
                        .is_some_and(|l| l.contains("not a remit"))
                    {
                        continue;
                    }
                    let file = w.dir.path().join(format!("example-{checked}.remit.toml"));
                    std::fs::write(&file, &toml).unwrap();
                    checked += 1;
                    let out = w
                        .command()
                        .args(["policy", "check"])
                        .arg(&file)
                        .output()
                        .unwrap();
                    if !out.status.success() {
                        failures.push(format!(
                            "{}:{first}: {}",
                            page.strip_prefix(&root).unwrap_or(page).display(),
                            show(&out)
                        ));
                    }
                }
                Some((_, toml)) => {
                    toml.push_str(line);
                    toml.push('\n');
                }
            }
        }
    }
    assert!(checked >= 8, "only {checked} remits found in the docs");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
