//! Effects: what a task asks to do across its boundary, as typed requests.
//!
//! Every adapter (exec observation, typed actions, later egress, git, MCP, code mode) turns
//! what the agent does into an [`Effect`] for the gate. The same shape is what a remit's
//! `[[test]]` entries and `remit policy explain` take:
//!
//! ```toml
//! effect = { kind = "exec", command = "git push origin main" }
//! effect = { kind = "git_push", ref = "refs/heads/main", force = true }
//! effect = { kind = "http_request", host = "api.github.com", method = "POST", path = "/repos" }
//! effect = { kind = "publish", args = { package = "left-pad", tag = "latest" } }
//! effect = { kind = "tool_call", tool = "write_file", args = { path = ".github/workflows/ci.yml" } }
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// The built-in effect kinds; any other kind is a typed action the remit declares.
pub const BUILTIN_KINDS: [&str; 5] = [
    "exec",
    "http_request",
    "git_push",
    "secret_use",
    "tool_call",
];

/// Where a [`Effect::ToolCall`] comes from: an MCP client (`mcp`) or a code-mode script
/// (`code`).
pub const TOOL_SURFACES: [&str; 2] = ["mcp", "code"];

/// The argument names a tool call may carry into the policy context
/// (`context.call.args.<name>`, each optional). Tools put their arguments here flattened to
/// strings: `path` (workspace-relative), `argv` (the command line joined with spaces) and
/// `argv_json` (exactly, as a JSON array), `url`, `sha256` (of the bytes written), and so on. A name not listed here is still recorded but cannot be
/// named by a validated policy.
pub const TOOL_ARGS: [&str; 29] = [
    "argv",
    "argv_json",
    "body_bytes",
    "body_sha256",
    "branch",
    "bytes",
    "credentials",
    "cwd",
    "force",
    "header_names",
    "headers_sha256",
    "host",
    "kind",
    "language",
    "message",
    "method",
    "path",
    "paths",
    "paths_json",
    "pattern",
    "program",
    "recursive",
    "remote",
    "sha256",
    "staged",
    "stdin_bytes",
    "stdin_sha256",
    "url",
    "wait",
];

/// Typed actions the policy schema always knows, declared or not.
pub const STANDARD_ACTIONS: [&str; 4] = ["publish", "deploy", "sign", "db_query"];

/// One effect.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Effect {
    /// Start a program inside the task.
    Exec {
        /// Arguments, `argv[0]` first.
        argv: Vec<String>,
        /// Working directory (inside the task).
        cwd: String,
    },
    /// An HTTP request leaving the task.
    HttpRequest {
        /// Destination host name.
        host: String,
        /// Destination port.
        port: u16,
        /// Method (upper case).
        method: String,
        /// Path (and query).
        path: String,
    },
    /// A git ref update pushed to a remote.
    GitPush {
        /// Remote name or URL.
        remote: String,
        /// Full ref name (`refs/heads/main`).
        reference: String,
        /// Old object id (empty for a new ref).
        old: String,
        /// New object id (empty for a deletion).
        new: String,
        /// Whether the update is not a fast-forward.
        force: bool,
        /// Whether the ref is created.
        new_branch: bool,
    },
    /// A secret used toward a destination.
    SecretUse {
        /// Secret name.
        name: String,
        /// Where it is sent.
        destination: String,
    },
    /// A typed action (`publish`, `deploy`, `sign`, `db_query`, or one the remit declares).
    Action {
        /// The action's kind.
        kind: String,
        /// Its arguments.
        args: BTreeMap<String, String>,
        /// For an action whose host command runs in the workspace, `sha256:<hex>` of the
        /// workspace's contents when it was asked for (empty otherwise): an approval is bound
        /// to what the command will find there, and the command runs only on exactly that.
        workspace: String,
    },
    /// A governed tool called by an MCP client or a code-mode script (`read_file`, `exec`,
    /// `git_push`, …). The call is decided with its arguments; what the tool then does
    /// (a program start, a request, a push) is decided again as its own effect.
    ToolCall {
        /// `mcp` or `code` ([`TOOL_SURFACES`]).
        via: String,
        /// The tool's name.
        tool: String,
        /// Its arguments, flattened to strings ([`TOOL_ARGS`]).
        args: BTreeMap<String, String>,
        /// `sha256:<hex>` of the code-mode script making the call; empty for a plain MCP
        /// call.
        script: String,
    },
}

