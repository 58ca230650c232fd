//! `remit scan`.

use crate::exit::Outcome;

/// Arguments of `remit scan`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Files or directories to scan (default: the current directory).
    paths: Vec<std::path::PathBuf>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    anyhow::bail!("`remit scan` is not built yet (paths: {:?})", args.paths)
}
