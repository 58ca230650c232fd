//! `remit mcp`: start a task and serve its governed tools to an MCP client, over standard
//! input and output (until the client closes them) or streamable HTTP on loopback (until
//! interrupted); then end the task, receipt and all.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use remit_codemode::task::{HELPER, HostOptions, TaskHost};
use remit_gate::run::Outcome;
use remit_mcp::{Server, ServerOptions};
use remit_types::size::Span;

use crate::cmd::code::{LimitArgs, Started, start_task};
use crate::exit::Outcome as Exit;

/// Arguments of `remit mcp`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The remit granting what the task may do. Default: the embedded default remit.
    #[arg(long, value_name = "FILE")]
    remit: Option<PathBuf>,
    /// The workspace. Default: the remit's, else the current directory.
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,
    /// Serve streamable HTTP at `http://ADDR/mcp` (loopback only) instead of standard
    /// input and output. Clients must send `Authorization: Bearer <token>` (the token is
    /// `$REMIT_MCP_TOKEN`, or a random one printed on standard error).
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// How long a call that needs a human's approval waits before answering with the
    /// approval's id. Default: the remit's `[approvals] wait`, else 0.
    #[arg(long, value_name = "DURATION", value_parser = Span::parse)]
    approval_wait: Option<Span>,
    /// Also write the task's ledger events here, as JSON lines, when it ends.
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Run even if this host cannot enforce a layer the remit needs. Loud and recorded.
    #[arg(long)]
    dangerously_allow_degraded: bool,
    /// Limits of `run_code` scripts.
    #[command(flatten)]
    limits: LimitArgs,
}

fn random_token() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read random bytes for the token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

pub(crate) fn run(args: Args) -> anyhow::Result<Exit> {
    let mut label = vec!["remit".to_owned(), "mcp".to_owned()];
    if let Some(addr) = args.http {
        label.push(format!("--http={addr}"));
    }
    let token = match args.http {
        Some(_) => Some(match std::env::var("REMIT_MCP_TOKEN") {
            Ok(t) if !t.is_empty() => (t, false),
            _ => (random_token()?, true),
        }),
        None => None,
    };
    let Started {
        request,
        mut task,
        has_helper,
    } = match start_task(
        args.remit.as_ref(),
        args.workspace.as_ref(),
        label,
        args.dangerously_allow_degraded,
        args.log.clone(),
    )? {
        Ok(s) => s,
        Err(denial) => {
            eprintln!("remit: denied: {denial}");
            return Ok(Exit::Denied);
        }
    };
    let task_id = request.task.to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the supervisor's runtime")?;
    let remit = request.remit.remit.clone();
    let limits = args.limits.limits();
    // The remit says how long a call waits for a human; the flag overrides it.
    let approval_wait = args
        .approval_wait
        .or(remit.approvals.wait)
        .map_or(Duration::ZERO, |s| s.0);
    let http = args.http;
    let outcome = runtime.block_on(async {
        let host = TaskHost::new(
            task.client(),
            &remit,
            HostOptions {
                via: "mcp",
                approval_wait,
                helper: has_helper.then(|| PathBuf::from(HELPER)),
            },
        );
        let server = Server::new(
            host,
            ServerOptions {
                approval_wait,
                limits,
            },
        );
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
        match (http, token) {
            (Some(addr), Some((token, generated))) => {
                let listener = match remit_mcp::bind_http(addr).await {
                    Ok(listener) => listener,
                    // The task still ends: its end recorded, its authority revoked.
                    Err(e) => {
                        return Ok::<_, anyhow::Error>((
                            Err(remit_gate::run::RunError::Host(e.to_string())),
                            None,
                        ));
                    }
                };
                eprintln!(
                    "remit: task {task_id}: MCP at http://{}/mcp{}",
                    listener.addr,
                    if generated {
                        format!(" (send `Authorization: Bearer {token}`)")
                    } else {
                        " (token from REMIT_MCP_TOKEN)".to_owned()
                    }
                );
                tokio::spawn(async move {
                    let r = remit_mcp::serve_http(server, listener, token).await;
                    let _ = done_tx.send(r.map_err(|e| e.to_string()));
                });
            }
            _ => {
                tokio::spawn(async move {
                    let r = remit_mcp::serve_stdio(server).await;
                    let _ = done_tx.send(r.map_err(|e| e.to_string()));
                });
            }
        }
        let (error_tx, error_rx) = tokio::sync::oneshot::channel::<String>();
        let until = Box::pin(async move {
            if let Ok(Err(e)) = done_rx.await {
                let _ = error_tx.send(e);
            }
        });
        let outcome = task.supervise(false, Some(until)).await;
        // Let cancelled calls record their outcome.
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok::<_, anyhow::Error>((outcome, error_rx.await.ok()))
    });
    let (outcome, serve_error) = outcome?;
    let report = task.end(outcome)?;
    drop(runtime);
    if let Some(err) = &report.record_error {
        eprintln!("remit: error: the task's record is incomplete: {err}");
    }
    if let Some(e) = serve_error {
        eprintln!("remit: error: {e}");
        return Ok(Exit::Status(2));
    }
    Ok(match report.outcome {
        Outcome::Ended => Exit::Success,
        // An HTTP server ends when it is interrupted: that is its normal end.
        Outcome::Killed(why) if http.is_some() && why == "stopped by a signal" => Exit::Success,
        Outcome::Killed(why) => {
            eprintln!("remit: task {task_id} was {why}");
            Exit::Status(137)
        }
        Outcome::TimedOut(limit) => {
            eprintln!(
                "remit: task {task_id} reached its wall-clock limit of {}",
                humantime::format_duration(limit)
            );
            Exit::Status(124)
        }
        _ => Exit::Success,
    })
}
