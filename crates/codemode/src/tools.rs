//! The governed tools: one vocabulary for code-mode bindings and MCP tools. Each tool has
//! typed arguments (checked before anything is asked of the gate), a name the policy sees
//! (`Tool::"write_file"`), and the arguments the policy sees (`context.call.args`).

use std::collections::BTreeMap;

use base64::Engine as _;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `read_file`: a file of the workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadFile {
    /// Path relative to the workspace (or absolute, inside it).
    pub path: String,
    /// `utf-8` (default; invalid bytes become U+FFFD) or `base64`.
    #[serde(default)]
    pub encoding: Option<Encoding>,
    /// Most bytes returned (default 1 MiB, at most 16 MiB).
    #[serde(default)]
    pub max_bytes: Option<u64>,
}

/// `write_file`: create or replace a file of the workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteFile {
    /// Path relative to the workspace (or absolute, inside it).
    pub path: String,
    /// The new content.
    pub content: String,
    /// How `content` is encoded: `utf-8` (default) or `base64`.
    #[serde(default)]
    pub encoding: Option<Encoding>,
    /// Create missing parent directories (default true).
    #[serde(default)]
    pub create_dirs: Option<bool>,
}

/// `list_files`: the entries of a directory of the workspace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListFiles {
    /// Directory relative to the workspace (default: the workspace).
    #[serde(default)]
    pub path: Option<String>,
    /// Descend into subdirectories (default false; `.git` is skipped).
    #[serde(default)]
    pub recursive: Option<bool>,
    /// Most entries returned (default 1000, at most 100000).
    #[serde(default)]
    pub max: Option<u32>,
}

/// `glob`: workspace paths matching a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Glob {
    /// `*` matches within a path segment, `**` across segments, `?` one character
    /// (`src/**/*.rs`).
    pub pattern: String,
    /// Most paths returned (default 1000, at most 100000).
    #[serde(default)]
    pub max: Option<u32>,
}

/// `search`: lines of workspace files containing a text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Search {
    /// The text to find (literal).
    pub pattern: String,
    /// Directory or file to search (default: the workspace).
    #[serde(default)]
    pub path: Option<String>,
    /// Only files whose workspace path matches this glob (`**/*.rs`).
    #[serde(default)]
    pub glob: Option<String>,
    /// Ignore case (ASCII).
    #[serde(default)]
    pub ignore_case: Option<bool>,
    /// Most matching lines returned (default 200, at most 10000).
    #[serde(default)]
    pub max: Option<u32>,
}

/// `exec`: run a program in the task's sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Exec {
    /// The program and its arguments (`["cargo", "test"]`); no shell unless you name one.
    pub argv: Vec<String>,
    /// Working directory relative to the workspace (default: the workspace).
    #[serde(default)]
    pub cwd: Option<String>,
    /// Text given to the program's standard input.
    #[serde(default)]
    pub stdin: Option<String>,
    /// Kill it after this many milliseconds (default 600000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Most bytes kept of each output stream (default 1 MiB, at most 16 MiB).
    #[serde(default)]
    pub max_output: Option<u64>,
}

/// `http_fetch`: an HTTP request through the task's egress proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpFetch {
    /// `http://` or `https://` URL.
    pub url: String,
    /// Method (default `GET`).
    #[serde(default)]
    pub method: Option<String>,
    /// Request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request body (text, or base64 with `body_encoding`).
    #[serde(default)]
    pub body: Option<String>,
    /// `utf-8` (default) or `base64`.
    #[serde(default)]
    pub body_encoding: Option<Encoding>,
    /// Credentials (by name, see `secret_names`) the proxy should inject where the remit
    /// says; the script never sees their values.
    #[serde(default)]
    pub credentials: Vec<String>,
    /// Give up after this many milliseconds (default 60000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Most response bytes returned (default 4 MiB, at most 16 MiB).
    #[serde(default)]
    pub max_bytes: Option<u64>,
}

/// `git_status`: the workspace's branch and changed files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitStatus {}

/// `git_diff`: the workspace's changes as a unified diff.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitDiff {
    /// The staged changes instead of the unstaged ones.
    #[serde(default)]
    pub staged: Option<bool>,
    /// Only these paths.
    #[serde(default)]
    pub paths: Vec<String>,
}

/// `git_commit`: commit changes on the task's branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitCommit {
    /// The commit message.
    pub message: String,
    /// Only these paths (default: every change, new files included).
    #[serde(default)]
    pub paths: Vec<String>,
}

/// `git_push`: push the current branch; the egress proxy decides each ref.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitPush {
    /// Remote name or URL (default `origin`).
    #[serde(default)]
    pub remote: Option<String>,
    /// Branch to update on the remote (default: the current branch's name).
    #[serde(default)]
    pub branch: Option<String>,
    /// Rewrite history (`--force`); the remit decides.
    #[serde(default)]
    pub force: Option<bool>,
}

