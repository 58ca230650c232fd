//! `remit act KIND --arg k=v …`: request a typed action through the gate, from inside a task.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use remit_gate::client;
use serde_json::json;

use crate::exit::Outcome;

/// Arguments of `remit act`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The action's kind (as the task's remit declares it: `publish`, `deploy`, …).
    kind: String,
    /// An argument, `name=value` (repeatable).
    #[arg(long = "arg", value_name = "NAME=VALUE")]
    args: Vec<String>,
    /// How long to wait for a human's approval, in seconds, when the action needs one
    /// (0: do not wait; print the pending approval and exit 1).
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
    wait: u64,
    /// The agent socket. Default: `$REMIT_SOCKET` (set inside every task).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Print the gate's JSON answer instead of a summary.
    #[arg(long)]
    json: bool,
}

fn socket(args: &Args) -> anyhow::Result<PathBuf> {
    match (&args.socket, std::env::var_os("REMIT_SOCKET")) {
        (Some(path), _) => Ok(path.clone()),
        (None, Some(path)) => Ok(PathBuf::from(path)),
        (None, None) => anyhow::bail!(
            "`remit act` runs inside a task: `REMIT_SOCKET` is not set (or pass --socket)"
        ),
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    let socket = socket(&args)?;
    let mut map = serde_json::Map::new();
    for pair in &args.args {
        let (name, value) = pair
            .split_once('=')
            .with_context(|| format!("argument `{pair}` is not NAME=VALUE"))?;
        map.insert(name.to_owned(), value.into());
    }
    let body = json!({ "kind": args.kind, "args": map, "wait": 0 });
    let timeout = Duration::from_secs(args.wait.max(1) + 3600);
    let mut response = client::request(&socket, "POST", "/v1/actions", Some(&body), timeout)
        .with_context(|| format!("cannot reach the gate at `{}`", socket.display()))?;
    if response.status == 202 {
        let id = response.body["approval"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        eprintln!(
            "remit: pending approval {id}: a human must run `remit approvals approve {id}` on the host{}",
            if args.wait > 0 {
                format!(" (waiting up to {}s)", args.wait)
            } else {
                String::new()
            }
        );
        if args.wait == 0 {
            print(&args, &response.body);
            return Ok(Outcome::Denied);
        }
        let view = client::request(
            &socket,
            "GET",
            &format!("/v1/approvals/{id}?wait={}", args.wait),
            None,
            Duration::from_secs(args.wait + 60),
        )
        .context("lost the gate while waiting for approval")?;
        let state = view.body["state"].as_str().unwrap_or("unknown").to_owned();
        if state != "approved" {
            let why = match state.as_str() {
                "denied" => format!(
                    "approval {id} was denied by {}{}",
                    view.body["by"].as_str().unwrap_or("a human"),
                    view.body["reason"]
                        .as_str()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ),
                "pending" => format!("approval {id} is still pending after {}s", args.wait),
                other => format!("approval {id} is {other}"),
            };
            eprintln!("remit: denied `{}`: {why}", args.kind);
            print(&args, &view.body);
            return Ok(Outcome::Denied);
        }
        // Approved: ask again for exactly the same effect; the gate performs it once.
        response = client::request(&socket, "POST", "/v1/actions", Some(&body), timeout)
            .context("lost the gate")?;
        if response.status == 202 {
            // The same arguments, and yet another effect: what the action is bound to (the
            // workspace's contents) changed since it was asked for.
            let again = response.body["approval"].as_str().unwrap_or_default();
            eprintln!(
                "remit: denied `{}`: approval {id} was given for the workspace as it was when the action was asked for, and the workspace changed since; a new approval is pending: {again}",
                args.kind
            );
            print(&args, &response.body);
            return Ok(Outcome::Denied);
        }
    }
    print(&args, &response.body);
    match response.status {
        200 => {
            let code = response.body["result"]["exit_code"].as_i64();
            Ok(match code {
                None | Some(0) => Outcome::Success,
                Some(c) => Outcome::Status(u8::try_from(c).unwrap_or(1)),
            })
        }
        403 => {
            eprintln!(
                "remit: denied `{}`: {} (policy `{}`)",
                args.kind,
                response.body["reason"].as_str().unwrap_or("refused"),
                response.body["policy"].as_str().unwrap_or("?")
            );
            Ok(Outcome::Denied)
        }
        202 => Ok(Outcome::Denied),
        _ => anyhow::bail!(
            "{}",
            response.body["error"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("the gate answered {}", response.status))
        ),
    }
}

fn print(args: &Args, body: &serde_json::Value) {
    if args.json {
        println!("{body}");
        return;
    }
    if let Some(result) = body.get("result") {
        if let Some(out) = result["stdout"].as_str() {
            print!("{out}");
        }
        if let Some(err) = result["stderr"].as_str() {
            eprint!("{err}");
        }
    }
}
