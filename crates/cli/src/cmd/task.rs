//! `remit task list|kill`.

use serde_json::json;

use crate::cmd::approvals::{control, tasks};
use crate::exit::Outcome;

/// `remit task` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Running tasks.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop a task at once: its processes, its pending approvals, every future effect.
    Kill {
        /// The task id.
        id: String,
        /// Why (recorded).
        #[arg(long)]
        reason: Option<String>,
    },
}

pub(crate) fn run(command: Command) -> anyhow::Result<Outcome> {
    match command {
        Command::List { json } => {
            let infos: Vec<_> = tasks().into_iter().map(|(_, info)| info).collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&infos)?);
            } else if infos.is_empty() {
                println!("no running tasks");
            } else {
                for i in infos {
                    println!(
                        "{}  agent {}  since {}  `{}`  in {}",
                        i.task,
                        i.agent,
                        i.started,
                        i.command.join(" "),
                        i.workspace
                    );
                }
            }
            Ok(Outcome::Success)
        }
        Command::Kill { id, reason } => {
            let Some((dir, _)) = tasks().into_iter().find(|(_, i)| i.task == id) else {
                anyhow::bail!("no running task `{id}`");
            };
            kill(&dir, reason)?;
            println!("task {id} killed");
            Ok(Outcome::Success)
        }
    }
}

pub(crate) fn kill(dir: &std::path::Path, reason: Option<String>) -> anyhow::Result<()> {
    let response = control(dir, "POST", "/v1/kill", Some(&json!({ "reason": reason })))?;
    if response.status != 200 {
        anyhow::bail!("{}", response.body["error"].as_str().unwrap_or("refused"));
    }
    Ok(())
}
