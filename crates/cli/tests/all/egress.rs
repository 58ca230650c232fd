//! The egress proxy through the real binary: HTTPS to an origin with its own CA, trusted by
//! the host operator's `REMIT_EGRESS_ROOTS`.

use std::path::Path;
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
    let pki = w.dir.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    test_ca(&pki);
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
