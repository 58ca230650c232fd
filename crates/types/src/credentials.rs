//! `[credentials]`: the just-in-time credentials a task may lease.
//!
//! Every credential a task can use is a *lease*: issued when the task starts, for the task
//! alone, with a lifetime, and revoked when the task ends, when it expires, when the task is
//! killed, when its agent is suspended or revoked — and after a crash, by the next
//! supervisor. Static secrets stay in `[[network.credential]]` (the proxy injects them; the
//! task sees a phantom), and take their value from the vault with `from = { vault = "…" }`;
//! this section adds credentials that are *made* for the task:
//!
//! ```toml
//! [credentials]
//! ttl = "30m"                              # every lease below, unless it says otherwise
//! audience = ["sts.amazonaws.com"]         # `aud` of the task's identity token
//!
//! [credentials.postgres.analytics]         # a PostgreSQL login role made for this task
//! admin = "pg-analytics-admin"             # vault secret: an admin connection string
//! access = "read_only"
//! schemas = ["reporting"]
//! env = "DATABASE_URL"
//!
//! [credentials.git.widgets]                # a bearer token remit's git inspection accepts
//! repository = "https://git.internal/acme/widgets.git"
//! push = ["refs/heads/remit/*"]
//!
//! [credentials.github.acme]                # a GitHub App installation token, narrowed
//! key = "github-app-acme"                  # vault secret: the app's private key (PEM)
//! app = "123456"
//! installation = 7890
//! repositories = ["widgets"]
//! permissions = { contents = "read", pull_requests = "write" }
//! env = "GH_TOKEN"
//! inject = { hosts = ["api.github.com"], header = "authorization" }
//! ```
//!
//! Names (the `<name>` in `[credentials.postgres.<name>]`) are lease names in records and
//! policies; they are unique across this section and `[[network.credential]]`. Nothing here
//! reads the system: secret names are resolved by the supervisor from the vault.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::network::{Injection, Network, RefPattern};
use crate::size::Span;

/// `[credentials]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// How long each lease lives unless its grant says otherwise. Default: the task's
    /// lifetime (`limits.wall`, else `agent.ttl`), else 1 hour. A lease never outlives its
    /// task.
    #[serde(default)]
    pub ttl: Option<Span>,
    /// Audiences (`aud`) of the task's identity token: the services it is presented to.
    /// Default: the issuer alone.
    #[serde(default)]
    pub audience: Vec<String>,
    /// `[credentials.postgres.<name>]`: PostgreSQL login roles made per task. Default: none.
    #[serde(default)]
    pub postgres: BTreeMap<String, PostgresGrant>,
    /// `[credentials.git.<name>]`: per-task bearer tokens for remit's git inspection.
    /// Default: none.
    #[serde(default)]
    pub git: BTreeMap<String, GitTokenGrant>,
    /// `[credentials.github.<name>]`: GitHub App installation tokens. Default: none.
    #[serde(default)]
    pub github: BTreeMap<String, GithubAppGrant>,
}

/// What a PostgreSQL role may do on the tables it is granted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DbAccess {
    /// `SELECT`.
    #[default]
    ReadOnly,
    /// `SELECT`, `INSERT`, `UPDATE`, `DELETE`, and `USAGE`/`SELECT` on sequences. Never
    /// `CREATE`, `TRUNCATE`, or DDL.
    ReadWrite,
}

impl DbAccess {
    /// `read_only` / `read_write`.
    pub fn as_str(self) -> &'static str {
        match self {
            DbAccess::ReadOnly => "read_only",
            DbAccess::ReadWrite => "read_write",
        }
    }
}

