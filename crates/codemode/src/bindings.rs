//! The bindings a script sees (`remit.fs.read`, `remit.exec`, …), each one a governed tool,
//! and `remit.d.ts`, generated from the same table so the declared API is the API.

/// One binding.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Binding {
    /// Where it lives under `remit` (`fs.read`).
    pub(crate) path: &'static str,
    /// The tool it calls.
    pub(crate) tool: &'static str,
    /// Positional parameters → argument names; `...` merges an options object.
    pub(crate) params: &'static [&'static str],
    /// The field of the tool's result the promise resolves to (`None`: the whole result).
    pub(crate) pick: Option<&'static str>,
    /// Its TypeScript signature (without `function`).
    pub(crate) signature: &'static str,
    /// Its documentation.
    pub(crate) doc: &'static str,
}

pub(crate) const BINDINGS: &[Binding] = &[
    Binding {
        path: "exec",
        tool: "exec",
        params: &["argv", "..."],
        pick: None,
        signature: "exec(argv: string[], options?: ExecOptions): Promise<ExecResult>",
        doc: "Run a program in the task's sandbox (decided by the remit's command rules) and wait for it. Output is redacted of secrets. Resolves whatever the exit code; rejects if the program cannot start or is refused.",
    },
    Binding {
        path: "act",
        tool: "request_action",
        params: &["kind", "args", "..."],
        pick: None,
        signature: "act(kind: string, args?: Record<string, string>, options?: { wait?: number }): Promise<ActionResult>",
        doc: "Request a typed action the remit declares (`publish`, `deploy`, …). Waits for a human's approval when the remit asks for one (up to `wait` seconds, default: the remit's approval timeout); rejects with code `pending` (and `approval`) if none came in time.",
    },
    Binding {
        path: "fs.read",
        tool: "read_file",
        params: &["path", "..."],
        pick: Some("content"),
        signature: "read(path: string, options?: { encoding?: \"utf-8\" | \"base64\"; max_bytes?: number }): Promise<string>",
        doc: "Read a file of the workspace (relative path). Paths may not leave the workspace, also not through symlinks; files the remit hides do not exist.",
    },
    Binding {
        path: "fs.write",
        tool: "write_file",
        params: &["path", "content", "..."],
        pick: None,
        signature: "write(path: string, content: string, options?: { encoding?: \"utf-8\" | \"base64\"; create_dirs?: boolean }): Promise<{ path: string; bytes: number }>",
        doc: "Create or replace a file of the workspace. Protected paths (`.git/config`, hooks, the remit's `protected`) cannot be written.",
    },
    Binding {
        path: "fs.list",
        tool: "list_files",
        params: &["path", "..."],
        pick: Some("entries"),
        signature: "list(path?: string, options?: { recursive?: boolean; max?: number }): Promise<Entry[]>",
        doc: "List a directory of the workspace (`.git` is skipped when recursive).",
    },
    Binding {
        path: "fs.glob",
        tool: "glob",
        params: &["pattern", "..."],
        pick: Some("paths"),
        signature: "glob(pattern: string, options?: { max?: number }): Promise<string[]>",
        doc: "Workspace paths matching a pattern: `*` within a segment, `**` across segments, `?` one character.",
    },
    Binding {
        path: "fs.search",
        tool: "search",
        params: &["pattern", "..."],
        pick: Some("matches"),
        signature: "search(pattern: string, options?: { path?: string; glob?: string; ignore_case?: boolean; max?: number }): Promise<Match[]>",
        doc: "Lines of workspace files that contain `pattern` (literal text).",
    },
    Binding {
        path: "http.fetch",
        tool: "http_fetch",
        params: &["url", "..."],
        pick: None,
        signature: "fetch(url: string, init?: FetchInit): Promise<FetchResult>",
        doc: "An HTTP request through the task's egress proxy, like any tool in the task: decided by the remit's network rules, credentials injected by the proxy (name them in `init.credentials`), secrets in the request refused. Rejects with code `denied` when the remit grants no such access.",
    },
    Binding {
        path: "git.status",
        tool: "git_status",
        params: &[],
        pick: None,
        signature: "status(): Promise<GitStatus>",
        doc: "The workspace's branch and changed files (`git status` in the task).",
    },
    Binding {
        path: "git.diff",
        tool: "git_diff",
        params: &["..."],
        pick: Some("diff"),
        signature: "diff(options?: { staged?: boolean; paths?: string[] }): Promise<string>",
        doc: "The workspace's changes as a unified diff (`git diff` in the task).",
    },
    Binding {
        path: "git.commit",
        tool: "git_commit",
        params: &["message", "..."],
        pick: None,
        signature: "commit(message: string, options?: { paths?: string[] }): Promise<{ commit: string; summary: string }>",
        doc: "Commit every change (or `paths`) on the task's branch (`git add` and `git commit` in the task).",
    },
    Binding {
        path: "git.push",
        tool: "git_push",
        params: &["..."],
        pick: None,
        signature: "push(options?: { remote?: string; branch?: string; force?: boolean }): Promise<PushResult>",
        doc: "Push the current branch (`git push` in the task). The egress proxy decides each ref against the remit's `network.git` rules; a refused ref rejects with code `denied` and the reason.",
    },
    Binding {
        path: "secrets.names",
        tool: "secret_names",
        params: &[],
        pick: Some("names"),
        signature: "names(): Promise<string[]>",
        doc: "The credentials this task may use, by name (values are never visible; pass names to `http.fetch`).",
    },
    Binding {
        path: "task.status",
        tool: "task_status",
        params: &[],
        pick: None,
        signature: "status(): Promise<TaskStatus>",
        doc: "The task: its id, agent, counters, approvals and recent denials.",
    },
];

