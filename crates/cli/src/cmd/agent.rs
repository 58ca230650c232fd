//! `remit agent add|list|show|suspend|resume|revoke`: the agents inventory and its kill
//! switch.
//!
//! Registered agents live in the vault (`remit_vault::Vault::add_agent`); the status is also
//! written to `$REMIT_HOME/agents/<name>.json`, which `remit run` reads, so agents that were
//! never registered can still be suspended. Suspending or revoking an agent records the
//! status first (no task starts from then on), then revokes every lease and identity token
//! of its tasks at once, then kills its running tasks.

use std::path::Path;
use std::sync::Arc;

use anyhow::bail;
use remit_gate::record::rfc3339;
use remit_gate::registry::{
    AgentRecord, AgentStatus as LegacyStatus, TaskInfo, agent_record, agent_records,
    set_agent_record,
};
use remit_identity::{Identity, SystemClock, identity_db_path};
use remit_vault::{
    Agent, AgentStatus, Broker, Lease, NewAgent, RevokeReason, RiskTier, Vault, vault_db_path,
};
use serde_json::json;

use crate::cmd::approvals::tasks;
use crate::cmd::secret::home_and_user;
use crate::exit::Outcome;

/// `remit agent` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Register an agent: a non-human identity with a human owner.
    Add {
        /// The agent's name (`[agent] name` in its remits).
        name: String,
        /// The human accountable for it (required).
        #[arg(long)]
        owner: String,
        /// What it is for, in one line.
        #[arg(long)]
        purpose: Option<String>,
        /// Risk tier: unrated, low, medium, high, critical.
        #[arg(long, default_value = "unrated")]
        risk: String,
        /// The remit its tasks use by default.
        #[arg(long, value_name = "PATH")]
        remit: Option<String>,
    },
    /// Agents: registered ones, ones with a recorded status, ones with running tasks.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One agent: owner, purpose, risk, status, last task, live leases, tokens outstanding.
    Show {
        /// The agent's name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop the agent at once (its tasks, leases and tokens) and refuse new tasks until
    /// resumed.
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
    /// Stop the agent's tasks, leases and tokens and refuse every future task, for good.
    Revoke {
        /// The agent's name.
        name: String,
        /// Why (recorded).
        #[arg(long)]
        reason: Option<String>,
    },
}

/// The vault, if this home has one (listing never creates keys or stores).
fn existing_vault(home: &Path) -> anyhow::Result<Option<Arc<Vault>>> {
    if !vault_db_path(home).exists() {
        return Ok(None);
    }
    Ok(Some(Arc::new(Vault::open_home(
        home,
        Arc::new(SystemClock),
    )?)))
}

fn existing_identity(home: &Path) -> anyhow::Result<Option<Identity>> {
    if !identity_db_path(home).exists() {
        return Ok(None);
    }
    Ok(Some(Identity::open_home(home, Arc::new(SystemClock))?))
}

fn live_leases(vault: Option<&Arc<Vault>>, agent: &str) -> anyhow::Result<Vec<Lease>> {
    let Some(vault) = vault else {
        return Ok(Vec::new());
    };
    // Reading records nothing.
    let broker = Broker::new(
        Arc::clone(vault),
        Arc::new(remit_vault::MemoryRecorder::default()),
    );
    Ok(broker.live_leases(Some(agent))?)
}

fn summary(
    agent: Option<&Agent>,
    legacy: Option<&AgentRecord>,
    name: &str,
    running: &[TaskInfo],
    leases: &[Lease],
    tokens: u64,
) -> serde_json::Value {
    let status = match (agent, legacy) {
        (Some(a), _) => a.status.as_str(),
        (None, Some(r)) => match r.status {
            LegacyStatus::Active => "active",
            LegacyStatus::Suspended => "suspended",
            LegacyStatus::Revoked => "revoked",
        },
        (None, None) => "active",
    };
    json!({
        "name": name,
        "registered": agent.is_some(),
        "owner": agent.map(|a| a.owner.clone()),
        "purpose": agent.and_then(|a| a.purpose.clone()),
        "risk": agent.map(|a| a.risk.as_str()).unwrap_or("unrated"),
        "default_remit": agent.and_then(|a| a.default_remit.clone()),
        "status": status,
        "status_by": agent.map(|a| a.status_by.clone()).or(legacy.map(|r| r.by.clone())),
        "status_at": agent.map(|a| a.status_at.clone()).or(legacy.map(|r| r.at.clone())),
        "status_reason": agent.and_then(|a| a.status_reason.clone()).or(legacy.and_then(|r| r.reason.clone())),
        "created": agent.map(|a| a.created.clone()),
        "last_task": agent.and_then(|a| a.last_task.clone()),
        "last_task_at": agent.and_then(|a| a.last_task_at.clone()),
        "running_tasks": running.iter().filter(|t| t.agent == name).map(|t| t.task.clone()).collect::<Vec<_>>(),
        "live_leases": leases.iter().map(|l| json!({
            "id": l.id, "task": l.task, "name": l.name, "backend": l.backend,
            "expires": remit_identity::clock::rfc3339(l.expires),
            "revocation_pending": l.revocation_pending(),
        })).collect::<Vec<_>>(),
        "tokens_outstanding": tokens,
    })
}

