//! `remit approvals list|approve|deny`: the humans' side of approvals, on the host.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use remit_gate::client;
use remit_gate::record::remit_home;
use remit_gate::registry::{TaskInfo, run_dir, running_tasks};
use remit_types::effect::{controls_escaped, escaped};
use serde_json::{Value, json};

use crate::exit::Outcome;

/// `remit approvals` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Pending approvals of every running task, with what the gate derived about each.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Include approvals that were already decided.
        #[arg(long)]
        all: bool,
    },
    /// Approve a request (as the OS user running this command). On a terminal it shows the
    /// request first and asks; the agent can print what it likes on the same terminal, so
    /// what counts is what remit shows here.
    Approve {
        /// The approval id (`ap-…`).
        id: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
        /// Approve only if the request's digest is this one (as `list` shows it).
        #[arg(long)]
        digest: Option<String>,
        /// Do not ask, even on a terminal.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Deny a request.
    Deny {
        /// The approval id (`ap-…`).
        id: String,
        /// Why (the agent sees it).
        #[arg(long)]
        reason: Option<String>,
    },
}

pub(crate) fn tasks() -> Vec<(PathBuf, TaskInfo)> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let home = remit_home(&env);
    running_tasks(&run_dir(&env, &home))
}

pub(crate) fn control(
    dir: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<client::Response> {
    let socket = dir.join("control.sock");
    client::request(&socket, method, path, body, Duration::from_secs(30)).with_context(|| {
        format!(
            "cannot reach the task's control socket `{}`",
            socket.display()
        )
    })
}

pub(crate) fn run(command: Command) -> anyhow::Result<Outcome> {
    match command {
        Command::List { json, all } => list(json, all),
        Command::Approve {
            id,
            reason,
            digest,
            yes,
        } => {
            if digest.is_some() || (!yes && std::io::IsTerminal::is_terminal(&std::io::stdin())) {
                confirm(&id, digest.as_deref(), yes)?;
            }
            decide(&id, true, reason)
        }
        Command::Deny { id, reason } => decide(&id, false, reason),
    }
}

/// A field of the control socket's answer, as it may be shown on a terminal: no control
/// character reaches it. (The effect's description comes escaped already, its backslashes
/// doubled where it was made; they are left as they are.)
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => controls_escaped(s),
        Value::Null => String::new(),
        other => controls_escaped(&other.to_string()),
    }
}

/// The approval `id` of whichever running task has it.
fn find(id: &str) -> anyhow::Result<Value> {
    for (dir, _) in tasks() {
        let Ok(response) = control(&dir, "GET", "/v1/approvals", None) else {
            continue;
        };
        if let Some(found) = response.body["approvals"]
            .as_array()
            .and_then(|list| list.iter().find(|a| a["id"] == id))
        {
            return Ok(found.clone());
        }
    }
    anyhow::bail!("no running task has approval `{}`", escaped(id))
}

/// Before approving: check the digest if one was given, and on a terminal show the request
/// and ask.
fn confirm(id: &str, digest: Option<&str>, yes: bool) -> anyhow::Result<()> {
    let approval = find(id)?;
    if let Some(want) = digest
        && approval["digest"].as_str() != Some(want)
    {
        anyhow::bail!(
            "approval `{}` is for another request (digest {}), not approved",
            escaped(id),
            shown(&approval["digest"])
        );
    }
    if yes || !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Ok(());
    }
    eprintln!(
        "{}: {}\n  task {}  agent {}\n  approving enables: {}\n  digest {}",
        shown(&approval["id"]),
        shown(&approval["effect"]),
        shown(&approval["task"]),
        shown(&approval["agent"]),
        shown(&approval["enables"]),
        shown(&approval["digest"]),
    );
    eprint!("approve? [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        anyhow::bail!("not approved");
    }
    Ok(())
}

fn list(as_json: bool, all: bool) -> anyhow::Result<Outcome> {
    let mut rows: Vec<Value> = Vec::new();
    for (dir, _) in tasks() {
        let Ok(response) = control(&dir, "GET", "/v1/approvals", None) else {
            continue;
        };
        if let Some(list) = response.body["approvals"].as_array() {
            rows.extend(
                list.iter()
                    .filter(|a| all || a["state"] == "pending")
                    .cloned(),
            );
        }
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(Outcome::Success);
    }
    if rows.is_empty() {
        println!("no pending approvals");
        return Ok(Outcome::Success);
    }
    for a in &rows {
        // Text from the agent's requests, escaped for the terminal.
        let s = |k: &str| shown(&a[k]);
        println!("{}  [{}]  {}", s("id"), s("state"), s("effect"));
        println!(
            "    task {}  agent {} (owner {})  requested by {}",
            s("task"),
            s("agent"),
            s("owner"),
            s("requester")
        );
        if let Some(policies) = a["policies"].as_array() {
            for p in policies {
                println!("    policy {}", shown(p));
            }
        }
        if let Some(reqs) = a["requirements"].as_array() {
            for r in reqs {
                let by: Vec<String> = r["by"]
                    .as_array()
                    .map(|b| b.iter().map(shown).collect())
                    .unwrap_or_default();
                println!(
                    "    needs {} of {} ({} so far)",
                    shown(&r["count"]),
                    if by.is_empty() {
                        "any human".to_owned()
                    } else {
                        by.join(", ")
                    },
                    shown(&r["have"])
                );
            }
        }
        println!("    approving enables: {}", s("enables"));
        println!("    digest {}  expires {}", s("digest"), s("expires"));
    }
    Ok(Outcome::Success)
}

fn decide(id: &str, approve: bool, reason: Option<String>) -> anyhow::Result<Outcome> {
    let verb = if approve { "approve" } else { "deny" };
    let body = json!({ "reason": reason });
    for (dir, info) in tasks() {
        let response = match control(
            &dir,
            "POST",
            &format!("/v1/approvals/{id}/{verb}"),
            Some(&body),
        ) {
            Ok(r) => r,
            Err(_) => continue,
        };
        match response.status {
            404 => continue,
            200 => {
                let state = response.body["state"].as_str().unwrap_or("");
                let have: Vec<String> = response.body["requirements"]
                    .as_array()
                    .map(|r| {
                        r.iter()
                            .map(|r| format!("{}/{}", r["have"], r["count"]))
                            .collect()
                    })
                    .unwrap_or_default();
                println!(
                    "{} ({} in task {}): {}{}",
                    escaped(id),
                    shown(&response.body["effect"]),
                    escaped(&info.task),
                    escaped(state),
                    if state == "pending" {
                        format!(", approvals {}", have.join(", "))
                    } else {
                        String::new()
                    }
                );
                return Ok(Outcome::Success);
            }
            _ => match shown(&response.body["error"]) {
                why if why.is_empty() => anyhow::bail!("refused"),
                why => anyhow::bail!("{why}"),
            },
        }
    }
    anyhow::bail!("no running task has approval `{}`", escaped(id))
}
