//! Where running tasks can be found on the host, and the agents' lifecycle status.
//!
//! ```text
//! $REMIT_RUN (default $REMIT_HOME/run)/<task>/
//!     task.json      who, what, when; the supervisor's pid
//!     control.sock   the host control socket (approvals, kill), authorised by peer uid
//!     agent.sock     the task's agent socket, mounted into the task as $REMIT_SOCKET
//! $REMIT_HOME/agents/<name>.json   an agent's status (active, suspended, revoked)
//! ```

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What `task.json` says about a running task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// Task id.
    pub task: String,
    /// Agent name.
    pub agent: String,
    /// The agent's owner.
    pub owner: String,
    /// Who started it.
    pub requester: String,
    /// The remit (file or `<default remit>`).
    pub remit: String,
    /// `sha256:<hex>` of the remit.
    pub remit_hash: String,
    /// The workspace.
    pub workspace: String,
    /// The command.
    pub command: Vec<String>,
    /// The supervisor's pid.
    pub supervisor_pid: u32,
    /// The task's init pid on the host.
    pub init_pid: i32,
    /// When it started (RFC 3339).
    pub started: String,
}

/// The run directory: `$REMIT_RUN`, else `<home>/run`.
pub fn run_dir(env: &[(String, String)], home: &Path) -> PathBuf {
    env.iter()
        .find(|(k, v)| k == "REMIT_RUN" && !v.is_empty())
        .map(|(_, v)| PathBuf::from(v))
        .unwrap_or_else(|| home.join("run"))
}

/// A task's directory under the run directory, created for the supervisor.
#[derive(Debug)]
pub struct TaskDir {
    path: PathBuf,
}

impl TaskDir {
    /// Create `<run>/<task>/` (the run directory is listable so approvers can find tasks;
    /// what is inside is authorised per connection).
    pub fn create(run: &Path, task: &str) -> io::Result<TaskDir> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(run)?;
        let path = run.join(task);
        std::fs::DirBuilder::new().mode(0o755).create(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        Ok(TaskDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write `task.json`.
    pub fn write_info(&self, info: &TaskInfo) -> io::Result<()> {
        let tmp = self.path.join(".task.json");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(info).map_err(io::Error::other)?,
        )?;
        std::fs::rename(tmp, self.path.join("task.json"))
    }
}

impl Drop for TaskDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Every task with a directory under `run`, with its info (stale entries, whose supervisor
/// is gone, are removed).
pub fn running_tasks(run: &Path) -> Vec<(PathBuf, TaskInfo)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(run) else {
        return out;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let Ok(text) = std::fs::read(dir.join("task.json")) else {
            continue;
        };
        let Ok(info) = serde_json::from_slice::<TaskInfo>(&text) else {
            continue;
        };
        if !Path::new(&format!("/proc/{}", info.supervisor_pid)).exists() {
            let _ = std::fs::remove_dir_all(&dir);
            continue;
        }
        out.push((dir, info));
    }
    out.sort_by(|a, b| a.1.task.cmp(&b.1.task));
    out
}

/// An agent's lifecycle status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// May start tasks.
    Active,
    /// May not start tasks until resumed.
    Suspended,
    /// May never start tasks again.
    Revoked,
}

/// The stored status of an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// Agent name.
    pub name: String,
    /// Status.
    pub status: AgentStatus,
    /// Who changed it last.
    pub by: String,
    /// When (RFC 3339).
    pub at: String,
    /// Why.
    pub reason: Option<String>,
}

fn agent_path(home: &Path, name: &str) -> PathBuf {
    home.join("agents").join(format!("{name}.json"))
}

/// An agent's record; `None` when it was never suspended or revoked (active).
pub fn agent_record(home: &Path, name: &str) -> io::Result<Option<AgentRecord>> {
    match std::fs::read(agent_path(home, name)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Store an agent's record (atomically).
pub fn set_agent_record(home: &Path, record: &AgentRecord) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = home.join("agents");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let path = agent_path(home, &record.name);
    let tmp = dir.join(format!(".{}.json", record.name));
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(record).map_err(io::Error::other)?,
    )?;
    std::fs::rename(tmp, path)
}

/// Every agent with a stored record.
pub fn agent_records(home: &Path) -> Vec<AgentRecord> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(home.join("agents")) {
        for entry in entries.flatten() {
            if let Ok(bytes) = std::fs::read(entry.path())
                && let Ok(record) = serde_json::from_slice::<AgentRecord>(&bytes)
            {
                out.push(record);
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The name `/etc/passwd` gives a uid, else `uid:<n>`.
pub fn user_name(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|l| {
            let fields: Vec<&str> = l.split(':').collect();
            (fields.get(2).and_then(|u| u.parse::<u32>().ok()) == Some(uid))
                .then(|| fields[0].to_owned())
        })
        .unwrap_or_else(|| format!("uid:{uid}"))
}
