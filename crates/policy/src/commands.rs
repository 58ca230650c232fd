//! Command rules: allow / forbid / prompt by argv prefix, strictest wins.
//!
//! A rule names a program and the words that must follow it (`["git", "push"]`). Matching is
//! made for how commands are really spelled: the program is recognised by every name it is
//! reached under (the path it was started from, `argv[0]`, the binary it is a copy of, the
//! interpreter of a script, the program a loader or multi-call binary runs), and the words
//! are matched in order while skipping options (`git -C repo -c x=y push`), including the
//! option values the common tools take and `-c alias.x=push` aliases.

use std::collections::BTreeSet;
use std::fmt;

use remit_types::remit::{CommandDefault, CommandRule, Commands};

/// What a rule says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CommandVerdict {
    /// May run.
    Allow,
    /// Needs a human to confirm this run.
    Prompt,
    /// May not run.
    Forbid,
}

impl fmt::Display for CommandVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CommandVerdict::Allow => "allow",
            CommandVerdict::Prompt => "prompt",
            CommandVerdict::Forbid => "forbid",
        })
    }
}

/// The decision for one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandDecision {
    /// The verdict.
    pub verdict: CommandVerdict,
    /// The rule that decided, `None` when the remit's default did.
    pub rule: Option<(CommandVerdict, CommandRule)>,
    /// The program name the rule matched (or the name the default applied to).
    pub program: String,
}

impl CommandDecision {
    /// Where the decision came from, as a remit path: `commands.forbid \`git push\``.
    pub fn source(&self) -> String {
        match &self.rule {
            Some((verdict, rule)) => format!("commands.{verdict} `{rule}`"),
            None => "commands.default".into(),
        }
    }
}

/// What is known about one program start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecFacts {
    /// The path handed to `execve`.
    pub path: String,
    /// The arguments, `argv[0]` first.
    pub argv: Vec<String>,
    /// Rule program names whose binaries this file is (same inode, or same contents).
    pub identical_to: Vec<String>,
    /// `#!` line of the file, when it is a script.
    pub interpreter: Option<Vec<String>>,
    /// When the file is a dynamic loader: rule program names whose binaries the file it
    /// was asked to run ([`loader_target`]) is, identified like the started file.
    pub launched: Vec<String>,
}

/// A remit's command rules, ready to decide.
#[derive(Debug, Clone, Default)]
pub struct CommandRules {
    default: CommandDefault,
    rules: Vec<(CommandVerdict, CommandRule)>,
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Options taking a separate value, per tool, that come before a subcommand.
fn value_options(program: &str) -> &'static [&'static str] {
    match program {
        "git" => &[
            "-C",
            "-c",
            "--git-dir",
            "--work-tree",
            "--namespace",
            "--super-prefix",
            "--config-env",
            "--exec-path",
        ],
        "npm" | "pnpm" | "yarn" | "npx" => &[
            "--prefix",
            "-C",
            "--registry",
            "-w",
            "--workspace",
            "--userconfig",
            "--cache",
            "--loglevel",
            "--otp",
        ],
        "cargo" => &[
            "--manifest-path",
            "--config",
            "-Z",
            "-C",
            "--color",
            "--target-dir",
        ],
        "docker" | "podman" => &[
            "-H",
            "--host",
            "--context",
            "-c",
            "--config",
            "-l",
            "--log-level",
        ],
        "kubectl" | "helm" => &[
            "-n",
            "--namespace",
            "--context",
            "--kubeconfig",
            "-s",
            "--server",
            "--cluster",
            "--user",
        ],
        "pip" | "pip3" => &[
            "--python",
            "--log",
            "--proxy",
            "--cert",
            "--client-cert",
            "--cache-dir",
        ],
        "gh" => &["-R", "--repo", "--hostname"],
        "aws" => &["--profile", "--region", "--endpoint-url", "--output"],
        "gcloud" => &["--project", "--account", "--configuration"],
        "terraform" | "tofu" => &["-chdir"],
        _ => &[],
    }
}