impl Effect {
    /// The effect's kind: `exec`, `http_request`, `git_push`, `secret_use`, or the action's
    /// kind.
    pub fn kind(&self) -> &str {
        match self {
            Effect::Exec { .. } => "exec",
            Effect::HttpRequest { .. } => "http_request",
            Effect::GitPush { .. } => "git_push",
            Effect::SecretUse { .. } => "secret_use",
            Effect::Action { kind, .. } => kind,
            Effect::ToolCall { .. } => "tool_call",
        }
    }

    /// Canonical JSON: keys sorted, no insignificant whitespace. Approvals are bound to its
    /// SHA-256.
    pub fn canonical_json(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        // Keys are sorted explicitly: whether serde_json's maps keep insertion order depends
        // on features other crates in the build turn on.
        let mut out = String::new();
        write_canonical(&value, &mut out);
        out
    }

    /// `sha256:<hex>` of the canonical JSON, together with the task it belongs to: the same
    /// effect in another task is another digest.
    pub fn digest(&self, task: &str) -> String {
        let mut hasher = Sha256::new();
        hasher.update(task.as_bytes());
        hasher.update([0u8]);
        hasher.update(self.canonical_json().as_bytes());
        let mut out = String::from("sha256:");
        for byte in hasher.finalize() {
            out.push_str(&format!("{byte:02x}"));
        }
        out
    }

    /// A one-line human description.
    ///
    /// Everything in it comes from the agent, and it is shown to the humans who approve:
    /// control characters (terminal escapes, carriage returns) and characters that reorder
    /// or hide text are written as escapes, and a command's words are quoted when they hold
    /// anything but plain characters, so what is shown is what would run.
    pub fn describe(&self) -> String {
        match self {
            Effect::Exec { argv, .. } => {
                let words: Vec<String> = argv.iter().map(|a| shell_word(a)).collect();
                format!("exec `{}`", words.join(" "))
            }
            Effect::HttpRequest {
                host,
                port,
                method,
                path,
            } => format!(
                "{} https://{}:{port}{}",
                escaped(method),
                escaped(host),
                escaped(path)
            ),
            Effect::GitPush {
                reference, force, ..
            } => format!(
                "git push to `{}`{}",
                escaped(reference),
                if *force { " (force)" } else { "" }
            ),
            Effect::SecretUse { name, destination } => {
                format!(
                    "use secret `{}` toward `{}`",
                    escaped(name),
                    escaped(destination)
                )
            }
            Effect::Action {
                kind,
                args,
                workspace,
            } => {
                let args: Vec<String> = args
                    .iter()
                    .map(|(k, v)| format!("{}={}", escaped(k), shell_word(&v.to_string())))
                    .collect();
                let mut out = if args.is_empty() {
                    escaped(kind)
                } else {
                    format!("{} {}", escaped(kind), args.join(" "))
                };
                if !workspace.is_empty() {
                    out.push_str(&format!(" (on the workspace {})", escaped(workspace)));
                }
                out
            }
            Effect::ToolCall {
                via, tool, args, ..
            } => {
                let args: Vec<String> = args
                    .iter()
                    .map(|(k, v)| format!("{}={}", escaped(k), shell_word(&v.to_string())))
                    .collect();
                if args.is_empty() {
                    format!("{via} tool `{}`", escaped(tool))
                } else {
                    format!("{via} tool `{}` {}", escaped(tool), args.join(" "))
                }
            }
        }
    }
}

/// Whether a character must not reach a terminal or a reader as itself: controls (C0, DEL,
/// C1), and the marks that reorder or hide text (bidirectional embeddings, overrides and
/// isolates, zero-width characters, the byte-order mark).
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}'
        )
}

/// `text` with every [`hidden`] character written as an escape (`\x1b`, `\u{202e}`) and
/// backslashes doubled, so the escape cannot be faked either.
pub fn escaped(text: &str) -> String {
    escape(text, true)
}

/// `text` with every [`hidden`] character written as an escape, backslashes left as they
/// are: for text already [`escaped`] where it was made (an effect's description), shown
/// again on a terminal.
pub fn controls_escaped(text: &str) -> String {
    escape(text, false)
}

