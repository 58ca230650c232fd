//! Exit codes are a contract: 0 success or allowed, 1 denied or findings, 2 error.

use std::process::ExitCode;

/// What a subcommand reports when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Everything allowed, nothing found.
    Success,
    /// A denial, a finding, a failed verification: the command worked and the answer is "no".
    Denied,
    /// Pass an exact status through (the exit status of a contained command).
    Status(u8),
}

/// Print an error chain on one line and map the outcome to the exit-code contract.
pub(crate) fn finish(result: anyhow::Result<Outcome>) -> ExitCode {
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Denied) => ExitCode::from(1),
        Ok(Outcome::Status(code)) => ExitCode::from(code),
        // The reader of our output went away (`remit ledger show | head`): nothing is wrong
        // with remit's work, so end quietly, as `grep` and ripgrep do.
        Err(err)
            if err.chain().any(|cause| {
                cause
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(err) => {
            // One line whatever the error quotes (a hostile file's text, a task's names).
            eprintln!(
                "remit: error: {}",
                remit_types::effect::controls_escaped(&format!("{err:#}"))
            );
            ExitCode::from(2)
        }
    }
}