/// Programs that run another program named by their first non-option argument in the same
/// process (so no second `execve` is seen).
fn is_launcher(program: &str) -> bool {
    program == "busybox" || program == "toybox" || is_loader(program)
}

/// Whether `program` names a dynamic loader (`ld.so`, `ld-linux-x86-64.so.2`, `ld-musl-…`),
/// which runs the file its first argument names: a file the kernel never sees started.
pub fn is_loader(program: &str) -> bool {
    program == "ld.so"
        || (program.starts_with("ld-linux") && program.contains(".so"))
        || program.starts_with("ld-musl")
}

/// The loader's options that take a separate value (`ld.so --argv0 NAME PROGRAM`).
const LOADER_VALUE_OPTIONS: [&str; 6] = [
    "--argv0",
    "--library-path",
    "--preload",
    "--audit",
    "--glibc-hwcaps-prepend",
    "--glibc-hwcaps-mask",
];

/// Index (in `args`, the words after the program) of the program a launcher runs: the first
/// word that is not an option, a loader's option values skipped (`--argv0 cat /usr/bin/touch`
/// runs `touch`, not `cat`).
fn launched_index(launcher: &str, args: &[String]) -> Option<usize> {
    let loader = is_loader(launcher);
    let mut i = 0;
    while let Some(word) = args.get(i) {
        if word == "--" {
            return (i + 1 < args.len()).then_some(i + 1);
        }
        if !word.starts_with('-') {
            return Some(i);
        }
        i += if loader && LOADER_VALUE_OPTIONS.contains(&word.as_str()) {
            2
        } else {
            1
        };
    }
    None
}

/// The program file a dynamic loader started as `argv` would run, as written
/// (`ld.so --argv0 cat ./x` gives `./x`).
pub fn loader_target(argv: &[String]) -> Option<&str> {
    let args = argv.get(1..)?;
    launched_index("ld.so", args).map(|i| args[i].as_str())
}

impl CommandRules {
    /// Compile a remit's `[commands]`.
    pub fn new(commands: &Commands) -> CommandRules {
        let mut rules = Vec::new();
        for rule in &commands.allow {
            rules.push((CommandVerdict::Allow, rule.clone()));
        }
        for rule in &commands.prompt {
            rules.push((CommandVerdict::Prompt, rule.clone()));
        }
        for rule in &commands.forbid {
            rules.push((CommandVerdict::Forbid, rule.clone()));
        }
        CommandRules {
            default: commands.default,
            rules,
        }
    }

    /// Every program name a rule mentions.
    pub fn programs(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.rules.iter().map(|(_, r)| r.program()).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Programs forbidden outright (a rule with no words after the program).
    pub fn forbidden_programs(&self) -> Vec<&str> {
        self.rules
            .iter()
            .filter(|(v, r)| *v == CommandVerdict::Forbid && r.rest().is_empty())
            .map(|(_, r)| r.program())
            .collect()
    }

    /// Programs the remit allows when its default is deny (`None` when the default allows).
    pub fn allowlist(&self) -> Option<Vec<&str>> {
        (self.default == CommandDefault::Deny).then(|| {
            self.rules
                .iter()
                .filter(|(v, _)| *v == CommandVerdict::Allow)
                .map(|(_, r)| r.program())
                .collect()
        })
    }

    /// Whether there is anything to decide (rules or a deny default).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.default == CommandDefault::Allow
    }

    /// The rules a command matches, as (section, index within the section).
    pub fn matching(&self, words: &CommandWords) -> Vec<(CommandVerdict, usize)> {
        let mut counters = [0usize; 3];
        let mut out = Vec::new();
        for (verdict, rule) in &self.rules {
            let slot = match verdict {
                CommandVerdict::Allow => 0,
                CommandVerdict::Prompt => 1,
                CommandVerdict::Forbid => 2,
            };
            let index = counters[slot];
            counters[slot] += 1;
            // An allow rule grants only under a name the started file gives.
            let names = if *verdict == CommandVerdict::Allow {
                &words.granting
            } else {
                &words.prefixes
            };
            if names.contains(&rule.0.join(" ")) {
                out.push((*verdict, index));
            }
        }
        out
    }