pub(crate) fn run(command: Command) -> anyhow::Result<Outcome> {
    let (home, me) = home_and_user();
    match command {
        Command::Add {
            name,
            owner,
            purpose,
            risk,
            remit,
        } => {
            let Some(risk) = RiskTier::parse(&risk) else {
                bail!("risk tier `{risk}` is not one of unrated, low, medium, high, critical");
            };
            let vault = Vault::open_home(&home, Arc::new(SystemClock))?;
            let agent = vault.add_agent(
                &NewAgent {
                    name: &name,
                    owner: &owner,
                    purpose: purpose.as_deref(),
                    risk,
                    default_remit: remit.as_deref(),
                },
                &me,
            )?;
            println!(
                "agent {} registered, owned by {} (risk {})",
                agent.name,
                agent.owner,
                agent.risk.as_str()
            );
            Ok(Outcome::Success)
        }
        Command::List { json } => list(&home, json),
        Command::Show { name, json } => show(&home, &name, json),
        Command::Suspend { name, reason } => {
            stop(&home, &name, &me, reason, AgentStatus::Suspended)
        }
        Command::Revoke { name, reason } => stop(&home, &name, &me, reason, AgentStatus::Revoked),
        Command::Resume { name } => {
            if let Some(record) = agent_record(&home, &name)?
                && record.status == LegacyStatus::Revoked
            {
                bail!("agent `{name}` was revoked; a revoked agent cannot be resumed");
            }
            if let Some(vault) = existing_vault(&home)?
                && vault.agent(&name)?.is_some()
            {
                vault.set_agent_status(&name, AgentStatus::Active, &me, None)?;
            }
            set_agent_record(
                &home,
                &AgentRecord {
                    name: name.clone(),
                    status: LegacyStatus::Active,
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

fn list(home: &Path, json_out: bool) -> anyhow::Result<Outcome> {
    let vault = existing_vault(home)?;
    let identity = existing_identity(home)?;
    let running: Vec<TaskInfo> = tasks().into_iter().map(|(_, i)| i).collect();
    let registered: Vec<Agent> = match &vault {
        Some(v) => v.agents()?,
        None => Vec::new(),
    };
    let legacy = agent_records(home);
    let mut names: Vec<String> = registered.iter().map(|a| a.name.clone()).collect();
    names.extend(legacy.iter().map(|r| r.name.clone()));
    names.extend(running.iter().map(|t| t.agent.clone()));
    names.sort();
    names.dedup();
    let mut rows = Vec::new();
    for name in &names {
        let leases = live_leases(vault.as_ref(), name)?;
        let tokens = match &identity {
            Some(i) => i.outstanding(Some(name))?,
            None => 0,
        };
        rows.push(summary(
            registered.iter().find(|a| &a.name == name),
            legacy.iter().find(|r| &r.name == name),
            name,
            &running,
            &leases,
            tokens,
        ));
    }
    if json_out {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if rows.is_empty() {
        println!("no agents");
    } else {
        for r in rows {
            println!(
                "{}  {}  owner {}  risk {}  {} running  {} leases  {} tokens{}",
                r["name"].as_str().unwrap_or_default(),
                r["status"].as_str().unwrap_or_default(),
                r["owner"].as_str().unwrap_or("-"),
                r["risk"].as_str().unwrap_or_default(),
                r["running_tasks"].as_array().map(Vec::len).unwrap_or(0),
                r["live_leases"].as_array().map(Vec::len).unwrap_or(0),
                r["tokens_outstanding"],
                r["last_task"]
                    .as_str()
                    .map(|t| format!("  last task {t}"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(Outcome::Success)
}

fn show(home: &Path, name: &str, json_out: bool) -> anyhow::Result<Outcome> {
    let vault = existing_vault(home)?;
    let agent = match &vault {
        Some(v) => v.agent(name)?,
        None => None,
    };
    let legacy = agent_record(home, name)?;
    let running: Vec<TaskInfo> = tasks().into_iter().map(|(_, i)| i).collect();
    if agent.is_none() && legacy.is_none() && !running.iter().any(|t| t.agent == name) {
        bail!("no agent `{name}`; register it with `remit agent add {name} --owner <human>`");
    }
    let leases = live_leases(vault.as_ref(), name)?;
    let tokens = match existing_identity(home)? {
        Some(i) => i.outstanding(Some(name))?,
        None => 0,
    };
    let s = summary(
        agent.as_ref(),
        legacy.as_ref(),
        name,
        &running,
        &leases,
        tokens,
    );
    if json_out {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(Outcome::Success);
    }
    let field = |k: &str| s[k].as_str().unwrap_or("-").to_owned();
    println!(
        "agent {name}{}",
        if agent.is_none() {
            " (not registered)"
        } else {
            ""
        }
    );
    println!("  owner: {}", field("owner"));
    println!("  purpose: {}", field("purpose"));
    println!("  risk: {}", field("risk"));
    println!("  default remit: {}", field("default_remit"));
    println!(
        "  status: {} (by {} at {}{})",
        field("status"),
        field("status_by"),
        field("status_at"),
        s["status_reason"]
            .as_str()
            .map(|r| format!(", {r}"))
            .unwrap_or_default()
    );
    println!(
        "  last task: {}{}",
        field("last_task"),
        s["last_task_at"]
            .as_str()
            .map(|t| format!(" at {t}"))
            .unwrap_or_default()
    );
    println!(
        "  running tasks: {}",
        s["running_tasks"].as_array().map(Vec::len).unwrap_or(0)
    );
    println!("  tokens outstanding: {tokens}");
    println!("  live leases: {}", leases.len());
    for l in &leases {
        println!(
            "    {}  {} ({})  task {}  expires {}{}",
            l.id,
            l.name,
            l.backend,
            l.task,
            remit_identity::clock::rfc3339(l.expires),
            if l.revocation_pending() {
                "  revocation pending"
            } else {
                ""
            }
        );
    }
    Ok(Outcome::Success)
}

fn stop(
    home: &Path,
    name: &str,
    me: &str,
    reason: Option<String>,
    status: AgentStatus,
) -> anyhow::Result<Outcome> {
    let (word, legacy, lease_reason) = match status {
        AgentStatus::Revoked => ("revoked", LegacyStatus::Revoked, RevokeReason::AgentRevoked),
        _ => (
            "suspended",
            LegacyStatus::Suspended,
            RevokeReason::AgentSuspended,
        ),
    };
    // 1. Record first: a task that starts from now on is refused.
    let vault = existing_vault(home)?;
    if let Some(v) = &vault
        && v.agent(name)?.is_some()
    {
        v.set_agent_status(name, status, me, reason.as_deref())?;
    }
    set_agent_record(
        home,
        &AgentRecord {
            name: name.to_owned(),
            status: legacy,
            by: me.to_owned(),
            at: rfc3339(std::time::SystemTime::now()),
            reason: reason.clone(),
        },
    )?;
    // 2. Everything it holds, at once: leases (recorded in the ledger) and tokens.
    let mut failures = Vec::new();
    let mut leases_revoked = 0;
    // A step that fails is reported at the end; the steps after it still run (its tasks
    // are killed even when its leases cannot be revoked).
    if let Some(vault) = vault {
        match remit_ledger::Ledger::open_home(
            home,
            Arc::new(remit_ledger::SystemClock),
            remit_ledger::Options::default(),
        ) {
            Ok(ledger) => {
                let ledger = Arc::new(ledger);
                let broker = Broker::new(vault, ledger.clone());
                match broker.revoke_agent(name, &lease_reason) {
                    Ok(report) => {
                        leases_revoked = report.revoked.len();
                        for (id, error) in &report.failed {
                            failures.push(format!("lease {id}: {error}"));
                        }
                        if let Some(e) = report.record_error {
                            failures.push(format!("ledger: {e}"));
                        }
                    }
                    Err(e) => failures.push(format!("leases: {e}")),
                }
                if let Err(e) = ledger.close() {
                    failures.push(format!("ledger: {e}"));
                }
            }
            Err(e) => failures.push(format!("leases not revoked, the ledger did not open: {e}")),
        }
    }
    let tokens_revoked = match existing_identity(home).and_then(|i| {
        i.map(|i| i.revoke_agent(name, lease_reason.as_str()))
            .transpose()
            .map_err(Into::into)
    }) {
        Ok(revoked) => revoked.map_or(0, |r| r.len()),
        Err(e) => {
            failures.push(format!("identity tokens: {e:#}"));
            0
        }
    };
    // 3. Its running tasks.
    let mut killed = 0;
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
            Err(e) => failures.push(format!("task {}: {e:#}", info.task)),
        }
    }
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    println!(
        "agent {name} {word}; {} killed; {} revoked; {} revoked",
        plural(killed, "running task", "running tasks"),
        plural(leases_revoked, "lease", "leases"),
        plural(tokens_revoked, "task's tokens", "tasks' tokens"),
    );
    if !failures.is_empty() {
        bail!(
            "not everything was revoked (see `remit doctor`): {}",
            failures.join("; ")
        );
    }
    Ok(Outcome::Success)
}
