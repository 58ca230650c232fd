//! The agents inventory: every agent is a registered non-human identity with a human owner,
//! a purpose, a risk tier, a default remit and a lifecycle (active, suspended, revoked).
//!
//! A suspended or revoked agent cannot start tasks ([`Vault::admit`]); the kill switch that
//! goes with suspension and revocation (killing the tasks, revoking every lease and token)
//! is the caller's: `remit agent suspend|revoke` does all of it.

use std::time::SystemTime;

use remit_identity::clock::{from_unix_millis, rfc3339};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use crate::error::{Result, VaultError};
use crate::store::{Vault, valid_name};

/// An agent's lifecycle status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// May start tasks.
    Active,
    /// May not start tasks until resumed.
    Suspended,
    /// May never start tasks again.
    Revoked,
}

impl AgentStatus {
    /// `active` / `suspended` / `revoked`.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Active => "active",
            AgentStatus::Suspended => "suspended",
            AgentStatus::Revoked => "revoked",
        }
    }

    fn parse(text: &str) -> Option<AgentStatus> {
        match text {
            "active" => Some(AgentStatus::Active),
            "suspended" => Some(AgentStatus::Suspended),
            "revoked" => Some(AgentStatus::Revoked),
            _ => None,
        }
    }
}

/// How much harm the agent could do with what it is usually granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskTier {
    /// Not assessed.
    Unrated,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl RiskTier {
    /// The spelling used in records and policies (`context.principal.risk`).
    pub fn as_str(self) -> &'static str {
        match self {
            RiskTier::Unrated => "unrated",
            RiskTier::Low => "low",
            RiskTier::Medium => "medium",
            RiskTier::High => "high",
            RiskTier::Critical => "critical",
        }
    }

    /// Parse `low`, `medium`, … (case-insensitive).
    pub fn parse(text: &str) -> Option<RiskTier> {
        match text.to_ascii_lowercase().as_str() {
            "unrated" => Some(RiskTier::Unrated),
            "low" => Some(RiskTier::Low),
            "medium" => Some(RiskTier::Medium),
            "high" => Some(RiskTier::High),
            "critical" => Some(RiskTier::Critical),
            _ => None,
        }
    }
}

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Agent {
    /// Its name (`[agent] name` in remits).
    pub name: String,
    /// The human accountable for it.
    pub owner: String,
    /// What it is for.
    pub purpose: Option<String>,
    /// Its risk tier.
    pub risk: RiskTier,
    /// The remit its tasks use when none is given.
    pub default_remit: Option<String>,
    /// Lifecycle status.
    pub status: AgentStatus,
    /// Who set the status.
    pub status_by: String,
    /// When (RFC 3339).
    pub status_at: String,
    /// Why, if said.
    pub status_reason: Option<String>,
    /// Registered when (RFC 3339).
    pub created: String,
    /// Registered by.
    pub created_by: String,
    /// Its last task, if any.
    pub last_task: Option<String>,
    /// When its last task started (RFC 3339).
    pub last_task_at: Option<String>,
}

/// What `remit agent add` registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAgent<'a> {
    /// Name.
    pub name: &'a str,
    /// Owner (a human; required).
    pub owner: &'a str,
    /// Purpose.
    pub purpose: Option<&'a str>,
    /// Risk tier.
    pub risk: RiskTier,
    /// Default remit (a path).
    pub default_remit: Option<&'a str>,
}

const AGENT_COLUMNS: &str = "name, owner, purpose, risk, default_remit, status, status_by, \
     status_at, status_reason, created, created_by, last_task, last_task_at";

fn row_to_agent(r: &rusqlite::Row<'_>) -> rusqlite::Result<Agent> {
    let bad = |i: usize| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            "bad value".into(),
        )
    };
    let risk: String = r.get(3)?;
    let status: String = r.get(5)?;
    let time = |v: i64| rfc3339(from_unix_millis(v));
    Ok(Agent {
        name: r.get(0)?,
        owner: r.get(1)?,
        purpose: r.get(2)?,
        risk: RiskTier::parse(&risk).ok_or_else(|| bad(3))?,
        default_remit: r.get(4)?,
        status: AgentStatus::parse(&status).ok_or_else(|| bad(5))?,
        status_by: r.get(6)?,
        status_at: time(r.get(7)?),
        status_reason: r.get(8)?,
        created: time(r.get(9)?),
        created_by: r.get(10)?,
        last_task: r.get(11)?,
        last_task_at: r.get::<_, Option<i64>>(12)?.map(time),
    })
}

fn one_line(field: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() || value.chars().any(char::is_control) || value.len() > 512 {
        return Err(VaultError::BadAgent(format!(
            "the {field} must be one non-empty line of at most 512 bytes"
        )));
    }
    Ok(())
}