    /// Whether commands not named by a rule may run.
    pub fn default_allows(&self) -> bool {
        self.default == CommandDefault::Allow
    }

    /// The rule at `index` of a section.
    pub fn rule(&self, section: CommandVerdict, index: usize) -> Option<&CommandRule> {
        self.rules
            .iter()
            .filter(|(v, _)| *v == section)
            .nth(index)
            .map(|(_, r)| r)
    }

    /// Decide one program start. A rule that forbids or prompts matches the command under
    /// any name it is reached by; a rule that allows only under a name the started file
    /// itself gives (its path, its identity, its `#!` interpreter, the program a loader or
    /// multi-call binary runs), never under `argv[0]` alone, which the caller chooses
    /// freely (`exec -a cat ./anything`).
    pub fn decide(&self, facts: &ExecFacts) -> CommandDecision {
        let words = command_words(facts);
        let mut best: Option<CommandDecision> = None;
        for (verdict, rule) in &self.rules {
            let names = if *verdict == CommandVerdict::Allow {
                &words.granting
            } else {
                &words.prefixes
            };
            if !names.contains(&rule.0.join(" ")) {
                continue;
            }
            let better = best.as_ref().is_none_or(|b| *verdict > b.verdict);
            if better {
                best = Some(CommandDecision {
                    verdict: *verdict,
                    rule: Some((*verdict, rule.clone())),
                    program: rule.program().to_owned(),
                });
            }
        }
        best.unwrap_or(CommandDecision {
            verdict: match self.default {
                CommandDefault::Allow => CommandVerdict::Allow,
                CommandDefault::Deny => CommandVerdict::Forbid,
            },
            rule: None,
            program: words.program,
        })
    }
}

/// Longest rule, in words; longer rules are refused at load.
pub const MAX_RULE_WORDS: usize = 8;

/// A program start reduced to what rules match against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandWords {
    /// The program's name (the file name it was started from).
    pub program: String,
    /// The command line, for messages.
    pub line: String,
    /// Every word prefix of the command, under every name the program is reached by: once
    /// with options skipped (`git -C repo push` gives `git`, `git push`) and once with
    /// options kept (`python -m pip` gives `python -m`, `python -m pip`). A rule matches
    /// when its words, joined by spaces, are one of these.
    pub prefixes: BTreeSet<String>,
    /// The prefixes under the names the started file itself gives: all of `prefixes` but
    /// those reached only through `argv[0]`. What an allow rule must match.
    pub granting: BTreeSet<String>,
}

