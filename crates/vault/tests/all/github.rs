//! GitHub App installation tokens against a local server implementing GitHub's documented
//! endpoints: the app's RS256 JWT, a token narrowed to the remit, revocation with the token.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use remit_identity::jws::{RsaSigner, verify_rs256};
use remit_vault::{Delivery, RevokeReason, VaultError};

use crate::common::{Home, remit, task};

#[derive(Default)]
struct State {
    public_key: Vec<u8>,
    /// (method, path, body) of every request.
    requests: Vec<(String, String, serde_json::Value)>,
    issued: Vec<String>,
    revoked: Vec<String>,
    /// Answer with more permissions than asked.
    widen: bool,
}

/// A small GitHub: `POST /app/installations/{id}/access_tokens` and
/// `DELETE /installation/token`, each request on its own connection.
fn fake_github(state: Arc<Mutex<State>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut parts = line.split_whitespace();
            let (method, path) = (
                parts.next().unwrap().to_owned(),
                parts.next().unwrap().to_owned(),
            );
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap();
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
            let header = |name: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let length: usize = header("content-length").parse().unwrap_or(0);
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let bearer = header("authorization")
                .trim_start_matches("Bearer ")
                .to_owned();
            let mut s = state.lock().unwrap();
            s.requests
                .push((method.clone(), path.clone(), body.clone()));
            let (status, answer) = match (method.as_str(), path.as_str()) {
                ("POST", "/app/installations/42/access_tokens") => {
                    let claims: serde_json::Value = match verify_rs256(&bearer, &s.public_key) {
                        Ok(payload) => serde_json::from_slice(&payload).unwrap(),
                        Err(_) => {
                            drop(s);
                            respond(
                                &mut stream,
                                401,
                                r#"{"message":"A JSON web token could not be decoded"}"#,
                            );
                            continue;
                        }
                    };
                    assert_eq!(claims["iss"], "123456");
                    let lifetime =
                        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
                    assert!(lifetime <= 660, "{claims}");
                    assert_eq!(header("x-github-api-version"), "2022-11-28");
                    let token = format!("ghs_{:040}", s.issued.len() + 7);
                    s.issued.push(token.clone());
                    let mut permissions = body["permissions"].clone();
                    if s.widen {
                        permissions["administration"] = "write".into();
                    }
                    let repositories: Vec<serde_json::Value> = body["repositories"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|n| serde_json::json!({ "name": n, "full_name": format!("acme/{}", n.as_str().unwrap()) }))
                        .collect();
                    (
                        201,
                        serde_json::json!({
                            "token": token,
                            "expires_at": "2030-01-01T00:00:00Z",
                            "permissions": permissions,
                            "repository_selection": "selected",
                            "repositories": repositories,
                        })
                        .to_string(),
                    )
                }
                ("DELETE", "/installation/token") => {
                    if s.issued.contains(&bearer) && !s.revoked.contains(&bearer) {
                        s.revoked.push(bearer);
                        (204, String::new())
                    } else {
                        (401, r#"{"message":"Bad credentials"}"#.into())
                    }
                }
                _ => (404, r#"{"message":"Not Found"}"#.into()),
            };
            drop(s);
            respond(&mut stream, status, &answer);
        }
    });
    format!("http://{addr}")
}

fn respond(stream: &mut std::net::TcpStream, status: u16, body: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn app_key(dir: &std::path::Path) -> Vec<u8> {
    let path = dir.join("app.pem");
    let out = Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&path)
        .arg("2048")
        .output()
        .expect("openssl is needed to make a test RSA key");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&path).unwrap()
}

fn grant(api: &str, inject: bool) -> String {
    format!(
        "{}[credentials.github.acme]\nkey = \"gh-app\"\napp = \"123456\"\ninstallation = 42\n\
         repositories = [\"widgets\"]\npermissions = {{ contents = \"read\", pull_requests = \"write\" }}\n\
         api = \"{api}\"\n{}",
        if inject {
            "[network]\nallow = [\"api.github.com\"]\n"
        } else {
            ""
        },
        if inject {
            "inject = { hosts = [\"api.github.com\"], header = \"authorization\" }\n"
        } else {
            ""
        }
    )
}

