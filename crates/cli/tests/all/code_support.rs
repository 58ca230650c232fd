//! What the code-mode and MCP tests share: a small HTTP/1.1 server on a loopback address
//! of its own (tasks reach it only through their egress proxy), git's `http-backend` behind
//! it, a Python with the MCP SDK, and reading the ledger's record of tool calls.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::support::{World, ok};

/// One request the server saw.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Seen {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Handler = Arc<dyn Fn(&Seen) -> (u16, Vec<(String, String)>, Vec<u8>) + Send + Sync>;

/// A server on `127.0.0.2` (not the task's `NO_PROXY` loopback, so tasks go through their
/// proxy), one thread per connection, recording what it saw.
pub(crate) struct Server {
    pub(crate) port: u16,
    pub(crate) seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    pub(crate) fn start(handler: Handler) -> Server {
        let listener = TcpListener::bind("127.0.0.2:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let handler = Arc::clone(&handler);
                let record = Arc::clone(&record);
                std::thread::spawn(move || serve(stream, handler, record));
            }
        });
        Server { port, seen }
    }

    /// Answers every request with a JSON echo of it (credential headers only by length:
    /// the egress proxy cuts a response that reflects an injected secret).
    pub(crate) fn echo() -> Server {
        Server::start(Arc::new(|seen: &Seen| {
            let headers: serde_json::Map<String, serde_json::Value> = seen
                .headers
                .iter()
                .map(|(k, v)| {
                    let k = k.to_ascii_lowercase();
                    if k == "x-api-key" || k == "authorization" {
                        (k, v.len().into())
                    } else {
                        (k, v.clone().into())
                    }
                })
                .collect();
            let body = serde_json::json!({
                "method": seen.method,
                "target": seen.target,
                "headers": headers,
                "body": String::from_utf8_lossy(&seen.body),
            });
            (
                200,
                vec![("content-type".into(), "application/json".into())],
                body.to_string().into_bytes(),
            )
        }))
    }

    /// git's smart HTTP (`git http-backend`) for the bare repositories under `root`.
    pub(crate) fn git(root: &Path) -> Server {
        let root = root.to_path_buf();
        Server::start(Arc::new(move |seen: &Seen| cgi(&root, seen)))
    }
}

fn serve(stream: TcpStream, handler: Handler, record: Arc<Mutex<Vec<Seen>>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size).unwrap();
                let n = usize::from_str_radix(size.trim().split(';').next().unwrap(), 16).unwrap();
                let mut chunk = vec![0; n + 2];
                reader.read_exact(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            body = vec![0; n];
            reader.read_exact(&mut body).unwrap();
        }
        let seen = Seen {
            method,
            target,
            headers,
            body,
        };
        record.lock().unwrap().push(seen.clone());
        let (status, headers, body) = handler(&seen);
        let mut head = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(&body).is_err() {
            return;
        }
    }
}

fn cgi(root: &Path, seen: &Seen) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let (path, query) = seen.target.split_once('?').unwrap_or((&seen.target, ""));
    // Absolute-form targets arrive from proxies.
    let path = path
        .split_once("://")
        .map(|(_, rest)| rest.find('/').map(|i| &rest[i..]).unwrap_or("/"))
        .unwrap_or(path);
    let mut command = Command::new("git");
    command
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REMOTE_USER", "tester")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("REQUEST_METHOD", &seen.method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_LENGTH", seen.body.len().to_string())
        .env("CONTENT_TYPE", seen.header("content-type").unwrap_or(""))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    if let Some(enc) = seen.header("content-encoding") {
        command.env("HTTP_CONTENT_ENCODING", enc);
    }
    if let Some(p) = seen.header("git-protocol") {
        command.env("GIT_PROTOCOL", p);
    }
    let mut child = command.spawn().unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        let body = seen.body.clone();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&body);
        });
    }
    let out = child.wait_with_output().unwrap();
    let split = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, 4))
        .or_else(|| {
            out.stdout
                .windows(2)
                .position(|w| w == b"\n\n")
                .map(|p| (p, 2))
        });
    let (head, body) = match split {
        Some((p, n)) => (
            String::from_utf8_lossy(&out.stdout[..p]).into_owned(),
            out.stdout[p + n..].to_vec(),
        ),
        None => (String::new(), out.stdout.clone()),
    };
    let mut status = 200;
    let mut headers = Vec::new();
    for line in head.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        if k.eq_ignore_ascii_case("status") {
            status = v
                .trim()
                .split(' ')
                .next()
                .unwrap_or("200")
                .parse()
                .unwrap_or(500);
        } else {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    (status, headers, body)
}

/// Run git on the host (test setup, not through any task).
pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=tester",
            "-c",
            "user.email=t@example.com",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `sha256:<hex>` of a file, as code mode records a script.
pub(crate) fn digest_of(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    format!("sha256:{}", text.split_whitespace().next().unwrap())
}