/// `[credentials.postgres.<name>]`: a login role created for the task with `VALID UNTIL`,
/// granted exactly this, handed to the task as a connection string; at revocation its
/// sessions are terminated and it is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresGrant {
    /// The vault secret holding an admin connection string (`postgres://…` or libpq
    /// `key=value`) for a role with `CREATEROLE` that may grant what is asked. Required.
    pub admin: String,
    /// The database the role may connect to. Default: the admin connection's database.
    #[serde(default)]
    pub database: Option<String>,
    /// `"read_only"` or `"read_write"`. Default: `"read_only"`.
    #[serde(default)]
    pub access: DbAccess,
    /// Schemas whose tables are granted (with `USAGE` on the schema). Default: `["public"]`.
    #[serde(default = "public_schema")]
    pub schemas: Vec<String>,
    /// Only these tables (`schema.table`), instead of every table of `schemas`.
    /// Default: none (every table of `schemas`, as they are when the lease is issued).
    #[serde(default)]
    pub tables: Vec<String>,
    /// The variable that holds the connection string in the task. Default:
    /// `<NAME>_DATABASE_URL` (the grant's name upper-cased, `-` as `_`).
    #[serde(default)]
    pub env: Option<String>,
    /// The host the task reaches the server at (a name, an address, or a socket directory).
    /// Default: the admin connection's host.
    #[serde(default)]
    pub host: Option<String>,
    /// The port the task reaches the server at. Default: the admin connection's port.
    #[serde(default)]
    pub port: Option<u16>,
    /// Most sessions the role may have at once. Default: `4`.
    #[serde(default = "four")]
    pub connection_limit: u32,
    /// This lease's lifetime. Default: `[credentials] ttl`.
    #[serde(default)]
    pub ttl: Option<Span>,
}

/// `[credentials.git.<name>]`: a bearer token for one repository, accepted by remit's git
/// inspection (and by a self-hosted server that asks remit) for fetches, and for pushes to
/// the refs named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitTokenGrant {
    /// The repository, as an `https://` (or `http://`) URL; a trailing `.git` or `/` does
    /// not matter. Required.
    pub repository: String,
    /// Ref patterns a push may update (`refs/heads/remit/*`). Default: none (fetch only).
    #[serde(default)]
    pub push: Vec<RefPattern>,
    /// The variable that holds the token in the task. Default: `<NAME>_GIT_TOKEN`.
    #[serde(default)]
    pub env: Option<String>,
    /// This lease's lifetime. Default: `[credentials] ttl`.
    #[serde(default)]
    pub ttl: Option<Span>,
}

/// A GitHub App permission level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GithubPermission {
    /// `read`.
    Read,
    /// `write`.
    Write,
    /// `admin`.
    Admin,
}

impl GithubPermission {
    /// `read` / `write` / `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            GithubPermission::Read => "read",
            GithubPermission::Write => "write",
            GithubPermission::Admin => "admin",
        }
    }
}

/// `[credentials.github.<name>]`: an installation token of a GitHub App, narrowed to the
/// repositories and permissions named, revoked when the lease ends (GitHub expires it after
/// an hour in any case).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubAppGrant {
    /// The vault secret holding the app's private key (PEM). Required.
    pub key: String,
    /// The app's id or client id (the `iss` of the app's JWT). Required.
    pub app: String,
    /// The installation id. Required.
    pub installation: u64,
    /// Repository names (without the owner) the token may reach. Required, at least one.
    pub repositories: Vec<String>,
    /// Permissions (`contents = "read"`). Required, at least one.
    pub permissions: BTreeMap<String, GithubPermission>,
    /// The API's base URL. Default: `"https://api.github.com"`.
    #[serde(default)]
    pub api: Option<String>,
    /// The variable that holds the token in the task (a phantom when `inject` is set).
    /// Default: `GH_TOKEN`.
    #[serde(default)]
    pub env: Option<String>,
    /// Inject the real token at the egress proxy, as `[[network.credential]]` does: the task
    /// only ever sees a phantom. Default: none (the task gets the token itself).
    #[serde(default)]
    pub inject: Option<Injection>,
    /// This lease's lifetime (at most 1 hour, GitHub's own limit). Default:
    /// `[credentials] ttl`, capped at 1 hour.
    #[serde(default)]
    pub ttl: Option<Span>,
}

/// The API GitHub grants talk to by default.
pub const GITHUB_API: &str = "https://api.github.com";

fn public_schema() -> Vec<String> {
    vec!["public".to_owned()]
}

fn four() -> u32 {
    4
}

