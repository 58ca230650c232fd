//! The in-task helper: file and HTTP work done *inside* the task, as the task's user, in
//! the task's view of the file system and network.
//!
//! Why not on the host: the supervisor may be root, and the task's view is narrower than
//! the host's — files the remit hides are masked, `.git/config`, hooks and the remit's
//! protected paths are read-only mounts, and the task runs as its own uid. Doing file work
//! on the host would have to re-implement every one of those, and race the task (which can
//! swap a path component for a symlink between a check and an open). Inside the task,
//! every layer of the sandbox applies by construction; the helper adds its own check that
//! a path stays in the workspace: lexically (no absolute paths, no `..`) and at open time
//! (`openat2` with `RESOLVE_BENEATH`: a symlink that leaves the workspace fails the open).
//!
//! `remit code helper` runs [`main`]: one JSON request on standard input, one JSON answer
//! on standard output. HTTP requests go to the task's egress proxy (`HTTP_PROXY`) in
//! absolute form, like any tool in the task: the proxy decides them, injects credentials
//! (the helper places the task's phantom where the remit says) and refuses secrets.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path};

use base64::Engine as _;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Largest request the helper reads.
const MAX_REQUEST: u64 = 64 << 20;
/// Largest file read or HTTP body returned.
pub const MAX_BYTES: u64 = 16 << 20;
/// Entries visited by a walk, at most.
const MAX_VISITS: usize = 200_000;

/// One request to the helper.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Read a file.
    Read {
        /// The workspace.
        root: String,
        /// Workspace-relative path.
        path: String,
        /// Most bytes.
        max: u64,
    },
    /// Write a file.
    Write {
        /// The workspace.
        root: String,
        /// Workspace-relative path.
        path: String,
        /// Content, base64.
        content: String,
        /// Create missing parents.
        create_dirs: bool,
    },
    /// List a directory.
    List {
        /// The workspace.
        root: String,
        /// Workspace-relative path (`.` for the workspace).
        path: String,
        /// Descend.
        recursive: bool,
        /// Most entries.
        max: usize,
    },
    /// Paths matching a glob.
    Glob {
        /// The workspace.
        root: String,
        /// The pattern.
        pattern: String,
        /// Most paths.
        max: usize,
    },
    /// Lines containing a text.
    Search {
        /// The workspace.
        root: String,
        /// Workspace-relative path to search under.
        path: String,
        /// The text.
        pattern: String,
        /// Only files matching this glob.
        glob: Option<String>,
        /// ASCII case-insensitive.
        ignore_case: bool,
        /// Most lines.
        max: usize,
    },
    /// An HTTP request through the proxy.
    Fetch {
        /// The URL.
        url: String,
        /// Method.
        method: String,
        /// Headers.
        headers: Vec<(String, String)>,
        /// Body, base64.
        body: String,
        /// Credentials to place.
        credentials: Vec<Placement>,
        /// Milliseconds.
        timeout_ms: u64,
        /// Most response bytes.
        max: u64,
    },
}

/// Where the helper puts a credential's phantom (read from the task's environment).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// The credential's name (for messages).
    pub name: String,
    /// The variable holding its phantom in the task.
    pub env: String,
    /// `header`, `basic-password`, `basic-username` or `query`.
    pub how: String,
    /// The header or query parameter name.
    pub field: String,
}

/// `remit code helper`: answer one request from standard input on standard output.
pub fn main() -> std::process::ExitCode {
    let mut input = Vec::new();
    let answer = match std::io::stdin().take(MAX_REQUEST).read_to_end(&mut input) {
        Ok(_) => match serde_json::from_slice::<Request>(&input) {
            Ok(request) => handle(request),
            Err(e) => Err(format!("malformed helper request: {e}")),
        },
        Err(e) => Err(format!("cannot read the request: {e}")),
    };
    let out = match answer {
        Ok(v) => json!({ "ok": v }),
        Err(e) => json!({ "error": e }),
    };
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(out.to_string().as_bytes());
    let _ = stdout.flush();
    std::process::ExitCode::SUCCESS
}

/// Answer one request.
pub fn handle(request: Request) -> Result<Value, String> {
    match request {
        Request::Read { root, path, max } => read(&root, &path, max.min(MAX_BYTES)),
        Request::Write {
            root,
            path,
            content,
            create_dirs,
        } => write(&root, &path, &content, create_dirs),
        Request::List {
            root,
            path,
            recursive,
            max,
        } => list(&root, &path, recursive, max),
        Request::Glob { root, pattern, max } => glob(&root, &pattern, max),
        Request::Search {
            root,
            path,
            pattern,
            glob,
            ignore_case,
            max,
        } => search(&root, &path, &pattern, glob.as_deref(), ignore_case, max),
        Request::Fetch { .. } => fetch(request),
    }
}