/// `request_action`: a typed action the remit declares (`publish`, `deploy`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestAction {
    /// The action's kind.
    pub kind: String,
    /// Its arguments, as the remit declares them.
    #[serde(default)]
    pub args: BTreeMap<String, String>,
    /// Seconds to wait for a human's approval before answering `pending` (default: the
    /// remit's approval timeout for code mode, 0 for MCP; at most 3600).
    #[serde(default)]
    pub wait: Option<u64>,
}

/// `secret_names`: the credentials the task may use, by name (never values).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretNames {}

/// `task_status`: the task, its counters, approvals and recent denials.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskStatus {}

/// Text or base64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Encoding {
    /// UTF-8 text.
    #[serde(rename = "utf-8", alias = "utf8")]
    Utf8,
    /// Base64 (standard alphabet, padded).
    #[serde(rename = "base64")]
    Base64,
}

/// One call of a governed tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `read_file`.
    ReadFile(ReadFile),
    /// `write_file`.
    WriteFile(WriteFile),
    /// `list_files`.
    ListFiles(ListFiles),
    /// `glob`.
    Glob(Glob),
    /// `search`.
    Search(Search),
    /// `exec`.
    Exec(Exec),
    /// `http_fetch`.
    HttpFetch(HttpFetch),
    /// `git_status`.
    GitStatus(GitStatus),
    /// `git_diff`.
    GitDiff(GitDiff),
    /// `git_commit`.
    GitCommit(GitCommit),
    /// `git_push`.
    GitPush(GitPush),
    /// `request_action`.
    RequestAction(RequestAction),
    /// `secret_names`.
    SecretNames(SecretNames),
    /// `task_status`.
    TaskStatus(TaskStatus),
}

/// Every tool name, in the order tools are listed.
pub const TOOLS: [&str; 14] = [
    "read_file",
    "write_file",
    "list_files",
    "glob",
    "search",
    "exec",
    "http_fetch",
    "git_status",
    "git_diff",
    "git_commit",
    "git_push",
    "request_action",
    "secret_names",
    "task_status",
];

/// Longest argument value a call may give the policy (bytes); a longer one is refused.
pub const MAX_POLICY_ARG: usize = 16 * 1024;

impl Call {
    /// Parse a tool's arguments (a JSON object). The message names the tool and what is
    /// wrong.
    pub fn parse(tool: &str, args: serde_json::Value) -> Result<Call, String> {
        fn de<T: for<'de> Deserialize<'de>>(
            tool: &str,
            args: serde_json::Value,
        ) -> Result<T, String> {
            let args = match args {
                serde_json::Value::Null => serde_json::Value::Object(Default::default()),
                other => other,
            };
            serde_json::from_value(args).map_err(|e| format!("`{tool}`: {e}"))
        }
        Ok(match tool {
            "read_file" => Call::ReadFile(de(tool, args)?),
            "write_file" => Call::WriteFile(de(tool, args)?),
            "list_files" => Call::ListFiles(de(tool, args)?),
            "glob" => Call::Glob(de(tool, args)?),
            "search" => Call::Search(de(tool, args)?),
            "exec" => Call::Exec(de(tool, args)?),
            "http_fetch" => Call::HttpFetch(de(tool, args)?),
            "git_status" => Call::GitStatus(de(tool, args)?),
            "git_diff" => Call::GitDiff(de(tool, args)?),
            "git_commit" => Call::GitCommit(de(tool, args)?),
            "git_push" => Call::GitPush(de(tool, args)?),
            "request_action" => Call::RequestAction(de(tool, args)?),
            "secret_names" => Call::SecretNames(de(tool, args)?),
            "task_status" => Call::TaskStatus(de(tool, args)?),
            other => {
                return Err(format!(
                    "unknown tool `{other}` (tools: {})",
                    TOOLS.join(", ")
                ));
            }
        })
    }

