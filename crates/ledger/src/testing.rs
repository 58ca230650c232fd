//! A throwaway PostgreSQL server for tests and benchmarks (feature `testing`).
//!
//! [`TempPostgres::start`] runs Debian's `initdb` and `pg_ctl` (from
//! `/usr/lib/postgresql/*/bin`, or `$REMIT_PG_BIN`) in a fresh temporary directory, listening
//! only on a Unix socket in that directory, as the `postgres` user when running as root
//! (initdb refuses root), else as the current user. A small watchdog shell stops the server
//! and removes the directory when the owning process exits, even if it is killed, so a shared
//! instance in a `static` never leaks a server.
//!
//! ```no_run
//! # fn main() -> Result<(), String> {
//! let pg = remit_ledger::testing::TempPostgres::start()?;
//! let url = pg.create_database("ledger_test")?;
//! // connect with `url` …
//! # Ok(()) }
//! ```

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

/// A running throwaway PostgreSQL server. Dropping it stops the server and deletes its data.
#[derive(Debug)]
pub struct TempPostgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    watchdog: Mutex<Option<(Child, ChildStdin)>>,
}

impl TempPostgres {
    /// Find the server binaries: `$REMIT_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`.
    pub fn find_bin() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("REMIT_PG_BIN") {
            let dir = PathBuf::from(dir);
            return dir.join("initdb").exists().then_some(dir);
        }
        let mut best: Option<(u32, PathBuf)> = None;
        for entry in std::fs::read_dir("/usr/lib/postgresql").ok()?.flatten() {
            let version = entry.file_name().to_string_lossy().parse::<u32>().ok();
            let bin = entry.path().join("bin");
            if let Some(version) = version
                && bin.join("initdb").exists()
                && best.as_ref().is_none_or(|(v, _)| version > *v)
            {
                best = Some((version, bin));
            }
        }
        best.map(|(_, bin)| bin)
    }

    /// Create a cluster and start it. Errors say what to install when PostgreSQL is missing.
    pub fn start() -> Result<Self, String> {
        let bin = Self::find_bin().ok_or_else(|| {
            "postgresql server binaries not found: install Debian's `postgresql` package (or set REMIT_PG_BIN)".to_owned()
        })?;
        let user = if is_root() {
            Some(
                ["postgres", "nobody"]
                    .into_iter()
                    .find(|u| user_exists(u))
                    .ok_or("running as root and neither `postgres` nor `nobody` exists")?
                    .to_owned(),
            )
        } else {
            None
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let base = std::env::temp_dir().join(format!(
            "remit-pg-{}-{}-{nanos}",
            std::process::id(),
            next_id()
        ));
        std::fs::create_dir_all(&base)
            .map_err(|e| format!("cannot create `{}`: {e}", base.display()))?;
        if let Some(user) = &user {
            let status = Command::new("chown")
                .arg(user)
                .arg(&base)
                .status()
                .map_err(|e| format!("cannot run chown: {e}"))?;
            if !status.success() {
                return Err(format!("cannot chown `{}` to `{user}`", base.display()));
            }
        }
        let data = base.join("data");
        run_as(
            &user,
            &bin.join("initdb"),
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=trust".as_ref(),
                "--no-sync".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C".as_ref(),
            ],
        )?;
        let port = 5432;
        let options = format!(
            "-c listen_addresses='' -k {} -p {port} -c fsync=on -c synchronous_commit=on -c max_connections=50",
            base.display()
        );
        let log = base.join("server.log");
        run_as(
            &user,
            &bin.join("pg_ctl"),
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-l".as_ref(),
                log.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                "60".as_ref(),
                "start".as_ref(),
            ],
        )
        .map_err(|e| {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            format!("{e}; server log: {}", tail.lines().last().unwrap_or(""))
        })?;
        let watchdog = spawn_watchdog(&user, &bin, &base)?;
        Ok(Self {
            dir: base,
            bin,
            port,
            watchdog: Mutex::new(Some(watchdog)),
        })
    }

    /// The socket directory (the `host` to connect to).
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// Connection string for database `dbname`.
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={dbname}",
            self.dir.display(),
            self.port
        )
    }

    /// Create database `name` (dropping any earlier one) and return its connection string.
    pub fn create_database(&self, name: &str) -> Result<String, String> {
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid database name `{name}`"));
        }
        self.psql(&format!("DROP DATABASE IF EXISTS {name}"))?;
        self.psql(&format!("CREATE DATABASE {name}"))?;
        Ok(self.url(name))
    }

    /// Run one SQL statement with `psql` in database `postgres`.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        self.psql_in("postgres", sql)
    }

    /// Run one SQL statement with `psql` in database `dbname`; returns its unaligned output.
    pub fn psql_in(&self, dbname: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .env("PGCLIENTENCODING", "UTF8")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                dbname,
                "-c",
                sql,
            ])
            .output()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "psql `{sql}` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let taken = self.watchdog.lock().map(|mut w| w.take()).unwrap_or(None);
        if let Some((mut child, stdin)) = taken {
            // Closing stdin tells the watchdog to stop the server and remove the directory.
            drop(stdin);
            let _ = child.wait();
        }
    }
}

fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn user_exists(user: &str) -> bool {
    Command::new("id")
        .arg(user)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn command_as(user: &Option<String>, program: &Path) -> Command {
    match user {
        Some(user) => {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", user, "--"]).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

fn run_as(user: &Option<String>, program: &Path, args: &[&std::ffi::OsStr]) -> Result<(), String> {
    let out = command_as(user, program)
        .args(args)
        .current_dir("/")
        .output()
        .map_err(|e| format!("cannot run `{}`: {e}", program.display()))?;
    if !out.status.success() {
        return Err(format!(
            "`{}` failed: {}",
            program.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

fn spawn_watchdog(
    user: &Option<String>,
    bin: &Path,
    base: &Path,
) -> Result<(Child, ChildStdin), String> {
    let pg_ctl = bin.join("pg_ctl");
    let data = base.join("data");
    let stop = match user {
        Some(user) => format!(
            "runuser -u {user} -- '{}' -D '{}' -m immediate -w stop",
            pg_ctl.display(),
            data.display()
        ),
        None => format!(
            "'{}' -D '{}' -m immediate -w stop",
            pg_ctl.display(),
            data.display()
        ),
    };
    let script = format!(
        "echo ready; while read -r _; do :; done; {stop} >/dev/null 2>&1; rm -rf '{}'",
        base.display()
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .current_dir("/")
        .spawn()
        .map_err(|e| format!("cannot start the postgres watchdog: {e}"))?;
    let stdin = child.stdin.take().ok_or("watchdog has no stdin")?;
    let stdout = child.stdout.take().ok_or("watchdog has no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| format!("watchdog did not start: {e}"))?;
    Ok((child, stdin))
}
