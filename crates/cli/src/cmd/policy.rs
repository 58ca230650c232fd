//! `remit policy check|test|explain|schema`: a remit's policy, offline.

use std::path::PathBuf;

use anyhow::Context;
use remit_policy::engine::{Decision, Engine, Principal, Situation};
use remit_types::effect::Effect;

use crate::exit::Outcome;

/// `remit policy` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Load a remit: compile it to Cedar, validate it against the schema (strict), run its
    /// `[[test]]` entries.
    Check {
        /// The remit.
        file: PathBuf,
        /// Also print every compiled policy.
        #[arg(long)]
        show: bool,
    },
    /// Run a remit's `[[test]]` entries and report each.
    Test {
        /// The remit.
        file: PathBuf,
    },
    /// Decide one effect and say which policies matched and why. The effect is given as
    /// `kind=…` and fields: `kind=exec command="git push origin"`, `kind=git_push
    /// ref=refs/heads/main force=true`, `kind=publish args.tag=latest`.
    Explain {
        /// The remit.
        file: PathBuf,
        /// `key=value` fields of the effect.
        #[arg(required = true, num_args = 1..)]
        effect: Vec<String>,
        /// Decide as if the approvals it needs were given.
        #[arg(long)]
        approved: bool,
    },
    /// Print the Cedar schema the remit's policies are validated against.
    Schema {
        /// The remit.
        file: PathBuf,
    },
}

fn load(file: &std::path::Path) -> anyhow::Result<Engine> {
    let loaded = remit_types::remit::load(file)?;
    Ok(Engine::load(&loaded)?)
}

fn principal() -> Principal {
    Principal {
        task: "explain".into(),
        agent: "explain".into(),
        owner: String::new(),
        requester: String::new(),
        remit: String::new(),
        risk: String::new(),
    }
}

/// Parse `kind=exec command="git push"` into an effect (through the same TOML shape a
/// `[[test]]` uses).
fn parse_effect(fields: &[String]) -> anyhow::Result<Effect> {
    let mut table = toml::Table::new();
    let mut args = toml::Table::new();
    for field in fields {
        let (key, value) = field
            .split_once('=')
            .with_context(|| format!("`{field}` is not KEY=VALUE"))?;
        let value = match value {
            "true" => toml::Value::Boolean(true),
            "false" => toml::Value::Boolean(false),
            v => v
                .parse::<i64>()
                .map(toml::Value::Integer)
                .unwrap_or_else(|_| toml::Value::String(v.to_owned())),
        };
        match key.strip_prefix("args.") {
            Some(name) => {
                args.insert(name.to_owned(), value);
            }
            None => {
                table.insert(key.to_owned(), value);
            }
        }
    }
    if !args.is_empty() {
        table.insert("args".into(), toml::Value::Table(args));
    }
    let effect: Effect = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| anyhow::anyhow!("invalid effect: {}", e.message()))?;
    Ok(effect)
}

pub(crate) fn run(command: Command) -> anyhow::Result<Outcome> {
    match command {
        Command::Check { file, show } => {
            let engine = load(&file)?;
            let policies = engine.policies();
            let tests = engine.test_outcomes();
            println!(
                "{}: {} polic{} valid against the schema; {} test{} pass",
                file.display(),
                policies.len(),
                if policies.len() == 1 { "y" } else { "ies" },
                tests.len(),
                if tests.len() == 1 { "" } else { "s" }
            );
            if show {
                for p in policies {
                    println!("\n// {} ({})\n{}", p.id, p.origin, p.text);
                }
            }
            Ok(Outcome::Success)
        }
        Command::Test { file } => {
            let loaded = remit_types::remit::load(&file)?;
            // Load without failing on a test, to report every test.
            let engine = match Engine::load(&loaded) {
                Ok(e) => e,
                Err(e) if e.message.starts_with("test ") => {
                    println!("FAIL {e}");
                    return Ok(Outcome::Denied);
                }
                Err(e) => return Err(e.into()),
            };
            let outcomes = engine.test_outcomes();
            for t in &outcomes {
                println!(
                    "{} line {}: {} (expected {:?}, got {})",
                    if t.passed() { "ok  " } else { "FAIL" },
                    t.line,
                    t.name,
                    t.expected,
                    t.decision.label()
                );
            }
            println!(
                "{} test{}, {} failed",
                outcomes.len(),
                if outcomes.len() == 1 { "" } else { "s" },
                outcomes.iter().filter(|t| !t.passed()).count()
            );
            Ok(if outcomes.iter().all(|t| t.passed()) {
                Outcome::Success
            } else {
                Outcome::Denied
            })
        }
        Command::Explain {
            file,
            effect,
            approved,
        } => {
            let engine = load(&file)?;
            let effect = parse_effect(&effect)?;
            engine.check_request(&effect)?;
            let mut situation = Situation::default();
            if approved
                && let Decision::NeedsApproval { requirements, .. } =
                    engine.decide(&principal(), &effect, &situation)
            {
                situation.approvals = requirements.into_iter().map(|r| r.id).collect();
            }
            let decision = engine.decide_full(&principal(), &effect, &situation);
            println!("effect: {}", effect.describe());
            for line in engine.explain(&principal(), &effect, &situation) {
                println!("  {line}");
            }
            match &decision {
                Decision::Allow { policies } => {
                    println!("decision: allow (by {})", policies.join(", "))
                }
                Decision::Deny { policy, reason } => {
                    println!("decision: deny (policy `{policy}`): {reason}")
                }
                Decision::NeedsApproval { requirements, .. } => {
                    let reqs: Vec<String> = requirements
                        .iter()
                        .map(|r| {
                            format!(
                                "{} of {}",
                                r.count,
                                if r.by.is_empty() {
                                    "any human".into()
                                } else {
                                    r.by.join(", ")
                                }
                            )
                        })
                        .collect();
                    println!("decision: needs approval ({})", reqs.join("; "));
                }
            }
            Ok(match decision {
                Decision::Allow { .. } => Outcome::Success,
                _ => Outcome::Denied,
            })
        }
        Command::Schema { file } => {
            let engine = load(&file)?;
            print!("{}", engine.schema_text());
            Ok(Outcome::Success)
        }
    }
}
