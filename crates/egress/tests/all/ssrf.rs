//! The SSRF guard and bypass attempts: metadata addresses, names that resolve to loopback,
//! DNS rebinding, mixed answers, IPv4-mapped literals, host fronting inside a tunnel,
//! requests that are not proxy requests.

use std::io::{Read, Write};

use crate::support::*;

#[test]
fn special_addresses_are_refused_unless_named() {
    let rt = runtime();
    let good = rt.block_on(origin("127.0.0.1:0", None, hello()));
    let port = good.port();
    // A "metadata service" on another loopback address, same port: it must never be reached.
    let secret = rt.block_on(origin(
        &format!("127.0.0.2:{port}"),
        None,
        std::sync::Arc::new(|_: &Seen| (200, vec![], b"credentials!".to_vec())),
    ));
    let remit = format!(
        r#"
[network]
allow = ["169.254.169.254:80", "[::ffff:a9fe:a9fe]:80", "metadata.test:80", "loop.test:{port}", "rebind.test:{port}", "mixed.test:{port}", "origin.test:{port}"]
private = ["127.0.0.1"]
"#
    );
    let mut setup = Setup::new(&remit);
    let resolver = TableResolver::with(&[
        ("metadata.test", "169.254.169.254"),
        ("loop.test", "127.0.0.2"),
        ("origin.test", "127.0.0.1"),
    ]);
    resolver.answers("rebind.test", &[&["127.0.0.1"], &["127.0.0.2"]]);
    resolver.answers("mixed.test", &[&["127.0.0.1", "127.0.0.2"]]);
    setup.resolver = resolver.clone();
    let proxy = rt.block_on(setup.start());

    for url in [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/".to_owned(),
        "http://[::ffff:169.254.169.254]/latest/meta-data/".to_owned(),
        "http://metadata.test/computeMetadata/v1/".to_owned(),
        format!("http://loop.test:{port}/"),
        format!("http://mixed.test:{port}/"),
    ] {
        let (status, headers, body) = proxy.curl(&[&url]);
        assert_eq!(status, 403, "{url}: {headers}{body}");
        assert!(
            headers
                .to_ascii_lowercase()
                .contains("x-remit-policy: egress.ssrf"),
            "{url}: {headers}"
        );
    }
    let (_, _, body) = proxy.curl(&["http://metadata.test/"]);
    assert!(
        body.contains("169.254.169.254") && body.contains("metadata"),
        "{body}"
    );

    // Rebinding: the first answer is allowed and used; when the name later answers with a
    // refused address, the proxy refuses (it never connects to an address it did not check).
    let (status, _, body) = proxy.curl(&[&format!("http://rebind.test:{port}/a")]);
    assert_eq!((status, body.as_str()), (200, "hello"));
    proxy.run("true", &[]);
    for _ in 0..3 {
        let (status, _, body) = proxy.curl(&[
            "-H",
            "connection: close",
            &format!("http://rebind.test:{port}/b"),
        ]);
        assert!(status == 200 || status == 403, "{status} {body}");
        assert_ne!(body, "credentials!");
    }
    assert!(
        secret.requests().is_empty(),
        "the refused address was reached"
    );
    assert!(
        violations(&proxy.gate)
            .iter()
            .any(|v| v.kind == remit_egress::ViolationKind::Ssrf)
    );

    // A named address passes.
    assert_eq!(proxy.curl(&[&format!("http://origin.test:{port}/")]).0, 200);
}

#[test]
fn bypass_attempts_fail() {
    let rt = runtime();
    let ca = OriginCa::new();
    let tls = rt.block_on(origin(
        "127.0.0.1:0",
        Some(ca.server_config(&["origin.test", "other.test"])),
        hello(),
    ));
    let plain = rt.block_on(origin("127.0.0.1:0", None, hello()));
    let remit = format!(
        "[network]\nallow = [\"origin.test:{}\", \"origin.test:{}\"]\nprivate = [\"127.0.0.1\"]\n",
        tls.port(),
        plain.port()
    );
    let mut setup = Setup::new(&remit);
    setup.resolver =
        TableResolver::with(&[("origin.test", "127.0.0.1"), ("other.test", "127.0.0.1")]);
    setup.extra_roots = vec![ca.der.clone()];
    let proxy = rt.block_on(setup.start());
    let bundle = proxy.bundle.to_str().unwrap().to_owned();

    // Fronting another name inside an allowed tunnel.
    let (status, headers, _) = proxy.curl(&[
        "--cacert",
        &bundle,
        "--http1.1",
        "-H",
        "host: other.test",
        &format!("https://origin.test:{}/", tls.port()),
    ]);
    assert_eq!(status, 403, "{headers}");
    assert!(headers.contains("egress.host"), "{headers}");
    // A forged Host header on a plain request is replaced by the URL's host.
    let (status, _, _) = proxy.curl(&[
        "-H",
        "host: other.test",
        &format!("http://origin.test:{}/", plain.port()),
    ]);
    assert_eq!(status, 200);
    assert_eq!(
        plain.requests().last().unwrap().header("host"),
        Some(format!("origin.test:{}", plain.port()).as_str())
    );

    // A request that is not a proxy request, and a URL with credentials in it.
    let (status, _, body) = proxy.curl(&["--noproxy", "*", &format!("http://{}/", proxy.addr)]);
    assert_eq!(status, 400);
    assert!(body.contains("HTTP_PROXY"), "{body}");
    let mut s = std::net::TcpStream::connect(proxy.addr).unwrap();
    write!(
        s,
        "GET http://user@origin.test:{}/ HTTP/1.1\r\nhost: origin.test\r\n\r\n",
        plain.port()
    )
    .unwrap();
    let mut answer = [0u8; 12];
    s.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 400");

    // A tunnel to a host the remit does not name: the refusal arrives inside TLS, readable.
    let (status, headers, body) = proxy.curl(&["--cacert", &bundle, "https://not-allowed.test/"]);
    assert_eq!(status, 403, "{headers}");
    assert!(
        body.contains("no network access to `not-allowed.test`"),
        "{body}"
    );
    assert_eq!(tls.requests().len(), 0);
}
