//! `remit secret set|list|rm|rotate`: the vault's secrets. Values are read from standard
//! input (or `--from-file`), never from arguments, and never printed.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use remit_identity::SystemClock;
use remit_vault::Vault;
use zeroize::Zeroizing;

use crate::exit::Outcome;

/// `remit secret` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Store a secret (from standard input: `remit secret set NAME < file`).
    Set {
        /// The secret's name (letters, digits, `-`, `_`).
        name: String,
        /// Read the value from this file instead of standard input.
        #[arg(long, value_name = "PATH")]
        from_file: Option<PathBuf>,
    },
    /// Secrets by name, version and date (never their values).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a secret.
    Rm {
        /// The secret's name.
        name: String,
    },
    /// Replace a secret's value (a new version); leases already issued keep theirs until
    /// they end.
    Rotate {
        /// The secret's name.
        name: String,
        /// Read the value from this file instead of standard input.
        #[arg(long, value_name = "PATH")]
        from_file: Option<PathBuf>,
    },
}

pub(crate) fn home_and_user() -> (PathBuf, String) {
    let env: Vec<(String, String)> = std::env::vars().collect();
    (
        remit_gate::record::remit_home(&env),
        remit_gate::prepare::requester(&env),
    )
}

fn read_value(from_file: Option<&PathBuf>) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let mut value = Zeroizing::new(Vec::new());
    match from_file {
        Some(path) => {
            *value =
                std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))?;
        }
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                bail!(
                    "pipe the value in (`remit secret set NAME < file`) or use `--from-file`; it is never taken from a terminal or an argument"
                );
            }
            stdin
                .lock()
                .read_to_end(&mut value)
                .context("cannot read standard input")?;
        }
    }
    // One trailing line break is the file's, not the secret's.
    if value.last() == Some(&b'\n') {
        value.pop();
        if value.last() == Some(&b'\r') {
            value.pop();
        }
    }
    Ok(value)
}

pub(crate) fn run(command: Command) -> anyhow::Result<Outcome> {
    let (home, me) = home_and_user();
    let vault = Vault::open_home(&home, Arc::new(SystemClock))?;
    match command {
        Command::Set { name, from_file } => {
            let value = read_value(from_file.as_ref())?;
            let info = vault.set(&name, &value, &me)?;
            println!("secret {} stored (version {})", info.name, info.version);
        }
        Command::Rotate { name, from_file } => {
            let value = read_value(from_file.as_ref())?;
            let info = vault.rotate(&name, &value, &me)?;
            println!("secret {} rotated (version {})", info.name, info.version);
        }
        Command::List { json } => {
            let list = vault.list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!("no secrets");
            } else {
                for s in list {
                    println!(
                        "{}  v{}  updated {} by {}",
                        s.name, s.version, s.updated, s.updated_by
                    );
                }
            }
        }
        Command::Rm { name } => {
            if !vault.remove(&name)? {
                bail!("no secret `{name}` in the vault");
            }
            println!("secret {name} removed");
        }
    }
    Ok(Outcome::Success)
}