    /// The tool's name.
    pub fn tool(&self) -> &'static str {
        match self {
            Call::ReadFile(_) => "read_file",
            Call::WriteFile(_) => "write_file",
            Call::ListFiles(_) => "list_files",
            Call::Glob(_) => "glob",
            Call::Search(_) => "search",
            Call::Exec(_) => "exec",
            Call::HttpFetch(_) => "http_fetch",
            Call::GitStatus(_) => "git_status",
            Call::GitDiff(_) => "git_diff",
            Call::GitCommit(_) => "git_commit",
            Call::GitPush(_) => "git_push",
            Call::RequestAction(_) => "request_action",
            Call::SecretNames(_) => "secret_names",
            Call::TaskStatus(_) => "task_status",
        }
    }

    /// Whether the tool only reads inside the task's boundary (its workspace, its status):
    /// its record need not be durable before it runs, because nothing outside the task
    /// changes or receives anything. Every other tool's record is durable first.
    pub fn stays_inside(&self) -> bool {
        matches!(
            self,
            Call::ReadFile(_)
                | Call::ListFiles(_)
                | Call::Glob(_)
                | Call::Search(_)
                | Call::GitStatus(_)
                | Call::GitDiff(_)
                | Call::SecretNames(_)
                | Call::TaskStatus(_)
        )
    }

    /// The arguments the policy sees (`context.call.args`) and the ledger records: short
    /// strings, never file contents or request bodies (their size and digest instead).
    ///
    /// Whole values, never cut: a call with a longer one is refused before it is decided
    /// ([`MAX_POLICY_ARG`]), so two calls that differ only past a cut can never share a
    /// decision or an approval, and no rule misses what lies past it. Lists are given both
    /// joined with spaces (for rules) and exactly, as JSON (`argv_json`, `paths_json`).
    pub fn policy_args(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            out.insert(k.to_owned(), v);
        };
        let json = |list: &[String]| serde_json::to_string(list).unwrap_or_default();
        match self {
            Call::ReadFile(a) => put("path", a.path.clone()),
            Call::WriteFile(a) => {
                // What is written, not how it travelled: a base64 body is decoded first.
                let bytes = match a.encoding {
                    Some(Encoding::Base64) => base64::engine::general_purpose::STANDARD
                        .decode(&a.content)
                        .unwrap_or_else(|_| a.content.as_bytes().to_vec()),
                    _ => a.content.as_bytes().to_vec(),
                };
                put("path", a.path.clone());
                put("bytes", bytes.len().to_string());
                put(
                    "sha256",
                    crate::source::digest(&bytes)
                        .trim_start_matches("sha256:")
                        .to_owned(),
                );
            }
            Call::ListFiles(a) => {
                put("path", a.path.clone().unwrap_or_else(|| ".".into()));
                put("recursive", a.recursive.unwrap_or(false).to_string());
            }
            Call::Glob(a) => put("pattern", a.pattern.clone()),
            Call::Search(a) => {
                put("pattern", a.pattern.clone());
                put("path", a.path.clone().unwrap_or_else(|| ".".into()));
            }
            Call::Exec(a) => {
                put("argv", a.argv.join(" "));
                put("argv_json", json(&a.argv));
                put("program", a.argv.first().cloned().unwrap_or_default());
                put("cwd", a.cwd.clone().unwrap_or_else(|| ".".into()));
                // What the program reads is part of what it does (`sh` with a script on
                // its standard input): an approval is bound to it too.
                let stdin = a.stdin.as_deref().unwrap_or_default().as_bytes();
                put("stdin_bytes", stdin.len().to_string());
                put("stdin_sha256", sha256_hex(stdin));
            }
            Call::HttpFetch(a) => {
                put("url", a.url.clone());
                put(
                    "method",
                    a.method
                        .clone()
                        .unwrap_or_else(|| "GET".into())
                        .to_uppercase(),
                );
                if let Some(host) = url_host(&a.url) {
                    put("host", host);
                }
                // What is sent, and with which credentials: an approval is bound to it.
                let body = match (&a.body, a.body_encoding) {
                    (None, _) => Vec::new(),
                    (Some(b), Some(Encoding::Base64)) => base64::engine::general_purpose::STANDARD
                        .decode(b)
                        .unwrap_or_else(|_| b.as_bytes().to_vec()),
                    (Some(b), _) => b.as_bytes().to_vec(),
                };
                put("body_bytes", body.len().to_string());
                put("body_sha256", sha256_hex(&body));
                put(
                    "header_names",
                    a.headers
                        .keys()
                        .map(|k| k.to_ascii_lowercase())
                        .collect::<Vec<_>>()
                        .join(" "),
                );
                put(
                    "headers_sha256",
                    sha256_hex(
                        serde_json::to_string(&a.headers)
                            .unwrap_or_default()
                            .as_bytes(),
                    ),
                );
                put("credentials", a.credentials.join(" "));
            }
            Call::GitStatus(_) | Call::SecretNames(_) | Call::TaskStatus(_) => {}
            Call::GitDiff(a) => {
                put("staged", a.staged.unwrap_or(false).to_string());
                put("paths", a.paths.join(" "));
                put("paths_json", json(&a.paths));
            }
            Call::GitCommit(a) => {
                put("message", a.message.clone());
                put("paths", a.paths.join(" "));
                put("paths_json", json(&a.paths));
            }
            Call::GitPush(a) => {
                put(
                    "remote",
                    a.remote.clone().unwrap_or_else(|| "origin".into()),
                );
                put("branch", a.branch.clone().unwrap_or_default());
                put("force", a.force.unwrap_or(false).to_string());
            }
            Call::RequestAction(a) => put("kind", a.kind.clone()),
        }
        out
    }
}