impl Vault {
    /// Register an agent.
    pub fn add_agent(&self, agent: &NewAgent<'_>, by: &str) -> Result<Agent> {
        if !valid_name(agent.name) {
            return Err(VaultError::BadName(agent.name.to_owned()));
        }
        one_line("owner", agent.owner)?;
        if let Some(p) = agent.purpose {
            one_line("purpose", p)?;
        }
        if let Some(r) = agent.default_remit {
            one_line("default remit", r)?;
        }
        let now = self.now_ms();
        let inserted = self
            .db()
            .execute(
                "INSERT INTO agents (name, owner, purpose, risk, default_remit, status, status_by,
                     status_at, created, created_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'active', ?6, ?7, ?7, ?6)
                 ON CONFLICT (name) DO NOTHING",
                params![
                    agent.name,
                    agent.owner.trim(),
                    agent.purpose.map(str::trim),
                    agent.risk.as_str(),
                    agent.default_remit,
                    by,
                    now
                ],
            )
            .map_err(|e| self.err(e))?;
        if inserted == 0 {
            return Err(VaultError::AgentExists(agent.name.to_owned()));
        }
        self.agent(agent.name)?
            .ok_or_else(|| VaultError::NoAgent(agent.name.to_owned()))
    }

    /// An agent, if registered.
    pub fn agent(&self, name: &str) -> Result<Option<Agent>> {
        self.db()
            .query_row(
                &format!("SELECT {AGENT_COLUMNS} FROM agents WHERE name = ?1"),
                [name],
                row_to_agent,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every registered agent, by name.
    pub fn agents(&self) -> Result<Vec<Agent>> {
        let conn = self.db();
        let mut stmt = conn
            .prepare(&format!("SELECT {AGENT_COLUMNS} FROM agents ORDER BY name"))
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], row_to_agent).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.err(e))
    }

    /// Change an agent's status. A revoked agent stays revoked.
    pub fn set_agent_status(
        &self,
        name: &str,
        status: AgentStatus,
        by: &str,
        reason: Option<&str>,
    ) -> Result<Agent> {
        let current = self
            .agent(name)?
            .ok_or_else(|| VaultError::NoAgent(name.to_owned()))?;
        if current.status == AgentStatus::Revoked && status != AgentStatus::Revoked {
            return Err(VaultError::BadAgent(format!(
                "agent `{name}` was revoked; a revoked agent cannot be resumed (register a new one)"
            )));
        }
        if let Some(r) = reason {
            one_line("reason", r)?;
        }
        self.db()
            .execute(
                "UPDATE agents SET status = ?2, status_by = ?3, status_at = ?4, status_reason = ?5
                 WHERE name = ?1",
                params![name, status.as_str(), by, self.now_ms(), reason],
            )
            .map_err(|e| self.err(e))?;
        self.agent(name)?
            .ok_or_else(|| VaultError::NoAgent(name.to_owned()))
    }

    /// Change an agent's owner, purpose, risk tier or default remit.
    pub fn update_agent(
        &self,
        name: &str,
        owner: Option<&str>,
        purpose: Option<&str>,
        risk: Option<RiskTier>,
        default_remit: Option<&str>,
    ) -> Result<Agent> {
        let current = self
            .agent(name)?
            .ok_or_else(|| VaultError::NoAgent(name.to_owned()))?;
        if let Some(o) = owner {
            one_line("owner", o)?;
        }
        if let Some(p) = purpose {
            one_line("purpose", p)?;
        }
        self.db()
            .execute(
                "UPDATE agents SET owner = ?2, purpose = ?3, risk = ?4, default_remit = ?5
                 WHERE name = ?1",
                params![
                    name,
                    owner.map(str::trim).unwrap_or(&current.owner),
                    purpose.map(str::trim).or(current.purpose.as_deref()),
                    risk.unwrap_or(current.risk).as_str(),
                    default_remit.or(current.default_remit.as_deref())
                ],
            )
            .map_err(|e| self.err(e))?;
        self.agent(name)?
            .ok_or_else(|| VaultError::NoAgent(name.to_owned()))
    }

    /// Whether `agent` may start a task now: refused when suspended or revoked. An agent
    /// that was never registered is admitted (registration is not required yet).
    pub fn admit(&self, agent: &str) -> Result<Option<Agent>> {
        match self.agent(agent)? {
            Some(a) if a.status != AgentStatus::Active => Err(VaultError::AgentRefused {
                name: agent.to_owned(),
                status: a.status.as_str(),
                reason: a
                    .status_reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default(),
            }),
            other => Ok(other),
        }
    }

    /// Note that `agent` started `task` (for `remit agent show`). Unregistered agents are
    /// not recorded.
    pub fn task_started(&self, agent: &str, task: &str, at: SystemTime) -> Result<()> {
        self.db()
            .execute(
                "UPDATE agents SET last_task = ?2, last_task_at = ?3 WHERE name = ?1",
                params![agent, task, remit_identity::clock::unix_millis(at)],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}
