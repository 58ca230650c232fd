//! `remit ledger …` and `remit verify`.

use crate::exit::Outcome;

/// `remit ledger` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Recompute the tree and check every checkpoint.
    Verify,
}

/// Arguments of `remit verify`.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// The receipt to check.
    receipt: std::path::PathBuf,
}

pub(crate) fn run(command: Command) -> anyhow::Result<Outcome> {
    anyhow::bail!("`remit ledger` is not built yet ({command:?})")
}

pub(crate) fn verify(args: VerifyArgs) -> anyhow::Result<Outcome> {
    anyhow::bail!("`remit verify` is not built yet ({})", args.receipt.display())
}
