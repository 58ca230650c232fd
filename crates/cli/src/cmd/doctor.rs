//! `remit doctor`: what this host can enforce.

use std::path::PathBuf;

use anyhow::Context;
use remit_sandbox::doctor::{LayerReport, probe};

use crate::exit::Outcome;

/// Arguments of `remit doctor`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where to try idmapped mounts (the workspace you will use). Default: the current
    /// directory.
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    let workspace = match args.workspace {
        Some(w) => w,
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let reports = probe(&workspace);
    let env: Vec<(String, String)> = std::env::vars().collect();
    let home = remit_gate::record::remit_home(&env);
    let stuck = remit_vault::doctor::stuck_leases(&home);
    if args.json {
        let rows: Vec<serde_json::Value> = reports
            .iter()
            .map(|r| {
                serde_json::json!({
                    "layer": r.layer.name(),
                    "available": r.available,
                    "degradable": r.layer.degradable(),
                    "detail": r.detail,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print_table(&reports);
    }
    // Credentials a task no longer needs but that are still valid somewhere.
    let stuck_count = match &stuck {
        Ok(list) => {
            for s in list {
                eprintln!(
                    "remit: warning: lease {} (credential `{}` of task {}) is still open: {}",
                    s.lease.id, s.lease.name, s.lease.task, s.why
                );
            }
            list.len()
        }
        Err(e) => {
            eprintln!("remit: warning: cannot read the lease table: {e}");
            1
        }
    };
    Ok(if reports.iter().all(|r| r.available) && stuck_count == 0 {
        Outcome::Success
    } else {
        Outcome::Denied
    })
}

fn print_table(reports: &[LayerReport]) {
    let width = reports
        .iter()
        .map(|r| r.layer.name().len())
        .max()
        .unwrap_or(10);
    for r in reports {
        let mark = if r.available { "yes" } else { "NO " };
        println!("{:width$}  {mark}  {}", r.layer.name(), r.detail);
    }
    let missing: Vec<&str> = reports
        .iter()
        .filter(|r| !r.available)
        .map(|r| r.layer.name())
        .collect();
    if missing.is_empty() {
        println!("\nevery layer is enforced on this host");
    } else {
        println!(
            "\nmissing: {}; `remit run` refuses remits that need them unless given --dangerously-allow-degraded",
            missing.join(", ")
        );
    }
}