fn escape(text: &str, backslashes: bool) -> String {
    if !text
        .chars()
        .any(|c| hidden(c) || (backslashes && c == '\\'))
    {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' if backslashes => out.push_str("\\\\"),
            c if hidden(c) && (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if hidden(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// One word of a command as a shell would need it written: as is when it holds only plain
/// characters, otherwise in single quotes, with [`hidden`] characters escaped (`$'…'`).
pub fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        return word.to_owned();
    }
    if word.chars().any(|c| hidden(c) || c == '\\') {
        let mut out = String::from("$'");
        for c in escaped(word).chars() {
            if c == '\'' {
                out.push_str("\\'");
            } else {
                out.push(c);
            }
        }
        out.push('\'');
        return out;
    }
    format!("'{}'", word.replace('\'', "'\\''"))
}

fn write_canonical(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String((*key).clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(*key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Serialize for Effect {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serde_json::Map::new();
        map.insert("kind".into(), self.kind().into());
        match self {
            Effect::Exec { argv, cwd } => {
                map.insert("command".into(), argv.clone().into());
                map.insert("cwd".into(), cwd.clone().into());
            }
            Effect::HttpRequest {
                host,
                port,
                method,
                path,
            } => {
                map.insert("host".into(), host.clone().into());
                map.insert("port".into(), (*port).into());
                map.insert("method".into(), method.clone().into());
                map.insert("path".into(), path.clone().into());
            }
            Effect::GitPush {
                remote,
                reference,
                old,
                new,
                force,
                new_branch,
            } => {
                map.insert("remote".into(), remote.clone().into());
                map.insert("ref".into(), reference.clone().into());
                map.insert("old".into(), old.clone().into());
                map.insert("new".into(), new.clone().into());
                map.insert("force".into(), (*force).into());
                map.insert("new_branch".into(), (*new_branch).into());
            }
            Effect::SecretUse { name, destination } => {
                map.insert("name".into(), name.clone().into());
                map.insert("destination".into(), destination.clone().into());
            }
            Effect::Action {
                args, workspace, ..
            } => {
                let args: serde_json::Map<String, serde_json::Value> = args
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone().into()))
                    .collect();
                map.insert("args".into(), args.into());
                // Only when bound: the digests of other actions stay what they were.
                if !workspace.is_empty() {
                    map.insert("workspace".into(), workspace.clone().into());
                }
            }
            Effect::ToolCall {
                via,
                tool,
                args,
                script,
            } => {
                map.insert("via".into(), via.clone().into());
                map.insert("tool".into(), tool.clone().into());
                let args: serde_json::Map<String, serde_json::Value> = args
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone().into()))
                    .collect();
                map.insert("args".into(), args.into());
                map.insert("script".into(), script.clone().into());
            }
        }
        serde_json::Value::Object(map).serialize(serializer)
    }
}