/// `<NAME>` of a grant name: upper case, `-` as `_`.
pub fn env_stem(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

impl PostgresGrant {
    /// The variable that gets the connection string.
    pub fn env_var(&self, name: &str) -> String {
        self.env
            .clone()
            .unwrap_or_else(|| format!("{}_DATABASE_URL", env_stem(name)))
    }
}

impl GitTokenGrant {
    /// The variable that gets the token.
    pub fn env_var(&self, name: &str) -> String {
        self.env
            .clone()
            .unwrap_or_else(|| format!("{}_GIT_TOKEN", env_stem(name)))
    }
}

impl GithubAppGrant {
    /// The variable that gets the token (or its phantom).
    pub fn env_var(&self) -> String {
        self.env.clone().unwrap_or_else(|| "GH_TOKEN".to_owned())
    }

    /// The API base URL, without a trailing `/`.
    pub fn api_url(&self) -> String {
        self.api
            .as_deref()
            .unwrap_or(GITHUB_API)
            .trim_end_matches('/')
            .to_owned()
    }
}

/// A problem in `[credentials]`: where to point (strings to find in order) and the message;
/// located the same way as a `[network]` problem.
pub type CredentialIssue = crate::network::NetworkIssue;

fn valid_env(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn valid_identifier(name: &str) -> bool {
    // PostgreSQL identifiers we quote ourselves: anything printable but quotes and NUL,
    // at most 63 bytes.
    !name.is_empty()
        && name.len() <= 63
        && !name.contains(['"', '\0'])
        && !name.chars().any(char::is_control)
}

fn http_url(text: &str) -> bool {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"));
    matches!(rest, Some(r) if !r.is_empty() && !r.starts_with('/'))
        && !text.contains(['?', '#', ' ', '@'])
}

/// `http://127.0.0.1…`, `http://localhost…` or `http://[::1]…`: plain HTTP that never
/// leaves the machine.
fn loopback_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or_default();
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    host == "localhost" || host == "::1" || host.starts_with("127.")
}

impl Credentials {
    /// Every lease name of the remit: network credentials and the grants here.
    pub fn names<'a>(&'a self, network: &'a Network) -> Vec<&'a str> {
        let mut out: Vec<&str> = network
            .credentials
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        out.extend(self.postgres.keys().map(String::as_str));
        out.extend(self.git.keys().map(String::as_str));
        out.extend(self.github.keys().map(String::as_str));
        out
    }

    /// Check what spans several fields (and the network section it injects through).
    pub fn validate(&self, network: &Network) -> Result<(), CredentialIssue> {
        let mut names = std::collections::BTreeSet::new();
        for c in &network.credentials {
            names.insert(c.name.clone());
        }
        let mut envs: BTreeMap<String, String> = network
            .credentials
            .iter()
            .filter_map(|c| c.env.clone().map(|e| (e, c.name.clone())))
            .collect();
        let mut claim = |section: &str,
                         name: &str,
                         env: Option<String>|
         -> Result<(), CredentialIssue> {
            let at = [section, name];
            if !crate::effect::valid_action_name(name) {
                return Err(CredentialIssue::new(
                    &at,
                    format!(
                        "{section}: `{name}` is not a name (letters, digits, `-`, `_`, starting with a letter)"
                    ),
                ));
            }
            if !names.insert(name.to_owned()) {
                return Err(CredentialIssue::new(
                    &at,
                    format!(
                        "{section}: the name `{name}` is already used by another credential; lease names are unique"
                    ),
                ));
            }
            if let Some(env) = env {
                if !valid_env(&env) {
                    return Err(CredentialIssue::new(
                        &at,
                        format!("{section}.{name}: `{env}` is not a variable name"),
                    ));
                }
                if let Some(other) = envs.insert(env.clone(), name.to_owned()) {
                    return Err(CredentialIssue::new(
                        &at,
                        format!(
                            "{section}.{name}: variable `{env}` is already set by credential `{other}`; name another with `env`"
                        ),
                    ));
                }
            }
            Ok(())
        };
        if let Some(a) = self
            .audience
            .iter()
            .find(|a| a.is_empty() || a.contains(char::is_control))
        {
            return Err(CredentialIssue::new(
                &["audience"],
                format!("credentials.audience: `{a}` is not an audience"),
            ));
        }
        for (name, grant) in &self.postgres {
            let section = "credentials.postgres";
            claim(section, name, Some(grant.env_var(name)))?;
            let at = [section, name.as_str()];
            if !crate::effect::valid_action_name(&grant.admin) {
                return Err(CredentialIssue::new(
                    &at,
                    format!(
                        "{section}.{name}: `admin` must name a vault secret, not `{}`",
                        grant.admin
                    ),
                ));
            }
            if let Some(db) = &grant.database
                && !valid_identifier(db)
            {
                return Err(CredentialIssue::new(
                    &at,
                    format!("{section}.{name}: `{db}` is not a database name"),
                ));
            }
            if grant.schemas.is_empty() && grant.tables.is_empty() {
                return Err(CredentialIssue::new(
                    &at,
                    format!("{section}.{name}: name at least one schema or table to grant"),
                ));
            }
            for schema in &grant.schemas {
                if !valid_identifier(schema) {
                    return Err(CredentialIssue::new(
                        &at,
                        format!("{section}.{name}: `{schema}` is not a schema name"),
                    ));
                }
            }
            for table in &grant.tables {
                match table.split_once('.') {
                    Some((s, t)) if valid_identifier(s) && valid_identifier(t) => {}
                    _ => {
                        return Err(CredentialIssue::new(
                            &at,
                            format!(
                                "{section}.{name}: write tables as `schema.table`, not `{table}`"
                            ),
                        ));
                    }
                }
            }
            if grant.connection_limit == 0 || grant.connection_limit > 100 {
                return Err(CredentialIssue::new(
                    &at,
                    format!(
                        "{section}.{name}: connection_limit must be 1 to 100, not {}",
                        grant.connection_limit
                    ),
                ));
            }
            if grant.port == Some(0) {
                return Err(CredentialIssue::new(
                    &at,
                    format!("{section}.{name}: port 0 cannot be reached"),
                ));
            }
        }
        for (name, grant) in &self.git {
            let section = "credentials.git";
            claim(section, name, Some(grant.env_var(name)))?;
            if !http_url(&grant.repository) {
                return Err(CredentialIssue::new(
                    &[section, name.as_str()],
                    format!(
                        "{section}.{name}: repository `{}` must be an `https://` URL without credentials, query or fragment",
                        grant.repository
                    ),
                ));
            }
        }
        for (name, grant) in &self.github {
            let section = "credentials.github";
            claim(section, name, Some(grant.env_var()))?;
            let at = [section, name.as_str()];
            if !crate::effect::valid_action_name(&grant.key) {
                return Err(CredentialIssue::new(
                    &at,
                    format!(
                        "{section}.{name}: `key` must name a vault secret, not `{}`",
                        grant.key
                    ),
                ));
            }
            if grant.app.is_empty()
                || !grant
                    .app
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
            {
                return Err(CredentialIssue::new(
                    &at,
                    format!("{section}.{name}: `app` must be the app's id or client id"),
                ));
            }
            if grant.repositories.is_empty() {
                return Err(CredentialIssue::new(
                    &at,
                    format!(
                        "{section}.{name}: name the repositories the token may reach; a token for every repository of the installation is not narrowed"
                    ),
                ));
            }
            for repo in &grant.repositories {
                if repo.is_empty()
                    || repo.contains('/')
                    || !repo
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                {
                    return Err(CredentialIssue::new(
                        &at,
                        format!(
                            "{section}.{name}: `{repo}` is not a repository name (no owner: `widgets`, not `acme/widgets`)"
                        ),
                    ));
                }
            }
            if grant.permissions.is_empty() {
                return Err(CredentialIssue::new(
                    &at,
                    format!(
                        "{section}.{name}: name the permissions the token gets (`contents = \"read\"`); all of the app's is not narrowed"
                    ),
                ));
            }
            for permission in grant.permissions.keys() {
                if permission.is_empty()
                    || !permission
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c == '_')
                {
                    return Err(CredentialIssue::new(
                        &at,
                        format!("{section}.{name}: `{permission}` is not a permission name"),
                    ));
                }
            }
            if let Some(api) = &grant.api
                && !(http_url(api) && (api.starts_with("https://") || loopback_http(api)))
            {
                return Err(CredentialIssue::new(
                    &at,
                    format!(
                        "{section}.{name}: api `{api}` must be an `https://` URL (`http://` only on loopback)"
                    ),
                ));
            }
            if let Some(inject) = &grant.inject {
                if inject.placement().is_none() {
                    return Err(CredentialIssue::new(
                        &at,
                        format!(
                            "{section}.{name}: `inject` needs exactly one of `header`, `basic` or `query`"
                        ),
                    ));
                }
                if inject.hosts.is_empty() {
                    return Err(CredentialIssue::new(
                        &at,
                        format!("{section}.{name}: `inject.hosts` is empty"),
                    ));
                }
                for host in &inject.hosts {
                    let reachable = network.allow.iter().any(|a| host.host_covered_by(a))
                        || network.rules.iter().any(|r| host.host_covered_by(&r.host));
                    if !reachable {
                        return Err(CredentialIssue::new(
                            &at,
                            format!(
                                "{section}.{name}: `{host}` is not allowed by network.allow or a network.rule, so the token could never be sent there"
                            ),
                        ));
                    }
                }
            }
            if let Some(ttl) = grant.ttl
                && ttl.0 > std::time::Duration::from_secs(3600)
            {
                return Err(CredentialIssue::new(
                    &at,
                    format!(
                        "{section}.{name}: GitHub installation tokens live at most 1h, not {ttl}"
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<crate::remit::LoadedRemit, String> {
        crate::remit::parse(text, "t.remit.toml", ".".into()).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_pinned() {
        let loaded = parse(
            "[credentials.postgres.analytics]\nadmin = \"pg-admin\"\n\
             [credentials.git.widgets]\nrepository = \"https://git.internal/acme/widgets.git\"\n\
             [credentials.github.acme]\nkey = \"gh-key\"\napp = \"1\"\ninstallation = 2\nrepositories = [\"w\"]\npermissions = { contents = \"read\" }\n",
        )
        .unwrap();
        let c = &loaded.remit.credentials;
        assert_eq!(c.ttl, None);
        assert!(c.audience.is_empty());
        let pg = &c.postgres["analytics"];
        assert_eq!(
            pg,
            &PostgresGrant {
                admin: "pg-admin".into(),
                database: None,
                access: DbAccess::ReadOnly,
                schemas: vec!["public".into()],
                tables: vec![],
                env: None,
                host: None,
                port: None,
                connection_limit: 4,
                ttl: None,
            }
        );
        assert_eq!(pg.env_var("analytics"), "ANALYTICS_DATABASE_URL");
        let git = &c.git["widgets"];
        assert!(git.push.is_empty());
        assert_eq!(git.env_var("widgets"), "WIDGETS_GIT_TOKEN");
        let gh = &c.github["acme"];
        assert_eq!(gh.api_url(), GITHUB_API);
        assert_eq!(gh.env_var(), "GH_TOKEN");
        assert!(gh.inject.is_none());
        assert_eq!(parse("").unwrap().remit.credentials, Credentials::default());
    }

    #[test]
    fn errors_name_line_and_column() {
        for (text, line, needle) in [
            (
                "[credentials.postgres.a]\nadmin = \"x\"\nacess = \"read_only\"\n",
                3,
                "unknown field",
            ),
            (
                "[credentials.postgres.a]\nadmin = \"x\"\naccess = \"everything\"\n",
                3,
                "unknown variant",
            ),
            (
                "[credentials.postgres.a]\nadmin = \"x\"\nconnection_limit = 0\n",
                1,
                "connection_limit",
            ),
            (
                "[credentials.postgres.a]\nadmin = \"x\"\ntables = [\"orders\"]\n",
                1,
                "schema.table",
            ),
            (
                "[credentials.github.g]\nkey = \"k\"\napp = \"1\"\ninstallation = 2\nrepositories = [\"w\"]\npermissions = { contents = \"read\" }\napi = \"http://github.example.com\"\n",
                1,
                "only on loopback",
            ),
            (
                "[credentials.git.w]\nrepository = \"ssh://git@x/y\"\n",
                1,
                "https://",
            ),
            (
                "[credentials.git.w]\nrepository = \"https://x/y\"\npush = [\"main\"]\n",
                3,
                "refs/heads/main",
            ),
            (
                "[credentials.github.g]\nkey = \"k\"\napp = \"1\"\ninstallation = 2\nrepositories = []\npermissions = { contents = \"read\" }\n",
                1,
                "repositories",
            ),
            (
                "[credentials.github.g]\nkey = \"k\"\napp = \"1\"\ninstallation = 2\nrepositories = [\"acme/w\"]\npermissions = { contents = \"read\" }\n",
                1,
                "no owner",
            ),
            (
                "[credentials.github.g]\nkey = \"k\"\napp = \"1\"\ninstallation = 2\nrepositories = [\"w\"]\npermissions = { contents = \"read\" }\ninject = { hosts = [\"api.github.com\"], header = \"authorization\" }\n",
                1,
                "not allowed by network.allow",
            ),
            (
                "[credentials.git.a]\nrepository = \"https://x/y\"\n[credentials.postgres.a]\nadmin = \"x\"\n",
                1,
                "already used",
            ),
            (
                "[credentials.git.a]\nrepository = \"https://x/y\"\nenv = \"T\"\n[credentials.git.b]\nrepository = \"https://x/z\"\nenv = \"T\"\n",
                4,
                "already set",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
            assert!(
                err.starts_with(&format!("t.remit.toml:{line}:")),
                "{text}: {err}"
            );
            assert!(!err.contains('\n'), "{err}");
        }
    }
}