const TYPES: &str = r#"
/** Options of `remit.exec`. */
interface ExecOptions {
  /** Working directory, relative to the workspace. */
  cwd?: string;
  /** Text for the program's standard input. */
  stdin?: string;
  /** Kill it after this many milliseconds (default 600000). */
  timeout_ms?: number;
  /** Most bytes kept of each output stream (default 1 MiB). */
  max_output?: number;
}

interface ExecResult {
  /** The exit code, or null when a signal ended the program. */
  exit_code: number | null;
  signal: number | null;
  /** Standard output, secrets redacted. */
  stdout: string;
  /** Standard error, secrets redacted. */
  stderr: string;
  truncated: boolean;
  timed_out: boolean;
}

interface ActionResult {
  /** `performed` (the remit's host command ran) or `allowed` (nothing to run). */
  status: "performed" | "allowed";
  result?: { exit_code: number | null; stdout: string; stderr: string; truncated: boolean };
}

interface Entry {
  /** Path relative to the workspace. */
  path: string;
  name: string;
  kind: "file" | "dir" | "symlink" | "other";
  size: number;
}

interface Match {
  path: string;
  /** 1-based. */
  line: number;
  text: string;
}

interface FetchInit {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  body_encoding?: "utf-8" | "base64";
  /** Credentials to inject, by name (see `remit.secrets.names()`). */
  credentials?: string[];
  timeout_ms?: number;
  max_bytes?: number;
}

interface FetchResult {
  /** The URL fetched. */
  url: string;
  status: number;
  ok: boolean;
  headers: Record<string, string>;
  /** The body as text (or base64 when `encoding` says so). */
  body: string;
  encoding: "utf-8" | "base64";
  truncated: boolean;
}

interface GitStatus {
  branch: string | null;
  upstream: string | null;
  clean: boolean;
  /** Porcelain status (`M `, ` M`, `??`, …) and path. */
  entries: { status: string; path: string }[];
}

interface PushResult {
  remote: string;
  ref: string;
  output: string;
}

interface TaskStatus {
  task: string;
  agent: string;
  /** The agent's owner. */
  owner: string;
  /** Who started the task. */
  requester: string;
  /** The digest of the task's remit (`sha256:…`). */
  remit: string;
  /** The workspace, as the task sees it. */
  workspace: string;
  killed: string | null;
  counters: { effects: number; denials: number; approvals: number; violations: number };
  approvals: { id: string; effect: string; state: string }[];
  denials: { time: string; kind: string; effect: string; policy: string; reason: string }[];
}

/**
 * A binding's failure. `code` says which:
 * `denied` (the remit refused; `reason` says what you may do instead),
 * `pending` (a human must approve `approval`; ask again with the same arguments later),
 * `invalid` (bad arguments), `failed` (allowed, but it did not work), `killed` (the task was
 * stopped), `limit` (a limit of this script was reached).
 */
interface RemitError extends Error {
  code: "denied" | "pending" | "invalid" | "failed" | "killed" | "limit";
  policy?: string;
  approval?: string;
}
"#;

/// `remit.d.ts`: the API a script programs against.
pub fn d_ts() -> String {
    let mut out = String::from(
        "// remit.d.ts — the API a code-mode script programs against (`remit code api`).\n//\n// A script is the body of an async function: use `await` at the top level and `return`\n// a value (it is the script's result, as JSON). Nothing else reaches outside the isolate:\n// no `require` or `import`, no file system, network, process or timers, and the clock\n// (`Date.now()`) reads the script's start time and does not move. Every call below is\n// decided by the task's remit and recorded in its ledger with the script's SHA-256.\n",
    );
    out.push_str(TYPES);
    out.push_str("\ndeclare namespace remit {\n");
    let mut namespaces: Vec<&str> = Vec::new();
    for b in BINDINGS {
        match b.path.split_once('.') {
            None => {
                out.push_str(&format!(
                    "  /** {} */\n  function {};\n",
                    b.doc, b.signature
                ));
            }
            Some((ns, _)) if !namespaces.contains(&ns) => namespaces.push(ns),
            Some(_) => {}
        }
    }
    for ns in namespaces {
        out.push_str(&format!("  namespace {ns} {{\n"));
        for b in BINDINGS
            .iter()
            .filter(|b| b.path.split_once('.').map(|(n, _)| n) == Some(ns))
        {
            out.push_str(&format!(
                "    /** {} */\n    function {};\n",
                b.doc, b.signature
            ));
        }
        out.push_str("  }\n");
    }
    out.push_str(
        "}\n\n/** Captured output: what the script prints is returned with its result. */\ndeclare const console: {\n  log(...data: unknown[]): void;\n  info(...data: unknown[]): void;\n  warn(...data: unknown[]): void;\n  error(...data: unknown[]): void;\n  debug(...data: unknown[]): void;\n};\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_binding_is_a_tool_and_declared() {
        let text = d_ts();
        for b in BINDINGS {
            assert!(crate::tools::TOOLS.contains(&b.tool), "{}", b.tool);
            let name = b.path.rsplit('.').next().unwrap_or_default();
            assert!(text.contains(&format!("function {name}(")), "{}", b.path);
        }
    }
}
