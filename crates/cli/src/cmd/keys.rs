//! `remit keys rotate|list`: the signing keys of task identities.

use std::sync::Arc;

use remit_identity::{Identity, SystemClock};

use crate::cmd::secret::home_and_user;
use crate::exit::Outcome;

/// `remit keys` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Make a new signing key; the old one verifies (and is published) until its last token
    /// expires.
    Rotate,
    /// The signing keys and until when each verifies.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(command: Command) -> anyhow::Result<Outcome> {
    let (home, _) = home_and_user();
    let identity = Identity::open_home(&home, Arc::new(SystemClock))?;
    match command {
        Command::Rotate => {
            let r = identity.rotate()?;
            println!("active key {}", r.active);
            if let Some(old) = r.retired {
                println!("retired key {old} (published until its tokens expire)");
            }
            for kid in r.pruned {
                println!("removed key {kid} (all its tokens expired)");
            }
        }
        Command::List { json } => {
            let keys = identity.keys()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                for k in keys {
                    println!(
                        "{}  {}  created {}{}",
                        k.kid,
                        k.state,
                        k.created,
                        k.verifies_until
                            .map(|t| format!("  verifies until {t}"))
                            .unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(Outcome::Success)
}
