//! The egress proxy through the real binary: HTTPS to an origin with its own CA, trusted by
//! the host operator's `REMIT_EGRESS_ROOTS`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{World, ok, show, stderr};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", show(&out));
}

/// A CA and a certificate for 127.0.0.2 signed by it, in `dir`.
fn test_ca(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=remit test CA",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "origin.key",
        "-out",
        "origin.csr",
        "-subj",
        "/CN=127.0.0.2",
    ]);
    openssl(dir, &csr);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.2\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "origin.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "origin.pem",
            "-days",
            "1",
            "-extfile",
            "san.ext",
        ],
    );
}

/// `openssl s_server -www` on 127.0.0.2: an HTTPS origin answering `GET /` with a page.
/// A test CA and an origin certificate it signed, in a `pki` directory of `w`'s.
fn pki(w: &World) -> PathBuf {
    let pki = w.dir.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    test_ca(&pki);
    pki
}

struct Origin {
    child: Child,
    port: u16,
}

impl Origin {
    fn start(dir: &Path) -> Origin {
        let port = std::net::TcpListener::bind("127.0.0.2:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("openssl")
            .args([
                "s_server",
                "-quiet",
                "-www",
                "-cert",
                "origin.pem",
                "-key",
                "origin.key",
            ])
            .arg("-accept")
            .arg(format!("127.0.0.2:{port}"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.2", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the origin did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Origin { child, port }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// HTTPS from inside a task: the proxy intercepts with the task's CA, checks the origin
/// against the host's roots plus `REMIT_EGRESS_ROOTS`, and refuses an origin it cannot
/// verify. A bad roots file is a one-line error before anything runs.
#[test]
fn https_to_an_origin_with_a_private_ca() {
    let w = World::new();
    let pki = pki(&w);
    let origin = Origin::start(&pki);
    let remit = format!(
        "[network]\nallow = [\"127.0.0.2:{port}\"]\nprivate = [\"127.0.0.2\"]\n",
        port = origin.port
    );
    let script = format!(
        "curl -sS -D headers.txt -o body.txt -w '%{{http_code}}\\n' https://127.0.0.2:{}/",
        origin.port
    );
    let run = |roots: Option<&Path>| {
        let mut cmd = w.command();
        if let Some(r) = roots {
            cmd.env("REMIT_EGRESS_ROOTS", r);
        }
        cmd.args(["run", "--quiet", "--remit"])
            .arg(w.remit(&remit))
            .args(["--", "bash", "-c", &script])
            .output()
            .unwrap()
    };

    let out = run(Some(&pki.join("ca.pem")));
    assert_eq!(ok(&out).trim(), "200", "{}", show(&out));

    // Without the CA, the proxy cannot verify the origin and says so; nothing is fetched.
    let out = run(None);
    let code = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let headers = std::fs::read_to_string(w.ws.join("headers.txt")).unwrap_or_default();
    let body = std::fs::read_to_string(w.ws.join("body.txt")).unwrap_or_default();
    assert_eq!(code, "502", "{}", show(&out));
    assert!(
        headers.contains("invalid peer certificate"),
        "{headers}{body}"
    );
    assert!(
        !body.contains("s_server"),
        "the origin's page came through: {body}"
    );

    // A roots file that holds no certificate: exit 2, one line, the task never starts.
    std::fs::write(pki.join("empty.pem"), "not a certificate\n").unwrap();
    let out = run(Some(&pki.join("empty.pem")));
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = stderr(&out);
    assert!(
        err.contains("REMIT_EGRESS_ROOTS") && err.contains("no certificate"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// Every request and tunnel the gate allowed is recorded with how it ended: an intercepted
/// request whose path is longer than a record shows, and a pass-through tunnel with the bytes
/// it moved. Nothing is left "outcome unknown".
#[test]
fn requests_and_tunnels_are_recorded_with_their_outcomes() {
    let w = World::new();
    let pki = pki(&w);
    let seen = Origin::start(&pki);
    let tunneled = Origin::start(&pki);
    std::fs::copy(pki.join("ca.pem"), w.ws.join("origin-ca.pem")).unwrap();
    let remit = format!(
        "[network]\nallow = [\"127.0.0.2:{a}\", \"127.0.0.2:{b}\"]\nprivate = [\"127.0.0.2\"]\ndangerously_tunnel = [\"127.0.0.2:{b}\"]\n",
        a = seen.port,
        b = tunneled.port
    );
    let long = format!("/{}", "a".repeat(400));
    let script = format!(
        "curl -sS -o /dev/null -w '%{{http_code}}\\n' https://127.0.0.2:{a}{long} && \
         curl -sS -o /dev/null -w '%{{http_code}}\\n' --cacert origin-ca.pem https://127.0.0.2:{b}/",
        a = seen.port,
        b = tunneled.port
    );
    let out = w
        .command()
        .env("REMIT_EGRESS_ROOTS", pki.join("ca.pem"))
        .args(["run", "--quiet", "--remit"])
        .arg(w.remit(&remit))
        .args(["--", "bash", "-c", &script])
        .output()
        .unwrap();
    assert_eq!(ok(&out), "200\n200\n", "{}", show(&out));

    let events = crate::code_support::ledger(&w);
    let all = serde_json::to_string(&events).unwrap();
    assert!(!all.contains("outcome unknown"), "{all}");
    let outcome = |method: &str| {
        let started = events
            .iter()
            .find(|e| {
                e["body"]["kind"] == "effect_started"
                    && e["body"]["effect"]["kind"] == "http.request"
                    && e["body"]["effect"]["attributes"]["method"] == method
            })
            .unwrap_or_else(|| panic!("no {method} started: {all}"));
        let id = &started["body"]["effect"]["id"];
        events
            .iter()
            .find(|e| e["body"]["kind"] == "effect_performed" && e["body"]["effect_id"] == *id)
            .unwrap_or_else(|| panic!("no outcome for {method}: {all}"))["body"]
            .clone()
    };
    let get = outcome("GET");
    assert!(
        get["outcome"].as_str().unwrap().starts_with("status 200"),
        "{get}"
    );
    let tunnel = outcome("CONNECT");
    assert!(
        tunnel["outcome"]
            .as_str()
            .unwrap()
            .starts_with("tunnel to 127.0.0.2:"),
        "{tunnel}"
    );
    assert!(tunnel["bytes_in"].as_u64().unwrap() > 0, "{tunnel}");
    assert!(tunnel["bytes_out"].as_u64().unwrap() > 0, "{tunnel}");
}

/// A request that reached its origin is recorded as performed even when it ends in a refusal
/// (an origin that reads it and breaks off): an origin the task controls must not make what
/// it received look, in the ledger, as if it never left. The twin: an origin that cannot be
/// reached, where nothing left, is recorded as failed before it was sent.
#[test]
fn a_request_that_reached_its_origin_is_never_recorded_as_unsent() {
    use std::io::{Read as _, Write as _};
    let w = World::new();
    let listener = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.ends_with(b"exfiltrated") {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        // Read, then break off without an answer.
        let _ = conn.write_all(b"garbage, not HTTP\r\n\r\n");
        drop(conn);
        got
    });
    let closed = std::net::TcpListener::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let remit = format!(
        "[network]\nallow = [\"127.0.0.2:{port}\", \"127.0.0.2:{closed}\"]\nprivate = [\"127.0.0.2\"]\n"
    );
    let script = format!(
        "curl -sS -o /dev/null -w '%{{http_code}}\\n' -X POST --data-binary exfiltrated http://127.0.0.2:{port}/in; \
         curl -sS -o /dev/null -w '%{{http_code}}\\n' -X PUT --data-binary kept http://127.0.0.2:{closed}/in; true"
    );
    let out = w
        .command()
        .args(["run", "--quiet", "--remit"])
        .arg(w.remit(&remit))
        .args(["--", "bash", "-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let got = received.join().unwrap();
    assert!(
        got.ends_with(b"exfiltrated"),
        "{}",
        String::from_utf8_lossy(&got)
    );

    let events = crate::code_support::ledger(&w);
    let all = serde_json::to_string(&events).unwrap();
    let outcome = |method: &str| {
        let started = events
            .iter()
            .find(|e| {
                e["body"]["kind"] == "effect_started"
                    && e["body"]["effect"]["attributes"]["method"] == method
            })
            .unwrap_or_else(|| panic!("no {method} started: {all}"));
        let id = &started["body"]["effect"]["id"];
        events
            .iter()
            .find(|e| {
                (e["body"]["kind"] == "effect_performed" || e["body"]["kind"] == "effect_failed")
                    && e["body"]["effect_id"] == *id
            })
            .unwrap_or_else(|| panic!("no outcome for {method}: {all}"))["body"]
            .clone()
    };
    let post = outcome("POST");
    assert_eq!(post["kind"], "effect_performed", "{post}");
    assert!(
        post["outcome"]
            .as_str()
            .unwrap()
            .starts_with("sent, then refused"),
        "{post}"
    );
    assert_eq!(post["bytes_out"], 11, "{post}");
    let put = outcome("PUT");
    assert_eq!(put["kind"], "effect_failed", "{put}");
    assert!(
        put["error"]
            .as_str()
            .unwrap_or_default()
            .contains("before it was sent"),
        "{put}"
    );
}

/// An official agent SDK, unchanged, inside a task: Anthropic's Python SDK (`anthropic` from
/// PyPI) reads its usual variables (`ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL`) and the
/// proxy variables and CA bundle remit sets, and talks to a Messages API origin, plain and
/// streamed, through TLS interception. The task holds only a phantom key; the proxy puts the
/// real one in the SDK's `Authorization` header on the way out, the origin sees only the real one, and the ledger
/// records each request and each use of the secret.
#[test]
fn an_official_agent_sdk_works_unchanged() {
    let python = crate::code_support::mcp_python();
    // The task sees the virtual environment and the Python it was made from. That Python
    // may live outside the system directories (a version manager's, under the home
    // directory): then its interpreter and standard library are granted, its own packages
    // and test suite (hundreds of MB the task does not need) hidden.
    let venv = python
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf();
    let paths = Command::new(&python)
        .args([
            "-c",
            "import sys, sysconfig; print(sys.base_prefix); print(sysconfig.get_paths()['stdlib'])",
        ])
        .output()
        .unwrap();
    let paths = String::from_utf8(paths.stdout).unwrap();
    let (base, stdlib) = paths.trim().split_once('\n').unwrap();
    let (mut read_only, mut hidden) = (vec![venv.display().to_string()], Vec::new());
    if !base.starts_with("/usr") {
        read_only.extend([format!("{base}/bin"), format!("{base}/lib")]);
        hidden.extend([format!("{stdlib}/site-packages"), format!("{stdlib}/test")]);
    }
    let list = |v: &[String]| serde_json::to_string(v).unwrap();
    let w = World::new();
    let pki = pki(&w);
    let real_key = "sk-ant-api03-remitTESTrealKEY0123456789abcdefghijklmnopqrstuvwxyzABCDEF";
    let port_file = pki.join("port");
    let log = pki.join("requests.log");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/messages_origin.py");
    let child = Command::new("python3")
        .arg(&script)
        .args(["origin.pem", "origin.key", "127.0.0.2"])
        .arg(&port_file)
        .arg(real_key)
        .arg(&log)
        .current_dir(&pki)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let port = loop {
        if let Ok(p) = std::fs::read_to_string(&port_file) {
            break p.trim().parse::<u16>().unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the origin did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // Killed when dropped, however the test ends.
    let origin = Origin { child, port };
    let remit = format!(
        r#"[filesystem]
read_only = {read_only}
hidden = {hidden}

[environment]
set = {{ ANTHROPIC_BASE_URL = "https://127.0.0.2:{port}" }}

[network]
allow = ["127.0.0.2:{port}"]
private = ["127.0.0.2"]

[[network.credential]]
name = "anthropic"
env = "ANTHROPIC_API_KEY"
from = {{ env = "REMIT_TEST_ANTHROPIC_KEY" }}
inject = {{ hosts = ["127.0.0.2:{port}"], header = "authorization" }}
"#,
        read_only = list(&read_only),
        hidden = list(&hidden),
    );
    std::fs::write(
        w.ws.join("agent.py"),
        r#"import os
import anthropic

client = anthropic.Anthropic()
message = client.messages.create(
    model="claude-test",
    max_tokens=32,
    messages=[{"role": "user", "content": "hello"}],
)
print("create:", message.content[0].text)
with client.messages.stream(
    model="claude-test",
    max_tokens=32,
    messages=[{"role": "user", "content": "stream me"}],
) as stream:
    print("stream:", stream.get_final_text())
print("key:", os.environ["ANTHROPIC_API_KEY"])
"#,
    )
    .unwrap();
    let out = w
        .command()
        .env("REMIT_EGRESS_ROOTS", pki.join("ca.pem"))
        .env("REMIT_TEST_ANTHROPIC_KEY", real_key)
        .args(["run", "--quiet", "--remit"])
        .arg(w.remit(&remit))
        .arg("--")
        .arg(&python)
        .arg("agent.py")
        .output()
        .unwrap();
    drop(origin);
    let text = ok(&out);
    assert!(text.contains("create: echo: hello\n"), "{}", show(&out));
    assert!(text.contains("stream: echo: stream me\n"), "{}", show(&out));
    // The task held a phantom of the key's shape, never the key.
    let phantom = text
        .lines()
        .find_map(|l| l.strip_prefix("key: "))
        .unwrap()
        .to_owned();
    // A key that reached the task would show redacted; a phantom shows as itself.
    assert!(
        phantom.starts_with("sk-ant-api03-")
            && phantom.len() == real_key.len()
            && phantom
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-'),
        "not a phantom of the key: {phantom}"
    );
    assert_ne!(phantom, real_key);
    assert!(!text.contains(real_key), "{}", show(&out));
    // The origin saw the real key on both requests, and nothing else.
    let requests = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        requests,
        "POST /v1/messages key=real stream=False\nPOST /v1/messages key=real stream=True\n"
    );
    // The ledger has both requests, decided, and the key's use, and never the key itself.
    let events = crate::code_support::ledger(&w);
    let all = serde_json::to_string(&events).unwrap();
    assert!(!all.contains(real_key), "the key reached the ledger");
    let started = |kind: &str, target: Option<&str>| {
        events
            .iter()
            .filter(|e| {
                e["body"]["kind"] == "effect_started"
                    && e["body"]["effect"]["kind"] == kind
                    && target.is_none_or(|t| e["body"]["effect"]["target"] == t)
            })
            .map(|e| e["body"]["effect"].clone())
            .collect::<Vec<_>>()
    };
    let posts = started("http.request", None);
    assert_eq!(posts.len(), 2, "{all}");
    for post in &posts {
        assert_eq!(post["attributes"]["method"], "POST", "{post}");
        assert_eq!(post["attributes"]["path"], "/v1/messages", "{post}");
    }
    let uses = started("secret.use", Some("anthropic")).len();
    let answered = events
        .iter()
        .filter(|e| {
            e["body"]["kind"] == "effect_performed"
                && e["body"]["outcome"]
                    .as_str()
                    .is_some_and(|o| o.starts_with("status 200"))
        })
        .count();
    assert_eq!(answered, 2, "{all}");
    assert_eq!(uses, 2, "{all}");
}