fn reason(e: rustix::io::Errno) -> String {
    match e {
        rustix::io::Errno::NOENT => "no such file or directory".into(),
        rustix::io::Errno::ACCESS | rustix::io::Errno::PERM => "permission denied".into(),
        rustix::io::Errno::XDEV => "it leads out of the workspace (through a symlink)".into(),
        rustix::io::Errno::LOOP => "too many symlinks".into(),
        rustix::io::Errno::NOTDIR => "a component is not a directory".into(),
        rustix::io::Errno::ISDIR => "it is a directory".into(),
        rustix::io::Errno::ROFS => "it is read-only in this task".into(),
        other => std::io::Error::from(other).to_string(),
    }
}

/// A workspace-relative path, checked lexically: no absolute path, no `..`.
pub fn check_relative(path: &str) -> Result<String, String> {
    if path.is_empty() || path == "." {
        return Ok(".".into());
    }
    if path.contains('\0') {
        return Err(format!(
            "path `{}` contains a NUL byte",
            path.escape_debug()
        ));
    }
    let mut parts: Vec<&str> = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(c) => parts.push(c.to_str().unwrap_or_default()),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(format!(
                    "path `{path}` uses `..`; name files inside the workspace relative to it"
                ));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "path `{path}` is absolute; name files relative to the workspace"
                ));
            }
        }
    }
    if parts.is_empty() {
        return Ok(".".into());
    }
    Ok(parts.join("/"))
}

fn open_root(root: &str) -> Result<OwnedFd, String> {
    rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("cannot open the workspace: {}", reason(e)))
}

const BENEATH: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

fn open_beneath(dir: impl AsFd, path: &str, flags: OFlags) -> Result<OwnedFd, String> {
    // openat2 refuses a mode without O_CREAT.
    let mode = if flags.contains(OFlags::CREATE) {
        Mode::from_raw_mode(0o666)
    } else {
        Mode::empty()
    };
    rustix::fs::openat2(dir, path, flags | OFlags::CLOEXEC, mode, BENEATH)
        .map_err(|e| format!("`{path}`: {}", reason(e)))
}

fn read(root: &str, path: &str, max: u64) -> Result<Value, String> {
    let path = check_relative(path)?;
    let root_fd = open_root(root)?;
    let fd = open_beneath(&root_fd, &path, OFlags::RDONLY)?;
    let stat = rustix::fs::fstat(&fd).map_err(|e| format!("`{path}`: {}", reason(e)))?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(format!("`{path}` is not a regular file"));
    }
    let mut file = std::fs::File::from(fd);
    let mut data = Vec::new();
    Read::by_ref(&mut file)
        .take(max + 1)
        .read_to_end(&mut data)
        .map_err(|e| format!("`{path}`: {e}"))?;
    let truncated = data.len() as u64 > max;
    data.truncate(max as usize);
    Ok(json!({
        "path": path,
        "content": base64::engine::general_purpose::STANDARD.encode(&data),
        "size": stat.st_size,
        "truncated": truncated,
    }))
}