#[test]
fn installation_tokens_are_narrowed_and_revoked() {
    let home = Home::new();
    let pem = app_key(home.path());
    home.vault.set("gh-app", &pem, "alice").unwrap();
    let state = Arc::new(Mutex::new(State {
        public_key: RsaSigner::from_pem(&pem).unwrap().public_key_der(),
        ..State::default()
    }));
    let api = fake_github(state.clone());

    let creds = home
        .broker
        .issue_for_task(
            &task("T1"),
            &remit(&grant(&api, false)),
            Duration::from_secs(7200),
        )
        .unwrap();
    let lease = &creds.leases[0];
    assert_eq!(lease.backend, "github");
    assert_eq!(lease.delivery, Delivery::Env);
    assert_eq!(
        lease.expires.duration_since(lease.issued).unwrap(),
        Duration::from_secs(3600),
        "capped at GitHub's hour"
    );
    assert_eq!(creds.env[0].0, "GH_TOKEN");
    let token = creds.env[0].1.expose_str().unwrap().to_owned();
    {
        let s = state.lock().unwrap();
        assert_eq!(s.issued, vec![token.clone()]);
        let (_, _, body) = &s.requests[0];
        assert_eq!(body["repositories"], serde_json::json!(["widgets"]));
        assert_eq!(
            body["permissions"],
            serde_json::json!({ "contents": "read", "pull_requests": "write" })
        );
    }
    // The token is sealed in the lease until revoked, never stored in clear.
    for (path, bytes) in crate::common::all_bytes(home.path()) {
        assert!(!crate::common::contains(&bytes, token.as_bytes()), "{path}");
    }

    home.broker
        .revoke_task("T1", &RevokeReason::TaskEnd)
        .unwrap();
    assert_eq!(state.lock().unwrap().revoked, vec![token.clone()]);
    // Revoking again is a no-op; the backend itself treats a 401 as already revoked.
    assert!(
        home.broker
            .revoke_task("T1", &RevokeReason::TaskEnd)
            .unwrap()
            .revoked
            .is_empty()
    );
    let events = serde_json::to_string(&home.recorder.events()).unwrap();
    assert!(!events.contains(&token));
}

#[test]
fn an_injected_token_goes_to_the_proxy_not_the_environment() {
    let home = Home::new();
    let pem = app_key(home.path());
    home.vault.set("gh-app", &pem, "alice").unwrap();
    let state = Arc::new(Mutex::new(State {
        public_key: RsaSigner::from_pem(&pem).unwrap().public_key_der(),
        ..State::default()
    }));
    let api = fake_github(state.clone());
    let creds = home
        .broker
        .issue_for_task(
            &task("T1"),
            &remit(&grant(&api, true)),
            Duration::from_secs(600),
        )
        .unwrap();
    assert!(creds.env.is_empty());
    assert_eq!(creds.injected.len(), 1);
    let injected = &creds.injected[0];
    assert_eq!(injected.env.as_deref(), Some("GH_TOKEN"));
    assert_eq!(injected.inject.hosts[0].to_string(), "api.github.com");
    assert_eq!(creds.leases[0].delivery, Delivery::Injected);
    home.broker
        .revoke_task("T1", &RevokeReason::TaskEnd)
        .unwrap();
}

#[test]
fn a_token_wider_than_asked_is_revoked_at_once() {
    let home = Home::new();
    let pem = app_key(home.path());
    home.vault.set("gh-app", &pem, "alice").unwrap();
    let state = Arc::new(Mutex::new(State {
        public_key: RsaSigner::from_pem(&pem).unwrap().public_key_der(),
        widen: true,
        ..State::default()
    }));
    let api = fake_github(state.clone());
    let err = home
        .broker
        .issue_for_task(
            &task("T1"),
            &remit(&grant(&api, false)),
            Duration::from_secs(600),
        )
        .unwrap_err();
    assert!(matches!(err, VaultError::Issue { .. }));
    assert!(err.to_string().contains("`administration: write`"), "{err}");
    let s = state.lock().unwrap();
    assert_eq!(s.revoked, s.issued, "the wider token was revoked");
    assert!(home.broker.live_leases(None).unwrap().is_empty());
    // And a key GitHub does not accept is an error that names the problem.
    drop(s);
    home.vault.set("gh-app", b"not a key", "alice").unwrap();
    let err = home
        .broker
        .issue_for_task(
            &task("T2"),
            &remit(&grant(&api, false)),
            Duration::from_secs(600),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("not an RSA private key"), "{err}");
}
