//! Performing typed actions: the host command a remit names for an action runs outside the
//! sandbox, in the workspace, with the supervisor's environment. The task reaches that
//! capability only through the gate.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use remit_types::remit::CommandRule;
use serde::Serialize;
use tokio::io::AsyncReadExt;

use crate::gate::Authorized;

/// Most output kept from a host command, per stream.
const MAX_OUTPUT: usize = 64 * 1024;

/// What a performed action produced.
#[derive(Debug, Clone, Serialize)]
pub struct ActionResult {
    /// Exit code (`None` when killed).
    pub exit_code: Option<i32>,
    /// Standard output (at most 64 KiB).
    pub stdout: String,
    /// Standard error (at most 64 KiB).
    pub stderr: String,
    /// Whether output was cut.
    pub truncated: bool,
}

/// Why an argument value is refused before anything runs.
pub fn check_argument(name: &str, value: &str) -> Result<(), String> {
    if value.starts_with('-') {
        return Err(format!(
            "argument `{name}` may not start with `-`: it would be read as an option of the host command"
        ));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(format!("argument `{name}` contains control characters"));
    }
    if value.len() > 4096 {
        return Err(format!("argument `{name}` is longer than 4096 bytes"));
    }
    Ok(())
}

/// The host command with `{name}` replaced by argument values (each word stays one argv
/// entry: no shell ever sees it).
///
/// Each placeholder is replaced once, from the template only: a value that itself contains
/// `{other}` stays as it was given, so the command runs with exactly the values the policy
/// and the approver saw.
pub fn command_line(run: &CommandRule, args: &BTreeMap<String, String>) -> Vec<String> {
    run.0
        .iter()
        .map(|word| {
            let mut out = String::with_capacity(word.len());
            let mut rest = word.as_str();
            while let Some(open) = rest.find('{') {
                out.push_str(&rest[..open]);
                let after = &rest[open + 1..];
                let value = after
                    .find('}')
                    .and_then(|close| Some((args.get(&after[..close])?, close)));
                match value {
                    Some((value, close)) => {
                        out.push_str(value);
                        rest = &after[close + 1..];
                    }
                    None => {
                        out.push('{');
                        rest = after;
                    }
                }
            }
            out.push_str(rest);
            out
        })
        .collect()
}

/// Run an authorized action's host command in `workspace`, killing it after `timeout`. When
/// the command cannot be started at all, the authorization is marked as never started, so
/// reporting the error with [`crate::gate::Gate::failed`] gives its quota slot back.
pub async fn run(
    authorized: &Authorized,
    run: &CommandRule,
    args: &BTreeMap<String, String>,
    workspace: &Path,
    timeout: Duration,
) -> Result<ActionResult, String> {
    let argv = command_line(run, args);
    let Some((program, rest)) = argv.split_first() else {
        authorized.not_started();
        return Err("the action's `run` is empty".into());
    };
    let mut child = tokio::process::Command::new(program)
        .args(rest)
        .current_dir(workspace)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            // Nothing ran: a failure reported now gives the action's quota slot back.
            authorized.not_started();
            format!(
                "cannot start `{program}`: {}",
                remit_types::remit::io_reason(&e)
            )
        })?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let read = |stream: Option<tokio::process::ChildStdout>| async move {
        let mut buf = Vec::new();
        if let Some(mut s) = stream {
            let _ = (&mut s)
                .take(MAX_OUTPUT as u64 + 1)
                .read_to_end(&mut buf)
                .await;
            // Drain the rest so the command never blocks on a full pipe.
            let mut sink = [0u8; 8192];
            while let Ok(n) = s.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        }
        buf
    };
    let read_err = |stream: Option<tokio::process::ChildStderr>| async move {
        let mut buf = Vec::new();
        if let Some(mut s) = stream {
            let _ = (&mut s)
                .take(MAX_OUTPUT as u64 + 1)
                .read_to_end(&mut buf)
                .await;
            let mut sink = [0u8; 8192];
            while let Ok(n) = s.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        }
        buf
    };
    let work = async {
        let (out, err, status) =
            tokio::join!(read(stdout.take()), read_err(stderr.take()), child.wait());
        (out, err, status)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok((mut out, mut err, status)) => {
            let truncated = out.len() > MAX_OUTPUT || err.len() > MAX_OUTPUT;
            out.truncate(MAX_OUTPUT);
            err.truncate(MAX_OUTPUT);
            let status = status.map_err(|e| format!("waiting for `{program}`: {e}"))?;
            Ok(ActionResult {
                exit_code: status.code(),
                stdout: String::from_utf8_lossy(&out).into_owned(),
                stderr: String::from_utf8_lossy(&err).into_owned(),
                truncated,
            })
        }
        Err(_) => Err(format!(
            "`{program}` ran longer than {} and was killed",
            humantime_short(timeout)
        )),
    }
}

fn humantime_short(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced_once_from_the_template() {
        let run = CommandRule(vec![
            "deploy".into(),
            "{env}".into(),
            "{ref}".into(),
            "--tag={env}-{ref}".into(),
            "{unknown}".into(),
            "{".into(),
        ]);
        let args = |env: &str, git_ref: &str| {
            BTreeMap::from([
                ("env".to_owned(), env.to_owned()),
                ("ref".to_owned(), git_ref.to_owned()),
            ])
        };
        // A value naming another placeholder is passed as given: the policy saw `pr{ref}`,
        // and `prod` must not be what runs.
        assert_eq!(
            command_line(&run, &args("pr{ref}", "od")),
            [
                "deploy",
                "pr{ref}",
                "od",
                "--tag=pr{ref}-od",
                "{unknown}",
                "{"
            ]
        );
        // The harmless twin.
        assert_eq!(
            command_line(&run, &args("staging", "v1")),
            [
                "deploy",
                "staging",
                "v1",
                "--tag=staging-v1",
                "{unknown}",
                "{"
            ]
        );
    }
}