/// Open (creating when asked) the directory `path` under `root`, one component at a
/// time, never leaving `root`.
fn open_dir(root: &OwnedFd, path: &str, create: bool) -> Result<OwnedFd, String> {
    let mut current = rustix::io::dup(root).map_err(|e| format!("dup: {e}"))?;
    if path == "." {
        return Ok(current);
    }
    for component in path.split('/') {
        let next = match rustix::fs::openat2(
            &current,
            component,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            BENEATH,
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) if create => {
                rustix::fs::mkdirat(&current, component, Mode::from_raw_mode(0o777))
                    .or_else(|e| {
                        if e == rustix::io::Errno::EXIST {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(|e| {
                        format!("cannot create `{component}` in `{path}`: {}", reason(e))
                    })?;
                open_beneath(&current, component, OFlags::RDONLY | OFlags::DIRECTORY)?
            }
            Err(e) => return Err(format!("`{path}`: {}", reason(e))),
        };
        current = next;
    }
    Ok(current)
}

fn write(root: &str, path: &str, content: &str, create_dirs: bool) -> Result<Value, String> {
    let path = check_relative(path)?;
    if path == "." {
        return Err("a file name is needed".into());
    }
    let data = base64::engine::general_purpose::STANDARD
        .decode(content)
        .map_err(|e| format!("malformed content: {e}"))?;
    let root_fd = open_root(root)?;
    let (parent, name) = match path.rsplit_once('/') {
        Some((p, n)) => (p.to_owned(), n.to_owned()),
        None => (".".to_owned(), path.clone()),
    };
    let dir = open_dir(&root_fd, &parent, create_dirs)?;
    let fd = open_beneath(&dir, &name, OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC)
        .map_err(|e| e.replacen(&format!("`{name}`"), &format!("`{path}`"), 1))?;
    let mut file = std::fs::File::from(fd);
    file.write_all(&data)
        .map_err(|e| format!("`{path}`: {e}"))?;
    Ok(json!({ "path": path, "bytes": data.len() }))
}

fn kind(t: rustix::fs::FileType) -> &'static str {
    match t {
        rustix::fs::FileType::RegularFile => "file",
        rustix::fs::FileType::Directory => "dir",
        rustix::fs::FileType::Symlink => "symlink",
        _ => "other",
    }
}

/// Visit entries under `path` (depth first, `.git` skipped, symlinks not followed).
fn walk(
    root: &OwnedFd,
    path: &str,
    recursive: bool,
    visit: &mut dyn FnMut(&str, &str, rustix::fs::FileType, &OwnedFd) -> bool,
) -> Result<bool, String> {
    let mut stack = vec![path.to_owned()];
    let mut visits = 0usize;
    while let Some(dir_path) = stack.pop() {
        let fd = match open_dir(root, &dir_path, false) {
            Ok(fd) => fd,
            Err(e) if dir_path == path => return Err(e),
            Err(_) => continue,
        };
        let dir =
            rustix::fs::Dir::read_from(&fd).map_err(|e| format!("`{dir_path}`: {}", reason(e)))?;
        let mut entries: Vec<(String, rustix::fs::FileType)> = Vec::new();
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "." || name == ".." {
                continue;
            }
            entries.push((name, entry.file_type()));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut subdirs = Vec::new();
        for (name, t) in entries {
            visits += 1;
            if visits > MAX_VISITS {
                return Ok(false);
            }
            let rel = if dir_path == "." {
                name.clone()
            } else {
                format!("{dir_path}/{name}")
            };
            // Some file systems do not report types in directory entries.
            let t = if t == rustix::fs::FileType::Unknown {
                rustix::fs::statat(&fd, name.as_str(), rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                    .map(|s| rustix::fs::FileType::from_raw_mode(s.st_mode))
                    .unwrap_or(t)
            } else {
                t
            };
            if !visit(&rel, &name, t, &fd) {
                return Ok(false);
            }
            if recursive && t == rustix::fs::FileType::Directory && name != ".git" {
                subdirs.push(rel);
            }
        }
        subdirs.reverse();
        stack.extend(subdirs);
    }
    Ok(true)
}

fn list(root: &str, path: &str, recursive: bool, max: usize) -> Result<Value, String> {
    let path = check_relative(path)?;
    let root_fd = open_root(root)?;
    let mut entries = Vec::new();
    let mut truncated = false;
    walk(&root_fd, &path, recursive, &mut |rel, name, t, dir| {
        if entries.len() >= max {
            truncated = true;
            return false;
        }
        let size = if t == rustix::fs::FileType::RegularFile {
            rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                .map(|s| s.st_size)
                .unwrap_or(0)
        } else {
            0
        };
        entries.push(json!({ "path": rel, "name": name, "kind": kind(t), "size": size }));
        true
    })?;
    Ok(json!({ "path": path, "entries": entries, "truncated": truncated }))
}

fn glob(root: &str, pattern: &str, max: usize) -> Result<Value, String> {
    let pattern = pattern.trim_start_matches("./");
    if pattern.starts_with('/') || pattern.split('/').any(|c| c == "..") {
        return Err(format!(
            "pattern `{pattern}` must be relative to the workspace, without `..`"
        ));
    }
    let root_fd = open_root(root)?;
    let mut paths = Vec::new();
    let mut truncated = false;
    let recursive = pattern.contains('/') || pattern.contains("**");
    walk(&root_fd, ".", recursive, &mut |rel, _, _, _| {
        if glob_matches(pattern, rel) {
            if paths.len() >= max {
                truncated = true;
                return false;
            }
            paths.push(rel.to_owned());
        }
        true
    })?;
    Ok(json!({ "pattern": pattern, "paths": paths, "truncated": truncated }))
}

/// `*` within a segment, `**` across segments, `?` one character.
pub fn glob_matches(pattern: &str, path: &str) -> bool {
    remit_gate::glob::matches(pattern, path)
}

fn search(
    root: &str,
    path: &str,
    pattern: &str,
    only: Option<&str>,
    ignore_case: bool,
    max: usize,
) -> Result<Value, String> {
    if pattern.is_empty() {
        return Err("the search pattern is empty".into());
    }
    let path = check_relative(path)?;
    let root_fd = open_root(root)?;
    let needle: Vec<u8> = if ignore_case {
        pattern.to_ascii_lowercase().into_bytes()
    } else {
        pattern.as_bytes().to_vec()
    };
    let finder = memchr::memmem::Finder::new(&needle);
    let mut matches = Vec::new();
    let mut truncated = false;
    let mut scan = |rel: &str, data: &[u8]| -> bool {
        if data.iter().take(8000).any(|b| *b == 0) {
            return true; // binary
        }
        for (i, line) in data.split(|b| *b == b'\n').enumerate() {
            let hay;
            let line_for_search: &[u8] = if ignore_case {
                hay = line.to_ascii_lowercase();
                &hay
            } else {
                line
            };
            if finder.find(line_for_search).is_some() {
                if matches.len() >= max {
                    truncated = true;
                    return false;
                }
                let text = String::from_utf8_lossy(line);
                let text: String = text.chars().take(500).collect();
                matches.push(json!({ "path": rel, "line": i + 1, "text": text }));
            }
        }
        true
    };
    // A single file?
    if path != "."
        && let Ok(fd) = open_beneath(&root_fd, &path, OFlags::RDONLY)
        && rustix::fs::fstat(&fd)
            .map(|s| {
                rustix::fs::FileType::from_raw_mode(s.st_mode) == rustix::fs::FileType::RegularFile
            })
            .unwrap_or(false)
    {
        let mut data = Vec::new();
        let _ = std::fs::File::from(fd)
            .take(MAX_BYTES)
            .read_to_end(&mut data);
        scan(&path, &data);
        return Ok(json!({ "matches": matches, "truncated": truncated }));
    }
    walk(&root_fd, &path, true, &mut |rel, name, t, dir| {
        if t != rustix::fs::FileType::RegularFile {
            return true;
        }
        if let Some(g) = only
            && !glob_matches(g, rel)
        {
            return true;
        }
        let Ok(fd) = open_beneath(dir, name, OFlags::RDONLY) else {
            return true;
        };
        let mut data = Vec::new();
        if std::fs::File::from(fd)
            .take(MAX_BYTES)
            .read_to_end(&mut data)
            .is_err()
        {
            return true;
        }
        scan(rel, &data)
    })?;
    Ok(json!({ "matches": matches, "truncated": truncated }))
}

fn fetch(request: Request) -> Result<Value, String> {
    let Request::Fetch {
        url,
        method,
        mut headers,
        body,
        credentials,
        timeout_ms,
        max,
    } = request
    else {
        return Err("not a fetch".into());
    };
    let proxy = ["http_proxy", "HTTP_PROXY"]
        .iter()
        .find_map(|k| std::env::var(k).ok())
        .ok_or("this task has no egress proxy: its remit grants no network access")?;
    let proxy_addr = proxy
        .strip_prefix("http://")
        .unwrap_or(&proxy)
        .trim_end_matches('/')
        .to_owned();
    let body = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| format!("malformed body: {e}"))?;
    let mut url = url;
    for c in &credentials {
        let phantom = std::env::var(&c.env).map_err(|_| {
            format!(
                "credential `{}` is not available in this task (its variable `{}` is not set)",
                c.name, c.env
            )
        })?;
        match c.how.as_str() {
            "header" => {
                let existing = headers
                    .iter_mut()
                    .find(|(k, _)| k.eq_ignore_ascii_case(&c.field));
                match existing {
                    // `Bearer {name}` style templates: the placeholder is replaced.
                    Some((_, v)) if v.contains(&format!("{{{}}}", c.name)) => {
                        *v = v.replace(&format!("{{{}}}", c.name), &phantom);
                    }
                    Some((_, v)) => *v = phantom,
                    None => headers.push((c.field.clone(), phantom)),
                }
            }
            "basic-password" | "basic-username" => {
                let pair = if c.how == "basic-password" {
                    format!("remit:{phantom}")
                } else {
                    format!("{phantom}:")
                };
                headers.retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
                headers.push((
                    "authorization".into(),
                    format!(
                        "Basic {}",
                        base64::engine::general_purpose::STANDARD.encode(pair)
                    ),
                ));
            }
            "query" => {
                let sep = if url.contains('?') { '&' } else { '?' };
                url = format!("{url}{sep}{}={phantom}", c.field);
            }
            other => return Err(format!("unknown credential placement `{other}`")),
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let work = send(
        &proxy_addr,
        &url,
        &method,
        &headers,
        body,
        max.min(MAX_BYTES),
    );
    runtime.block_on(async {
        match tokio::time::timeout(std::time::Duration::from_millis(timeout_ms), work).await {
            Ok(r) => r,
            Err(_) => Err(format!("no complete answer within {timeout_ms} ms")),
        }
    })
}

async fn send(
    proxy: &str,
    url: &str,
    method: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
    max: u64,
) -> Result<Value, String> {
    use http_body_util::BodyExt as _;
    let stream = tokio::net::TcpStream::connect(proxy)
        .await
        .map_err(|e| format!("cannot reach the task's egress proxy at `{proxy}`: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("the egress proxy did not answer: {e}"))?;
    tokio::spawn(connection);
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("malformed URL `{url}`: {e}"))?;
    let host = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .ok_or_else(|| format!("URL `{url}` has no host"))?;
    let method = hyper::Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("`{method}` is not an HTTP method"))?;
    let mut builder = hyper::Request::builder().method(method).uri(uri);
    let mut has_host = false;
    for (k, v) in headers {
        has_host |= k.eq_ignore_ascii_case("host");
        builder = builder.header(k.as_str(), v.as_str());
    }
    if !has_host {
        builder = builder.header("host", host);
    }
    let request = builder
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .map_err(|e| format!("malformed request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("the request failed: {e}"))?;
    let status = response.status().as_u16();
    let mut out_headers = serde_json::Map::new();
    for (k, v) in response.headers() {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        match out_headers.get_mut(k.as_str()) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&v);
            }
            _ => {
                out_headers.insert(k.as_str().to_owned(), Value::String(v));
            }
        }
    }
    let mut body = response.into_body();
    let mut data = Vec::new();
    let mut truncated = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("reading the response: {e}"))?;
        if let Some(chunk) = frame.data_ref() {
            let room = (max as usize).saturating_sub(data.len());
            data.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if chunk.len() > room {
                truncated = true;
                break;
            }
        }
    }
    Ok(json!({
        "status": status,
        "headers": out_headers,
        "body": base64::engine::general_purpose::STANDARD.encode(&data),
        "truncated": truncated,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn relative_paths_only() {
        assert_eq!(check_relative("a/./b").unwrap(), "a/b");
        assert_eq!(check_relative("").unwrap(), ".");
        assert!(check_relative("../x").is_err());
        assert!(check_relative("a/../../x").is_err());
        assert!(check_relative("/etc/passwd").is_err());
    }

    #[test]
    fn files_stay_in_the_workspace() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        let root = dir.path().to_str().unwrap().to_owned();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("pw")).unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        write(&root, "a/b/c.txt", &b64("hello\nworld\n"), true).unwrap();
        let r = read(&root, "a/b/c.txt", 100).unwrap();
        assert_eq!(r["content"], b64("hello\nworld\n"));
        assert!(
            read(&root, "out/secret", 100)
                .unwrap_err()
                .contains("out of the workspace")
        );
        assert!(
            read(&root, "pw", 100)
                .unwrap_err()
                .contains("out of the workspace")
        );
        assert!(
            write(&root, "out/x", &b64("x"), true)
                .unwrap_err()
                .contains("out of the workspace")
        );
        assert!(!outside.path().join("x").exists());
        let l = list(&root, ".", true, 100).unwrap();
        assert_eq!(l["entries"].as_array().unwrap().len(), 5, "{l}");
        let g = glob(&root, "**/*.txt", 10).unwrap();
        assert_eq!(g["paths"], json!(["a/b/c.txt"]));
        let s = search(&root, ".", "WORLD", None, true, 10).unwrap();
        assert_eq!(s["matches"][0]["line"], 2);
    }
}