/// `sha256:` and 64 lowercase hex digits.
fn is_sha256(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// An effect as written by people: a table with `kind` and fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEffect {
    kind: String,
    #[serde(default)]
    command: Option<Words>,
    #[serde(default)]
    cwd: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    remote: Option<String>,
    #[serde(default, rename = "ref")]
    reference: Option<String>,
    #[serde(default)]
    old: Option<String>,
    #[serde(default)]
    new: Option<String>,
    #[serde(default)]
    force: Option<bool>,
    #[serde(default)]
    new_branch: Option<bool>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    destination: Option<String>,
    #[serde(default)]
    args: Option<BTreeMap<String, Scalar>>,
    #[serde(default)]
    via: Option<String>,
    #[serde(default)]
    tool: Option<String>,
    #[serde(default)]
    script: Option<String>,
    #[serde(default)]
    workspace: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Words {
    List(Vec<String>),
    Line(String),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Int(i64),
    Bool(bool),
}

impl<'de> Deserialize<'de> for Effect {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let raw = RawEffect::deserialize(deserializer)?;
        let unexpected = |fields: &[(&str, bool)]| -> Result<(), D::Error> {
            match fields.iter().find(|(_, present)| *present) {
                Some((name, _)) => Err(D::Error::custom(format!(
                    "field `{name}` does not apply to a `{}` effect",
                    raw.kind
                ))),
                None => Ok(()),
            }
        };
        let need = |value: Option<String>, name: &str| {
            value.ok_or_else(|| D::Error::custom(format!("a `{}` effect needs `{name}`", raw.kind)))
        };
        let effect = match raw.kind.as_str() {
            "exec" => {
                unexpected(&[
                    ("host", raw.host.is_some()),
                    ("ref", raw.reference.is_some()),
                    ("args", raw.args.is_some()),
                    ("name", raw.name.is_some()),
                    ("tool", raw.tool.is_some()),
                    ("via", raw.via.is_some()),
                    ("script", raw.script.is_some()),
                    ("workspace", raw.workspace.is_some()),
                ])?;
                let argv = match raw.command {
                    Some(Words::List(words)) => words,
                    Some(Words::Line(line)) => line.split_whitespace().map(str::to_owned).collect(),
                    None => return Err(D::Error::custom("an `exec` effect needs `command`")),
                };
                if argv.is_empty() {
                    return Err(D::Error::custom(
                        "an `exec` effect needs a non-empty `command`",
                    ));
                }
                Effect::Exec {
                    argv,
                    cwd: raw.cwd.unwrap_or_default(),
                }
            }
            "http_request" => {
                unexpected(&[
                    ("command", raw.command.is_some()),
                    ("ref", raw.reference.is_some()),
                    ("args", raw.args.is_some()),
                    ("tool", raw.tool.is_some()),
                    ("via", raw.via.is_some()),
                    ("script", raw.script.is_some()),
                    ("workspace", raw.workspace.is_some()),
                ])?;
                Effect::HttpRequest {
                    host: need(raw.host, "host")?.to_ascii_lowercase(),
                    port: raw.port.unwrap_or(443),
                    method: raw
                        .method
                        .unwrap_or_else(|| "GET".into())
                        .to_ascii_uppercase(),
                    path: raw.path.unwrap_or_else(|| "/".into()),
                }
            }
            "git_push" => {
                unexpected(&[
                    ("command", raw.command.is_some()),
                    ("host", raw.host.is_some()),
                    ("args", raw.args.is_some()),
                    ("tool", raw.tool.is_some()),
                    ("via", raw.via.is_some()),
                    ("script", raw.script.is_some()),
                    ("workspace", raw.workspace.is_some()),
                ])?;
                Effect::GitPush {
                    remote: raw.remote.unwrap_or_else(|| "origin".into()),
                    reference: need(raw.reference, "ref")?,
                    old: raw.old.unwrap_or_default(),
                    new: raw.new.unwrap_or_default(),
                    force: raw.force.unwrap_or(false),
                    new_branch: raw.new_branch.unwrap_or(false),
                }
            }
            "secret_use" => {
                unexpected(&[
                    ("command", raw.command.is_some()),
                    ("ref", raw.reference.is_some()),
                    ("args", raw.args.is_some()),
                    ("tool", raw.tool.is_some()),
                    ("via", raw.via.is_some()),
                    ("script", raw.script.is_some()),
                    ("workspace", raw.workspace.is_some()),
                ])?;
                Effect::SecretUse {
                    name: need(raw.name, "name")?,
                    destination: raw.destination.unwrap_or_default(),
                }
            }
            "tool_call" => {
                unexpected(&[
                    ("command", raw.command.is_some()),
                    ("host", raw.host.is_some()),
                    ("ref", raw.reference.is_some()),
                    ("name", raw.name.is_some()),
                    ("workspace", raw.workspace.is_some()),
                ])?;
                let via = raw.via.unwrap_or_else(|| "mcp".into());
                if !TOOL_SURFACES.contains(&via.as_str()) {
                    return Err(D::Error::custom(format!(
                        "`via` of a `tool_call` effect is `mcp` or `code`, not `{via}`"
                    )));
                }
                let tool = need(raw.tool, "tool")?;
                if !valid_action_name(&tool) {
                    return Err(D::Error::custom(format!("`{tool}` is not a tool name")));
                }
                Effect::ToolCall {
                    via,
                    tool,
                    args: scalars(raw.args.unwrap_or_default()),
                    script: raw.script.unwrap_or_default(),
                }
            }
            kind => {
                if !valid_action_name(kind) {
                    return Err(D::Error::custom(format!(
                        "`{kind}` is not an effect kind (exec, http_request, git_push, secret_use, tool_call, or an action name of letters, digits, `-` and `_`)"
                    )));
                }
                unexpected(&[
                    ("command", raw.command.is_some()),
                    ("host", raw.host.is_some()),
                    ("ref", raw.reference.is_some()),
                    ("name", raw.name.is_some()),
                    ("tool", raw.tool.is_some()),
                    ("via", raw.via.is_some()),
                    ("script", raw.script.is_some()),
                ])?;
                let args = scalars(raw.args.unwrap_or_default());
                let workspace = raw.workspace.unwrap_or_default();
                if !workspace.is_empty() && !is_sha256(&workspace) {
                    return Err(D::Error::custom(format!(
                        "`workspace` of an action is `sha256:` and 64 lowercase hex digits, not `{workspace}`"
                    )));
                }
                Effect::Action {
                    kind: kind.to_owned(),
                    args,
                    workspace,
                }
            }
        };
        Ok(effect)
    }
}

fn scalars(args: BTreeMap<String, Scalar>) -> BTreeMap<String, String> {
    args.into_iter()
        .map(|(k, v)| {
            let v = match v {
                Scalar::Text(t) => t,
                Scalar::Int(i) => i.to_string(),
                Scalar::Bool(b) => b.to_string(),
            };
            (k, v)
        })
        .collect()
}

