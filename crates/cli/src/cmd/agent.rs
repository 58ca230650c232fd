//! `remit agent list|suspend|resume|revoke`: an agent's lifecycle.

use remit_gate::record::{remit_home, rfc3339};
use remit_gate::registry::{
    AgentRecord, AgentStatus, agent_record, agent_records, set_agent_record,
};

use crate::cmd::approvals::tasks;
use crate::exit::Outcome;

/// `remit agent` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Agents with a recorded status, and agents with running tasks.
    List,
    /// Stop the agent's running tasks at once and refuse new ones until resumed.
    Suspend {
        /// The agent's name.
        name: String,
        /// Why (recorded).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Let a suspended agent start tasks again.
    Resume {
        /// The agent's name.
        name: String,
    },
    /// Stop the agent's tasks and refuse every future one, for good.
    Revoke {
        /// The agent's name.
        name: String,
        /// Why (recorded).
        #[arg(long)]
        reason: Option<String>,
    },
}

pub(crate) fn run(command: Command) -> anyhow::Result<Outcome> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let home = remit_home(&env);
    let me = remit_gate::prepare::requester(&env);
    match command {
        Command::List => {
            let running = tasks();
            for record in agent_records(&home) {
                let n = running
                    .iter()
                    .filter(|(_, i)| i.agent == record.name)
                    .count();
                println!(
                    "{}  {:?}  by {} at {}{}  {n} running",
                    record.name,
                    record.status,
                    record.by,
                    record.at,
                    record.reason.map(|r| format!(" ({r})")).unwrap_or_default()
                );
            }
            for (_, info) in &running {
                if agent_record(&home, &info.agent)?.is_none() {
                    println!("{}  Active  task {}", info.agent, info.task);
                }
            }
            Ok(Outcome::Success)
        }
        Command::Suspend { name, reason } => {
            stop(&home, &name, &me, reason, AgentStatus::Suspended)
        }
        Command::Revoke { name, reason } => stop(&home, &name, &me, reason, AgentStatus::Revoked),
        Command::Resume { name } => {
            if let Some(record) = agent_record(&home, &name)?
                && record.status == AgentStatus::Revoked
            {
                anyhow::bail!("agent `{name}` was revoked; a revoked agent cannot be resumed");
            }
            set_agent_record(
                &home,
                &AgentRecord {
                    name: name.clone(),
                    status: AgentStatus::Active,
                    by: me,
                    at: rfc3339(std::time::SystemTime::now()),
                    reason: None,
                },
            )?;
            println!("agent {name} resumed");
            Ok(Outcome::Success)
        }
    }
}

fn stop(
    home: &std::path::Path,
    name: &str,
    me: &str,
    reason: Option<String>,
    status: AgentStatus,
) -> anyhow::Result<Outcome> {
    // Record first: a task that starts from now on sees it; tasks already registered are
    // killed below.
    set_agent_record(
        home,
        &AgentRecord {
            name: name.to_owned(),
            status,
            by: me.to_owned(),
            at: rfc3339(std::time::SystemTime::now()),
            reason: reason.clone(),
        },
    )?;
    let word = if status == AgentStatus::Revoked {
        "revoked"
    } else {
        "suspended"
    };
    let mut killed = 0;
    let mut failures = Vec::new();
    for (dir, info) in tasks().into_iter().filter(|(_, i)| i.agent == name) {
        match crate::cmd::task::kill(
            &dir,
            Some(format!(
                "agent {word}{}",
                reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            )),
        ) {
            Ok(()) => killed += 1,
            Err(e) => failures.push(format!("{}: {e:#}", info.task)),
        }
    }
    println!(
        "agent {name} {word}; {killed} running task{} killed",
        if killed == 1 { "" } else { "s" }
    );
    if !failures.is_empty() {
        anyhow::bail!("could not kill: {}", failures.join("; "));
    }
    Ok(Outcome::Success)
}
