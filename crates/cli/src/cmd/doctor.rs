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
    Ok(if reports.iter().all(|r| r.available) {
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