/// Whether a name can be an action kind (and an argument name): letters, digits, `-`, `_`,
/// starting with a letter, at most 64 characters.
pub fn valid_action_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Effect, String> {
        #[derive(Deserialize)]
        struct Wrap {
            effect: Effect,
        }
        toml::from_str::<Wrap>(text)
            .map(|w| w.effect)
            .map_err(|e| e.message().to_owned())
    }

    #[test]
    fn effects_from_toml() {
        assert_eq!(
            parse("effect = { kind = \"exec\", command = \"git push origin\" }").unwrap(),
            Effect::Exec {
                argv: vec!["git".into(), "push".into(), "origin".into()],
                cwd: String::new()
            }
        );
        let push =
            parse("effect = { kind = \"git_push\", ref = \"refs/heads/main\", force = true }")
                .unwrap();
        assert_eq!(push.kind(), "git_push");
        let publish =
            parse("effect = { kind = \"publish\", args = { tag = \"latest\", n = 3 } }").unwrap();
        assert_eq!(publish.describe(), "publish n=3 tag=latest");
        assert!(
            parse("effect = { kind = \"exec\" }")
                .unwrap_err()
                .contains("needs `command`")
        );
        assert!(
            parse("effect = { kind = \"git_push\", host = \"x\", ref = \"r\" }")
                .unwrap_err()
                .contains("does not apply")
        );
        assert!(
            parse("effect = { kind = \"rm -rf\" }")
                .unwrap_err()
                .contains("not an effect kind")
        );
        assert!(parse("effect = { kind = \"exec\", command = \"x\", colour = 1 }").is_err());
        let call = parse(
            "effect = { kind = \"tool_call\", tool = \"write_file\", args = { path = \"a\", bytes = 3 } }",
        )
        .unwrap();
        assert_eq!(call.kind(), "tool_call");
        assert_eq!(call.describe(), "mcp tool `write_file` bytes=3 path=a");
        // What the agent wrote is shown as it would run, never as terminal control.
        let sneaky = Effect::Exec {
            argv: vec![
                "\u{1b}[2K\rls".into(),
                "two words".into(),
                "it's".into(),
                "a\u{202e}b".into(),
                "back\\slash".into(),
                String::new(),
            ],
            cwd: String::new(),
        };
        assert_eq!(
            sneaky.describe(),
            "exec `$'\\x1b[2K\\x0dls' 'two words' 'it'\\''s' $'a\\u{202e}b' $'back\\\\slash' ''`"
        );
        assert!(!sneaky.describe().chars().any(char::is_control));
        assert_eq!(escaped("plain text"), "plain text");
        assert_eq!(
            controls_escaped(&sneaky.describe()),
            sneaky.describe(),
            "an escaped description is shown as it is"
        );
        assert_eq!(controls_escaped("a\\b\u{1b}"), "a\\b\\x1b");
        assert_eq!(shell_word("origin/main"), "origin/main");
        assert!(
            parse("effect = { kind = \"tool_call\", tool = \"x\", via = \"ssh\" }")
                .unwrap_err()
                .contains("`via`")
        );
        assert!(
            parse("effect = { kind = \"exec\", command = \"x\", tool = \"y\" }")
                .unwrap_err()
                .contains("does not apply")
        );
    }

    #[test]
    fn digest_binds_every_field_and_the_task() {
        let a = Effect::Action {
            kind: "publish".into(),
            workspace: String::new(),
            args: [("tag".to_string(), "v1".to_string())].into(),
        };
        let b = Effect::Action {
            kind: "publish".into(),
            workspace: String::new(),
            args: [("tag".to_string(), "v2".to_string())].into(),
        };
        assert_ne!(a.digest("t1"), b.digest("t1"));
        assert_ne!(a.digest("t1"), a.digest("t2"));
        assert_eq!(a.digest("t1"), a.clone().digest("t1"));
        assert_eq!(
            a.canonical_json(),
            r#"{"args":{"tag":"v1"},"kind":"publish"}"#
        );
    }

    #[test]
    fn round_trip() {
        for e in [
            Effect::Exec {
                argv: vec!["a".into()],
                cwd: "/w".into(),
            },
            Effect::HttpRequest {
                host: "h".into(),
                port: 443,
                method: "GET".into(),
                path: "/".into(),
            },
            Effect::SecretUse {
                name: "n".into(),
                destination: "d".into(),
            },
            Effect::ToolCall {
                via: "code".into(),
                tool: "write_file".into(),
                args: [("path".to_string(), "src/a.rs".to_string())].into(),
                script: "sha256:00".into(),
            },
        ] {
            let json = serde_json::to_string(&e).unwrap();
            assert_eq!(serde_json::from_str::<Effect>(&json).unwrap(), e);
        }
    }
}
