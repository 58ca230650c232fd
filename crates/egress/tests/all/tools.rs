//! Package tools through the proxy, unchanged: `pip download`, `npm view`, and `npm publish`
//! turned into a `publish` effect the remit can refuse or allow.

use std::process::Command;
use std::sync::Arc;

use crate::support::*;

fn python() -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A minimal valid wheel, built with Python's zipfile.
fn wheel(dir: &std::path::Path) -> Vec<u8> {
    let path = dir.join("demo-1.0-py3-none-any.whl");
    let script = format!(
        r#"
import zipfile, hashlib, base64
files = {{
    "demo/__init__.py": b"VALUE = 1\n",
    "demo-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n",
    "demo-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}}
record = ""
for name, data in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record += f"{{name}},sha256={{digest}},{{len(data)}}\n"
record += "demo-1.0.dist-info/RECORD,,\n"
with zipfile.ZipFile({path:?}, "w") as z:
    for name, data in files.items():
        z.writestr(name, data)
    z.writestr("demo-1.0.dist-info/RECORD", record)
"#
    );
    let out = Command::new(python())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(path).unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn pip_download_through_the_proxy() {
    let rt = runtime();
    let ca = OriginCa::new();
    let build = tempfile::tempdir().unwrap();
    let whl = Arc::new(wheel(build.path()));
    let hash = sha256_hex(&whl);
    let served = Arc::clone(&whl);
    let handler: Handler = Arc::new(move |seen: &Seen| {
        let path = seen
            .uri
            .rsplit_once("pypi.test")
            .map(|(_, p)| {
                p.split_once('/')
                    .map(|(_, r)| format!("/{r}"))
                    .unwrap_or_default()
            })
            .unwrap_or(seen.uri.clone());
        if path.starts_with("/simple/demo") {
            let html = format!(
                "<html><body><a href=\"/files/demo-1.0-py3-none-any.whl#sha256={hash}\">demo-1.0-py3-none-any.whl</a></body></html>"
            );
            (
                200,
                vec![("content-type".into(), "text/html".into())],
                html.into_bytes(),
            )
        } else if path.starts_with("/files/demo-1.0-py3-none-any.whl") {
            (
                200,
                vec![("content-type".into(), "application/octet-stream".into())],
                served.to_vec(),
            )
        } else {
            (404, vec![], b"no".to_vec())
        }
    });
    let index = rt.block_on(origin(
        "127.0.0.1:0",
        Some(ca.server_config(&["pypi.test"])),
        handler,
    ));
    let mut setup = Setup::new(&format!(
        "[network]\nallow = [\"pypi.test:{}\"]\nprivate = [\"pypi.test\"]\n",
        index.port()
    ));
    setup.resolver = TableResolver::with(&[("pypi.test", "127.0.0.1")]);
    setup.extra_roots = vec![ca.der.clone()];
    let proxy = rt.block_on(setup.start());
    let out_dir = proxy.dir.path().join("dl");
    let index_url = format!("https://pypi.test:{}/simple/", index.port());
    let out = proxy
        .command(
            &python(),
            &[
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-cache-dir",
                "--disable-pip-version-check",
                "--index-url",
                &index_url,
                "-d",
                out_dir.to_str().unwrap(),
                "demo",
            ],
        )
        .env("PIP_CONFIG_FILE", "/dev/null")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(out_dir.join("demo-1.0-py3-none-any.whl")).unwrap(),
        *whl
    );
    assert!(records(&proxy.gate).iter().all(|r| r.intercepted));
}

fn npm_registry(rt: &tokio::runtime::Runtime, ca: &OriginCa) -> Origin {
    let handler: Handler = Arc::new(move |seen: &Seen| {
        if seen.method == "GET" && seen.uri.ends_with("/demo") {
            let packument = serde_json::json!({
                "name": "demo",
                "dist-tags": { "latest": "1.0.0" },
                "versions": { "1.0.0": { "name": "demo", "version": "1.0.0", "dist": { "tarball": "https://npm.test/demo/-/demo-1.0.0.tgz", "shasum": "0000000000000000000000000000000000000000" } } },
                "time": { "1.0.0": "2026-01-01T00:00:00.000Z" }
            });
            (
                200,
                vec![("content-type".into(), "application/json".into())],
                packument.to_string().into_bytes(),
            )
        } else if seen.method == "PUT" {
            (
                200,
                vec![("content-type".into(), "application/json".into())],
                b"{\"ok\":true}".to_vec(),
            )
        } else {
            (
                404,
                vec![("content-type".into(), "application/json".into())],
                b"{\"error\":\"not found\"}".to_vec(),
            )
        }
    });
    rt.block_on(origin(
        "127.0.0.1:0",
        Some(ca.server_config(&["npm.test"])),
        handler,
    ))
}

fn npm(proxy: &Proxy, dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let mut command = proxy.command("npm", args);
    command
        .current_dir(dir)
        .env("npm_config_cache", proxy.dir.path().join("npm-cache"))
        .env("npm_config_userconfig", proxy.dir.path().join(".npmrc"))
        .env("npm_config_update_notifier", "false")
        .env("npm_config_audit", "false")
        .env("npm_config_fund", "false");
    let out = command.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn npm_view_and_publish() {
    if !have("npm") {
        panic!("npm is needed for this test (Debian package npm)");
    }
    let rt = runtime();
    let ca = OriginCa::new();
    let registry = npm_registry(&rt, &ca);
    let port = registry.port();
    let registry_url = format!("https://npm.test:{port}/");
    let package = |proxy: &Proxy| {
        let dir = proxy.dir.path().join("pkg");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("package.json"),
            r#"{"name":"demo","version":"1.0.1","main":"index.js"}"#,
        )
        .unwrap();
        std::fs::write(dir.join("index.js"), "module.exports = 1;\n").unwrap();
        std::fs::write(
            proxy.dir.path().join(".npmrc"),
            format!("//npm.test:{port}/:_authToken=npm_notarealtoken0123456789\n"),
        )
        .unwrap();
        dir
    };

    // Reading is allowed; publishing is not granted.
    let mut setup = Setup::new(&format!(
        "[network]\nallow = [\"npm.test:{port}\"]\nprivate = [\"npm.test\"]\n"
    ));
    setup.resolver = TableResolver::with(&[("npm.test", "127.0.0.1")]);
    setup.extra_roots = vec![ca.der.clone()];
    let proxy = rt.block_on(setup.start());
    let (ok, out) = npm(
        &proxy,
        proxy.dir.path(),
        &["view", "demo", "version", "--registry", &registry_url],
    );
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "1.0.0");
    let dir = package(&proxy);
    let (ok, out) = npm(&proxy, &dir, &["publish", "--registry", &registry_url]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("403") && out.contains("does not grant the `publish` action"),
        "{out}"
    );
    assert!(
        registry.requests().iter().all(|r| r.method != "PUT"),
        "the upload reached the registry"
    );
    let publishes = proxy.gate.effects_of("publish");
    assert_eq!(publishes.len(), 1, "{publishes:?}");
    rt.block_on(proxy.egress.shutdown());

    // Granted, with its arguments declared: the publish goes through, described.
    let remit = format!(
        "[network]\nallow = [\"npm.test:{port}\"]\nprivate = [\"npm.test\"]\n\n[actions.publish]\nargs = [\"registry\", \"package\", \"version\"]\nwhen = 'context.args.package == \"demo\"'\n"
    );
    let mut setup = Setup::new(&remit);
    setup.resolver = TableResolver::with(&[("npm.test", "127.0.0.1")]);
    setup.extra_roots = vec![ca.der.clone()];
    setup.publish_args = vec!["registry".into(), "package".into(), "version".into()];
    let proxy = rt.block_on(setup.start());
    let dir = package(&proxy);
    let (ok, out) = npm(&proxy, &dir, &["publish", "--registry", &registry_url]);
    assert!(ok, "{out}");
    let publishes = proxy.gate.effects_of("publish");
    let remit_types::effect::Effect::Action { args, .. } = &publishes[0].0 else {
        panic!()
    };
    assert_eq!(args.get("package").map(String::as_str), Some("demo"));
    assert_eq!(args.get("version").map(String::as_str), Some("1.0.1"));
    assert_eq!(args.get("registry").map(String::as_str), Some("npm"));
    assert!(registry.requests().iter().any(|r| r.method == "PUT"));
}

#[test]
fn crates_publish_is_a_publish_effect() {
    let rt = runtime();
    let registry = rt.block_on(origin("127.0.0.1:0", None, hello()));
    let mut setup = Setup::new(&format!(
        "[network]\nallow = [\"crates.test:{}\"]\nprivate = [\"crates.test\"]\n",
        registry.port()
    ));
    setup.resolver = TableResolver::with(&[("crates.test", "127.0.0.1")]);
    setup.publish_args = vec!["package".into()];
    let proxy = rt.block_on(setup.start());
    let json = br#"{"name":"demo","vers":"0.1.0"}"#;
    let mut body = (json.len() as u32).to_le_bytes().to_vec();
    body.extend_from_slice(json);
    body.extend_from_slice(&[0, 0, 0, 0]);
    let file = proxy.dir.path().join("crate.bin");
    std::fs::write(&file, body).unwrap();
    let (status, headers, body) = proxy.curl(&[
        "-X",
        "PUT",
        "-H",
        "accept: application/json",
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("http://crates.test:{}/api/v1/crates/new", registry.port()),
    ]);
    assert_eq!(status, 403, "{headers}{body}");
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        value["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("publish"),
        "{body}"
    );
    let publishes = proxy.gate.effects_of("publish");
    let remit_types::effect::Effect::Action { args, .. } = &publishes[0].0 else {
        panic!()
    };
    assert_eq!(args.get("package").map(String::as_str), Some("demo"));
    assert!(registry.requests().is_empty());
    // Reading metadata is an ordinary request.
    assert_eq!(
        proxy
            .curl(&[&format!(
                "http://crates.test:{}/api/v1/crates/demo",
                registry.port()
            )])
            .0,
        200
    );
}
