//! `remit`: the command-line front end. Argument parsing, output formatting and exit codes
//! only; every decision lives in the library crates.

mod cmd;
mod exit;

use clap::{Parser, Subcommand};

/// Run code-capable AI agents as governed, contained, audited identities.
#[derive(Debug, Parser)]
#[command(name = "remit", version, about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a command as a contained, observed task.
    Run(cmd::run::Args),
    /// Show what this host can enforce, layer by layer.
    Doctor(cmd::doctor::Args),
    /// Request a typed action through the gate (inside a task).
    Act(cmd::act::Args),
    /// List, approve and deny pending approvals (on the host).
    #[command(subcommand)]
    Approvals(cmd::approvals::Command),
    /// List and kill running tasks.
    #[command(subcommand)]
    Task(cmd::task::Command),
    /// Register, list, show, suspend, resume or revoke an agent.
    #[command(subcommand)]
    Agent(cmd::agent::Command),
    /// Store, list, rotate and remove the vault's secrets.
    #[command(subcommand)]
    Secret(cmd::secret::Command),
    /// Rotate and list the signing keys of task identities.
    #[command(subcommand)]
    Keys(cmd::keys::Command),
    /// Publish and verify task identities (JWKS, OIDC discovery, tokens).
    #[command(subcommand)]
    Identity(cmd::identity::Command),
    /// Check, test and explain a remit's policy.
    #[command(subcommand)]
    Policy(cmd::policy::Command),
    /// Scan files or git history for secrets.
    Scan(cmd::scan::Args),
    /// Inspect, verify, prove and export the tamper-evident ledger.
    #[command(subcommand)]
    Ledger(cmd::ledger::Command),
    /// Verify a signed task receipt offline.
    Verify(cmd::ledger::VerifyArgs),
    /// Run a JavaScript or TypeScript program against the governed API (code mode).
    #[command(subcommand)]
    Code(cmd::code::Command),
    /// Serve a task's governed tools to an MCP client (stdio or streamable HTTP).
    Mcp(cmd::mcp::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => cmd::run::run(args),
        Command::Doctor(args) => cmd::doctor::run(args),
        Command::Act(args) => cmd::act::run(args),
        Command::Approvals(command) => cmd::approvals::run(command),
        Command::Task(command) => cmd::task::run(command),
        Command::Agent(command) => cmd::agent::run(command),
        Command::Secret(command) => cmd::secret::run(command),
        Command::Keys(command) => cmd::keys::run(command),
        Command::Identity(command) => cmd::identity::run(command),
        Command::Policy(command) => cmd::policy::run(command),
        Command::Scan(args) => cmd::scan::run(args),
        Command::Ledger(command) => cmd::ledger::run(command),
        Command::Verify(args) => cmd::ledger::verify(args),
        Command::Code(command) => cmd::code::run(command),
        Command::Mcp(args) => cmd::mcp::run(args),
    };
    exit::finish(result)
}