/// A Python with the MCP SDK and Anthropic's SDK (`mcp` and `anthropic` from PyPI):
/// `$REMIT_TEST_PYTHON`, or a virtual environment under the target directory, created (and
/// both installed from PyPI) the first time.
pub(crate) fn mcp_python() -> PathBuf {
    if let Ok(p) = std::env::var("REMIT_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    // tests/all → the workspace's target directory.
    let target = Path::new(env!("CARGO_BIN_EXE_remit"))
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf();
    let venv = target.join("mcp-venv");
    let python = venv.join("bin/python");
    let ok = |p: &Path| {
        Command::new(p)
            .args(["-c", "import mcp, httpx2, anthropic"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ok(&python) {
        return python;
    }
    // Another test binary may be creating it: a lock directory serialises that.
    let lock = target.join("mcp-venv.lock");
    let started = std::time::Instant::now();
    while std::fs::create_dir(&lock).is_err() {
        assert!(
            started.elapsed().as_secs() < 600,
            "waiting for {}",
            lock.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
        if ok(&python) {
            return python;
        }
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "mcp==2.3.0", "anthropic==2.17.0"])
            .status()
            .is_ok_and(|s| s.success());
    let _ = std::fs::remove_dir(&lock);
    assert!(
        made && ok(&python),
        "cannot set up a Python with the MCP and Anthropic SDKs in {} (python3 -m venv; pip install mcp==2.3.0 anthropic==2.17.0); set REMIT_TEST_PYTHON to one that has them",
        venv.display()
    );
    python
}

/// The MCP client script.
pub(crate) fn mcp_client() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp_client.py")
}

/// Every event of the home's ledger (`remit ledger show --json`), parsed.
pub(crate) fn ledger(w: &World) -> Vec<Value> {
    let out = w
        .command()
        .args(["ledger", "show", "--json"])
        .output()
        .unwrap();
    ok(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The id of the one `tool.call` effect started for `tool` whose argument `arg` is `value`.
pub(crate) fn tool_call(events: &[Value], tool: &str, arg: &str, value: &str) -> String {
    let ids: Vec<&str> = events
        .iter()
        .filter(|e| {
            e["body"]["kind"] == "effect_started"
                && e["body"]["effect"]["kind"] == "tool.call"
                && e["body"]["effect"]["target"] == tool
                && e["body"]["effect"]["attributes"][format!("arg.{arg}")] == value
        })
        .map(|e| e["body"]["effect"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "one `{tool}` call with {arg}={value}: {events:#?}"
    );
    ids[0].to_owned()
}

/// What was recorded of effect `id` after it started: its `effect_performed` or
/// `effect_failed` events.
pub(crate) fn outcomes<'a>(events: &'a [Value], id: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| {
            matches!(
                e["body"]["kind"].as_str(),
                Some("effect_performed" | "effect_failed")
            ) && e["body"]["effect_id"] == id
        })
        .collect()
}

/// The one outcome of a tool call that was refused further down (`code` is `denied` or
/// `pending`): recorded as failed (never as performed), with the refusal as its reason,
/// once. Returns the reason.
pub(crate) fn refused_outcome(events: &[Value], id: &str, code: &str) -> String {
    let outcomes = outcomes(events, id);
    assert_eq!(outcomes.len(), 1, "one outcome: {outcomes:#?}");
    let body = &outcomes[0]["body"];
    assert_eq!(body["kind"], "effect_failed", "not performed: {body}");
    let error = body["error"].as_str().unwrap().to_owned();
    let prefix = format!("{code}: ");
    assert!(error.starts_with(&prefix), "{error}");
    assert_eq!(error.matches(&prefix).count(), 1, "one prefix: {error}");
    error
}

/// A bare repository `origin.git` (one commit on `main`: `README.md`, `test.sh`) served over
/// git's smart HTTP on an address only the egress proxy reaches, cloned into the workspace.
/// Returns the server, the directory holding the bare repository, and `main`'s commit.
pub(crate) fn cloned_origin(w: &World) -> (Server, PathBuf, String) {
    let repos = w.dir.path().join("repos");
    std::fs::create_dir_all(&repos).unwrap();
    git(&repos, &["init", "-q", "--bare", "origin.git"]);
    let server = Server::git(&repos);
    let url = format!("http://127.0.0.2:{}/origin.git", server.port);
    std::fs::remove_dir_all(&w.ws).unwrap();
    let seed = w.dir.path().join("seed");
    std::fs::create_dir_all(&seed).unwrap();
    git(&seed, &["init", "-q"]);
    std::fs::write(
        seed.join("test.sh"),
        "test -f README.md && echo 'tests passed'\n",
    )
    .unwrap();
    std::fs::write(seed.join("README.md"), "# demo\n").unwrap();
    git(&seed, &["add", "."]);
    git(&seed, &["commit", "-qm", "init"]);
    git(
        &seed,
        &[
            "push",
            "-q",
            repos.join("origin.git").to_str().unwrap(),
            "HEAD:refs/heads/main",
        ],
    );
    git(w.dir.path(), &["clone", "-q", &url, w.ws.to_str().unwrap()]);
    let main = git(&repos.join("origin.git"), &["rev-parse", "refs/heads/main"]);
    (server, repos, main)
}
