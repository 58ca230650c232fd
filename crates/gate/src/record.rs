//! The task's record as JSON lines: one object per line, each with `kind`, `task` and `time`.
//! Every field is documented in `docs/records.md`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// The home of remit's state: `$REMIT_HOME`, else `$XDG_DATA_HOME/remit`, else
/// `~/.local/share/remit`.
pub fn remit_home(env: &[(String, String)]) -> PathBuf {
    let get = |k: &str| {
        env.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    if let Some(home) = get("REMIT_HOME") {
        return PathBuf::from(home);
    }
    if let Some(data) = get("XDG_DATA_HOME") {
        return PathBuf::from(data).join("remit");
    }
    PathBuf::from(get("HOME").unwrap_or_else(|| "/root".into())).join(".local/share/remit")
}

/// RFC 3339 UTC with microseconds, from a system time.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let micros = since.subsec_micros();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}.{micros:06}Z")
}

/// One line of the record.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record<'a> {
    /// The task started.
    RunStarted {
        /// Remit file (or `<default remit>`).
        remit: &'a str,
        /// `sha256:<hex>` of the remit file.
        remit_hash: &'a str,
        /// Workspace path.
        workspace: &'a Path,
        /// The command.
        argv: &'a [String],
        /// The invoking OS user.
        requester: &'a str,
        /// Layers skipped in degraded mode (`layer: why`).
        degraded: Vec<String>,
        /// Notes from preparation (paths skipped, …).
        notes: &'a [String],
    },
    /// A program start inside the task.
    Exec {
        /// Pid inside the task.
        pid: i32,
        /// Parent pid inside the task.
        ppid: i32,
        /// Path given to `execve`.
        path: &'a str,
        /// Arguments.
        argv: &'a [String],
        /// Whether arguments were cut.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        truncated: bool,
        /// Working directory.
        cwd: &'a str,
        /// `allow`, `deny`, `prompt-allowed` or `prompt-denied`.
        decision: &'a str,
        /// What decided: `commands.forbid \`curl\``, `commands.default`.
        rule: String,
    },
    /// The task ended.
    RunEnded {
        /// `exit` or `signal` or `timeout` or `failed`.
        outcome: &'a str,
        /// Exit code or signal number.
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<i32>,
        /// Programs started.
        commands: u64,
        /// Programs refused.
        denied: u64,
        /// Wall time, milliseconds.
        duration_ms: u64,
        /// Whether the memory limit killed something.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        oom_killed: bool,
    },
}

#[derive(Serialize)]
struct Line<'a> {
    task: &'a str,
    time: String,
    #[serde(flatten)]
    record: &'a Record<'a>,
}

/// Writes the record of one task.
#[derive(Debug)]
pub struct Recorder {
    task: String,
    out: Option<BufWriter<File>>,
    path: PathBuf,
}

impl Recorder {
    /// Open (create, append) the record file; parent directories are created private.
    pub fn open(path: &Path, task: &str) -> std::io::Result<Recorder> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        Ok(Recorder {
            task: task.to_owned(),
            out: Some(BufWriter::with_capacity(64 * 1024, file)),
            path: path.to_path_buf(),
        })
    }

    /// Where the record goes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one record.
    pub fn write(&mut self, record: &Record<'_>) {
        let line = Line {
            task: &self.task,
            time: rfc3339(SystemTime::now()),
            record,
        };
        if let Some(out) = &mut self.out
            && (serde_json::to_writer(&mut *out, &line).is_err() || out.write_all(b"\n").is_err())
        {
            // A record that cannot be written must not go unnoticed: stop writing and let
            // `finish` report it.
            self.out = None;
        }
    }

    /// Flush everything to the file.
    pub fn finish(&mut self) -> std::io::Result<()> {
        match &mut self.out {
            Some(out) => out.flush(),
            None => Err(std::io::Error::other("the record could not be written")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456)),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000000Z"
        );
    }

    #[test]
    fn home_resolution() {
        let env = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            remit_home(&env(&[("REMIT_HOME", "/r"), ("HOME", "/h")])),
            PathBuf::from("/r")
        );
        assert_eq!(
            remit_home(&env(&[("XDG_DATA_HOME", "/x"), ("HOME", "/h")])),
            PathBuf::from("/x/remit")
        );
        assert_eq!(
            remit_home(&env(&[("HOME", "/h")])),
            PathBuf::from("/h/.local/share/remit")
        );
    }
}