/// Lowercase hex SHA-256 of `bytes`.
fn sha256_hex(bytes: &[u8]) -> String {
    crate::source::digest(bytes)
        .trim_start_matches("sha256:")
        .to_owned()
}

/// The host of an `http://` or `https://` URL, lower case.
pub fn url_host(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// An approval is bound to an effect's arguments: what an `exec` reads on its standard
    /// input and what an `http_fetch` sends (body, headers, credentials) are among them, so
    /// a call approved with one cannot be made with another.
    #[test]
    fn what_a_call_sends_is_part_of_what_is_approved() {
        let args =
            |tool: &str, value: serde_json::Value| Call::parse(tool, value).unwrap().policy_args();
        let ls = args("exec", serde_json::json!({"argv": ["sh"], "stdin": "ls"}));
        let evil = args(
            "exec",
            serde_json::json!({"argv": ["sh"], "stdin": "echo x > y"}),
        );
        assert_ne!(ls, evil);
        assert_eq!(
            ls,
            args("exec", serde_json::json!({"argv": ["sh"], "stdin": "ls"}))
        );
        let fetch = |extra: serde_json::Value| {
            let mut v = serde_json::json!({"url": "https://api.test/x", "method": "POST"});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            args("http_fetch", v)
        };
        let plain = fetch(serde_json::json!({"body": "a"}));
        for other in [
            serde_json::json!({"body": "b"}),
            serde_json::json!({"body": "a", "headers": {"x-to": "elsewhere"}}),
            serde_json::json!({"body": "a", "credentials": ["deploy-key"]}),
            serde_json::json!({"body": "Yg==", "body_encoding": "base64"}),
        ] {
            assert_ne!(plain, fetch(other.clone()), "{other}");
        }
        assert_eq!(
            plain,
            fetch(serde_json::json!({"body": "YQ==", "body_encoding": "base64"}))
        );
    }

    #[test]
    fn parses_and_refuses() {
        let call = Call::parse("read_file", serde_json::json!({"path": "a"})).unwrap();
        assert_eq!(call.tool(), "read_file");
        let e = Call::parse("read_file", serde_json::json!({"path": "a", "x": 1})).unwrap_err();
        assert!(e.contains("unknown field `x`"), "{e}");
        let e = Call::parse("exec", serde_json::json!({})).unwrap_err();
        assert!(e.contains("missing field `argv`"), "{e}");
        assert!(Call::parse("rm", serde_json::Value::Null).is_err());
        assert_eq!(
            url_host("https://User@API.example.com:8443/x").unwrap(),
            "api.example.com"
        );
        let w = Call::parse(
            "write_file",
            serde_json::json!({"path": "a", "content": "hi"}),
        )
        .unwrap();
        assert_eq!(w.policy_args()["bytes"], "2");
        for tool in TOOLS {
            assert!(remit_types::effect::valid_action_name(tool));
        }
        for (k, _) in w.policy_args() {
            assert!(remit_types::effect::TOOL_ARGS.contains(&k.as_str()));
        }
    }

    #[test]
    fn calls_that_do_different_things_never_look_the_same() {
        let args = |tool: &str, v: serde_json::Value| Call::parse(tool, v).unwrap().policy_args();
        // What is written is what is hashed: base64 content is decoded first.
        let text = args(
            "write_file",
            serde_json::json!({"path": "a", "content": "SGk="}),
        );
        let decoded = args(
            "write_file",
            serde_json::json!({"path": "a", "content": "SGk=", "encoding": "base64"}),
        );
        let plain = args(
            "write_file",
            serde_json::json!({"path": "a", "content": "Hi"}),
        );
        assert_ne!(text["sha256"], decoded["sha256"]);
        assert_eq!(
            (&decoded["sha256"], &decoded["bytes"]),
            (&plain["sha256"], &plain["bytes"])
        );
        // An argument with a space and two arguments read alike joined, not exactly.
        let one = args("exec", serde_json::json!({"argv": ["echo", "a b"]}));
        let two = args("exec", serde_json::json!({"argv": ["echo", "a", "b"]}));
        assert_eq!(one["argv"], two["argv"]);
        assert_ne!(one["argv_json"], two["argv_json"]);
        // Long values are whole: two that differ only at the end differ.
        let pad = "a".repeat(2000);
        let x = args("git_push", serde_json::json!({"branch": format!("{pad}x")}));
        let y = args("git_push", serde_json::json!({"branch": format!("{pad}y")}));
        assert_ne!(x["branch"], y["branch"]);
        for k in one.keys().chain(x.keys()) {
            assert!(remit_types::effect::TOOL_ARGS.contains(&k.as_str()), "{k}");
        }
    }
}