/// Reduce a program start to its word prefixes.
pub fn command_words(facts: &ExecFacts) -> CommandWords {
    let args: Vec<String> = facts.argv.iter().skip(1).cloned().collect();
    // Names the started file gives (its path, its identity), then `argv[0]`, which only the
    // caller vouches for.
    let mut names: Vec<(String, bool)> = vec![(basename(&facts.path).to_owned(), true)];
    names.extend(facts.identical_to.iter().map(|n| (n.clone(), true)));
    if let Some(arg0) = facts.argv.first() {
        names.push((basename(arg0).to_owned(), false));
    }
    names.retain(|(n, _)| !n.is_empty());
    let program = names.first().map(|(n, _)| n.clone()).unwrap_or_default();
    // One entry per name, vouched for if any source vouches for it.
    names.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    names.dedup_by(|a, b| a.0 == b.0);
    let mut candidates: Vec<(String, Vec<String>, bool)> = Vec::new();
    for (name, vouched) in &names {
        candidates.push((name.clone(), args.clone(), *vouched));
        // git runs `git-push` (as a program or an `argv[0]`, `/usr/lib/git-core/git-push`)
        // as `git push`.
        if let Some(sub) = name.strip_prefix("git-").filter(|s| !s.is_empty()) {
            let mut words = vec![sub.to_owned()];
            words.extend(args.iter().cloned());
            candidates.push(("git".to_owned(), words, *vouched));
        }
        if is_launcher(name)
            && let Some(i) = launched_index(name, &args)
        {
            let rest = args[i + 1..].to_vec();
            candidates.push((basename(&args[i]).to_owned(), rest.clone(), *vouched));
            if is_loader(name) {
                // The file it runs, by identity: a copy of a program under another name.
                for launched in &facts.launched {
                    candidates.push((launched.clone(), rest.clone(), *vouched));
                }
                // The `argv[0]` it gives that program: like any `argv[0]`, only stricter.
                if let Some(at) = args[..i].iter().position(|a| a == "--argv0")
                    && let Some(arg0) = args.get(at + 1)
                {
                    candidates.push((basename(arg0).to_owned(), rest.clone(), false));
                }
            }
        }
    }
    if let Some(interp) = &facts.interpreter
        && let Some(interpreter) = interp.first()
    {
        // `#!/usr/bin/curl -K` runs curl with the line's arguments, then the script.
        let mut words: Vec<String> = interp[1..].to_vec();
        words.push(facts.path.clone());
        words.extend(args.iter().cloned());
        candidates.push((basename(interpreter).to_owned(), words, true));
    }
    let mut prefixes = BTreeSet::new();
    let mut granting = BTreeSet::new();
    for (name, words, vouched) in &candidates {
        for sequence in [
            positional(name, words),
            words.iter().take(MAX_RULE_WORDS).cloned().collect(),
        ] {
            let mut prefix = name.clone();
            let mut add = |prefix: &String| {
                prefixes.insert(prefix.clone());
                if *vouched {
                    granting.insert(prefix.clone());
                }
            };
            add(&prefix);
            for word in sequence.iter().take(MAX_RULE_WORDS - 1) {
                prefix.push(' ');
                prefix.push_str(word);
                add(&prefix);
            }
        }
    }
    let mut line = facts.argv.join(" ");
    if line.len() > 200 {
        let mut cut = 200;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
    }
    CommandWords {
        program,
        line,
        prefixes,
        granting,
    }
}

/// The words after the program with options (and the values the tool's options take)
/// removed, `--` honoured, and a git alias given with `-c alias.x=...` expanded.
fn positional(program: &str, args: &[String]) -> Vec<String> {
    let takes_value = value_options(program);
    let aliases: Vec<(String, Vec<String>)> = if program == "git" {
        args.windows(2)
            .filter(|w| w[0] == "-c")
            .filter_map(|w| {
                let (key, value) = w[1].split_once('=')?;
                // Configuration keys are case-insensitive (`Alias.P` is `alias.p`).
                let key = key.to_ascii_lowercase();
                let name = key.strip_prefix("alias.")?;
                (!value.starts_with('!')).then(|| {
                    (
                        name.to_owned(),
                        value.split_whitespace().map(str::to_owned).collect(),
                    )
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    let mut options_done = false;
    while i < args.len() && out.len() < MAX_RULE_WORDS {
        let arg = &args[i];
        if !options_done && arg == "--" {
            options_done = true;
        } else if !options_done
            && ((arg.starts_with('-') && arg.len() > 1)
                || (program == "cargo" && arg.starts_with('+')))
        {
            if !arg.contains('=') && takes_value.contains(&arg.as_str()) {
                i += 1;
            }
        } else {
            out.push(arg.clone());
        }
        i += 1;
    }
    if let Some(first) = out.first()
        && let Some((_, expansion)) = aliases
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(first))
    {
        out.splice(0..1, expansion.iter().cloned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> CommandRules {
        let loaded = remit_types::remit::parse(text, "t", ".".into()).unwrap();
        CommandRules::new(&loaded.remit.commands)
    }

    fn facts(path: &str, argv: &[&str]) -> ExecFacts {
        ExecFacts {
            path: path.into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            ..ExecFacts::default()
        }
    }

    fn verdict(r: &CommandRules, path: &str, argv: &[&str]) -> CommandVerdict {
        r.decide(&facts(path, argv)).verdict
    }

    const REMIT: &str = r#"
[commands]
allow = ["git"]
forbid = ["git push", "npm publish", "curl", "python -m pip install"]
prompt = ["cargo publish", "git"]
"#;

    #[test]
    fn strictest_wins() {
        let r = rules(REMIT);
        // `git status` matches allow [git] and prompt [git]: prompt is stricter.
        assert_eq!(
            verdict(&r, "/usr/bin/git", &["git", "status"]),
            CommandVerdict::Prompt
        );
        assert_eq!(
            verdict(&r, "/usr/bin/git", &["git", "push"]),
            CommandVerdict::Forbid
        );
        assert_eq!(verdict(&r, "/usr/bin/ls", &["ls"]), CommandVerdict::Allow);
    }

    #[test]
    fn options_and_values_are_skipped() {
        let r = rules("[commands]\nforbid = [\"git push\"]\n");
        for argv in [
            &["git", "push"][..],
            &["git", "-C", "/repo", "push", "origin", "main"],
            &["git", "-c", "user.name=x", "--no-pager", "push"],
            &["git", "--git-dir=/r/.git", "push", "--force"],
            &["git", "-c", "alias.p=push", "p"],
        ] {
            assert_eq!(
                verdict(&r, "/usr/bin/git", argv),
                CommandVerdict::Forbid,
                "{argv:?}"
            );
        }
        for argv in [
            &["git", "status"][..],
            &["git", "commit", "-m", "push"],
            &["git", "-C", "push", "status"],
            &["git", "log", "--", "push"],
        ] {
            assert_eq!(
                verdict(&r, "/usr/bin/git", argv),
                CommandVerdict::Allow,
                "{argv:?}"
            );
        }
    }

    #[test]
    fn program_is_recognised_under_any_name() {
        let r = rules("[commands]\nforbid = [\"curl\"]\n");
        // Absolute path, relative path, argv[0] lie, a copy, a symlink, a script, a loader.
        assert_eq!(
            verdict(&r, "/usr/bin/curl", &["curl", "x"]),
            CommandVerdict::Forbid
        );
        assert_eq!(verdict(&r, "./curl", &["./curl"]), CommandVerdict::Forbid);
        assert_eq!(
            verdict(&r, "/usr/bin/curl", &["innocent"]),
            CommandVerdict::Forbid
        );
        let copy = ExecFacts {
            path: "/w/fetch".into(),
            argv: vec!["fetch".into()],
            identical_to: vec!["curl".into()],
            ..ExecFacts::default()
        };
        assert_eq!(r.decide(&copy).verdict, CommandVerdict::Forbid);
        let script = ExecFacts {
            path: "/w/x".into(),
            argv: vec!["x".into()],
            interpreter: Some(vec!["/usr/bin/curl".into(), "-K".into()]),
            ..ExecFacts::default()
        };
        assert_eq!(r.decide(&script).verdict, CommandVerdict::Forbid);
        assert_eq!(
            verdict(
                &r,
                "/lib64/ld-linux-x86-64.so.2",
                &["ld.so", "/usr/bin/curl", "x"]
            ),
            CommandVerdict::Forbid
        );
        assert_eq!(
            verdict(&r, "/bin/busybox", &["busybox", "curl", "x"]),
            CommandVerdict::Forbid
        );
        assert_eq!(
            verdict(&r, "/usr/bin/wget", &["wget"]),
            CommandVerdict::Allow
        );
    }

    #[test]
    fn literal_option_words() {
        let r = rules(REMIT);
        assert_eq!(
            verdict(
                &r,
                "/usr/bin/python",
                &["python", "-m", "pip", "install", "x"]
            ),
            CommandVerdict::Forbid
        );
        assert_eq!(
            verdict(&r, "/usr/bin/python", &["python", "-m", "pytest"]),
            CommandVerdict::Allow
        );
    }

    /// A loader runs the file its program argument names, past its own options' values; a
    /// copy of a forbidden program run through it is known by its identity.
    #[test]
    fn a_loader_runs_what_its_options_do_not_hide() {
        let r = rules("[commands]\nforbid = [\"touch\"]\n");
        let loader = "/lib64/ld-linux-x86-64.so.2";
        for argv in [
            &["ld.so", "--argv0", "cat", "/usr/bin/touch", "x"][..],
            &[
                "ld.so",
                "--library-path",
                "/lib",
                "--preload",
                "x.so",
                "/usr/bin/touch",
            ],
            &["ld.so", "--inhibit-cache", "--", "/usr/bin/touch"],
        ] {
            assert_eq!(
                verdict(&r, loader, argv),
                CommandVerdict::Forbid,
                "{argv:?}"
            );
        }
        let argv: Vec<String> = ["ld.so", "--argv0", "cat", "./brought-along", "x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(loader_target(&argv), Some("./brought-along"));
        let copy = ExecFacts {
            path: loader.into(),
            argv: argv.clone(),
            launched: vec!["touch".into()],
            ..ExecFacts::default()
        };
        assert_eq!(r.decide(&copy).verdict, CommandVerdict::Forbid);
        // The twin: the loader running an allowed program.
        assert_eq!(
            verdict(&r, loader, &["ld.so", "--argv0", "touch", "/usr/bin/cat"]),
            CommandVerdict::Forbid,
            "argv[0] still makes a decision stricter"
        );
        assert_eq!(
            verdict(&r, loader, &["ld.so", "/usr/bin/cat", "x"]),
            CommandVerdict::Allow
        );
    }

    /// Under a deny default, `argv[0]` can make a decision stricter but never grant one.
    #[test]
    fn argv0_never_grants() {
        let r = rules("[commands]\ndefault = \"deny\"\nallow = [\"cat\", \"sh\"]\n");
        assert_eq!(
            verdict(&r, "/w/brought-along", &["cat", "x"]),
            CommandVerdict::Forbid
        );
        assert_eq!(
            verdict(&r, "/memfd:x (deleted)", &["cat", "x"]),
            CommandVerdict::Forbid
        );
        let loader = "/lib64/ld-linux-x86-64.so.2";
        assert_eq!(
            verdict(&r, loader, &["cat", "/usr/bin/touch", "x"]),
            CommandVerdict::Forbid
        );
        // Twins: the allowed program under its own name, or as a copy of it.
        assert_eq!(
            verdict(&r, "/usr/bin/cat", &["cat", "x"]),
            CommandVerdict::Allow
        );
        assert_eq!(
            verdict(&r, "/usr/bin/cat", &["kitty"]),
            CommandVerdict::Allow
        );
        let copy = ExecFacts {
            path: "/w/kitty".into(),
            argv: vec!["cat".into()],
            identical_to: vec!["cat".into()],
            ..ExecFacts::default()
        };
        assert_eq!(r.decide(&copy).verdict, CommandVerdict::Allow);
    }

    #[test]
    fn default_deny() {
        let r = rules("[commands]\ndefault = \"deny\"\nallow = [\"sh\", \"cargo\"]\n");
        assert_eq!(
            verdict(&r, "/bin/sh", &["sh", "-c", "x"]),
            CommandVerdict::Allow
        );
        let d = r.decide(&facts("/usr/bin/ls", &["ls"]));
        assert_eq!(d.verdict, CommandVerdict::Forbid);
        assert_eq!(d.source(), "commands.default");
        assert_eq!(r.allowlist(), Some(vec!["sh", "cargo"]));
    }

    #[test]
    fn forbidden_programs_are_whole_program_rules() {
        let r = rules(REMIT);
        assert_eq!(r.forbidden_programs(), vec!["curl"]);
        assert!(r.programs().contains(&"cargo"));
    }
}
